// An event channel on the local platform: one eventfd per direction. The
// platform makes both ends; a peer (drvdom, a guest's frontend) makes its
// end from the two eventfds it was handed over SCM_RIGHTS.
#pragma once

#include "sd/core/platform.hpp"

namespace sd::local {

class LocalEventChannel final : public platform::EventChannel {
 public:
  // tx: the eventfd this end writes; rx: the eventfd it waits on.
  LocalEventChannel(UniqueFd tx, UniqueFd rx) : tx_(std::move(tx)), rx_(std::move(rx)) {}
  Result<void> notify() override;
  int wait_fd() const override { return rx_.get(); }
  Result<uint64_t> consume() override;
  int notify_fd() const { return tx_.get(); }  // handed to the peer over SCM_RIGHTS

 private:
  UniqueFd tx_, rx_;
};

}  // namespace sd::local
