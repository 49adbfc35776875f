// The device classes, one enum for the config, the control protocol and the
// driver domain. The values are what kDevAttach carries on the wire.
#pragma once

#include <cstdint>
#include <optional>

namespace sd {

enum class DeviceClass : uint32_t { kVif = 1, kVbd = 2, kVsnd = 3 };  // xl cfg keys: vif, disk, vsnd

// The class a peer named on the wire; nullopt for anything else (refused).
inline std::optional<DeviceClass> device_class_from_wire(uint32_t v) {
  if (v < static_cast<uint32_t>(DeviceClass::kVif) || v > static_cast<uint32_t>(DeviceClass::kVsnd))
    return std::nullopt;
  return static_cast<DeviceClass>(v);
}

}  // namespace sd
