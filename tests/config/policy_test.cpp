// Policy YAML: the shipped policies, each kind of bad input (file + line +
// hint), the YAML round trip and the restart backoff.
#include "sd/config/policy.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace sd::config {
namespace test {
::testing::AssertionResult HasDiag(const Diagnostics& diags, std::string_view file, int line, std::string_view text);
}  // namespace test
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using test::HasDiag;

const std::filesystem::path kSource = SD_CONFIG_SOURCE_DIR;
const std::filesystem::path kData = SD_CONFIG_TEST_DATA;

// A complete valid vif policy; tests change one line of it. Line numbers:
//  1 class  2 active_mode  3 action  4 queue_limit  5 heartbeat  6 interval_ms
//  7 timeout_ms  8 watchdog  9 progress_timeout_ms  10 restart  11 budget
// 12 window_s  13 backoff_initial_ms  14 backoff_max_ms  15 backoff_multiplier
constexpr std::string_view kGood = R"(class: vif
active_mode:
  action: drop
  queue_limit: 100
heartbeat:
  interval_ms: 10
  timeout_ms: 40
watchdog:
  progress_timeout_ms: 300
restart:
  budget: 3
  window_s: 30
  backoff_initial_ms: 10
  backoff_max_ms: 1000
  backoff_multiplier: 1.5
)";

// kGood with `from` replaced by `to` (which may add or remove lines).
std::string edited(std::string_view from, std::string_view to) {
  std::string s(kGood);
  auto at = s.find(from);
  if (at == std::string::npos)
    ADD_FAILURE() << "fixture text not found: " << from;
  else
    s.replace(at, from.size(), to);
  return s;
}

Policy sample_policy(milliseconds initial, milliseconds max, double multiplier) {
  auto p = parse_policy_text(kGood, "sample.yaml", DeviceClass::kVif);
  EXPECT_TRUE(p) << to_string(p.error());
  p->backoff_initial = initial;
  p->backoff_max = max;
  p->backoff_multiplier = multiplier;
  return *p;
}

// ------------------------------------------------------------ good input

TEST(Policy, ShippedVif_HasDocumentedValues) {
  auto p = load_policy(kSource / "policies/vif.yaml", DeviceClass::kVif);

  ASSERT_TRUE(p) << to_string(p.error());
  EXPECT_EQ(p->cls, DeviceClass::kVif);
  EXPECT_EQ(p->active_action, "queue");
  EXPECT_EQ(p->queue_limit, 1024u);
  EXPECT_EQ(p->heartbeat_interval, milliseconds(50));
  EXPECT_EQ(p->heartbeat_timeout, milliseconds(250));
  EXPECT_EQ(p->progress_timeout, milliseconds(500));
  EXPECT_EQ(p->watchdog_interval, milliseconds(5));
  EXPECT_EQ(p->no_progress_multiple, 4u);
  EXPECT_EQ(p->no_progress_min, milliseconds(20));
  EXPECT_EQ(p->no_progress_max, milliseconds(500)) << "no cap of its own: a 30 ms cap made 145 false positives in a soak";
  EXPECT_EQ(p->restart_budget, 20u);
  EXPECT_EQ(p->restart_window, seconds(60));
  EXPECT_EQ(p->backoff_initial, milliseconds(0));
  EXPECT_EQ(p->backoff_max, milliseconds(2000));
  EXPECT_DOUBLE_EQ(p->backoff_multiplier, 2.0);
  EXPECT_FALSE(p->standby);
  EXPECT_EQ(p->log_max_inflight, 256u);
  EXPECT_EQ(p->log_max_state_bytes, 65536u);
}

TEST(Policy, ShippedVsnd_HasDocumentedValues) {
  auto p = load_policy(kSource / "policies/vsnd.yaml", DeviceClass::kVsnd);

  ASSERT_TRUE(p) << to_string(p.error());
  EXPECT_EQ(p->active_action, "silence");
  EXPECT_EQ(p->heartbeat_interval, milliseconds(20));
  EXPECT_EQ(p->heartbeat_timeout, milliseconds(100));
  EXPECT_EQ(p->progress_timeout, milliseconds(100));
  EXPECT_EQ(p->watchdog_interval, milliseconds(20)) << "the heartbeat's interval when not given";
  EXPECT_EQ(p->no_progress_multiple, 0u) << "the DAC finds the vsnd's hangs, not the fast rule";
}

