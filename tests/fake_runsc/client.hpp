// The CLI side: forwards argv to the root's daemon (starting it when needed) and prints
// its reply.
#pragma once

namespace fake_runsc {

int run_cli(int argc, char** argv);

}  // namespace fake_runsc
