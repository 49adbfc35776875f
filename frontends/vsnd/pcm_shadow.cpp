// libasound_module_pcm_shadow.so: an ALSA external PCM plugin (ioplug), so
// unmodified players (aplay, speaker-test, anything using libasound) play
// through a shadowed vsnd. The plugin is the guest's sound frontend and the
// beam splitter (Sndfront): it speaks sndif to the sound driver domain and
// logs the stream to shadowd. Configure it in an asoundrc:
//
//   pcm.shadow {
//     type shadow
//     socket "/run/shadowd/guest1-vsnd-0.sock"   # shadowd's vsnd socket (required)
//                                                  # (a player takes the card's first free stream)
//     volume -6000                                 # optional: gain in 0.001 dB (<= 0)
//   }
//
// The card plays 48 kHz S16_LE stereo (what the virtual DAC does); the
// plugin takes 8-192 kHz, U8/S16/S24/S32/FLOAT and 1-8 channels and converts
// (pcm_convert.hpp), so `shadow` and `plug:shadow` play any file at its own
// pitch. The player's period and buffer (any size ALSA allows, e.g. 5 ms or
// 2 s) are its own: the card's stream gets the period mapped to 48 kHz
// within sndif's limits (256 B .. 32 KiB, buffer up to 128 KiB), and what
// does not fit in the card's buffer yet waits here, converted, in `staged`.
#include <alsa/asoundlib.h>
#include <alsa/pcm_external.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vsnd/pcm_convert.hpp"
#include "vsnd/sndfront.hpp"

namespace {

struct ShadowPcm {
  snd_pcm_ioplug_t io{};
  std::unique_ptr<sd::front::Sndfront> front;
  std::string socket;
  long volume_mdb = 0;
  bool has_volume = false;
  snd_pcm_uframes_t reported = 0;  // hw frames reported to ALSA so far (unwrapped)
  std::optional<sd::front::PcmConverter> conv;  // set at prepare, for the stream's format
  std::vector<uint8_t> staged;                  // card frames converted, not yet in the card's buffer
  size_t staged_head = 0;                       // bytes of `staged` already handed on
  uint64_t taken = 0;                           // player frames taken since prepare
  uint64_t hidden = 0;  // card bytes beyond the player's buffer: played as far as ALSA knows
  uint32_t chunk = sd::sndif::kFrameBytes;  // push granularity: a card period, or half the player's buffer

