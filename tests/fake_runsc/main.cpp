// fake-runsc: accepts runsc's command line for the subset sandbox-agent uses
// (create/start/state/kill/delete/list) and forwards it to one daemon per --root
// that simulates every sandbox in memory. See README.md.
#include "client.hpp"

int main(int argc, char** argv) { return fake_runsc::run_cli(argc, argv); }
