// Per-class policy YAML: parse with yaml-cpp, check every key, build Policy.
#include "sd/config/policy.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "sd/config/yaml_fields.hpp"

namespace sd::config {

namespace {

using Keys = std::span<const std::string_view>;

constexpr std::array<std::string_view, 7> kRootKeys = {"class",   "active_mode", "heartbeat", "watchdog",
                                                       "restart", "standby",     "log"};
constexpr std::array<std::string_view, 2> kActiveKeys = {"action", "queue_limit"};
constexpr std::array<std::string_view, 2> kHeartbeatKeys = {"interval_ms", "timeout_ms"};
constexpr std::array<std::string_view, 1> kWatchdogKeys = {"progress_timeout_ms"};
constexpr std::array<std::string_view, 5> kRestartKeys = {"budget", "window_s", "backoff_initial_ms", "backoff_max_ms",
                                                          "backoff_multiplier"};
constexpr std::array<std::string_view, 2> kLogKeys = {"max_inflight", "max_state_bytes"};
constexpr std::array<std::string_view, 3> kClasses = {"vif", "vsnd", "vbd"};

// What shadowd can do for each class while the driver is down (DESIGN.md 2).
Keys actions_for(DeviceClass cls) {
  static constexpr std::array<std::string_view, 2> kVif = {"drop", "queue"};
  static constexpr std::array<std::string_view, 1> kVsnd = {"silence"};
  static constexpr std::array<std::string_view, 1> kVbd = {"queue"};
  switch (cls) {
    case DeviceClass::kVif:
      return kVif;
    case DeviceClass::kVsnd:
      return kVsnd;
    case DeviceClass::kVbd:
      return kVbd;
  }
  return {};
}

constexpr uint32_t kDefaultLogMaxInflight = 256;
constexpr uint64_t kDefaultLogMaxStateBytes = 65536;

}  // namespace

Parsed<Policy> parse_policy_text(std::string_view yaml, std::string file_label, DeviceClass expected) {
  Diagnostics diags;
  detail::YamlReader r(file_label, diags);
  auto doc = r.load(yaml);
  if (!doc) return std::unexpected(std::move(diags));
  auto root = r.root(*doc, kRootKeys);
  if (!root) return std::unexpected(std::move(diags));

  const std::string want(class_name(expected));
  auto cls = r.choice(*root, "class", kClasses);
  if (cls && *cls != want) {
    r.error(root->find("class")->line, "class is '" + *cls + "' but this file is loaded as the " + want + " policy",
            "set 'class: " + want + "', or name the file " + *cls + ".yaml");
  }

  std::optional<std::string> action;
  std::optional<uint64_t> queue_limit;
  if (auto m = r.submap(*root, "active_mode", kActiveKeys, true)) {
    action = r.choice(*m, "action", actions_for(expected));
    queue_limit = r.uint(*m, "queue_limit", 1, 1048576);
  }

  std::optional<uint64_t> hb_interval, hb_timeout;
  if (auto m = r.submap(*root, "heartbeat", kHeartbeatKeys, true)) {
    hb_interval = r.uint(*m, "interval_ms", 1, 60000, std::nullopt, " ms");
    hb_timeout = r.uint(*m, "timeout_ms", 1, 600000, std::nullopt, " ms");
    // A timeout no longer than the interval would declare a healthy driver dead.
    if (hb_interval && hb_timeout && *hb_timeout <= *hb_interval) {
      r.error(m->find("timeout_ms")->line,
              "'heartbeat.timeout_ms' (" + std::to_string(*hb_timeout) + ") must be greater than interval_ms (" +
                  std::to_string(*hb_interval) + ")",
              "allow several missed beats, e.g. timeout_ms: " + std::to_string(*hb_interval * 5));
    }
  }

  std::optional<uint64_t> progress;
  if (auto m = r.submap(*root, "watchdog", kWatchdogKeys, true)) {
    progress = r.uint(*m, "progress_timeout_ms", 1, 600000, std::nullopt, " ms");
  }

  std::optional<uint64_t> budget, window, backoff_initial, backoff_max;
  std::optional<double> multiplier;
  if (auto m = r.submap(*root, "restart", kRestartKeys, true)) {
    budget = r.uint(*m, "budget", 0, 1000000, std::nullopt, " (0 = never restart)");
    window = r.uint(*m, "window_s", 1, 86400, std::nullopt, " s");
    backoff_initial = r.uint(*m, "backoff_initial_ms", 0, 60000, std::nullopt, " ms");
    backoff_max = r.uint(*m, "backoff_max_ms", 0, 600000, std::nullopt, " ms");
    multiplier = r.real(*m, "backoff_multiplier", 1.0, 16.0);
    if (backoff_initial && backoff_max && *backoff_max < *backoff_initial) {
      r.error(m->find("backoff_max_ms")->line,
              "'restart.backoff_max_ms' (" + std::to_string(*backoff_max) + ") is below backoff_initial_ms (" +
                  std::to_string(*backoff_initial) + ")",
              "make backoff_max_ms at least " + std::to_string(*backoff_initial));
    }
  }

  auto standby = r.boolean(*root, "standby", false);

  std::optional<uint64_t> max_inflight = kDefaultLogMaxInflight, max_state = kDefaultLogMaxStateBytes;
  if (auto m = r.submap(*root, "log", kLogKeys, false)) {
    max_inflight = r.uint(*m, "max_inflight", 1, 65536, kDefaultLogMaxInflight);
    max_state = r.uint(*m, "max_state_bytes", 256, 67108864, kDefaultLogMaxStateBytes, " bytes");
  }

  if (!diags.empty()) {
    std::stable_sort(diags.begin(), diags.end(),
                     [](const Diagnostic& a, const Diagnostic& b) { return a.line < b.line; });
    return std::unexpected(std::move(diags));
  }
  // No diagnostics means every value above was read; value_or() only keeps
  // the compiler from having to prove it.
  Policy p{};
  p.cls = expected;
  p.file = std::move(file_label);
  p.active_action = action.value_or("");
  p.queue_limit = static_cast<uint32_t>(queue_limit.value_or(0));
  p.heartbeat_interval = std::chrono::milliseconds(hb_interval.value_or(0));
  p.heartbeat_timeout = std::chrono::milliseconds(hb_timeout.value_or(0));
  p.progress_timeout = std::chrono::milliseconds(progress.value_or(0));
  p.restart_budget = static_cast<uint32_t>(budget.value_or(0));
  p.restart_window = std::chrono::seconds(window.value_or(0));
  p.backoff_initial = std::chrono::milliseconds(backoff_initial.value_or(0));
  p.backoff_max = std::chrono::milliseconds(backoff_max.value_or(0));
  p.backoff_multiplier = multiplier.value_or(1.0);
  p.standby = standby.value_or(false);
  p.log_max_inflight = static_cast<uint32_t>(max_inflight.value_or(0));
  p.log_max_state_bytes = max_state.value_or(0);
  return p;
}

Parsed<Policy> load_policy(const std::filesystem::path& path, DeviceClass expected) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int e = errno;
    return std::unexpected(Diagnostics{{path.string(), 0, std::string("cannot read the policy: ") + std::strerror(e),
                                        "check the path; config/policies/ has one file per class"}});
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  return parse_policy_text(buf.str(), path.string(), expected);
}

