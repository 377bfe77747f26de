#include "sandbox_agent/error.hpp"

namespace sandbox_agent {

std::string_view to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_json: return "invalid_json";
    case ErrorCode::invalid_request: return "invalid_request";
    case ErrorCode::unknown_op: return "unknown_op";
    case ErrorCode::not_found: return "not_found";
    case ErrorCode::exists: return "exists";
    case ErrorCode::forbidden: return "forbidden";
    case ErrorCode::too_large: return "too_large";
    case ErrorCode::overloaded: return "overloaded";
    case ErrorCode::internal: return "internal";
  }
  return "internal";
}

std::string Error::describe() const {
  std::string s(to_string(code));
  if (!field.empty()) s += " " + field;
  s += ": " + message;
  return s;
}

}  // namespace sandbox_agent
