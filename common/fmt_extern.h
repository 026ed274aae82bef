#pragma once

// Every C++ file of nodemesh includes this first (-include, CMakeLists.txt).
//
// fmt 9 (Debian 12's) declares detail::vformat_to<char>, the function behind every fmt::format
// and spdlog call, but not as an explicit instantiation of libfmt's, so each file that formats
// compiled its own copy of the whole formatter: integer and float writers, Dragon4 with its
// bignums. GCC clones parts of it per file (.isra), which the linker cannot merge, so the
// agent's binary held about 0.3 MB of them (40 copies of format_dragon), all of it resident.
// libfmt.so exports the instantiation; declaring it here makes every file call that one, as
// fmt 10 does itself (its format.h has this declaration).
#include <fmt/core.h>

#if FMT_VERSION < 100000 && !defined(FMT_HEADER_ONLY)
FMT_BEGIN_NAMESPACE
FMT_BEGIN_DETAIL_NAMESPACE
extern template void vformat_to<char>(buffer<char>& buf, basic_string_view<char> fmt,
                                      basic_format_args<FMT_BUFFER_CONTEXT(char)> args,
                                      locale_ref loc);
FMT_END_DETAIL_NAMESPACE
FMT_END_NAMESPACE
#endif
