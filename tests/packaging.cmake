# The Debian package, for real: cpack -G DEB, dpkg -i on this machine, run the installed
# agent, dpkg -r/-P (also on failure). Needs root; installs into /usr, /etc and /lib, so it
# runs alone (RUN_SERIAL) and skips (exit 77) when not root.
add_test(NAME packaging_deb
         COMMAND /bin/sh ${PROJECT_SOURCE_DIR}/tests/packaging_test.sh ${PROJECT_BINARY_DIR})
set_tests_properties(packaging_deb PROPERTIES
  LABELS "packaging;serial" RUN_SERIAL TRUE TIMEOUT 600 SKIP_RETURN_CODE 77)

# The -dev component: installed into a scratch prefix, docs/examples built against it out of
# tree (CMake package and pkg-config) and run on the fake runtime. Installs nothing outside
# its temporary directory.
add_test(NAME embed_package
         COMMAND /bin/sh ${PROJECT_SOURCE_DIR}/tests/embed_package_test.sh ${PROJECT_BINARY_DIR})
set_tests_properties(embed_package PROPERTIES LABELS packaging TIMEOUT 600 ENVIRONMENT
  "SANDBOX_AGENT=$<TARGET_FILE:sandbox-agent>;SANDBOXCTL=$<TARGET_FILE:sandboxctl>;SANDBOX_INIT=$<TARGET_FILE:sandbox-init>;FAKE_RUNSC=$<TARGET_FILE:fake-runsc>;PYTHONDONTWRITEBYTECODE=1")

# The .deb under a real systemd: a debootstrapped Debian 12 tree (cached in
# BUILD/systemd-boot/) booted with systemd-nspawn; READY=1, socket activation, stop, the
# watchdog, reload and the journal (tests/systemd_boot/test_systemd_boot.py). Needs root.
add_test(NAME packaging_systemd_boot COMMAND /usr/bin/python3 test_systemd_boot.py -v
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}/tests/systemd_boot)
set_tests_properties(packaging_systemd_boot PROPERTIES
  LABELS "packaging;serial;systemd" RUN_SERIAL TRUE TIMEOUT 1500 SKIP_RETURN_CODE 77
  ENVIRONMENT "SA_BUILD_DIR=${PROJECT_BINARY_DIR};FAKE_RUNSC=$<TARGET_FILE:fake-runsc>;PYTHONDONTWRITEBYTECODE=1")
