#include "vsnd/vsnd_hooks.hpp"

#include <boost/asio/post.hpp>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>

namespace sd::dom0 {

constexpr uint16_t kReqRing = 0;

VsndHooks::VsndHooks(const std::string& guest, const config::DeviceSpec& spec, const std::filesystem::path& state_dir)
    : state_dir_(state_dir), stream_(spec.stream) {
  std::string stem = guest + "-vsnd-" + std::to_string(spec.index);
  socket_ = state_dir_ / (stem + (spec.stream ? "." + std::to_string(spec.stream) : "") + ".sock");
  wav_ = state_dir_ / (stem + ".wav");
  short_name_ = spec.params.count("short-name") ? spec.params.at("short-name") : "shadow";
  unique_id_ = stem + "." + std::to_string(spec.stream);
  card_streams_ = std::max<size_t>(1, std::count_if(spec.children.begin(), spec.children.end(), [](const auto& c) {
                                     return c.at("kind") == "stream" && c.contains("type") && c.at("type") == "p";
                                   }));
}

VsndHooks::~VsndHooks() { teardown(); }

std::map<std::string, std::string> VsndHooks::published_nodes() const {
  return {{"short-name", short_name_},
          {"sample-rates", std::to_string(sndif::kRate)},
          {"sample-formats", XENSND_PCM_FORMAT_S16_LE_STR},
          {"channels-min", std::to_string(sndif::kChannels)},
          {"channels-max", std::to_string(sndif::kChannels)},
          {"buffer-size", std::to_string(sndif::kMaxBuffer)},
          {"0/name", short_name_},
          {"0/0/type", XENSND_STREAM_TYPE_PLAYBACK},
          {"0/0/unique-id", unique_id_}};
}

namespace {

// Every stream of a card plays through the card's one DAC (named by its
// recording's path): the first stream set up makes it, the others share it,
// and it goes when the last of them does.
Result<std::shared_ptr<Dac>> card_dac(const std::filesystem::path& wav, size_t voices) {
  static std::mutex mu;
  static std::map<std::filesystem::path, std::weak_ptr<Dac>> cards;
  std::lock_guard lock(mu);
  if (auto d = cards[wav].lock()) return d;
  auto d = Dac::create(wav, voices);
  if (!d) return std::unexpected(d.error());
  std::shared_ptr<Dac> shared = std::move(*d);
  cards[wav] = shared;
  return shared;
}

}  // namespace

Result<std::optional<ctl::Channel>> VsndHooks::setup() {
  std::error_code ec;
  std::filesystem::create_directories(state_dir_, ec);
  auto dac = card_dac(wav_, card_streams_);
  if (!dac) return std::unexpected(dac.error());
  if (stream_ >= (*dac)->voices())
    return fail(Code::kInvalidInput, engine().id() + ": stream " + std::to_string(stream_) + " of a card with " +
                                         std::to_string((*dac)->voices()) + " streams");
  dac_ = std::move(*dac);
  voice_ = &dac_->voice(stream_);
  engine().events().emit({{"type", "vsnd_up"}, {"device", engine().id()}, {"socket", socket_.string()},
                          {"wav", wav_.string()}});
  return std::optional<ctl::Channel>();
}

// A player opened the PCM: a new stream on this voice, halted until
// TRIGGER; the first player of an idle card starts a new recording.
void VsndHooks::frontend_connected() {
  voice_->regs().run.store(0);
  voice_->regs().flush_to.store(voice_->regs().wr.load());
  if (!player_) dac_->player_opened();
  player_ = true;
  ++streams_;
}

// Xen: the splitter log stays in the dom0 proxy, which reports the stream
// with each repair (untrusted; checked again by replay_state()). Not for
// the backend: it gets it in the attach.
bool VsndHooks::frontend_config(const ctl::Msg& m) {
  repaired_ = m.get_payload<sndif::StreamState>();
  return false;
}

// The player closed the PCM (or died): the stream ends, its voice halts.
void VsndHooks::frontend_gone() {
  repaired_ = {};
  voice_->regs().run.store(0);
  voice_->regs().flush_to.store(voice_->regs().wr.load());
  if (player_) dac_->player_closed();
  player_ = false;
}

// The stream to replay: the newest state in the splitter log (on Xen, as
// the splitter reported it) if it checks out, else a closed stream (the
// player's next requests open it again).
sndif::StreamState VsndHooks::replay_state() const {
  sndif::StreamState s{};
  const auto& log = engine().splitter_log();
  // On Xen shadowd's copy of the log stays empty: the splitter keeps its own.
  if (!log.valid() || log.get_config(&s, sizeof(s)) != sizeof(s)) s = repaired_;
  if (s.open && !sndif::check_open(s.params).empty()) return {};
  if (s.run > static_cast<uint8_t>(sndif::Run::kPaused)) s.run = static_cast<uint8_t>(sndif::Run::kStopped);
  return s;
}

void VsndHooks::start_active() {
  auto r = ring::BackRing<sndif::Traits>::attach(engine().plumbing().page(sndif::kRingRef), sndif::kPageSize, false);
  if (!r) return;
  active_ring_.emplace(std::move(*r));
  active_queue_.clear();
  ast_ = replay_state();
  auto& regs = voice_->regs();
  starved0_ = regs.starved.load();
  discarded_ = 0;
  uint64_t wr = regs.wr.load(), rd = regs.rd.load();
  active_last_pos_ = ast_.acked - std::min<uint64_t>(wr >= rd ? wr - rd : 0, ast_.acked);
  active_wait_ = std::make_unique<boost::asio::posix::stream_descriptor>(engine().io(), ::dup(voice_->irq_fd()));
  engine().events().emit({{"type", "vsnd_active"}, {"device", engine().id()}, {"acked", ast_.acked}});
  active_tick();
  arm_active();
}

void VsndHooks::stop_active() {
  active_wait_.reset();
  active_ring_.reset();
  active_queue_.clear();
}

// The DAC's interrupt (every 5 ms) paces active mode.
void VsndHooks::arm_active() {
  if (!active_wait_) return;
  active_wait_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                           [this](const boost::system::error_code& ec) {
                             if (ec || !active_ring_) return;
                             uint64_t v;
                             (void)!::read(voice_->irq_fd(), &v, sizeof(v));
                             active_tick();
                             arm_active();
                           });
}

