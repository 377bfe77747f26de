#!/bin/sh
# The -dev package's promise, for real: `cmake --install BUILD --component dev` into a fresh
# prefix, then docs/examples built out of tree against it twice — with find_package(SandboxAgent
# CONFIG) and with pkg-config — and each binary run against the fake runtime
# (tests/integration/test_systemd.py's EmbedExampleTest). Needs the harness's environment
# (SANDBOX_AGENT, FAKE_RUNSC, ...), which ctest sets.
set -eu
build_dir=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/sa-embed.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "embed_package_test: $*" >&2; exit 1; }
prefix=$work/prefix
# A sanitizer build's libraries need the sanitizers' runtime in the program too.
extra=""
if grep -q '^SANDBOX_AGENT_SANITIZE:BOOL=ON' "$build_dir/CMakeCache.txt"; then extra="-fsanitize=address,undefined"; fi
export CXXFLAGS="$extra" LDFLAGS="$extra"

echo "== cmake --install --component dev --prefix $prefix"
cmake --install "$build_dir" --prefix "$prefix" --component dev >"$work/install.log" || { cat "$work/install.log"; fail "install"; }
for f in include/sandbox_agent/agent.hpp include/sandbox_agent/config.hpp; do
  [ -f "$prefix/$f" ] || fail "$f was not installed"
done
lib=$(find "$prefix" -name libsandbox_agent.a | head -n 1)
[ -n "$lib" ] || fail "no libsandbox_agent.a under $prefix"
libdir=$(dirname "$lib")
[ -f "$libdir/libsandbox_agent_model.a" ] || fail "no libsandbox_agent_model.a beside $lib"
[ -f "$libdir/cmake/SandboxAgent/SandboxAgentConfig.cmake" ] || fail "no CMake package config"
[ -f "$libdir/pkgconfig/sandbox-agent.pc" ] || fail "no pkg-config file"
# Nothing of the daemon's: that is the other component.
[ ! -e "$prefix/bin/sandbox-agent" ] || fail "the dev component installed the daemon"
# The installed config must not point back into the source or build tree.
if grep -rl -e "$src" -e "$build_dir" "$libdir/cmake" "$libdir/pkgconfig"; then fail "installed files name the build tree"; fi

echo "== find_package(SandboxAgent CONFIG): docs/examples out of tree"
cmake -S "$src/docs/examples" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; fail "configure"; }
cmake --build "$work/cmake-build" -j"$(nproc)" >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "build"; }
# It compiled against the installed headers, not the source tree's.
grep -q -- "-I$prefix/include\|-isystem $prefix/include" "$work/cmake-build/compile_commands.json" 2>/dev/null ||
  grep -rq "$prefix/include" "$work/cmake-build/CMakeFiles/embed_example.dir/flags.make" || fail "not built against $prefix/include"
if grep -rq "$src/include" "$work/cmake-build/CMakeFiles/embed_example.dir/flags.make"; then fail "built against the source tree"; fi

echo "== pkg-config --cflags --libs sandbox-agent"
PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --exists --print-errors sandbox-agent || fail "pkg-config cannot use it"
# shellcheck disable=SC2046
c++ -O1 $extra -o "$work/embed_pc" "$src/docs/examples/embed.cpp" $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs sandbox-agent) \
  >"$work/pc.log" 2>&1 || { cat "$work/pc.log"; fail "pkg-config build"; }

for binary in "$work/cmake-build/embed_example" "$work/embed_pc"; do
  echo "== running $binary against the fake runtime"
  (cd "$src/tests/integration" && EMBED_EXAMPLE=$binary /usr/bin/python3 -m unittest -v test_systemd.EmbedExampleTest) ||
    fail "$binary did not run as documented"
done
echo "embed_package_test: ok"
