#!/bin/sh
# Builds the .deb from BUILD_DIR (cpack -G DEB), installs it on this machine, checks the
# installed agent, units and files, and removes the package again. The machine is left as it
# was, also when a check fails (trap). Needs root; exit 77 (skipped) otherwise.
#   tests/packaging_test.sh BUILD_DIR
set -eu
build_dir=$(cd "${1:?usage: packaging_test.sh BUILD_DIR}" && pwd)

if [ "$(id -u)" != 0 ]; then
  echo "packaging_test: needs root (dpkg -i); skipped"
  exit 77
fi
for tool in cpack dpkg dpkg-deb; do
  command -v "$tool" >/dev/null || { echo "packaging_test: $tool is missing"; exit 1; }
done
# Never replace or remove what this test did not install.
if dpkg-query -W -f='${Status}' sandbox-agent 2>/dev/null | grep -q installed; then
  echo "packaging_test: sandbox-agent is already installed here; refusing to replace and remove it"
  exit 1
fi
for f in /usr/bin/sandbox-agent /usr/bin/sandboxctl /usr/lib/sandbox-agent /etc/sandbox-agent \
         /lib/systemd/system/sandbox-agent.service /lib/systemd/system/sandbox-agent.socket; do
  if [ -e "$f" ]; then
    echo "packaging_test: $f exists and belongs to no package; refusing to overwrite it"
    exit 1
  fi
done

