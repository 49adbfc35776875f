#include "vsnd/vsnd_shadow.hpp"

#include <boost/asio/post.hpp>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "local/local_platform.hpp"
#include "frontend_link.hpp"

namespace sd::dom0 {

using sndif::kPoolPages;
constexpr uint16_t kReqRing = 0;

VsndShadow::VsndShadow(boost::asio::io_context& io, platform::Platform& plat, std::string guest,
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
  std::string stem = guest_ + "-vsnd-" + std::to_string(spec_.index);
  socket_ = state_dir_ / (stem + ".sock");
  wav_ = state_dir_ / (stem + ".wav");
}

VsndShadow::~VsndShadow() { teardown(); }

std::string VsndShadow::id() const { return guest_ + "/vsnd/" + std::to_string(spec_.index); }

Result<void> VsndShadow::setup() {
  if (plat_.name() != "local")
    return fail(Code::kUnavailable, "vsnd shadow: only the local platform is wired up so far");
  std::error_code ec;
  std::filesystem::create_directories(state_dir_, ec);
  auto dac = Dac::create(wav_);
  if (!dac) return std::unexpected(dac.error());
  dac_ = std::move(*dac);
  auto pool = plat_.make_grant_pool(kPoolPages);
  if (!pool) return std::unexpected(pool.error());
  pool_ = std::move(*pool);
  auto evt = plat_.make_event_channel();
  if (!evt) return std::unexpected(evt.error());
  front_evt_ = std::move(evt->first);
  back_evt_ = std::move(evt->second);

  auto ls = listen_frontend_socket(socket_, "vsnd");
  if (!ls) return std::unexpected(ls.error());
  listen_ = std::move(*ls);
  listen_wait_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, ::dup(listen_.get()));
  arm_accept();
  watchdog_.expires_after(policy_.heartbeat_interval);
  watchdog_.async_wait([this](const boost::system::error_code& e) {
    if (!e) watchdog_tick();
  });
  log_.emit({{"type", "vsnd_up"}, {"device", id()}, {"socket", socket_.string()}, {"wav", wav_.string()}});
  return {};
}

void VsndShadow::arm_accept() {
  if (!listen_wait_) return;
  listen_wait_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                           [this](const boost::system::error_code& ec) {
                             if (ec) return;
                             accept_frontend();
                             arm_accept();
                           });
}

// A player opened the PCM: hand its plugin the splitter log, its
// event-channel ends and the pool (its own memory), as vif does for
// sd-netfront. One stream at a time: a second player is refused.
void VsndShadow::accept_frontend() {
  auto ch = sd::dom0::accept_frontend(listen_.get(), front_.valid(), "the vsnd " + id() + " is in use by another player");
  if (!ch) return;
  auto sh = new_splitter_log(sndif::kRingSize);
  if (!sh) return;
  shadow_ = std::move(*sh);
  front_ = std::move(*ch);
  front_ready_ = front_attached_ = false;
  auto* fe = dynamic_cast<local::LocalEventChannel*>(front_evt_.get());
  ctl::Msg att;
  att.type = ctl::MsgType::kDevAttach;
  att.a = sndif::kClassId;
  att.b = handle_;
  int fds[3] = {shadow_.fd(), fe->notify_fd(), fe->wait_fd()};
  if (!front_.send_fds(att, fds, 3) || !send_pool(front_, 0, true)) {
    front_ = ctl::Channel();
    return;
  }
  (void)front_.set_nonblocking(true);
  (void)front_evt_->consume();
  (void)back_evt_->consume();
  // A new stream: the DAC starts a new recording, halted until TRIGGER.
  dac_->regs().run.store(0);
  dac_->regs().flush_to.store(dac_->regs().wr.load());
  dac_->restart_wav();
  ++streams_;
  front_wait_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, ::dup(front_.fd()));
  arm_frontend_read();
}

Result<void> VsndShadow::send_pool(ctl::Channel& ch, platform::DomId peer, bool owner) {
  return send_pool_fds(ch, *pool_, handle_, owner ? std::nullopt : std::optional<platform::DomId>(peer));
}

void VsndShadow::arm_frontend_read() {
  read_frontend(front_wait_, front_, [this](const ctl::Msg& m) { on_frontend_msg(m); },
                [this](const std::string& why) { frontend_gone(why); });
}

