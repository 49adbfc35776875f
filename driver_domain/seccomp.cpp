#include "seccomp.hpp"

#include <linux/if_packet.h>
#include <sched.h>
#include <sys/socket.h>
#include <seccomp.h>

#include <cerrno>

#include <string>

namespace sd::drvdom {

Result<void> install_seccomp() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
  if (!ctx) return fail(Code::kSystem, "seccomp_init failed");
  // What a backend needs: wait, move bytes over fds it was handed, map
  // granted pages, keep time, exit. No socket(), no open of devices it was
  // not given (openat is allowed only because the mount view is empty of
  // host files), no process creation, no mount, no ptrace. The block
  // backend adds only what a disk fd and its I/O thread need: flush
  // (fdatasync), discard (fallocate, which punches holes in the fd it was
  // handed), eventfds, and threads (clone only with CLONE_THREAD, below).
  static const char* const kAllowed[] = {
      "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "lseek",
      "fdatasync", "fallocate", "eventfd2", "set_robust_list", "rseq",
      "recvmsg", "sendmsg", "recvfrom", "sendto", "recvmmsg", "sendmmsg",
      "poll", "ppoll", "epoll_wait", "epoll_pwait", "epoll_ctl", "epoll_create1", "select", "pselect6",
      "close", "fcntl", "dup", "dup3", "openat", "fstat", "newfstatat", "statx",
      "mmap", "munmap", "mprotect", "madvise", "brk", "mremap",
      "futex", "clock_gettime", "clock_nanosleep", "nanosleep", "gettimeofday", "sched_yield",
      "getpid", "gettid", "getrandom", "rt_sigreturn", "rt_sigprocmask", "rt_sigaction", "restart_syscall",
      "exit", "exit_group", "tgkill",
  };
  for (const char* name : kAllowed) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) != 0) {
      seccomp_release(ctx);
      return fail(Code::kSystem, std::string("seccomp_rule_add ") + name);
    }
  }
  // Threads, never processes: clone must carry CLONE_THREAD; clone3 (whose
  // flags seccomp cannot see) says ENOSYS, so the C library falls back to clone.
  if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                       SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)) != 0 ||
      seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) != 0) {
    seccomp_release(ctx);
    return fail(Code::kSystem, "seccomp_rule_add clone");
  }
  // One socket option: virtio-net headers on the NIC's packet socket, for a
  // vif whose frontend carries offloads (netback.cpp).
  if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(setsockopt), 2, SCMP_A1(SCMP_CMP_EQ, SOL_PACKET),
                       SCMP_A2(SCMP_CMP_EQ, PACKET_VNET_HDR)) != 0) {
    seccomp_release(ctx);
    return fail(Code::kSystem, "seccomp_rule_add setsockopt");
  }
  int rc = seccomp_load(ctx);
  seccomp_release(ctx);
  if (rc != 0) return fail(Code::kSystem, "seccomp_load failed: " + std::to_string(rc));
  return {};
}

}  // namespace sd::drvdom
