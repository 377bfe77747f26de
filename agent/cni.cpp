#include "cni.hpp"

#include <cstdio>

#include "json_in.hpp"
#include "json_out.hpp"

namespace sandbox_agent::cni {

using json::Ptr;
using json::invalid;
using json::quote;

namespace {

Status parse_plugin(json::value v, const Ptr& at, Plugin& out) {
  simdjson::ondemand::object obj;
  if (auto e = v.get_object().get(obj)) return json::simdjson_error(e, at, "must be an object");
  std::string_view raw;
  if (auto e = obj.raw_json().get(raw)) return json::simdjson_error(e, at, "must be an object");
  out.conf = std::string(raw);
  obj.reset();
  for (auto field : obj) {
    std::string_view key;
    if (auto e = field.unescaped_key().get(key)) return json::simdjson_error(e, at, "must be an object");
    Ptr p = at.child(key);
    json::value m = field.value();
    if (key == "type") {
      if (auto s = json::read_string(m, p, out.type, 64); !s) return s;
      if (out.type.empty() || out.type.find('/') != std::string::npos || out.type[0] == '.')
        return invalid(p, "must be a plugin name (no path)");
    } else if (key == "capabilities") {
      auto s = json::for_each_member(m, p, [&](std::string_view cap, json::value cv, const Ptr& cp) -> Status {
        bool on = false;
        if (auto st = json::read_bool(cv, cp, on); !st) return st;
        if (on) out.capabilities.emplace_back(cap);
        return Ok{};
      });
      if (!s) return s;
    }
  }
  if (out.type.empty()) return invalid(at.child("type"), "is required");
  return Ok{};
}

}  // namespace

Result<NetworkList> parse_conflist(std::string_view text) {
  NetworkList list;
  bool has_plugins = false;
  auto s = json::parse_object_document(json::thread_parser(), text, [&](json::value root) {
    return json::for_each_member(root, Ptr{}, [&](std::string_view k, json::value m, const Ptr& p) -> Status {
      if (k == "name") return json::read_string(m, p, list.name, 128);
      if (k == "cniVersion") return json::read_string(m, p, list.cni_version, 16);
      if (k == "plugins") {
        has_plugins = true;
        simdjson::ondemand::array arr;
        if (auto e = m.get_array().get(arr)) return json::simdjson_error(e, p, "must be an array of plugins");
        for (auto item : arr) {
          Ptr here = p.child(list.plugins.size());
          json::value iv;
          if (auto e = item.get(iv)) return json::simdjson_error(e, here, "must be an object");
          Plugin plugin;
          if (auto st = parse_plugin(iv, here, plugin); !st) return st;
          list.plugins.push_back(std::move(plugin));
          if (list.plugins.size() > 32) return invalid(p, "must have at most 32 plugins");
        }
        return Ok{};
      }
      return Ok{};  // disableCheck and other libcni keys: not ours to judge
    });
  });
  if (!s) return s.error();
  if (list.name.empty()) return make_error(ErrorCode::invalid_request, "is required", "/name");
  if (list.cni_version.empty()) return make_error(ErrorCode::invalid_request, "is required", "/cniVersion");
  if (!has_plugins || list.plugins.empty())
    return make_error(ErrorCode::invalid_request, "must list at least one plugin", "/plugins");
  return list;
}

std::string default_conflist(const std::string& subnet, const std::string& ipam_dir) {
  return R"({"cniVersion":"1.0.0","name":)" + quote(kDefaultNetworkName) + R"(,"plugins":[)" +
         R"({"type":"bridge","bridge":)" + quote(kDefaultBridge) +
         R"(,"isGateway":true,"ipMasq":false,"hairpinMode":true,"ipam":{"type":"host-local","ranges":[[{"subnet":)" +
         quote(subnet) + R"(}]],"routes":[{"dst":"0.0.0.0/0"}],"dataDir":)" + quote(ipam_dir) + "}}," +
         R"({"type":"firewall","backend":"iptables"},)" +
         R"({"type":"portmap","capabilities":{"portMappings":true},"snat":true}]})";
}

std::string plugin_input(const NetworkList& list, const Plugin& plugin, std::string_view prev_result,
                         const std::vector<PortMapping>& ports) {
  // Appended last: Go's decoder keeps the last of duplicate keys, so these win over anything
  // the plugin's object says about them (as libcni's injection does).
  std::string extra = "\"name\":" + quote(list.name) + ",\"cniVersion\":" + quote(list.cni_version);
  if (!prev_result.empty()) extra += ",\"prevResult\":" + std::string(prev_result);
  for (const auto& cap : plugin.capabilities) {
    if (cap != "portMappings") continue;
    std::string mappings = "[";
    for (const auto& p : ports) {
      if (mappings.size() > 1) mappings += ",";
      mappings += "{\"hostPort\":" + std::to_string(p.host_port) +
                  ",\"containerPort\":" + std::to_string(p.sandbox_port) + ",\"protocol\":" + quote(p.protocol);
      if (!p.host_ip.empty()) mappings += ",\"hostIP\":" + quote(p.host_ip);
      mappings += "}";
    }
    extra += ",\"runtimeConfig\":{\"portMappings\":" + mappings + "]}";
  }
  std::string out = plugin.conf;
  auto close = out.rfind('}');
  if (close == std::string::npos) return out;  // parse_conflist made sure it is an object
  auto open = out.find('{');
  bool empty = out.find_first_not_of(" \t\r\n", open + 1) == close;
  out.insert(close, (empty ? "" : ",") + extra);
  return out;
}

Result<Attachment> parse_result(std::string_view text) {
  Attachment a;
  a.result = std::string(text);
  while (!a.result.empty() && (a.result.back() == '\n' || a.result.back() == ' ')) a.result.pop_back();
  auto s = json::parse_object_document(json::thread_parser(), text, [&](json::value root) {
    return json::for_each_member(root, Ptr{}, [&](std::string_view k, json::value m, const Ptr& p) -> Status {
      if (k != "ips") return Ok{};
      simdjson::ondemand::array arr;
      if (auto e = m.get_array().get(arr)) return json::simdjson_error(e, p, "must be an array");
      std::size_t i = 0;
      for (auto item : arr) {
        Ptr here = p.child(i++);
        json::value iv;
        if (auto e = item.get(iv)) return json::simdjson_error(e, here, "must be an object");
        std::string address, gateway;
        auto st = json::for_each_member(iv, here, [&](std::string_view ik, json::value im, const Ptr& ip) -> Status {
          if (ik == "address") return json::read_string(im, ip, address, 64);
          if (ik == "gateway") return json::read_string(im, ip, gateway, 64);
          return Ok{};
        });
        if (!st) return st;
        if (a.ip.empty() && !address.empty()) {  // the first address is the sandbox's
          auto slash = address.find('/');
          a.ip = address.substr(0, slash);
          a.cidr = address;
          a.gateway = gateway;
          if (!parse_address(a.ip)) return invalid(here.child("address"), "is not an address: " + address);
        }
      }
      return Ok{};
    });
  });
  if (!s) return s.error();
  if (a.ip.empty()) return make_error(ErrorCode::internal, "the CNI result gave the sandbox no address", "/ips");
  return a;
}

std::string describe_error(std::string_view output) {
  std::string msg, details;
  std::int64_t code = 0;
  auto s = json::parse_object_document(json::thread_parser(), output, [&](json::value root) {
    return json::for_each_member(root, Ptr{}, [&](std::string_view k, json::value m, const Ptr& p) -> Status {
      if (k == "msg") return json::read_string(m, p, msg, 4096);
      if (k == "details") return json::read_string(m, p, details, 4096);
      if (k == "code") return json::read_int(m, p, code, 0, 1 << 30);
      return Ok{};
    });
  });
  if (!s || msg.empty()) {
    std::string text(output.substr(0, 2048));
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    return text.empty() ? "no error message" : text;
  }
  std::string out = msg;
  if (!details.empty()) out += ": " + details;
  if (code) out += " (CNI error " + std::to_string(code) + ")";
  return out;
}

std::vector<std::string> plugin_env(std::string_view command, const std::string& container_id,
                                    const std::string& netns, const std::string& cni_path) {
  return {"CNI_COMMAND=" + std::string(command),
          "CNI_CONTAINERID=" + container_id,
          "CNI_NETNS=" + netns,
          "CNI_IFNAME=" + std::string(kInterface),
          "CNI_PATH=" + cni_path,
          // The plugins run iptables (bridge, firewall, portmap) from PATH.
          "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
}

}  // namespace sandbox_agent::cni
