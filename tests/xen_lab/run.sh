#!/bin/bash
# Shadow Domains real-Xen lab: boots Xen 4.17 + a Debian PV dom0 under QEMU
# (TCG, no KVM needed), runs tests/xen_lab/dom0-test.sh inside dom0 with the
# project's own binaries, powers off and prints one JSON line with the results.
#
# usage (as root):  tests/xen_lab/run.sh [--prepare-only] [--shell]
#   --prepare-only  install, download and build the images, do not boot
#   --shell         boot the same images with an interactive dom0 shell (no test;
#                   kill the qemu process to quit)
# environment:
#   LAB_CACHE    cache dir for downloads, rootfs and images (default /var/cache/shadow-xen-lab;
#                must be outside the git tree)
#   BUILD_DIR    the project's build dir (default <repo>/build)
#   LAB_MIRROR   Debian mirror for debootstrap (default: the host's deb.debian.org entry)
#   LAB_RESTARTS driver-domain destroy+create samples for the baseline (default 3)
#   LAB_TIMEOUT  cap for boot + test in seconds (default 1500)
#   LAB_LOCAL    1 (default) also try shadowd --platform local inside dom0; 0 skips it
#   LAB_SHADOWD_ARGS  extra arguments for the `shadowd --platform xen` run in dom0 (e.g. -v)
#   LAB_RUNS     which shadowd runs, in order (default "cold standby multi kernel kernel-standby kernel-vbd
#                kernel-vbd-standby kernel-vsnd kernel-vsnd-standby";
#                kernel = an unmodified guest on its kernel's xen-netfront, served by the dom0 ring proxy;
#                also: kernel-vbd = the same guest image with an ext4 disk on its kernel's xen-blkfront,
#                served by the dom0 vbd ring proxy relaying to the storage driver domain blkdd;
#                kernel-vsnd and kernel-vsnd-standby = the same guest image with a sound card on its kernel's
#                snd-xen-front, played by Debian's aplay, served by the dom0 sound ring proxy relaying to the
#                sound driver domain snddd, which plays into the DAC shadowd lends it)
#   LAB_VBD_MB   MiB the kernel-vbd run's guest writes and reads back across the faults (default 64, max 96)
#   LAB_SND_S    seconds of the marked WAV the kernel-vsnd runs' guest plays (default 50)
#   LAB_CPU      QEMU -cpu model (default: see qemu_run.py)
#   LAB_SMP      emulated CPUs, also dom0's vCPUs (default 2)
# The last line of output is always one JSON object (also on failure).
# Exit status: 0 when the dom0 test ran to the end, 1 otherwise.
set -euo pipefail
export LC_ALL=C DEBIAN_FRONTEND=noninteractive

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
LAB_CACHE=${LAB_CACHE:-/var/cache/shadow-xen-lab}
BUILD_DIR=${BUILD_DIR:-$REPO/build}
LAB_RESTARTS=${LAB_RESTARTS:-3}
LAB_TIMEOUT=${LAB_TIMEOUT:-1500}
LAB_LOCAL=${LAB_LOCAL:-1}
LAB_SHADOWD_ARGS=${LAB_SHADOWD_ARGS:-}
LAB_RUNS=${LAB_RUNS:-cold standby multi kernel kernel-standby kernel-vbd kernel-vbd-standby kernel-vsnd kernel-vsnd-standby}
SUITE=bookworm
XEN_PKG=xen-hypervisor-4.17-amd64
# dom0 userspace: Xen toolstack + what the lab scripts and the local platform use.
# The libraries of the project's binaries are added at run time (dpkg -S on the host).
ROOTFS_BASE_PKGS=(xen-utils-4.17 xenstore-utils libxenmisc4.17 iproute2 ethtool busybox kmod procps util-linux)
HOST_PKGS=(qemu-system-x86 debootstrap busybox-static cpio zstd gzip kmod binutils libxen-dev python3 alsa-utils)
# Kernel modules dom0 and the domUs load (relative to lib/modules/<kver>/kernel).
# ext4 and what it needs (mbcache, jbd2, crc16; crc32c for metadata_csum) for
# the kernel-vbd run's stock guest; ALSA's core and snd-xen-front for the
# kernel-vsnd runs' (with drivers/xen/xen-front-pgdir-shbuf.ko).
MODULES=(drivers/xen drivers/net/xen-netback drivers/net/xen-netfront.ko drivers/block/xen-blkback
         drivers/block/xen-blkfront.ko drivers/block/loop.ko drivers/net/veth.ko drivers/net/tun.ko
         drivers/net/dummy.ko net/bridge net/802 net/llc
         fs/ext4 fs/jbd2 fs/mbcache.ko lib/crc16.ko crypto/crc32c_generic.ko
         sound/soundcore.ko sound/core/snd.ko sound/core/snd-timer.ko sound/core/snd-pcm.ko sound/xen)
