// The vbd class in shadowd's engine (local platform): owns the disk (the
// image or block device named by the guest's `disk = [ '...target=...' ]`,
// opened here once and handed to every backend incarnation: the device
// outlives its driver); the guest's sd-blkfront connects to
// <state_dir>/<guest>-vbd-<n>.sock. The state to replay is the disk as the
// frontend negotiated it (size, flush/barrier/discard, read-only).
//
// On Xen the disk is the driver domain's own (target= names it there, e.g.
// its /dev/xvdb): shadowd cannot open it, so the spec's size= is the size
// the guest is promised, each incarnation opens the disk by name and
// refuses one smaller than that. The guest's kernel blkfront reaches the
// disk through dom0's ring proxy (sd-blkfront --xen-guest).
//
// Active mode is `queue`: while no backend runs, the guest's requests wait
// in the ring (the frontend keeps at most the policy's queue_limit in flight,
// and never more than the ring holds; past that its callers block, they never
// fail); the frontend resubmits them in submission order (blk_shadow).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "device_engine.hpp"
#include "sd/core/blkif.hpp"
#include "sd/core/fd.hpp"

namespace sd::dom0 {

class VbdHooks final : public ClassHooks {
 public:
  VbdHooks(const std::string& guest, const config::DeviceSpec& spec, const std::filesystem::path& state_dir);

  config::DeviceClass cls() const override { return config::DeviceClass::kVbd; }
  size_t pool_pages() const override { return blkif::kPoolPages; }
  size_t log_slots() const override { return blkif::kIds; }
  Result<std::optional<ctl::Channel>> setup() override;
  std::filesystem::path socket_path() const override { return socket_; }
  void frontend_payload(ctl::Msg& m) const override { m.set_payload(disk_state_); }
  void backend_payload(ctl::Msg& m) const override { m.set_payload(replay_state()); }
  platform::BackendResources backend_resources() const override;
  std::map<std::string, std::string> published_nodes() const override;
  std::optional<Stall> progress(bool serving) override;
  bool may_wait_long(uint16_t ring) const override;
  nlohmann::json status() const override;

  // Opens the disk named by `target` as shadowd does and describes it.
  // As xl: through the host's page cache (a disk with a volatile write
  // cache: the guest's FLUSH_DISKCACHE makes it durable, and it survives any
  // driver crash, being the host's), or with `direct_io` (the disk spec's
  // `direct-io-safe` flag) O_DIRECT where the file system takes it.
  // Errors name the file and the fix.
  static Result<std::pair<UniqueFd, blkif::DiskState>> open_disk(const std::string& target, bool readonly,
                                                                 uint32_t queue_limit, bool direct_io);

 private:
  blkif::DiskState replay_state() const;

  config::DeviceSpec spec_;
  std::filesystem::path socket_;
  UniqueFd disk_;
  blkif::DiskState disk_state_{};
  std::string target_;
};

}  // namespace sd::dom0
