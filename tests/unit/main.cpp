// The unit test runner: doctest's own main (filters, reporters, --list-test-cases for ctest),
// and the spawn helper's mode, so that spawn_helper_test can start this binary as one.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "sandbox_agent/agent.hpp"

int main(int argc, char** argv) {
  if (int rc = sandbox_agent::spawn_helper_main(argc, argv); rc >= 0) return rc;
  return doctest::Context(argc, argv).run();
}