# The kernel cache holds these modules only: a changed list extracts them again.
MODULES_KEY=$(printf '%s\n' "${MODULES[@]}" | md5sum | cut -c1-12)
BINARIES=(dom0_shadow/shadowd tools/shadowctl/shadowctl driver_domain/drvdom frontends/sd-netfront)
# Binaries only some runs use, required when such a run is asked for: the vbd
# ring proxy (sd-blkfront --xen-guest, started by shadowd from its own
# directory). Their libraries are copied from the host when the dom0 rootfs
# lacks them (not added to its package list), so the rootfs, cached by its
# package list, is the same with and without these runs.
RUN_BINARIES=()
if [[ " $LAB_RUNS " == *" kernel-vbd "* || " $LAB_RUNS " == *" kernel-vbd-standby "* ]]; then
  RUN_BINARIES+=(frontends/sd-blkfront)
fi
# The sound runs: the sound ring proxy, and the marked signal's tool (it
# writes the WAV the guest plays and checks the DAC's recording in dom0).
SND_RUNS=0
if [[ " $LAB_RUNS " == *" kernel-vsnd "* || " $LAB_RUNS " == *" kernel-vsnd-standby "* ]]; then
  RUN_BINARIES+=(frontends/sd-sndfront bench/sd-pcm-marks)
  SND_RUNS=1
fi
LAB_SND_S=${LAB_SND_S:-50}

MODE=test
case "${1:-}" in
  "") ;;
  --prepare-only) MODE=prepare ;;
  --shell) MODE=shell ;;
  -h|--help) sed -n '2,/^set -e/{/^set -e/d;p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "run.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
esac

T_START=$(date +%s.%N)
RUN_ID=$(date +%Y%m%d-%H%M%S)
RUN_DIR=$LAB_CACHE/runs/$RUN_ID
PHASES=()          # "name seconds"
NOTES=()           # free-text notes for the JSON line
FAILED=""          # phase that failed, if any
CUR_PHASE=""
CUR_T0=0

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
log() { echo "[xen-lab +$(elapsed "$T_START")s] $*"; }
phase_begin() { CUR_PHASE=$1; CUR_T0=$(date +%s.%N); log "phase $1: $2"; }
phase_end() {
  local s; s=$(elapsed "$CUR_T0")
  PHASES+=("$CUR_PHASE $s")
  log "phase $CUR_PHASE: ${1:-done} (${s}s)"
  CUR_PHASE=""
}

