// sd-pcm-marks: the marked test signal (sd/core/pcm_marks.hpp) for scripts.
//   sd-pcm-marks gen SECONDS OUT.wav     write SECONDS of marked 48 kHz S16_LE stereo
//   sd-pcm-marks gaps IN.wav [FRAMES]    analyse a recording of it: one JSON object
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "sd/core/pcm_marks.hpp"

int main(int argc, char** argv) {
  const char* usage = "usage: sd-pcm-marks gen SECONDS OUT.wav | sd-pcm-marks gaps IN.wav [INPUT_FRAMES]\n";
  if (argc >= 4 && std::string(argv[1]) == "gen") {
    char* end;
    long s = std::strtol(argv[2], &end, 10);
    if (*end || s <= 0 || s > 3600) {
      std::fprintf(stderr, "sd-pcm-marks: SECONDS must be 1..3600\n");
      return 2;
    }
    std::ofstream(argv[3], std::ios::binary) << sd::pcm::make_wav(static_cast<uint64_t>(s) * sd::pcm::kRate);
    return 0;
  }
  if (argc >= 3 && std::string(argv[1]) == "gaps") {
    std::ifstream f(argv[2], std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    auto a = sd::pcm::analyze(ss.str());
    if (!a) {
      std::fprintf(stderr, "sd-pcm-marks: %s is not a WAV file\n", argv[2]);
      return 1;
    }
    uint64_t input = argc >= 4 ? std::strtoull(argv[3], nullptr, 10) : a->end_index;
    std::printf("{\"frames\":%llu,\"marked\":%llu,\"foreign\":%llu,\"lead_silence\":%llu,\"tail_silence\":%llu,"
                "\"complete\":%s,\"gaps\":[",
                static_cast<unsigned long long>(a->frames), static_cast<unsigned long long>(a->marked),
                static_cast<unsigned long long>(a->foreign), static_cast<unsigned long long>(a->lead_silence),
                static_cast<unsigned long long>(a->tail_silence), a->complete(input) ? "true" : "false");
    for (size_t i = 0; i < a->gaps.size(); ++i)
      std::printf("%s{\"at\":%llu,\"silent\":%llu,\"skipped\":%lld}", i ? "," : "",
                  static_cast<unsigned long long>(a->gaps[i].at), static_cast<unsigned long long>(a->gaps[i].silent),
                  static_cast<long long>(a->gaps[i].skipped));
    std::printf("]}\n");
    return 0;
  }
  std::fputs(usage, stderr);
  return 2;
}
