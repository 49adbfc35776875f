#include "vbd/vbd_shadow.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "frontend_link.hpp"
#include "local/local_platform.hpp"

namespace sd::dom0 {

using blkif::kPoolPages;
constexpr uint16_t kReqRing = 0;

VbdShadow::VbdShadow(boost::asio::io_context& io, platform::Platform& plat, std::string guest,
                     const config::DeviceSpec& spec, uint64_t handle, std::filesystem::path state_dir,
                     config::Policy policy, EventLog& log, FaultReporter report)
    : io_(io),
      plat_(plat),
      guest_(std::move(guest)),
      spec_(spec),
      handle_(handle),
      state_dir_(std::move(state_dir)),
      policy_(std::move(policy)),
      log_(log),
      report_(std::move(report)),
      watchdog_(io) {
  socket_ = state_dir_ / (guest_ + "-vbd-" + std::to_string(spec_.index) + ".sock");
}

VbdShadow::~VbdShadow() { teardown(); }

std::string VbdShadow::id() const { return guest_ + "/vbd/" + std::to_string(spec_.index); }

Result<std::pair<UniqueFd, blkif::DiskState>> VbdShadow::open_disk(const std::string& target, bool readonly,
                                                                   uint32_t queue_limit, bool direct_io) {
  const std::string hint = " (hint: the disk's target= must name an existing image or block device, e.g. "
                           "`truncate -s 1G " + target + "`)";
  if (target.empty()) return fail(Code::kInvalidInput, "vbd: the disk has no target=" + hint);
  int mode = (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  UniqueFd fd(direct_io ? ::open(target.c_str(), mode | O_DIRECT) : -1);
  bool direct = bool(fd);
  if (direct) {
    // Some file systems accept O_DIRECT at open and refuse it at the first
    // read (tmpfs before 6.6): try one aligned read.
    void* buf = std::aligned_alloc(4096, 4096);
    ssize_t n = buf ? ::pread(fd.get(), buf, 4096, 0) : -1;
    if (n < 0 && errno == EINVAL) direct = false;
    std::free(buf);
  }
  if (!direct) fd.reset(::open(target.c_str(), mode));
  if (!fd) return fail(Code::kInvalidInput, "vbd: cannot open " + target + ": " + std::strerror(errno) + hint);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return sys_fail("vbd: fstat " + target);
  uint64_t bytes = 0;
  if (S_ISREG(st.st_mode)) {
    bytes = static_cast<uint64_t>(st.st_size);
  } else if (S_ISBLK(st.st_mode)) {
    if (::ioctl(fd.get(), BLKGETSIZE64, &bytes) != 0) return sys_fail("vbd: BLKGETSIZE64 " + target);
  } else {
    return fail(Code::kInvalidInput, "vbd: " + target + " is neither a regular file nor a block device" + hint);
  }
  if (bytes < blkif::kSectorSize)
    return fail(Code::kInvalidInput, "vbd: " + target + " is empty" + hint);
  blkif::DiskState d{};
  d.sectors = bytes / blkif::kSectorSize;
  d.features = blkif::kFeatureFlush | blkif::kFeatureBarrier | (readonly ? 0 : blkif::kFeatureDiscard);
  d.queue_limit = queue_limit;
  d.o_direct = direct ? 1 : 0;
  d.readonly = readonly ? 1 : 0;
  d.generation = 1;
  return std::pair{std::move(fd), d};
}

Result<void> VbdShadow::setup() {
  if (plat_.name() != "local")
    return fail(Code::kUnavailable, "vbd shadow: only the local platform is wired up so far");
  auto target = spec_.params.find("target");
  auto access = spec_.params.find("access");
  bool ro = access != spec_.params.end() && (access->second == "r" || access->second == "ro");
  target_ = target == spec_.params.end() ? std::string() : target->second;
  auto disk = open_disk(target_, ro, policy_.queue_limit, spec_.params.count("direct-io-safe") != 0);
  if (!disk) return std::unexpected(disk.error());
  disk_ = std::move(disk->first);
  disk_state_ = disk->second;
  std::error_code ec;
  std::filesystem::create_directories(state_dir_, ec);
  auto pool = plat_.make_grant_pool(kPoolPages);
  if (!pool) return std::unexpected(pool.error());
  pool_ = std::move(*pool);
  auto evt = plat_.make_event_channel();
  if (!evt) return std::unexpected(evt.error());
  front_evt_ = std::move(evt->first);
  back_evt_ = std::move(evt->second);
  auto ls = listen_frontend_socket(socket_, "vbd");
  if (!ls) return std::unexpected(ls.error());
  listen_ = std::move(*ls);
  listen_wait_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, ::dup(listen_.get()));
  arm_accept();
  watchdog_.expires_after(policy_.heartbeat_interval);
  watchdog_.async_wait([this](const boost::system::error_code& e) {
    if (!e) watchdog_tick();
  });
  log_.emit({{"type", "vbd_up"},
             {"device", id()},
             {"socket", socket_.string()},
             {"target", target_},
             {"sectors", disk_state_.sectors},
             {"o_direct", disk_state_.o_direct != 0}});
  return {};
}

void VbdShadow::arm_accept() {
  if (!listen_wait_) return;
  listen_wait_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                           [this](const boost::system::error_code& ec) {
                             if (ec) return;
                             accept_frontend();
                             arm_accept();
                           });
}