  size_t staged_bytes() const { return staged.size() - staged_head; }
  // Hands staged card frames to the card's buffer, as many as fit: in
  // multiples of `chunk` (a player's tiny periods would fill sndif's request
  // ring with tiny writes), or everything (`all`: starting, draining).
  sd::Result<void> push(bool all = false) {
    size_t bytes = staged_bytes();
    if (!all) bytes -= bytes % chunk;
    if (bytes == 0) return {};
    auto n = front->write(staged.data() + staged_head, bytes);
    if (!n) return std::unexpected(n.error());
    staged_head += *n;
    if (staged_head == staged.size() || staged_head > (1u << 20)) {
      staged.erase(staged.begin(), staged.begin() + static_cast<long>(staged_head));
      staged_head = 0;
    }
    return {};
  }
  // Player frames still queued: staged here plus those of `card_bytes`
  // (written to the card, not yet acknowledged or played) beyond `hidden`.
  uint64_t queued_frames(uint64_t card_bytes, uint64_t hide = 0) const {
    card_bytes -= std::min(card_bytes, hide);
    double card_frames = static_cast<double>(staged_bytes() + card_bytes) / sd::sndif::kFrameBytes;
    return static_cast<uint64_t>(std::ceil(card_frames * conv->in_per_out()));
  }
};

ShadowPcm* self(snd_pcm_ioplug_t* io) { return static_cast<ShadowPcm*>(io->private_data); }

void report(const char* what, const sd::Error& e) { SNDERR("shadow: %s: %s", what, e.message.c_str()); }

int status_to_alsa(const sd::Result<int32_t>& r, const char* what) {
  if (!r) {
    report(what, r.error());
    return -EIO;
  }
  return *r == 0 ? 0 : static_cast<int>(*r);
}

int sp_start(snd_pcm_ioplug_t* io) {
  (void)self(io)->push(true);
  return status_to_alsa(self(io)->front->trigger(XENSND_OP_TRIGGER_START), "start");
}

int sp_stop(snd_pcm_ioplug_t* io) {
  (void)self(io)->front->trigger(XENSND_OP_TRIGGER_STOP);
  return 0;
}

// The hardware pointer: player frames taken minus those still queued (staged
// or not yet acknowledged by the card). Never backwards; ALSA works modulo
// the buffer, so one report never jumps by a whole buffer (it would read as 0).
snd_pcm_sframes_t sp_pointer(snd_pcm_ioplug_t* io) {
  ShadowPcm* p = self(io);
  if (auto r = p->front->pump(); !r) {
    report("pointer", r.error());
    return -EIO;
  }
  if (auto r = p->push(); !r) {
    report("pointer", r.error());
    return -EIO;
  }
  uint64_t queued = p->queued_frames(p->front->written() - p->front->acked(), p->hidden);
  snd_pcm_uframes_t hw = p->taken - std::min(p->taken, queued);
  hw = std::max(hw, p->reported);
  if (hw - p->reported >= io->buffer_size) hw = p->reported + io->buffer_size - 1;
  p->reported = hw;
  return static_cast<snd_pcm_sframes_t>(hw % io->buffer_size);
}

snd_pcm_sframes_t sp_transfer(snd_pcm_ioplug_t* io, const snd_pcm_channel_area_t* areas, snd_pcm_uframes_t offset,
                              snd_pcm_uframes_t size) {
  ShadowPcm* p = self(io);
  (void)p->front->pump();
  // ALSA keeps what is taken within the buffer; staged holds what the card's
  // smaller buffer cannot take yet.
  const auto* src = static_cast<const uint8_t*>(areas[0].addr) + (areas[0].first + areas[0].step * offset) / 8;
  p->conv->convert(src, size, p->staged);
  p->taken += size;
  if (auto r = p->push(); !r) {
    report("write", r.error());
    return -EIO;
  }
  return static_cast<snd_pcm_sframes_t>(size);
}

std::optional<sd::front::SampleFormat> sample_format(snd_pcm_format_t f) {
  switch (f) {
    case SND_PCM_FORMAT_U8: return sd::front::SampleFormat::kU8;
    case SND_PCM_FORMAT_S16_LE: return sd::front::SampleFormat::kS16;
    case SND_PCM_FORMAT_S24_LE: return sd::front::SampleFormat::kS24;
    case SND_PCM_FORMAT_S32_LE: return sd::front::SampleFormat::kS32;
    case SND_PCM_FORMAT_FLOAT_LE: return sd::front::SampleFormat::kFloat;
    default: return std::nullopt;
  }
}

// The card's stream for the player's period and buffer, mapped to 48 kHz:
// a period of at least 20 ms and at most sndif's 32 KiB, a buffer of at
// least 8 periods and at most 128 KiB. The DAC plays in 5 ms ticks and keeps
// a FIFO of 3 periods (2 when the buffer holds no more than 4): shorter
// periods starve it between ticks, and a FIFO under ~60 ms is shorter than a
// driver-domain restart on a loaded machine. Returns period, buffer and the
// part of the buffer beyond the player's own (hidden from ALSA).
struct CardSizes {
  uint32_t period, buffer, hidden, chunk;
};
CardSizes card_sizes(snd_pcm_ioplug_t* io) {
  using namespace sd::sndif;
  auto card_bytes = [&](snd_pcm_uframes_t frames) {
    return static_cast<uint64_t>(static_cast<double>(frames) * kRate / io->rate) * kFrameBytes;
  };
  constexpr uint64_t kMinCardPeriod = kRate / 50 * kFrameBytes;
  auto period = static_cast<uint32_t>(std::clamp<uint64_t>(card_bytes(io->period_size), kMinCardPeriod, kMaxPeriod));
  period -= period % kFrameBytes;
  const uint64_t wanted = card_bytes(io->buffer_size);
  uint64_t buffer = std::clamp<uint64_t>(wanted, 8ULL * period, kMaxBuffer);
  buffer -= buffer % kFrameBytes;
  // Writes of a card period, or of half the player's buffer when that is
  // smaller (staged never holds more than that buffer: it must still move).
  auto chunk = static_cast<uint32_t>(std::clamp<uint64_t>(wanted / 2, kFrameBytes, period));
  return {period, static_cast<uint32_t>(buffer), static_cast<uint32_t>(buffer - std::min(buffer, wanted)),
          chunk - chunk % kFrameBytes};
}

int sp_prepare(snd_pcm_ioplug_t* io) {
  ShadowPcm* p = self(io);
  auto fmt = sample_format(io->format);
  if (!fmt) {
    SNDERR("shadow: sample format %s not supported", snd_pcm_format_name(io->format));
    return -EINVAL;
  }
  if (p->front->state().open) (void)p->front->close_stream();
  auto card = card_sizes(io);
  if (int e = status_to_alsa(p->front->open(card.buffer, card.period), "open"); e < 0) return e;
  p->hidden = card.hidden;
  p->chunk = card.chunk;
  p->conv.emplace(*fmt, io->channels, io->rate);
  p->staged.clear();
  p->staged_head = 0;
  p->taken = 0;
  p->reported = 0;
  if (p->has_volume)
    (void)p->front->set_volume(static_cast<int32_t>(p->volume_mdb), static_cast<int32_t>(p->volume_mdb));
  return 0;
}

int sp_drain(snd_pcm_ioplug_t* io) {
  ShadowPcm* p = self(io);
  // What is staged goes to the card as its buffer drains (started if the
  // player never reached its start threshold), then the card plays out.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (size_t left = p->staged_bytes(); left > 0;) {
    if (p->front->state().run != static_cast<uint8_t>(sd::sndif::Run::kRunning)) (void)sp_start(io);
    auto r = p->front->wait(10);
    if (r) r = p->front->pump();
    if (r) r = p->push(true);
    if (!r) {
      report("drain", r.error());
      return -EIO;
    }
    if (p->staged_bytes() < left) deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    left = p->staged_bytes();
    if (left > 0 && std::chrono::steady_clock::now() > deadline) {
      SNDERR("shadow: drain: the card took nothing for 5 s");
      return -EIO;
    }
  }
  if (auto r = p->front->drain(); !r) {
    report("drain", r.error());
    return -EIO;
  }
  return 0;
}

