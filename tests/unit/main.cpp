// The unit test runner: doctest's own main (filters, reporters, --list-test-cases for ctest).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
