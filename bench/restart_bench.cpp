// Driver-domain restart cost on the local platform: kill -9 -> death seen ->
// new sandboxed incarnation created -> its runtime says Ready. Prints a table
// of percentiles per phase. Not a test: figures only.
//
// usage: bench_restart [--iterations N] [--drvdom PATH]
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <vector>

#include "sd/core/platform.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

double ms(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

double pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

bool wait_ready(sd::ctl::Channel& ch) {
  pollfd p{ch.fd(), POLLIN, 0};
  if (::poll(&p, 1, 10000) <= 0) return false;
  auto m = ch.recv();
  return m && *m && (*m)->type == sd::ctl::MsgType::kReady;
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = 50;
  std::string drvdom;
  static const option kOpts[] = {{"iterations", required_argument, nullptr, 'n'},
                                 {"drvdom", required_argument, nullptr, 'd'},
                                 {"help", no_argument, nullptr, 'h'},
                                 {nullptr, 0, nullptr, 0}};
  for (int c; (c = getopt_long(argc, argv, "n:d:h", kOpts, nullptr)) != -1;) {
    switch (c) {
      case 'n': iterations = std::max(1, std::atoi(optarg)); break;
      case 'd': drvdom = optarg; break;
      case 'h':
        std::printf("usage: bench_restart [--iterations N] [--drvdom PATH]\n"
                    "Measures kill -9 -> death detected -> new sandboxed driver domain Ready.\n");
        return 0;
      default: std::fprintf(stderr, "usage: bench_restart [--iterations N] [--drvdom PATH]\n"); return 2;
    }
  }
  if (drvdom.empty()) drvdom = SD_DRVDOM_PATH;
  char tmpl[] = "/tmp/sd-bench-XXXXXX";
  if (!::mkdtemp(tmpl)) return 1;
  boost::asio::io_context io;
  sd::platform::Options o;
  o.state_dir = std::filesystem::path(tmpl) / "state";
  o.drvdom_binary = drvdom;
  auto plat = std::move(sd::platform::make_platform("local", io, o).value());
  std::optional<Clock::time_point> died;
  plat->domains().on_death([&](const sd::platform::DeathInfo& d) { died = d.detected; });

  sd::platform::DomainSpec spec;
  spec.name = "benchdd";
  spec.netns = "sd-bench-" + std::to_string(::getpid());
  sd::ctl::Channel ch;
  auto info = plat->domains().create(spec, &ch);
  if (!info || !wait_ready(ch)) {
    std::fprintf(stderr, "bench_restart: first start failed\n");
    plat->domains().forget("benchdd");  // no netns left behind
    return 1;
  }
  std::vector<double> detect, create, ready, total;
  for (int i = 0; i < iterations; ++i) {
    died.reset();
    auto t_kill = Clock::now();
    (void)plat->domains().kill(info->id, SIGKILL);
    while (!died) {
      io.restart();
      io.run_one_for(100ms);
    }
    auto t_create0 = Clock::now();
    info = plat->domains().create(spec, &ch);
    auto t_created = Clock::now();
    if (!info || !wait_ready(ch)) {
      std::fprintf(stderr, "bench_restart: restart %d failed\n", i);
      plat->domains().forget("benchdd");
      return 1;
    }
    auto t_ready = Clock::now();
    detect.push_back(ms(t_kill, *died));
    create.push_back(ms(t_create0, t_created));
    ready.push_back(ms(t_created, t_ready));
    total.push_back(ms(*died, t_ready));
    if ((i + 1) % 10 == 0) std::fprintf(stderr, "\rbench_restart: %d/%d", i + 1, iterations);
  }
  std::fprintf(stderr, "\n");
  plat->domains().forget("benchdd");
  plat.reset();
  std::filesystem::remove_all(tmpl);

  std::printf("driver-domain restart, local platform, %d kills\n", iterations);
  std::printf("%-34s %9s %9s %9s %9s\n", "phase (ms)", "p50", "p95", "p99", "max");
  auto row = [](const char* name, const std::vector<double>& v) {
    std::printf("%-34s %9.2f %9.2f %9.2f %9.2f\n", name, pct(v, 50), pct(v, 95), pct(v, 99),
                *std::max_element(v.begin(), v.end()));
  };
  row("kill -> death detected (pidfd)", detect);
  row("create (clone3 + namespaces)", create);
  row("created -> Ready (sandbox+exec)", ready);
  row("death -> Ready", total);
  return 0;
}
