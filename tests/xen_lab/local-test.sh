#!/bin/sh
# Optional part of the lab: shadowd --platform local inside the lab's dom0
# (run by dom0-test.sh, chrooted in a tmpfs copy of dom0's userspace because
# the sandbox's pivot_root does not work on an initramfs root).
# Starts the lab's local host (one sandboxed net driver domain + one guest
# namespace), kills the driver domain once and reads back shadowd's recovery.
export PATH=/opt/shadowd/bin:/usr/sbin:/usr/bin:/sbin:/bin
LH=/lab/hosts/local
SOCK=/run/shadowd-local/shadowd.sock
kv() { printf 'SDLAB-KV %s %s\n' "$1" "$(printf '%s' "$2" | base64 -w0)"; }
ctl() { timeout 20 shadowctl --socket $SOCK "$@"; }

echo "\$ shadowd --platform local --check --config $LH/host.yaml"
shadowd --platform local --check --config $LH/host.yaml 2>&1; echo "(exit $?)"

shadowd --platform local --config $LH/host.yaml > /tmp/shadowd-local.log 2>&1 &
pid=$!
# The control socket is not in xenstore: poll it, at 0.5 s, for up to 60 s.
up=0; i=0
while [ $i -lt 120 ]; do
    if ctl list >/dev/null 2>&1; then up=1; break; fi
    kill -0 $pid 2>/dev/null || break
    sleep 0.5; i=$((i+1))
done
if [ $up = 0 ]; then
    echo "shadowd --platform local did not come up; its log:"; tail -20 /tmp/shadowd-local.log
    kill $pid 2>/dev/null; wait $pid 2>/dev/null
    kv local_result "did not start: $(tail -3 /tmp/shadowd-local.log | tr '\n' ' ')"
    exit 1
fi
echo "\$ shadowctl list"; ctl list
echo "\$ shadowctl inject-fault netdd kill"; ctl inject-fault netdd kill
restarts=0; i=0
while [ $i -lt 60 ]; do
    restarts=$(ctl status netdd 2>/dev/null | awk '/^restarts:/{print $2}')
    [ "${restarts:-0}" -ge 1 ] 2>/dev/null && break
    sleep 0.5; i=$((i+1))
done
echo "\$ shadowctl status netdd"; ctl status netdd | tee /tmp/status.txt
echo "\$ shadowctl devices"; ctl devices
d2r=$(awk -F': *' '/^death to ready:/{print $2}' /tmp/status.txt)
echo "\$ shadowctl shutdown"; ctl shutdown
rc=0; wait $pid || rc=$?
echo "shadowd --platform local exit $rc; log tail:"; tail -5 /tmp/shadowd-local.log
if [ "${restarts:-0}" -ge 1 ] 2>/dev/null; then
    kv local_result "ok: sandboxed netdd killed once and restarted by shadowd, death to ready ${d2r:-?}, shadowd exit $rc"
else
    kv local_result "started, but no restart seen after kill (restarts=${restarts:-?}), shadowd exit $rc"
fi
