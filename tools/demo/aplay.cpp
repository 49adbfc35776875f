// `shadowctl demo --classes vsnd`: an unmodified aplay per guest plays a
// marked WAV (every frame names its own index, sd/core/pcm_marks.hpp)
// through the ALSA plugin of that guest's vsnd, every sound card the sound
// driver domain serves at once, while faults are injected into that driver
// domain; each virtual DAC's recording is then compared with the input frame
// by frame and the report gives, per fault, shadowd's recovery phases and,
// per guest, the gap a listener heard (silence inserted, input skipped),
// sample-accurate.
#include <deque>
#include <fstream>
#include <optional>
#include <thread>

#include "faults.hpp"
#include "host.hpp"
#include "sd/core/pcm_marks.hpp"

namespace sd::tools::demo {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// One guest's sound card and its player.
struct Card : GuestDevice {
  using GuestDevice::GuestDevice;
  std::string pcm_sock, wav_out;
  Child aplay;
  std::vector<uint64_t> at_frame;  // per fault: the DAC's recorded frames when it went in
  std::vector<double> gap_ms;      // per fault: the silence heard in the second after it
  std::vector<int64_t> skipped;    // per fault: input frames skipped there (negative: repeated)
  int rc = -1;
  std::string out;
  bool clean_output = false, complete = false;
  std::optional<pcm::Analysis> analysis;
};

}  // namespace