// The guest's sd-blkfront connected: hand it the splitter log, its
// event-channel ends, the disk and the pool (its own memory). One frontend
// at a time: a second is refused.
void VbdShadow::accept_frontend() {
  auto ch = sd::dom0::accept_frontend(listen_.get(), front_.valid(), "the vbd " + id() + " is in use by another frontend");
  if (!ch) return;
  auto sh = new_splitter_log(blkif::kRingSize);
  if (!sh) return;
  shadow_ = std::move(*sh);
  front_ = std::move(*ch);
  front_ready_ = front_attached_ = false;
  auto* fe = dynamic_cast<local::LocalEventChannel*>(front_evt_.get());
  ctl::Msg att;
  att.type = ctl::MsgType::kDevAttach;
  att.a = blkif::kClassId;
  att.b = handle_;
  att.set_payload(disk_state_);
  int fds[3] = {shadow_.fd(), fe->notify_fd(), fe->wait_fd()};
  if (!front_.send_fds(att, fds, 3) || !send_pool_fds(front_, *pool_, handle_, std::nullopt)) {
    front_ = ctl::Channel();
    return;
  }
  (void)front_.set_nonblocking(true);
  (void)front_evt_->consume();
  (void)back_evt_->consume();
  ++connections_;
  front_wait_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, ::dup(front_.fd()));
  arm_frontend_read();
}

void VbdShadow::arm_frontend_read() {
  read_frontend(front_wait_, front_, [this](const ctl::Msg& m) { on_frontend_msg(m); },
                [this](const std::string& why) { frontend_gone(why); });
}

// The frontend went away (unmounted, or died): the backend forgets the
// device until the next one connects.
void VbdShadow::frontend_gone(const std::string& why) {
  log_.emit({{"type", "vbd_frontend_gone"}, {"device", id()}, {"detail", why}});
  front_wait_.reset();
  front_ = ctl::Channel();
  front_ready_ = front_attached_ = false;
  if (done_ && backend_) {
    backend_up_ = true;
    ++recoveries_;
    finish(times_);
  }
  if (backend_up_ && backend_) {
    ctl::Msg m;
    m.type = ctl::MsgType::kDevDetach;
    m.b = handle_;
    (void)backend_->send(m);
  }
}

