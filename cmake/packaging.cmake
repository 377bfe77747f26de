# Installation layout and the Debian packages (cpack -G DEB). Included last from the top-level
# CMakeLists.txt. docs/operations.md describes what lands where and why.
#
#   cmake --install build --prefix /usr                    everything: the daemon and the -dev files
#   cmake --install build --prefix /usr --component daemon as the sandbox-agent .deb does
#   cmake --install build --prefix P --component dev       headers, static libraries, CMake
#                                                          package config, pkg-config file
#   (cd build && cpack -G DEB)    build/sandbox-agent_VERSION_ARCH.deb and sandbox-agent-dev_…
#
# Program paths follow the prefix (/usr in the package); the systemd units and the
# configuration file use the absolute paths systemd and the units expect.
#
# Only for a top-level build: a program that embeds the agent through add_subdirectory()
# (docs/embedding.md) gets the library, not our install rules, package or example.
if(NOT PROJECT_IS_TOP_LEVEL)
  return()
endif()

include(GNUInstallDirs)
set(CMAKE_INSTALL_DEFAULT_COMPONENT_NAME daemon)  # every install() below without a COMPONENT

# The daemon and the client; sandbox-init where the agent looks when it is not beside the
# agent's binary (Config::sandbox_init's default: /usr/lib/sandbox-agent/sandbox-init).
install(TARGETS sandbox-agent sandboxctl RUNTIME DESTINATION bin)
install(TARGETS sandbox-init RUNTIME DESTINATION lib/sandbox-agent)

install(FILES systemd/sandbox-agent.service systemd/sandbox-agent.socket
        DESTINATION /lib/systemd/system)

# The default configuration for a fleet host: the documented defaults written out, so an
# operator sees what to change. A conffile: upgrades keep local edits.
install(FILES packaging/config.json DESTINATION /etc/sandbox-agent)

# Every page under docs/ (the contract, operations, spool, embedding, ...) and the README.
file(GLOB SANDBOX_AGENT_DOCS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/docs/*.md)
install(FILES README.md ${SANDBOX_AGENT_DOCS} DESTINATION share/doc/sandbox-agent)
install(FILES docs/examples/embed.cpp DESTINATION share/doc/sandbox-agent/examples)

# For embedders (docs/embedding.md): the public headers, the two static libraries and the
# Asio configuration target they carry, as the CMake package SandboxAgent
# (find_package(SandboxAgent CONFIG) → SandboxAgent::sandbox_agent) and as sandbox-agent.pc.
install(DIRECTORY include/sandbox_agent DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev)
install(TARGETS sandbox_agent sandbox_agent_model asio_uring EXPORT SandboxAgentTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev)
set(SANDBOX_AGENT_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/SandboxAgent)
install(EXPORT SandboxAgentTargets NAMESPACE SandboxAgent:: DESTINATION ${SANDBOX_AGENT_CMAKE_DIR} COMPONENT dev)
include(CMakePackageConfigHelpers)
configure_package_config_file(cmake/SandboxAgentConfig.cmake.in
  ${PROJECT_BINARY_DIR}/SandboxAgentConfig.cmake INSTALL_DESTINATION ${SANDBOX_AGENT_CMAKE_DIR})
# 0.x: a minor version may change the API.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/SandboxAgentConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/SandboxAgentConfig.cmake ${PROJECT_BINARY_DIR}/SandboxAgentConfigVersion.cmake
        DESTINATION ${SANDBOX_AGENT_CMAKE_DIR} COMPONENT dev)
# The .pc file finds the prefix from its own place, so any --prefix works.
file(RELATIVE_PATH SANDBOX_AGENT_PC_TO_PREFIX /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
configure_file(cmake/sandbox-agent.pc.in ${PROJECT_BINARY_DIR}/sandbox-agent.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/sandbox-agent.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)

# The embedding example (docs/embedding.md) is built with everything else so that it keeps
# compiling against the API.
add_subdirectory(docs/examples)

set(CPACK_GENERATOR DEB)
# Two packages: sandbox-agent (the daemon, its units and config) and sandbox-agent-dev.
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL daemon dev)
set(CPACK_DEBIAN_DAEMON_PACKAGE_NAME sandbox-agent)
set(CPACK_DEBIAN_DEV_PACKAGE_NAME sandbox-agent-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_DESCRIPTION
"sandbox-agent as a library, for programs that host the agent on their own Asio io_context
(docs/embedding.md): the public headers, the static libraries libsandbox_agent.a and
libsandbox_agent_model.a, the CMake package SandboxAgent (find_package(SandboxAgent
CONFIG), target SandboxAgent::sandbox_agent) and the pkg-config file sandbox-agent.pc.")
# What a program built against the headers and static libraries needs to compile and link.
# pkg-config: the CMake package finds liburing through it.
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "liburing-dev, libasio-dev, libsimdjson-dev, libspdlog-dev, libcereal-dev, pkgconf | pkg-config")
set(CPACK_DEBIAN_DEV_PACKAGE_SUGGESTS "sandbox-agent, runsc, cmake")
set(CPACK_PACKAGE_NAME sandbox-agent)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "sandbox-agent")
set(CPACK_PACKAGE_CONTACT "sandbox-agent maintainers <sandbox-agent@localhost>")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "launches gVisor sandboxes, with Docker inside, and reports when each is ready")
# CPack puts the summary first and indents these lines.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
"sandbox-agent is a one-thread io_uring daemon that launches gVisor (runsc) sandboxes
on request, optionally with dockerd running inside, and tells its callers when each
one is ready: dockerd answers GET /_ping on a host-visible socket. Requests arrive on
a Unix socket (sandboxctl) and as files in a maildir-style spool directory. Every
sandbox has a durable record; restarting the agent adopts running sandboxes.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://gvisor.dev")
# runsc is the runtime; the shared libraries the binaries link (liburing, simdjson, fmt,
# libstdc++, ...) come from dpkg-shlibdeps.
set(CPACK_DEBIAN_DAEMON_PACKAGE_DEPENDS "runsc")
set(CPACK_DEBIAN_DAEMON_PACKAGE_SHLIBDEPS ON)
# The Docker client, to use a sandbox's docker.sock from the host.
set(CPACK_DEBIAN_DAEMON_PACKAGE_SUGGESTS "docker.io | docker-ce-cli")
set(CPACK_DEBIAN_DAEMON_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/packaging/conffiles
    ${PROJECT_SOURCE_DIR}/packaging/postinst
    ${PROJECT_SOURCE_DIR}/packaging/prerm
    ${PROJECT_SOURCE_DIR}/packaging/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
include(CPack)

if(SANDBOX_AGENT_TESTS)
  include(${PROJECT_SOURCE_DIR}/tests/packaging.cmake)
endif()