TEST(Policy, ShippedVbd_HasDocumentedValues) {
  auto p = load_policy(kSource / "policies/vbd.yaml", DeviceClass::kVbd);

  ASSERT_TRUE(p) << to_string(p.error());
  EXPECT_EQ(p->active_action, "queue");
  EXPECT_EQ(p->queue_limit, 256u);
  EXPECT_EQ(p->heartbeat_interval, milliseconds(50));
  EXPECT_EQ(p->heartbeat_timeout, milliseconds(250));
  EXPECT_EQ(p->progress_timeout, milliseconds(1000));
  EXPECT_EQ(p->watchdog_interval, milliseconds(5));
  EXPECT_EQ(p->no_progress_multiple, 4u);
  EXPECT_EQ(p->no_progress_min, milliseconds(20));
  EXPECT_EQ(p->no_progress_max, milliseconds(1000)) << "the vbd's cap is its progress timeout";
}

TEST(Policy, StandbyAndLogLeftOut_TakeDefaults) {
  auto p = parse_policy_text(kGood, "p.yaml", DeviceClass::kVif);

  ASSERT_TRUE(p) << to_string(p.error());
  EXPECT_FALSE(p->standby);
  EXPECT_EQ(p->log_max_inflight, 256u);
  EXPECT_EQ(p->log_max_state_bytes, 65536u);
  EXPECT_EQ(p->file, "p.yaml");
  EXPECT_EQ(p->watchdog_interval, p->heartbeat_interval);
  EXPECT_EQ(p->no_progress_multiple, 0u);
  EXPECT_EQ(p->no_progress_min, milliseconds(50));
}

TEST(Policy, NoProgressRule_ReadAndCheckedAndShown) {
  auto p = parse_policy_text(edited("  progress_timeout_ms: 300\n",
                                    "  progress_timeout_ms: 300\n  interval_ms: 7\n  no_progress_multiple: 4\n"
                                    "  no_progress_min_ms: 15\n  no_progress_max_ms: 40\n"),
                             "vif.yaml", DeviceClass::kVif);
  ASSERT_TRUE(p) << to_string(p.error());
  EXPECT_EQ(p->watchdog_interval, milliseconds(7));
  EXPECT_EQ(p->no_progress_multiple, 4u);
  EXPECT_EQ(p->no_progress_min, milliseconds(15));
  EXPECT_EQ(p->no_progress_max, milliseconds(40));
  auto again = parse_policy_text(policy_to_yaml(*p), "shown.yaml", DeviceClass::kVif);
  ASSERT_TRUE(again) << to_string(again.error());
  EXPECT_EQ(again->watchdog_interval, milliseconds(7));
  EXPECT_EQ(again->no_progress_multiple, 4u);
  EXPECT_EQ(again->no_progress_min, milliseconds(15));
  EXPECT_EQ(again->no_progress_max, milliseconds(40));

  auto unset = parse_policy_text(kGood, "vif.yaml", DeviceClass::kVif);
  ASSERT_TRUE(unset) << to_string(unset.error());
  EXPECT_EQ(unset->no_progress_max, milliseconds(300)) << "no cap of its own: progress_timeout_ms";

  auto below = parse_policy_text(edited("  progress_timeout_ms: 300\n",
                                        "  progress_timeout_ms: 300\n  no_progress_min_ms: 30\n"
                                        "  no_progress_max_ms: 20\n"),
                                 "vif.yaml", DeviceClass::kVif);
  ASSERT_FALSE(below);
  EXPECT_NE(to_string(below.error()).find("at least no_progress_min_ms"), std::string::npos)
      << to_string(below.error());

  auto bad = parse_policy_text(
      edited("  progress_timeout_ms: 300\n", "  progress_timeout_ms: 300\n  no_progress_min_ms: 0\n"), "vif.yaml",
      DeviceClass::kVif);
  ASSERT_FALSE(bad);
  std::string text = to_string(bad.error());
  EXPECT_NE(text.find("vif.yaml:10"), std::string::npos) << text;
  EXPECT_NE(text.find("no_progress_min_ms"), std::string::npos) << text;
}

TEST(Policy, StandbyAndLogGiven_AreRead) {
  auto p =
      parse_policy_text(std::string(kGood) + "standby: true\nlog:\n  max_inflight: 8\n", "p.yaml", DeviceClass::kVif);

  ASSERT_TRUE(p) << to_string(p.error());
  EXPECT_TRUE(p->standby);
  EXPECT_EQ(p->log_max_inflight, 8u);
  EXPECT_EQ(p->log_max_state_bytes, 65536u);
}

