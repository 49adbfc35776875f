// What shadowd publishes for a vsnd where a guest's kernel snd-xen-front
// reads it (Xen): the card in the one format the DAC plays, one PCM device,
// this playback stream.
#include "vsnd/vsnd_hooks.hpp"

#include <gtest/gtest.h>

namespace sd::dom0 {
namespace {

TEST(VsndHooksNodes, CardForSndXenFront_OneStreamInTheDacsFormat) {
  config::DeviceSpec spec{config::DeviceClass::kVsnd, 0, "snddd", {{"short-name", "Music"}}, {}, 1};
  VsndHooks hooks("guest5", spec, "/tmp");

  auto n = hooks.published_nodes();

  EXPECT_EQ(n.at("sample-rates"), "48000");
  EXPECT_EQ(n.at("sample-formats"), "s16_le");
  EXPECT_EQ(n.at("channels-min"), "2");
  EXPECT_EQ(n.at("channels-max"), "2");
  EXPECT_EQ(n.at("buffer-size"), std::to_string(sndif::kMaxBuffer));
  EXPECT_EQ(n.at("0/name"), "Music");
  EXPECT_EQ(n.at("0/0/type"), "p");  // the one key snd-xen-front insists on
  EXPECT_EQ(n.at("0/0/unique-id"), "guest5-vsnd-0.0");
}

}  // namespace
}  // namespace sd::dom0
