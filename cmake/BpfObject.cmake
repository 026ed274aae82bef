# nodemesh_bpf_object(<name>)
# Compiles bpf/<name>.bpf.c into <name>.bpf.o (clang -target bpf -O2 -g) and generates the
# libbpf skeleton <name>.skel.h with bpftool. Userspace loads programs only through skeletons.
# Defines an INTERFACE target nodemesh_bpf_<name> whose include path holds the skeleton.
find_program(CLANG_BPF NAMES clang REQUIRED)
find_program(BPFTOOL NAMES bpftool REQUIRED)

execute_process(COMMAND ${CMAKE_C_COMPILER} -print-multiarch
                OUTPUT_VARIABLE NODEMESH_MULTIARCH OUTPUT_STRIP_TRAILING_WHITESPACE
                ERROR_QUIET)
if(NOT NODEMESH_MULTIARCH)
  set(NODEMESH_MULTIARCH x86_64-linux-gnu)
endif()

# libbpf's bpf_tracing.h reads the registers of the architecture named by __TARGET_ARCH_<arch>
# (the names of the kernel's arch/ folders), so it follows the machine the build runs on.
string(TOLOWER "${CMAKE_SYSTEM_PROCESSOR}" nodemesh_processor)
if(nodemesh_processor MATCHES "^(x86_64|amd64|i.86)$")
  set(NODEMESH_BPF_ARCH x86)
elseif(nodemesh_processor MATCHES "^(aarch64|arm64)")
  set(NODEMESH_BPF_ARCH arm64)
elseif(nodemesh_processor MATCHES "^arm")
  set(NODEMESH_BPF_ARCH arm)
elseif(nodemesh_processor MATCHES "^(ppc64|powerpc64)")
  set(NODEMESH_BPF_ARCH powerpc)
elseif(nodemesh_processor MATCHES "^s390")
  set(NODEMESH_BPF_ARCH s390)
elseif(nodemesh_processor MATCHES "^riscv")
  set(NODEMESH_BPF_ARCH riscv)
elseif(nodemesh_processor MATCHES "^loongarch")
  set(NODEMESH_BPF_ARCH loongarch)
else()
  message(FATAL_ERROR "BPF: no __TARGET_ARCH_ for processor '${CMAKE_SYSTEM_PROCESSOR}'")
endif()
set(NODEMESH_BPF_WERROR)
if(NODEMESH_WERROR)
  set(NODEMESH_BPF_WERROR -Werror)
endif()

function(nodemesh_bpf_object name)
  set(src ${CMAKE_CURRENT_SOURCE_DIR}/${name}.bpf.c)
  set(obj ${CMAKE_CURRENT_BINARY_DIR}/${name}.bpf.o)
  set(skel_dir ${CMAKE_CURRENT_BINARY_DIR}/skel)
  set(skel ${skel_dir}/${name}.skel.h)
  file(GLOB bpf_headers CONFIGURE_DEPENDS
       ${CMAKE_CURRENT_SOURCE_DIR}/include/*.h ${CMAKE_CURRENT_SOURCE_DIR}/lib/*.h)
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${CLANG_BPF} -target bpf -O2 -g -Wall ${NODEMESH_BPF_WERROR}
            -D__TARGET_ARCH_${NODEMESH_BPF_ARCH}
            -I${CMAKE_CURRENT_SOURCE_DIR}/include -I${CMAKE_CURRENT_SOURCE_DIR}
            -idirafter /usr/include/${NODEMESH_MULTIARCH}
            -c ${src} -o ${obj}
    DEPENDS ${src} ${bpf_headers}
    COMMENT "BPF ${name}.bpf.c"
    VERBATIM)
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${skel_dir}
    COMMAND ${BPFTOOL} gen skeleton ${obj} name ${name}_bpf > ${skel}
    DEPENDS ${obj}
    COMMENT "skeleton ${name}.skel.h"
    VERBATIM)
  add_custom_target(nodemesh_bpf_${name}_gen DEPENDS ${skel})
  add_library(nodemesh_bpf_${name} INTERFACE)
  add_dependencies(nodemesh_bpf_${name} nodemesh_bpf_${name}_gen)
  target_include_directories(nodemesh_bpf_${name} SYSTEM INTERFACE ${skel_dir})
endfunction()
