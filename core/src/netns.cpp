#include "sd/core/netns.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

namespace sd {
namespace {
constexpr const char* kNetnsDir = "/run/netns";
}

bool valid_netns_name(const std::string& name) {
  if (name.empty() || name.size() > 64 || name == "." || name == "..") return false;
  for (char c : name)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  return true;
}

Result<UniqueFd> ensure_netns(const std::string& name) {
  if (!valid_netns_name(name)) return fail(Code::kInvalidInput, "bad netns name '" + name + "'");
  ::mkdir("/run", 0755);
  if (::mkdir(kNetnsDir, 0755) != 0 && errno != EEXIST) return sys_fail("mkdir /run/netns");
  std::string path = std::string(kNetnsDir) + "/" + name;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd) {
    // Already a namespace (a bind mount of nsfs)? setns-able check via fstatfs is
    // overkill: a plain file would fail setns later with EINVAL, reported then.
    return fd;
  }
  int f = ::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  if (f < 0) return sys_fail("create " + path);
  ::close(f);
  // unshare(CLONE_NEWNET) in a helper thread moves only that thread, so the
  // daemon itself stays in the host namespace.
  int err = 0;
  std::thread t([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      err = errno;
      return;
    }
    if (::mount("/proc/thread-self/ns/net", path.c_str(), "none", MS_BIND, nullptr) != 0) err = errno;
  });
  t.join();
  if (err != 0) {
    ::unlink(path.c_str());
    errno = err;
    return sys_fail("create network namespace " + name);
  }
  fd.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_fail("open " + path);
  return fd;
}

void remove_netns(const std::string& name) {
  if (!valid_netns_name(name)) return;
  std::string path = std::string(kNetnsDir) + "/" + name;
  ::umount2(path.c_str(), MNT_DETACH);
  ::unlink(path.c_str());
}

}  // namespace sd
