// Fuzz target: a per-class policy file (YAML, operator input), loaded as
// each class's. A policy that loads must show (`policy show`) as YAML that
// loads again to the same values.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "sd/config/policy.hpp"

using sd::config::DeviceClass;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  for (auto cls : {DeviceClass::kVif, DeviceClass::kVbd, DeviceClass::kVsnd}) {
    auto p = sd::config::parse_policy_text(text, "fuzz.yaml", cls);
    if (!p) {
      (void)sd::config::to_string(p.error());
      continue;
    }
    auto shown = sd::config::policy_to_yaml(*p);
    auto again = sd::config::parse_policy_text(shown, "fuzz.yaml", cls);
    if (!again || sd::config::policy_to_yaml(*again) != shown) {  // `policy show` must round-trip
      std::fprintf(stderr, "shown:\n%s\nloads as: %s\n", shown.c_str(),
                   again ? sd::config::policy_to_yaml(*again).c_str() : sd::config::to_string(again.error()).c_str());
      std::abort();
    }
  }
  return 0;
}
