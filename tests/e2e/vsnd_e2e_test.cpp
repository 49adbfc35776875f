// End-to-end for vsnd: the real shadowd, drvdom and virtual DAC, and an
// unmodified aplay playing through the ALSA plugin
// (libasound_module_pcm_shadow.so) while the sound driver domain is killed,
// crashes or answers with garbage. Asserts what a listener and the player
// see: aplay's exit code and messages, and the DAC's recording compared
// frame by frame with the input (every gap measured and printed).
#include <gtest/gtest.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "e2e_util.hpp"
#include "sd/core/pcm_marks.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;
using sd::e2e::run;
using sd::e2e::slurp;
using sd::e2e::wait_until;

// A background program with stdin on a pty (aplay -i reads its keys from a
// terminal), stdout+stderr to a file. Killed and reaped by the destructor.
class Player {
 public:
  Player(const std::vector<std::string>& argv, const std::string& alsa_conf, const fs::path& out) : out_(out) {
    std::fflush(nullptr);
    int master = -1;
    pid_ = ::forkpty(&master, nullptr, nullptr, nullptr);
    if (pid_ == 0) {
      ::setenv("ALSA_CONFIG_PATH", alsa_conf.c_str(), 1);
      std::freopen(out.c_str(), "w", stdout);
      std::freopen(out.c_str(), "a", stderr);
      std::vector<char*> a;
      for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
      a.push_back(nullptr);
      ::execvp(a[0], a.data());
      _exit(127);
    }
    tty_ = master;
  }
  ~Player() {
    if (pid_ > 0 && !done_) {
      ::kill(pid_, SIGKILL);
      reap(0);
    }
    if (tty_ >= 0) ::close(tty_);
  }
  void key(char c) { (void)!::write(tty_, &c, 1); }
  bool running() {
    if (!done_ && pid_ > 0) reap(WNOHANG);
    return !done_ && pid_ > 0;
  }
  bool wait_for(std::chrono::milliseconds t) {
    return wait_until([&] { return !running(); }, t);
  }
  int rc() const { return rc_; }
  std::string out() const { return slurp(out_); }