# Final JSON line: always printed, also when a phase fails.
emit_json() {
  local rc=$?
  trap - EXIT
  if [[ -n $CUR_PHASE && $rc -ne 0 ]]; then
    FAILED=$CUR_PHASE
    PHASES+=("$CUR_PHASE $(elapsed "$CUR_T0")")
    log "phase $CUR_PHASE: FAILED (exit $rc), see ${SETUP_LOG:-the output above}"
  fi
  [[ $MODE == test ]] || exit $rc
  PHASES+=("total $(elapsed "$T_START")")
  mkdir -p "$RUN_DIR" 2>/dev/null || true
  printf '%s\n' "${PHASES[@]}" > "$RUN_DIR/phases.txt" 2>/dev/null || true
  printf '%s\n' "${NOTES[@]+"${NOTES[@]}"}" > "$RUN_DIR/notes.txt" 2>/dev/null || true
  local ok=1
  python3 "$HERE/report.py" --run-dir "$RUN_DIR" --failed-phase "$FAILED" --restarts "$LAB_RESTARTS" \
    --cache "$LAB_CACHE" || ok=0
  if [[ $ok == 0 ]]; then
    echo '{"crashes": 0, "app_exit": null, "bytes_ok": null, "baseline_s": null, "shadow_cold_ms": null, "standby_ms": null, "xen_platform": null, "boot_s": null, "notes": ["report.py failed"]}'
    exit 1
  fi
  exit $rc
}
trap emit_json EXIT

if [[ $(id -u) != 0 ]]; then echo "run.sh: run as root" >&2; exit 1; fi

# The cache must not land in a git tree (checked on its nearest existing ancestor).
probe=$LAB_CACHE
while [[ ! -d $probe ]]; do probe=$(dirname "$probe"); done
if top=$(git -C "$probe" rev-parse --show-toplevel 2>/dev/null); then
  echo "run.sh: LAB_CACHE=$LAB_CACHE is inside the git tree $top; pick a directory outside it" >&2
  FAILED=cache-check; NOTES+=("LAB_CACHE=$LAB_CACHE is inside the git tree $top")
  RUN_DIR=$(mktemp -d /tmp/shadow-xen-lab-refused.XXXXXX); exit 1