TEST(Policy, Zygote_DefaultOffTrueReadNotABooleanRefusedAtItsLine) {
  auto def = parse_policy_text(kGood, "p.yaml", DeviceClass::kVif);
  auto on = parse_policy_text(std::string(kGood) + "zygote: true\n", "p.yaml", DeviceClass::kVif);
  auto bad = parse_policy_text(std::string(kGood) + "zygote: maybe\n", "p.yaml", DeviceClass::kVif);

  ASSERT_TRUE(def) << to_string(def.error());
  EXPECT_FALSE(def->zygote);
  ASSERT_TRUE(on) << to_string(on.error());
  EXPECT_TRUE(on->zygote);
  ASSERT_FALSE(bad);
  EXPECT_NE(to_string(bad.error()).find("p.yaml:"), std::string::npos) << to_string(bad.error());
  EXPECT_NE(to_string(bad.error()).find("zygote"), std::string::npos) << to_string(bad.error());
}

TEST(Policy, GuestFrontend_DefaultProjectKernelReadOtherRefusedAtItsLine) {
  auto def = parse_policy_text(kGood, "p.yaml", DeviceClass::kVif);
  ASSERT_TRUE(def) << to_string(def.error());
  EXPECT_EQ(def->guest_frontend, "project");
  auto kernel = parse_policy_text(std::string(kGood) + "guest_frontend: kernel\n", "p.yaml", DeviceClass::kVif);
  ASSERT_TRUE(kernel) << to_string(kernel.error());
  EXPECT_EQ(kernel->guest_frontend, "kernel");
  auto bad = parse_policy_text(std::string(kGood) + "guest_frontend: netfront\n", "p.yaml", DeviceClass::kVif);
  ASSERT_FALSE(bad);
  std::string text = to_string(bad.error());
  EXPECT_NE(text.find("guest_frontend"), std::string::npos) << text;
  EXPECT_NE(text.find("kernel"), std::string::npos) << text;  // the hint names the choices
}

TEST(Policy, ToYaml_ParsesBackToSamePolicy) {
  auto original = load_policy(kSource / "policies/vsnd.yaml", DeviceClass::kVsnd);
  ASSERT_TRUE(original) << to_string(original.error());

  auto again = parse_policy_text(policy_to_yaml(*original), "shown.yaml", DeviceClass::kVsnd);

  ASSERT_TRUE(again) << to_string(again.error());
  EXPECT_EQ(again->active_action, original->active_action);
  EXPECT_EQ(again->queue_limit, original->queue_limit);
  EXPECT_EQ(again->heartbeat_timeout, original->heartbeat_timeout);
  EXPECT_EQ(again->restart_window, original->restart_window);
  EXPECT_EQ(again->backoff_max, original->backoff_max);
  EXPECT_DOUBLE_EQ(again->backoff_multiplier, original->backoff_multiplier);
  EXPECT_EQ(again->standby, original->standby);
  EXPECT_EQ(again->log_max_state_bytes, original->log_max_state_bytes);
}

TEST(Policy, ToYaml_ShowsClassAndFractionalMultiplier) {
  auto p = parse_policy_text(kGood, "p.yaml", DeviceClass::kVif);
  ASSERT_TRUE(p) << to_string(p.error());

  std::string yaml = policy_to_yaml(*p);

  EXPECT_NE(yaml.find("class: vif\n"), std::string::npos);
  EXPECT_NE(yaml.find("  backoff_multiplier: 1.5\n"), std::string::npos);
}

TEST(RestartBackoff, FirstRestart_IsInitial) {
  Policy p = sample_policy(milliseconds(10), milliseconds(1000), 2.0);

  EXPECT_EQ(restart_backoff(p, 0), milliseconds(10));
}

TEST(RestartBackoff, LaterRestarts_GrowByMultiplier) {
  Policy p = sample_policy(milliseconds(10), milliseconds(1000), 2.0);

  EXPECT_EQ(restart_backoff(p, 3), milliseconds(80));
}

TEST(RestartBackoff, ManyRestarts_AreCappedAtMax) {
  Policy p = sample_policy(milliseconds(10), milliseconds(1000), 2.0);

  EXPECT_EQ(restart_backoff(p, 4000), milliseconds(1000));
}

TEST(RestartBackoff, ZeroInitial_IsAlwaysImmediate) {
  Policy p = sample_policy(milliseconds(0), milliseconds(2000), 2.0);

  EXPECT_EQ(restart_backoff(p, 5), milliseconds(0));
}

// ------------------------------------------------------------ bad input

