// End-to-end for one sound driver domain serving two guests: each guest has
// a sound card (a vsnd) on the same driver domain, and each plays music with
// an unmodified aplay through the ALSA plugin, both at once, while the
// driver domain is killed three times. Asserts what the listeners and the
// players see: both aplay exit 0 without an xrun or error message, and each
// card's recording (the virtual DAC's) is its input apart from gaps of
// silence, none longer than 20 ms.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "e2e_util.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;
using sd::e2e::Background;
using sd::e2e::wait_until;

constexpr int kGuests = 2;
constexpr double kMaxGapMs = 20;

// One guest's sound card as the test uses it: shadowd's device and its player.
struct Card {
  std::string device, socket, wav, alsa_conf;
  std::unique_ptr<Background> aplay;
};

class VsndMultiCardE2eTest : public sd::e2e::DriverDomainTest {
 protected:
  void SetUp() override {
    make_dir("vsndmulti", "msnd");
    if (HasFatalFailure()) return;
    std::vector<sd::e2e::GuestCfg> guests;
    for (int g = 0; g < kGuests; ++g)
      guests.push_back({"msg" + id_ + "x" + std::to_string(g),
                        {"vsnd = [[ 'card, backend=" + dom_ +
                         ", short-name=c0', 'pcm, name=p0', 'stream, unique-id=s0, type=p' ]]"}});
    sd::e2e::write_host(dir_, SD_SOURCE_DIR, {dom_}, guests);
    shadowd_ = std::make_unique<sd::e2e::Shadowd>(dir_, SD_SHADOWD, SD_SHADOWCTL);
  }

  void stop_programs() override { cards_.clear(); }  // players killed

  json detail(const std::string& device) {
    for (auto& d : shadowd_->devices())
      if (d.value("device", "") == device) return d.value("detail", json::object());
    return json::object();
  }

  // shadowd up with both cards; each guest's asoundrc naming its card.
  void start() {
    json devs;
    start_shadowd({"--drvdom", SD_DRVDOM}, kGuests, &devs);
    if (HasFatalFailure()) return;
    for (auto& d : devs) {
      Card c;
      c.device = d.value("device", "");
      c.socket = d["detail"].value("socket", "");
      c.wav = d["detail"].value("wav", "");
      c.alsa_conf = sd::e2e::write_asoundrc(dir_ / (fs::path(c.socket).stem().string() + ".asoundrc"),
                                            SD_PCM_PLUGIN, c.socket);
      cards_.push_back(std::move(c));
    }
  }

  std::vector<Card> cards_;
};

TEST_F(VsndMultiCardE2eTest, TwoPlayersOnTwoCardsOfOneSnddd_ThreeKills_BothExitZeroNoGapOver20ms) {
  start();
  if (HasFatalFailure()) return;
  const uint64_t kSeconds = 10, frames = kSeconds * sd::pcm::kRate;
  fs::path in = dir_ / "in.wav";
  std::ofstream(in, std::ios::binary) << sd::pcm::make_wav(frames);
  for (auto& c : cards_)
    c.aplay = std::make_unique<Background>(
        std::vector<std::string>{"env", "ALSA_CONFIG_PATH=" + c.alsa_conf, "aplay", "-D", "shadow",
                                 "--period-time=20000", "--buffer-time=200000", in.string()},
        fs::path(c.wav).replace_extension(".aplay"));
  for (auto& c : cards_)
    ASSERT_TRUE(wait_until([&] { return detail(c.device).value("player_connected", false); }, 10s))
        << c.device << ": " << c.aplay->out();

  // Three kills, 2.5 s apart, each once both cards have recovered from the last.
  const int kKills = 3;
  for (int k = 0; k < kKills; ++k) {
    std::this_thread::sleep_for(2500ms);
    for (auto& c : cards_) ASSERT_TRUE(c.aplay->running()) << c.device << ": aplay ended before kill " << k + 1;
    kill_and_recover(k + 1, cards_.size(), false);
    if (HasFatalFailure()) return;
  }

  for (auto& c : cards_) ASSERT_TRUE(c.aplay->wait_for(30s)) << c.device << ": aplay still running";
  for (auto& c : cards_) {
    auto out = c.aplay->out();
    std::printf("[ figure   ] %s: aplay exit %d\n", c.device.c_str(), c.aplay->rc());
    EXPECT_EQ(c.aplay->rc(), 0) << c.device << ": " << out;
    for (const char* bad : {"underrun", "xrun", "error", "Error"})
      EXPECT_EQ(out.find(bad), std::string::npos) << c.device << ": " << out;
  }
  sd::e2e::print_recoveries(shadowd_->events("recovery"));
  EXPECT_EQ(shadowd_->events("recovery").size(), static_cast<size_t>(kKills));
  expect_none_fenced();

  // Each card's recording: the input, apart from gaps of at most 20 ms,
  // whether heard as silence or as input skipped.
  for (auto& c : cards_) {
    auto a = sd::e2e::analyze_recording(c.wav, frames, c.device);
    ASSERT_TRUE(a.has_value()) << c.device << ": the DAC wrote no WAV at " << c.wav;
    for (const auto& g : a->gaps) {
      EXPECT_LE(g.ms(), kMaxGapMs) << c.device << ": silence at output frame " << g.at;
      EXPECT_LE(std::llabs(g.skipped) * 1000.0 / sd::pcm::kRate, kMaxGapMs)
          << c.device << ": input skipped at output frame " << g.at;
    }
    EXPECT_TRUE(a->complete(frames)) << c.device << ": first " << a->first_index << " end " << a->end_index;
    EXPECT_EQ(a->foreign, 0u) << c.device;
  }
}

}  // namespace