fi
mkdir -p "$LAB_CACHE"
LAB_CACHE=$(cd "$LAB_CACHE" && pwd -P)
RUN_DIR=$LAB_CACHE/runs/$RUN_ID
mkdir -p "$RUN_DIR" "$LAB_CACHE"/{debs,xen,kernel,images,tmp}
SETUP_LOG=$RUN_DIR/setup.log
: > "$SETUP_LOG"
# Keep the last 10 run directories.
{ ls -1d "$LAB_CACHE"/runs/*/ 2>/dev/null || true; } | head -n -10 | xargs -r rm -rf
log "cache $LAB_CACHE, build dir $BUILD_DIR, run dir $RUN_DIR"

# quiet: run a command with its output in the setup log; show the tail on failure.
quiet() {
  echo "+ $*" >> "$SETUP_LOG"
  if ! "$@" >> "$SETUP_LOG" 2>&1; then
    echo "--- last lines of $SETUP_LOG:" >&2; tail -25 "$SETUP_LOG" >&2; return 1
  fi
}
APT=(apt-get -q -o DPkg::Lock::Timeout=600 -o APT::Sandbox::User=root)

# ---------------------------------------------------------------- 1. host packages
phase_begin host-packages "${HOST_PKGS[*]}"
missing=()
for p in "${HOST_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  quiet "${APT[@]}" update
  quiet "${APT[@]}" install -y --no-install-recommends "${HOST_PKGS[@]}"
  APT_UPDATED=1
  phase_end "installed ${missing[*]}"
else
  APT_UPDATED=0
  phase_end "all present, no apt-get update"
fi
apt_update_once() { if [[ $APT_UPDATED == 0 ]]; then quiet "${APT[@]}" update; APT_UPDATED=1; fi; }

# ---------------------------------------------------------------- 2. Xen hypervisor
phase_begin xen "$XEN_PKG"
XEN_BIN=$LAB_CACHE/xen/xen-4.17
if [[ -s $XEN_BIN ]]; then
  phase_end "cached ($(cat "$LAB_CACHE/xen/version" 2>/dev/null))"
else
  apt_update_once
  rm -rf "$LAB_CACHE/tmp/xen" && mkdir -p "$LAB_CACHE/tmp/xen"
  (cd "$LAB_CACHE/debs" && rm -f ${XEN_PKG}_*.deb && quiet "${APT[@]}" download "$XEN_PKG")
  deb=$(ls "$LAB_CACHE"/debs/${XEN_PKG}_*.deb)
  dpkg-deb -x "$deb" "$LAB_CACHE/tmp/xen"
  # QEMU's -kernel (multiboot) wants the uncompressed ELF, Debian ships it gzipped.
  gz=$(ls "$LAB_CACHE"/tmp/xen/boot/xen-4.17*-amd64.gz | head -1)
  zcat "$gz" > "$XEN_BIN.part" && mv "$XEN_BIN.part" "$XEN_BIN"
  dpkg-deb -f "$deb" Version > "$LAB_CACHE/xen/version"
  rm -rf "$LAB_CACHE/tmp/xen"
  phase_end "downloaded $(basename "$deb")"
fi

# ---------------------------------------------------------------- 3. kernel (dom0 and domU)
phase_begin kernel "linux-image-amd64 (PV dom0 + domU kernel, selected modules)"
KDIR=$LAB_CACHE/kernel
if [[ -s $KDIR/vmlinuz && -s $KDIR/kver && -d $KDIR/modules && $(cat "$KDIR/modules.key" 2>/dev/null) == "$MODULES_KEY" ]]; then
  KVER=$(cat "$KDIR/kver")
  phase_end "cached ($KVER)"
else
  apt_update_once
  kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [[ -n $kpkg ]] || { echo "cannot resolve linux-image-amd64" >&2; exit 1; }
  KVER=${kpkg#linux-image-}
  (cd "$LAB_CACHE/debs" && rm -f linux-image-*.deb && quiet "${APT[@]}" download "$kpkg")
  rm -rf "$LAB_CACHE/tmp/k" "$KDIR" && mkdir -p "$LAB_CACHE/tmp/k" "$KDIR/modules/lib/modules/$KVER/kernel"
  dpkg-deb -x "$LAB_CACHE"/debs/"$kpkg"_*.deb "$LAB_CACHE/tmp/k"
  src=$LAB_CACHE/tmp/k/lib/modules/$KVER
  [[ -d $src ]] || src=$LAB_CACHE/tmp/k/usr/lib/modules/$KVER
  dst=$KDIR/modules/lib/modules/$KVER
  for m in "${MODULES[@]}"; do
    if [[ -e $src/kernel/$m ]]; then
      mkdir -p "$dst/kernel/$(dirname "$m")" && cp -a "$src/kernel/$m" "$dst/kernel/$m"
    else
      echo "kernel: module path $m not in $kpkg (built in?)" >> "$SETUP_LOG"
    fi
  done
  cp "$src"/modules.order "$src"/modules.builtin* "$dst/" 2>/dev/null || true
  depmod -b "$KDIR/modules" "$KVER"
  cp "$LAB_CACHE"/tmp/k/boot/vmlinuz-"$KVER" "$KDIR/vmlinuz"
  echo "$KVER" > "$KDIR/kver"
  echo "$MODULES_KEY" > "$KDIR/modules.key"
  rm -rf "$LAB_CACHE/tmp/k"
  # The image is what we keep; the .deb is 60+ MB and not needed again.
  rm -f "$LAB_CACHE"/debs/linux-image-*.deb
  phase_end "downloaded $kpkg"
fi

# ---------------------------------------------------------------- 4. project binaries (checked before debootstrap: they decide its package list)
phase_begin binaries "$BUILD_DIR"
ALL_BINARIES=("${BINARIES[@]}" "${RUN_BINARIES[@]+"${RUN_BINARIES[@]}"}")
for b in "${ALL_BINARIES[@]}"; do
  [[ -x $BUILD_DIR/$b ]] || { echo "missing $BUILD_DIR/$b: build the project first (scripts/build.sh)" >&2; exit 1; }
done
# Libraries the binaries link, and the Debian packages that own them on the host.
declare -A LIBS=()
for b in "${BINARIES[@]}"; do
  while read -r lib; do LIBS[$lib]=1; done < <(ldd "$BUILD_DIR/$b" 2>/dev/null | awk '/=> \//{print $3}')   # static: none
done
LIB_PKGS=()
for lib in "${!LIBS[@]}"; do
  pkg=""
  for cand in "$lib" "/usr$lib" "$(readlink -f "$lib")"; do
    pkg=$(dpkg -S "$cand" 2>/dev/null | head -1 | cut -d: -f1 || true)
    if [[ -n $pkg ]]; then break; fi
  done
  if [[ -n $pkg ]]; then LIB_PKGS+=("$pkg"); fi
done
NOTES+=("binaries from $BUILD_DIR ($("$BUILD_DIR/dom0_shadow/shadowd" --version 2>&1 | head -1), shadowd built $(date -r "$BUILD_DIR/dom0_shadow/shadowd" '+%F %T'), repo HEAD $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'))")
mapfile -t ROOTFS_PKGS < <(printf '%s\n' "${ROOTFS_BASE_PKGS[@]}" "${LIB_PKGS[@]}" | sort -u)
# The run-dependent binaries' libraries: copied into the overlay below when the rootfs lacks them.
for b in "${RUN_BINARIES[@]+"${RUN_BINARIES[@]}"}"; do
  while read -r lib; do LIBS[$lib]=1; done < <(ldd "$BUILD_DIR/$b" 2>/dev/null | awk '/=> \//{print $3}')
done
phase_end "${#ALL_BINARIES[@]} binaries, ${#LIBS[@]} libraries from $(printf '%s\n' "${LIB_PKGS[@]}" | sort -u | wc -l) packages"

# ---------------------------------------------------------------- 5. dom0 rootfs (debootstrap)
phase_begin rootfs "debootstrap --variant=minbase $SUITE"
ROOTFS=$LAB_CACHE/rootfs
want=$(printf '%s\n' "${ROOTFS_PKGS[@]}")
have=$(cat "$ROOTFS/.shadow-lab-pkgs" 2>/dev/null || true)
if [[ -x $ROOTFS/usr/sbin/xl && -n $have ]] && [[ -z $(comm -23 <(echo "$want") <(echo "$have")) ]]; then
  phase_end "cached ($(echo "$have" | wc -l) packages requested)"
else
  mirror=${LAB_MIRROR:-}
  if [[ -z $mirror ]]; then
    mirror=$(grep -rhoE 'https?://deb\.debian\.org/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | head -1 || true)
    mirror=${mirror:-http://deb.debian.org/debian}
  fi
  rm -rf "$ROOTFS" "$LAB_CACHE/images/dom0-base.cpio.zst"
  include=$(IFS=,; echo "${ROOTFS_PKGS[*]}")
  quiet debootstrap --variant=minbase --include="$include" "$SUITE" "$ROOTFS" "$mirror"
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb
  echo "$want" > "$ROOTFS/.shadow-lab-pkgs"
  phase_end "debootstrapped from $mirror ($(du -sh "$ROOTFS" | cut -f1))"
fi

# ---------------------------------------------------------------- 6. dom0 base image (rootfs + modules; reused while the rootfs is unchanged)
phase_begin dom0-base "pruned rootfs + Xen modules -> cpio.zst"
BASE_IMG=$LAB_CACHE/images/dom0-base.cpio.zst
base_key="$(cat "$ROOTFS/.shadow-lab-pkgs" | md5sum | cut -c1-12)-$KVER-$MODULES_KEY-v1"
if [[ -s $BASE_IMG && $(cat "$BASE_IMG.key" 2>/dev/null) == "$base_key" ]]; then
  phase_end "cached ($(du -h "$BASE_IMG" | cut -f1))"
else
  stage=$LAB_CACHE/tmp/dom0base
  rm -rf "$stage" && mkdir -p "$stage" && chmod 755 "$stage"
  tar -C "$ROOTFS" --exclude=./usr/share/doc --exclude=./usr/share/man --exclude=./usr/share/locale \
      --exclude=./usr/share/info --exclude=./var/cache/apt --exclude=./var/lib/apt/lists \
      --exclude=./usr/share/i18n --exclude=./usr/share/zoneinfo --exclude=./lib/modules \
      --exclude=./usr/lib/modules --exclude=./.shadow-lab-pkgs -cf - . | tar -C "$stage" -xf -
  mkdir -p "$stage/usr/lib/modules" && cp -a "$KDIR/modules/lib/modules/$KVER" "$stage/usr/lib/modules/"
  # xenconsoled keeps every guest console in /var/log/xen/console/guest-<name>.log
  echo 'XENCONSOLED_ARGS="--log=guest --log-dir=/var/log/xen/console"' >> "$stage/etc/default/xen"
  mkdir -p "$stage/var/log/xen/console"
  (cd "$stage" && find . -mindepth 1 | cpio -o -H newc --quiet | zstd -T0 -3 -q) > "$BASE_IMG.part"
  mv "$BASE_IMG.part" "$BASE_IMG" && echo "$base_key" > "$BASE_IMG.key"
  rm -rf "$stage"
  phase_end "built ($(du -h "$BASE_IMG" | cut -f1))"
fi

# ---------------------------------------------------------------- 7. per-run overlay: project binaries, config, lab scripts, domU image
phase_begin overlay "project binaries + config + lab scripts + domU initramfs"
ov=$RUN_DIR/overlay
rm -rf "$ov" && mkdir -p "$ov"/{opt/shadowd/bin,lab/hosts,usr/lib/x86_64-linux-gnu} && chmod -R 755 "$ov"
for b in "${ALL_BINARIES[@]}"; do
  # Debug info makes shadowd ~28 MB; the image keeps the symbols, not the DWARF.
  # strip also proves the ELF is complete (the build dir may be relinked under us):
  # on failure wait and try again.
  f=$ov/opt/shadowd/bin/$(basename "$b")
  for try in 1 2 3 4 5 6; do
    if strip --strip-debug -o "$f" "$BUILD_DIR/$b" 2>>"$SETUP_LOG"; then break; fi
    [[ $try == 6 ]] && { echo "cannot read $BUILD_DIR/$b (being rebuilt?)" >&2; exit 1; }
    sleep 10
  done
done
cp -a "$REPO/config" "$ov/opt/shadowd/config"
copied=()
for lib in "${!LIBS[@]}"; do
  real=$lib; [[ $real == /lib/* ]] && real=/usr$real          # merged /usr in the rootfs
  if [[ ! -e $ROOTFS$lib && ! -e $ROOTFS$real ]]; then
    mkdir -p "$ov$(dirname "$real")" && cp -L "$lib" "$ov$real"
    copied+=("$(basename "$lib")")
  fi
done
if ((${#copied[@]})); then NOTES+=("libraries copied from the host (not in the dom0 rootfs): ${copied[*]}"); fi
cp "$HERE/dom0-init.sh" "$ov/init" && chmod 755 "$ov/init"
cp "$HERE/dom0-test.sh" "$HERE/local-test.sh" "$HERE/vif-wire" "$HERE/block-loop" "$ov/lab/" &&
  chmod 755 "$ov"/lab/*.sh "$ov/lab/vif-wire" "$ov/lab/block-loop"
cp -r "$HERE/hosts/." "$ov/lab/hosts/"
cp "$KDIR/vmlinuz" "$ov/lab/vmlinuz"
printf 'LAB_RESTARTS=%q\nLAB_LOCAL=%q\nLAB_SHADOWD_ARGS=%q\nLAB_RUNS=%q\nLAB_VBD_MB=%q\nLAB_SND_S=%q\n' "$LAB_RESTARTS" \
  "$LAB_LOCAL" "$LAB_SHADOWD_ARGS" "$LAB_RUNS" "${LAB_VBD_MB:-64}" "$LAB_SND_S" > "$ov/lab/lab.env"

# domU initramfs: static busybox + xenstore client + Xen modules; the same image
# serves the driver domains (sdrole=dd: netdd, and blkdd with sddev=blk) and
# the guest (sdrole=guest).
du=$RUN_DIR/domuroot
rm -rf "$du" && mkdir -p "$du"/{bin,usr/bin,usr/lib/x86_64-linux-gnu,usr/lib64,usr/lib/modules} && chmod -R 755 "$du"
ln -s usr/lib "$du/lib" && ln -s usr/lib64 "$du/lib64"
cp /bin/busybox "$du/bin/busybox" && ln -s busybox "$du/bin/sh"
cp "$ROOTFS/usr/bin/xenstore" "$du/usr/bin/"
for l in read write ls list watch rm exists; do ln -s xenstore "$du/usr/bin/xenstore-$l"; done
for lib in $(chroot "$ROOTFS" ldd /usr/bin/xenstore | awk '/=> \//{print $3}'); do
  cp -L "$ROOTFS$lib" "$du/usr/lib/x86_64-linux-gnu/"
done
cp -L "$ROOTFS/lib64/ld-linux-x86-64.so.2" "$du/usr/lib64/"
kd=$du/usr/lib/modules/$KVER
mkdir -p "$kd"
# blkdd: xen-blkfront (its own disk) and xen-blkback; the stock guest: xen-blkfront, ext4 and its needs;
# for the sound runs also snd-xen-front and what it needs (in every domain's image; only the stock guest loads them).
DOMU_MODULES=(drivers/xen/xen-evtchn.ko drivers/xen/xen-gntdev.ko drivers/xen/xen-gntalloc.ko drivers/net/xen-netback
              drivers/net/xen-netfront.ko drivers/net/tun.ko drivers/block/xen-blkfront.ko drivers/block/xen-blkback
              fs/ext4 fs/jbd2 fs/mbcache.ko lib/crc16.ko crypto/crc32c_generic.ko)
if [[ $SND_RUNS == 1 ]]; then
  DOMU_MODULES+=(drivers/xen/xen-front-pgdir-shbuf.ko sound/soundcore.ko sound/core/snd.ko sound/core/snd-timer.ko
                 sound/core/snd-pcm.ko sound/xen)
fi
for m in "${DOMU_MODULES[@]}"; do
  mkdir -p "$kd/kernel/$(dirname "$m")" && cp -a "$KDIR/modules/lib/modules/$KVER/kernel/$m" "$kd/kernel/$m"
done
cp "$KDIR"/modules/lib/modules/"$KVER"/modules.{order,builtin,builtin.modinfo} "$kd/" 2>/dev/null || true
quiet depmod -b "$du/usr" "$KVER"
# drvdom and sd-netfront are static: they need nothing else from the image.
strip --strip-debug -o "$du/usr/bin/drvdom" "$BUILD_DIR/driver_domain/drvdom"
strip --strip-debug -o "$du/usr/bin/sd-netfront" "$BUILD_DIR/frontends/sd-netfront"
cp "$HERE/domu-init.sh" "$du/init" && chmod 755 "$du/init"
# The sound runs' player: Debian's aplay (the host's, same release as the
# domU's libc from the dom0 rootfs), libasound, its configuration, and the
# marked WAV it plays (48 kHz S16_LE stereo, $LAB_SND_S s).
if [[ $SND_RUNS == 1 ]]; then
  cp /usr/bin/aplay "$du/usr/bin/aplay"
  for lib in $(ldd /usr/bin/aplay | awk '/=> \//{print $3}'); do
    name=$(basename "$lib")
    if [[ -e $ROOTFS/usr/lib/x86_64-linux-gnu/$name ]]; then cp -L "$ROOTFS/usr/lib/x86_64-linux-gnu/$name" "$du/usr/lib/x86_64-linux-gnu/"
    else cp -L "$lib" "$du/usr/lib/x86_64-linux-gnu/"; fi
  done
  mkdir -p "$du/usr/share/alsa" "$du/usr/share/sdlab"
  cp -r /usr/share/alsa/alsa.conf /usr/share/alsa/cards /usr/share/alsa/pcm "$du/usr/share/alsa/"
  "$BUILD_DIR/bench/sd-pcm-marks" gen "$LAB_SND_S" "$du/usr/share/sdlab/marked.wav"
fi
# The stock guest (sdrole=stock, the kernel and kernel-vbd runs): the same
# Debian kernel, busybox and xenstore client, without any of the project's
# binaries; its network is the kernel's own xen-netfront, its disk the
# kernel's own xen-blkfront. Checked here and printed.
(cd "$du" && find . -mindepth 1 ! -path ./usr/bin/drvdom ! -path ./usr/bin/sd-netfront | cpio -o -H newc --quiet |
  gzip -1) > "$ov/lab/domu-stock-initrd.gz"
if zcat "$ov/lab/domu-stock-initrd.gz" | cpio -t --quiet |
   grep -E 'drvdom|sd-netfront|sd-blkfront|sd-sndfront|sd-pcm-marks|shadowd|shadowctl|libsd'; then
  echo "run.sh: the stock guest's initramfs holds project binaries (above)" >&2; exit 1
fi
echo "stock guest initramfs: no project binaries ($(zcat "$ov/lab/domu-stock-initrd.gz" | cpio -t --quiet | grep -c '^usr/bin/') files in usr/bin: the xenstore client$([[ $SND_RUNS == 1 ]] && echo ' and aplay'))"
(cd "$du" && find . -mindepth 1 ! -path './usr/share/sdlab*' | cpio -o -H newc --quiet | gzip -1) > "$ov/lab/domu-initrd.gz"
rm -rf "$du"
OVERLAY_IMG=$RUN_DIR/overlay.cpio.zst
(cd "$ov" && find . -mindepth 1 | cpio -o -H newc --quiet | zstd -T0 -3 -q) > "$OVERLAY_IMG"
rm -rf "$ov"
# The kernel unpacks concatenated (separately compressed) cpio archives in order,
# later files replacing earlier ones: base (cached) + overlay (this run).
DOM0_IMG=$LAB_CACHE/images/dom0-initrd.zst
cat "$BASE_IMG" "$OVERLAY_IMG" > "$DOM0_IMG"
ov_size=$(du -h "$OVERLAY_IMG" | cut -f1); rm -f "$OVERLAY_IMG"
phase_end "overlay $ov_size, dom0 initrd $(du -h "$DOM0_IMG" | cut -f1)"

if [[ $MODE == prepare ]]; then
  log "prepared: $XEN_BIN $KDIR/vmlinuz $DOM0_IMG (cache $(du -sh "$LAB_CACHE" | cut -f1))"
  exit 0
fi

# ---------------------------------------------------------------- 8. boot Xen + dom0 and run the test
RUNNER=(python3 "$HERE/qemu_run.py" --xen "$XEN_BIN" --kernel "$KDIR/vmlinuz" --initrd "$DOM0_IMG")
[[ -n ${LAB_CPU:-} ]] && RUNNER+=(--cpu "$LAB_CPU")
[[ -n ${LAB_SMP:-} ]] && RUNNER+=(--smp "$LAB_SMP")
if [[ $MODE == shell ]]; then
  trap - EXIT
  exec "${RUNNER[@]}" --shell
fi
phase_begin boot+test "qemu-system-x86_64 -accel tcg (Xen + PV dom0), dom0-test.sh"
# TCG speed depends on how much of the host's CPU is free: keep the load with the result.
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
rc=0
"${RUNNER[@]}" --timeout "$LAB_TIMEOUT" --log "$RUN_DIR/boot.log" --result "$RUN_DIR/result.json" || rc=$?
if [[ $rc == 0 ]]; then phase_end "dom0 test finished"; else phase_end "incomplete (runner exit $rc), log $RUN_DIR/boot.log"; FAILED=boot+test; fi
NOTES+=("host load average (1/5/15 min) at QEMU start: $load_start, at its end: $(cut -d' ' -f1-3 /proc/loadavg), on $(nproc) cores; QEMU itself adds up to 2 (TCG timings scale with free host CPU)")
NOTES+=("cache $LAB_CACHE is $(du -sh "$LAB_CACHE" | cut -f1); full serial log $RUN_DIR/boot.log")
exit $rc
