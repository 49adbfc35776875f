// Fuzz target: a message on a control channel from an untrusted peer (a
// driver domain or a frontend). Channel::recv takes exactly one whole
// fixed-size message or reports an error; what the receivers read of it
// (the text, the class, a Xen pool payload) stays inside the message.
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "sd/core/control_channel.hpp"
#include "sd/core/device_class.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto pair = sd::ctl::Channel::pair();
  if (!pair) std::abort();
  auto& [peer, self] = *pair;
  static bool nb = self.set_nonblocking(true).has_value();
  (void)nb;
  if (::send(peer.fd(), data, size, MSG_DONTWAIT) < 0) return 0;  // too big for one datagram: the kernel refuses it
  sd::UniqueFd fd;
  auto m = self.recv(&fd);
  if (!m) return 0;
  if (!m->has_value()) return 0;
  if (size != sizeof(sd::ctl::Msg)) std::abort();  // only a whole message is a message
  const auto& msg = **m;
  auto text = msg.get_text();
  if (text.size() > sizeof(msg.text)) std::abort();  // bounded even when the peer left out the NUL
  (void)sd::device_class_from_wire(msg.a);
  (void)msg.get_payload<sd::ctl::XenPool>();  // ASan: the payload is read inside the message
  return 0;
}
