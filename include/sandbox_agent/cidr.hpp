// Address ranges for egress rules: CIDRs parsed and printed, and sets of addresses built from
// allow/deny lists, so a request's rules and the operator's ceiling combine exactly.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sandbox_agent {

using Address = unsigned __int128;  // an IPv4 address uses the low 32 bits

struct Cidr {
  bool v6 = false;
  Address base = 0;  // host bits zero
  unsigned prefix = 0;
  Address first() const { return base; }
  Address last() const;
  std::string to_string() const;
  bool operator==(const Cidr&) const = default;
};

// "10.0.0.0/8", "192.0.2.7" (a /32), "fd00::/8", "::1". nullopt with `why` set when it is
// not one; host bits set is an error ("10.0.0.1/8"), so a typo cannot widen a rule silently.
std::optional<Cidr> parse_cidr(std::string_view text, std::string* why = nullptr);
std::optional<std::pair<bool, Address>> parse_address(std::string_view text);  // (v6, value)
std::string format_address(bool v6, Address a);

// A set of addresses of one family: sorted, disjoint, inclusive ranges.
class AddressSet {
 public:
  using Range = std::pair<Address, Address>;
  static AddressSet everything(bool v6);
  void add(Address lo, Address hi);
  void remove(Address lo, Address hi);
  AddressSet intersect(const AddressSet& other) const;
  bool overlaps(Address lo, Address hi) const;
  bool contains(Address a) const { return overlaps(a, a); }
  bool empty() const { return ranges_.empty(); }
  const std::vector<Range>& ranges() const { return ranges_; }

 private:
  std::vector<Range> ranges_;
};

struct EgressRules {
  std::vector<Cidr> allow, deny;
};

// What a rule list lets through, per family. `deny_wins`: a request's lists (the contract:
// deny beats allow). Otherwise the ceiling's semantics: the most specific entry decides and a
// deny wins a tie, so an operator's allow of 10.99.0.0/24 carves it out of a denied 10.0.0.0/8.
struct AllowedAddresses {
  AddressSet v4, v6;
};
AllowedAddresses allowed_by(const EgressRules& rules, bool deny_wins);
AllowedAddresses intersect(const AllowedAddresses& a, const AllowedAddresses& b);

// The ceiling's default: everything but loopback, link-local (cloud metadata), private,
// shared (CGNAT), multicast and reserved ranges.
EgressRules default_egress_ceiling();

}  // namespace sandbox_agent
