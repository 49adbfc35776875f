#!/bin/sh
# /init of the lab's tiny PV domU initramfs (static busybox, xenstore client,
# the project's static drvdom and sd-netfront). The same image runs the
# driver domain (sdrole=dd) and the guest (sdrole=guest). When its setup is
# done it writes data/ready (relative path: /local/domain/<domid>/data/ready)
# so dom0 can wait on a xenstore watch instead of polling.
#   dd:    its NIC (eth0, a vif on dom0's bridge xenbr0) up, then drvdom --xen:
#          offers its control vchan to dom0 (shadowd), says Ready, serves the
#          backends shadowd attaches; with sddev=blk (blkdd, the storage driver
#          domain) its hardware is a disk instead: xvdb, served by dom0's
#          blkback, seen through its kernel's xen-blkfront (drvdom opens it);
#          with sddev=snd (snddd, the sound driver domain) it needs nothing:
#          its sound hardware is the DAC shadowd lends it over grants
#   guest: sd-netfront --xen makes the TAP eth0 (MAC sdmac=, address sdip=)
#          and offers its vchan to shadowd
#   stock: an unmodified guest (its image has none of the project's binaries):
#          eth0 (with sdip=) is the kernel's own xen-netfront, whose backend
#          shadowd lays out in dom0 (the ring proxy); its disk xvda (the
#          kernel-vbd run) is the kernel's own xen-blkfront, served the same
#          way by shadowd's vbd ring proxy; its sound card (the kernel-vsnd
#          runs) is the kernel's own snd-xen-front, served by shadowd's sound
#          ring proxy
#   guest and stock: then, when dom0 writes
#          data/app-cmd, an unmodified busybox wget downloads $url over TCP and
#          the result (exit status, md5, bytes) goes to data/app-result; or,
#          when data/app-cmd is `disk DEV MIB` (the kernel-vbd run), busybox
#          writes MIB MiB to a file on DEV's ext4 and reads it back (disk_app);
#          or, when it is `sound WAV` (the kernel-vsnd runs), Debian's aplay
#          plays WAV on the guest's card (sound_app)
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /sbin /usr/sbin
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox --install -s /bin
role=guest; mac=""; ip=""; sddev=net
for w in $(cat /proc/cmdline); do
    case $w in
        sdrole=*) role=${w#sdrole=} ;;
        sddev=*) sddev=${w#sddev=} ;;
        sdmac=*) mac=${w#sdmac=} ;;
        sdip=*) ip=${w#sdip=} ;;
    esac
done
for m in xen-evtchn xen-gntdev xen-gntalloc; do modprobe $m; done
echo 16384 > /sys/module/xen_gntalloc/parameters/limit  # a vif's pool and a disk's exceed the default 1024
# wait_if NAME: up to 20 s for an interface to appear
wait_if() { i=0; while [ ! -e /sys/class/net/$1 ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; [ -e /sys/class/net/$1 ]; }
if [ "$role" = dd ] && [ "$sddev" = blk ]; then
    # The storage driver domain: its disk (xvdb, blkdd.cfg) is dom0's blkback
    # seen through xen-blkfront; drvdom opens /dev/xvdb when shadowd attaches
    # a guest's disk to it. Its kernel's blkback is loaded as netdd's netback
    # is (its cost is in the baseline; the stock baseline uses it).
    modprobe xen-blkback
    modprobe xen-blkfront
    i=0; while [ ! -b /dev/xvdb ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
    echo "SDLAB-DOMU blkdd disk xvdb: $(cat /sys/block/xvdb/size 2>/dev/null || echo 'NONE after 60 s,') sectors"
elif [ "$role" = dd ] && [ "$sddev" = snd ]; then
    echo "SDLAB-DOMU snddd: no hardware of its own (the DAC comes from dom0 with each device)"
elif [ "$role" = dd ]; then
    # A network driver domain would run netback: load it so its cost is in the baseline.
    modprobe xen-netback
    modprobe xen-netfront
    wait_if eth0 && ip link set eth0 up
fi
domid=$(xenstore-read domid)
up=$(cut -d' ' -f1 /proc/uptime)
xenstore-write data/role "$role"
xenstore-write data/ready "$up"
echo "SDLAB-DOMU role=$role domid=$domid ready_at_uptime=${up}s"
if [ "$role" = dd ]; then
    drvdom --xen > /dev/console 2>&1 &
    # NIC (disk) counters on the console every 10 s (the lab's only view into the domain).
    if [ "$sddev" = blk ]; then
        ( while sleep 10; do echo "SDLAB-DD xvdb $(cat /sys/block/xvdb/stat 2>/dev/null)"; done ) > /dev/console 2>&1 &
    else
        ( while sleep 10; do echo "SDLAB-DD $(ip -o link show eth0 | cut -d' ' -f2,9) $(grep eth0 /proc/net/dev)"; done ) > /dev/console 2>&1 &
    fi
fi
if [ "$role" = stock ]; then
    ip link set lo up
    xenstore-write data/project-binaries "$(ls /usr/bin /bin | grep -cE 'drvdom|sd-netfront|sd-blkfront|sd-sndfront|shadow')"
    # What a stock Debian guest has for its disks: xen-blkfront and ext4
    # (crc32c first: ext4 asks the crypto API for it, and this image has no
    # /sbin/modprobe for the kernel to call).
    for m in xen-blkfront crc32c_generic ext4; do modprobe $m || echo "SDLAB-DOMU stock guest: modprobe $m failed"; done
    # Its sound card, where the image has the driver (the kernel-vsnd runs).
    if [ -e /usr/bin/aplay ]; then modprobe snd_xen_front || echo "SDLAB-DOMU stock guest: modprobe snd_xen_front failed"; fi
    if [ -n "$ip" ]; then
        modprobe xen-netfront
        # eth0 appears when shadowd lays the vif out; wait up to 5 min for it.
        i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i+1)); done
        if [ -e /sys/class/net/eth0 ]; then
            ip addr add "$ip" dev eth0 && ip link set eth0 up
            echo "SDLAB-DOMU stock guest eth0 $ip up (kernel xen-netfront, driver $(basename "$(readlink /sys/class/net/eth0/device/driver)"))"
        else
            echo "SDLAB-DOMU stock guest: no eth0 after 5 min"; dmesg | grep -iE 'xen|vif|net' | tail -15
        fi
    fi
fi
if [ "$role" = guest ] && [ -n "$mac" ]; then
    modprobe tun
    ip link set lo up
    sd-netfront --xen --handle 0 --ifname eth0 --mac "$mac" > /dev/console 2>&1 &
    if wait_if eth0; then
        ip addr add "$ip" dev eth0 && ip link set eth0 up
        echo "SDLAB-DOMU guest eth0 $ip up (TAP fed by sd-netfront)"
    fi
fi
uptime_s() { cut -d' ' -f1 /proc/uptime; }
# stamp LABEL [PROGRESS]: the time LABEL ended (in /tmp/stamps; gaps between
# stamps are what the guest waited for each step) and the progress for dom0,
# which times its faults by it (data/vbd-progress). No output: it runs inside
# the readback's pipe.
stamp() {
    echo "$1 $(uptime_s)" >> /tmp/stamps
    if [ -n "$2" ]; then xenstore-write data/vbd-progress "$2" > /dev/null 2>&1; fi
}
# disk_app DEV MIB: the unmodified guest's disk workload (the kernel-vbd run),
# busybox only: mount DEV's ext4 (made by dom0) on /mnt; write MIB 1-MiB
# chunks of /dev/urandom to /mnt/sdlab.bin, each at its offset and fsynced
# (dd conv=fsync), hashing them as they are generated; sync; drop the page
# cache; read the file back chunk by chunk and hash it; unmount. Progress
# (1..MIB written, MIB+1..2*MIB read back) goes to data/vbd-progress.
# Result: exit (0, or the step that failed: 1 no device, 2 no ext4, 3 mount,
# 4 a write, 5 sync, 6 a read, 7 umount), the two sha256s, the file's size,
# the I/O errors in the kernel log and the three longest steps in ms.
disk_app() {
    dev=$1; mib=$2; f=/mnt/sdlab.bin
    err=0; stage=done
    : > /tmp/stamps
    i=0; while [ ! -b /dev/$dev ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i+1)); done
    if [ ! -b /dev/$dev ]; then err=1; stage=no-device; fi
    if [ $err = 0 ] && ! grep -qw ext4 /proc/filesystems; then err=2; stage=no-ext4; fi
    mkdir -p /mnt
    if [ $err = 0 ] && ! mount -t ext4 /dev/$dev /mnt; then err=3; stage=mount; fi
    echo "SDLAB-DOMU disk app: /dev/$dev $(cat /sys/block/$dev/size 2>/dev/null) sectors," \
         "driver $(basename "$(readlink /sys/block/$dev/device/driver 2>/dev/null)"), $(grep ' /mnt ' /proc/mounts)"
    stamp go 0
    # the written stream's hash, on a second branch (a FIFO; ash has no >(...))
    mkfifo /tmp/wsha
    sha256sum < /tmp/wsha > /tmp/wsha.txt &
    hpid=$!
    exec 4> /tmp/wsha
    i=0
    while [ $err = 0 ] && [ $i -lt $mib ]; do
        dd if=/dev/urandom of=/tmp/chunk bs=1M count=1 iflag=fullblock 2>/dev/null
        cat /tmp/chunk >&4
        if ! dd if=/tmp/chunk of=$f bs=1M seek=$i count=1 conv=notrunc,fsync 2>/tmp/dd.err; then
            err=4; stage=write-$i; cat /tmp/dd.err
        fi
        i=$((i+1))
        stamp w$i $i
    done
    exec 4>&-
    wait $hpid
    if [ $err = 0 ]; then
        sync || { err=5; stage=sync; }
        echo 3 > /proc/sys/vm/drop_caches
        stamp sync
    fi
    : > /tmp/rerr
    if [ $err = 0 ]; then
        ( j=0
          while [ $j -lt $mib ]; do
              dd if=$f bs=1M skip=$j count=1 2>/dev/null || echo $j >> /tmp/rerr
              j=$((j+1))
              stamp r$j $((mib + j))
          done ) | sha256sum > /tmp/rsha.txt
        if [ -s /tmp/rerr ]; then err=6; stage=read-$(head -1 /tmp/rerr); fi
    fi
    bytes=$(stat -c %s $f 2>/dev/null || echo 0)
    if grep -q ' /mnt ' /proc/mounts && ! umount /mnt; then
        [ $err = 0 ] && { err=7; stage=umount; }
    fi
    stamp end
    ioerr=$(dmesg | grep -ciE 'I/O error|blk_update_request|EXT4-fs error|Buffer I/O|Aborting journal|remounting filesystem read-only')
    dmesg | grep -iE 'I/O error|blk_update_request|EXT4-fs error|Buffer I/O|Aborting journal|remounting filesystem read-only' | head -5
    dmesg | grep -iE 'blkfront|xvd|EXT4-fs' | tail -8
    longest=$(awk 'NR>1{printf "%s %d\n", $1, ($2-p)*1000} {p=$2}' /tmp/stamps | sort -k2 -nr | head -3 |
              awk '{printf "%s%s:%s", (NR>1?",":""), $1, $2}')
    res="exit=$err stage=$stage mib=$mib bytes=$bytes wsha=$(cut -d' ' -f1 /tmp/wsha.txt) rsha=$(cut -d' ' -f1 /tmp/rsha.txt 2>/dev/null)"
    res="$res io_errors=$ioerr longest_ms=$longest start=$t0 end=$(uptime_s)"
}
# sound_app WAV: the unmodified guest's player (the kernel-vsnd runs):
# Debian's aplay plays WAV on card 0 (hw:0,0, the kernel's snd-xen-front,
# once it appeared: shadowd adds the card). Result: aplay's exit status and
# first words, the WAV's size, the card, sound errors in the kernel log.
# The player is stopped for 1.5 s at 2 s, longer than its buffer: a real
# underrun in every run (ALSA stops the stream, aplay prepares and starts it
# again, as it does when a busy guest runs it late), and the recording must
# still hold every frame.
sound_app() {
    wav=$1
    i=0; while [ ! -e /dev/snd/pcmC0D0p ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i+1)); done
    card=$(head -1 /proc/asound/cards 2>/dev/null | tr -s ' ' | tr ' ' '_')
    echo "SDLAB-DOMU sound app: card $card, $(ls /dev/snd 2>/dev/null | tr '\n' ' ')"
    t0=$(uptime_s)
    aplay -q -D hw:0,0 "$wav" > /tmp/aplay.txt 2>&1 &
    player=$!
    sleep 2; kill -STOP $player; sleep 1.5; kill -CONT $player
    wait $player; rc=$?
    t1=$(uptime_s)
    said=$(head -c 200 /tmp/aplay.txt | tr -s ' \n\t' '___')
    serr=$(dmesg | grep -ciE '(snd|sound|xen.snd|pcm).*(error|fail|timeout|timed out)')
    dmesg | grep -iE 'snd|sound|pcm' | tail -8
    res="exit=$rc bytes=$(stat -c %s "$wav") start=$t0 end=$t1 sound_errors=$serr card=${card:-none} aplay_said=${said:-nothing}"
}
# wget_app URL: an unmodified busybox wget downloads URL over TCP; the result
# (exit status, md5, bytes, netfront errors in the kernel log) in $res.
wget_app() {
    url=$1
    # bytes counted on a second branch of the stream (a FIFO; ash has no >(...))
    mkfifo /tmp/count
    wc -c < /tmp/count > /tmp/bytes.txt &
    wc_pid=$!
    ( wget -q -O - "$url"; echo $? > /tmp/wget.rc ) | tee /tmp/count | md5sum > /tmp/md5.txt
    wait $wc_pid
    t1=$(uptime_s)
    bytes=$(tr -d ' ' < /tmp/bytes.txt)
    kerr=$(dmesg | grep -ciE '(netfront|xennet|vif vif).*(error|fail|bug)')
    res="exit=$(cat /tmp/wget.rc) md5=$(cut -d' ' -f1 /tmp/md5.txt) bytes=$bytes start=$t0 end=$t1 kernel_net_errors=$kerr"
    echo "SDLAB-DOMU $(grep eth0 /proc/net/dev)"
    ip neigh
}
if [ "$role" = guest ] || [ "$role" = stock ]; then
    # The application: started by dom0 through xenstore (data/app-cmd = URL, or `disk DEV MIB`).
    while :; do
        cmd=$(xenstore-read data/app-cmd 2>/dev/null) && [ -n "$cmd" ] && break
        sleep 1
    done
    t0=$(uptime_s)
    xenstore-write data/app-started "$t0"
    case $cmd in
        "disk "*) echo "SDLAB-DOMU app: $cmd"; set -- $cmd; disk_app "$2" "$3" ;;
        "sound "*) echo "SDLAB-DOMU app: $cmd"; sound_app "${cmd#sound }" ;;
        *) echo "SDLAB-DOMU app: wget $cmd"; wget_app "$cmd" ;;
    esac
    echo "SDLAB-DOMU app done: $res"
    xenstore-write data/app-result "$res"
fi
while :; do sleep 3600; done
