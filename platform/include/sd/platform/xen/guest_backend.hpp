// dom0's end of an unmodified guest's own PV device (its kernel's frontend,
// e.g. xen-netfront): what a user-space backend in dom0 needs, as QEMU's
// user-space Xen backends do it. shadowd lays out the device's two xenstore
// directories (as a toolstack does); the backend process then owns the
// backend's side of the xenbus handshake: it publishes its features and
// InitWait, waits for the frontend to publish its rings (Initialised or
// Connected), checks and maps them, binds the event channel and says
// Connected. Everything the guest writes is untrusted: numbers are parsed
// strictly, refs that do not map are errors.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "sd/core/error.hpp"
#include "sd/core/grant_copy.hpp"
#include "sd/core/platform.hpp"

struct xengntdev_handle;

namespace sd::xen {

// Copies to and from pages one guest grants per request (gntdev's grant
// copy: dom0 never maps them).
class GrantCopier {
 public:
  static Result<std::unique_ptr<GrantCopier>> open(uint32_t guest);
  ~GrantCopier();
  Result<void> copy_from(uint32_t ref, uint16_t offset, void* dst, uint16_t len);
  Result<void> copy_to(uint32_t ref, uint16_t offset, const void* src, uint16_t len);
  // A batch, kMaxBatch ops per grant-copy call; each op's ok says whether
  // it was done (a bad ref or range fails that op alone).
  static constexpr size_t kMaxBatch = 64;
  void copy(GrantCopy* ops, size_t n);

 private:
  GrantCopier() = default;
  xengntdev_handle* h_ = nullptr;
  uint32_t guest_ = 0;
};

// Where dom0's user-space backend of a guest's device lives: a type of its
// own ("vif-proxy"), so dom0's kernel backends (xen-netback watches
// backend/vif) never bind it, as QEMU's user-space backends use qnic/qdisk.
// The guest's kernel frontend follows whatever path its `backend` names.
inline std::string proxy_backend_dir(const std::string& type, uint32_t guest, uint64_t index) {
  return "/local/domain/0/backend/" + type + "-proxy/" + std::to_string(guest) + "/" + std::to_string(index);
}

struct GuestFrontend {
  uint32_t domid = 0;
  std::vector<uint8_t*> rings;  // one mapped page per ring key, in order
  std::vector<std::unique_ptr<platform::EventChannel>> evts;  // one bound channel per event key, in order
  std::unique_ptr<GrantCopier> grants;
  std::map<std::string, std::string> keys;  // the optional keys asked for that the frontend wrote
  std::shared_ptr<void> keep;               // the ring mappings
};

// The handshake for the backend at `back_dir` (its `frontend` and
// `frontend-id` written by shadowd): `features` published, InitWait, then
// waits up to timeout_ms for the frontend's `ring_keys` and `event_keys`
// (keys under the frontend's directory, e.g. "0/0/ring-ref" for a sound
// stream's); reads `optional_keys` too. kUnavailable if the frontend does
// not come in time, kInvalidInput if what it wrote is wrong.
Result<GuestFrontend> connect_guest_frontend(const std::string& back_dir,
                                             const std::map<std::string, std::string>& features,
                                             const std::vector<std::string>& ring_keys,
                                             const std::vector<std::string>& optional_keys, int timeout_ms,
                                             const std::vector<std::string>& event_keys = {"event-channel"});

// Whether the guest's frontend left the device its backend at `back_dir`
// serves: its state Closing, Closed or back to Initialising (a driver
// unbound or reloaded, a guest shutting down), or its directory gone (the
// domain died). The backend must then unmap the guest's rings (a dead
// domain's memory is not freed while dom0 maps it), say Closed
// (close_guest_backend) and wait for a new handshake.
bool guest_frontend_left(const std::string& back_dir);
void close_guest_backend(const std::string& back_dir);

}  // namespace sd::xen