TEST(Policy, UnknownTopLevelKey_ReportsLineAndNearestKey) {
  auto p = parse_policy_text(std::string(kGood) + "stanby: true\n", "vif.yaml", DeviceClass::kVif);

  ASSERT_FALSE(p);
  EXPECT_TRUE(HasDiag(p.error(), "vif.yaml", 16, "unknown key 'stanby'"));
  EXPECT_TRUE(HasDiag(p.error(), "vif.yaml", 16, "did you mean 'standby'?"));
}

TEST(Policy, UnknownNestedKey_ReportsLineAndDottedPath) {
  auto p = parse_policy_text(edited("  timeout_ms: 40\n", "  timeout_ms: 40\n  jitter_ms: 5\n"), "vif.yaml",
                             DeviceClass::kVif);

  ASSERT_FALSE(p);
  EXPECT_TRUE(HasDiag(p.error(), "vif.yaml", 8, "unknown key 'heartbeat.jitter_ms'"));
}

TEST(Policy, QuotedNumber_ReportsWrongType) {
  auto p = parse_policy_text(edited("queue_limit: 100", "queue_limit: \"100\""), "vif.yaml", DeviceClass::kVif);

  ASSERT_FALSE(p);
  EXPECT_TRUE(HasDiag(p.error(), "vif.yaml", 4, "must be a number, not the quoted string"));
}

TEST(Policy, WordForNumber_ReportsWrongType) {
  auto p = parse_policy_text(edited("window_s: 30", "window_s: half-minute"), "vif.yaml", DeviceClass::kVif);

  ASSERT_FALSE(p);
  EXPECT_TRUE(HasDiag(p.error(), "vif.yaml", 12, "'restart.window_s' must be a whole number"));
}

TEST(Policy, ScalarWhereMappingExpected_ReportsWrongType) {
  auto p = parse_policy_text(edited("watchdog:\n  progress_timeout_ms: 300\n", "watchdog: 300\n"), "vif.yaml",
                             DeviceClass::kVif);

  ASSERT_FALSE(p);
  EXPECT_TRUE(HasDiag(p.error(), "vif.yaml", 8, "'watchdog' must be a mapping"));
}

TEST(Policy, ListForNumber_ReportsWrongType) {
  auto p = parse_policy_text(edited("budget: 3", "budget: [3]"), "vif.yaml", DeviceClass::kVif);

  ASSERT_FALSE(p);
  EXPECT_TRUE(HasDiag(p.error(), "vif.yaml", 11, "'restart.budget' must be a whole number, not a list"));
}

TEST(Policy, BoolAsYes_ReportsTrueOrFalse) {
  auto p = parse_policy_text(std::string(kGood) + "standby: yes\n", "vif.yaml", DeviceClass::kVif);

  ASSERT_FALSE(p);
  EXPECT_TRUE(HasDiag(p.error(), "vif.yaml", 16, "'standby' must be true or false"));
}

TEST(Policy, QueueLimitZero_ReportsOutOfRangeWithBounds) {
  auto p = parse_policy_text(edited("queue_limit: 100", "queue_limit: 0"), "vif.yaml", DeviceClass::kVif);

  ASSERT_FALSE(p);
  EXPECT_TRUE(HasDiag(p.error(), "vif.yaml", 4, "out of range (hint: use a whole number from 1 to 1048576"));
}

TEST(Policy, NegativeBudget_ReportsOutOfRange) {
  auto p = parse_policy_text(edited("budget: 3", "budget: -1"), "vif.yaml", DeviceClass::kVif);

  ASSERT_FALSE(p);
  EXPECT_TRUE(HasDiag(p.error(), "vif.yaml", 11, "'restart.budget' = -1 is out of range"));
}

TEST(Policy, MultiplierAboveSixteen_ReportsOutOfRange) {
  auto p =
      parse_policy_text(edited("backoff_multiplier: 1.5", "backoff_multiplier: 16.5"), "vif.yaml", DeviceClass::kVif);

  ASSERT_FALSE(p);
  EXPECT_TRUE(HasDiag(p.error(), "vif.yaml", 15, "from 1.0 to 16.0"));
}

TEST(Policy, HeartbeatTimeoutNotAboveInterval_ReportsTimeoutLine) {
  auto p = parse_policy_text(edited("timeout_ms: 40", "timeout_ms: 10"), "vif.yaml", DeviceClass::kVif);

  ASSERT_FALSE(p);
  EXPECT_TRUE(HasDiag(p.error(), "vif.yaml", 7, "must be greater than interval_ms (10)"));
}

