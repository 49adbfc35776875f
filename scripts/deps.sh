#!/bin/bash
# Installs everything Shadow Domains needs from Debian 12 packages.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PKGS=(
  build-essential g++ cmake ninja-build pkg-config
  libboost-dev libyaml-cpp-dev libxen-dev libseccomp-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libasound2-dev libfuse3-dev
  iproute2 iputils-ping ethtool iperf3 fio alsa-utils procps socat
  pulseaudio pulseaudio-utils
  util-linux e2fsprogs
  gnuplot-nox
)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
echo "deps: apt-get update"
apt-get update -q
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  apt-get install -y -q --no-install-recommends "${PKGS[@]}"
else
  echo "deps: all ${#PKGS[@]} packages present"
fi
