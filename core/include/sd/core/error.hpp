// Error and result types shared by every part of Shadow Domains.
//
// An error's code says what the caller should do next (the shape of Abseil's
// status codes, narrowed to what a recovery system needs):
//
//   kInvalidInput   bad input from an operator (config, CLI): report and stop
//   kRetry          transient; the same call may succeed later
//   kRestartReplay  the driver domain misbehaved: restart it and replay
//   kEscalate       shadowd itself cannot continue with this object
//   kFence          give up on the device: budget exhausted, keep it fenced
//   kUnavailable    the feature or platform is not available on this host
//   kSystem         an OS call failed (errno in the message)
#pragma once

#include <cerrno>
#include <cstring>
#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace sd {

enum class Code {
  kInvalidInput,
  kRetry,
  kRestartReplay,
  kEscalate,
  kFence,
  kUnavailable,
  kSystem,
};

constexpr std::string_view code_name(Code c) {
  switch (c) {
    case Code::kInvalidInput: return "invalid-input";
    case Code::kRetry: return "retry";
    case Code::kRestartReplay: return "restart-replay";
    case Code::kEscalate: return "escalate";
    case Code::kFence: return "fence";
    case Code::kUnavailable: return "unavailable";
    case Code::kSystem: return "system";
  }
  return "unknown";
}

struct Error {
  Code code;
  std::string message;

  std::string to_string() const {
    return std::string(code_name(code)) + ": " + message;
  }
};

template <typename T>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> fail(Code c, std::string msg) {
  return std::unexpected(Error{c, std::move(msg)});
}

// An OS call failed: captures errno at the call site.
inline std::unexpected<Error> sys_fail(std::string_view what) {
  int e = errno;
  return std::unexpected(Error{Code::kSystem, std::string(what) + ": " + std::strerror(e)});
}

}  // namespace sd
