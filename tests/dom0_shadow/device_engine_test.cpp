// The recovery engine against fake plumbing, a fake splitter (standing in
// for either placement: the guest's frontend or a dom0 ring proxy) and fake
// class hooks: no root, no processes.
#include "device_engine.hpp"
#include "vsnd/vsnd_hooks.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <cerrno>
#include <filesystem>

namespace {

using namespace sd;
using namespace std::chrono_literals;
using dom0::DeviceEngine;
using dom0::ResumeTimes;

class FakeEvent final : public platform::EventChannel {
 public:
  Result<void> notify() override {
    ++notified;
    return {};
  }
  int wait_fd() const override { return -1; }
  Result<uint64_t> consume() override { return uint64_t{0}; }
  int notified = 0;
};

struct BackendOffer {
  platform::DomId peer;
  ctl::Msg attach;
  platform::BackendResources resources;
};

class FakePlumbing final : public platform::DevicePlumbing {
 public:
  size_t pages() const override { return 4; }
  void* page(platform::GrantRef) override { return nullptr; }
  bool frontend_in_guest() const override { return in_guest; }
  platform::EventChannel& frontend_end() override { return front; }
  platform::EventChannel& backend_end() override { return back; }
  Result<void> offer_frontend(ctl::Channel&, const ctl::Msg&, int) override { return {}; }
  Result<void> grant_to(const std::vector<platform::DomId>& peers) override {
    granted = peers;
    return {};
  }
  Result<void> offer_backend(ctl::Channel&, platform::DomId peer, const ctl::Msg& attach,
                             const platform::BackendResources& resources) override {
    offers.push_back({peer, attach, resources});
    return {};
  }
  FakeEvent front, back;
  bool in_guest = false;  // Xen: the frontend grants its own pool, repaired for every backend
  std::vector<platform::DomId> granted;
  std::vector<BackendOffer> offers;
};

// Stands in for where the splitter sits; records what the engine asks of it.
class FakeSplitter final : public dom0::Splitter {
 public:
  Result<void> start(Events& ev, std::optional<ctl::Channel>) override {
    events = &ev;
    return {};
  }
  void stop() override {}
  bool ready() const override { return is_ready; }
  void backend_gone() override { ++gone; }
  Result<void> repair(const std::string& mode, platform::DomId) override {
    repairs.push_back(mode);
    return {};
  }
  const shadow::SplitterLog& log() const override { return log_; }
  void backend_serving(uint64_t since_ns) override { serving_since = since_ns; }

  // What a frontend does: connect, map everything.
  void connect() {
    events->on_frontend_connected();
    is_ready = true;
    (void)events->on_frontend_ready();
  }
  Events* events = nullptr;
  bool is_ready = false;
  int gone = 0;
  uint64_t serving_since = 0;
  std::vector<std::string> repairs;
  shadow::SplitterLog log_;
};

class FakeHooks final : public dom0::ClassHooks {
 public:
  config::DeviceClass cls() const override { return config::DeviceClass::kVbd; }
  size_t pool_pages() const override { return 4; }
  size_t log_slots() const override { return 8; }
  Result<std::optional<ctl::Channel>> setup() override { return std::optional<ctl::Channel>(); }
  void backend_payload(ctl::Msg& m) const override { m.set_text("state"); }
  platform::BackendResources backend_resources() const override { return {{42}, {}}; }
  bool pre_attaches_standby() const override { return standby; }
  std::string active_mode() const override { return mode; }
  void start_active() override { ++active_started; }
  void stop_active() override { ++active_stopped; }
  std::optional<dom0::Stall> progress(bool serving) override {
    if (!serving || !stalled) return std::nullopt;
    return dom0::Stall{"stuck", platform::Clock::now()};
  }
  nlohmann::json status() const override { return {{"class_detail", 1}}; }
  bool standby = false;
  std::string mode;
  int active_started = 0, active_stopped = 0;
  bool stalled = false;
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config::DeviceSpec spec{};
    spec.cls = config::DeviceClass::kVbd;
    spec.index = 0;
    spec.backend = "blkdd";
    config::Policy policy{};
    policy.active_action = "queue";
    policy.heartbeat_interval = 5ms;
    policy.watchdog_interval = 5ms;
    policy.progress_timeout = 10ms;
    auto p = std::make_unique<FakePlumbing>();
    auto s = std::make_unique<FakeSplitter>();
    auto h = std::make_unique<FakeHooks>();
    plumbing = p.get();
    splitter = s.get();
    hooks = h.get();
    engine = std::make_unique<DeviceEngine>(
        io, "guest1", spec, kHandle, policy, log,
        [this](const std::string& cause, std::optional<platform::Clock::time_point>) { reports.push_back(cause); },
        std::move(p), std::move(s), std::move(h));
    ASSERT_TRUE(engine->setup());
    auto pair = ctl::Channel::pair();
    ASSERT_TRUE(pair);
    backend = std::move(pair->first);
    drvdom = std::move(pair->second);
    ASSERT_TRUE(drvdom.set_nonblocking(true));
  }

