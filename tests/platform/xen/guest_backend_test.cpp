// dom0's end of an unmodified guest's PV device against the fakes: the test
// plays the guest's kernel frontend (its ring pages shared with gntshr, its
// event channel offered, its keys and state in xenstore) and checks the
// backend's handshake, the mapped rings, the grant copies and the errors a
// wrong or absent frontend gets.
#include <gtest/gtest.h>

#include <algorithm>

#include <cstring>

#include "fakes.hpp"
#include "sd/platform/xen/evtchn.hpp"
#include "sd/platform/xen/guest_backend.hpp"

extern "C" {
#include <xengnttab.h>
}

namespace sd::xen {
namespace {

const std::string kBack = "/local/domain/0/backend/vif-proxy/5/0";
const std::string kFront = "/local/domain/5/device/vif/0";

class GuestBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake::gnt_reset();
    fake::xenstore_reset();
    auto& kv = fake::xenstore().kv;
    kv[kBack + "/frontend"] = kFront;
    kv[kBack + "/frontend-id"] = "5";
    gntshr_ = xengntshr_open(nullptr, 0);
    uint32_t refs[2];
    pages_ = static_cast<uint8_t*>(xengntshr_share_pages(gntshr_, 0, 2, refs, 1));
    ASSERT_NE(pages_, nullptr);
    auto evt = XenEventChannel::offer(0);
    ASSERT_TRUE(evt);
    evt_ = std::move(*evt);
    kv[kFront + "/tx-ring-ref"] = std::to_string(refs[0]);
    kv[kFront + "/rx-ring-ref"] = std::to_string(refs[1]);
    kv[kFront + "/event-channel"] = std::to_string(evt_->port());
    kv[kFront + "/request-rx-copy"] = "1";
  }
  void TearDown() override {
    evt_.reset();
    if (pages_) (void)xengntshr_unshare(gntshr_, pages_, 2);
    xengntshr_close(gntshr_);
    EXPECT_EQ(fake::gnt().open_handles, 0);
    fake::gnt_reset();
    fake::xenstore_reset();
  }
  Result<GuestFrontend> connect(int timeout_ms = 1000) {
    return connect_guest_frontend(kBack, {{"feature-rx-copy", "1"}}, {"tx-ring-ref", "rx-ring-ref"},
                                  {"request-rx-copy", "feature-sg"}, timeout_ms);
  }

  xengntshr_handle* gntshr_ = nullptr;
  uint8_t* pages_ = nullptr;
  std::unique_ptr<XenEventChannel> evt_;
};

TEST_F(GuestBackendTest, FrontendConnected_RingsMappedEventBoundStatesAndFeaturesWritten) {
  fake::xenstore().kv[kFront + "/state"] = "4";
  std::strcpy(reinterpret_cast<char*>(pages_ + 4096), "the guest's rx ring");

  auto g = connect();

  ASSERT_TRUE(g) << g.error().to_string();
  EXPECT_EQ(g->domid, 5u);
  ASSERT_EQ(g->rings.size(), 2u);
  EXPECT_STREQ(reinterpret_cast<char*>(g->rings[1]), "the guest's rx ring");
  std::strcpy(reinterpret_cast<char*>(g->rings[0]), "dom0 answers");
  EXPECT_STREQ(reinterpret_cast<char*>(pages_), "dom0 answers");
  EXPECT_EQ(g->keys, (std::map<std::string, std::string>{{"request-rx-copy", "1"}}));
  auto& kv = fake::xenstore().kv;
  EXPECT_EQ(kv[kBack + "/feature-rx-copy"], "1");
  EXPECT_EQ(kv[kBack + "/state"], "4");
  // InitWait went before Connected.
  std::vector<std::string> states;
  for (const auto& [path, v] : fake::xenstore().writes)
    if (path == kBack + "/state") states.push_back(v);
  EXPECT_EQ(states, (std::vector<std::string>{"2", "4"}));
  ASSERT_EQ(g->evts.size(), 1u);
  ASSERT_TRUE(g->evts[0]->notify());
}