int sp_pause(snd_pcm_ioplug_t* io, int enable) {
  return status_to_alsa(self(io)->front->trigger(enable ? XENSND_OP_TRIGGER_PAUSE : XENSND_OP_TRIGGER_RESUME), "pause");
}

int sp_poll_count(snd_pcm_ioplug_t*) { return 2; }

int sp_poll_descriptors(snd_pcm_ioplug_t* io, struct pollfd* pfd, unsigned int space) {
  if (space < 2) return -EINVAL;
  pfd[0] = {self(io)->front->event_fd(), POLLIN, 0};
  pfd[1] = {self(io)->front->control_fd(), POLLIN, 0};
  return 2;
}

int sp_poll_revents(snd_pcm_ioplug_t* io, struct pollfd* pfd, unsigned int nfds, unsigned short* revents) {
  bool any = false;
  for (unsigned i = 0; i < nfds; ++i) any |= pfd[i].revents != 0;
  if (auto r = self(io)->front->pump(); !r) {
    *revents = POLLERR;
    return 0;
  }
  *revents = any ? POLLOUT : 0;
  return 0;
}

int sp_delay(snd_pcm_ioplug_t* io, snd_pcm_sframes_t* delayp) {
  ShadowPcm* p = self(io);
  auto& f = *p->front;
  (void)f.pump();
  *delayp = static_cast<snd_pcm_sframes_t>(p->queued_frames(f.written() - std::min(f.written(), f.position())));
  return 0;
}

int sp_close(snd_pcm_ioplug_t* io) {
  ShadowPcm* p = self(io);
  if (p->front && p->front->state().open) (void)p->front->close_stream();
  delete p;
  return 0;
}

const snd_pcm_ioplug_callback_t kCallbacks = [] {
  snd_pcm_ioplug_callback_t c{};
  c.start = sp_start;
  c.stop = sp_stop;
  c.pointer = sp_pointer;
  c.transfer = sp_transfer;
  c.close = sp_close;
  c.prepare = sp_prepare;
  c.drain = sp_drain;
  c.pause = sp_pause;
  c.poll_descriptors_count = sp_poll_count;
  c.poll_descriptors = sp_poll_descriptors;
  c.poll_revents = sp_poll_revents;
  c.delay = sp_delay;
  return c;
}();

int set_constraints(snd_pcm_ioplug_t* io) {
  using sd::front::PcmConverter;
  // MMAP too (ioplug emulates it over transfer): ALSA's rate, route and
  // other plugins take only a slave that can be mmapped.
  static const unsigned kAccess[] = {SND_PCM_ACCESS_RW_INTERLEAVED, SND_PCM_ACCESS_MMAP_INTERLEAVED};
  static const unsigned kFormats[] = {SND_PCM_FORMAT_U8, SND_PCM_FORMAT_S16_LE, SND_PCM_FORMAT_S24_LE,
                                      SND_PCM_FORMAT_S32_LE, SND_PCM_FORMAT_FLOAT_LE};
  int e;
  if ((e = snd_pcm_ioplug_set_param_list(io, SND_PCM_IOPLUG_HW_ACCESS, 2, kAccess)) < 0) return e;
  if ((e = snd_pcm_ioplug_set_param_list(io, SND_PCM_IOPLUG_HW_FORMAT, 5, kFormats)) < 0) return e;
  if ((e = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_CHANNELS, 1, PcmConverter::kMaxChannels)) < 0) return e;
  if ((e = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_RATE, PcmConverter::kMinRate,
                                           PcmConverter::kMaxRate)) < 0)
    return e;
  // The player's own period and buffer (staged here beyond the card's): from
  // well under a millisecond to 2 MiB (11 s of CD audio, 2 s of 96 kHz S32
  // stereo): players that take the largest buffer offered (speaker-test)
  // still get periods of seconds, not minutes.
  if ((e = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_PERIOD_BYTES, 64, 512 << 10)) < 0) return e;
  if ((e = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_BUFFER_BYTES, 128, 2 << 20)) < 0) return e;
  return snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_PERIODS, 2, 1024);
}