 private:
  void reap(int flags) {
    int st = 0;
    if (::waitpid(pid_, &st, flags) == pid_) {
      done_ = true;
      rc_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
  }
  pid_t pid_ = -1;
  int tty_ = -1;
  bool done_ = false;
  int rc_ = -1;
  fs::path out_;
};

class VsndE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sd-vsnde2e-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto id = std::to_string(::getpid());
    dom_ = "snd" + id;
    guest_ = "sg" + id;
    sd::e2e::write_host(dir_, SD_SOURCE_DIR, {dom_},
                        {{guest_, {"vsnd = [[ 'card, backend=" + dom_ +
                                   ", short-name=c0', 'pcm, name=p0', 'stream, unique-id=s0, type=p',"
                                   " 'stream, unique-id=s1, type=p' ]]"}}});
    socket_ = dir_ / "state" / (guest_ + "-vsnd-0.sock");
    wav_out_ = dir_ / "state" / (guest_ + "-vsnd-0.wav");
    alsa_conf_ = sd::e2e::write_asoundrc(dir_ / "asoundrc", SD_PCM_PLUGIN, socket_);
  }

  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int st = 0;
      if (!wait_until([&] { return ::waitpid(pid_, &st, WNOHANG) == pid_; }, 10s)) {
        ADD_FAILURE() << "shadowd did not exit within 10 s of SIGTERM; killed";
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &st, 0);
      }
    }
    if (HasFailure()) std::fprintf(stderr, "shadowd log:\n%s\n", slurp(dir_ / "shadowd.log").c_str());
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void start_shadowd() {
    std::fflush(nullptr);
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      std::string log = (dir_ / "shadowd.log").string();
      std::freopen(log.c_str(), "w", stderr);
      std::freopen(log.c_str(), "a", stdout);
      ::execl(SD_SHADOWD, "shadowd", "--config", (dir_ / "host.yaml").c_str(), "--drvdom", SD_DRVDOM,
              static_cast<char*>(nullptr));
      _exit(127);
    }
    ASSERT_TRUE(wait_until([&] { return detail().value("backend_up", false) && fs::exists(socket_); }, 10s))
        << slurp(dir_ / "shadowd.log");
  }

  sd::e2e::CmdResult ctl(const std::string& args) {
    return run(std::string(SD_SHADOWCTL) + " --socket " + (dir_ / "sd.sock").string() + " " + args);
  }
  // The card's stream `k` as shadowctl shows it.
  json detail(size_t k = 0) {
    auto j = json::parse(ctl("devices --json").out, nullptr, false);
    if (j.is_discarded() || !j.contains("devices") || j["devices"].size() <= k) return json::object();
    return j["devices"][k].value("detail", json::object());
  }
  std::vector<json> events(const std::string& type) { return sd::e2e::read_events(dir_ / "events.jsonl", type); }
  // Injects `kind` once the previous recovery (if any) is complete; notes
  // where in the recording (output frame) the fault struck.
  void inject(const std::string& kind, size_t recoveries_before) {
    ASSERT_TRUE(wait_until([&] { return events("recovery").size() >= recoveries_before; }, 10s));
    fault_frames_.push_back(detail()["dac"].value("wav_frames", uint64_t{0}));
    auto r = ctl("inject-fault " + dom_ + " " + kind);
    ASSERT_EQ(r.rc, 0) << r.out << r.err;
  }

  // `n` faults of `kind` in the sound domain, `every` apart, each once the
  // previous recovery is complete (the first after `every` of playing).
  void fault_every(const std::string& kind, size_t n, std::chrono::milliseconds every) {
    for (size_t k = 0; k < n; ++k) {
      std::this_thread::sleep_for(every);
      inject(kind, k);
      if (HasFatalFailure()) return;
    }
  }
  void kill_every(size_t n, std::chrono::milliseconds every) { fault_every("kill", n, every); }

  fs::path input(uint64_t seconds) {
    auto p = dir_ / ("in" + std::to_string(seconds) + ".wav");
    std::ofstream(p, std::ios::binary) << sd::pcm::make_wav(seconds * sd::pcm::kRate);
    return p;
  }

  // The DAC's recording against the input; prints every gap.
  sd::pcm::Analysis recording(uint64_t input_frames) {
    auto a = sd::e2e::analyze_recording(wav_out_, input_frames);
    EXPECT_TRUE(a.has_value()) << "the DAC wrote no WAV at " << wav_out_;
    return a.value_or(sd::pcm::Analysis{});
  }

  static void expect_clean_player(const Player& p) {
    auto out = p.out();
    EXPECT_EQ(p.rc(), 0) << out;
    for (const char* bad : {"underrun", "xrun", "error", "Error"}) EXPECT_EQ(out.find(bad), std::string::npos) << out;
  }

  // Per fault: the silence and the input skipped in the second after it struck.
  void print_gap_per_fault(const sd::pcm::Analysis& a) {
    for (size_t k = 0; k < fault_frames_.size(); ++k) {
      uint64_t at = fault_frames_[k], silent = 0;
      int64_t skipped = 0;
      for (const auto& g : a.gaps)
        if (g.at + sd::pcm::kRate / 10 >= at && g.at < at + sd::pcm::kRate) silent += g.silent, skipped += g.skipped;
      std::printf(
          "[ figure   ] fault %zu at output frame %llu (%.3f s): gap %llu frames (%.2f ms), input skipped %lld\n",
          k + 1, static_cast<unsigned long long>(at), static_cast<double>(at) / sd::pcm::kRate,
          static_cast<unsigned long long>(silent), silent * 1000.0 / sd::pcm::kRate, static_cast<long long>(skipped));
    }
  }

  std::vector<uint64_t> fault_frames_;
  fs::path dir_, socket_, wav_out_;
  std::string dom_, guest_, alsa_conf_;
  pid_t pid_ = -1;
};

TEST_F(VsndE2eTest, Aplay_FiveKillsOfTheSoundDomain_ExitsZeroAndRecordingIsTheInputApartFromGaps) {
  start_shadowd();
  auto in = input(20);
  Player aplay({"aplay", "-D", "shadow", "--period-time=20000", "--buffer-time=200000", in.string()}, alsa_conf_,
               dir_ / "aplay.out");
  ASSERT_TRUE(wait_until([&] { return detail().value("player_connected", false); }, 5s)) << aplay.out();
  kill_every(5, 3s);
  ASSERT_TRUE(aplay.wait_for(30s)) << "aplay still running";
  expect_clean_player(aplay);
  EXPECT_TRUE(wait_until([&] { return events("recovery").size() >= 5; }, 5s));
  sd::e2e::print_recoveries(events("recovery"));
  auto a = recording(20 * sd::pcm::kRate);
  print_gap_per_fault(a);
  EXPECT_TRUE(a.complete(20 * sd::pcm::kRate)) << "first " << a.first_index << " end " << a.end_index;
  EXPECT_EQ(a.foreign, 0u);
}

