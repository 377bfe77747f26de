#include "sandbox_agent/cidr.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>

namespace sandbox_agent {

namespace {

unsigned width(bool v6) { return v6 ? 128 : 32; }

Address host_mask(bool v6, unsigned prefix) {
  unsigned host_bits = width(v6) - prefix;
  if (host_bits == 0) return 0;
  if (host_bits >= 128) return ~Address{0};
  return (Address{1} << host_bits) - 1;
}

Address max_address(bool v6) { return host_mask(v6, 0); }

}  // namespace

Address Cidr::last() const { return base | host_mask(v6, prefix); }

std::optional<std::pair<bool, Address>> parse_address(std::string_view text) {
  if (text.empty() || text.size() > INET6_ADDRSTRLEN) return std::nullopt;
  std::string s(text);
  unsigned char buf[16];
  if (::inet_pton(AF_INET, s.c_str(), buf) == 1) {
    Address a = 0;
    for (int i = 0; i < 4; ++i) a = (a << 8) | buf[i];
    return std::pair{false, a};
  }
  if (::inet_pton(AF_INET6, s.c_str(), buf) == 1) {
    Address a = 0;
    for (int i = 0; i < 16; ++i) a = (a << 8) | buf[i];
    return std::pair{true, a};
  }
  return std::nullopt;
}

std::string format_address(bool v6, Address a) {
  unsigned char buf[16];
  int n = v6 ? 16 : 4;
  for (int i = n - 1; i >= 0; --i) {
    buf[i] = static_cast<unsigned char>(a & 0xff);
    a >>= 8;
  }
  char out[INET6_ADDRSTRLEN];
  ::inet_ntop(v6 ? AF_INET6 : AF_INET, buf, out, sizeof out);
  return out;
}

std::string Cidr::to_string() const { return format_address(v6, base) + "/" + std::to_string(prefix); }

std::optional<Cidr> parse_cidr(std::string_view text, std::string* why) {
  auto fail = [&](std::string reason) -> std::optional<Cidr> {
    if (why) *why = std::move(reason);
    return std::nullopt;
  };
  auto slash = text.find('/');
  auto addr = parse_address(text.substr(0, slash));
  if (!addr) return fail("is not an IPv4 or IPv6 address or CIDR (e.g. 10.0.0.0/8)");
  Cidr c;
  c.v6 = addr->first;
  c.base = addr->second;
  c.prefix = width(c.v6);
  if (slash != std::string_view::npos) {
    auto digits = text.substr(slash + 1);
    unsigned p = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), p);
    if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size() || p > width(c.v6))
      return fail("has a prefix length that is not 0-" + std::to_string(width(c.v6)));
    c.prefix = p;
  }
  if (c.base & host_mask(c.v6, c.prefix)) {
    Cidr fixed = c;
    fixed.base &= ~host_mask(c.v6, c.prefix);
    return fail("has host bits set (did you mean " + fixed.to_string() + "?)");
  }
  return c;
}

AddressSet AddressSet::everything(bool v6) {
  AddressSet s;
  s.ranges_.push_back({0, max_address(v6)});
  return s;
}

void AddressSet::add(Address lo, Address hi) {
  std::vector<Range> out;
  out.reserve(ranges_.size() + 1);
  bool placed = false;
  for (const auto& r : ranges_) {
    // Disjoint and not adjacent: keep as it is (before or after the new range).
    if (r.second < lo && lo - r.second > 1) {
      out.push_back(r);
    } else if (r.first > hi && r.first - hi > 1) {
      if (!placed) out.push_back({lo, hi}), placed = true;
      out.push_back(r);
    } else {
      lo = std::min(lo, r.first);
      hi = std::max(hi, r.second);
    }
  }
  if (!placed) out.push_back({lo, hi});
  std::sort(out.begin(), out.end());
  ranges_ = std::move(out);
}

void AddressSet::remove(Address lo, Address hi) {
  std::vector<Range> out;
  out.reserve(ranges_.size() + 1);
  for (const auto& r : ranges_) {
    if (r.second < lo || r.first > hi) {
      out.push_back(r);
      continue;
    }
    if (r.first < lo) out.push_back({r.first, lo - 1});
    if (r.second > hi) out.push_back({hi + 1, r.second});
  }
  ranges_ = std::move(out);
}

AddressSet AddressSet::intersect(const AddressSet& other) const {
  AddressSet out;
  std::size_t i = 0, j = 0;
  while (i < ranges_.size() && j < other.ranges_.size()) {
    auto lo = std::max(ranges_[i].first, other.ranges_[j].first);
    auto hi = std::min(ranges_[i].second, other.ranges_[j].second);
    if (lo <= hi) out.ranges_.push_back({lo, hi});
    if (ranges_[i].second < other.ranges_[j].second) ++i;
    else ++j;
  }
  return out;
}

bool AddressSet::overlaps(Address lo, Address hi) const {
  for (const auto& r : ranges_)
    if (r.first <= hi && lo <= r.second) return true;
  return false;
}

AllowedAddresses allowed_by(const EgressRules& rules, bool deny_wins) {
  AllowedAddresses out;
  auto family = [&](bool v6) -> AddressSet& { return v6 ? out.v6 : out.v4; };
  if (deny_wins) {
    for (const auto& c : rules.allow) family(c.v6).add(c.first(), c.last());
    for (const auto& c : rules.deny) family(c.v6).remove(c.first(), c.last());
    return out;
  }
  // Most specific last, deny after allow at the same length: each entry paints over the
  // broader ones before it.
  struct Entry {
    Cidr c;
    bool allow;
  };
  std::vector<Entry> entries;
  for (const auto& c : rules.allow) entries.push_back({c, true});
  for (const auto& c : rules.deny) entries.push_back({c, false});
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    if (a.c.prefix != b.c.prefix) return a.c.prefix < b.c.prefix;
    return a.allow && !b.allow;
  });
  for (const auto& e : entries) {
    if (e.allow) family(e.c.v6).add(e.c.first(), e.c.last());
    else family(e.c.v6).remove(e.c.first(), e.c.last());
  }
  return out;
}

AllowedAddresses intersect(const AllowedAddresses& a, const AllowedAddresses& b) {
  return {a.v4.intersect(b.v4), a.v6.intersect(b.v6)};
}

EgressRules default_egress_ceiling() {
  EgressRules r;
  for (const char* c : {"0.0.0.0/0", "::/0"}) r.allow.push_back(*parse_cidr(c));
  for (const char* c : {
           "0.0.0.0/8",       // "this network"
           "10.0.0.0/8",      // private
           "100.64.0.0/10",   // shared address space (CGNAT)
           "127.0.0.0/8",     // loopback
           "169.254.0.0/16",  // link-local, cloud metadata (169.254.169.254)
           "172.16.0.0/12",   // private
           "192.0.0.0/24",    // IETF protocol assignments
           "192.168.0.0/16",  // private
           "198.18.0.0/15",   // benchmarking
           "224.0.0.0/4",     // multicast
           "240.0.0.0/4",     // reserved, broadcast
           "::1/128",         // loopback
           "::ffff:0:0/96",   // IPv4-mapped: the IPv4 rules decide those
           "fc00::/7",        // unique local
           "fe80::/10",       // link-local
           "ff00::/8",        // multicast
       })
    r.deny.push_back(*parse_cidr(c));
  return r;
}

}  // namespace sandbox_agent
