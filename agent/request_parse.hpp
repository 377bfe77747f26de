// Internal entry points of the request parser, for parsers that embed a request (protocol
// lines, state records).
#pragma once

#include "json_in.hpp"
#include "sandbox_agent/request.hpp"

namespace sandbox_agent {

// Parses the fields of a request object and checks the request's own rules (no policy).
Status parse_request_value(json::value v, LaunchRequest& out);

}  // namespace sandbox_agent
