// udp_probe: a paced UDP stream and a receiver that timestamps arrivals, to
// see a network outage from the application's side.
//
//   udp_probe send DST_IP PORT RATE_PPS SECONDS
//   udp_probe recv PORT SECONDS            prints "seq sent_ns arrival_ns" per datagram;
//                                          stops after SECONDS or 1 s of silence
//
// Timestamps are CLOCK_MONOTONIC, the same clock in every network namespace,
// so the bench can line arrivals up with the moment it killed a driver.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace {

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

int usage() {
  std::fprintf(stderr,
               "usage: udp_probe send DST_IP PORT RATE_PPS SECONDS\n"
               "       udp_probe recv PORT SECONDS\n");
  return 2;
}

int do_send(const char* ip, int port, long rate, double seconds) {
  int s = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, ip, &a.sin_addr) != 1) return usage();
  uint64_t period = 1000000000ULL / static_cast<uint64_t>(rate);
  uint64_t start = now_ns(), end = start + static_cast<uint64_t>(seconds * 1e9);
  uint64_t next = start;
  char buf[64] = {};
  for (uint64_t seq = 0; next < end; ++seq, next += period) {
    timespec ts{static_cast<time_t>(next / 1000000000ULL), static_cast<long>(next % 1000000000ULL)};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
    std::memcpy(buf, &seq, sizeof(seq));
    uint64_t sent = now_ns();
    std::memcpy(buf + 8, &sent, sizeof(sent));
    // ENOBUFS/EAGAIN while the device is down: the datagram is lost, as for any app.
    (void)::sendto(s, buf, sizeof(buf), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  }
  return 0;
}

int do_recv(int port, double seconds) {
  int s = ::socket(AF_INET, SOCK_DGRAM, 0);
  int big = 8 << 20;
  ::setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    std::perror("bind");
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  uint64_t end = now_ns() + static_cast<uint64_t>(seconds * 1e9);
  char buf[64];
  uint64_t last = 0;
  // Kept in memory and printed at the end: writing while receiving could
  // block on a full pipe and delay the timestamps.
  struct Got {
    uint64_t seq, sent, arrived;
  };
  std::vector<Got> got;
  got.reserve(1 << 20);
  while (now_ns() < end) {
    pollfd p{s, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) {
      // The stream is over once nothing came for a second after it started.
      if (last && now_ns() - last > 1000000000ULL) break;
      continue;
    }
    ssize_t n = ::recv(s, buf, sizeof(buf), 0);
    uint64_t t = now_ns();
    last = t;
    if (n < 16) continue;
    Got g{0, 0, t};
    std::memcpy(&g.seq, buf, 8);
    std::memcpy(&g.sent, buf + 8, 8);
    got.push_back(g);
  }
  for (auto& g : got)
    std::printf("%llu %llu %llu\n", static_cast<unsigned long long>(g.seq), static_cast<unsigned long long>(g.sent),
                static_cast<unsigned long long>(g.arrived));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string mode = argv[1];
  if (mode == "send" && argc == 6) return do_send(argv[2], std::atoi(argv[3]), std::atol(argv[4]), std::atof(argv[5]));
  if (mode == "recv" && argc == 4) return do_recv(std::atoi(argv[2]), std::atof(argv[3]));
  return usage();
}