void VbdShadow::on_frontend_msg(const ctl::Msg& m) {
  switch (m.type) {
    case ctl::MsgType::kDevAttached:
      if (m.a != 0 || front_ready_) return;
      front_ready_ = true;
      log_.emit({{"type", "vbd_frontend_up"}, {"device", id()}, {"connection", connections_}});
      if (backend_up_ && backend_) attach_backend();
      return;
    case ctl::MsgType::kReconnected:
      if (!done_ || !backend_) return;
      times_.replayed = m.a;
      replayed_total_ += m.a;
      t_replayed_ = platform::Clock::now();
      times_.replay_ms = ms_between(t_ready_, t_replayed_);
      attach_backend();
      return;
    case ctl::MsgType::kDevFault:
      last_fault_ = m.get_text();
      ++bad_responses_;
      log_.emit({{"type", "vbd_bad_response"}, {"device", id()}, {"error", last_fault_}});
      if (backend_up_) report_("bad response: " + last_fault_, std::nullopt);
      return;
    default:
      return;
  }
}

// The disk state to replay: the log's copy (what the frontend negotiated)
// if it matches the disk shadowd opened, else shadowd's own.
blkif::DiskState VbdShadow::replay_state() const {
  blkif::DiskState s{};
  if (!shadow_.valid() || shadow_.get_config(&s, sizeof(s)) != sizeof(s)) return disk_state_;
  // Written by the guest: it may only narrow what shadowd offered.
  if (s.sectors != disk_state_.sectors || (s.features & ~disk_state_.features) || s.readonly < disk_state_.readonly ||
      s.o_direct != disk_state_.o_direct)
    return disk_state_;
  s.queue_limit = disk_state_.queue_limit;
  return s;
}

// kDevAttach (disk state replayed from the shadow; event channels, the
// disk), then the granted pages.
void VbdShadow::attach_backend() {
  if (!backend_ || !front_ready_) return;
  for (uint32_t ref = 0; ref < kPoolPages; ++ref) {
    (void)pool_->revoke(ref);
    if (auto r = pool_->grant(ref, domid_, false); !r) return finish(std::unexpected(r.error()));
  }
  auto* be = dynamic_cast<local::LocalEventChannel*>(back_evt_.get());
  ctl::Msg att;
  att.type = ctl::MsgType::kDevAttach;
  att.a = blkif::kClassId;
  att.b = handle_;
  att.set_payload(replay_state());
  int fds[3] = {be->notify_fd(), be->wait_fd(), disk_.get()};
  front_attached_ = true;
  if (auto r = backend_->send_fds(att, fds, 3); !r) return finish(std::unexpected(r.error()));
  if (auto r = send_pool_fds(*backend_, *pool_, handle_, domid_); !r) finish(std::unexpected(r.error()));
}

void VbdShadow::on_fault() {
  bool was_up = backend_up_;
  backend_up_ = false;
  backend_ = nullptr;
  if (done_) finish(fail(Code::kRetry, "backend failed during recovery"));
  if (was_up && front_ready_) {
    ctl::Msg m;
    m.type = ctl::MsgType::kBackendGone;
    m.b = handle_;
    (void)front_.send(m);
  }
}

// Active mode `queue`: nothing to answer. The guest's requests wait in the
// ring (and its callers, once the ring or the queue limit is full) for the
// next backend; the disk keeps what the dead one wrote.
void VbdShadow::on_backend_dead() {
  queued_at_death_ = shadow_.valid() ? shadow_.count(kReqRing) : 0;
  log_.emit(
      {{"type", "vbd_active"}, {"device", id()}, {"action", policy_.active_action}, {"inflight", queued_at_death_}});
}

void VbdShadow::on_backend_ready(ctl::Channel& ch, platform::DomId domid, Done done) {
  backend_ = &ch;
  domid_ = domid;
  done_ = std::move(done);
  times_ = {};
  t_ready_ = platform::Clock::now();
  if (!front_ready_) {
    // No frontend: nothing to hand over; it is attached when one connects.
    backend_up_ = true;
    up_since_ns_ = shadow::now_ns();
    ++recoveries_;
    boost::asio::post(io_, [this] { finish(times_); });
    return;
  }
  if (!front_attached_) {
    attach_backend();
    return;
  }
  // The old backend is done with the ring: the frontend takes what was
  // finished, resets it and resubmits what is in flight, in order.
  ctl::Msg m;
  m.type = ctl::MsgType::kReconnect;
  m.b = handle_;
  m.set_text("attach");
  if (auto r = front_.send(m); !r) finish(std::unexpected(r.error()));
}

