#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "local/local_platform.hpp"
#include "sd/core/limits.hpp"
#include "sd/core/netns.hpp"
#include "local/sandbox.hpp"

namespace sd::local {

using platform::DomId;

namespace {

constexpr int kBackgroundNice = 10;  // about a tenth of a normal thread's share of a busy CPU

std::string describe_exit(const siginfo_t& si, int* exit_code, int* sig) {
  switch (si.si_code) {
    case CLD_EXITED:
      *exit_code = si.si_status;
      return "exited with status " + std::to_string(si.si_status);
    case CLD_KILLED:
    case CLD_DUMPED: {
      *sig = si.si_status;
      std::string name = sigabbrev_np(si.si_status) ? std::string("SIG") + sigabbrev_np(si.si_status)
                                                    : std::to_string(si.si_status);
      if (si.si_status == SIGKILL) return "killed (" + name + ")";
      if (si.si_status == SIGSYS) return "seccomp violation (" + name + ")";
      return "crashed (" + name + ")";
    }
    default:
      return "ended (code " + std::to_string(si.si_code) + ")";
  }
}

}  // namespace

LocalDomainManager::LocalDomainManager(boost::asio::io_context& io, platform::Options opts)
    : io_(io), opts_(std::move(opts)) {}

LocalDomainManager::~LocalDomainManager() {
  for (auto& [id, inc] : live_) {
    ::syscall(SYS_pidfd_send_signal, inc.pidfd.get(), SIGKILL, nullptr, 0);
    siginfo_t si{};
    ::waitid(P_PIDFD, static_cast<id_t>(inc.pidfd.get()), &si, WEXITED);
  }
}

Result<platform::DomainInfo> LocalDomainManager::create(const platform::DomainSpec& spec, ctl::Channel* ctl) {
  UniqueFd netns;
  if (!spec.netns.empty()) {
    auto ns = ensure_netns(spec.netns);
    if (!ns) return std::unexpected(ns.error());
    netns = std::move(*ns);
    netns_[spec.name] = spec.netns;
  }
  auto chans = ctl::Channel::pair();
  if (!chans) return std::unexpected(chans.error());

  SandboxSpec sb;
  sb.name = spec.name;
  sb.binary = opts_.drvdom_binary;
  sb.root_dir = opts_.state_dir / "roots" / spec.name;
  sb.log_file = opts_.state_dir / (spec.name + ".log");
  sb.netns_fd = netns.get();
  sb.control_fd = chans->second.fd();
  // The memory setting caps the address space, with room for the runtime itself.
  if (spec.memory_mb) sb.memory_bytes = (static_cast<uint64_t>(*spec.memory_mb) + limits::kRuntimeMiB) << 20;
  sb.nice = spec.background ? kBackgroundNice : 0;
  auto sp = spawn_sandboxed(sb);
  if (!sp) return std::unexpected(sp.error());

  DomId id = next_id_++;
  Incarnation inc;
  inc.info = {id, spec.name, sp->pid, platform::Clock::now()};
  inc.pidfd = std::move(sp->pidfd);
  inc.waiter = std::make_unique<boost::asio::posix::stream_descriptor>(io_, ::dup(inc.pidfd.get()));
  inc.waiter->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                         [this, id](const boost::system::error_code& ec) {
                           if (!ec) reap(id);
                         });
  for (const char* ns : {"mnt", "pid", "ipc", "uts"}) {
    std::string path = "/proc/" + std::to_string(sp->pid) + "/ns/" + ns;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd) inc.ns_refs.push_back(std::move(fd));
  }
  auto info = inc.info;
  live_.emplace(id, std::move(inc));
  if (ctl) *ctl = std::move(chans->first);
  return info;
}

void LocalDomainManager::reap(DomId id) {
  auto it = live_.find(id);
  if (it == live_.end()) return;
  platform::DeathInfo d;
  d.id = id;
  d.name = it->second.info.name;
  d.detected = platform::Clock::now();
  siginfo_t si{};
  if (::waitid(P_PIDFD, static_cast<id_t>(it->second.pidfd.get()), &si, WEXITED) == 0)
    d.reason = describe_exit(si, &d.exit_code, &d.signal);
  else
    d.reason = std::string("ended (waitid: ") + std::strerror(errno) + ")";
  // Namespace teardown can take milliseconds: not on the recovery path.
  std::thread([refs = std::move(it->second.ns_refs)]() mutable { refs.clear(); }).detach();
  live_.erase(it);
  if (on_death_) on_death_(d);
}

Result<void> LocalDomainManager::kill(DomId id, int signal) {
  auto it = live_.find(id);
  if (it == live_.end()) return {};  // already dead: idempotent
  if (::syscall(SYS_pidfd_send_signal, it->second.pidfd.get(), signal, nullptr, 0) != 0 && errno != ESRCH)
    return sys_fail("pidfd_send_signal");
  return {};
}

// Nice applies per thread: every thread the process has now (those it
// starts later inherit their creator's).
void LocalDomainManager::set_background(DomId id, bool background) {
  auto it = live_.find(id);
  if (it == live_.end()) return;
  std::error_code ec;
  for (const auto& t : std::filesystem::directory_iterator("/proc/" + std::to_string(it->second.info.pid) + "/task", ec))
    (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(std::atoi(t.path().filename().c_str())),
                        background ? kBackgroundNice : 0);
}

void LocalDomainManager::forget(const std::string& name) {
  if (auto it = netns_.find(name); it != netns_.end()) {
    remove_netns(it->second);
    netns_.erase(it);
  }
  std::error_code ec;
  std::filesystem::remove(opts_.state_dir / "roots" / name, ec);
}

}  // namespace sd::local
