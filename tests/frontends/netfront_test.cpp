// The vif frontend's reading of the guest's multicast memberships (part of
// the config state the shadow keeps and replays).
#include <gtest/gtest.h>

#include "vif/netfront.hpp"

namespace {

using sd::front::parse_dev_mcast;

const char kDevMcast[] =
    "2    ifb0            1     0     333300000001\n"
    "4    eth0            1     0     333300000001\n"
    "4    eth0            1     0     01005e000001\n"
    "4    eth0            1     0     zz005e000001\n";

TEST(ParseDevMcast, OwnInterface_ListedAddressesOnly) {
  sd::netif::VifConfig c{};

  parse_dev_mcast(kDevMcast, "eth0", c);

  ASSERT_EQ(c.n_mcast, 2);
  EXPECT_EQ(sd::netif::mac_string(c.mcast[0]), "33:33:00:00:00:01");
  EXPECT_EQ(sd::netif::mac_string(c.mcast[1]), "01:00:5e:00:00:01");
}

TEST(ParseDevMcast, OtherInterface_Nothing) {
  sd::netif::VifConfig c{};

  parse_dev_mcast(kDevMcast, "eth1", c);

  EXPECT_EQ(c.n_mcast, 0);
}

TEST(ParseDevMcast, MoreThanFilterHolds_AllMulticast) {
  std::string text;
  for (int i = 0; i < 40; ++i) {
    char line[64];
    std::snprintf(line, sizeof(line), "4 eth0 1 0 01005e0000%02x\n", i);
    text += line;
  }
  sd::netif::VifConfig c{};

  parse_dev_mcast(text, "eth0", c);

  EXPECT_EQ(c.n_mcast, 32);
  EXPECT_EQ(c.allmulti, 1);
}

TEST(ParseDevMcast, JoinedGroup_AcceptedByBackendFilter) {
  sd::netif::VifConfig c{};
  parse_dev_mcast(kDevMcast, "eth0", c);
  const uint8_t group[6] = {0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}, other[6] = {0x01, 0x00, 0x5e, 0x00, 0x00, 0x09};

  EXPECT_TRUE(sd::netif::accepts(c, group));
  EXPECT_FALSE(sd::netif::accepts(c, other));
}

}  // namespace