// The player closed the PCM (or died): the stream ends, the DAC halts, the
// backend forgets the device until the next player.
void VsndShadow::frontend_gone(const std::string& why) {
  log_.emit({{"type", "vsnd_stream_end"}, {"device", id()}, {"detail", why}});
  front_wait_.reset();
  front_ = ctl::Channel();
  front_ready_ = front_attached_ = false;
  stop_active();
  dac_->regs().run.store(0);
  dac_->regs().flush_to.store(dac_->regs().wr.load());
  if (done_ && backend_) {
    // A recovery was waiting for this player's replay: the backend is up,
    // with no stream to serve.
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

void VsndShadow::on_frontend_msg(const ctl::Msg& m) {
  switch (m.type) {
    case ctl::MsgType::kDevAttached:
      if (m.a != 0 || front_ready_) return;
      front_ready_ = true;
      log_.emit({{"type", "vsnd_stream_start"}, {"device", id()}, {"stream", streams_}});
      if (backend_up_ && backend_) {
        attach_backend();
      } else if (backend_dead_) {
        front_attached_ = true;
        start_active();
      }
      return;
    case ctl::MsgType::kReconnected:
      if (m.get_text() == "active") {
        if (!backend_) start_active();  // unless a new backend is already taking over
        return;
      }
      if (!done_ || !backend_) return;
      times_.replayed = m.a;
      t_replayed_ = platform::Clock::now();
      times_.replay_ms = ms_between(t_ready_, t_replayed_);
      attach_backend();
      return;
    case ctl::MsgType::kDevFault:
      last_fault_ = m.get_text();
      log_.emit({{"type", "vsnd_bad_response"}, {"device", id()}, {"error", last_fault_}});
      if (backend_up_) report_("bad response: " + last_fault_, std::nullopt);
      return;
    default:
      return;
  }
}

// The stream to replay: the newest state in the splitter log if it checks
// out, else a closed stream (the player's next requests open it again).
sndif::StreamState VsndShadow::replay_state() const {
  sndif::StreamState s{};
  if (!shadow_.valid() || shadow_.get_config(&s, sizeof(s)) != sizeof(s)) return {};
  if (s.open && !sndif::check_open(s.params).empty()) return {};
  if (s.run > static_cast<uint8_t>(sndif::Run::kPaused)) s.run = static_cast<uint8_t>(sndif::Run::kStopped);
  return s;
}

// kDevAttach (stream state replayed from the shadow; event channels, the
// DAC and its interrupt), then the granted pages.
void VsndShadow::attach_backend() {
  if (!backend_ || !front_ready_) return;
  for (uint32_t ref = 0; ref < kPoolPages; ++ref) {
    (void)pool_->revoke(ref);
    if (auto r = pool_->grant(ref, domid_, false); !r) return finish(std::unexpected(r.error()));
  }
  auto* be = dynamic_cast<local::LocalEventChannel*>(back_evt_.get());
  ctl::Msg att;
  att.type = ctl::MsgType::kDevAttach;
  att.a = sndif::kClassId;
  att.b = handle_;
  att.set_payload(replay_state());
  int fds[4] = {be->notify_fd(), be->wait_fd(), dac_->mem_fd(), dac_->irq_fd()};
  front_attached_ = true;
  if (auto r = backend_->send_fds(att, fds, 4); !r) return finish(std::unexpected(r.error()));
  if (auto r = send_pool(*backend_, domid_, false); !r) finish(std::unexpected(r.error()));
}

void VsndShadow::on_fault() {
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

// Active mode: the frontend first repairs its ring (as for a new backend),
// then shadowd answers it: see start_active().
void VsndShadow::on_backend_dead() {
  backend_dead_ = true;
  if (!front_ready_ || !front_attached_) return;
  ctl::Msg m;
  m.type = ctl::MsgType::kReconnect;
  m.b = handle_;
  m.set_text("active");
  (void)front_.send(m);
}

void VsndShadow::start_active() {
  auto r = ring::BackRing<sndif::Traits>::attach(pool_->page(sndif::kRingRef), sndif::kPageSize, false);
  if (!r) return;
  active_ring_.emplace(std::move(*r));
  active_queue_.clear();
  ast_ = replay_state();
  auto& regs = dac_->regs();
  starved0_ = regs.starved.load();
  discarded_ = 0;
  uint64_t wr = regs.wr.load(), rd = regs.rd.load();
  active_last_pos_ = ast_.acked - std::min<uint64_t>(wr >= rd ? wr - rd : 0, ast_.acked);
  active_wait_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, ::dup(dac_->irq_fd()));
  log_.emit({{"type", "vsnd_active"}, {"device", id()}, {"acked", ast_.acked}});
  active_tick();
  arm_active();
}

void VsndShadow::stop_active() {
  active_wait_.reset();
  active_ring_.reset();
  active_queue_.clear();
}

// The DAC's interrupt (every 5 ms) paces active mode.
void VsndShadow::arm_active() {
  if (!active_wait_) return;
  active_wait_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                           [this](const boost::system::error_code& ec) {
                             if (ec || !active_ring_) return;
                             uint64_t v;
                             (void)!::read(dac_->irq_fd(), &v, sizeof(v));
                             active_tick();
                             arm_active();
                           });
}

// Shadowd plays the backend: a write is acknowledged (its audio dropped)
// once the DAC has played that much silence since the backend died; stream
// control is applied to the DAC directly; position events go on.
void VsndShadow::active_tick() {
  auto& regs = dac_->regs();
  bool notify = false;
  for (;;) {
    auto req = active_ring_->get_request();
    if (!req) {
      // A hostile index from the guest: stop answering, it gets nothing more.
      log_.emit({{"type", "vsnd_frontend_protocol_error"}, {"device", id()}, {"error", req.error().message}});
      stop_active();
      return;
    }
    if (!*req) break;
    active_queue_.push_back(**req);
  }
  for (;;) {
    while (!active_queue_.empty()) {
      const xensnd_req r = active_queue_.front();
      int32_t status = 0;
      if (r.operation == XENSND_OP_WRITE) {
        bool dropped = std::any_of(active_queue_.begin() + 1, active_queue_.end(), [](const xensnd_req& q) {
          return q.operation == XENSND_OP_CLOSE || q.operation == XENSND_OP_OPEN ||
                 (q.operation == XENSND_OP_TRIGGER && q.op.trigger.type == XENSND_OP_TRIGGER_STOP);
        });
        uint64_t silence = regs.starved.load() - starved0_;
        if (!ast_.open || !sndif::check_rw(r.op.rw, ast_.params.buffer_sz).empty()) {
          status = -EINVAL;
        } else if (!dropped && silence < discarded_ + r.op.rw.length) {
          break;  // real-time pace: not yet played that much silence
        } else {
          discarded_ += r.op.rw.length;
          ast_.acked += r.op.rw.length;
          ++active_writes_;
          active_bytes_ += r.op.rw.length;
        }
      }
      active_queue_.pop_front();
      active_respond(r, r.operation == XENSND_OP_WRITE ? status : active_control(r));
      notify = true;
    }
    if (active_queue_.empty()) break;
    // Control requests behind a waiting write act at once, as on a backend.
    auto it = std::find_if(active_queue_.begin() + 1, active_queue_.end(),
                           [](const xensnd_req& q) { return q.operation != XENSND_OP_WRITE; });
    if (it == active_queue_.end()) break;
    const xensnd_req r = *it;
    active_queue_.erase(it);
    active_respond(r, active_control(r));
    notify = true;
  }
  (void)active_ring_->final_check_for_requests();
  active_position();
  if (notify || active_last_pos_changed_) (void)back_evt_->notify();
  active_last_pos_changed_ = false;
}

void VsndShadow::active_respond(const xensnd_req& r, int32_t status) {
  xensnd_resp rsp{};
  rsp.id = r.id;
  rsp.operation = r.operation;
  rsp.status = status;
  if (r.operation == XENSND_OP_HW_PARAM_QUERY) {
    rsp.resp.hw_param.formats = 1ULL << sndif::kFormat;
    rsp.resp.hw_param.rates = {sndif::kRate, sndif::kRate};
    rsp.resp.hw_param.channels = {sndif::kChannels, sndif::kChannels};
    rsp.resp.hw_param.buffer = {sndif::kMinPeriod * 2, sndif::kMaxBuffer};
    rsp.resp.hw_param.period = {sndif::kMinPeriod, sndif::kMaxPeriod};
  }
  (void)active_ring_->put_response(rsp);
  (void)active_ring_->push_responses();
}

// Stream control while no backend runs: applied to the DAC directly.
int32_t VsndShadow::active_control(const xensnd_req& r) {
  auto& regs = dac_->regs();
  switch (r.operation) {
    case XENSND_OP_OPEN:
      if (!sndif::check_open(r.op.open).empty()) return -EINVAL;
      ast_ = {};
      ast_.open = 1;
      ast_.params = r.op.open;
      active_last_pos_ = 0;
      regs.run.store(0);
      regs.flush_to.store(regs.wr.load());
      regs.fifo.store(sndif::dac_fifo(r.op.open));
      starved0_ = regs.starved.load();
      regs.stream_wr.store(0);
      discarded_ = 0;
      return 0;
    case XENSND_OP_CLOSE:
      ast_.open = 0;
      regs.run.store(0);
      regs.flush_to.store(regs.wr.load());
      return 0;
    case XENSND_OP_TRIGGER:
      if (!ast_.open || r.op.trigger.type > XENSND_OP_TRIGGER_RESUME) return -EINVAL;
      if (r.op.trigger.type == XENSND_OP_TRIGGER_START || r.op.trigger.type == XENSND_OP_TRIGGER_RESUME) {
        regs.run.store(1);
      } else {
        regs.run.store(0);
        if (r.op.trigger.type == XENSND_OP_TRIGGER_STOP) regs.flush_to.store(regs.wr.load());
      }
      return 0;
    case XENSND_OP_SET_VOLUME:
    case XENSND_OP_GET_VOLUME:
    case XENSND_OP_MUTE:
    case XENSND_OP_UNMUTE:
      // Acknowledged; the setting is in the log and reaches the DAC with
      // the next backend.
      return ast_.open ? 0 : -EINVAL;
    case XENSND_OP_HW_PARAM_QUERY:
      return 0;
    default:
      return -ENOTSUP;  // READ: no capture stream
  }
}

// CUR_POS as a backend would send it: what the DAC has played of the stream.
void VsndShadow::active_position() {
  if (!ast_.open) return;
  auto& regs = dac_->regs();
  uint64_t wr = regs.wr.load(), rd = regs.rd.load();
  uint64_t queued = std::min<uint64_t>(wr >= rd ? wr - rd : 0, ast_.acked);
  uint64_t pos = std::max(active_last_pos_, ast_.acked - queued);
  if (pos == active_last_pos_) return;
  if (pos - active_last_pos_ < ast_.params.period_sz && queued != 0) return;
  auto* evt = static_cast<xensnd_event_page*>(pool_->page(sndif::kEvtRef));
  // SAFETY: in_cons is the guest's: read once, only compared.
  uint32_t cons = std::atomic_ref<uint32_t>(evt->in_cons).load(std::memory_order_acquire);
  uint32_t prod = std::atomic_ref<uint32_t>(evt->in_prod).load(std::memory_order_relaxed);
  if (prod - cons >= XENSND_IN_RING_LEN) return;
  xensnd_evt e{};
  e.id = evt_id_++;
  e.type = XENSND_EVT_CUR_POS;
  e.op.cur_pos.position = pos;
  std::memcpy(&XENSND_IN_RING_REF(evt, prod), &e, sizeof(e));
  std::atomic_ref<uint32_t>(evt->in_prod).store(prod + 1, std::memory_order_release);
  active_last_pos_ = pos;
  active_last_pos_changed_ = true;
}

void VsndShadow::on_backend_ready(ctl::Channel& ch, platform::DomId domid, Done done) {
  // The new backend takes over: shadowd stops answering first.
  stop_active();
  backend_ = &ch;
  domid_ = domid;
  backend_dead_ = false;
  done_ = std::move(done);
  times_ = {};
  t_ready_ = platform::Clock::now();
  if (!front_ready_) {
    // No player: nothing to hand over; the next player's stream is attached when it connects.
    backend_up_ = true;
    ++recoveries_;
    // Answered after this call returns, as a resume always is.
    boost::asio::post(io_, [this] { finish(times_); });
    return;
  }
  if (!front_attached_) {
    attach_backend();
    return;
  }
  // The old backend (or shadowd) is done with the ring: the frontend takes
  // what was finished, resets it and replays what is in flight.
  ctl::Msg m;
  m.type = ctl::MsgType::kReconnect;
  m.b = handle_;
  m.set_text("attach");
  if (auto r = front_.send(m); !r) finish(std::unexpected(r.error()));
}

void VsndShadow::on_backend_msg(platform::DomId from, const ctl::Msg& m) {
  if (m.b != handle_) return;
  if (m.type == ctl::MsgType::kDevAttached) {
    if (from != domid_) return;
    if (m.a != 0) {
      log_.emit({{"type", "vsnd_attach_refused"}, {"device", id()}, {"error", m.get_text()}});
      return finish(fail(Code::kRestartReplay, "backend refused the vsnd: " + m.get_text()));
    }
    backend_up_ = true;
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

void VsndShadow::finish(Result<ResumeTimes> r) {
  if (!done_) return;
  auto d = std::move(done_);
  done_ = nullptr;
  d(std::move(r));
}

// Progress watchdog. A write may legitimately wait as long as the player's
// buffer lasts (the DAC takes audio at its own pace), so age is no measure;
// starvation is: the DAC playing silence while the stream runs and writes
// wait means the backend stopped feeding it. Other requests must be
// answered within the timeout.
void VsndShadow::watchdog_tick() {
  auto& regs = dac_->regs();
  uint64_t starved = regs.starved.load();
  auto tick_ms = policy_.heartbeat_interval.count();
  if (backend_up_ && front_attached_ && shadow_.valid() && shadow_.enabled()) {
    bool writes_waiting = false, control_late = false;
    uint64_t now = shadow::now_ns();
    for (const auto& e : shadow_.inflight(kReqRing)) {
      xensnd_req q{};
      std::memcpy(&q, e.req, std::min<size_t>(e.len, sizeof(q)));
      if (q.operation == XENSND_OP_WRITE)
        writes_waiting = true;
      else if (now > e.posted_ns &&
               static_cast<int64_t>((now - e.posted_ns) / 1000000) > policy_.progress_timeout.count())
        control_late = true;
    }
    starving_ms_ = (writes_waiting && regs.run.load() == 1 && starved > last_starved_) ? starving_ms_ + tick_ms : 0;
    if (starving_ms_ > policy_.progress_timeout.count() || control_late) {
      auto began = platform::Clock::now() - std::chrono::milliseconds(starving_ms_);
      report_(control_late
                  ? std::string("hang (control request unanswered, progress watchdog)")
                  : "hang (DAC starved " + std::to_string(starving_ms_) + " ms with writes pending, progress watchdog)",
              began);
      starving_ms_ = 0;
    }
  } else {
    starving_ms_ = 0;
  }
  last_starved_ = starved;
  watchdog_.expires_after(policy_.heartbeat_interval);
  watchdog_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) watchdog_tick();
  });
}

