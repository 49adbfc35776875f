// Per-class policy YAML: parse with yaml-cpp, check every key, build Policy.
#include "sd/config/policy.hpp"

#include <array>
#include <cmath>
#include <sstream>

#include "sd/config/yaml_fields.hpp"

namespace sd::config {

namespace {

using Keys = std::span<const std::string_view>;

constexpr std::array<std::string_view, 9> kRootKeys = {"class",   "active_mode", "heartbeat", "watchdog", "restart",
                                                       "standby", "zygote",      "log",       "guest_frontend"};
constexpr std::array<std::string_view, 2> kGuestFrontends = {"project", "kernel"};
constexpr std::array<std::string_view, 2> kActiveKeys = {"action", "queue_limit"};
constexpr std::array<std::string_view, 2> kHeartbeatKeys = {"interval_ms", "timeout_ms"};
constexpr std::array<std::string_view, 5> kWatchdogKeys = {"progress_timeout_ms", "interval_ms", "no_progress_multiple",
                                                           "no_progress_min_ms", "no_progress_max_ms"};
constexpr std::array<std::string_view, 5> kRestartKeys = {"budget", "window_s", "backoff_initial_ms", "backoff_max_ms",
                                                          "backoff_multiplier"};
constexpr std::array<std::string_view, 2> kLogKeys = {"max_inflight", "max_state_bytes"};
constexpr std::array<std::string_view, 3> kClasses = {"vif", "vsnd", "vbd"};

// What shadowd can do for each class while the driver is down (DESIGN.md 2).
constexpr std::array<std::string_view, 2> kVifActions = {"drop", "queue"};
constexpr std::array<std::string_view, 1> kVsndActions = {"silence"}, kVbdActions = {"queue"};
Keys actions_for(DeviceClass cls) {
  if (cls == DeviceClass::kVif) return kVifActions;
  return cls == DeviceClass::kVsnd ? Keys(kVsndActions) : Keys(kVbdActions);
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

  // Values go straight into the policy; it is returned only if no diagnostic
  // was reported, that is, only if every value was read.
  using ms = std::chrono::milliseconds;
  Policy p{};
  p.cls = expected;
  p.file = std::move(file_label);
  if (auto m = r.submap(*root, "active_mode", kActiveKeys, true)) {
    p.active_action = r.choice(*m, "action", actions_for(expected)).value_or("");
    p.queue_limit = static_cast<uint32_t>(r.uint(*m, "queue_limit", 1, 1048576).value_or(0));
  }

  if (auto m = r.submap(*root, "heartbeat", kHeartbeatKeys, true)) {
    auto interval = r.uint(*m, "interval_ms", 1, 60000, std::nullopt, " ms");
    auto timeout = r.uint(*m, "timeout_ms", 1, 600000, std::nullopt, " ms");
    // A timeout no longer than the interval would declare a healthy driver dead.
    if (interval && timeout && *timeout <= *interval) {
      r.error(m->find("timeout_ms")->line,
              "'heartbeat.timeout_ms' (" + std::to_string(*timeout) + ") must be greater than interval_ms (" +
                  std::to_string(*interval) + ")",
              "allow several missed beats, e.g. timeout_ms: " + std::to_string(*interval * 5));
    }
    p.heartbeat_interval = ms(interval.value_or(0));
    p.heartbeat_timeout = ms(timeout.value_or(0));
  }

  if (auto m = r.submap(*root, "watchdog", kWatchdogKeys, true)) {
    p.progress_timeout = ms(r.uint(*m, "progress_timeout_ms", 1, 600000, std::nullopt, " ms").value_or(0));
    // Optional: how often the watchdog looks (default: each heartbeat), and
    // the fast rule, a ring with requests waiting and no response for
    // max(no_progress_min_ms, no_progress_multiple x its recent service
    // time), capped by no_progress_max_ms (default progress_timeout_ms), so
    // one slow response cannot hold a hang's detection back for long
    // (multiple 0: the rule is off).
    p.watchdog_interval = ms(r.uint(*m, "interval_ms", 1, 60000, p.heartbeat_interval.count(), " ms").value_or(0));
    p.no_progress_multiple = static_cast<uint32_t>(r.uint(*m, "no_progress_multiple", 0, 1000, 0).value_or(0));
    p.no_progress_min = ms(r.uint(*m, "no_progress_min_ms", 1, 600000, 50, " ms").value_or(0));
    auto max = r.uint(*m, "no_progress_max_ms", 1, 600000, p.progress_timeout.count(), " ms");
    p.no_progress_max = ms(max.value_or(0));
    if (max && m->find("no_progress_max_ms") && p.no_progress_max < p.no_progress_min)
      r.error(m->find("no_progress_max_ms")->line,
              "'watchdog.no_progress_max_ms' (" + std::to_string(*max) + ") must be at least no_progress_min_ms (" +
                  std::to_string(p.no_progress_min.count()) + ")",
              "e.g. no_progress_max_ms: " + std::to_string(p.no_progress_min.count() * 2));
  }

  if (auto m = r.submap(*root, "restart", kRestartKeys, true)) {
    auto budget = r.uint(*m, "budget", 0, 1000000, std::nullopt, " (0 = never restart)");
    p.restart_budget = static_cast<uint32_t>(budget.value_or(0));
    p.restart_window = std::chrono::seconds(r.uint(*m, "window_s", 1, 86400, std::nullopt, " s").value_or(0));
    auto initial = r.uint(*m, "backoff_initial_ms", 0, 60000, std::nullopt, " ms");
    auto max = r.uint(*m, "backoff_max_ms", 0, 600000, std::nullopt, " ms");
    p.backoff_multiplier = r.real(*m, "backoff_multiplier", 1.0, 16.0).value_or(1.0);
    if (initial && max && *max < *initial) {
      r.error(m->find("backoff_max_ms")->line,
              "'restart.backoff_max_ms' (" + std::to_string(*max) + ") is below backoff_initial_ms (" +
                  std::to_string(*initial) + ")",
              "make backoff_max_ms at least " + std::to_string(*initial));
    }
    p.backoff_initial = ms(initial.value_or(0));
    p.backoff_max = ms(max.value_or(0));
  }

  p.standby = r.boolean(*root, "standby", false).value_or(false);
  p.zygote = r.boolean(*root, "zygote", false).value_or(false);
  p.guest_frontend = r.choice(*root, "guest_frontend", kGuestFrontends, "project").value_or("project");

  p.log_max_inflight = kDefaultLogMaxInflight;
  p.log_max_state_bytes = kDefaultLogMaxStateBytes;
  if (auto m = r.submap(*root, "log", kLogKeys, false)) {
    auto inflight = r.uint(*m, "max_inflight", 1, 65536, kDefaultLogMaxInflight);
    p.log_max_inflight = static_cast<uint32_t>(inflight.value_or(0));
    p.log_max_state_bytes =
        r.uint(*m, "max_state_bytes", 256, 67108864, kDefaultLogMaxStateBytes, " bytes").value_or(0);
  }

  if (!diags.empty()) {
    sort_by_line(diags);
    return std::unexpected(std::move(diags));
  }
  return p;
}

Parsed<Policy> load_policy(const std::filesystem::path& path, DeviceClass expected) {
  auto text = read_file(path, "policy", "check the path; config/policies/ has one file per class");
  if (!text) return std::unexpected(std::move(text.error()));
  return parse_policy_text(*text, path.string(), expected);
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
    << "  interval_ms: " << p.watchdog_interval.count() << "\n"
    << "  no_progress_multiple: " << p.no_progress_multiple << "\n"
    << "  no_progress_min_ms: " << p.no_progress_min.count() << "\n"
    << "  no_progress_max_ms: " << p.no_progress_max.count() << "\n"
    << "restart:\n"
    << "  budget: " << p.restart_budget << "\n"
    << "  window_s: " << p.restart_window.count() << "\n"
    << "  backoff_initial_ms: " << p.backoff_initial.count() << "\n"
    << "  backoff_max_ms: " << p.backoff_max.count() << "\n"
    << "  backoff_multiplier: " << detail::format_double(p.backoff_multiplier) << "\n"
    << "standby: " << (p.standby ? "true" : "false") << "\n"
    << "zygote: " << (p.zygote ? "true" : "false") << "\n"
    << "guest_frontend: " << p.guest_frontend << "\n"
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
