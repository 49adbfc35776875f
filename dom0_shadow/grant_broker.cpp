#include "grant_broker.hpp"

#include <cerrno>

namespace sd::dom0 {

uint32_t GrantBroker::add(platform::GrantPool* pool) {
  pools_[next_] = pool;
  return next_++;
}

void GrantBroker::remove(uint32_t id) { pools_.erase(id); }

void GrantBroker::answer(const ctl::Msg& m, platform::DomId peer, ctl::Channel& ch) const {
  ctl::Msg reply;
  reply.type = ctl::MsgType::kMapReply;
  auto it = pools_.find(m.a);
  if (it == pools_.end()) {
    reply.a = ENOENT;
    reply.set_text("no such grant pool");
    (void)ch.send(reply);
    return;
  }
  if (m.b > UINT32_MAX) {
    reply.a = EINVAL;
    reply.set_text("grant ref out of range");
    (void)ch.send(reply);
    return;
  }
  auto fd = it->second->fd_for_peer(peer);  // the whole pool: page m.b at offset m.b * 4096
  if (!fd) {
    reply.a = EPERM;
    reply.set_text(fd.error().message);
    (void)ch.send(reply);
    return;
  }
  (void)ch.send(reply, fd->get());
}

}  // namespace sd::dom0