// A hung sound domain (alive, heartbeats stopped, the DAC no longer fed) is
// found by the DAC's FIFO running dry while writes wait, before the FIFO
// empties, not by the 100 ms heartbeat: each recovery's cause says so, and
// the silence heard per hang stays within 20 ms.
TEST_F(VsndE2eTest, Aplay_ThreeHangsOfTheSoundDomain_FoundByTheDacRunningDryGapsUnder20ms) {
  start_shadowd();
  auto in = input(12);
  Player aplay({"aplay", "-D", "shadow", "--period-time=20000", "--buffer-time=200000", in.string()}, alsa_conf_,
               dir_ / "aplay.out");
  ASSERT_TRUE(wait_until([&] { return detail().value("player_connected", false); }, 5s)) << aplay.out();
  fault_every("hang", 3, 2s);
  ASSERT_FALSE(HasFatalFailure());

  ASSERT_TRUE(aplay.wait_for(30s)) << "aplay still running";
  expect_clean_player(aplay);
  ASSERT_TRUE(wait_until([&] { return events("recovery").size() >= 3; }, 5s));
  sd::e2e::print_recoveries(events("recovery"));
  for (const auto& e : events("recovery"))
    EXPECT_NE(e.value("cause", "").find("the DAC has"), std::string::npos) << e.dump();
  auto a = recording(12 * sd::pcm::kRate);
  print_gap_per_fault(a);
  EXPECT_TRUE(a.complete(12 * sd::pcm::kRate)) << "first " << a.first_index << " end " << a.end_index;
  for (const auto& g : a.gaps) EXPECT_LE(g.silent, sd::pcm::kRate / 50) << "a gap over 20 ms at output frame " << g.at;
}

TEST_F(VsndE2eTest, AplayInteractive_PauseAndResume_StreamPausesAndPlaysOnWithNothingLost) {
  start_shadowd();
  auto in = input(4);
  Player aplay({"aplay", "-i", "-D", "shadow", "--period-time=20000", "--buffer-time=200000", in.string()}, alsa_conf_,
               dir_ / "aplay.out");
  ASSERT_TRUE(wait_until([&] { return detail().value("stream", json::object()).value("run", "") == "running"; }, 5s))
      << aplay.out();
  std::this_thread::sleep_for(1s);
  aplay.key(' ');
  EXPECT_TRUE(wait_until([&] { return detail()["stream"].value("run", "") == "paused"; }, 5s)) << aplay.out();
  // The DAC may finish the tick it was in when the pause reached it.
  uint64_t played_at_pause = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        uint64_t a = detail()["dac"].value("played_bytes", uint64_t{0});
        std::this_thread::sleep_for(30ms);
        played_at_pause = detail()["dac"].value("played_bytes", uint64_t{0});
        return a == played_at_pause;
      },
      5s));
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(detail()["dac"].value("played_bytes", uint64_t{0}), played_at_pause) << "the DAC kept playing while paused";
  aplay.key(' ');
  EXPECT_TRUE(wait_until([&] { return detail()["stream"].value("run", "") == "running"; }, 5s)) << aplay.out();
  ASSERT_TRUE(aplay.wait_for(15s)) << "aplay still running";
  EXPECT_EQ(aplay.rc(), 0) << aplay.out();
  EXPECT_NE(aplay.out().find("PAUSE"), std::string::npos) << aplay.out();
  auto a = recording(4 * sd::pcm::kRate);
  EXPECT_TRUE(a.complete(4 * sd::pcm::kRate));
  // The DAC records nothing while halted: a pause leaves no mark in the
  // recording, and no input is skipped or repeated around it. (Silence from
  // starvation on a loaded machine would show as a gap with nothing skipped.)
  for (const auto& g : a.gaps) EXPECT_EQ(g.skipped, 0) << "at output frame " << g.at;
}

