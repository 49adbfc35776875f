#!/bin/sh
# /init of the lab's tiny PV domU initramfs (static busybox + xenstore client).
# The same image runs the driver domain (sdrole=dd on the kernel command line)
# and the guest (sdrole=guest). When its setup is done it writes data/ready
# (relative path: /local/domain/<domid>/data/ready) so dom0 can wait on a
# xenstore watch instead of polling; the driver domain then starts drvdom.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /sbin /usr/sbin
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox --install -s /bin
role=guest
for w in $(cat /proc/cmdline); do
    case $w in sdrole=*) role=${w#sdrole=} ;; esac
done
for m in xen-evtchn xen-gntdev xen-gntalloc; do modprobe $m; done
# A network driver domain would run netback: load it so its cost is in the baseline.
[ "$role" = dd ] && modprobe xen-netback
domid=$(xenstore-read domid)
up=$(cut -d' ' -f1 /proc/uptime)
xenstore-write data/role "$role"
xenstore-write data/ready "$up"
echo "SDLAB-DOMU role=$role domid=$domid ready_at_uptime=${up}s"
# The driver-domain runtime: offers its control vchan to dom0 (shadowd), says
# Ready, answers heartbeats and serves the backends shadowd attaches. When
# it exits (injected fault), shadowd replaces the whole domain.
if [ "$role" = dd ]; then
    drvdom --xen > /dev/console 2>&1 &
fi
while :; do sleep 3600; done
