// The Xen platform: libxl for driver domains (domain_manager.hpp) and the
// real xenstore (store.hpp), both driven by shadowd's io_context.
#pragma once

#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <memory>
#include <string>

#include <map>
#include <string>

#include "sd/core/platform.hpp"
#include "xen/domain_manager.hpp"
#include "xen/store.hpp"

namespace sd::xen {

class XenPlatform final : public platform::Platform {
 public:
  XenPlatform(boost::asio::io_context& io, std::unique_ptr<XenDomainManager> domains, std::unique_ptr<XenStore> store,
              std::map<std::string, std::filesystem::path> ring_proxies = {})
      : io_(io), ring_proxies_(std::move(ring_proxies)), store_(std::move(store)), domains_(std::move(domains)) {
    domains_->set_store(store_.get());  // control vchans are found through xenstore
  }
  std::string name() const override { return "xen"; }
  platform::DomainManager& domains() override { return *domains_; }
  platform::Store& store() override { return *store_; }
  // The guest's own frontend grants its pool (xen/device_plumbing.hpp).
  // kUnavailable for a class not yet served on Xen (vsnd), a vbd of a guest
  // that runs the project's own frontend (vbd is served to unmodified
  // guests only), or a guest that is not running.
  Result<std::unique_ptr<platform::DevicePlumbing>> make_device_plumbing(const platform::DeviceInfo& dev) override;

 private:
  boost::asio::io_context& io_;
  std::map<std::string, std::filesystem::path> ring_proxies_;  // by type, for guests with guest_frontend: kernel
  // Destroyed in reverse order: the domains (and their vchan links, which
  // watch xenstore) before the store.
  std::unique_ptr<XenStore> store_;
  std::unique_ptr<XenDomainManager> domains_;
};

// Empty if this host is a Xen dom0 whose toolstack libxl can talk to;
// otherwise the reason it is not.
std::string unavailable_reason();

// Probes (unavailable_reason), then opens libxl and xenstore.
Result<std::unique_ptr<platform::Platform>> create(boost::asio::io_context& io, const platform::Options& opts);

// Opens libxl and xenstore without probing first (create() after the probe;
// unit tests, where both are link-level fakes).
Result<std::unique_ptr<platform::Platform>> open_platform(boost::asio::io_context& io,
                                                         std::map<std::string, std::filesystem::path> ring_proxies = {});

}  // namespace sd::xen