TEST_F(VsndE2eTest, HostileReplies_UnknownIdWrongStatusPositionBackwards_DetectedAsFaultsAndRecovered) {
  start_shadowd();
  auto in = input(8);
  Player aplay({"aplay", "-D", "shadow", "--period-time=20000", "--buffer-time=200000", in.string()}, alsa_conf_,
               dir_ / "aplay.out");
  ASSERT_TRUE(wait_until([&] { return detail().value("player_connected", false); }, 5s)) << aplay.out();
  // bad-id: a response whose id is not in flight; bad-prod: a status that is
  // neither 0 nor an errno; bad-grant: a CUR_POS going backwards (vsnd's
  // meaning of the three garbage faults, driver_domain/vsnd/sndback.hpp).
  const char* kinds[] = {"bad-id", "bad-prod", "bad-grant"};
  for (size_t k = 0; k < 3; ++k) {
    std::this_thread::sleep_for(1500ms);
    inject(kinds[k], k);
  }
  ASSERT_TRUE(aplay.wait_for(20s)) << "aplay still running";
  expect_clean_player(aplay);
  ASSERT_TRUE(wait_until([&] { return events("recovery").size() >= 3; }, 5s));
  std::string causes;
  for (const auto& e : events("fault_detected")) causes += e.value("cause", "") + "\n";
  std::printf("[ figure   ] causes:\n%s", causes.c_str());
  EXPECT_NE(causes.find("response for id"), std::string::npos) << causes;
  EXPECT_NE(causes.find("wrong status"), std::string::npos) << causes;
  EXPECT_NE(causes.find("went backwards"), std::string::npos) << causes;
  auto a = recording(8 * sd::pcm::kRate);
  print_gap_per_fault(a);
  EXPECT_TRUE(a.complete(8 * sd::pcm::kRate));
  EXPECT_EQ(a.foreign, 0u);
}

TEST_F(VsndE2eTest, FencedAtTheFirstFault_ShadowAcknowledgesInSilenceAndAplayExitsZero) {
  ASSERT_TRUE(sd::e2e::set_policy_key(dir_ / "policies" / "vsnd.yaml", "budget", "0"));
  start_shadowd();
  auto in = input(4);
  Player aplay({"aplay", "-D", "shadow", "--period-time=20000", "--buffer-time=200000", in.string()}, alsa_conf_,
               dir_ / "aplay.out");
  ASSERT_TRUE(wait_until([&] { return detail().value("player_connected", false); }, 5s)) << aplay.out();
  std::this_thread::sleep_for(1s);
  inject("kill", 0);
  ASSERT_TRUE(aplay.wait_for(15s)) << "aplay still running";
  expect_clean_player(aplay);
  auto d = detail();
  std::printf("[ figure   ] fenced: %llu writes acknowledged by shadowd in active mode\n",
              static_cast<unsigned long long>(d.value("active_writes_acked", uint64_t{0})));
  EXPECT_GT(d.value("active_writes_acked", uint64_t{0}), 0u);
  auto a = recording(4 * sd::pcm::kRate);
  // The music up to the fault, then silence for the rest of the stream: the
  // audio after the fault is dropped, the player's clock is kept.
  EXPECT_EQ(a.foreign, 0u);
  for (const auto& g : a.gaps) EXPECT_EQ(g.skipped, 0) << "at output frame " << g.at;
  EXPECT_EQ(a.first_index, 0u);
  EXPECT_LT(a.end_index, 4 * sd::pcm::kRate);
  EXPECT_GT(a.tail_silence, 0u);
}

