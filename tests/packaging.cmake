# The Debian package, for real: cpack -G DEB, dpkg -i on this machine, run the installed
# agent, dpkg -r/-P (also on failure). Needs root; installs into /usr, /etc and /lib, so it
# runs alone (RUN_SERIAL) and skips (exit 77) when not root.
add_test(NAME packaging_deb
         COMMAND /bin/sh ${PROJECT_SOURCE_DIR}/tests/packaging_test.sh ${PROJECT_BINARY_DIR})
set_tests_properties(packaging_deb PROPERTIES
  LABELS "packaging;serial" RUN_SERIAL TRUE TIMEOUT 600 SKIP_RETURN_CODE 77)
