#include "grant_mapper.hpp"

#include <poll.h>
#include <sys/mman.h>

namespace sd::drvdom {

GrantMapper::~GrantMapper() {
  for (auto& [k, p] : maps_) ::munmap(p, 4096);
}

Result<void*> GrantMapper::map(uint32_t pool, uint32_t ref, bool writable) {
  if (auto it = maps_.find({pool, ref}); it != maps_.end()) return it->second;
  ctl::Msg req;
  req.type = ctl::MsgType::kMapGrant;
  req.a = pool;
  req.b = ref;
  if (auto s = ch_.send(req); !s) return std::unexpected(s.error());
  for (;;) {
    pollfd p{ch_.fd(), POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) return fail(Code::kRetry, "grant broker did not answer");
    UniqueFd fd;
    auto m = ch_.recv(&fd);
    if (!m) return std::unexpected(m.error());
    if (!*m) continue;
    if ((*m)->type != ctl::MsgType::kMapReply) {
      deferred_.push_back(**m);
      continue;
    }
    if ((*m)->a != 0 || !fd)
      return fail(Code::kInvalidInput, "grant " + std::to_string(pool) + ":" + std::to_string(ref) +
                                           " refused: " + (*m)->get_text());
    void* p2 = ::mmap(nullptr, 4096, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd.get(), 0);
    if (p2 == MAP_FAILED) return sys_fail("mmap grant");
    maps_[{pool, ref}] = p2;
    return p2;
  }
}

}  // namespace sd::drvdom
