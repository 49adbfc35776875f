// Fuzz target: one line from shadowd's control socket. parse_request either
// refuses it with a message or gives an object with a string "cmd" that
// serialises and parses back to itself.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "control_server.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  auto req = sd::dom0::ControlServer::parse_request(line);
  if (!req) {
    if (req.error().message.empty()) std::abort();
    return 0;
  }
  if (!req->is_object() || !(*req)["cmd"].is_string()) std::abort();
  auto text = req->dump();
  if (nlohmann::json::parse(text) != *req) std::abort();
  return 0;
}
