#include "netsetup.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <thread>

extern char** environ;

namespace sd::dom0 {

Result<void> run_program(const std::vector<std::string>& argv) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return sys_fail("pipe");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int rc = ::posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(pipefd[1]);
  if (rc != 0) {
    ::close(pipefd[0]);
    errno = rc;
    return sys_fail("spawn " + argv[0]);
  }
  std::string err;
  char buf[512];
  for (ssize_t n; (n = ::read(pipefd[0], buf, sizeof(buf))) > 0;) err.append(buf, static_cast<size_t>(n));
  ::close(pipefd[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return {};
  std::string cmd;
  for (auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
  while (!err.empty() && err.back() == '\n') err.pop_back();
  return fail(Code::kSystem, "'" + cmd + "' failed: " + err);
}

Result<void> ip(const std::string& ns, const std::vector<std::string>& args) {
  std::vector<std::string> argv{"ip"};
  if (!ns.empty()) argv.insert(argv.end(), {"-n", ns});
  argv.insert(argv.end(), args.begin(), args.end());
  return run_program(argv);
}

Result<UniqueFd> open_packet_socket(const std::string& ns, const std::string& ifname) {
  std::string path = "/run/netns/" + ns;
  UniqueFd nsfd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!nsfd) return sys_fail("open " + path);
  // The socket belongs to the namespace it is created in; a helper thread
  // enters the namespace so the daemon itself stays where it is.
  int fd = -1, err = 0;
  std::string what;
  std::thread t([&] {
    if (::setns(nsfd.get(), CLONE_NEWNET) != 0) {
      err = errno, what = "setns";
      return;
    }
    unsigned idx = ::if_nametoindex(ifname.c_str());
    if (idx == 0) {
      err = errno, what = "no interface " + ifname + " in " + ns;
      return;
    }
    fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (fd < 0) {
      err = errno, what = "socket(AF_PACKET)";
      return;
    }
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = static_cast<int>(idx);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) != 0) {
      err = errno, what = "bind packet socket";
      return;
    }
  });
  t.join();
  UniqueFd sock(fd);
  if (err) {
    errno = err;
    return sys_fail(what);
  }
  int one = 1;
  (void)::setsockopt(sock.get(), SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
  int rcvbuf = 16 << 20;  // ~10000 frames: what arrives during an outage waits here
  (void)::setsockopt(sock.get(), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
  int sndbuf = 4 << 20;
  (void)::setsockopt(sock.get(), SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf));
  return sock;
}

}  // namespace sd::dom0