  DeviceEngine::Done record() {
    return [this](Result<ResumeTimes> r) { results.push_back(std::move(r)); };
  }
  void backend_says(platform::DomId from, uint32_t status, const std::string& text = "") {
    ctl::Msg m;
    m.type = ctl::MsgType::kDevAttached;
    m.a = status;
    m.b = kHandle;
    m.set_text(text);
    engine->on_backend_msg(from, m);
  }
  // The first incarnation serves the connected frontend.
  void serving(platform::DomId domid) {
    splitter->connect();
    engine->on_backend_ready(backend, domid, record());
    backend_says(domid, 0);
    results.clear();
    plumbing->offers.clear();
  }
  std::optional<ctl::Msg> sent_to_drvdom() {
    auto m = drvdom.recv();
    if (!m || !*m) return std::nullopt;
    return **m;
  }

  static constexpr uint64_t kHandle = 7;
  boost::asio::io_context io;
  dom0::EventLog log{std::nullopt};
  FakePlumbing* plumbing = nullptr;
  FakeSplitter* splitter = nullptr;
  FakeHooks* hooks = nullptr;
  std::unique_ptr<DeviceEngine> engine;
  ctl::Channel backend, drvdom;
  std::vector<Result<ResumeTimes>> results;
  std::vector<std::string> reports;
};

TEST_F(EngineTest, FirstBackend_GetsPoolStateAndResources) {
  splitter->connect();

  engine->on_backend_ready(backend, 3, record());

  ASSERT_EQ(plumbing->offers.size(), 1u);
  EXPECT_EQ(plumbing->granted, std::vector<platform::DomId>{3});
  EXPECT_EQ(plumbing->offers[0].peer, 3u);
  EXPECT_EQ(plumbing->offers[0].attach.type, ctl::MsgType::kDevAttach);
  EXPECT_EQ(plumbing->offers[0].attach.a, static_cast<uint32_t>(DeviceClass::kVbd));
  EXPECT_EQ(plumbing->offers[0].attach.b, kHandle);
  EXPECT_EQ(plumbing->offers[0].attach.get_text(), "state");
  EXPECT_EQ(plumbing->offers[0].resources.fds, std::vector<int>{42});
  EXPECT_TRUE(splitter->repairs.empty());
}

TEST_F(EngineTest, BackendAttached_RecoveryDoneAndBothEndsKicked) {
  splitter->connect();
  engine->on_backend_ready(backend, 3, record());
  EXPECT_EQ(splitter->serving_since, UINT64_MAX) << "during the handover no response is a service-time sample";
  uint64_t before = shadow::now_ns();

  backend_says(3, 0);

  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results[0]);
  EXPECT_TRUE(engine->backend_up());
  EXPECT_EQ(plumbing->front.notified, 1);
  EXPECT_EQ(plumbing->back.notified, 1);
  EXPECT_GE(splitter->serving_since, before) << "the log times service from the attach on";
  EXPECT_LE(splitter->serving_since, shadow::now_ns());
}

TEST_F(EngineTest, Fault_SplitterStopsTakingResponses) {
  serving(3);

  engine->on_fault();

  EXPECT_EQ(splitter->gone, 1);
  EXPECT_FALSE(engine->backend_up());
}

