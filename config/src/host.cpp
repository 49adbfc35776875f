// Host file: read it, load every cfg and policy it points at, then check the
// files against each other (driver domains exist, backends resolve, policies
// exist for the classes in use).
#include "sd/config/host.hpp"

#include <arpa/inet.h>

#include <array>
#include <cstdio>
#include <map>
#include <set>

#include "sd/config/yaml_fields.hpp"
#include "sd/core/limits.hpp"

namespace sd::config {

namespace fs = std::filesystem;

namespace {

constexpr std::array<std::string_view, 8> kHostKeys = {"platform",  "policy_dir", "control_socket", "state_dir",
                                                       "event_log", "wire_netns", "domains",        "guests"};
constexpr std::array<std::string_view, 3> kPlatforms = {"auto", "local", "xen"};
constexpr std::array<DeviceClass, 3> kAllClasses = {DeviceClass::kVif, DeviceClass::kVsnd, DeviceClass::kVbd};

void append(Diagnostics& to, Diagnostics&& from) {
  to.insert(to.end(), std::make_move_iterator(from.begin()), std::make_move_iterator(from.end()));
}

std::string device_label(const DeviceSpec& d) {
  return std::string(cfg_key(d.cls)) + "[" + std::to_string(d.index) + "]";
}

class HostLoader {
 public:
  explicit HostLoader(const fs::path& path) : path_(path), dir_(path.parent_path()), reader_(path.string(), diags_) {}

  Parsed<HostConfig> run() {
    auto text = read_file(path_, "host file", "check the path given to shadowd --config");
    if (!text) return std::unexpected(std::move(text.error()));
    auto doc = reader_.load(*text);
    if (!doc) return std::unexpected(std::move(diags_));
    auto root = reader_.root(*doc, kHostKeys);
    if (!root) return std::unexpected(std::move(diags_));

    HostConfig host;
    host.file = path_;
    host.platform = reader_.choice(*root, "platform", kPlatforms, "auto").value_or("auto");
    read_paths(*root, host);
    if (auto list = reader_.string_list(*root, "domains", true)) {
      load_cfgs(*list, /*driver=*/true, host.driver_domains);
    }
    if (auto list = reader_.string_list(*root, "guests", false)) {
      load_cfgs(*list, /*driver=*/false, host.guests);
    }
    check_names(host);
    check_vif_addresses(host);
    auto used = check_backends(host);
    check_capacity(host);
    load_policies(host, used);

    if (!diags_.empty()) return std::unexpected(std::move(diags_));
    return host;
  }

 private:
  // Relative paths are relative to the host file, not to the current
  // directory, so the same host file works wherever shadowd is started.
  fs::path resolve(const std::string& p) const {
    fs::path q(p);
    return (q.is_absolute() ? q : dir_ / q).lexically_normal();
  }
  std::string dir_text() const { return dir_.empty() ? "the current directory" : dir_.string(); }