// A tone of `hz` and `seconds` in the file format people play: `fmt` is U8,
// S16, S32 or FLOAT (WAV format 3), little endian, `channels` interleaved.
fs::path tone(const fs::path& dir, unsigned rate, const std::string& fmt, unsigned channels, double seconds,
              double hz = 440) {
  const unsigned bytes = fmt == "U8" ? 1 : fmt == "S16" ? 2 : 4;
  const auto frames = static_cast<uint64_t>(rate * seconds);
  std::string data;
  for (uint64_t i = 0; i < frames; ++i) {
    double v = 0.3 * std::sin(2 * M_PI * hz * static_cast<double>(i) / rate);
    for (unsigned c = 0; c < channels; ++c) {
      if (fmt == "U8") {
        data += static_cast<char>(static_cast<uint8_t>(128 + 127 * v));
      } else if (fmt == "S16") {
        auto x = static_cast<int16_t>(32767 * v);
        data.append(reinterpret_cast<const char*>(&x), 2);
      } else if (fmt == "S32") {
        auto x = static_cast<int32_t>(2147483647.0 * v);
        data.append(reinterpret_cast<const char*>(&x), 4);
      } else {
        auto x = static_cast<float>(v);
        data.append(reinterpret_cast<const char*>(&x), 4);
      }
    }
  }
  auto le = [](uint32_t v, int n) { return std::string(reinterpret_cast<const char*>(&v), static_cast<size_t>(n)); };
  const uint32_t block = channels * bytes;
  std::string wav = "RIFF" + le(36 + static_cast<uint32_t>(data.size()), 4) + "WAVEfmt " + le(16, 4) +
                    le(fmt == "FLOAT" ? 3 : 1, 2) + le(channels, 2) + le(rate, 4) + le(rate * block, 4) +
                    le(block, 2) + le(bytes * 8, 2) + "data" + le(static_cast<uint32_t>(data.size()), 4) + data;
  auto p = dir / ("tone-" + std::to_string(rate) + "-" + fmt + "-" + std::to_string(channels) + "-" +
                   std::to_string(static_cast<int>(hz)) + ".wav");
  std::ofstream(p, std::ios::binary) << wav;
  return p;
}

// What a listener hears in the DAC's recording (48 kHz S16 stereo): the time
// from the first to the last sound, and the longest silence inside it.
struct Heard {
  double seconds = 0, longest_hole_ms = 0;
};
Heard heard(const fs::path& wav) {
  std::string d = slurp(wav);
  Heard h;
  if (d.size() <= 44) return h;
  const size_t frames = (d.size() - 44) / 4;
  auto loud = [&](size_t i) {
    int16_t s[2];
    std::memcpy(s, d.data() + 44 + i * 4, 4);
    return std::abs(s[0]) > 2 || std::abs(s[1]) > 2;
  };
  size_t first = 0, last = frames;
  while (first < frames && !loud(first)) ++first;
  while (last > first && !loud(last - 1)) --last;
  size_t run = 0;
  for (size_t i = first; i < last; ++i) {
    run = loud(i) ? 0 : run + 1;
    h.longest_hole_ms = std::max(h.longest_hole_ms, run * 1000.0 / sd::pcm::kRate);
  }
  h.seconds = static_cast<double>(last - first) / sd::pcm::kRate;
  return h;
}

// When a tone of `hz` sounds in the DAC's recording (left channel): the
// seconds from its first to its last 20 ms window, and the windows between
// where it is missing (amplitude below a third of the tones played here).
struct ToneHeard {
  double seconds = 0;
  size_t missing = 0, windows = 0;
};
ToneHeard tone_heard(const fs::path& wav, double hz) {
  std::string d = slurp(wav);
  ToneHeard t;
  if (d.size() <= 44) return t;
  constexpr size_t kWin = sd::pcm::kRate / 50;  // 20 ms
  const size_t frames = (d.size() - 44) / 4;
  std::vector<bool> present;
  for (size_t w = 0; w + kWin <= frames; w += kWin) {
    double re = 0, im = 0;  // the window's component at hz
    for (size_t i = 0; i < kWin; ++i) {
      int16_t s[2];
      std::memcpy(s, d.data() + 44 + (w + i) * 4, 4);
      double ph = 2 * M_PI * hz * static_cast<double>(i) / sd::pcm::kRate;
      re += s[0] * std::cos(ph);
      im += s[0] * std::sin(ph);
    }
    present.push_back(2 * std::hypot(re, im) / kWin > 0.1 * 32767);  // the tones are 0.3 of full scale
  }
  auto first = std::find(present.begin(), present.end(), true);
  if (first == present.end()) return t;
  auto last = std::find(present.rbegin(), present.rend(), true).base();
  t.windows = static_cast<size_t>(last - first);
  t.missing = static_cast<size_t>(std::count(first, last, false));
  t.seconds = t.windows * static_cast<double>(kWin) / sd::pcm::kRate;
  return t;
}