TEST_F(EngineTest, NewIncarnation_SplitterReplaysThenBackendAttached) {
  serving(3);
  engine->on_fault();
  engine->on_backend_dead();

  engine->on_backend_ready(backend, 4, record());
  ASSERT_EQ(splitter->repairs, std::vector<std::string>{"attach"});
  EXPECT_TRUE(plumbing->offers.empty());  // not before the replay
  splitter->events->on_repaired(5, "attach");
  ASSERT_EQ(plumbing->offers.size(), 1u);
  backend_says(4, 0);

  EXPECT_EQ(plumbing->offers[0].peer, 4u);
  EXPECT_EQ(plumbing->granted, std::vector<platform::DomId>{4});
  ASSERT_EQ(results.size(), 1u);
  ASSERT_TRUE(results[0]);
  EXPECT_EQ(results[0]->replayed, 5u);
}

TEST_F(EngineTest, QueueMode_NothingServedWhileDead) {
  serving(3);
  engine->on_fault();

  engine->on_backend_dead();

  EXPECT_TRUE(splitter->repairs.empty());
  EXPECT_EQ(hooks->active_started, 0);
}

TEST_F(EngineTest, ActiveMode_SplitterRepairsForShadowdWhichServes) {
  hooks->mode = "active";
  serving(3);
  engine->on_fault();

  engine->on_backend_dead();
  splitter->events->on_repaired(0, "active");

  EXPECT_EQ(splitter->repairs, std::vector<std::string>{"active"});
  EXPECT_EQ(hooks->active_started, 1);
}

TEST_F(EngineTest, ActiveMode_NewBackendStopsShadowdFirst) {
  hooks->mode = "active";
  serving(3);
  engine->on_fault();
  engine->on_backend_dead();
  splitter->events->on_repaired(0, "active");

  engine->on_backend_ready(backend, 4, record());

  EXPECT_EQ(hooks->active_stopped, 1);
  EXPECT_EQ(splitter->repairs.back(), "attach");
}

TEST_F(EngineTest, ActiveRepairAfterNewBackend_ShadowdDoesNotServe) {
  hooks->mode = "active";
  serving(3);
  engine->on_fault();
  engine->on_backend_dead();
  engine->on_backend_ready(backend, 4, record());

  splitter->events->on_repaired(0, "active");  // late: a backend took over

  EXPECT_EQ(hooks->active_started, 0);
}

TEST_F(EngineTest, BackendDiesDuringReplay_RecoveryFailsForTheNextRound) {
  serving(3);
  engine->on_fault();
  engine->on_backend_dead();
  engine->on_backend_ready(backend, 4, record());

  engine->on_fault();

  ASSERT_EQ(results.size(), 1u);
  ASSERT_FALSE(results[0]);
  EXPECT_EQ(results[0].error().code, Code::kRetry);
}

TEST_F(EngineTest, FrontendLeavesMidRecovery_RecoveryEndsAndBackendForgetsDevice) {
  serving(3);
  engine->on_fault();
  engine->on_backend_dead();
  engine->on_backend_ready(backend, 4, record());

  splitter->is_ready = false;
  splitter->events->on_frontend_gone("closed");

  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results[0]);
  auto m = sent_to_drvdom();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->type, ctl::MsgType::kDevDetach);
  EXPECT_EQ(m->b, kHandle);
}

TEST_F(EngineTest, NoFrontend_ResumesAtOnceAfterReturning) {
  engine->on_backend_ready(backend, 3, record());
  EXPECT_TRUE(results.empty());

  io.poll();

  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results[0]);
  EXPECT_TRUE(plumbing->offers.empty());
}

// shadowd's teardown destroys the engines, then runs the io_context again
// while the platform drains: an answer still queued for a destroyed engine
// must do nothing.
TEST_F(EngineTest, NoFrontend_EngineDestroyedBeforeAnswer_AnswerDropped) {
  engine->on_backend_ready(backend, 3, record());
  engine.reset();

  io.poll();

  EXPECT_TRUE(results.empty());
}

