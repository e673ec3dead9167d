# SPDX-License-Identifier: Apache-2.0
# bpf_object(NAME SOURCE): compiles bpf/SOURCE with clang -target bpf and generates a
# libbpf skeleton (NAME.skel.h) with bpftool, and NAME.hash.h (NAME_OBJECT_HASH, a hash of the
# object that names its pin directory). Exposes the INTERFACE library NAME_skel.
find_program(BPF_CLANG NAMES clang clang-14 REQUIRED)
find_program(BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)

# clang -target bpf does not know the host's multiarch include dirs; pass clang's own
# system include dirs with -idirafter (the libbpf-bootstrap approach).
execute_process(COMMAND ${BPF_CLANG} -v -E - INPUT_FILE /dev/null
                ERROR_VARIABLE _clang_v OUTPUT_QUIET)
string(REGEX MATCH "#include <...> search starts here:\n(.*)End of search list" _m "${_clang_v}")
string(REPLACE "\n" ";" _dirs "${CMAKE_MATCH_1}")
set(BPF_SYS_INCLUDES "")
foreach(_d ${_dirs})
  string(STRIP "${_d}" _d)
  if(_d)
    list(APPEND BPF_SYS_INCLUDES -idirafter ${_d})
  endif()
endforeach()

macro(bpf_object name src)
  set(_obj ${CMAKE_CURRENT_BINARY_DIR}/${name}.bpf.o)
  set(_skel ${CMAKE_CURRENT_BINARY_DIR}/${name}.skel.h)
  file(GLOB _bpf_headers ${CMAKE_SOURCE_DIR}/bpf/*.h)
  add_custom_command(
    OUTPUT ${_obj}
    COMMAND ${BPF_CLANG} -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_x86
            -Wall -Werror -I${CMAKE_SOURCE_DIR}/bpf ${BPF_SYS_INCLUDES}
            -c ${CMAKE_SOURCE_DIR}/bpf/${src} -o ${_obj}
    DEPENDS ${CMAKE_SOURCE_DIR}/bpf/${src} ${_bpf_headers}
    COMMENT "BPF ${src}")
  add_custom_command(
    OUTPUT ${_skel}
    COMMAND ${BPFTOOL} gen skeleton ${_obj} name ${name} > ${_skel}
    DEPENDS ${_obj}
    COMMENT "skeleton ${name}.skel.h")
  set(_hash ${CMAKE_CURRENT_BINARY_DIR}/${name}.hash.h)
  add_custom_command(
    OUTPUT ${_hash}
    COMMAND ${CMAKE_COMMAND} -DOBJ=${_obj} -DOUT=${_hash} -DNAME=${name} -P ${CMAKE_SOURCE_DIR}/cmake/BpfHash.cmake
    DEPENDS ${_obj} ${CMAKE_SOURCE_DIR}/cmake/BpfHash.cmake
    COMMENT "hash ${name}.hash.h")
  add_custom_target(${name}_skel_gen DEPENDS ${_skel} ${_hash})
  add_library(${name}_skel INTERFACE)
  add_dependencies(${name}_skel ${name}_skel_gen)
  target_include_directories(${name}_skel INTERFACE ${CMAKE_CURRENT_BINARY_DIR})
endmacro()