// A sound stream's keys sit in the stream's own directory, and it has two
// event channels (requests, and the event page): both bound, in order.
TEST_F(GuestBackendTest, StreamKeysInASubdirectoryAndTwoEventChannels_BothBound) {
  auto& kv = fake::xenstore().kv;
  kv[kFront + "/state"] = "3";
  kv[kFront + "/0/0/ring-ref"] = kv[kFront + "/tx-ring-ref"];
  kv[kFront + "/0/0/evt-ring-ref"] = kv[kFront + "/rx-ring-ref"];
  auto second = XenEventChannel::offer(0);
  ASSERT_TRUE(second);
  kv[kFront + "/0/0/event-channel"] = std::to_string(evt_->port());
  kv[kFront + "/0/0/evt-event-channel"] = std::to_string((*second)->port());

  {
    auto g = connect_guest_frontend(kBack, {}, {"0/0/ring-ref", "0/0/evt-ring-ref"}, {}, 1000,
                                    {"0/0/event-channel", "0/0/evt-event-channel"});

    ASSERT_TRUE(g) << g.error().to_string();
    EXPECT_EQ(g->rings.size(), 2u);
    ASSERT_EQ(g->evts.size(), 2u);
    EXPECT_TRUE(g->evts[1]->notify());
  }
  kv.erase(kFront + "/0/0/event-channel");
  auto missing = connect_guest_frontend(kBack, {}, {"0/0/ring-ref"}, {}, 1000,
                                        {"0/0/event-channel", "0/0/evt-event-channel"});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("0/0/event-channel"), std::string::npos) << missing.error().message;
}

TEST_F(GuestBackendTest, GrantCopy_BothWaysThroughTheGuestsPage_UngrantedRefRefused) {
  fake::xenstore().kv[kFront + "/state"] = "3";
  auto g = connect();
  ASSERT_TRUE(g) << g.error().to_string();
  uint32_t ref = static_cast<uint32_t>(std::stoul(fake::xenstore().kv[kFront + "/rx-ring-ref"]));
  ASSERT_TRUE(g->grants->copy_to(ref, 100, "frame", 6));
  EXPECT_STREQ(reinterpret_cast<char*>(pages_ + 4096 + 100), "frame");
  char back[6] = {};
  ASSERT_TRUE(g->grants->copy_from(ref, 100, back, 6));
  EXPECT_STREQ(back, "frame");
  auto bad = g->grants->copy_from(9999, 0, back, 6);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Code::kInvalidInput);
  EXPECT_FALSE(g->grants->copy_to(ref, 4000, back, 200));  // beyond the page
}

TEST_F(GuestBackendTest, GrantCopyBatch_OneBadOpFailsAloneTheOthersAreDone) {
  fake::xenstore().kv[kFront + "/state"] = "4";
  auto g = connect();
  ASSERT_TRUE(g) << g.error().to_string();
  uint32_t ref = static_cast<uint32_t>(std::stoul(fake::xenstore().kv[kFront + "/rx-ring-ref"]));
  char a[4] = "one", b[4] = "two", c[4] = "six";
  auto* pa = reinterpret_cast<uint8_t*>(a);
  auto* pb = reinterpret_cast<uint8_t*>(b);
  auto* pc = reinterpret_cast<uint8_t*>(c);
  GrantCopy ops[3] = {{ref, 0, 4, pa, true, false}, {9999, 0, 4, pb, true, false}, {ref, 8, 4, pc, true, false}};
  int before = fake::gnt().copies;

  g->grants->copy(ops, 3);

  EXPECT_TRUE(ops[0].ok);
  EXPECT_FALSE(ops[1].ok);
  EXPECT_TRUE(ops[2].ok);
  EXPECT_STREQ(reinterpret_cast<char*>(pages_ + 4096), "one");
  EXPECT_STREQ(reinterpret_cast<char*>(pages_ + 4096 + 8), "six");
  EXPECT_EQ(fake::gnt().copies - before, 2);  // the bad ref's segment failed in the same call
}