std::string policy_to_yaml(const Policy& p) {
  std::ostringstream o;
  if (!p.file.empty()) o << "# " << class_name(p.cls) << " policy from " << p.file << "\n";
  o << "class: " << class_name(p.cls) << "\n"
    << "active_mode:\n"
    << "  action: " << p.active_action << "\n"
    << "  queue_limit: " << p.queue_limit << "\n"
    << "heartbeat:\n"
    << "  interval_ms: " << p.heartbeat_interval.count() << "\n"
    << "  timeout_ms: " << p.heartbeat_timeout.count() << "\n"
    << "watchdog:\n"
    << "  progress_timeout_ms: " << p.progress_timeout.count() << "\n"
    << "restart:\n"
    << "  budget: " << p.restart_budget << "\n"
    << "  window_s: " << p.restart_window.count() << "\n"
    << "  backoff_initial_ms: " << p.backoff_initial.count() << "\n"
    << "  backoff_max_ms: " << p.backoff_max.count() << "\n"
    << "  backoff_multiplier: " << detail::format_double(p.backoff_multiplier) << "\n"
    << "standby: " << (p.standby ? "true" : "false") << "\n"
    << "log:\n"
    << "  max_inflight: " << p.log_max_inflight << "\n"
    << "  max_state_bytes: " << p.log_max_state_bytes << "\n";
  return o.str();
}

std::chrono::milliseconds restart_backoff(const Policy& p, uint32_t n) {
  // In double so that large n saturates (to inf) instead of overflowing.
  double ms = static_cast<double>(p.backoff_initial.count()) * std::pow(p.backoff_multiplier, n);
  double cap = static_cast<double>(p.backoff_max.count());
  if (!(ms < cap)) ms = cap;
  return std::chrono::milliseconds(static_cast<int64_t>(ms));
}

}  // namespace sd::config