void VbdShadow::on_backend_msg(platform::DomId from, const ctl::Msg& m) {
  if (m.b != handle_) return;
  if (m.type == ctl::MsgType::kDevAttached) {
    if (from != domid_) return;
    if (m.a != 0) {
      log_.emit({{"type", "vbd_attach_refused"}, {"device", id()}, {"error", m.get_text()}});
      return finish(fail(Code::kRestartReplay, "backend refused the vbd: " + m.get_text()));
    }
    backend_up_ = true;
    up_since_ns_ = shadow::now_ns();
    auto now = platform::Clock::now();
    times_.resume_ms = ms_between(t_replayed_ == platform::Clock::time_point{} ? t_ready_ : t_replayed_, now);
    (void)back_evt_->notify();
    (void)front_evt_->notify();
    t_replayed_ = {};
    if (done_) {
      ++recoveries_;
      finish(times_);
    }
  } else if (m.type == ctl::MsgType::kDevFault) {
    log_.emit({{"type", "frontend_protocol_error"}, {"device", id()}, {"error", m.get_text()}});
  }
}

void VbdShadow::finish(Result<ResumeTimes> r) {
  if (!done_) return;
  auto d = std::move(done_);
  done_ = nullptr;
  d(std::move(r));
}

// Progress watchdog: a request in flight for progress_timeout_ms under the
// current backend (ages count from when it started serving, so requests
// replayed into it are not held against it) means the backend stalled.
void VbdShadow::watchdog_tick() {
  if (backend_up_ && front_attached_ && shadow_.valid() && shadow_.enabled()) {
    uint64_t now = shadow::now_ns(), oldest = now;
    for (const auto& e : shadow_.inflight(kReqRing)) oldest = std::min(oldest, std::max(e.posted_ns, up_since_ns_));
    auto age_ms = static_cast<int64_t>((now - oldest) / 1000000);
    if (age_ms > policy_.progress_timeout.count()) {
      report_("hang (request pending " + std::to_string(age_ms) + " ms, progress watchdog)",
              platform::Clock::now() - std::chrono::milliseconds(age_ms));
      up_since_ns_ = now;  // one report per stall
    }
  }
  watchdog_.expires_after(policy_.heartbeat_interval);
  watchdog_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) watchdog_tick();
  });
}

void VbdShadow::teardown() {
  watchdog_.cancel();
  front_wait_.reset();
  front_ = ctl::Channel();
  listen_wait_.reset();
  if (listen_) {
    listen_.reset();
    ::unlink(socket_.c_str());
  }
}

nlohmann::json VbdShadow::status() const {
  auto s = replay_state();
  return {{"socket", socket_.string()},
          {"target", target_},
          {"sectors", disk_state_.sectors},
          {"o_direct", disk_state_.o_direct != 0},
          {"readonly", disk_state_.readonly != 0},
          {"features", {{"flush", (s.features & blkif::kFeatureFlush) != 0},
                        {"barrier", (s.features & blkif::kFeatureBarrier) != 0},
                        {"discard", (s.features & blkif::kFeatureDiscard) != 0}}},
          {"frontend_connected", front_ready_},
          {"connections", connections_},
          {"backend_up", backend_up_},
          {"active_action", policy_.active_action},
          {"queue_limit", std::min<uint32_t>(policy_.queue_limit, blkif::kRingSize)},
          {"splitter_log", shadow_.valid() && shadow_.enabled()},
          {"inflight", shadow_.valid() ? shadow_.count(kReqRing) : 0},
          {"inflight_at_last_death", queued_at_death_},
          {"replayed", replayed_total_},
          {"bad_responses", bad_responses_},
          {"recoveries", recoveries_},
          {"last_fault", last_fault_}};
}

}  // namespace sd::dom0
