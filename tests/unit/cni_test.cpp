// CNI without libcni (agent/cni.hpp): the built-in list, what each plugin gets on stdin, and
// the results and errors plugins print (shapes from containernetworking-plugins 1.1.1).
#include <doctest/doctest.h>

#include "cni.hpp"
#include "json_in.hpp"

using namespace sandbox_agent;

namespace {

// The value of a top-level key of a JSON object, as minified JSON ("" when absent).
std::string field(const std::string& text, const char* key) {
  simdjson::dom::parser parser;
  simdjson::dom::element root, v;
  if (parser.parse(text).get(root) || root[key].get(v)) return "";
  return simdjson::minify(v);
}

}  // namespace

TEST_CASE("the built-in list parses: bridge without ipMasq, firewall, portmap with its capability") {
  auto list = cni::parse_conflist(cni::default_conflist("10.231.0.0/16", "/r/network/ipam"));
  REQUIRE(list);
  CHECK(list->name == "sandbox-agent");
  CHECK(list->cni_version == "1.0.0");
  REQUIRE(list->plugins.size() == 3);
  CHECK(list->plugins[0].type == "bridge");
  CHECK(field(list->plugins[0].conf, "ipMasq") == "false");
  CHECK(list->plugins[0].conf.find("\"subnet\":\"10.231.0.0/16\"") != std::string::npos);
  CHECK(list->plugins[0].conf.find("\"dataDir\":\"/r/network/ipam\"") != std::string::npos);
  CHECK(list->plugins[1].type == "firewall");
  CHECK(list->plugins[2].type == "portmap");
  REQUIRE(list->plugins[2].capabilities.size() == 1);
  CHECK(list->plugins[2].capabilities[0] == "portMappings");
}

TEST_CASE("conflist errors name the field") {
  auto no_name = cni::parse_conflist(R"({"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]})");
  REQUIRE_FALSE(no_name);
  CHECK(no_name.error().field == "/name");
  auto no_type = cni::parse_conflist(R"({"name":"n","cniVersion":"1.0.0","plugins":[{"bridge":"x"}]})");
  REQUIRE_FALSE(no_type);
  CHECK(no_type.error().field == "/plugins/0/type");
  auto path = cni::parse_conflist(R"({"name":"n","cniVersion":"1.0.0","plugins":[{"type":"../../bin/sh"}]})");
  REQUIRE_FALSE(path);
  CHECK(path.error().field == "/plugins/0/type");
  auto none = cni::parse_conflist(R"({"name":"n","cniVersion":"1.0.0","plugins":[]})");
  REQUIRE_FALSE(none);
  CHECK(none.error().field == "/plugins");
}

TEST_CASE("a plugin's stdin: its object plus name, version, prevResult and its runtimeConfig") {
  auto list = cni::parse_conflist(cni::default_conflist("10.231.0.0/16", "/ipam"));
  REQUIRE(list);
  std::vector<PortMapping> ports{{8080, 80, "tcp", ""}, {5353, 53, "udp", "127.0.0.1"}};
  auto bridge = cni::plugin_input(*list, list->plugins[0], "", ports);
  CHECK(field(bridge, "name") == "\"sandbox-agent\"");
  CHECK(field(bridge, "cniVersion") == "\"1.0.0\"");
  CHECK(field(bridge, "prevResult").empty());
  CHECK(field(bridge, "runtimeConfig").empty());  // bridge did not ask for portMappings
  auto portmap = cni::plugin_input(*list, list->plugins[2], R"({"ips":[]})", ports);
  CHECK(field(portmap, "prevResult") == R"({"ips":[]})");
  CHECK(field(portmap, "runtimeConfig") ==
        R"({"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"},{"hostPort":5353,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"}]})");
  cni::Plugin empty{"loopback", "{}", {}};
  CHECK(field(cni::plugin_input(*list, empty, "", {}), "name") == "\"sandbox-agent\"");
}

TEST_CASE("results give the sandbox's address; errors read as one line") {
  auto r = cni::parse_result(R"({"cniVersion":"1.0.0","interfaces":[{"name":"sa-br0"}],
    "ips":[{"interface":2,"address":"10.231.0.5/16","gateway":"10.231.0.1"}],"routes":[{"dst":"0.0.0.0/0"}]})");
  REQUIRE(r);
  CHECK(r->ip == "10.231.0.5");
  CHECK(r->cidr == "10.231.0.5/16");
  CHECK(r->gateway == "10.231.0.1");
  CHECK_FALSE(cni::parse_result(R"({"cniVersion":"1.0.0","ips":[]})"));
  CHECK(cni::describe_error(R"({"code":11,"msg":"failed to allocate for range 0","details":"no IP addresses available"})") ==
        "failed to allocate for range 0: no IP addresses available (CNI error 11)");
  CHECK(cni::describe_error("plain words\n") == "plain words");
  CHECK(cni::describe_error("") == "no error message");
}

TEST_CASE("plugins get the CNI variables and a PATH for iptables") {
  auto env = cni::plugin_env("ADD", "sa0123", "/r/network/netns/sa0123", "/usr/lib/cni");
  auto has = [&](const std::string& e) { return std::find(env.begin(), env.end(), e) != env.end(); };
  CHECK(has("CNI_COMMAND=ADD"));
  CHECK(has("CNI_CONTAINERID=sa0123"));
  CHECK(has("CNI_NETNS=/r/network/netns/sa0123"));
  CHECK(has("CNI_IFNAME=eth0"));
  CHECK(has("CNI_PATH=/usr/lib/cni"));
  CHECK(std::any_of(env.begin(), env.end(), [](const std::string& e) { return e.starts_with("PATH=") && e.find("/usr/sbin") != std::string::npos; }));
}