void VsndShadow::teardown() {
  watchdog_.cancel();
  stop_active();
  front_wait_.reset();
  front_ = ctl::Channel();
  listen_wait_.reset();
  if (listen_) {
    listen_.reset();
    ::unlink(socket_.c_str());
  }
  dac_.reset();
}

nlohmann::json VsndShadow::status() const {
  nlohmann::json j{{"socket", socket_.string()},
                   {"wav", wav_.string()},
                   {"player_connected", front_ready_},
                   {"streams", streams_},
                   {"backend_up", backend_up_},
                   {"active_action", policy_.active_action},
                   {"splitter_log", shadow_.valid() && shadow_.enabled()},
                   {"inflight", shadow_.valid() ? shadow_.count(kReqRing) : 0},
                   {"active_writes_acked", active_writes_},
                   {"active_bytes_dropped", active_bytes_},
                   {"recoveries", recoveries_},
                   {"last_fault", last_fault_}};
  auto s = replay_state();
  j["stream"] = {{"open", s.open != 0},
                 {"run", s.run == 1   ? "running"
                         : s.run == 2 ? "paused"
                                      : "stopped"},
                 {"acked_bytes", s.acked},
                 {"period_bytes", s.params.period_sz},
                 {"buffer_bytes", s.params.buffer_sz},
                 {"generation", s.generation}};
  if (dac_) {
    auto& r = const_cast<Dac&>(*dac_).regs();
    j["dac"] = {{"played_bytes", r.played.load()},
                {"starved_bytes", r.starved.load()},
                {"faults", r.faults.load()},
                {"wav_frames", dac_->frames_written()}};
  }
  return j;
}

}  // namespace sd::dom0
