// Internal entry points of the request parser, for parsers that embed a request (protocol
// lines, state records).
#pragma once

#include "json_in.hpp"
#include "sandbox_agent/request.hpp"

namespace sandbox_agent {

// Parses the fields of a request object and checks the request's own rules (no policy).
Status parse_request_value(json::value v, LaunchRequest& out);

// A {"uid": N, "gid": N} object (a request's user and socket_owner, exec's user).
Status parse_owner(json::value v, const json::Ptr& at, Owner& out);

// Paths inside a sandbox that belong to the runtime or the agent: /proc, /sys, /dev,
// /.sandbox-agent and what is under them.
bool is_reserved_destination(std::string_view path);

// An {"allow": [CIDR…], "deny": [CIDR…]} object (a request's egress, the config's ceiling).
Status parse_egress_rules(json::value v, const json::Ptr& at, EgressRules& out);

// parse_launch_request with a given parser (one not in use by an enclosing document).
Result<LaunchRequest> parse_launch_request_with(simdjson::ondemand::parser& parser, std::string_view text,
                                                const RequestPolicy& policy);

}  // namespace sandbox_agent
