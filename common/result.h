#pragma once

// One error type for the whole project: an errno-style code plus a human-readable context.
// Result<T> is a small std::expected stand-in (GCC 12 has no <expected> in C++20 mode).

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace nodemesh {

struct Error {
  int code = 0;         // errno value, or 0 when the failure is not a system error
  std::string message;  // what failed, with context ("bind 127.0.0.1:15001: Address in use")

  static Error fromErrno(std::string what, int err = errno) {
    return Error{err, std::move(what) + ": " + std::strerror(err)};
  }
  static Error invalid(std::string what) { return Error{EINVAL, std::move(what)}; }
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const { return std::get<1>(v_); }
  // The value, or `fallback` when this holds an error.
  T valueOr(T fallback) const& { return ok() ? value() : std::move(fallback); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error)  // NOLINT(google-explicit-constructor)
      : error_(std::move(error)), ok_(false) {}

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

inline Status okStatus() {
  return {};
}

}  // namespace nodemesh
