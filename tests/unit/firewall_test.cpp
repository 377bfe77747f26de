// The nftables text the agent applies (agent/firewall.hpp). Applying it is tested for real in
// tests/integration/test_network.py; here: what it says.
#include <doctest/doctest.h>

#include "firewall_rules.hpp"

using namespace sandbox_agent;

TEST_CASE("base rules replace the agent's tables and masquerade the built-in subnet only") {
  auto r = firewall_base_rules("10.231.0.0/16");
  CHECK(r.find("add table inet sandbox_agent\ndelete table inet sandbox_agent\n") == 0);
  CHECK(r.find("hook forward priority -10") != std::string::npos);
  CHECK(r.find("hook input priority -10") != std::string::npos);
  CHECK(r.find("ct state established,related accept") != std::string::npos);
  CHECK(r.find("ip saddr vmap @egress4") != std::string::npos);
  CHECK(r.find("ip saddr 10.231.0.0/16 ip daddr != 10.231.0.0/16 masquerade") != std::string::npos);
  CHECK(firewall_base_rules("").find("masquerade") == std::string::npos);
}

TEST_CASE("a sandbox's chain accepts its allowed ranges and rejects the rest") {
  SandboxEgress sb;
  sb.key = "sa00000000000000ab";
  sb.ip = "10.231.0.5";
  sb.allowed.v4.add(parse_address("10.99.0.2")->second, parse_address("10.99.0.2")->second);
  sb.allowed.v4.add(parse_address("11.0.0.0")->second, parse_address("11.255.255.255")->second);
  auto r = sandbox_rules(sb);
  CHECK(r.find("add chain inet sandbox_agent sb_sa00000000000000ab\n") == 0);
  CHECK(r.find("add element inet sandbox_agent sb_sa00000000000000ab_4 { 10.99.0.2, 11.0.0.0-11.255.255.255 }") !=
        std::string::npos);
  CHECK(r.find("add element inet sandbox_agent sb_sa00000000000000ab_6") == std::string::npos);  // empty: no elements
  CHECK(r.find("ip6 daddr @sb_sa00000000000000ab_6 accept") != std::string::npos);
  CHECK(r.find("reject with icmpx admin-prohibited") != std::string::npos);
  CHECK(r.find("add element inet sandbox_agent egress4 { 10.231.0.5 : jump sb_sa00000000000000ab }") != std::string::npos);
  auto rm = sandbox_removal(sb.key, sb.ip);
  REQUIRE(rm.size() == 4);
  CHECK(rm[0] == "delete element inet sandbox_agent egress4 { 10.231.0.5 }");  // before the chain it jumps to
  CHECK(sandbox_removal(sb.key, "").size() == 3);
}
