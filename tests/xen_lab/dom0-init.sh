#!/bin/sh
# /init of the lab's dom0 initramfs (Debian bookworm minbase + Xen toolstack +
# the project's binaries in /opt/shadowd). Starts xenstored and xenconsoled with
# Debian's /etc/init.d/xen, then runs /lab/dom0-test.sh (sdlab=test on the
# kernel command line) and powers the machine off, or gives a shell on hvc0.
export PATH=/opt/shadowd/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm /run /tmp /var/log/xen/console /var/lib/xen /var/run
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs tmpfs /dev/shm
chmod 1777 /tmp
hostname dom0
echo "SDLAB-MARK dom0_init"
# xen-netback + bridge: the driver domains' NICs are vifs on dom0's bridge xenbr0.
for m in xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xen-netback bridge; do modprobe $m; done
# gntalloc lets the whole system share 1024 pages by default; a disk's pool
# alone is 705 (the ring page and 11 per request id, 64 ids).
echo 16384 > /sys/module/xen_gntalloc/parameters/limit
/etc/init.d/xen start
echo "SDLAB-MARK xen_tools_started"
if grep -q 'sdlab=test' /proc/cmdline; then
    sh /lab/dom0-test.sh 2>&1
    echo "SDLAB-MARK test_exit rc=$?"
    sync
    busybox poweroff -f
fi
echo "SDLAB: interactive dom0 shell (kill qemu to quit)"
exec setsid sh -c 'exec sh </dev/hvc0 >/dev/hvc0 2>&1'