TEST_F(EngineTest, FrontendArrivesLater_AttachedToServingBackend) {
  engine->on_backend_ready(backend, 3, record());
  io.poll();

  splitter->connect();

  ASSERT_EQ(plumbing->offers.size(), 1u);
  EXPECT_EQ(plumbing->offers[0].peer, 3u);
}

TEST_F(EngineTest, BackendRefuses_RecoveryFailsWithRestartReplay) {
  splitter->connect();
  engine->on_backend_ready(backend, 3, record());

  backend_says(3, EINVAL, "no such disk");

  ASSERT_EQ(results.size(), 1u);
  ASSERT_FALSE(results[0]);
  EXPECT_EQ(results[0].error().code, Code::kRestartReplay);
  EXPECT_NE(results[0].error().message.find("no such disk"), std::string::npos);
}

TEST_F(EngineTest, AttachedFromOtherDomain_Ignored) {
  splitter->connect();
  engine->on_backend_ready(backend, 3, record());

  backend_says(9, 0);

  EXPECT_TRUE(results.empty());
  EXPECT_FALSE(engine->backend_up());
}

TEST_F(EngineTest, Standby_PreAttachedWithThePoolSharedWithTheRunningOne) {
  hooks->standby = true;
  serving(3);

  engine->on_standby_ready(backend, 5);

  ASSERT_EQ(plumbing->offers.size(), 1u);
  EXPECT_EQ(plumbing->offers[0].peer, 5u);
  EXPECT_TRUE(plumbing->offers[0].attach.a & ctl::kAttachStandby);
  EXPECT_EQ(plumbing->granted, (std::vector<platform::DomId>{5, 3}));
}

TEST_F(EngineTest, PromotedStandby_OnlyTold_Go) {
  hooks->standby = true;
  serving(3);
  engine->on_standby_ready(backend, 5);
  backend_says(5, 0, "standby");
  plumbing->offers.clear();
  engine->on_fault();
  engine->on_backend_dead();

  engine->on_backend_ready(backend, 5, record());
  splitter->events->on_repaired(2, "attach");

  EXPECT_TRUE(plumbing->offers.empty());
  auto m = sent_to_drvdom();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->type, ctl::MsgType::kDevGo);
  EXPECT_EQ(m->get_text(), "state");
  backend_says(5, 0);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results[0]);
}

TEST_F(EngineTest, StandbyNeverMapped_PromotionAttachesInFull) {
  hooks->standby = true;
  serving(3);
  engine->on_standby_ready(backend, 5);
  plumbing->offers.clear();
  engine->on_fault();
  engine->on_backend_dead();

  engine->on_backend_ready(backend, 5, record());
  splitter->events->on_repaired(0, "attach");

  ASSERT_EQ(plumbing->offers.size(), 1u);
  EXPECT_FALSE(plumbing->offers[0].attach.a & ctl::kAttachStandby);
}

TEST_F(EngineTest, BadResponseWhileServing_ReportedAsFault) {
  serving(3);

  splitter->events->on_bad_response("unknown id 64");

  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0], "bad response: unknown id 64");
}

TEST_F(EngineTest, BadResponseWhileDown_NotReportedAgain) {
  serving(3);
  engine->on_fault();

  splitter->events->on_bad_response("unknown id 64");

  EXPECT_TRUE(reports.empty());
}

TEST_F(EngineTest, OtherDevicesMessage_Ignored) {
  splitter->connect();
  engine->on_backend_ready(backend, 3, record());
  ctl::Msg m;
  m.type = ctl::MsgType::kDevAttached;
  m.b = kHandle + 1;

  engine->on_backend_msg(3, m);

  EXPECT_TRUE(results.empty());
}

TEST_F(EngineTest, StalledBackend_WatchdogReportsIt) {
  auto log = shadow::SplitterLog::create(8);
  ASSERT_TRUE(log);
  splitter->log_ = std::move(*log);
  serving(3);
  hooks->stalled = true;

  io.run_for(30ms);

  ASSERT_FALSE(reports.empty());
  EXPECT_EQ(reports[0], "stuck");
}