// The files people play, through `plug:shadow` with aplay's own defaults
// (500 ms buffer, 125 ms periods), across 3 kills of the sound domain: the
// plugin converts rate, format and channels to the card's.
struct FileFormat {
  unsigned rate;
  const char* fmt;
  unsigned channels;
};
class VsndFormatE2eTest : public VsndE2eTest, public ::testing::WithParamInterface<FileFormat> {};

TEST_P(VsndFormatE2eTest, PlugShadowAplayDefaults_ThreeKills_ExitsZeroWholeDurationNoHoleOver20ms) {
  const FileFormat f = GetParam();
  start_shadowd();
  constexpr double kSeconds = 8;
  auto in = tone(dir_, f.rate, f.fmt, f.channels, kSeconds);
  Player aplay({"aplay", "-D", "plug:shadow", in.string()}, alsa_conf_, dir_ / "aplay.out");
  ASSERT_TRUE(wait_until([&] { return detail().value("player_connected", false); }, 5s)) << aplay.out();
  kill_every(3, 1500ms);
  ASSERT_TRUE(aplay.wait_for(30s)) << "aplay still running";
  expect_clean_player(aplay);
  EXPECT_GE(events("recovery").size(), 3u);
  Heard h = heard(wav_out_);
  std::printf("[ figure   ] %u Hz %s x%u: heard %.3f s of %.3f s, longest hole %.2f ms\n", f.rate, f.fmt,
              f.channels, h.seconds, kSeconds, h.longest_hole_ms);
  EXPECT_NEAR(h.seconds, kSeconds, kSeconds / 100);
  EXPECT_LE(h.longest_hole_ms, 20.0);
}

INSTANTIATE_TEST_SUITE_P(Files, VsndFormatE2eTest,
                         ::testing::Values(FileFormat{44100, "S16", 2}, FileFormat{22050, "U8", 1},
                                           FileFormat{96000, "S32", 2}, FileFormat{48000, "FLOAT", 6}),
                         [](const auto& info) {
                           return std::to_string(info.param.rate) + info.param.fmt + "x" +
                                  std::to_string(info.param.channels);
                         });

// The player's buffer is its own: 5 ms (smaller than the card's 5 ms DAC
// tick) and 2 s (more than the card's 128 KiB) both play whole across a kill.
TEST_F(VsndE2eTest, PlugShadowTinyAndHugeBuffers_OneKillEach_ExitsZeroWholeDuration) {
  start_shadowd();
  auto in = tone(dir_, 44100, "S16", 2, 4);
  size_t kills = 0;
  for (const char* buffer : {"--buffer-time=5000", "--buffer-time=2000000"}) {
    Player aplay({"aplay", "-D", "plug:shadow", buffer, in.string()}, alsa_conf_, dir_ / "aplay.out");
    ASSERT_TRUE(wait_until([&] { return detail().value("player_connected", false); }, 5s)) << aplay.out();
    std::this_thread::sleep_for(1500ms);
    inject("kill", kills++);
    ASSERT_TRUE(aplay.wait_for(30s)) << buffer << ": aplay still running";
    expect_clean_player(aplay);
    Heard h = heard(wav_out_);
    std::printf("[ figure   ] %s: heard %.3f s of 4.000 s, longest hole %.2f ms\n", buffer, h.seconds,
                h.longest_hole_ms);
    EXPECT_NEAR(h.seconds, 4.0, 0.04) << buffer;
    EXPECT_LE(h.longest_hole_ms, 20.0) << buffer;
    ASSERT_TRUE(wait_until([&] { return !detail().value("player_connected", true); }, 5s));
  }
}

// speaker-test takes the largest buffer a device offers and its sine and
// voice tests must play through it.
TEST_F(VsndE2eTest, SpeakerTestSineAndWav_ThroughPlugShadow_ExitZeroAndSound) {
  start_shadowd();
  for (const char* test : {"sine", "wav"}) {
    Player st({"speaker-test", "-D", "plug:shadow", "-c", "2", "-t", test, "-l", "1"}, alsa_conf_,
              dir_ / "speaker-test.out");
    ASSERT_TRUE(st.wait_for(30s)) << test << ": speaker-test still running";
    EXPECT_EQ(st.rc(), 0) << st.out();
    EXPECT_EQ(st.out().find("error"), std::string::npos) << st.out();
    Heard h = heard(wav_out_);
    std::printf("[ figure   ] speaker-test -t %s: heard %.3f s, longest silence %.2f ms\n", test, h.seconds,
                h.longest_hole_ms);
    EXPECT_GT(h.seconds, 1.0) << test;
    // The sine sounds throughout; the voice test has pauses between its words.
    if (std::string(test) == "sine") EXPECT_LE(h.longest_hole_ms, 20.0);
  }
}

