#!/bin/sh
# /init of the lab's tiny PV domU initramfs (static busybox, xenstore client,
# the project's static drvdom and sd-netfront). The same image runs the
# driver domain (sdrole=dd) and the guest (sdrole=guest). When its setup is
# done it writes data/ready (relative path: /local/domain/<domid>/data/ready)
# so dom0 can wait on a xenstore watch instead of polling.
#   dd:    its NIC (eth0, a vif on dom0's bridge xenbr0) up, then drvdom --xen:
#          offers its control vchan to dom0 (shadowd), says Ready, serves the
#          backends shadowd attaches
#   guest: sd-netfront --xen makes the TAP eth0 (MAC sdmac=, address sdip=)
#          and offers its vchan to shadowd
#   stock: an unmodified guest (its image has none of the project's binaries):
#          eth0 is the kernel's own xen-netfront, whose backend shadowd lays
#          out in dom0 (the ring proxy)
#   guest and stock: then, when dom0 writes
#          data/app-cmd, an unmodified busybox wget downloads $url over TCP and
#          the result (exit status, md5, bytes) goes to data/app-result
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /sbin /usr/sbin
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox --install -s /bin
role=guest; mac=""; ip=""
for w in $(cat /proc/cmdline); do
    case $w in
        sdrole=*) role=${w#sdrole=} ;;
        sdmac=*) mac=${w#sdmac=} ;;
        sdip=*) ip=${w#sdip=} ;;
    esac
done
for m in xen-evtchn xen-gntdev xen-gntalloc; do modprobe $m; done
# wait_if NAME: up to 20 s for an interface to appear
wait_if() { i=0; while [ ! -e /sys/class/net/$1 ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; [ -e /sys/class/net/$1 ]; }
if [ "$role" = dd ]; then
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
    # NIC counters on the console every 10 s (the lab's only view into the domain).
    ( while sleep 10; do echo "SDLAB-DD $(ip -o link show eth0 | cut -d' ' -f2,9) $(grep eth0 /proc/net/dev)"; done ) > /dev/console 2>&1 &
fi
if [ "$role" = stock ]; then
    ip link set lo up
    xenstore-write data/project-binaries "$(ls /usr/bin /bin | grep -cE 'drvdom|sd-netfront|shadow')"
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
if [ "$role" = guest ] && [ -n "$mac" ]; then
    modprobe tun
    ip link set lo up
    sd-netfront --xen --handle 0 --ifname eth0 --mac "$mac" > /dev/console 2>&1 &
    if wait_if eth0; then
        ip addr add "$ip" dev eth0 && ip link set eth0 up
        echo "SDLAB-DOMU guest eth0 $ip up (TAP fed by sd-netfront)"
    fi
fi
if [ "$role" = guest ] || [ "$role" = stock ]; then
    # The application: started by dom0 through xenstore (data/app-cmd = URL).
    while :; do
        url=$(xenstore-read data/app-cmd 2>/dev/null) && [ -n "$url" ] && break
        sleep 1
    done
    echo "SDLAB-DOMU app: wget $url"
    t0=$(cut -d' ' -f1 /proc/uptime)
    xenstore-write data/app-started "$t0"
    # bytes counted on a second branch of the stream (a FIFO; ash has no >(...))
    mkfifo /tmp/count
    wc -c < /tmp/count > /tmp/bytes.txt &
    wc_pid=$!
    ( wget -q -O - "$url"; echo $? > /tmp/wget.rc ) | tee /tmp/count | md5sum > /tmp/md5.txt
    wait $wc_pid
    t1=$(cut -d' ' -f1 /proc/uptime)
    bytes=$(tr -d ' ' < /tmp/bytes.txt)
    kerr=$(dmesg | grep -ciE '(netfront|xennet|vif vif).*(error|fail|bug)')
    res="exit=$(cat /tmp/wget.rc) md5=$(cut -d' ' -f1 /tmp/md5.txt) bytes=$bytes start=$t0 end=$t1 kernel_net_errors=$kerr"
    echo "SDLAB-DOMU app done: $res"
    echo "SDLAB-DOMU $(grep eth0 /proc/net/dev)"
    ip neigh
    xenstore-write data/app-result "$res"
fi
while :; do sleep 3600; done
