// Fuzz target: an xl domain config file (operator input). The parser
// either returns a config or diagnostics with file:line; it never crashes,
// and every diagnostic renders.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "sd/config/xl_cfg.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto cfg = sd::config::parse_domain_cfg_text(text, "fuzz.cfg");
  if (!cfg) (void)sd::config::to_string(cfg.error());
  return 0;
}
