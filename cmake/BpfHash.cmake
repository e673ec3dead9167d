# SPDX-License-Identifier: Apache-2.0
# Writes a header naming a BPF object by a hash of its bytes (the pin directory of a build):
# cmake -DOBJ=x.bpf.o -DOUT=x.hash.h -DNAME=x -P BpfHash.cmake
file(SHA256 ${OBJ} _hash)
string(SUBSTRING ${_hash} 0 16 _short)
string(TOUPPER ${NAME} _upper)
file(WRITE ${OUT}.tmp "// Generated from ${NAME}.bpf.o by cmake/BpfHash.cmake.\n#pragma once\n#define ${_upper}_OBJECT_HASH \"${_short}\"\n")
file(RENAME ${OUT}.tmp ${OUT})
