// The local platform: driver domains are sandboxed processes, grants are
// memfd pages, event channels are eventfds, the store lives in shadowd.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <map>
#include <memory>
#include <set>

#include "sd/core/platform.hpp"
#include "sd/platform/local/event_channel.hpp"

namespace sd::local {

class LocalDomainManager final : public platform::DomainManager {
 public:
  LocalDomainManager(boost::asio::io_context& io, platform::Options opts);
  ~LocalDomainManager() override;

  Result<platform::DomainInfo> create(const platform::DomainSpec& spec, ctl::Channel* ctl) override;
  Result<void> kill(platform::DomId id, int signal) override;
  void on_death(DeathHandler h) override { on_death_ = std::move(h); }
  void forget(const std::string& name) override;
  void set_background(platform::DomId id, bool background) override;

 private:
  struct Incarnation {
    platform::DomainInfo info;
    UniqueFd pidfd;
    std::unique_ptr<boost::asio::posix::stream_descriptor> waiter;
    // References to the incarnation's namespaces, held so that tearing them
    // down (mount namespace release waits for an RCU grace period) happens
    // off the recovery path, in a background thread, after the death report.
    std::vector<UniqueFd> ns_refs;
  };
  void reap(platform::DomId id);

  boost::asio::io_context& io_;
  platform::Options opts_;
  DeathHandler on_death_;
  platform::DomId next_id_ = 1;
  std::map<platform::DomId, Incarnation> live_;
  std::map<std::string, std::string> netns_;  // domain name -> its persistent netns
};

// A device connection: its pool is one sealed memfd (its size can never
// change, so no peer can make another's mapping fault), mapped once by each
// side and granted whole, so a backend maps every page of it or none; its
// event channel is a pair of eventfds.
class LocalDevicePlumbing final : public platform::DevicePlumbing {
 public:
  // kInvalidInput unless 1 <= pages <= 65536.
  static Result<std::unique_ptr<LocalDevicePlumbing>> create(size_t pages);
  ~LocalDevicePlumbing() override;
  size_t pages() const override { return pages_; }
  void* page(platform::GrantRef ref) override { return ref < pages_ ? map_ + size_t{ref} * 4096 : nullptr; }
  platform::EventChannel& frontend_end() override { return *front_; }
  platform::EventChannel& backend_end() override { return *back_; }
  Result<void> offer_frontend(ctl::Channel& ch, const ctl::Msg& attach, int splitter_log_fd) override;
  Result<void> grant_to(const std::vector<platform::DomId>& peers) override {
    peers_ = peers;
    return {};
  }
  Result<void> offer_backend(ctl::Channel& ch, platform::DomId peer, const ctl::Msg& attach,
                             const platform::BackendResources& resources) override;
  // A new fd through which `peer` maps the whole pool (page i at offset
  // i * 4096), or kInvalidInput if the pool is not granted to `peer`.
  Result<UniqueFd> pool_fd_for(platform::DomId peer) const;

 private:
  LocalDevicePlumbing() = default;
  UniqueFd memfd_;
  uint8_t* map_ = nullptr;
  size_t pages_ = 0;
  std::vector<platform::DomId> peers_;  // a running and a standby backend may share the pool
  std::unique_ptr<LocalEventChannel> front_, back_;
};

// A connected pair of eventfd event-channel ends.
Result<std::pair<std::unique_ptr<LocalEventChannel>, std::unique_ptr<LocalEventChannel>>> make_local_event_channel();

class LocalStore final : public platform::Store {
 public:
  explicit LocalStore(boost::asio::io_context& io) : io_(io) {}
  Result<std::string> read(const std::string& path) const override;
  Result<void> write(const std::string& path, const std::string& value) override;
  Result<void> remove(const std::string& path) override;
  std::vector<std::string> list(const std::string& path) const override;
  // One process holds the whole store: there is nobody to keep out.
  Result<void> set_access(const std::string&, platform::DomId, const std::vector<platform::DomId>&) override {
    return {};
  }
  WatchId watch(const std::string& path, WatchFn fn) override;
  void unwatch(WatchId id) override;

 private:
  void fire(const std::string& changed);
  boost::asio::io_context& io_;
  std::map<std::string, std::string> kv_;
  struct Watch {
    std::string path;
    std::shared_ptr<WatchFn> fn;
  };
  std::map<WatchId, Watch> watches_;
  WatchId next_watch_ = 1;
};

class LocalPlatform final : public platform::Platform {
 public:
  LocalPlatform(boost::asio::io_context& io, platform::Options opts) : domains_(io, std::move(opts)), store_(io) {}
  std::string name() const override { return "local"; }
  platform::DomainManager& domains() override { return domains_; }
  platform::Store& store() override { return store_; }
  Result<std::unique_ptr<platform::DevicePlumbing>> make_device_plumbing(const platform::DeviceInfo& dev) override;

 private:
  LocalDomainManager domains_;
  LocalStore store_;
};

}  // namespace sd::local