// ALSA's own `rate` plugin directly over `shadow` (it needs a slave that can
// be mmapped, as a hardware card is): a 44.1 kHz file resampled by ALSA to
// the card's 48 kHz plays whole across a kill.
TEST_F(VsndE2eTest, AlsaRatePluginOverShadow_OneKill_ExitsZeroWholeDurationNoHoleOver20ms) {
  std::ofstream(dir_ / "asoundrc", std::ios::app)
      << "pcm.rt {\n  type rate\n  slave { pcm \"shadow\" rate 48000 }\n}\n";
  start_shadowd();
  auto in = tone(dir_, 44100, "S16", 2, 4);
  Player aplay({"aplay", "-D", "rt", in.string()}, alsa_conf_, dir_ / "aplay.out");
  ASSERT_TRUE(wait_until([&] { return detail().value("player_connected", false); }, 5s)) << aplay.out();
  std::this_thread::sleep_for(1500ms);
  inject("kill", 0);
  ASSERT_TRUE(aplay.wait_for(30s)) << "aplay still running";
  expect_clean_player(aplay);
  Heard h = heard(wav_out_);
  std::printf("[ figure   ] aplay -D rt (type rate over shadow): heard %.3f s of 4.000 s, longest hole %.2f ms\n",
              h.seconds, h.longest_hole_ms);
  EXPECT_NEAR(h.seconds, 4.0, 0.04);
  EXPECT_LE(h.longest_hole_ms, 20.0);
}

// The sound-server path: a headless PulseAudio whose ALSA sink is `shadow`
// (timer scheduling off: the plugin's poll fds pace it), an unmodified
// paplay through it across 3 kills of the sound domain.
TEST_F(VsndE2eTest, PulseAudioOnShadow_PaplayAcrossThreeKills_ExitsZeroWholeDurationNoHoleOver20ms) {
  if (run("which pulseaudio paplay pactl").rc != 0) GTEST_SKIP() << "pulseaudio and paplay are not installed";
  start_shadowd();
  std::ofstream(dir_ / "pa.pa") << "load-module module-alsa-sink device=shadow tsched=0 sink_name=shadow\n"
                                << "load-module module-native-protocol-unix auth-anonymous=1 socket="
                                << (dir_ / "pa.sock").string() << "\nset-default-sink shadow\n";
  const std::string env = "env HOME=" + dir_.string() + " ALSA_CONFIG_PATH=" + alsa_conf_ +
                          " PULSE_SERVER=unix:" + (dir_ / "pa.sock").string() + " ";
  // exec: the Player's pid is the program itself, killed with it.
  Player pa({"sh", "-c", "exec " + env + "pulseaudio -n --daemonize=no --exit-idle-time=-1 --disallow-exit -F " +
                             (dir_ / "pa.pa").string()},
            alsa_conf_, dir_ / "pulseaudio.out");
  ASSERT_TRUE(wait_until([&] { return run(env + "pactl info").rc == 0; }, 10s)) << slurp(dir_ / "pulseaudio.out");
  constexpr double kSeconds = 8;
  auto in = tone(dir_, 44100, "S16", 2, kSeconds);
  Player paplay({"sh", "-c", "exec " + env + "paplay " + in.string()}, alsa_conf_, dir_ / "paplay.out");
  kill_every(3, 1500ms);
  ASSERT_TRUE(paplay.wait_for(30s)) << "paplay still running";
  EXPECT_EQ(paplay.rc(), 0) << paplay.out();
  EXPECT_GE(events("recovery").size(), 3u);
  // paplay is done when the server has its last frames; the sink plays them
  // out after (its own buffer, then the card's): until the recording stops growing.
  Heard h = heard(wav_out_);
  for (int i = 0; i < 15; ++i) {
    std::this_thread::sleep_for(200ms);
    Heard later = heard(wav_out_);
    if (later.seconds == h.seconds) break;
    h = later;
  }
  std::printf("[ figure   ] paplay through PulseAudio: heard %.3f s of %.3f s, longest hole %.2f ms\n", h.seconds,
              kSeconds, h.longest_hole_ms);
  EXPECT_NEAR(h.seconds, kSeconds, kSeconds / 100);
  EXPECT_LE(h.longest_hole_ms, 20.0);
}