// Shadowd plays the backend: a write is acknowledged (its audio dropped)
// once the DAC has played that much silence since the backend died; stream
// control is applied to the DAC directly; position events go on.
void VsndHooks::active_tick() {
  auto& regs = voice_->regs();
  bool notify = false;
  for (;;) {
    auto req = active_ring_->get_request();
    if (!req) {
      // A hostile index from the guest: stop answering, it gets nothing more.
      engine().events().emit({{"type", "vsnd_frontend_protocol_error"}, {"device", engine().id()}, {"error", req.error().message}});
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
  if (notify || active_last_pos_changed_) (void)engine().plumbing().backend_end().notify();
  active_last_pos_changed_ = false;
}

void VsndHooks::active_respond(const xensnd_req& r, int32_t status) {
(void)active_ring_->put_response(sndif::response_to(r, status));
  (void)active_ring_->push_responses();
}

// Stream control while no backend runs: applied to the DAC directly.
int32_t VsndHooks::active_control(const xensnd_req& r) {
  auto& regs = voice_->regs();
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
void VsndHooks::active_position() {
  if (!ast_.open) return;
  auto& regs = voice_->regs();
  uint64_t wr = regs.wr.load(), rd = regs.rd.load();
  uint64_t queued = std::min<uint64_t>(wr >= rd ? wr - rd : 0, ast_.acked);
  uint64_t pos = std::max(active_last_pos_, ast_.acked - queued);
  if (pos == active_last_pos_) return;
  if (pos - active_last_pos_ < ast_.params.period_sz && queued != 0) return;
  auto* evt = static_cast<xensnd_event_page*>(engine().plumbing().page(sndif::kEvtRef));
  if (!sndif::post_position(evt, evt_id_, pos)) return;
  active_last_pos_ = pos;
  active_last_pos_changed_ = true;
}

// Progress watchdog. A write may legitimately wait as long as the player's
// buffer lasts (the DAC takes audio at its own pace), so age is no measure;
// the DAC's FIFO is: less than a period left in it, nothing new from the
// driver since the last look, the stream running and writes waiting means
// the driver stopped feeding it, found before the FIFO runs dry (a
// recovery then refills it before a gap is heard). Starvation (silence
// played meanwhile) for the timeout is the same verdict, late. Other
// requests must be answered within the timeout. A backend that has just
// begun serving finds the FIFO as its predecessor's outage left it (low):
// it gets two looks to refill it before running dry counts against it.
std::optional<Stall> VsndHooks::progress(bool serving) {
  auto& regs = voice_->regs();
  const auto& policy = engine().policy();
  const auto& log = engine().splitter_log();
  uint64_t starved = regs.starved.load();
  // SAFETY: wr is the driver's (untrusted): a wrong one can only hide a
  // hang from the check below, which the heartbeat then finds.
  uint64_t wr = regs.wr.load(), rd = regs.rd.load();
  auto now_tp = platform::Clock::now();
  bool wr_still = wr == last_wr_ && wr_moved_ != platform::Clock::time_point{};  // not on the first look
  if (!wr_still) {
    last_wr_ = wr;
    wr_moved_ = now_tp;
  }
  auto tick_ms = policy.heartbeat_interval.count();
  std::optional<Stall> stall;
  if (serving) {
    bool writes_waiting = false, control_late = false;
    uint64_t now = shadow::now_ns();
    for (const auto& e : log.inflight(kReqRing)) {
      xensnd_req q{};
      std::memcpy(&q, e.req, std::min<size_t>(e.len, sizeof(q)));
      if (q.operation == XENSND_OP_WRITE)
        writes_waiting = true;
      else if (now > e.posted_ns &&
               static_cast<int64_t>((now - e.posted_ns) / 1000000) > policy.progress_timeout.count())
        control_late = true;
    }
    bool feeding = writes_waiting && regs.run.load() == 1;  // the DAC should be getting data
    starving_ms_ = feeding && starved > last_starved_ ? starving_ms_ + tick_ms : 0;
    uint64_t left = wr > rd ? wr - rd : 0;
    // The open's period (read from the log) only when the cheap tests hold.
    bool settled = now - engine().up_since_ns() >= 2 * static_cast<uint64_t>(tick_ms) * 1000000;
    bool drying = feeding && wr_still && settled && dry_reported_ != wr && !control_late &&
                  left < replay_state().params.period_sz;
    if (drying) {
      dry_reported_ = wr;
      auto idle_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now_tp - wr_moved_).count();
      stall = Stall{"hang (the DAC has " + std::to_string(left) + " bytes left and nothing new from the driver for " +
                        std::to_string(idle_ms) + " ms while writes wait, progress watchdog)",
                    wr_moved_};
      starving_ms_ = 0;
    } else if (starving_ms_ > policy.progress_timeout.count() || control_late) {
      stall = Stall{control_late ? std::string("hang (control request unanswered, progress watchdog)")
                                 : "hang (DAC starved " + std::to_string(starving_ms_) +
                                       " ms with writes pending, progress watchdog)",
                    now_tp - std::chrono::milliseconds(starving_ms_)};
      starving_ms_ = 0;
    }
  } else {
    starving_ms_ = 0;
  }
  last_starved_ = starved;
  return stall;
}

void VsndHooks::teardown() {
  stop_active();
  if (player_ && dac_) dac_->player_closed();
  player_ = false;
  voice_ = nullptr;
  dac_.reset();
}

nlohmann::json VsndHooks::status() const {
  nlohmann::json j{{"socket", socket_.string()},
                   {"card_stream", stream_},
                   {"wav", wav_.string()},
                   {"player_connected", engine().frontend_ready()},
                   {"streams", streams_},
                   {"active_writes_acked", active_writes_},
                   {"active_bytes_dropped", active_bytes_}};
  auto s = replay_state();
  j["stream"] = {{"open", s.open != 0},
                 {"run", s.run == 1   ? "running"
                         : s.run == 2 ? "paused"
                                      : "stopped"},
                 {"acked_bytes", s.acked},
                 {"period_bytes", s.params.period_sz},
                 {"buffer_bytes", s.params.buffer_sz},
                 {"generation", s.generation}};
  if (voice_) {
    auto& r = voice_->regs();
    j["dac"] = {{"played_bytes", r.played.load()},
                {"starved_bytes", r.starved.load()},
                {"faults", r.faults.load()},
                {"wav_frames", dac_->frames_written()}};
  }
  return j;
}

}  // namespace sd::dom0
