#include "common/frontend_link.hpp"

#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

namespace sd::front {

FrontendLink::FrontendLink(ctl::Channel ch, Spec spec) : ch_(std::move(ch)), spec_(std::move(spec)) {
  (void)ch_.set_nonblocking(true);
}

FrontendLink::~FrontendLink() {
  if (pool_) ::munmap(pool_, size_t{spec_.pool_pages} * kPageSize);
}

Result<void> FrontendLink::wait_attached(Hooks& h, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!attached_) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{ch_.fd(), POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
      return fail(Code::kEscalate, spec_.what + ": shadowd did not attach within " +
                                       std::to_string(limit.count() / 1000) + " s");
    std::vector<UniqueFd> fds;
    auto m = ch_.recv_fds(&fds);
    if (!m) return std::unexpected(m.error());
    if (!*m) continue;
    if (auto r = dispatch(h, **m, fds); !r) return r;
  }
  return {};
}

Result<void> FrontendLink::pump(Hooks& h) {
  if (gone_) return fail(Code::kEscalate, spec_.what + ": shadowd is gone");
  for (;;) {
    std::vector<UniqueFd> fds;
    auto m = ch_.recv_fds(&fds);
    if (!m || (*m && (*m)->type == ctl::MsgType::kShutdown)) {
      gone_ = true;
      connected_ = false;
      return fail(Code::kEscalate, spec_.what + ": shadowd is gone: " + (m ? "it shut the device down" : m.error().message));
    }
    if (!*m) return {};
    // An attach that fails here has been refused to shadowd; the frontend
    // stays until shadowd gives up on it and closes the channel.
    if (auto r = dispatch(h, **m, fds); !r)
      std::fprintf(stderr, "%s frontend: attach: %s\n", spec_.what.c_str(), r.error().to_string().c_str());
  }
}

Result<void> FrontendLink::dispatch(Hooks& h, const ctl::Msg& m, std::vector<UniqueFd>& fds) {
  switch (m.type) {
    case ctl::MsgType::kDevAttach:
      if (got_attach_) return {};  // one attach per frontend
      if (auto r = on_attach(m, fds); !r) return refuse(EINVAL, r.error());
      return spec_.pool_pages == 0 ? finish_attach(h) : Result<void>{};
    case ctl::MsgType::kGrantFds:
      if (!got_attach_ || attached_ || refused_) return {};
      if (auto r = on_grants(m, fds); !r) return refuse(EINVAL, r.error());
      return got_pages_ == spec_.pool_pages ? finish_attach(h) : Result<void>{};
    case ctl::MsgType::kDevAttached:  // shadowd's refusal (another frontend has the device)
      if (m.a == 0 || attached_) return {};
      return fail(m.a == EBUSY ? Code::kUnavailable : Code::kEscalate, spec_.what + ": shadowd refused: " + m.get_text());
    case ctl::MsgType::kBackendGone:
      connected_ = false;
      return {};
    case ctl::MsgType::kReconnect:
      if (attached_) reconnect(h, m);
      return {};
    default:
      return {};  // nothing else is shadowd's to send a frontend
  }
}

// kDevAttach: the splitter log and the event channel's two ends (Xen: no
// fds, the log is this process's own).
Result<void> FrontendLink::on_attach(const ctl::Msg& m, std::vector<UniqueFd>& fds) {
  got_attach_ = true;
  handle_ = m.b;
  attach_msg_ = m;
  if (spec_.pool_pages == 0) {
    auto log = shadow::SplitterLog::create(spec_.log_slots);
    if (!log) return std::unexpected(log.error());
    log_ = std::move(*log);
    return {};
  }
  if (fds.size() != 3) return fail(Code::kInvalidInput, spec_.what + " attach: expected 3 fds, got " +
                                                            std::to_string(fds.size()));
  auto log = shadow::SplitterLog::map(std::move(fds[0]), spec_.log_slots);
  if (!log) return std::unexpected(log.error());
  log_ = std::move(*log);
  to_back_ = std::move(fds[1]);
  from_back_ = std::move(fds[2]);
  // The pool's place, reserved now; each page is mapped into it as it comes.
  void* area = ::mmap(nullptr, size_t{spec_.pool_pages} * kPageSize, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (area == MAP_FAILED) return sys_fail(spec_.what + ": reserve the pool");
  pool_ = static_cast<uint8_t*>(area);
  mapped_.assign(spec_.pool_pages, 0);
  got_pages_ = 0;
  return {};
}

// kGrantFds: runs of pages from ref m.a on (each fd's after the previous
// one's), mapped into the reserved pool at once; the fds close here.
Result<void> FrontendLink::on_grants(const ctl::Msg& m, std::vector<UniqueFd>& fds) {
  size_t ref = m.a;
  for (auto& fd : fds) {
    auto n = ctl::granted_pages(fd.get());
    if (!n) return fail(Code::kInvalidInput, spec_.what + " attach: " + n.error().message);
    if (ref >= mapped_.size() || *n > mapped_.size() - ref ||
        std::any_of(mapped_.begin() + ref, mapped_.begin() + ref + *n, [](uint8_t b) { return b != 0; }))
      return fail(Code::kInvalidInput, spec_.what + " attach: bad grant batch (ref " + std::to_string(ref) + ")");
    void* p = ::mmap(page(static_cast<uint32_t>(ref)), *n * kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                     fd.get(), 0);
    if (p == MAP_FAILED) return sys_fail(spec_.what + ": mmap pool pages");
    std::fill(mapped_.begin() + ref, mapped_.begin() + ref + *n, 1);
    got_pages_ += *n;
    ref += *n;
  }
  return {};
}

Result<void> FrontendLink::finish_attach(Hooks& h) {
  if (auto r = h.attached(*this); !r) return refuse(EINVAL, r.error());
  attached_ = true;
  // Xen: no rings before the first kReconnect, which the first kReconnected answers.
  connected_ = spec_.pool_pages != 0;
  if (connected_) answer(ctl::MsgType::kDevAttached, 0, "");
  return {};
}

Result<void> FrontendLink::refuse(int err, const Error& why) {
  refused_ = true;
  answer(ctl::MsgType::kDevAttached, static_cast<uint32_t>(err), why.message);
  return std::unexpected(why);
}

void FrontendLink::reconnect(Hooks& h, const ctl::Msg& m) {
  auto r = h.repair(m);
  connected_ = r.has_value();
  if (!r) {
    // Xen: no pool for the new backend; shadowd gives up on this attach.
    answer(ctl::MsgType::kDevAttached, EIO, r.error().message);
    return;
  }
  ctl::Msg done{.type = ctl::MsgType::kReconnected, .a = r->replayed, .b = handle_};
  if (r->xen_pool)
    done.set_payload(*r->xen_pool);  // shadowd passes it on to the new backend
  else
    done.set_text(m.get_text());  // echoed: shadowd tells its reconnects apart
  (void)ch_.send(done);
  h.resumed();
}

void FrontendLink::answer(ctl::MsgType t, uint32_t a, const std::string& text) {
  ctl::Msg m{.type = t, .a = a, .b = handle_};
  m.set_text(text);
  (void)ch_.send(m);
}

void FrontendLink::fault(const std::string& why) {
  connected_ = false;
  answer(ctl::MsgType::kDevFault, 0, why);
}

void FrontendLink::kick() {
  uint64_t one = 1;
  (void)!::write(to_back_.get(), &one, sizeof(one));
}

void FrontendLink::clear_kicks() {
  uint64_t v;
  (void)!::read(from_back_.get(), &v, sizeof(v));  // nonblocking eventfd
}

}  // namespace sd::front
