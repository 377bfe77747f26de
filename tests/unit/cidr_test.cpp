// Address ranges for egress (sandbox_agent/cidr.hpp): parsing, set arithmetic, and how a
// request's rules and the operator's ceiling combine.
#include <doctest/doctest.h>

#include "sandbox_agent/cidr.hpp"

using namespace sandbox_agent;

namespace {

Address v4(const char* a) { return parse_address(a)->second; }

EgressRules rules(std::initializer_list<const char*> allow, std::initializer_list<const char*> deny) {
  EgressRules r;
  for (auto c : allow) r.allow.push_back(*parse_cidr(c));
  for (auto c : deny) r.deny.push_back(*parse_cidr(c));
  return r;
}

}  // namespace

TEST_CASE("CIDRs parse, print, and refuse host bits and bad prefixes") {
  auto c = parse_cidr("10.0.0.0/8");
  REQUIRE(c);
  CHECK(c->to_string() == "10.0.0.0/8");
  CHECK(c->first() == v4("10.0.0.0"));
  CHECK(c->last() == v4("10.255.255.255"));
  CHECK(parse_cidr("192.0.2.7")->to_string() == "192.0.2.7/32");
  CHECK(parse_cidr("::/0")->v6);
  CHECK(parse_cidr("fd00::/8")->to_string() == "fd00::/8");
  std::string why;
  CHECK_FALSE(parse_cidr("10.0.0.1/8", &why));
  CHECK(why.find("did you mean 10.0.0.0/8") != std::string::npos);
  CHECK_FALSE(parse_cidr("10.0.0.0/33", &why));
  CHECK_FALSE(parse_cidr("10.0.0.0/", &why));
  CHECK_FALSE(parse_cidr("10.0.0.0/8x", &why));
  CHECK_FALSE(parse_cidr("example.com", &why));
  CHECK_FALSE(parse_cidr("", &why));
}

TEST_CASE("address sets merge, split and intersect") {
  AddressSet s;
  s.add(10, 20);
  s.add(21, 30);  // adjacent: one range
  REQUIRE(s.ranges().size() == 1);
  CHECK(s.ranges()[0] == AddressSet::Range{10, 30});
  s.add(40, 50);
  s.remove(15, 45);
  REQUIRE(s.ranges().size() == 2);
  CHECK(s.ranges()[0] == AddressSet::Range{10, 14});
  CHECK(s.ranges()[1] == AddressSet::Range{46, 50});
  AddressSet t;
  t.add(0, 12);
  t.add(48, 100);
  auto i = s.intersect(t);
  REQUIRE(i.ranges().size() == 2);
  CHECK(i.ranges()[0] == AddressSet::Range{10, 12});
  CHECK(i.ranges()[1] == AddressSet::Range{48, 50});
  auto all = AddressSet::everything(false);
  all.remove(0, 0xffffffff);
  CHECK(all.empty());
}

TEST_CASE("a request's deny wins over its allow") {
  auto a = allowed_by(rules({"0.0.0.0/0"}, {"169.254.0.0/16"}), true);
  CHECK(a.v4.contains(v4("1.1.1.1")));
  CHECK_FALSE(a.v4.contains(v4("169.254.169.254")));
  // even where the allow is more specific
  auto b = allowed_by(rules({"10.1.0.0/16"}, {"10.0.0.0/8"}), true);
  CHECK(b.v4.empty());
  CHECK(b.v6.empty());
}

TEST_CASE("the ceiling's most specific entry decides: an operator's allow carves out of a deny") {
  auto r = default_egress_ceiling();
  auto def = allowed_by(r, false);
  CHECK(def.v4.contains(v4("1.1.1.1")));
  for (auto blocked : {"127.0.0.1", "169.254.169.254", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1"})
    CHECK_FALSE(def.v4.contains(v4(blocked)));
  CHECK_FALSE(def.v6.contains(parse_address("::1")->second));
  CHECK(def.v6.contains(parse_address("2001:db8::1")->second));

  r.allow.push_back(*parse_cidr("10.99.0.0/24"));
  auto opened = allowed_by(r, false);
  CHECK(opened.v4.contains(v4("10.99.0.2")));
  CHECK_FALSE(opened.v4.contains(v4("10.98.0.2")));
  // a deny as specific as an allow still wins
  r.deny.push_back(*parse_cidr("10.99.0.0/24"));
  CHECK_FALSE(allowed_by(r, false).v4.contains(v4("10.99.0.2")));
}

TEST_CASE("a request narrows the ceiling, never widens it") {
  auto ceiling = allowed_by(default_egress_ceiling(), false);
  auto request = allowed_by(rules({"0.0.0.0/0", "10.0.0.0/8"}, {"8.8.8.8/32"}), true);
  auto both = intersect(ceiling, request);
  CHECK(both.v4.contains(v4("1.1.1.1")));
  CHECK_FALSE(both.v4.contains(v4("8.8.8.8")));   // narrowed by the request
  CHECK_FALSE(both.v4.contains(v4("10.0.0.1")));  // the request's allow cannot widen
  CHECK(both.v6.empty());                          // the request allowed no IPv6
}
