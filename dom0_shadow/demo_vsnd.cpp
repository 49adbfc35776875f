// `shadowctl demo --classes vsnd`: an unmodified aplay plays a marked WAV
// (every frame names its own index, sd/core/pcm_marks.hpp) through the ALSA
// plugin of the guest's vsnd while faults are injected into the sound driver
// domain; the virtual DAC's recording is then compared with the input frame
// by frame and the report gives, per fault, shadowd's recovery phases and the
// gap a listener heard (silence inserted, input skipped), sample-accurate.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "demo.hpp"
#include "demo_util.hpp"
#include "sd/core/pcm_marks.hpp"

namespace sd::shadowctl {

using nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace demo;

namespace {

struct VsndFault {
  std::string kind, cause;
  double at_s = -1;
  uint64_t at_frame = 0;
  bool recovered = false;
  json phases = nullptr;
  double gap_ms = 0;
  int64_t skipped = 0;
};

}  // namespace

int demo_vsnd(const std::string& sock, bool json_out, long duration, long nfaults,
              const std::vector<std::string>& kinds, const std::string& config) {
  FILE* out = json_out ? stderr : stdout;
  if (::geteuid() != 0) {
    std::fprintf(stderr, "shadowctl: demo: needs root (it runs shadowd)\n");
    return 1;
  }
  if (std::system("command -v aplay >/dev/null 2>&1") != 0) {
    std::fprintf(stderr, "shadowctl: demo: aplay not found in PATH (scripts/deps.sh installs alsa-utils)\n");
    return 1;
  }
  auto dir = self_dir();
  auto plugin = first_existing(
      {dir / "libasound_module_pcm_shadow.so", dir / ".." / "frontends" / "libasound_module_pcm_shadow.so"});
  if (!plugin) {
    std::fprintf(stderr, "shadowctl: demo: libasound_module_pcm_shadow.so not found next to shadowctl\n");
    return 1;
  }
  char tmpl[] = "/tmp/shadowctl-demo-vsnd-XXXXXX";
  if (!::mkdtemp(tmpl)) return 1;
  fs::path work = tmpl;

  // ---- shadowd: the running one, or one started here.
  OwnShadowd own;
  std::string why;
  if (!own.start(sock, config, work / "shadowd.log", &why)) {
    std::fprintf(stderr, "shadowctl: demo: %s\n", why.c_str());
    return 1;
  }
  auto finish = [&](int rc) {
    own.stop(sock);
    std::error_code ec;
    if (rc == 0) fs::remove_all(work, ec);
    return rc;
  };

  // ---- the vsnd and its driver domain.
  std::string dom, dev, pcm_sock, wav_out;
  auto ready_by = Clock::now() + std::chrono::seconds(30);
  for (;;) {
    auto d = ask(sock, {{"cmd", "devices"}});
    if (d)
      for (auto& x : (*d)["devices"])
        if (x.value("class", "") == "vsnd" && x.contains("detail") && x["detail"].value("backend_up", false)) {
          dom = x.value("backend", "");
          dev = x.value("device", "");
          pcm_sock = x["detail"].value("socket", "");
          wav_out = x["detail"].value("wav", "");
        }
    if (!dom.empty()) break;
    if (Clock::now() > ready_by) {
      std::fprintf(stderr, "shadowctl: demo: no vsnd device with its driver domain up at %s after 30 s\n",
                   sock.c_str());
      return finish(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }

  // ---- the guest's asoundrc and the music.
  std::ofstream(work / "asoundrc") << "pcm_type.shadow { lib \"" << plugin->string() << "\" }\n"
                                   << "pcm.shadow { type shadow socket \"" << pcm_sock << "\" }\n";
  const uint64_t frames = static_cast<uint64_t>(duration) * pcm::kRate;
  std::ofstream(work / "in.wav", std::ios::binary) << pcm::make_wav(frames);
  std::fprintf(stderr, "demo vsnd: aplay -D shadow (%s, driver domain %s) for %ld s; %ld fault(s)\n", dev.c_str(),
               dom.c_str(), duration, nfaults);
  auto restarts = [&] {
    auto s = ask(sock, {{"cmd", "status"}, {"domain", dom}});
    return s ? (*s)["domains"][0].value("restarts", uint64_t{0}) : uint64_t{0};
  };
  auto wav_frames = [&] {
    auto d = ask(sock, {{"cmd", "devices"}});
    if (d)
      for (auto& x : (*d)["devices"])
        if (x.value("device", "") == dev) return x["detail"]["dac"].value("wav_frames", uint64_t{0});
    return uint64_t{0};
  };
  uint64_t restarts0 = restarts();
  pid_t aplay =
      spawn({"aplay", "-D", "shadow", "--period-time=20000", "--buffer-time=200000", (work / "in.wav").string()},
            work / "aplay.out", "/usr/share/alsa/alsa.conf:" + (work / "asoundrc").string());
  auto t0 = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };

  // ---- faults, one at a time: at its time, after the previous recovery.
  std::vector<VsndFault> faults(static_cast<size_t>(nfaults));
  int aplay_rc = -1;
  for (size_t i = 0; i < faults.size(); ++i) {
    VsndFault& f = faults[i];
    f.kind = kinds[i % kinds.size()];
    double when = static_cast<double>(i + 1) * static_cast<double>(duration) / static_cast<double>(nfaults + 1);
    while (elapsed() < when && (aplay_rc = wait_exit(aplay, 0)) < 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (aplay_rc >= 0) break;
    f.at_frame = wav_frames();
    f.at_s = elapsed();
    std::string why;
    if (!ask(sock, {{"cmd", "inject-fault"}, {"domain", dom}, {"kind", f.kind}}, &why)) {
      f.cause = "not injected: " + why;
      continue;
    }
    auto until = Clock::now() + std::chrono::seconds(20);
    while (restarts() < restarts0 + i + 1 && Clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the recovery event follows the restart
    auto ev = ask(sock, {{"cmd", "events"}, {"n", 200}});
    if (ev)
      for (auto& e : (*ev)["events"])
        if (e.value("type", "") == "recovery" && e.value("domain", "") == dom) {
          f.recovered = restarts() >= restarts0 + i + 1;
          f.cause = e.value("cause", "");
          f.phases = e["phases_ms"];
        }
    std::fprintf(stderr, "demo vsnd: %.1f s: fault %zu (%s): %s\n", f.at_s, i + 1, f.kind.c_str(),
                 f.recovered ? f.cause.c_str() : "no recovery seen");
  }
  if (aplay_rc < 0) aplay_rc = wait_exit(aplay, static_cast<double>(duration) + 30);
  if (aplay_rc < 0) {
    ::kill(-aplay, SIGKILL);
    aplay_rc = wait_exit(aplay, 5);
  }
  std::string aplay_out = slurp(work / "aplay.out");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto a = pcm::analyze(slurp(wav_out));

  // ---- per fault: the gap a listener heard.
  for (auto& f : faults) {
    if (!a || f.at_s < 0) continue;
    for (const auto& g : a->gaps)
      if (g.at + pcm::kRate / 10 >= f.at_frame && g.at < f.at_frame + pcm::kRate) {
        f.gap_ms += g.ms();
        f.skipped += g.skipped;
      }
  }
  bool clean_output = aplay_out.find("underrun") == std::string::npos && aplay_out.find("rror") == std::string::npos;
  size_t recovered = 0;
  for (auto& f : faults) recovered += f.recovered;
  bool complete = a && a->complete(frames);
  bool transparent = aplay_rc == 0 && clean_output && recovered == faults.size() && complete;

  std::fprintf(out,
               "\ndemo vsnd: aplay -D shadow of %ld s marked 48 kHz S16_LE stereo through %s; driver domain %s\n\n",
               duration, dev.c_str(), dom.c_str());
  std::fprintf(out, "%3s  %-9s %6s  %8s %8s %8s %8s %8s  %9s %9s  %s\n", "#", "kind", "at s", "detect", "spawn",
               "replay", "resume", "total", "gap ms", "lost fr", "cause as detected");
  auto ph = [](const json& p, const char* k) {
    char b[32];
    if (!p.is_object() || !p.contains(k) || !p[k].is_number()) return std::string("-");
    std::snprintf(b, sizeof(b), "%.2f", p[k].get<double>());
    return std::string(b);
  };
  for (size_t i = 0; i < faults.size(); ++i) {
    const auto& f = faults[i];
    std::fprintf(out, "%3zu  %-9s %6.2f  %8s %8s %8s %8s %8s  %9.2f %9lld  %s\n", i + 1, f.kind.c_str(), f.at_s,
                 ph(f.phases, "detect").c_str(), ph(f.phases, "spawn").c_str(), ph(f.phases, "replay").c_str(),
                 ph(f.phases, "resume").c_str(), ph(f.phases, "total").c_str(), f.gap_ms,
                 static_cast<long long>(f.skipped), f.cause.empty() ? "-" : f.cause.c_str());
  }
  std::fprintf(out,
               "     gap: silence the DAC played in the second after the fault (from its recording, sample-accurate);\n"
               "     lost fr: input frames skipped there (negative: repeated)\n\n");
  std::fprintf(out, "aplay: exit %d, messages: %s\n", aplay_rc, clean_output ? "none" : aplay_out.c_str());
  if (a)
    std::fprintf(out,
                 "recording: %llu frames, %llu of the input, %zu gap(s), %llu foreign; the input apart from gaps: %s\n",
                 static_cast<unsigned long long>(a->frames), static_cast<unsigned long long>(a->marked), a->gaps.size(),
                 static_cast<unsigned long long>(a->foreign), complete ? "yes" : "NO");
  std::fprintf(out, "recovered %zu/%zu faults; transparent: %s\n", recovered, faults.size(),
               transparent ? "yes (aplay exited 0, no xrun or error, every fault recovered)" : "NO");
  if (json_out) {
    json jf = json::array();
    for (auto& f : faults)
      jf.push_back({{"kind", f.kind},
                    {"at_s", f.at_s},
                    {"recovered", f.recovered},
                    {"cause", f.cause},
                    {"phases_ms", f.phases},
                    {"gap_ms", f.gap_ms},
                    {"input_skipped_frames", f.skipped}});
    json summary{{"classes", {"vsnd"}},
                 {"duration_s", duration},
                 {"device", dev},
                 {"domain", dom},
                 {"faults", jf},
                 {"app", {{"name", "aplay"}, {"exit", aplay_rc}, {"clean_output", clean_output}}},
                 {"recording_complete", complete},
                 {"recovered", recovered},
                 {"transparent", transparent}};
    std::printf("%s\n", summary.dump().c_str());
  }
  return finish(transparent ? 0 : 1);
}

}  // namespace sd::shadowctl
