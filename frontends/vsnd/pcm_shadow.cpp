// libasound_module_pcm_shadow.so: an ALSA external PCM plugin (ioplug), so
// unmodified players (aplay, speaker-test, anything using libasound) play
// through a shadowed vsnd. The plugin is the guest's sound frontend and the
// beam splitter (Sndfront): it speaks sndif to the sound driver domain and
// logs the stream to shadowd. Configure it in an asoundrc:
//
//   pcm.shadow {
//     type shadow
//     socket "/run/shadowd/guest1-vsnd-0.sock"   # shadowd's vsnd socket (required)
//     volume -6000                                 # optional: gain in 0.001 dB (<= 0)
//   }
//
// The device plays 48 kHz S16_LE stereo (what the virtual DAC does); put
// `plug:shadow` in front for other formats. Periods: 256 B .. 32 KiB, 2..16
// of them, buffer up to 128 KiB.
#include <alsa/asoundlib.h>
#include <alsa/pcm_external.h>
#include <poll.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "vsnd/sndfront.hpp"

namespace {

struct ShadowPcm {
  snd_pcm_ioplug_t io{};
  std::unique_ptr<sd::front::Sndfront> front;
  std::string socket;
  long volume_mdb = 0;
  bool has_volume = false;
  snd_pcm_uframes_t reported = 0;  // hw frames reported to ALSA so far (unwrapped)
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
  return status_to_alsa(self(io)->front->trigger(XENSND_OP_TRIGGER_START), "start");
}

int sp_stop(snd_pcm_ioplug_t* io) {
  (void)self(io)->front->trigger(XENSND_OP_TRIGGER_STOP);
  return 0;
}

// Frames the device accepted: the hardware pointer. ALSA works modulo the
// buffer, so one report never jumps by a whole buffer (it would read as 0).
snd_pcm_sframes_t sp_pointer(snd_pcm_ioplug_t* io) {
  ShadowPcm* p = self(io);
  if (auto r = p->front->pump(); !r) {
    report("pointer", r.error());
    return -EIO;
  }
  snd_pcm_uframes_t acked = p->front->acked() / sd::sndif::kFrameBytes;
  if (acked - p->reported >= io->buffer_size) acked = p->reported + io->buffer_size - 1;
  p->reported = acked;
  return static_cast<snd_pcm_sframes_t>(acked % io->buffer_size);
}

snd_pcm_sframes_t sp_transfer(snd_pcm_ioplug_t* io, const snd_pcm_channel_area_t* areas, snd_pcm_uframes_t offset,
                              snd_pcm_uframes_t size) {
  ShadowPcm* p = self(io);
  (void)p->front->pump();
  const auto* src = static_cast<const uint8_t*>(areas[0].addr) + (areas[0].first + areas[0].step * offset) / 8;
  auto n = p->front->write(src, size * sd::sndif::kFrameBytes);
  if (!n) {
    report("write", n.error());
    return -EIO;
  }
  return static_cast<snd_pcm_sframes_t>(*n / sd::sndif::kFrameBytes);
}

int sp_prepare(snd_pcm_ioplug_t* io) {
  ShadowPcm* p = self(io);
  if (p->front->state().open) (void)p->front->close_stream();
  uint32_t buffer = static_cast<uint32_t>(io->buffer_size * sd::sndif::kFrameBytes);
  uint32_t period = static_cast<uint32_t>(io->period_size * sd::sndif::kFrameBytes);
  if (int e = status_to_alsa(p->front->open(buffer, period), "open"); e < 0) return e;
  p->reported = 0;
  if (p->has_volume)
    (void)p->front->set_volume(static_cast<int32_t>(p->volume_mdb), static_cast<int32_t>(p->volume_mdb));
  return 0;
}

int sp_drain(snd_pcm_ioplug_t* io) {
  if (auto r = self(io)->front->drain(); !r) {
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
  auto& f = *self(io)->front;
  (void)f.pump();
  *delayp =
      static_cast<snd_pcm_sframes_t>((f.written() - std::min(f.written(), f.position())) / sd::sndif::kFrameBytes);
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
  static const unsigned kAccess[] = {SND_PCM_ACCESS_RW_INTERLEAVED};
  static const unsigned kFormats[] = {SND_PCM_FORMAT_S16_LE};
  int e;
  if ((e = snd_pcm_ioplug_set_param_list(io, SND_PCM_IOPLUG_HW_ACCESS, 1, kAccess)) < 0) return e;
  if ((e = snd_pcm_ioplug_set_param_list(io, SND_PCM_IOPLUG_HW_FORMAT, 1, kFormats)) < 0) return e;
  if ((e = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_CHANNELS, 2, 2)) < 0) return e;
  if ((e = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_RATE, 48000, 48000)) < 0) return e;
  if ((e = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_PERIOD_BYTES, sd::sndif::kMinPeriod,
                                           sd::sndif::kMaxPeriod)) < 0)
    return e;
  if ((e = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_BUFFER_BYTES, 2 * sd::sndif::kMinPeriod,
                                           sd::sndif::kMaxBuffer)) < 0)
    return e;
  return snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_PERIODS, 2, 16);
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
  auto f = sd::front::connect_frontend<sd::front::Sndfront>(p->socket, "vsnd");
  if (!f) {
    SNDERR("shadow: %s", f.error().message.c_str());
    return -EIO;
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
