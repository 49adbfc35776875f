// `shadowctl demo --classes vsnd`: an unmodified aplay plays a marked WAV
// (every frame names its own index, sd/core/pcm_marks.hpp) through the ALSA
// plugin of the guest's vsnd while faults are injected into the sound driver
// domain; the virtual DAC's recording is then compared with the input frame
// by frame and the report gives, per fault, shadowd's recovery phases and the
// gap a listener heard (silence inserted, input skipped), sample-accurate.
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "faults.hpp"
#include "host.hpp"
#include "process.hpp"
#include "report.hpp"
#include "sd/core/pcm_marks.hpp"
#include "workloads.hpp"

namespace sd::tools::demo {

using nlohmann::json;
namespace fs = std::filesystem;

int run_aplay(const std::string& sock, bool json_out, const Opts& o) {
  FILE* out = table_stream(json_out);
  Progress pr;
  if (!can_run("it runs shadowd", {"aplay"}, "alsa-utils")) return 1;
  auto plugin = find_frontend("libasound_module_pcm_shadow.so");
  if (!plugin) return 1;
  // ---- shadowd: the running one, or one started here.
  ScratchRun run;
  if (!run.begin("vsnd", sock, o.config, pr)) return 1;
  const fs::path work = run.dir();
  auto finish = [&](int rc) { return run.end(rc); };

  // ---- the vsnd and its driver domain.
  auto vsnd = wait_device(sock, "vsnd", pr);
  if (!vsnd) return finish(1);
  const std::string dom = vsnd->value("backend", ""), dev = vsnd->value("device", "");
  const std::string pcm_sock = (*vsnd)["detail"].value("socket", ""), wav_out = (*vsnd)["detail"].value("wav", "");

  // ---- the guest's asoundrc and the music.
  std::ofstream(work / "asoundrc") << "pcm_type.shadow { lib \"" << plugin->string() << "\" }\n"
                                   << "pcm.shadow { type shadow socket \"" << pcm_sock << "\" }\n";
  const uint64_t frames = static_cast<uint64_t>(o.duration) * pcm::kRate;
  std::ofstream(work / "in.wav", std::ios::binary) << pcm::make_wav(frames);
  pr.note(strf("demo vsnd: aplay -D shadow (%s, driver domain %s) for %ld s; %ld fault(s)", dev.c_str(), dom.c_str(),
               o.duration, o.faults));
  auto wav_frames = [&] {
    auto d = ask(sock, {{"cmd", "devices"}});
    if (d)
      for (auto& x : (*d)["devices"])
        if (x.value("device", "") == dev) return x["detail"]["dac"].value("wav_frames", uint64_t{0});
    return uint64_t{0};
  };
  Child aplay;
  std::string why;
  if (!aplay.start({"aplay", "-D", "shadow", "--period-time=20000", "--buffer-time=200000", (work / "in.wav").string()},
                   {.file = work / "aplay.out"}, &why, "/usr/share/alsa/alsa.conf:" + (work / "asoundrc").string())) {
    pr.note("shadowctl: demo: cannot start aplay: " + why);
    return finish(1);
  }
  auto t0 = Clock::now();

  // ---- faults, one at a time: at its time, after the previous recovery.
  std::vector<uint64_t> at_frame(static_cast<size_t>(o.faults));
  auto faults = run_polled_faults(
      {.sock = sock,
       .domain = dom,
       .label = "demo vsnd",
       .n = o.faults,
       .duration_s = o.duration,
       .kinds = o.kinds,
       .elapsed = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); },
       .app_done = [&] { return aplay.poll_exit(); },
       .on_inject = [&](size_t i) { at_frame[i] = wav_frames(); }},
      pr);
  if (!aplay.wait_exit(static_cast<double>(o.duration) + 30)) {
    ::kill(-aplay.pid, SIGKILL);
    aplay.wait_exit(5);
  }
  const int aplay_rc = aplay.rc();
  std::string aplay_out = slurp(work / "aplay.out");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto a = pcm::analyze(slurp(wav_out));

  // ---- per fault: the gap a listener heard.
  std::vector<double> gap_ms(faults.size());
  std::vector<int64_t> skipped(faults.size());
  for (size_t i = 0; i < faults.size(); ++i) {
    if (!a || faults[i].at_s < 0) continue;
    for (const auto& g : a->gaps)
      if (g.at + pcm::kRate / 10 >= at_frame[i] && g.at < at_frame[i] + pcm::kRate) {
        gap_ms[i] += g.ms();
        skipped[i] += g.skipped;
      }
  }
  bool clean_output = aplay_out.find("underrun") == std::string::npos && aplay_out.find("rror") == std::string::npos;
  size_t recovered = 0;
  for (auto& f : faults) recovered += f.recovered;
  bool complete = a && a->complete(frames);
  bool transparent = aplay_rc == 0 && clean_output && recovered == faults.size() && complete;

  std::fprintf(out,
               "\ndemo vsnd: aplay -D shadow of %ld s marked 48 kHz S16_LE stereo through %s; driver domain %s\n\n",
               o.duration, dev.c_str(), dom.c_str());
  std::fprintf(out, "%s  %9s %9s  %s\n", phases_head().c_str(), "gap ms", "lost fr", "cause as detected");
  for (size_t i = 0; i < faults.size(); ++i) {
    const auto& f = faults[i];
    std::fprintf(out, "%s  %9.2f %9lld  %s\n", phases_row(i + 1, f.kind, strf("%.2f", f.at_s), f.phases).c_str(),
                 gap_ms[i], static_cast<long long>(skipped[i]), f.cause.empty() ? "-" : f.cause.c_str());
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
  print_verdict(out, recovered, faults.size(), transparent, "aplay exited 0, no xrun or error, every fault recovered");
  if (json_out) {
    json jf = json::array();
    for (size_t i = 0; i < faults.size(); ++i) {
      const auto& f = faults[i];
      jf.push_back({{"kind", f.kind},
                    {"at_s", f.at_s},
                    {"recovered", f.recovered},
                    {"cause", f.cause},
                    {"phases_ms", f.phases},
                    {"gap_ms", gap_ms[i]},
                    {"input_skipped_frames", skipped[i]}});
    }
    json s = summary(json::array({"vsnd"}), o.duration, dev, dom, jf,
                     {{"name", "aplay"}, {"exit", aplay_rc}, {"clean_output", clean_output}}, recovered, transparent);
    s["recording_complete"] = complete;
    print_summary(s);
  }
  return finish(transparent ? 0 : 1);
}

}  // namespace sd::tools::demo