// The card's first free playback stream: `socket` is its first stream's;
// stream k (k >= 1) listens beside it at the same path with ".k" before
// ".sock". A stream in use refuses (busy); a stream that does not exist
// ends the search.
sd::Result<std::unique_ptr<sd::front::Sndfront>> connect_free_stream(const std::string& socket) {
  auto f = sd::front::connect_frontend<sd::front::Sndfront>(socket, "vsnd");
  const std::string suffix = ".sock";
  if (f || f.error().code != sd::Code::kUnavailable || !socket.ends_with(suffix)) return f;
  const std::string stem = socket.substr(0, socket.size() - suffix.size());
  for (int k = 1;; ++k) {
    std::string next = stem + "." + std::to_string(k) + suffix;
    if (::access(next.c_str(), F_OK) != 0)
      return sd::fail(sd::Code::kUnavailable, "every playback stream of the card is in use (" + std::to_string(k) +
                                                  " at " + socket + "...); add a 'stream, type=p' to its vsnd card");
    auto g = sd::front::connect_frontend<sd::front::Sndfront>(next, "vsnd");
    if (g || g.error().code != sd::Code::kUnavailable) return g;
  }
}

}  // namespace

extern "C" SND_PCM_PLUGIN_DEFINE_FUNC(shadow) {
  auto p = std::make_unique<ShadowPcm>();
  snd_config_iterator_t i, next;
  snd_config_for_each(i, next, conf) {
    snd_config_t* n = snd_config_iterator_entry(i);
    const char* id;
    if (snd_config_get_id(n, &id) < 0) continue;
    std::string key = id;
    if (key == "comment" || key == "type" || key == "hint") continue;
    if (key == "socket") {
      const char* s;
      if (snd_config_get_string(n, &s) < 0) {
        SNDERR("shadow: socket must be a string (the path of shadowd's vsnd socket)");
        return -EINVAL;
      }
      p->socket = s;
    } else if (key == "volume") {
      if (snd_config_get_integer(n, &p->volume_mdb) < 0 || p->volume_mdb > 0 || p->volume_mdb < -100000) {
        SNDERR("shadow: volume must be an integer gain in 0.001 dB, -100000..0");
        return -EINVAL;
      }
      p->has_volume = true;
    } else {
      SNDERR("shadow: unknown field %s (known: socket, volume)", id);
      return -EINVAL;
    }
  }
  if (p->socket.empty()) {
    SNDERR("shadow: missing socket \"PATH\" (shadowd's vsnd socket, see shadowctl devices)");
    return -EINVAL;
  }
  if (stream != SND_PCM_STREAM_PLAYBACK) {
    SNDERR("shadow: playback only");
    return -EINVAL;
  }
  auto f = connect_free_stream(p->socket);
  if (!f) {
    SNDERR("shadow: %s", f.error().message.c_str());
    return f.error().code == sd::Code::kUnavailable ? -EBUSY : -EIO;
  }
  p->front = std::move(*f);
  p->io.version = SND_PCM_IOPLUG_VERSION;
  p->io.name = "Shadow Domains vsnd (sndif beam splitter)";
  p->io.callback = &kCallbacks;
  p->io.private_data = p.get();
  p->io.flags = SND_PCM_IOPLUG_FLAG_MONOTONIC;
  p->io.mmap_rw = 0;
  p->io.poll_fd = p->front->event_fd();
  p->io.poll_events = POLLIN;
  int e = snd_pcm_ioplug_create(&p->io, name, stream, mode);
  if (e < 0) return e;
  if ((e = set_constraints(&p->io)) < 0) {
    snd_pcm_ioplug_delete(&p->io);
    return e;
  }
  *pcmp = p->io.pcm;
  p.release();  // owned by the PCM now; freed in sp_close
  return 0;
}

SND_PCM_PLUGIN_SYMBOL(shadow);
