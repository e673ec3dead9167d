# SPDX-License-Identifier: Apache-2.0
# `cpack -G DEB` in a build tree makes mcpwarden_<version>_<arch>.deb of what `cmake --install`
# installs. Configure with -DCMAKE_INSTALL_PREFIX=/usr for a package: the code is told the
# paths at configure time (paths.h), and the package installs under /usr and /etc.
set(CPACK_PACKAGE_NAME mcpwarden)
set(CPACK_PACKAGE_VENDOR "mcpwarden")
set(CPACK_PACKAGE_CONTACT "mcpwarden maintainers <mcpwarden@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_DESCRIPTION
    "mcpwarden runs MCP (Model Context Protocol) stdio servers as untrusted code: each server\n"
    "runs in its own cgroup as an unprivileged user, with enforced memory, process, CPU and\n"
    "time limits and an egress policy the kernel enforces with eBPF programs on that cgroup.")
set(CPACK_RESOURCE_FILE_LICENSE ${CMAKE_SOURCE_DIR}/LICENSE)
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
# The policies and the unit may lie outside the prefix (/etc, /lib/systemd/system): staged
# under DESTDIR like the rest.
set(CPACK_SET_DESTDIR ON)
set(CPACK_GENERATOR DEB)
set(CPACK_SOURCE_GENERATOR "")

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # mcpwarden_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Depends from the binaries' shared libraries (dpkg-shlibdeps): libc6 alone with
# MCPWARDEN_STATIC_DEPS, libbpf1, libelf1, libseccomp2, libyaml-0-2 and zlib1g without.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# The policies are configuration: dpkg keeps an administrator's edits on upgrade.
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(_conffiles ${CMAKE_BINARY_DIR}/cpack/conffiles)
file(GLOB _policies RELATIVE ${CMAKE_SOURCE_DIR}/policies ${CMAKE_SOURCE_DIR}/policies/*.yaml)
set(_lines "")
foreach(_p ${_policies})
  string(APPEND _lines "${MCPWARDEN_POLICY_DIR}/${_p}\n")
endforeach()
file(WRITE ${_conffiles} "${_lines}")
# systemd learns of the unit at install and forgets it at removal; no service starts by
# itself (the unit needs agent.yaml, which the administrator writes).
foreach(_script postinst postrm)
  configure_file(${CMAKE_SOURCE_DIR}/deploy/${_script}.in ${CMAKE_BINARY_DIR}/cpack/${_script} @ONLY
                 FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                 WORLD_READ WORLD_EXECUTE)
endforeach()
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${_conffiles} ${CMAKE_BINARY_DIR}/cpack/postinst ${CMAKE_BINARY_DIR}/cpack/postrm)

include(CPack)
