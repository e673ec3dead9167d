# SPDX-License-Identifier: Apache-2.0
# Where `cmake --install` and the .deb put mcpwarden's files, from GNUInstallDirs. Each
# MCPWARDEN_*_DIR is the absolute path the code is told (paths.h); each *_DEST is the install
# rule's DESTINATION: relative to the prefix when the path lies beneath it, so that
# `cmake --install --prefix DIR` and CPack relocate it, else absolute (prefix /usr puts the
# configuration at /etc, as GNUInstallDirs does).

# mcpwarden_destination(OUT FULL): OUT = FULL relative to CMAKE_INSTALL_PREFIX, or FULL itself.
function(mcpwarden_destination out full)
  string(FIND "${full}/" "${CMAKE_INSTALL_PREFIX}/" pos)
  if(pos EQUAL 0 AND NOT "${full}" STREQUAL "${CMAKE_INSTALL_PREFIX}")
    file(RELATIVE_PATH rel "${CMAKE_INSTALL_PREFIX}" "${full}")
    set(${out} "${rel}" PARENT_SCOPE)
  else()
    set(${out} "${full}" PARENT_SCOPE)
  endif()
endfunction()

set(MCPWARDEN_CONFIG_DIR "${CMAKE_INSTALL_FULL_SYSCONFDIR}/mcpwarden")
set(MCPWARDEN_POLICY_DIR "${MCPWARDEN_CONFIG_DIR}/policies")
# Programs mcpwarden runs itself, not users: the example server, and mcpwarden-init (the
# sandbox's first process) when it lands.
set(MCPWARDEN_LIBEXECDIR "${CMAKE_INSTALL_FULL_LIBEXECDIR}/mcpwarden")

# systemd's unit directory: pkg-config's answer for prefix /usr (/lib/systemd/system on
# Debian 12), else <prefix>/lib/systemd/system, which systemd also reads for /usr/local.
if(NOT DEFINED MCPWARDEN_SYSTEMD_UNIT_DIR)
  set(_unitdir "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
  if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
    find_package(PkgConfig QUIET)
    if(PKG_CONFIG_FOUND)
      pkg_get_variable(_pc_unitdir systemd systemdsystemunitdir)
      if(_pc_unitdir)
        set(_unitdir "${_pc_unitdir}")
      endif()
    endif()
  endif()
  set(MCPWARDEN_SYSTEMD_UNIT_DIR "${_unitdir}" CACHE PATH "Where the systemd unit is installed")
endif()

mcpwarden_destination(MCPWARDEN_CONFIG_DEST "${MCPWARDEN_CONFIG_DIR}")
mcpwarden_destination(MCPWARDEN_POLICY_DEST "${MCPWARDEN_POLICY_DIR}")
mcpwarden_destination(MCPWARDEN_LIBEXEC_DEST "${MCPWARDEN_LIBEXECDIR}")
mcpwarden_destination(MCPWARDEN_SYSTEMD_UNIT_DEST "${MCPWARDEN_SYSTEMD_UNIT_DIR}")