int run_aplay(const std::string& sock, bool json_out, const Opts& o) {
  Progress pr;
  if (!can_run("it runs shadowd", {"aplay"}, "alsa-utils")) return 1;
  auto plugin = find_frontend("libasound_module_pcm_shadow.so");
  if (!plugin) return 1;
  ScratchRun run;
  if (!run.begin("vsnd", sock, o.config, pr)) return 1;
  const fs::path work = run.dir();
  std::deque<Card> cards;  // a Child does not move
  run.on_end = [&] {
    for (auto& c : cards) c.aplay.stop(2);
  };

  // ---- the sound cards and their driver domain.
  auto vsnds = wait_devices(sock, "vsnd", pr);
  if (vsnds.empty()) return run.end(1);
  const std::string dom = vsnds.front().value("backend", "");
  for (auto& v : vsnds) {
    // One player per card, on its first stream: the card's recording is
    // then that player's, frame for frame.
    if (v.value("detail", nlohmann::json::object()).value("card_stream", 0) != 0) continue;
    Card& c = cards.emplace_back(v);
    c.pcm_sock = c.detail.value("socket", "");
    c.wav_out = c.detail.value("wav", "");
    c.at_frame.resize(static_cast<size_t>(o.faults));
  }
  FaultSchedule sched(sock, dom, o, pr);
  std::string why;
  if (!sched.follow(&why)) return run.fail(why);

  // ---- the music, and each guest's asoundrc naming its card.
  const uint64_t frames = static_cast<uint64_t>(o.duration) * pcm::kRate;
  std::ofstream(work / "in.wav", std::ios::binary) << pcm::make_wav(frames);
  pr.note(strf("demo vsnd: aplay -D shadow on %zu card(s) of driver domain %s for %ld s; %ld fault(s)", cards.size(),
               dom.c_str(), o.duration, o.faults));
  for (auto& c : cards) {
    fs::path asoundrc = work / (c.guest + ".asoundrc");
    std::ofstream(asoundrc) << "pcm_type.shadow { lib \"" << plugin->string() << "\" }\n"
                            << "pcm.shadow { type shadow socket \"" << c.pcm_sock << "\" }\n";
    if (!c.aplay.start(
            {"aplay", "-D", "shadow", "--period-time=20000", "--buffer-time=200000", (work / "in.wav").string()},
            &why, work / (c.guest + ".aplay.out"), "/usr/share/alsa/alsa.conf:" + asoundrc.string()))
      return run.fail("cannot start aplay for " + c.device + ": " + why);
    pr.note("demo vsnd: " + c.guest + ": aplay -D shadow through " + c.device);
  }

  // ---- faults while they play; before each, every card's recorded frames.
  sched.on_inject = [&](size_t fault) {
    if (auto d = ask(sock, {{"cmd", "devices"}}))
      for (auto& x : (*d)["devices"])
        for (auto& c : cards)
          if (x.value("device", "") == c.device)
            c.at_frame[fault] = x["detail"]["dac"].value("wav_frames", uint64_t{0});
  };
  auto all_done = [&] {
    bool done = true;
    for (auto& c : cards) done = c.aplay.poll_exit() && done;
    return done;
  };
  sched.run(Clock::now(), "aplay", all_done, run.on_end);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto& faults = sched.faults;

  // ---- per guest and fault: the gap a listener heard.
  bool players_ok = true;
  for (auto& c : cards) {
    c.rc = c.aplay.rc();
    c.out = slurp(work / (c.guest + ".aplay.out"));
    c.analysis = pcm::analyze(slurp(c.wav_out));
    c.gap_ms.assign(faults.size(), 0);
    c.skipped.assign(faults.size(), 0);
    for (size_t i = 0; i < faults.size(); ++i) {
      if (!c.analysis || faults[i].at_s < 0) continue;
      for (const auto& g : c.analysis->gaps)
        if (g.at + pcm::kRate / 10 >= c.at_frame[i] && g.at < c.at_frame[i] + pcm::kRate) {
          c.gap_ms[i] += g.ms();
          c.skipped[i] += g.skipped;
        }
    }
    c.clean_output = c.out.find("underrun") == std::string::npos && c.out.find("rror") == std::string::npos;
    c.complete = c.analysis && c.analysis->complete(frames);
    players_ok = players_ok && c.rc == 0 && c.clean_output && c.complete;
  }
  bool transparent = players_ok && sched.recovered == faults.size() && !sched.interrupted;

  FILE* out = table_stream(json_out);
  std::fprintf(out, "\ndemo vsnd: aplay -D shadow of %ld s marked 48 kHz S16_LE stereo; driver domain %s\n",
               o.duration, dom.c_str());
  for (auto& c : cards) std::fprintf(out, "  %s: through %s\n", c.guest.c_str(), c.device.c_str());
  std::string head;
  for (auto& c : cards) head += strf("  %15s %9s", (c.guest + " gap ms").c_str(), "lost fr");
  sched.print_table(out, head, [&](size_t i) {
    std::string cells;
    for (auto& c : cards) cells += strf("  %15.2f %9lld", c.gap_ms[i], static_cast<long long>(c.skipped[i]));
    return cells;
  });
  std::fprintf(out,
               "     gap: silence each guest's DAC played in the second after the fault (from its recording,\n"
               "     sample-accurate); lost fr: input frames skipped there (negative: repeated)\n\n");
  for (auto& c : cards) {
    std::fprintf(out, "aplay %s: exit %d, messages: %s\n", c.guest.c_str(), c.rc,
                 c.clean_output ? "none" : c.out.c_str());
    if (c.analysis)
      std::fprintf(out,
                   "recording %s: %llu frames, %llu of the input, %zu gap(s), %llu foreign; the input apart from "
                   "gaps: %s\n",
                   c.guest.c_str(), static_cast<unsigned long long>(c.analysis->frames),
                   static_cast<unsigned long long>(c.analysis->marked), c.analysis->gaps.size(),
                   static_cast<unsigned long long>(c.analysis->foreign), c.complete ? "yes" : "NO");
    else
      std::fprintf(out, "recording %s: no WAV at %s\n", c.guest.c_str(), c.wav_out.c_str());
  }
  sched.print_notes(out);
  print_verdict(out, sched.recovered, faults.size(), transparent,
                "every guest's aplay exited 0, no xrun or error, every fault recovered");
  if (json_out) {
    json apps = json::array();
    for (auto& c : cards)
      apps.push_back({{"guest", c.guest}, {"device", c.device}, {"name", "aplay"}, {"exit", c.rc},
                      {"clean_output", c.clean_output}, {"recording_complete", c.complete}});
    print_summary(sched.summary(apps, transparent, [&](size_t i, json& j) {
      j["guests"] = json::object();
      for (auto& c : cards) j["guests"][c.guest] = {{"gap_ms", c.gap_ms[i]}, {"input_skipped_frames", c.skipped[i]}};
    }));
  }
  return run.end(transparent ? 0 : 1);
}

}  // namespace sd::tools::demo
