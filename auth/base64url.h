#pragma once

// base64url (RFC 4648 section 5) as JWS (RFC 7515 section 2) and JWK (RFC 7517) use it: the
// URL-safe alphabet without padding.

#include <optional>
#include <string>
#include <string_view>

namespace nodemesh::auth {

// Decodes `in`; nullopt for a character outside the alphabet, a length that no encoding has
// (4n+1), or, unless `allow_padding`, any '='. With `allow_padding` trailing '=' are dropped
// first (some JWKS publishers pad their key members; tokens never may).
std::optional<std::string> base64UrlDecode(std::string_view in, bool allow_padding = false);

// Encodes without padding.
std::string base64UrlEncode(std::string_view in);

}  // namespace nodemesh::auth
