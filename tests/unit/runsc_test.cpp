// The runtime driver's pure part: splitting one `runsc run --detach` into its create and
// start halves at the pid file's mtime.
#include <doctest/doctest.h>

#include "runsc.hpp"

using sandbox_agent::split_run;

TEST_CASE("runsc run: the pid file's mtime splits the call into its create and start halves") {
  auto h = split_run(1'000'000, 1'600'000, 1'120'500);
  CHECK(h.created_at_us == 1'120'500);
  CHECK(h.create_ms == 120);
  CHECK(h.start_ms == 480);
  CHECK(h.create_ms + h.start_ms == 600);  // the call's length, whatever the rounding
}

TEST_CASE("runsc run: a pid file stamped before the call (a coarse file-system clock) starts it") {
  auto h = split_run(1'000'000, 1'050'000, 996'000);
  CHECK(h.created_at_us == 1'000'000);
  CHECK(h.create_ms == 0);
  CHECK(h.start_ms == 50);
}

TEST_CASE("runsc run: a pid file stamped after the call ended counts as the end") {
  auto h = split_run(1'000'000, 1'050'000, 1'070'000);
  CHECK(h.created_at_us == 1'050'000);
  CHECK(h.create_ms == 50);
  CHECK(h.start_ms == 0);
}

TEST_CASE("runsc run: a wall clock stepped back during the call gives no negative half") {
  auto h = split_run(1'000'000, 900'000, 950'000);
  CHECK(h.created_at_us == 1'000'000);
  CHECK(h.create_ms == 0);
  CHECK(h.start_ms == 0);
}
