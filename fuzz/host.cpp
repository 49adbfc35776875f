// Fuzz target: the host file (YAML, operator input), written to a scratch
// directory and loaded with everything it names (missing files, bad paths
// and bad policies are diagnostics, never a crash).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "sd/config/host.hpp"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fs::path dir = fs::temp_directory_path() / ("sd-fuzz-host-" + std::to_string(::getpid()));
  static bool made = fs::create_directories(dir) || fs::exists(dir);
  if (!made) return 0;
  {
    std::ofstream f(dir / "host.yaml", std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  auto host = sd::config::load_host(dir / "host.yaml");
  if (!host) (void)sd::config::to_string(host.error());
  return 0;
}
