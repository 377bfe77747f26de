#include "firewall_rules.hpp"

namespace sandbox_agent {

namespace {

const std::string kTable = "inet " + std::string(kFirewallTable);

std::string elements(bool v6, const AddressSet& set) {
  std::string out;
  for (const auto& [lo, hi] : set.ranges()) {
    if (!out.empty()) out += ", ";
    out += format_address(v6, lo);
    if (hi != lo) out += "-" + format_address(v6, hi);
  }
  return out;
}

}  // namespace

std::string chain_name(const std::string& key) { return "sb_" + key; }

std::string firewall_base_rules(const std::string& subnet) {
  std::string t = kTable;
  std::string nat = "ip " + std::string(kNatTable);
  // "add" then "delete": the delete never fails for a missing table, so one transaction
  // replaces whatever was there.
  std::string r = "add table " + t + "\ndelete table " + t + "\nadd table " + t + "\n";
  r += "add map " + t + " egress4 { type ipv4_addr : verdict; }\n";
  r += "add map " + t + " egress6 { type ipv6_addr : verdict; }\n";
  for (const char* hook : {"forward", "input"}) {
    r += "add chain " + t + " " + hook + " { type filter hook " + hook + " priority -10; policy accept; }\n";
    r += "add rule " + t + " " + hook + " ct state established,related accept\n";
    r += "add rule " + t + " " + hook + " ip saddr vmap @egress4\n";
    r += "add rule " + t + " " + hook + " ip6 saddr vmap @egress6\n";
  }
  r += "add table " + nat + "\ndelete table " + nat + "\n";
  if (!subnet.empty()) {
    r += "add table " + nat + "\n";
    r += "add chain " + nat + " postrouting { type nat hook postrouting priority 100; policy accept; }\n";
    r += "add rule " + nat + " postrouting ip saddr " + subnet + " ip daddr != " + subnet + " masquerade\n";
  }
  return r;
}

std::string sandbox_rules(const SandboxEgress& sb) {
  std::string t = kTable;
  std::string chain = chain_name(sb.key);
  std::string r = "add chain " + t + " " + chain + "\n";
  for (bool v6 : {false, true}) {
    const auto& set = v6 ? sb.allowed.v6 : sb.allowed.v4;
    std::string name = chain + (v6 ? "_6" : "_4");
    r += "add set " + t + " " + name + " { type " + (v6 ? "ipv6_addr" : "ipv4_addr") + "; flags interval; }\n";
    if (!set.empty()) r += "add element " + t + " " + name + " { " + elements(v6, set) + " }\n";
    r += "add rule " + t + " " + chain + " " + (v6 ? "ip6" : "ip") + " daddr @" + name + " accept\n";
  }
  // Rejected, not dropped: a denied connection fails at once instead of timing out.
  r += "add rule " + t + " " + chain + " counter reject with icmpx admin-prohibited\n";
  bool v6 = sb.ip.find(':') != std::string::npos;
  r += "add element " + t + " " + (v6 ? "egress6" : "egress4") + " { " + sb.ip + " : jump " + chain + " }\n";
  return r;
}

std::vector<std::string> sandbox_removal(const std::string& key, const std::string& ip) {
  std::string t = kTable;
  std::string chain = chain_name(key);
  std::vector<std::string> cmds;
  if (!ip.empty()) {
    bool v6 = ip.find(':') != std::string::npos;
    cmds.push_back("delete element " + t + " " + (v6 ? "egress6" : "egress4") + " { " + ip + " }");
  }
  cmds.push_back("delete chain " + t + " " + chain);
  cmds.push_back("delete set " + t + " " + chain + "_4");
  cmds.push_back("delete set " + t + " " + chain + "_6");
  return cmds;
}

}  // namespace sandbox_agent
