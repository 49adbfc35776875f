#include "local/sandbox.hpp"

#include <fcntl.h>
#include <grp.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "sd/core/limits.hpp"

namespace sd::local {
namespace {

// Everything the child needs is prepared before clone: after clone the child
// of a multi-threaded parent may only make system calls (no malloc).
struct ChildPlan {
  std::string root, binary, name;
  std::vector<std::string> args;
  std::vector<char*> argv;
  int netns_fd = -1, control_fd = -1, log_fd = -1;
  uint64_t memory_bytes = 0;
  int nice = 0;
};

[[noreturn]] void child_die(const char* what) {
  int e = errno;
  char buf[256];
  int n = std::snprintf(buf, sizeof(buf), "drvdom sandbox setup: %s: %s\n", what, strerror(e));
  if (n > 0) (void)!::write(2, buf, static_cast<size_t>(n));
  _exit(126);
}

void must(int rc, const char* what) {
  if (rc != 0) child_die(what);
}

void bind_file(const char* src, const char* dst, bool readonly) {
  int fd = ::open(dst, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) child_die(dst);
  ::close(fd);
  must(::mount(src, dst, nullptr, MS_BIND, nullptr), dst);
  if (readonly)
    must(::mount(nullptr, dst, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID, nullptr), dst);
}

[[noreturn]] void child_main(const ChildPlan& p) {
  // stdout/stderr to the domain's log first, so setup errors are visible.
  if (p.log_fd >= 0) {
    ::dup2(p.log_fd, 1);
    ::dup2(p.log_fd, 2);
  }
  // The domain dies with shadowd: nothing is left behind.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (p.netns_fd >= 0) must(::setns(p.netns_fd, CLONE_NEWNET), "setns(net)");

  // Minimal filesystem view: a fresh tmpfs root with read-only /usr only,
  // built from inside it (relative paths: no strings to make after clone).
  must(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), "make / private");
  must(::mount("sdroot", p.root.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755"), "mount root tmpfs");
  must(::chdir(p.root.c_str()), "chdir to the new root");
  for (const char* d : {"usr", "proc", "dev", "tmp", "etc", ".old"}) must(::mkdir(d, 0755), d);
  must(::symlink("usr/lib", "lib"), "symlink lib");
  must(::symlink("usr/lib64", "lib64"), "symlink lib64");
  must(::symlink("usr/bin", "bin"), "symlink bin");
  must(::mount("/usr", "usr", nullptr, MS_BIND | MS_REC, nullptr), "bind /usr");
  must(::mount(nullptr, "usr", nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr),
       "remount /usr read-only");
  if (::access("/etc/ld.so.cache", R_OK) == 0) bind_file("/etc/ld.so.cache", "etc/ld.so.cache", true);
  bind_file(p.binary.c_str(), "drvdom", true);
  for (const char* dev : {"/dev/null", "/dev/zero", "/dev/urandom"}) bind_file(dev, dev + 1, false);  // at dev/...
  must(::mount("sdtmp", "tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4m,mode=1777"), "mount /tmp");

  must(::syscall(SYS_pivot_root, ".", ".old"), "pivot_root");
  must(::chdir("/"), "chdir /");
  must(::umount2("/.old", MNT_DETACH), "detach old root");
  must(::rmdir("/.old"), "rmdir /.old");
  // Own /proc: shows only this pid namespace (and this net namespace's /proc/net).
  must(::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr), "mount /proc");
  must(::mount(nullptr, "/", nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr), "remount / read-only");
  (void)::sethostname(p.name.data(), p.name.size());

  // Only the fds it is handed: control channel on 3, log on 1/2, /dev/null on 0.
  if (p.control_fd != 3) must(::dup2(p.control_fd, 3) < 0 ? -1 : 0, "dup2 control");
  int devnull = ::open("/dev/null", O_RDONLY);
  if (devnull >= 0 && devnull != 0) {
    ::dup2(devnull, 0);
    ::close(devnull);
  }
  if (p.log_fd < 0) {
    ::dup2(0, 1);
    ::dup2(0, 2);
  }
  must(static_cast<int>(::syscall(SYS_close_range, 4U, ~0U, 0U)), "close_range");
  ::fcntl(3, F_SETFD, 0);

  // rlimits: no core files, bounded fds/processes/memory.
  rlimit core{0, 0};
  ::setrlimit(RLIMIT_CORE, &core);
  rlimit nofile{limits::kDomainFds, limits::kDomainFds};
  ::setrlimit(RLIMIT_NOFILE, &nofile);
  rlimit nproc{256, 256};
  ::setrlimit(RLIMIT_NPROC, &nproc);
  if (p.memory_bytes > 0) {
    rlimit as{p.memory_bytes, p.memory_bytes};
    ::setrlimit(RLIMIT_AS, &as);
  }
  if (p.nice != 0) ::setpriority(PRIO_PROCESS, 0, p.nice);

  // Drop root: nobody, no groups; changing uid from 0 clears all capabilities.
  // Raw system calls: glibc's wrappers would try to change the ids of the
  // parent's other threads too (they do not exist in this child) and wait forever.
  must(static_cast<int>(::syscall(SYS_setgroups, 0, nullptr)), "setgroups");
  must(static_cast<int>(::syscall(SYS_setresgid, kSandboxUid, kSandboxUid, kSandboxUid)), "setresgid");
  must(static_cast<int>(::syscall(SYS_setresuid, kSandboxUid, kSandboxUid, kSandboxUid)), "setresuid");
  must(::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs");

  static char env_path[] = "PATH=/usr/bin";
  char* envp[] = {env_path, nullptr};
  ::execve("/drvdom", p.argv.data(), envp);
  child_die("execve /drvdom");
}

}  // namespace

Result<Spawned> spawn_sandboxed(const SandboxSpec& spec) {
  ChildPlan p;
  p.root = spec.root_dir.string();
  std::error_code ec;
  std::filesystem::create_directories(spec.root_dir, ec);
  if (ec) return fail(Code::kSystem, "create " + p.root + ": " + ec.message());
  p.binary = spec.binary.string();
  p.name = spec.name;
  p.args = {"drvdom", "--name", spec.name, "--control-fd", "3"};
  for (auto& a : p.args) p.argv.push_back(a.data());
  p.argv.push_back(nullptr);
  p.netns_fd = spec.netns_fd;
  p.control_fd = spec.control_fd;
  p.memory_bytes = spec.memory_bytes;
  p.nice = spec.nice;
  if (::access(p.binary.c_str(), X_OK) != 0) return sys_fail("driver-domain runtime " + p.binary);

  UniqueFd log;
  if (!spec.log_file.empty()) {
    log.reset(::open(spec.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
    if (!log) return sys_fail("open " + spec.log_file.string());
  }
  p.log_fd = log.get();

  int pidfd = -1;
  clone_args args{};
  args.flags = CLONE_PIDFD | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS |
               (spec.netns_fd < 0 ? CLONE_NEWNET : 0);
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  long pid = ::syscall(SYS_clone3, &args, sizeof(args));
  if (pid < 0) return sys_fail("clone3");
  if (pid == 0) child_main(p);
  return Spawned{static_cast<int>(pid), UniqueFd(pidfd)};
}

}  // namespace sd::local
