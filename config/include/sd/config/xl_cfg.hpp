// xl cfg files: the domain configuration syntax operators already write for
// Xen's xl (see xl.cfg(5), xl-disk-configuration(5)).
//
//   name = "guest1"          # strings in 'single' or "double" quotes
//   memory = 512             # integers
//   vif = [ 'backend=netdd,mac=00:16:3e:5d:00:01',   # lists, may span lines,
//         ]                                          # trailing comma ok
//   vsnd = [[ 'card, backend=snddd', 'pcm, name=p0', 'stream, unique-id=s0, type=p' ]]
//
// Only the keys Shadow Domains uses are accepted; anything else is an error
// with a hint, so a typo never silently changes what runs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sd/config/diagnostic.hpp"
#include "sd/core/device_class.hpp"

namespace sd::config {

using DeviceClass = sd::DeviceClass;  // core/include/sd/core/device_class.hpp

// "vif", "vbd", "vsnd" (also the policy file stem and the policy's `class:`).
std::string_view class_name(DeviceClass cls);
// Inverse of class_name; nullopt for anything else.
std::optional<DeviceClass> parse_class_name(std::string_view name);
// The xl cfg key that lists devices of this class: "vif", "disk", "vsnd".
std::string_view cfg_key(DeviceClass cls);

// The backend domain xl assumes when a spec has no backend=.
inline constexpr std::string_view kDom0Name = "Domain-0";

struct DeviceSpec {
  DeviceClass cls;
  int index;            // position in its list (vif[0], disk[1], vsnd card 0 ...)
  std::string backend;  // backend= domain name, default "Domain-0"
  // All KEY=VALUE items as written (backend included; nothing defaulted). For
  // a disk given positionally, the positions are stored under their key
  // names (target, format, vdev, access). For vsnd: the card's items.
  std::map<std::string, std::string> params;
  // vsnd only: the card's pcm and stream items in file order, each with
  // "kind" = "pcm" | "stream"; a stream belongs to the pcm before it.
  std::vector<std::map<std::string, std::string>> children;
  int line;  // line of the spec string in the cfg file
  // vsnd only: which of the card's playback streams this device is. As in
  // sndif, every stream has its own ring, so a card with N playback streams
  // is N devices (one per stream, in file order), all with the card's index.
  int stream = 0;
};

// At most this many playback streams per card (players at once).
inline constexpr int kMaxVsndStreams = 8;

// The device's name within its guest: "vif/0", "vbd/1", "vsnd/0" (a card's
// first stream), "vsnd/0.1" (its second).
std::string device_name(const DeviceSpec& d);

// A disk's vdev as the number a Xen guest's blkfront reads from
// `virtual-device` (xen's vbd-interface.txt: xvda = 51712, sdb = 2064, xvdq
// and partitions past 15 in the extended form); nullopt for a name xl would
// refuse.
std::optional<uint32_t> vdev_number(std::string_view vdev);

// A disk's size= (bytes, with an optional K, M, G or T suffix, powers of
// 1024): a whole number of 512-byte sectors, at least one; nullopt otherwise.
std::optional<uint64_t> disk_size_bytes(std::string_view size);

struct DomainCfg {
  std::string file;  // label used in diagnostics (the path as given)
  std::string name;
  bool driver_domain = false;
  std::optional<int64_t> memory_mb, vcpus;
  std::optional<std::string> kernel, ramdisk, extra, cmdline, type;
  // on_crash / on_poweroff / on_reboot, when set (used by the Xen platform).
  std::optional<std::string> on_crash, on_poweroff, on_reboot;
  std::vector<DeviceSpec> devices;  // in file order (the order of the vif/disk/vsnd keys, then list order)
  int name_line = 0;
  int memory_line = 0;
};

Parsed<DomainCfg> parse_domain_cfg(const std::filesystem::path& path);
Parsed<DomainCfg> parse_domain_cfg_text(std::string_view text, std::string file_label);  // for tests

}  // namespace sd::config