TEST_F(EngineTest, StalledButNotServing_NoReport) {
  auto log = shadow::SplitterLog::create(8);
  ASSERT_TRUE(log);
  splitter->log_ = std::move(*log);
  hooks->stalled = true;

  io.run_for(30ms);

  EXPECT_TRUE(reports.empty());
}

TEST_F(EngineTest, Status_CommonFieldsAndTheClassDetail) {
  serving(3);

  auto j = engine->status();

  EXPECT_EQ(j.value("backend_up", false), true);
  EXPECT_EQ(j.value("frontend_connected", false), true);
  EXPECT_EQ(j.value("class_detail", 0), 1);
}

}  // namespace

// A vsnd where shadowd maps neither the ring nor the splitter's log (Xen:
// the splitter is the dom0 sound proxy; shadowd's copy of the log stays
// empty): no active mode to repair for; the
// stream the splitter reports with its repair (kDevConfig) is what the next
// backend resumes, unless it does not check out; the DAC's voice is lent.
TEST(VsndEngine, LogNotShared_StreamReportedWithTheRepairReplayedDacLent) {
  boost::asio::io_context io;
  dom0::EventLog log{std::nullopt};
  char tmpl[] = "/tmp/sd-vsnd-engine-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  config::DeviceSpec spec{config::DeviceClass::kVsnd, 0, "snddd", {}, {}, 1};
  config::Policy policy{};
  policy.active_action = "silence";
  policy.heartbeat_interval = 50ms;
  auto p = std::make_unique<FakePlumbing>();
  auto s = std::make_unique<FakeSplitter>();
  auto* plumbing = p.get();
  plumbing->in_guest = true;
  auto* splitter = s.get();
  auto hooks = std::make_unique<dom0::VsndHooks>("guest5", spec, tmpl);
  auto* vsnd = hooks.get();
  DeviceEngine engine(io, "guest5", spec, 7, policy, log, [](const std::string&, auto) {}, std::move(p),
                      std::move(s), std::move(hooks));
  auto empty = shadow::SplitterLog::create(8);  // shadowd's copy, which the splitter never fills on Xen
  ASSERT_TRUE(empty);
  splitter->log_ = std::move(*empty);
  ASSERT_TRUE(engine.setup());
  EXPECT_EQ(vsnd->active_mode(), "");
  splitter->connect();
  auto pair = ctl::Channel::pair();
  ASSERT_TRUE(pair);
  sndif::StreamState st{};
  st.open = 1;
  st.run = static_cast<uint8_t>(sndif::Run::kRunning);
  st.params = {sndif::kRate, sndif::kFormat, sndif::kChannels, 0, 16384, sndif::kDirRef, 4096};
  st.acked = 12288;
  auto report = [&](const sndif::StreamState& state) {
    ctl::Msg m{.type = ctl::MsgType::kDevConfig, .b = 7};
    m.set_payload(state);
    splitter->events->on_config(m);
    splitter->events->on_repaired(0, "attach");
  };

  engine.on_backend_ready(pair->first, 3, [](Result<dom0::ResumeTimes>) {});
  report(st);

  ASSERT_EQ(plumbing->offers.size(), 1u);
  auto got = plumbing->offers[0].attach.get_payload<sndif::StreamState>();
  EXPECT_EQ(got.open, 1);
  EXPECT_EQ(got.run, st.run);
  EXPECT_EQ(got.acked, 12288u);
  EXPECT_EQ(got.params.buffer_sz, 16384u);
  EXPECT_NE(plumbing->offers[0].resources.memory, nullptr);  // the DAC's voice

  engine.on_fault();
  engine.on_backend_dead();
  EXPECT_EQ(splitter->repairs, (std::vector<std::string>{"attach"})) << "no active-mode repair";
  st.params.pcm_rate = 44100;  // not what the DAC plays: a closed stream instead
  engine.on_backend_ready(pair->first, 4, [](Result<dom0::ResumeTimes>) {});
  report(st);

  ASSERT_EQ(plumbing->offers.size(), 2u);
  EXPECT_EQ(plumbing->offers[1].attach.get_payload<sndif::StreamState>().open, 0);
  engine.teardown();
  std::filesystem::remove_all(tmpl);
}