  void read_paths(const detail::Map& root, HostConfig& host) {
    if (auto dir = reader_.string(root, "policy_dir")) {
      host.policy_dir = resolve(*dir);
      policy_dir_line_ = root.find("policy_dir")->line;
      std::error_code ec;
      if (!fs::is_directory(host.policy_dir, ec)) {
        reader_.error(
            policy_dir_line_, "policy_dir '" + host.policy_dir.string() + "' is not a directory",
            "point it at the folder with vif.yaml, vsnd.yaml, vbd.yaml; relative paths resolve against " + dir_text());
      } else {
        policy_dir_ok_ = true;
      }
    }
    host.control_socket = resolve(reader_.string(root, "control_socket", std::string(kDefaultControlSocket))
                                      .value_or(std::string(kDefaultControlSocket)));
    host.state_dir = resolve(
        reader_.string(root, "state_dir", std::string(kDefaultStateDir)).value_or(std::string(kDefaultStateDir)));
    if (root.find("event_log")) {
      if (auto log = reader_.string(root, "event_log")) host.event_log = resolve(*log);
    }
    host.wire_netns = reader_.string(root, "wire_netns", std::string("wire")).value_or(std::string("wire"));
    bool ok_name = !host.wire_netns.empty() && host.wire_netns.size() <= 64;
    for (char c : host.wire_netns) ok_name = ok_name && (isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_');
    if (!ok_name)
      reader_.error(root.find("wire_netns") ? root.find("wire_netns")->line : 0, "wire_netns '" + host.wire_netns + "' is not a usable namespace name",
                    "use 1..64 letters, digits, '-' or '_'");
  }

  void load_cfgs(const std::vector<std::pair<std::string, int>>& list, bool driver, std::vector<DomainCfg>& out) {
    for (const auto& [rel, line] : list) {
      fs::path p = resolve(rel);
      std::error_code ec;
      if (!fs::is_regular_file(p, ec)) {
        reader_.error(line, "cannot find cfg file '" + rel + "' (looked for " + p.string() + ")",
                      "check the name; relative paths resolve against " + dir_text());
        if (driver) driver_missing_ = true;
        continue;
      }
      auto cfg = parse_domain_cfg(p);
      if (!cfg) {
        append(diags_, std::move(cfg.error()));
        if (driver) driver_missing_ = true;
        continue;
      }
      if (driver && !cfg->driver_domain) {
        reader_.error(line,
                      "'" + rel + "' (domain " + cfg->name +
                          ") is listed under domains: but does not set "
                          "driver_domain = 1",
                      "add 'driver_domain = 1' to " + p.string() + ", or list it under guests:");
      }
      out.push_back(std::move(*cfg));
    }
  }

  void check_names(const HostConfig& host) {
    std::map<std::string, const DomainCfg*> seen;
    auto check = [&](const DomainCfg& cfg) {
      auto [it, fresh] = seen.emplace(cfg.name, &cfg);
      if (!fresh) {
        diags_.push_back({cfg.file, cfg.name_line,
                          "domain name '" + cfg.name + "' is already used by " + it->second->file + ":" +
                              std::to_string(it->second->name_line),
                          "give every domain its own name = \"...\""});
      }
    };
    for (const auto& d : host.driver_domains) check(d);
    for (const auto& g : host.guests) check(g);
  }

  // On the local platform a vif's wire address is .1 of the /24 of its ip=
  // (.254 for a guest at .1), shared by every guest of that /24 (shadowd's
  // vif topology). So no two vifs may have one address, and no vif may have
  // the wire address of a /24 it is in.
  void check_vif_addresses(const HostConfig& host) {
    struct Where {
      const DomainCfg* cfg;
      const DeviceSpec* dev;
    };
    // The first address of ip= if it is IPv4 (the xl cfg check made sure it is well formed).
    auto parse = [](const std::string& param, uint32_t* out) {
      in_addr a;
      if (inet_pton(AF_INET, param.substr(0, param.find_first_of(" /")).c_str(), &a) != 1) return false;
      *out = ntohl(a.s_addr);
      return true;
    };
    auto text = [](uint32_t v) {
      in_addr a{htonl(v)};
      char buf[INET_ADDRSTRLEN];
      return std::string(inet_ntop(AF_INET, &a, buf, sizeof buf));
    };
    auto at = [](const Where& w) { return w.cfg->file + ":" + std::to_string(w.dev->line); };
    std::map<uint32_t, Where> guests, wires;
    std::vector<std::pair<uint32_t, Where>> order;
    for (const auto& g : host.guests)
      for (const auto& dev : g.devices) {
        uint32_t ip;
        if (dev.cls != DeviceClass::kVif || dev.backend == kDom0Name || !dev.params.count("ip") ||
            !parse(dev.params.at("ip"), &ip))
          continue;
        Where w{&g, &dev};
        if (auto [it, fresh] = guests.emplace(ip, w); !fresh) {
          diags_.push_back({g.file, dev.line,
                            device_label(dev) + ": address " + text(ip) + " is already used by " + at(it->second),
                            "give every vif its own ip="});
          continue;
        }
        wires.emplace((ip & ~255u) | ((ip & 255u) == 1 ? 254u : 1u), w);
        order.emplace_back(ip, w);
      }
    for (const auto& [ip, w] : order)
      if (auto it = wires.find(ip); it != wires.end())
        diags_.push_back({w.cfg->file, w.dev->line,
                          device_label(*w.dev) + ": address " + text(ip) + " is the wire address of the vif at " +
                              at(it->second) + " (the wire side of a /24 is its .1, or .254 when a guest is .1)",
                          "give the guests of one /24 addresses other than .1 and .254"});
  }

  // Every backend= must name a listed driver domain (Domain-0, the default,
  // means the device is served by dom0 and not shadowed). Returns the classes
  // in use, each with the first device using it (for messages).
  std::map<DeviceClass, std::string> check_backends(const HostConfig& host) {
    std::map<DeviceClass, std::string> used;
    std::set<std::string> drivers;
    std::string listed;
    for (const auto& d : host.driver_domains) {
      drivers.insert(d.name);
      listed += (listed.empty() ? "" : ", ") + d.name;
    }
    auto check = [&](const DomainCfg& cfg) {
      for (const auto& dev : cfg.devices) {
        if (dev.backend == kDom0Name || dev.stream != 0) continue;  // a card's other streams: checked with its first
        std::string where = cfg.file + ":" + std::to_string(dev.line) + " " + device_label(dev);
        if (dev.backend == cfg.name) {
          diags_.push_back({cfg.file, dev.line, device_label(dev) + ": domain '" + cfg.name + "' is its own backend",
                            "set backend= to the driver domain that serves this device"});
          continue;
        }
        if (!drivers.contains(dev.backend)) {
          // A driver domain cfg that failed to load may be the one named:
          // its own errors are reported, don't add a misleading one here.
          if (driver_missing_) continue;
          diags_.push_back(
              {cfg.file, dev.line,
               device_label(dev) + ": backend '" + dev.backend + "' is not a driver domain listed in " + path_.string(),
               listed.empty() ? "list its cfg under domains: in " + path_.string()
                              : "driver domains: " + listed + "; fix backend= or list the cfg of '" + dev.backend +
                                    "' under domains:"});
          continue;
        }
        used.emplace(dev.cls, where);
      }
    };
    for (const auto& d : host.driver_domains) check(d);
    for (const auto& g : host.guests) check(g);
    return used;
  }

  static std::string mib(uint64_t kib) {
    char b[32];
    std::snprintf(b, sizeof b, "%.1f MiB", static_cast<double>(kib) / 1024);
    return b;
  }
  // "vif X, disk Y, vsnd Z": what one device of each class takes.
  template <class F>
  static std::string costs(F what) {
    std::string out;
    for (DeviceClass c : kAllClasses) out += (out.empty() ? "" : ", ") + std::string(cfg_key(c)) + " " + what(limits::device_cost(c));
    return "one device takes: " + out;
  }

  // Every driver domain can hold the devices put on it (sd/core/limits.hpp):
  // the address space of their pools and backends within its `memory`, and
  // their fds within its fd limit. The first device that does not fit is
  // reported at its line: that is the one to move or the domain to grow.
  void check_capacity(const HostConfig& host) {
    struct Load {
      const DomainCfg* dd;
      uint64_t kib = limits::kRuntimeUseKiB;
      unsigned fds = limits::kRuntimeFds;
      bool full = false;  // reported once, at the first device over
    };
    std::map<std::string, Load> loads;
    for (const auto& dd : host.driver_domains) loads.emplace(dd.name, Load{&dd});
    auto add = [&](const DomainCfg& cfg) {
      for (const auto& dev : cfg.devices) {
        auto it = loads.find(dev.backend);
        if (it == loads.end() || it->second.full) continue;
        Load& l = it->second;
        const DomainCfg& dd = *l.dd;
        const auto cost = limits::device_cost(dev.cls);
        l.kib += cost.kib;
        l.fds += cost.fds;
        const std::string label = device_label(dev) + " of " + cfg.name + ": driver domain '" + dd.name + "' ";
        if (dd.memory_mb && l.kib > (static_cast<uint64_t>(*dd.memory_mb) + limits::kRuntimeMiB) << 10) {
          const uint64_t need_mb = (l.kib + 1023) / 1024 - limits::kRuntimeMiB;
          diags_.push_back({cfg.file, dev.line,
                            label + "cannot hold it: its devices up to here need " + std::to_string(need_mb) +
                                " MiB, its memory is " + std::to_string(*dd.memory_mb) + " MiB (" + dd.file + ":" +
                                std::to_string(dd.memory_line) + ")",
                            costs([](limits::DeviceCost c) { return mib(c.kib); }) + ": raise memory in " + dd.file +
                                " or give this device another backend"});
          l.full = true;
        } else if (l.fds > limits::kDomainFds) {
          diags_.push_back({cfg.file, dev.line,
                            label + "cannot hold it: its devices up to here keep " + std::to_string(l.fds) +
                                " fds open, a driver domain may have " + std::to_string(limits::kDomainFds),
                            costs([](limits::DeviceCost c) { return std::to_string(c.fds) + " fds"; }) +
                                ": give this device another backend"});
          l.full = true;
        }
      }
    };
    for (const auto& d : host.driver_domains) add(d);
    for (const auto& g : host.guests) add(g);
  }

  void load_policies(HostConfig& host, const std::map<DeviceClass, std::string>& used) {
    if (!policy_dir_ok_) return;  // already reported
    for (DeviceClass cls : kAllClasses) {
      std::string name(class_name(cls));
      fs::path p = host.policy_dir / (name + ".yaml");
      std::error_code ec;
      if (fs::exists(p, ec)) {
        auto policy = load_policy(p, cls);
        if (policy)
          host.policies.emplace(cls, std::move(*policy));
        else
          append(diags_, std::move(policy.error()));
      } else if (auto it = used.find(cls); it != used.end()) {
        reader_.error(policy_dir_line_,
                      "no " + name + " policy: " + p.string() + " does not exist (needed by " + it->second + ")",
                      "create it (config/policies/" + name +
                          ".yaml is a template) or point policy_dir at the "
                          "folder that has it");
      }
    }
  }

  fs::path path_, dir_;
  Diagnostics diags_;
  detail::YamlReader reader_;
  int policy_dir_line_ = 0;
  bool policy_dir_ok_ = false;
  bool driver_missing_ = false;  // a listed driver domain cfg could not be loaded
};

}  // namespace

Parsed<HostConfig> load_host(const fs::path& path) { return HostLoader(path).run(); }

}  // namespace sd::config