TEST(Policy, BackoffMaxBelowInitial_ReportsMaxLine) {
  auto p = parse_policy_text(edited("backoff_max_ms: 1000", "backoff_max_ms: 5"), "vif.yaml", DeviceClass::kVif);

  ASSERT_FALSE(p);
  EXPECT_TRUE(HasDiag(p.error(), "vif.yaml", 14, "is below backoff_initial_ms (10)"));
}

TEST(Policy, ActionNotAvailableForClass_ListsAllowedActions) {
  auto p = parse_policy_text(edited("class: vif", "class: vsnd"), "vsnd.yaml", DeviceClass::kVsnd);

  ASSERT_FALSE(p);
  EXPECT_TRUE(HasDiag(p.error(), "vsnd.yaml", 3, "'active_mode.action' cannot be 'drop' (hint: use one of: silence)"));
}

TEST(Policy, ClassOfOtherFile_ReportsMismatch) {
  auto p = parse_policy_text(kGood, "vbd.yaml", DeviceClass::kVbd);

  ASSERT_FALSE(p);
  EXPECT_TRUE(HasDiag(p.error(), "vbd.yaml", 1, "class is 'vif' but this file is loaded as the vbd policy"));
}

TEST(Policy, MissingNestedKey_ReportsParentLine) {
  auto p = parse_policy_text(edited("  interval_ms: 10\n", ""), "vif.yaml", DeviceClass::kVif);

  ASSERT_FALSE(p);
  EXPECT_TRUE(HasDiag(p.error(), "vif.yaml", 5, "missing required key 'heartbeat.interval_ms'"));
}

TEST(Policy, MissingSection_ReportsFileAndHowToAddIt) {
  auto p = parse_policy_text(edited("watchdog:\n  progress_timeout_ms: 300\n", ""), "vif.yaml", DeviceClass::kVif);

  ASSERT_FALSE(p);
  EXPECT_TRUE(HasDiag(p.error(), "vif.yaml", 0, "missing required key 'watchdog' (hint: add 'watchdog:'"));
}

TEST(Policy, DuplicateKey_ReportsSecondLine) {
  auto p = parse_policy_text(edited("  budget: 3\n", "  budget: 3\n  budget: 4\n"), "vif.yaml", DeviceClass::kVif);

  ASSERT_FALSE(p);
  EXPECT_TRUE(HasDiag(p.error(), "vif.yaml", 12, "'restart.budget' is set twice (first on line 11)"));
}

TEST(Policy, UnclosedFlowList_ReportsOpeningLine) {
  auto p =
      parse_policy_text("class: vif\nactive_mode:\n  action: [queue\nheartbeat: 1\n", "vif.yaml", DeviceClass::kVif);

  ASSERT_FALSE(p);
  EXPECT_TRUE(HasDiag(p.error(), "vif.yaml", 3, "YAML syntax error: a '[' or '{' opened on this line is never closed"));
}

TEST(Policy, YamlSyntaxErrorInMapping_ReportsLine) {
  auto p =
      parse_policy_text("class: vif\nactive_mode:\n  action: queue\n queue_limit: 5\n", "vif.yaml", DeviceClass::kVif);

  ASSERT_FALSE(p);
  EXPECT_TRUE(HasDiag(p.error(), "vif.yaml", 4, "YAML syntax error"));
}

TEST(Policy, TabIndentation_ReportsYamlErrorLine) {
  auto p = parse_policy_text("class: vif\nactive_mode:\n\taction: queue\n", "vif.yaml", DeviceClass::kVif);

  ASSERT_FALSE(p);
  EXPECT_TRUE(HasDiag(p.error(), "vif.yaml", 3, "YAML syntax error"));
}

TEST(Policy, EmptyFile_ReportsEmpty) {
  auto p = parse_policy_text("# nothing\n", "vif.yaml", DeviceClass::kVif);

  ASSERT_FALSE(p);
  EXPECT_TRUE(HasDiag(p.error(), "vif.yaml", 0, "the file is empty"));
}

TEST(Policy, FixtureFileOutOfRange_ReportsRealPathAndLine) {
  auto path = kData / "policies/bad_vbd/vbd.yaml";

  auto p = load_policy(path, DeviceClass::kVbd);

  ASSERT_FALSE(p);
  EXPECT_TRUE(HasDiag(p.error(), path.string(), 5, "'active_mode.queue_limit' = 0 is out of range"));
}

TEST(Policy, MissingFile_ReportsPath) {
  auto path = kData / "policies/nope.yaml";

  auto p = load_policy(path, DeviceClass::kVif);

  ASSERT_FALSE(p);
  EXPECT_TRUE(HasDiag(p.error(), path.string(), 0, "cannot read the policy"));
}

}  // namespace
}  // namespace sd::config