TEST_F(GuestBackendTest, RingRefNotANumber_InvalidInputNamesTheKey) {
  fake::xenstore().kv[kFront + "/state"] = "4";
  fake::xenstore().kv[kFront + "/tx-ring-ref"] = "12abc";
  auto g = connect();
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().code, Code::kInvalidInput);
  EXPECT_NE(g.error().message.find("tx-ring-ref"), std::string::npos) << g.error().message;
}

TEST_F(GuestBackendTest, RingRefNotGranted_InvalidInput) {
  fake::xenstore().kv[kFront + "/state"] = "4";
  fake::xenstore().kv[kFront + "/rx-ring-ref"] = "4000000";
  auto g = connect();
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().code, Code::kInvalidInput);
  EXPECT_EQ(fake::gnt().mapped_pages, 0);  // the tx ring mapped first is unmapped again
}

TEST_F(GuestBackendTest, FrontendNeverConnects_UnavailableAfterTheTimeout) {
  fake::xenstore().kv[kFront + "/state"] = "1";
  auto g = connect(100);
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().code, Code::kUnavailable);
  EXPECT_NE(g.error().message.find("did not publish its rings"), std::string::npos) << g.error().message;
  EXPECT_EQ(fake::xenstore().kv[kBack + "/state"], "2");  // still waiting for it
}

// The proxy tries again while the guest is slow: InitWait is written once,
// since each write fires the frontend's watch and snd-xen-front starts its
// handshake over (new rings and ports) at every InitWait it sees.
TEST_F(GuestBackendTest, TriedAgainWhileTheFrontendIsSlow_InitWaitWrittenOnce) {
  auto& xs = fake::xenstore();
  xs.kv[kFront + "/state"] = "1";
  ASSERT_FALSE(connect(50));
  ASSERT_FALSE(connect(50));
  xs.kv[kFront + "/state"] = "3";
  ASSERT_TRUE(connect(50));

  auto initwaits = std::count(xs.writes.begin(), xs.writes.end(), std::make_pair(kBack + "/state", std::string("2")));
  EXPECT_EQ(initwaits, 1);
  EXPECT_EQ(xs.kv[kBack + "/state"], "4");
}

TEST_F(GuestBackendTest, NoFrontendLaidOut_InvalidInput) {
  fake::xenstore().kv.erase(kBack + "/frontend-id");
  auto g = connect();
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().code, Code::kInvalidInput);
}

// A frontend that closes (driver unbound, guest shutting down), re-probes
// (Initialising) or vanishes with its domain has left; one that is
// connected or still handshaking has not, nor one whose state cannot be
// read or is garbage. Closing the backend says Closed.
TEST_F(GuestBackendTest, FrontendLeft_ClosingClosedReprobedOrGone) {
  auto& kv = fake::xenstore().kv;
  for (auto [state, left] : std::vector<std::pair<const char*, bool>>{
           {"4", false}, {"3", false}, {"5", true}, {"6", true}, {"1", true}, {"0", true}, {"x", false}}) {
    kv[kFront + "/state"] = state;
    EXPECT_EQ(guest_frontend_left(kBack), left) << "frontend state " << state;
  }
  kv[kFront + "/state"] = "6";
  fake::xenstore().read_errno = EAGAIN;
  EXPECT_FALSE(guest_frontend_left(kBack));  // no answer is no news: keep serving
  fake::xenstore().read_errno = 0;
  kv.erase(kFront + "/state");
  EXPECT_TRUE(guest_frontend_left(kBack));  // the guest's directory is gone
  kv.erase(kBack + "/frontend");
  EXPECT_TRUE(guest_frontend_left(kBack));  // the device was removed

  close_guest_backend(kBack);
  EXPECT_EQ(kv[kBack + "/state"], "6");
}

}  // namespace
}  // namespace sd::xen