work=$(mktemp -d /tmp/sa-packaging.XXXXXX)
installed=0
cleanup() {
  rc=$?
  if [ "$installed" = 1 ]; then
    dpkg -r sandbox-agent >"$work/remove.log" 2>&1 || cat "$work/remove.log"
    # -r keeps the conffile (/etc/sandbox-agent/config.json); purge removes it too.
    dpkg -P sandbox-agent >>"$work/remove.log" 2>&1 || cat "$work/remove.log"
  fi
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

fail() {
  echo "packaging_test: FAIL: $*"
  exit 1
}

echo "== cpack -G DEB (in $build_dir, package into $work)"
(cd "$build_dir" && cpack -G DEB -B "$work") >"$work/cpack.log" 2>&1 || { cat "$work/cpack.log"; fail "cpack"; }
deb=$(ls "$work"/sandbox-agent_*.deb 2>/dev/null | head -n 1)
[ -n "$deb" ] || { cat "$work/cpack.log"; fail "no sandbox-agent_*.deb in $work"; }
echo "built $(basename "$deb")"

echo "== the package's control data"
dpkg-deb -I "$deb" | tee "$work/info"
grep -q '^ Package: sandbox-agent$' "$work/info" || fail "Package is not sandbox-agent"
grep -q '^ Section: admin$' "$work/info" || fail "Section is not admin"
grep -q '^ Maintainer: ' "$work/info" || fail "no Maintainer"
grep -E -q '^ Depends: (.*, )?runsc(,|$| )' "$work/info" || fail "Depends does not name runsc"
dpkg-deb -f "$deb" Description | grep -q 'gVisor' || fail "no Description"
conffiles=$(dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles)
[ "$conffiles" = /etc/sandbox-agent/config.json ] || fail "conffiles is '$conffiles'"

echo "== the -dev package (contents only: tests/embed_package_test.sh builds against them)"
dev=$(ls "$work"/sandbox-agent-dev_*.deb 2>/dev/null | head -n 1)
[ -n "$dev" ] || { cat "$work/cpack.log"; fail "no sandbox-agent-dev_*.deb in $work"; }
dpkg-deb -f "$dev" Depends | grep -q 'liburing-dev' || fail "the -dev package does not depend on liburing-dev"
[ "$(dpkg-deb -f "$dev" Section)" = libdevel ] || fail "the -dev package's Section is not libdevel"
dpkg-deb -c "$dev" | awk '{print $NF}' >"$work/dev-files"
# libdir: lib/ (the build's GNUInstallDirs default), which CMake and pkg-config search too.
for f in './usr/include/sandbox_agent/agent.hpp' './usr/lib/(.*/)?libsandbox_agent\.a' \
         './usr/lib/(.*/)?libsandbox_agent_model\.a' './usr/lib/(.*/)?cmake/SandboxAgent/SandboxAgentConfig\.cmake' \
         './usr/lib/(.*/)?cmake/SandboxAgent/SandboxAgentTargets\.cmake' './usr/lib/(.*/)?pkgconfig/sandbox-agent\.pc'; do
  grep -Eqx -- "$f" "$work/dev-files" || { cat "$work/dev-files"; fail "the -dev package lacks $f"; }
done
if grep -q 'bin/\|systemd' "$work/dev-files"; then fail "the -dev package carries the daemon's files"; fi
if dpkg-deb -c "$deb" | grep -q 'usr/include\|\.a$'; then fail "the daemon's package carries the -dev files"; fi

echo "== dpkg -i"
installed=1
dpkg -i "$deb" >"$work/install.log" 2>&1 || { cat "$work/install.log"; fail "dpkg -i"; }

echo "== dpkg -L"
dpkg -L sandbox-agent >"$work/files"
for f in /usr/bin/sandbox-agent /usr/bin/sandboxctl /usr/lib/sandbox-agent/sandbox-init \
         /lib/systemd/system/sandbox-agent.service /lib/systemd/system/sandbox-agent.socket \
         /etc/sandbox-agent/config.json /usr/share/doc/sandbox-agent/operations.md \
         /usr/share/doc/sandbox-agent/spool.md /usr/share/doc/sandbox-agent/protocol.md \
         /usr/share/doc/sandbox-agent/examples/embed.cpp; do
  grep -qx "$f" "$work/files" || { cat "$work/files"; fail "dpkg -L does not list $f"; }
  [ -e "$f" ] || fail "$f is listed but not installed"
done
[ -x /usr/lib/sandbox-agent/sandbox-init ] || fail "sandbox-init is not executable"
# Nothing from the build or the tests gets in.
if grep -E 'fake|test|bench|embed_example' "$work/files" | grep -v '^/usr/share/doc/'; then
  fail "test or build files in the package"
fi

echo "== /usr/bin/sandbox-agent --version"
version=$(/usr/bin/sandbox-agent --version) || fail "--version exited $?"
echo "$version"
expected=$(dpkg-query -W -f='${Version}' sandbox-agent)
[ "$version" = "sandbox-agent $expected" ] || fail "--version says '$version', the package is $expected"

echo "== /usr/bin/sandbox-agent --config /etc/sandbox-agent/config.json --check-config"
out=$(/usr/bin/sandbox-agent --config /etc/sandbox-agent/config.json --check-config 2>&1) ||
  { echo "$out"; fail "--check-config exited non-zero"; }
echo "$out"
echo "$out" | grep -q '^configuration is valid$' || fail "--check-config did not say the configuration is valid"
echo "$out" | grep -Eq '^  sandbox-init +/usr/lib/sandbox-agent/sandbox-init$' ||
  fail "--check-config did not find /usr/lib/sandbox-agent/sandbox-init"
echo "$out" | grep -Eq '^  root +/var/lib/sandbox-agent$' || fail "the root is not /var/lib/sandbox-agent"
echo "$out" | grep -Eq '^  socket +/var/lib/sandbox-agent/agent.sock ' || fail "the socket is not ROOT/agent.sock"

echo "== sandboxctl runs"
/usr/bin/sandboxctl --help >/dev/null 2>&1 || fail "sandboxctl --help"

if command -v systemd-analyze >/dev/null; then
  echo "== systemd-analyze verify (the installed units, with the installed ExecStart binary)"
  systemd-analyze verify /lib/systemd/system/sandbox-agent.socket /lib/systemd/system/sandbox-agent.service \
    >"$work/verify.log" 2>&1 || { cat "$work/verify.log"; fail "systemd-analyze verify"; }
  if grep sandbox-agent "$work/verify.log"; then fail "systemd-analyze verify warned about the units"; fi
fi

echo "== dpkg -r, dpkg -P"
installed=0
dpkg -r sandbox-agent >"$work/remove.log" 2>&1 || { cat "$work/remove.log"; fail "dpkg -r"; }
[ ! -e /usr/bin/sandbox-agent ] || fail "dpkg -r left /usr/bin/sandbox-agent"
[ ! -e /lib/systemd/system/sandbox-agent.service ] || fail "dpkg -r left the service unit"
[ -e /etc/sandbox-agent/config.json ] || fail "dpkg -r removed the conffile (it must keep it until purge)"
dpkg -P sandbox-agent >>"$work/remove.log" 2>&1 || { cat "$work/remove.log"; fail "dpkg -P"; }
[ ! -e /etc/sandbox-agent ] || fail "dpkg -P left /etc/sandbox-agent"
[ ! -e /usr/lib/sandbox-agent ] || fail "dpkg -P left /usr/lib/sandbox-agent"
if dpkg-query -W -f='${Status}' sandbox-agent 2>/dev/null | grep -q installed; then
  fail "the package is still installed"
fi
echo "packaging_test: OK"
