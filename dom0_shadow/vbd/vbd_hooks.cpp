#include "vbd/vbd_hooks.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>


namespace sd::dom0 {

constexpr uint16_t kReqRing = 0;

VbdHooks::VbdHooks(const std::string& guest, const config::DeviceSpec& spec, const std::filesystem::path& state_dir)
    : spec_(spec), socket_(state_dir / (guest + "-vbd-" + std::to_string(spec.index) + ".sock")) {}

Result<std::pair<UniqueFd, blkif::DiskState>> VbdHooks::open_disk(const std::string& target, bool readonly,
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

Result<std::optional<ctl::Channel>> VbdHooks::setup() {
  auto target = spec_.params.find("target");
  auto access = spec_.params.find("access");
  bool ro = access != spec_.params.end() && (access->second == "r" || access->second == "ro");
  target_ = target == spec_.params.end() ? std::string() : target->second;
  if (engine().plumbing().frontend_in_guest()) {
    // The driver domain's own disk: described from the spec, opened there.
    auto size = spec_.params.count("size") ? config::disk_size_bytes(spec_.params.at("size")) : std::nullopt;
    if (!size)
      return fail(Code::kInvalidInput, "vbd: the disk's target " + target_ + " is inside driver domain " +
                                           spec_.backend + ", which shadowd cannot open: give the size the guest " +
                                           "sees with size= before target= (e.g. size=64M)");
    disk_state_.sectors = *size / blkif::kSectorSize;
    disk_state_.features = blkif::kFeatureFlush | blkif::kFeatureBarrier | (ro ? 0 : blkif::kFeatureDiscard);
    disk_state_.queue_limit = engine().policy().queue_limit;
    disk_state_.o_direct = 1;  // what the driver domain answered is on its disk (Blkback::open_disk)
    disk_state_.readonly = ro ? 1 : 0;
    disk_state_.generation = 1;
    engine().events().emit({{"type", "vbd_up"},
                            {"device", engine().id()},
                            {"target", spec_.backend + ":" + target_},
                            {"sectors", disk_state_.sectors}});
    return std::optional<ctl::Channel>();
  }
  auto disk = open_disk(target_, ro, engine().policy().queue_limit, spec_.params.count("direct-io-safe") != 0);
  if (!disk) return std::unexpected(disk.error());
  disk_ = std::move(disk->first);
  disk_state_ = disk->second;
  engine().events().emit({{"type", "vbd_up"},
                          {"device", engine().id()},
                          {"socket", socket_.string()},
                          {"target", target_},
                          {"sectors", disk_state_.sectors},
                          {"o_direct", disk_state_.o_direct != 0}});
  return std::optional<ctl::Channel>();
}

// Local: the disk shadowd holds; Xen: the name of the driver domain's own.
platform::BackendResources VbdHooks::backend_resources() const {
  if (disk_) return {{disk_.get()}, {}};
  return {{}, target_};
}

// For a guest's kernel blkfront: the device it makes (xvda ...).
std::map<std::string, std::string> VbdHooks::published_nodes() const {
  auto vdev = spec_.params.count("vdev") ? config::vdev_number(spec_.params.at("vdev")) : std::nullopt;
  auto devtype = spec_.params.count("devtype") ? spec_.params.at("devtype") : std::string("disk");
  if (!vdev) return {};
  return {{"virtual-device", std::to_string(*vdev)}, {"device-type", devtype}};
}

// The disk state to replay: the log's copy (what the frontend negotiated)
// if it matches the disk shadowd opened, else shadowd's own.
blkif::DiskState VbdHooks::replay_state() const {
  blkif::DiskState s{};
  const auto& log = engine().splitter_log();
  if (!log.valid() || log.get_config(&s, sizeof(s)) != sizeof(s)) return disk_state_;
  // Written by the guest: it may only narrow what shadowd offered.
  if (s.sectors != disk_state_.sectors || (s.features & ~disk_state_.features) || s.readonly < disk_state_.readonly ||
      s.o_direct != disk_state_.o_direct)
    return disk_state_;
  s.queue_limit = disk_state_.queue_limit;
  return s;
}

// The request ring's progress (the engine's watchdog of a ring of
// requests): a driver stuck on it is hung even if it answers heartbeats.
std::optional<Stall> VbdHooks::progress(bool serving) {
  return serving ? engine().ring_progress(kReqRing, "block") : std::nullopt;
}

// A flush or barrier waiting may take the disk's own time (asked only when
// the ring looks stuck).
bool VbdHooks::may_wait_long(uint16_t ring) const {
  for (const auto& e : engine().splitter_log().inflight(ring)) {
    uint8_t op = e.len > offsetof(blkif_request, operation) ? e.req[offsetof(blkif_request, operation)] : 0;
    if (op == BLKIF_OP_FLUSH_DISKCACHE || op == BLKIF_OP_WRITE_BARRIER) return true;
  }
  return false;
}

nlohmann::json VbdHooks::status() const {
  auto s = replay_state();
  return {{"socket", socket_.string()},
          {"target", target_},
          {"sectors", disk_state_.sectors},
          {"o_direct", disk_state_.o_direct != 0},
          {"readonly", disk_state_.readonly != 0},
          {"features", {{"flush", (s.features & blkif::kFeatureFlush) != 0},
                        {"barrier", (s.features & blkif::kFeatureBarrier) != 0},
                        {"discard", (s.features & blkif::kFeatureDiscard) != 0}}},
          {"queue_limit", std::min<uint32_t>(engine().policy().queue_limit, blkif::kRingSize)}};
}

}  // namespace sd::dom0
