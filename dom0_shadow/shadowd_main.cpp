// shadowd: the dom0 service that keeps a shadow of every device connection
// and recovers driver domains. Runs in the foreground (systemd Type=simple).
#include <getopt.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "daemon.hpp"
#include "sd/config/host.hpp"

namespace {

const char kUsage[] = "usage: shadowd --config HOST.yaml [--check] [--platform auto|local|xen] [--socket PATH]\n";

void help() {
  std::printf(
      "%s\n"
      "Starts the driver domains named in the host config, supervises them, keeps\n"
      "a shadow of every guest device and recovers the devices when a driver\n"
      "domain dies, hangs or misbehaves. Control it with shadowctl.\n\n"
      "Options:\n"
      "  -c, --config FILE      host config (YAML: platform, policy_dir, domains, guests)\n"
      "      --check            validate the host config, its xl cfg files and policies,\n"
      "                         print every error as FILE:LINE and exit (0 valid, 1 not)\n"
      "  -p, --platform NAME    auto (default: the host file's), local or xen\n"
      "  -s, --socket PATH      control socket (default: the host file's control_socket)\n"
      "      --drvdom PATH      driver-domain runtime binary (default: drvdom next to\n"
      "                         shadowd, or ../driver_domain/drvdom in a build tree)\n"
      "      --netfront PATH    guest vif frontend binary (default: sd-netfront next to\n"
      "                         shadowd, or ../frontends/sd-netfront in a build tree);\n"
      "                         on xen the dom0 ring proxy of an unmodified guest's vif\n"
      "      --blkfront PATH    the dom0 ring proxy of an unmodified guest's vbd on xen\n"
      "                         (default: sd-blkfront, found as sd-netfront is)\n"
      "      --sndfront PATH    the same for a vsnd (default: sd-sndfront)\n"
      "  -v, --verbose          more log output\n"
      "  -V, --version          print the version and exit\n"
      "  -h, --help             this help\n\n"
      "Exit status: 0 clean shutdown (SIGTERM, SIGINT or `shadowctl shutdown`),\n"
      "1 config or start-up error, 2 bad command line.\n",
      kUsage);
}

// A helper binary next to shadowd (installed) or in its build-tree folder.
std::filesystem::path default_binary(const char* name, const char* build_dir) {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path();
  for (auto cand : {self / name, self / ".." / build_dir / name, self / ".." / "lib" / "shadowd" / name})
    if (std::filesystem::exists(cand, ec)) return std::filesystem::weakly_canonical(cand, ec);
  return self / name;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config, platform, socket, drvdom, netfront, blkfront, sndfront;
  bool check = false, verbose = false;
  enum { kCheck = 1000, kDrvdom, kNetfront, kBlkfront, kSndfront };
  static const option kOpts[] = {{"config", required_argument, nullptr, 'c'},
                                 {"check", no_argument, nullptr, kCheck},
                                 {"platform", required_argument, nullptr, 'p'},
                                 {"socket", required_argument, nullptr, 's'},
                                 {"drvdom", required_argument, nullptr, kDrvdom},
                                 {"netfront", required_argument, nullptr, kNetfront},
                                 {"blkfront", required_argument, nullptr, kBlkfront},
                                 {"sndfront", required_argument, nullptr, kSndfront},
                                 {"verbose", no_argument, nullptr, 'v'},
                                 {"version", no_argument, nullptr, 'V'},
                                 {"help", no_argument, nullptr, 'h'},
                                 {nullptr, 0, nullptr, 0}};
  opterr = 0;
  for (int c; (c = getopt_long(argc, argv, ":c:p:s:vVh", kOpts, nullptr)) != -1;) {
    switch (c) {
      case 'c': config = optarg; break;
      case kCheck: check = true; break;
      case 'p': platform = optarg; break;
      case 's': socket = optarg; break;
      case kDrvdom: drvdom = optarg; break;
      case kNetfront: netfront = optarg; break;
      case kBlkfront: blkfront = optarg; break;
      case kSndfront: sndfront = optarg; break;
      case 'v': verbose = true; break;
      case 'V': std::printf("shadowd 0.1\n"); return 0;
      case 'h': help(); return 0;
      case ':':
        std::fprintf(stderr, "shadowd: option %s needs a value\n%s", argv[optind - 1], kUsage);
        return 2;
      default:
        std::fprintf(stderr, "shadowd: unknown option %s\n%s", argv[optind - 1], kUsage);
        return 2;
    }
  }
  if (optind != argc) {
    std::fprintf(stderr, "shadowd: unexpected argument '%s'\n%s", argv[optind], kUsage);
    return 2;
  }
  if (config.empty()) {
    std::fprintf(stderr, "shadowd: --config is required\n%s", kUsage);
    return 2;
  }
  if (!platform.empty() && platform != "auto" && platform != "local" && platform != "xen") {
    std::fprintf(stderr, "shadowd: --platform must be auto, local or xen, not '%s'\n%s", platform.c_str(), kUsage);
    return 2;
  }

  auto host = sd::config::load_host(config);
  if (!host) {
    for (const auto& d : host.error()) std::fprintf(stderr, "%s\n", d.to_string().c_str());
    std::fprintf(stderr, "shadowd: %zu error(s) in the configuration; nothing started\n", host.error().size());
    return 1;
  }
  if (check) {
    std::printf("%s: OK (%zu driver domain(s), %zu guest(s), %zu policies)\n", config.c_str(),
                host->driver_domains.size(), host->guests.size(), host->policies.size());
    return 0;
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "shadowd: must run as root (namespaces, mounts, netns)\n");
    return 1;
  }
  sd::dom0::DaemonOptions opts;
  opts.platform = platform;
  opts.control_socket = socket;
  opts.drvdom_binary = drvdom.empty() ? default_binary("drvdom", "driver_domain") : std::filesystem::path(drvdom);
  opts.netfront_binary =
      netfront.empty() ? default_binary("sd-netfront", "frontends") : std::filesystem::path(netfront);
  opts.blkfront_binary =
      blkfront.empty() ? default_binary("sd-blkfront", "frontends") : std::filesystem::path(blkfront);
  opts.sndfront_binary =
      sndfront.empty() ? default_binary("sd-sndfront", "frontends") : std::filesystem::path(sndfront);
  opts.verbose = verbose;
  sd::dom0::Daemon d(std::move(*host), std::move(opts));
  return d.run();
}
