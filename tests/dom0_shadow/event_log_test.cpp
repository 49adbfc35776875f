// shadowd's event log and control-socket requests: what untrusted peers
// and clients put in them must not throw shadowd over.
#include "control_server.hpp"
#include "event_log.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

namespace fs = std::filesystem;
using sd::dom0::ControlServer;
using sd::dom0::EventLog;

TEST(EventLog, PeerTextNotUtf8_WrittenWithReplacementsNotThrown) {
  fs::path dir = fs::temp_directory_path() / ("sd-evlog-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  std::string seen;
  {
    EventLog log(dir / "events.jsonl");
    log.subscribe([&](const nlohmann::json& ev) { seen = ev.value("error", ""); });
    // What a driver domain might say in a refusal: invalid UTF-8.
    EXPECT_NO_THROW(log.emit({{"type", "attach_refused"}, {"error", std::string("bad \xff\xfe ring")}}));
    EXPECT_EQ(log.recent(10).size(), 1u);
  }
  std::ifstream in(dir / "events.jsonl");
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  auto ev = nlohmann::json::parse(line, nullptr, false);
  ASSERT_FALSE(ev.is_discarded()) << line;
  EXPECT_EQ(ev["error"], "bad \xEF\xBF\xBD\xEF\xBF\xBD ring") << "each bad byte a U+FFFD";
  EXPECT_EQ(seen, "bad \xff\xfe ring") << "subscribers get the event as emitted";
  fs::remove_all(dir);
}

TEST(ControlRequest, ParsedOrRefusedWithAReason) {
  auto ok = ControlServer::parse_request(R"({"cmd": "status", "domain": "netdd"})");
  ASSERT_TRUE(ok);
  EXPECT_EQ((*ok)["domain"], "netdd");
  for (std::string bad : {"", "not json", "[1, 2]", R"({"cmd": 7})", R"({"domain": "netdd"})", "{\"cmd\": \"\xff\"}"}) {
    auto r = ControlServer::parse_request(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().message.find("JSON object with a string \"cmd\""), std::string::npos) << bad;
  }
  auto big = ControlServer::parse_request(std::string(65 * 1024, ' '));
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().message, "request too long");
}