// Two players at once on one card (two playback streams, mixed by the
// DAC), each a different file format and tone, across 3 kills of the sound
// domain: both exit 0, both tones sound in the recording for their whole
// length, and the mix has no hole.
TEST_F(VsndE2eTest, TwoAplaysAtOnce_ThreeKills_BothExitZeroBothHeardWholeNoHoleOver20ms) {
  start_shadowd();
  constexpr double kSeconds = 8;
  auto a_in = tone(dir_, 44100, "S16", 2, kSeconds, 440);
  auto b_in = tone(dir_, 22050, "U8", 1, kSeconds, 1000);
  Player a({"aplay", "-D", "plug:shadow", a_in.string()}, alsa_conf_, dir_ / "aplay-a.out");
  ASSERT_TRUE(wait_until([&] { return detail(0).value("player_connected", false); }, 5s)) << a.out();
  Player b({"aplay", "-D", "plug:shadow", b_in.string()}, alsa_conf_, dir_ / "aplay-b.out");
  ASSERT_TRUE(wait_until([&] { return detail(1).value("player_connected", false); }, 5s)) << b.out();
  kill_every(3, 1500ms);
  ASSERT_TRUE(a.wait_for(30s)) << "first aplay still running";
  ASSERT_TRUE(b.wait_for(30s)) << "second aplay still running";
  expect_clean_player(a);
  expect_clean_player(b);
  EXPECT_GE(detail(0).value("recoveries", 0), 3);
  EXPECT_GE(detail(1).value("recoveries", 0), 3);
  Heard h = heard(wav_out_);
  ToneHeard ta = tone_heard(wav_out_, 440), tb = tone_heard(wav_out_, 1000);
  std::printf("[ figure   ] two players: 440 Hz heard %.3f s of %.3f s (%zu of %zu 20 ms windows missing), "
              "1000 Hz heard %.3f s (%zu of %zu missing), mix %.3f s, longest hole %.2f ms\n",
              ta.seconds, kSeconds, ta.missing, ta.windows, tb.seconds, tb.missing, tb.windows, h.seconds,
              h.longest_hole_ms);
  EXPECT_NEAR(ta.seconds, kSeconds, kSeconds / 100);
  EXPECT_NEAR(tb.seconds, kSeconds, kSeconds / 100);
  EXPECT_EQ(ta.missing, 0u);
  EXPECT_EQ(tb.missing, 0u);
  EXPECT_LE(h.longest_hole_ms, 20.0);
}

// A third player on a two-stream card is refused at once, with a message
// that says why (both streams stay with their players).
TEST_F(VsndE2eTest, ThirdPlayerOnATwoStreamCard_RefusedWithAClearMessage) {
  start_shadowd();
  auto in = tone(dir_, 48000, "S16", 2, 4);
  Player a({"aplay", "-D", "shadow", in.string()}, alsa_conf_, dir_ / "aplay-a.out");
  Player b({"aplay", "-D", "shadow", in.string()}, alsa_conf_, dir_ / "aplay-b.out");
  ASSERT_TRUE(wait_until([&] {
    return detail(0).value("player_connected", false) && detail(1).value("player_connected", false);
  }, 5s)) << a.out() << b.out();
  auto r = run("env ALSA_CONFIG_PATH=" + alsa_conf_ + " aplay -D shadow " + in.string());
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("every playback stream of the card is in use"), std::string::npos) << r.err;
  ASSERT_TRUE(a.wait_for(30s));
  ASSERT_TRUE(b.wait_for(30s));
  expect_clean_player(a);
  expect_clean_player(b);
}

TEST_F(VsndE2eTest, PluginConfig_MissingSocket_AplayFailsWithAClearMessage) {
  std::ofstream(dir_ / "asoundrc") << "pcm_type.shadow { lib \"" << SD_PCM_PLUGIN << "\" }\n"
                                   << "pcm.shadow { type shadow }\n";
  auto r = run("env ALSA_CONFIG_PATH=" + alsa_conf_ + " aplay -D shadow /dev/null");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("missing socket"), std::string::npos) << r.err;
}

}  // namespace
