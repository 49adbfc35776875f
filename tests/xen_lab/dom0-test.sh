#!/bin/sh
# The lab test, run by /init inside the lab's dom0 (Xen 4.17, Debian PV dom0).
#   1. xl info; shadowd --platform xen --check
#   2. manual baseline: PV driver domain netdd (driver_domain = 1) + guest
#      guest1; N x (xl destroy + xl create netdd until its init wrote data/ready)
#   3. crash netdd with `xl sysrq netdd c`; dom0 must see @releaseDomain and
#      state 'c'; then recover it by hand (destroy + create)
#   3b. shadowd --platform xen in the background, driven with shadowctl: a
#      kill, a drvdom crash and a kernel crash of netdd, each recovered by
#      shadowd; first cold restarts, then with a warm standby domain, then
#      cold again with two guests (guest1, guest2) whose vifs share netdd,
#      then an unmodified guest (guest3: no project binaries, its kernel's
#      xen-netfront) served by shadowd's dom0 ring proxy; and (LAB_RUNS
#      kernel-vbd) the same guest image with a disk (guest4: its kernel's
#      xen-blkfront, ext4) served by the dom0 vbd ring proxy relaying to the
#      storage driver domain blkdd, whose own disk is an image file in dom0;
#      and (LAB_RUNS kernel-vsnd) the same guest image with a sound card
#      (guest5: its kernel's snd-xen-front, Debian's aplay) served by the dom0
#      sound ring proxy relaying to the sound driver domain snddd, which plays
#      into the DAC shadowd lends it (no stock baseline: Xen ships no sound
#      backend)
#   3d. (kernel-vbd) the stock baseline of that disk: guest4's disk on blkdd's
#      kernel blkback, then xl destroy + xl create blkdd
#   4. optional: shadowd --platform local inside dom0 (/lab/local-test.sh)
# Xenstore waits use watches, not polling (only shadowd's control socket is
# polled, at 1 s). Results go to the serial console as
#   SDLAB-MARK <name> [info]     progress (the host runner timestamps them)
#   SDLAB-KV <key> <base64>      results (base64 so any text survives)
# and the host runner (qemu_run.py) turns them into the JSON report.
LAB_RESTARTS=3; LAB_LOCAL=1; LAB_SHADOWD_ARGS=""; LAB_RUNS="cold standby multi"; LAB_VBD_MB=64; LAB_SND_S=50
[ -r /lab/lab.env ] && . /lab/lab.env
SD=/opt/shadowd/bin
XH=/lab/hosts/xen
WAIT_S=300                     # generous: a domU boot takes 11-17 s under TCG
export PATH=$SD:$PATH

now_ms() { date +%s%3N; }
mark() { echo "SDLAB-MARK $*"; }
kv() { printf 'SDLAB-KV %s %s\n' "$1" "$(printf '%s' "$2" | base64 -w0)"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", (b-a)/1000}'; }
# watch_until PATH TIMEOUT_S CHECK [ACTION...]
# Registers a xenstore watch on PATH. Once the watch is live (its first event,
# which xenstored sends on registration, arrived) it runs ACTION, then evaluates
# the shell command CHECK after every watch event. Returns 0 as soon as CHECK
# succeeds, 1 after TIMEOUT_S. Race-free: the watch exists before CHECK first runs.
watch_until() {
    w_path=$1; w_to=$2; w_check=$3; shift 3
    w_fifo=/tmp/sdlab-watch.$$
    rm -f "$w_fifo"; mkfifo "$w_fifo"
    timeout "$w_to" xenstore-watch "$w_path" > "$w_fifo" 2>/dev/null &
    w_pid=$!
    exec 3< "$w_fifo"
    w_rc=1
    if read -r w_ev <&3; then
        [ $# -gt 0 ] && "$@"
        while :; do
            if eval "$w_check" >/dev/null 2>&1; then w_rc=0; break; fi
            read -r w_ev <&3 || break          # EOF: timeout ended the watch
        done
    fi
    exec 3<&-
    kill "$w_pid" 2>/dev/null; wait "$w_pid" 2>/dev/null
    rm -f "$w_fifo"
    return $w_rc
}

dom_state() { xl list "$1" 2>/dev/null | awk 'NR==2{print $5}'; }
is_crashed() { dom_state "$1" | grep -q c; }
show_console() { echo "--- console of $1 (last 20 lines):"; tail -20 "/var/log/xen/console/guest-$1.log" 2>/dev/null; }

# create_and_wait NAME CFG -> 0 once the new domain's init wrote data/ready; sets DOMID.
# One retry: xl 4.17's create has been seen to abort intermittently under load
# ("corrupted double-linked list" in its domain-monitoring child); such failures
# are counted in CREATE_FAILS/CREATE_ERRS and reported. RETRY_T0 is set to the
# start of the retried attempt so that a caller can time that attempt alone.
CREATE_FAILS=0; CREATE_ERRS=""
create_and_wait() {
    for attempt in 1 2; do
        if timeout 180 xl create "$2" > "/tmp/xl-create-$1.log" 2>&1; then
            DOMID=$(xl domid "$1")
            if watch_until "/local/domain/$DOMID/data/ready" $WAIT_S "xenstore-read /local/domain/$DOMID/data/ready"; then
                return 0
            fi
            echo "TIMEOUT: $1 (domid $DOMID) did not write data/ready within ${WAIT_S}s"; xl list; show_console "$1"
            return 1
        fi
        CREATE_FAILS=$((CREATE_FAILS+1))
        err=$(grep -vE '^Parsing config' "/tmp/xl-create-$1.log" | head -2 | tr '\n' ' ')
        CREATE_ERRS="$CREATE_ERRS[$1: $err] "
        echo "xl create $1 failed (attempt $attempt):"; cat "/tmp/xl-create-$1.log"
        xl domid "$1" >/dev/null 2>&1 && xl destroy "$1"
        RETRY_T0=$(now_ms)
    done
    return 1
}

# The kernel-vbd run's disk: blkdd's own disk (xvdb in blkdd.cfg), an image
# file here served by dom0's blkback through a loop device (Xen's block
# script's job, done by /lab/block-loop), made an ext4 here for the guest: the
# guest's disk is that disk, through blkdd. 128 MiB (guest4.cfg: size=128M);
# the guest writes VBD_MB MiB to it (LAB_VBD_MB, at most 96: it must fit).
VBD_IMG=/srv/blkdd-disk.img
VBD_MB=$LAB_VBD_MB
case $VBD_MB in ''|*[!0-9]*) VBD_MB=64 ;; esac
[ "$VBD_MB" -ge 1 ] || VBD_MB=1
[ "$VBD_MB" -le 96 ] || VBD_MB=96
# vbd_prepare: dom0's side of blkdd's disk and a fresh ext4 on it (4 KiB
# blocks; inode tables and journal written now, so the guest's kernel does no
# lazy init of its own during the test).
vbd_prepare() {
    modprobe loop; modprobe xen-blkback
    mkdir -p /srv && rm -f $VBD_IMG && truncate -s 128M $VBD_IMG &&
        mkfs.ext4 -F -b 4096 -T default -L sdlab -E lazy_itable_init=0,lazy_journal_init=0 $VBD_IMG > /tmp/mkfs.txt 2>&1
}

T_BEGIN=$(now_ms)
# ------------------------------------------------------------------ 1. Xen and shadowd --platform xen --check
mark xl_info_start
if xl info > /tmp/xl-info.txt 2>&1; then
    mark xl_ready
    grep -E '^(host|release|xen_version|xen_caps|virt_caps|nr_cpus|total_memory|free_memory|xen_commandline)' /tmp/xl-info.txt
    kv xen_version "$(awk -F': ' '/^xen_version/{print $2}' /tmp/xl-info.txt)"
    kv dom0_kernel "$(uname -r)"
else
    cat /tmp/xl-info.txt; kv fatal "xl info failed: $(head -3 /tmp/xl-info.txt)"
    exit 1
fi
xl list

# The lab's outside world: bridge xenbr0 in dom0 (10.200.0.1). netdd's NIC (a
# vif served by dom0, netdd.cfg) joins it through libxl's vif-bridge hotplug;
# guest1 reaches it only through its shadowed vif (sd-netfront -> netdd).
modprobe bridge 2>/dev/null
ip link add xenbr0 type bridge && ip addr add 10.200.0.1/24 dev xenbr0 && ip link set xenbr0 up
# A blob for the guest's download (the TCP stream across driver-domain crashes).
mkdir -p /srv/www && dd if=/dev/urandom of=/srv/www/blob bs=1M count=${LAB_APP_MB:-48} 2>/dev/null
BLOB_MD5=$(md5sum /srv/www/blob | cut -d' ' -f1); BLOB_BYTES=$(stat -c %s /srv/www/blob)
busybox httpd -p 10.200.0.1:8080 -h /srv/www
kv blob "$BLOB_BYTES bytes md5 $BLOB_MD5"

mark shadowd_xen_check
echo "\$ shadowd --platform xen --check --config $XH/host.yaml"
OUT=$(timeout 60 shadowd --platform xen --check --config $XH/host.yaml 2>&1); RC=$?
echo "$OUT"; echo "(exit $RC)"
kv xen_check_out "$OUT"; kv xen_check_rc $RC

# ------------------------------------------------------------------ 2. manual baseline
mark baseline_start
grep -v '^vif' $XH/guest1.cfg > /tmp/guest1-novif.cfg
t0=$(now_ms)
if create_and_wait guest1 /tmp/guest1-novif.cfg; then
    t1=$(now_ms); kv guest_create_s "$(secs $t0 $t1)"
    mark guest_ready domid=$DOMID "$(secs $t0 $t1)s"
else
    kv fatal "guest1 did not come up"
fi
t0=$(now_ms)
if create_and_wait netdd $XH/netdd.cfg; then
    t1=$(now_ms); kv dd_cold_create_s "$(secs $t0 $t1)"
    mark dd_ready domid=$DOMID "$(secs $t0 $t1)s"
else
    kv fatal "netdd did not come up"; LAB_RESTARTS=0
fi
xl list

samples=""
i=1
while [ $i -le "$LAB_RESTARTS" ]; do
    a=$(now_ms)
    xl destroy netdd
    b=$(now_ms)
    RETRY_T0=""
    if create_and_wait netdd $XH/netdd.cfg; then
        c=$(now_ms)
        # after a failed xl create, time the successful attempt alone (destroy time + its create)
        [ -n "$RETRY_T0" ] && b0=$b && b=$RETRY_T0 && a=$((a + b - b0))
        s=$(secs $a $c)
        samples="$samples $s"
        echo "SDLAB-RESULT restart#$i destroy=$(secs $a $b)s create_until_ready=$(secs $b $c)s total=${s}s domid=$DOMID${RETRY_T0:+ (after a failed xl create)}"
        mark dd_restart_$i "${s}s"
    else
        echo "SDLAB-RESULT restart#$i FAILED"; break
    fi
    i=$((i+1))
done
kv baseline_samples_s "$(echo $samples)"
mark baseline_done

# ------------------------------------------------------------------ 3. crash the driver domain
crashes=0
if xl domid netdd >/dev/null 2>&1; then
    mark crash_start
    # The action runs once the @releaseDomain watch is live; the check is
    # evaluated on every @releaseDomain event.
    send_crash() { c0=$(now_ms); xl sysrq netdd c; c_sent=$(now_ms); }
    if watch_until @releaseDomain 120 "is_crashed netdd" send_crash; then
        c1=$(now_ms)
        crashes=1
        echo "SDLAB-RESULT crash: @releaseDomain fired and xl list shows '$(dom_state netdd)' $((c1-c0)) ms after xl sysrq netdd c was started ($((c_sent-c0)) ms in xl sysrq itself)"
        kv crash_detect_ms $((c1-c0))
        kv crash_sysrq_ms $((c_sent-c0))
        kv crash_state "$(dom_state netdd)"
        mark crash_observed
        xl list
        echo "--- xl's monitor log for netdd:"; tail -4 /var/log/xen/xl-netdd.log 2>/dev/null
        show_console netdd | grep -iE 'sysrq|panic|crash' | head -5
        # manual recovery of the crashed driver domain (what shadowd has to beat)
        a=$(now_ms); xl destroy netdd
        if create_and_wait netdd $XH/netdd.cfg; then
            kv crash_recover_s "$(secs $a $(now_ms))"
            mark crash_recovered domid=$DOMID
        fi
    else
        echo "SDLAB-RESULT crash: not observed within 120 s (state '$(dom_state netdd)')"
        show_console netdd
    fi
fi
kv crashes $crashes
kv xl_create_failures "$CREATE_FAILS${CREATE_ERRS:+ $CREATE_ERRS}"
kv guest_state_end "$(dom_state guest1)"
xl list
for d in netdd guest1; do xl domid $d >/dev/null 2>&1 && xl destroy $d; done

# ------------------------------------------------------------------ 3c. stock baseline with a guest's own vif
# The unmodified guest (guest3) with its vif served by netdd's kernel netback,
# as stock Xen does it (xl create with vif = ['backend=netdd,...']); then what
# an operator does when netdd dies: xl destroy + xl create netdd. Recorded:
# the guest's vif before, and 20 s after the new netdd is up (its frontend
# still names the dead backend: nothing re-attaches it).
if echo " $LAB_RUNS " | grep -qE " kernel(-standby)? "; then
    mark stock_vif_start
    # one try for the guest: xl may wait for a hotplug no one runs in netdd
    if create_and_wait netdd $XH/netdd.cfg && timeout 120 xl create $XH/guest3.cfg > /tmp/xl-create-guest3.log 2>&1; then
        G=$(xl domid guest3); F=/local/domain/$G/device/vif/0
        watch_until $F/state 60 '[ "$(xenstore-read $F/state)" = 4 ]'
        before="state=$(xenstore-read $F/state 2>/dev/null) backend=$(xenstore-read $F/backend 2>/dev/null)"
        a=$(now_ms); xl destroy netdd
        if create_and_wait netdd $XH/netdd.cfg; then
            kv stock_vif_recreate_s "$(secs $a $(now_ms))"
            sleep 20
            B=$(xenstore-read $F/backend 2>/dev/null)
            after="state=$(xenstore-read $F/state 2>/dev/null) backend=$B backend_exists=$(xenstore-exists $B && echo yes || echo no) new_netdd=$(xl domid netdd)"
            echo "SDLAB-RESULT stock vif: before: $before; after xl destroy + xl create netdd: $after"
            kv stock_vif "before: $before; after: $after"
        fi
    else
        kv stock_vif "could not start netdd and guest3 with a stock vif: $(tail -2 /tmp/xl-create-guest3.log 2>/dev/null | tr '\n' ' ')"
    fi
    for d in netdd guest3; do xl domid $d >/dev/null 2>&1 && xl destroy $d; done
    mark stock_vif_done
fi

# ------------------------------------------------------------------ 3d. stock baseline with a guest's own disk
# The same for the disk of the kernel-vbd run: guest4 with its disk served by
# blkdd's kernel blkback (xl create with disk = ['backend=blkdd,...']), then
# xl destroy + xl create blkdd. No xl devd runs in blkdd to do the disk's
# hotplug step, so dom0 does it: it writes the backend's physical-device
# (blkdd's xvdb, 202:16), as Xen's block script would. Recorded: the guest's
# disk before, and 20 s after the new blkdd is up.
if echo " $LAB_RUNS " | grep -qE " kernel-vbd(-standby)? "; then
    mark stock_vbd_start
    sed 's/size=[^,]*,//' $XH/guest4.cfg > /tmp/guest4-stock.cfg   # xl has no size=
    # one try for the guest, as for the vif
    if vbd_prepare && create_and_wait blkdd $XH/blkdd.cfg &&
       timeout 120 xl create /tmp/guest4-stock.cfg > /tmp/xl-create-guest4.log 2>&1; then
        G=$(xl domid guest4); F=/local/domain/$G/device/vbd/51712
        B=$(xenstore-read $F/backend 2>/dev/null)
        [ -n "$B" ] && xenstore-write $B/physical-device ca:10
        watch_until $F/state 60 '[ "$(xenstore-read $F/state)" = 4 ]'
        before="state=$(xenstore-read $F/state 2>/dev/null) backend=$B backend_state=$(xenstore-read $B/state 2>/dev/null)"
        a=$(now_ms); xl destroy blkdd
        if create_and_wait blkdd $XH/blkdd.cfg; then
            kv stock_vbd_recreate_s "$(secs $a $(now_ms))"
            sleep 20
            after="state=$(xenstore-read $F/state 2>/dev/null || echo gone) backend=$(xenstore-read $F/backend 2>/dev/null) backend_exists=$(xenstore-exists $B && echo yes || echo no) new_blkdd=$(xl domid blkdd)"
            echo "SDLAB-RESULT stock vbd: before: $before; after xl destroy + xl create blkdd: $after"
            kv stock_vbd "before: $before; after: $after"
        fi
    else
        kv stock_vbd "could not start blkdd and guest4 with a stock disk: $(tail -2 /tmp/xl-create-guest4.log 2>/dev/null | tr '\n' ' ')"
    fi
    for d in blkdd guest4; do xl domid $d >/dev/null 2>&1 && xl destroy $d; done
    mark stock_vbd_done
fi
kv xen_tests_s "$(secs $T_BEGIN $(now_ms))"
mark xen_tests_done

# ------------------------------------------------------------------ 3b. shadowd --platform xen: cold, then warm standby
mark shadowd_xen_run
# shadowd runs in the background with the driver domain netdd (drvdom --xen in
# its init offers the control vchan). When its control socket answers, the
# lab drives it with shadowctl: wait for netdd running, then one fault of each
# kind (kill, segv, sysrq: fault_once), each followed by shadowd's own
# recovery, and reads `shadowctl status netdd` (fault to ready, death to
# ready) after each. Runs (LAB_RUNS): cold (policies/standby: false), warm
# standby (a second netdd booted and Ready beside the running one, promoted
# on failure), multi, kernel, kernel-standby (shadow_run) and kernel-vbd
# (kernel_run: the same with a disk on the storage driver domain blkdd, or a
# sound card on the sound driver domain snddd).
SOCK=/run/shadowd-xen/shadowd.sock
DDNAME=netdd   # the driver domain the faults hit (blkdd in the kernel-vbd run)
DEVID=""       # the guest device whose outage is recorded (<guest>/vif/0, <guest>/vbd/0)
xctl() { timeout 30 shadowctl --socket $SOCK "$@"; }
dd_field() { xctl list 2>/dev/null | awk -v dd="$DDNAME" -v f="$1" '$1==dd{print $f}'; }
dev_normal() { xctl devices 2>/dev/null | awk -v dev="$DEVID" '$1==dev && $4=="normal"{f=1} END{exit !f}'; }
status_field() { xctl status $DDNAME 2>/dev/null | awk -F': *' -v k="$1" '$1==k{print $2}'; }
# backends_up N: at least N of shadowd's devices have their backend up
backends_up() { [ "$(xctl --json devices 2>/dev/null | grep -o '"backend_up":true' | wc -l)" -ge "$1" ]; }
# wait_for S CMD: poll CMD (a shadowctl query, there is no xenstore node for it) at 1 s.
# Robust against a dom0 process dying under it (seen under TCG: a `date` or
# `grep` killed by SIGSEGV/SIGABRT right after a domU crash; counted in the report).
wait_for() {
    w_dl=$(( $(now_ms) + $1 * 1000 )); shift
    while :; do
        w_now=$(now_ms)
        case $w_now in ''|*[!0-9]*) sleep 1; continue ;; esac
        [ "$w_now" -lt "$w_dl" ] || return 1
        eval "$1" && return 0
        kill -0 $SDPID 2>/dev/null || return 1
        sleep 1
    done
}
# sd_start TAG HOSTDIR: shadowd --platform xen in the background (SDPID, started
# at s0); waits for its control socket, then for $DDNAME running (and in the
# standby runs for its standby ready). 1 when the control socket never answered.
is_standby_run() { case $1 in standby|kstandby|kvbdstandby|ksndstandby) return 0 ;; esac; return 1; }
sd_start() {
    echo "\$ shadowd --platform xen --config $2/host.yaml $LAB_SHADOWD_ARGS &"
    s0=$(now_ms)
    shadowd --platform xen --config $2/host.yaml $LAB_SHADOWD_ARGS > /tmp/shadowd-$1.log 2>&1 &
    SDPID=$!
    if ! wait_for 180 "xctl list >/dev/null 2>&1"; then
        kv ${1}_error "control socket never answered"
        return 1
    fi
    kv ${1}_up_s "$(secs $s0 $(now_ms))"
    mark shadowd_${1}_up
    if wait_for 240 '[ "$(dd_field 3)" = running ]'; then
        kv ${1}_first_ready_s "$(secs $s0 $(now_ms))"
        mark shadowd_${1}_dd_running
    fi
    if is_standby_run "$1"; then
        wait_for 240 'status_field standby | grep -q "^ready"' && mark standby_ready
    fi
    echo "\$ shadowctl list"; xctl list; xl list
}
# fault_once FAULT: one fault of $DDNAME in run $tag, recovered by shadowd:
#   kill  shadowctl inject-fault <dd> kill   (shadowd destroys the domain)
#   segv  shadowctl inject-fault <dd> segv   (drvdom crashes inside the domain)
#   sysrq xl sysrq <domain> c                (the driver domain's kernel crashes)
# then reads `shadowctl status <dd>` and the outage of the guest's device $DEVID:
#   SDLAB-KV <tag>_<fault> "fault to ready|death to ready|restarts|cause|outage"
fault_once() {
    f=$1
    r0=$(status_field restarts)
    dom=$(dd_field 2)
    echo "\$ fault $f ($DDNAME domid $dom, restarts $r0)"
    case $f in
        sysrq) xname=$(xl list | awk -v d="$dom" '$2==d{print $1}'); xl sysrq "$xname" c; RC=$? ;;
        *) xctl inject-fault $DDNAME $f; RC=$? ;;
    esac
    if [ $RC != 0 ]; then kv ${tag}_$f "inject failed (exit $RC)"; return 1; fi
    if wait_for 240 '[ "$(status_field restarts)" -gt "${r0:-0}" ] 2>/dev/null && [ "$(dd_field 3)" = running ]'; then
        if is_standby_run "$tag"; then
            # the replacement standby boots next; wait for it so each fault finds one
            wait_for 240 'status_field standby | grep -q "^ready"'
        fi
        xctl status $DDNAME | tee /tmp/status.txt
        # the guest's device: fault -> serving again (its device shadow's last outage),
        # once it serves again (under TCG mapping the pool can outlast the domain's Ready)
        wait_for 120 dev_normal
        outage=$(xctl devices 2>/dev/null | awk -v dev="$DEVID" '$1==dev && $4=="normal"{print $6}')
        kv ${tag}_$f "$(awk -F': *' -v o="$outage" '$1=="fault to ready"{f=$2} $1=="death to ready"{d=$2} $1=="restarts"{r=$2} $1=="last cause"{c=$2} END{printf "%s|%s|%s|%s|%s", f, d, r, c, o}' /tmp/status.txt)"
        mark ${tag}_${f}_recovered
    else
        kv ${tag}_$f "not recovered within 240 s (state $(dd_field 3))"
        xctl status $DDNAME
        # where shadowd is stuck: its threads' kernel stacks and wait channels, its children
        echo "--- shadowd ($SDPID) threads:"
        for t in /proc/$SDPID/task/*; do echo "$t $(cat $t/wchan 2>/dev/null) $(head -3 $t/stack 2>/dev/null | tr '\n' ' ')"; done
        ps -eo pid,ppid,stat,etime,cmd | grep -v ' \[' | tail -25
        tail -20 /tmp/shadowd-$tag.log
    fi
}
# sd_stop TAG: let shadowd exit (60 s; the caller asked it to shut down), then
# TERM, then KILL; collect its exit status, output and event log; destroy what is left.
sd_stop() {
    i=0; while kill -0 $SDPID 2>/dev/null && [ $i -lt 60 ]; do sleep 1; i=$((i+1)); done
    kill -TERM $SDPID 2>/dev/null
    i=0; while kill -0 $SDPID 2>/dev/null && [ $i -lt 15 ]; do sleep 1; i=$((i+1)); done
    kill -KILL $SDPID 2>/dev/null
    wait $SDPID; RC=$?
    OUT=$(head -c 3000 /tmp/shadowd-$1.log)
    echo "--- shadowd --platform xen ($1) said:"; echo "$OUT"; echo "(exit $RC after $(secs $s0 $(now_ms)) s)"
    echo "--- its event log ($(wc -l < /run/shadowd-xen/events.jsonl 2>/dev/null || echo 0) events):"
    head -60 /run/shadowd-xen/events.jsonl 2>/dev/null | cut -c1-400
    kv ${1}_out "$OUT"; kv ${1}_rc $RC; kv ${1}_s "$(secs $s0 $(now_ms))"
    xl list
    kv ${1}_domains_left "$(xl list | awk 'NR>2{printf "%s(%s,%s) ", $1, $2, $5}')"
    for d in $(xl list | awk 'NR>2{print $1}'); do xl destroy $d; done
    rm -f /run/shadowd-xen/events.jsonl
}
# shadow_run TAG HOSTDIR GUESTS FAULTS...: start shadowd, inject the faults, record per fault
#   SDLAB-KV <tag>_<fault> "fault_to_ready_ms death_to_ready_ms restarts cause"
# GUESTS: the guests (../xen/<name>.cfg), each with one vif on netdd. Per
# guest: its download (<tag>_app for guest1, <tag>_app_<guest> for others) and
# its device's XenbusStates (<tag>_xenbus, <tag>_xenbus_<guest>).
shadow_run() {
    tag=$1; host=$2; GUESTS=$3; shift 3
    DDNAME=netdd
    # The guests (started by the operator, before shadowd): each one's init
    # starts sd-netfront --xen and waits for data/app-cmd.
    GDOMS=""
    for g in $GUESTS; do
        xl domid $g >/dev/null 2>&1 && xl destroy $g
        grep -v '^vif' $XH/$g.cfg > /tmp/$g-novif.cfg
        if create_and_wait $g /tmp/$g-novif.cfg; then GDOMS="$GDOMS $g:$DOMID"; mark ${tag}_${g}_ready domid=$DOMID; fi
    done
    n_guests=$(echo $GUESTS | wc -w); first=${GUESTS%% *}
    DEVID=$first/vif/0
    if sd_start $tag $host; then
        # The guests' vifs are attached when shadowd's devices report a recovery
        # (the first attach counts as one) and every backend is up.
        APP=0; XBPIDS=""
        if [ $(echo $GDOMS | wc -w) = $n_guests ] && wait_for 120 "backends_up $n_guests"; then
            mark ${tag}_vif_attached
            xctl devices
            for gd in $GDOMS; do
                g=${gd%%:*}; d=${gd#*:}; sfx=$([ $g = $first ] || echo _$g)
                # The guest's view of its device in xenstore (XenbusState), every
                # change from now on: it should stay 4 (Connected) across the faults.
                # XBTYPE: sd-vif (the project's frontend) or vif (the guest's kernel netfront).
                XB=/local/domain/$d/device/${XBTYPE:-sd-vif}/0
                pb=$(xenstore-read /local/domain/$d/data/project-binaries 2>/dev/null) &&
                    kv ${tag}_project_binaries$sfx "$pb"
                ( xenstore-watch $XB | while read -r p; do
                      echo "$(xenstore-read $XB/state 2>/dev/null || echo gone)/$(xenstore-read $XB/backend-id 2>/dev/null || echo -)"
                  done ) > /tmp/xenbus-$tag$sfx.txt 2>&1 &
                XBPIDS="$XBPIDS $!"
                gip=$(grep -o 'sdip=[0-9.]*' $XH/$g.cfg | cut -d= -f2)
                busybox ping -c 3 -W 5 $gip > /tmp/ping.txt 2>&1; kv ${tag}_ping$sfx "$(tail -2 /tmp/ping.txt | tr '\n' ' ')"
                cat /tmp/ping.txt
            done
            ip -s link; bridge link; ip neigh
            a0=$(now_ms)
            for gd in $GDOMS; do xenstore-write /local/domain/${gd#*:}/data/app-cmd "http://10.200.0.1:8080/blob"; done
            APP=1
            sleep 3
        else
            kv ${tag}_vif "not attached: $(xctl devices 2>&1 | tail -1)"
            xctl --json devices
            # both ends of each guest's device as xenstore holds them
            for gd in $GDOMS; do xenstore-ls -p /local/domain/${gd#*:}/device 2>&1 | head -30; done
            xenstore-ls -p /local/domain/0/backend/vif-proxy 2>&1 | head -20
            proxy_stacks
            tail -15 /tmp/shadowd-$tag.log
        fi
        for f in "$@"; do
            [ $APP = 1 ] && sleep 2   # data flows between faults
            fault_once $f
        done
        if [ -n "$XBPIDS" ]; then
            kill $XBPIDS 2>/dev/null; busybox pkill -f "xenstore-watch /local/domain/" 2>/dev/null
            # state/backend-id after each change, repeats folded
            for gd in $GDOMS; do
                g=${gd%%:*}; sfx=$([ $g = $first ] || echo _$g)
                kv ${tag}_xenbus$sfx "$(uniq /tmp/xenbus-$tag$sfx.txt | tr '\n' ' ')"
            done
        fi
        if [ $APP = 1 ]; then
            for gd in $GDOMS; do
                g=${gd%%:*}; d=${gd#*:}; sfx=$([ $g = $first ] || echo _$g)
                if watch_until /local/domain/$d/data/app-result 600 "xenstore-read /local/domain/$d/data/app-result"; then
                    res=$(xenstore-read /local/domain/$d/data/app-result)
                    echo "SDLAB-RESULT $tag app $g: $res (expected md5 $BLOB_MD5, $BLOB_BYTES bytes) in $(secs $a0 $(now_ms)) s"
                    kv ${tag}_app$sfx "$res"
                    kv ${tag}_app${sfx}_s "$(secs $a0 $(now_ms))"
                    mark ${tag}_app${sfx}_done
                else
                    # tells a hung download from a guest whose shell never got to start it
                    started=$(xenstore-read /local/domain/$d/data/app-started 2>/dev/null || echo never)
                    kv ${tag}_app$sfx "no result within 600 s (guest started the app at uptime: $started)"
                    show_console $g
                fi
            done
            xctl devices
        fi
        for g in $GUESTS; do show_console $g; done; show_console netdd
        xl list
        echo "\$ shadowctl shutdown"; xctl shutdown
    fi
    sd_stop $tag
}
# proxy_stacks: a dom0 ring proxy stuck: where (kernel wait channel and stack)
proxy_stacks() {
    for p in $(busybox pgrep -f -- --xen-guest); do
        echo "proxy $p: $(cat /proc/$p/wchan 2>/dev/null) $(head -4 /proc/$p/stack 2>/dev/null | tr '\n' ' ')"
    done
}

# vbd_progress_ge N: the guest's progress is N or more, or its app ended. Says
# the progress every 8 MiB on fd 5 (the console: watch_until silences its
# checks), so the serial line does not go quiet for minutes while the guest
# is busy (qemu_run.py asks Xen for a vCPU dump after 240 s of silence).
vbd_progress_ge() {
    v=$(xenstore-read $VP/vbd-progress 2>/dev/null) || v=0
    case $v in ''|*[!0-9]*) v=0 ;; esac
    if [ $((v / 8)) != $((VBD_SHOWN / 8)) ]; then
        echo "guest progress $v/$((2 * VBD_MB)) ($(secs $a0 $(now_ms)) s after the app started)" >&5
        VBD_SHOWN=$v
    fi
    [ "$v" -ge "$1" ] || xenstore-exists $VP/app-result
}
# kernel_run CLASS TAG HOSTDIR GUEST FAULTS...: a run of an unmodified GUEST
# with one device of CLASS (vbd, snd) that shadowd adds to it, served by the
# class's dom0 ring proxy relaying to the class's driver domain ($DDNAME).
# The guest, started as an operator would before shadowd (without the
# device), runs the class's app on it while FAULTS hit the driver domain.
# What differs per class is in its hooks, CLASS_<hook>: setup (before the
# guest: 1 = cannot run), app (sets APP_CMD, the command the guest runs), before_fault N F
# (waits for the moment of the Nth fault), app_done (waits for the app's
# result: 1 = none), after_app and after_stop (its checks). Besides
# shadow_run's keys: <tag>_check (shadowd --check of the host),
# <tag>_<fault>_at (where the app was at the fault), <tag>_app (the guest's
# result) and the class's own.
kernel_run() {
    cls=$1; tag=$2; host=$3; g=$4; shift 4
    if ! ${cls}_setup; then return 1; fi
    OUT=$(timeout 60 shadowd --platform xen --check --config $host/host.yaml 2>&1); RC=$?
    echo "\$ shadowd --platform xen --check --config $host/host.yaml"; echo "$OUT"; echo "(exit $RC)"
    kv ${tag}_check "exit $RC: $OUT"
    xl domid $g >/dev/null 2>&1 && xl destroy $g
    grep -vE '^(vif|disk|vsnd)' $XH/$g.cfg > /tmp/$g-nodev.cfg
    GD=""
    if create_and_wait $g /tmp/$g-nodev.cfg; then GD=$DOMID; mark ${tag}_${g}_ready domid=$DOMID; fi
    VP=/local/domain/$GD/data
    if sd_start $tag $host; then
        APP=0; XBPID=""
        if [ -n "$GD" ] && wait_for 180 "backends_up 1"; then
            mark ${tag}_${XBTYPE}_attached
            xctl devices
            # The guest's view of its device in xenstore (XenbusState), every change
            # from now to the end of its app: it should stay 4 (Connected).
            XB=/local/domain/$GD/device/$XBTYPE/$XBID
            xenstore-ls -p $XB 2>&1 | head -24
            pb=$(xenstore-read $VP/project-binaries 2>/dev/null) && kv ${tag}_project_binaries "$pb"
            ( xenstore-watch $XB | while read -r p; do
                  echo "$(xenstore-read $XB/state 2>/dev/null || echo gone)/$(xenstore-read $XB/backend-id 2>/dev/null || echo -)"
              done ) > /tmp/xenbus-$tag.txt 2>&1 &
            XBPID=$!
            a0=$(now_ms)
            ${cls}_app
            xenstore-write $VP/app-cmd "$APP_CMD"
            APP=1
        else
            kv ${tag}_${XBTYPE} "not attached: $(xctl devices 2>&1 | tail -1)"
            xctl --json devices
            [ -n "$GD" ] && xenstore-ls -p /local/domain/$GD/device 2>&1 | head -30
            xenstore-ls -p /local/domain/0/backend/$XBTYPE-proxy 2>&1 | head -20
            proxy_stacks
            tail -15 /tmp/shadowd-$tag.log
        fi
        n=0
        for f in "$@"; do
            n=$((n+1))
            [ $APP = 1 ] && ${cls}_before_fault $n $f
            fault_once $f
        done
        if [ $APP = 1 ]; then
            if ${cls}_app_done; then
                res=$(xenstore-read $VP/app-result)
                echo "SDLAB-RESULT $tag app $g: $res in $(secs $a0 $(now_ms)) s"
                kv ${tag}_app "$res"
                kv ${tag}_app_s "$(secs $a0 $(now_ms))"
                mark ${tag}_app_done
            else
                started=$(xenstore-read $VP/app-started 2>/dev/null || echo never)
                kv ${tag}_app "no result within $APP_WAIT s (guest started the app at uptime: $started$(${cls}_progress))"
                show_console $g
            fi
            ${cls}_after_app
        fi
        if [ -n "$XBPID" ]; then
            kill $XBPID 2>/dev/null; busybox pkill -f "xenstore-watch /local/domain/" 2>/dev/null
            kv ${tag}_xenbus "$(uniq /tmp/xenbus-$tag.txt | tr '\n' ' ')"
        fi
        xctl devices
        show_console $g; show_console $DDNAME
        xl list
        echo "\$ shadowctl shutdown"; xctl shutdown
    fi
    sd_stop $tag
    ${cls}_after_stop
}

# The kernel-vbd runs (kernel_run vbd). The unmodified guest (guest4) has one
# disk, xvda, whose backend is blkdd: its kernel's own xen-blkfront, served
# by shadowd's dom0 vbd ring proxy (sd-blkfront --xen-guest), which relays to
# blkdd's drvdom, which does the I/O on blkdd's own disk (xvdb: $VBD_IMG in
# dom0, an ext4 made here). The guest's disk_app (domu-init.sh) writes
# $VBD_MB MiB to a file on it in fsynced 1-MiB chunks, syncs, drops its page
# cache and reads the file back; the faults hit blkdd while it does, each
# once the guest's progress (data/vbd-progress: 1..VBD_MB written, then
# VBD_MB+1..2*VBD_MB read back) has passed 3/16 and 10/16 of the writes and
# 5/16 of the reads. Its keys: <tag>_mib, <tag>_<fault>_at (the progress at
# the fault), <tag>_app (exit, both sha256s, I/O errors in the guest's kernel
# log, its longest steps), <tag>_fsck (e2fsck -n -f of the image once every
# domain is gone) and <tag>_image_sha (the file read out of the image by
# debugfs in dom0).
vbd_setup() {
    DDNAME=blkdd; DEVID=$g/vbd/0; XBTYPE=vbd; XBID=51712; APP_WAIT=1200
    kv ${tag}_mib "$VBD_MB"
    if ! vbd_prepare; then
        kv ${tag}_error "blkdd's disk could not be made: $(tail -2 /tmp/mkfs.txt | tr '\n' ' ')"
        return 1
    fi
}
vbd_app() { VBD_SHOWN=0; exec 5>&1; APP_CMD="disk xvda $VBD_MB"; }
vbd_before_fault() {
    case $1 in
        1) p=$((VBD_MB * 3 / 16)) ;;
        2) p=$((VBD_MB * 10 / 16)) ;;
        *) p=$((VBD_MB + VBD_MB * 5 / 16)) ;;
    esac
    [ $p -ge 1 ] || p=1
    if watch_until $VP 300 "vbd_progress_ge $p"; then
        at=$(xenstore-read $VP/vbd-progress 2>/dev/null || echo 0)
        if xenstore-exists $VP/app-result; then ph="after the guest's app ended"
        elif [ "$at" -le $VBD_MB ]; then ph=writing
        else ph="reading back"; fi
    else
        at=$(xenstore-read $VP/vbd-progress 2>/dev/null || echo 0)
        ph="stalled: not at $p after 300 s"
    fi
    echo "SDLAB-RESULT $tag: fault $2 at the guest's progress $at/$((2 * VBD_MB)) ($ph)"
    kv ${tag}_${2}_at "$at/$((2 * VBD_MB)) $ph"
}
vbd_app_done() { watch_until $VP $APP_WAIT "vbd_progress_ge $((2 * VBD_MB + 1))"; }
vbd_progress() { echo ", progress $(xenstore-read $VP/vbd-progress 2>/dev/null || echo none)/$((2 * VBD_MB))"; }
vbd_after_app() { exec 5>&-; }
# The guest's ext4 as dom0 sees it once every domain is gone (the guest
# unmounted it; a loop device still being torn down reads the same file).
vbd_after_stop() {
    echo "--- loop devices:"; losetup -a
    e2fsck -n -f $VBD_IMG > /tmp/fsck-$tag.txt 2>&1; RC=$?
    cat /tmp/fsck-$tag.txt
    kv ${tag}_fsck "rc=$RC $(grep -vE '^(Pass [1-5]|e2fsck [0-9])' /tmp/fsck-$tag.txt | tail -6 | tr '\n' ' ' | cut -c1-600)"
    kv ${tag}_image_sha "$(debugfs -R 'cat /sdlab.bin' $VBD_IMG 2>/dev/null | sha256sum | cut -d' ' -f1)"
    rm -f $VBD_IMG
}

# The kernel-vsnd runs (kernel_run snd). The unmodified guest (guest5) has
# one sound card whose backend is snddd: its kernel's own snd-xen-front,
# served by shadowd's dom0 sound ring proxy (sd-sndfront --xen-guest), which
# relays to snddd's drvdom, which plays into the DAC shadowd lends it (the
# DAC records what it plays to /run/shadowd-xen/<guest>-vsnd-0.wav). The
# guest's sound_app (domu-init.sh) plays a marked LAB_SND_S-second WAV with
# Debian's aplay (which it stops for 1.5 s, 2 s in: an underrun in every
# run, ALSA stopping and starting the stream again without a new OPEN);
# the first fault hits snddd SND_FIRST s into the playback,
# each next one 3 s after the previous was recovered (with a standby: and a
# new standby is ready). Its keys: <tag>_seconds, <tag>_<fault>_at (seconds
# into the playback), <tag>_app (aplay's exit, sound errors in the guest's
# kernel log) and <tag>_dac (the DAC's recording checked against the marked
# signal: complete, gaps).
SND_FIRST=6
snd_setup() {
    DDNAME=snddd; DEVID=$g/vsnd/0; XBTYPE=vsnd; XBID=0; APP_WAIT=600
    WAV=/run/shadowd-xen/$g-vsnd-0.wav
    kv ${tag}_seconds "$LAB_SND_S"
}
snd_app() { APP_CMD="sound /usr/share/sdlab/marked.wav"; }
snd_before_fault() {
    if [ $1 = 1 ]; then sleep $SND_FIRST; else sleep 3; fi
    at=$(secs $a0 $(now_ms))
    if xenstore-exists $VP/app-result; then ph="after the guest's app ended"; else ph=playing; fi
    echo "SDLAB-RESULT $tag: fault $2 $at s after the playback was asked for ($ph)"
    kv ${tag}_${2}_at "$at s $ph"
}
snd_app_done() { watch_until $VP $APP_WAIT "xenstore-exists $VP/app-result"; }
snd_progress() { :; }
# What the DAC still has queued plays out (after a cold restart the stream
# plays as much later as the outage lasted): until its recording stops
# growing for 3 s, at most 150 s. Then it is checked against the signal.
snd_after_app() {
    w_last=-1; w_same=0; w_i=0
    while [ $w_same -lt 3 ] && [ $w_i -lt 150 ]; do
        w_now=$(stat -c %s $WAV 2>/dev/null || echo 0)
        if [ "$w_now" = "$w_last" ]; then w_same=$((w_same+1)); else w_same=0; fi
        w_last=$w_now; w_i=$((w_i+1)); sleep 1
    done
    kv ${tag}_dac_drain_s "$w_i"
    ls -la $WAV
    gaps=$(sd-pcm-marks gaps $WAV $((LAB_SND_S * 48000)) 2>&1)
    echo "SDLAB-RESULT $tag DAC recording: $gaps"
    kv ${tag}_dac "$gaps"
    xctl --json devices | head -c 3000; echo
}
snd_after_stop() { :; }
for r in ${LAB_RUNS:-cold standby multi}; do
    case $r in
        cold) shadow_run xen $XH guest1 kill segv sysrq ;;
        standby) shadow_run standby /lab/hosts/xen-standby guest1 kill segv sysrq ;;
        # two guests' vifs on one netdd, recovered together
        multi) shadow_run multi /lab/hosts/xen-multi "guest1 guest2" kill segv sysrq ;;
        # an unmodified guest (no project binaries; its kernel's xen-netfront)
        # served by the dom0 ring proxy (policy guest_frontend: kernel)
        kernel) XBTYPE=vif shadow_run kernel /lab/hosts/xen-kernel guest3 kill segv sysrq ;;
        kernel-standby) XBTYPE=vif shadow_run kstandby /lab/hosts/xen-kernel-standby guest3 kill segv sysrq ;;
        # the same unmodified guest image with a disk (its kernel's xen-blkfront, ext4)
        # served by the dom0 vbd ring proxy, relaying to the storage driver domain blkdd
        kernel-vbd) kernel_run vbd kvbd /lab/hosts/xen-kernel-vbd guest4 kill segv sysrq ;;
        kernel-vbd-standby) kernel_run vbd kvbdstandby /lab/hosts/xen-kernel-vbd-standby guest4 kill segv sysrq ;;
        # the same unmodified guest image with a sound card (its kernel's snd-xen-front,
        # Debian's aplay) served by the dom0 sound ring proxy, relaying to the sound driver domain snddd
        kernel-vsnd) kernel_run snd ksnd /lab/hosts/xen-kernel-vsnd guest5 kill sysrq ;;
        kernel-vsnd-standby) kernel_run snd ksndstandby /lab/hosts/xen-kernel-vsnd-standby guest5 kill sysrq ;;
        *) echo "dom0-test: unknown run '$r' in LAB_RUNS (skipped)" ;;
    esac
done
# Leave a clean slate for the baseline.
for d in netdd blkdd snddd guest1 guest2 guest3 guest4 guest5; do xl domid $d >/dev/null 2>&1 && xl destroy $d; done


# ------------------------------------------------------------------ 4. local platform inside dom0 (optional)
if [ "$LAB_LOCAL" = 1 ]; then
    mark local_start
    # The sandbox pivot_roots, which the initramfs root (rootfs) refuses: run it
    # chrooted in a tmpfs copy of the userspace.
    R=/sdlocal
    mkdir -p $R && mount -t tmpfs -o size=640m,mode=755 sdlocal $R
    for d in bin sbin lib lib64; do [ -L /$d ] && cp -a /$d $R/; done
    cp -a /usr /etc /opt /lab $R/ 2>/dev/null
    mkdir -p $R/proc $R/sys $R/dev $R/run $R/tmp $R/var/tmp $R/root && chmod 1777 $R/tmp
    ln -sfn /run $R/var/run
    mount -t proc proc $R/proc && mount -t sysfs sys $R/sys && mount --rbind /dev $R/dev \
        && mount -t tmpfs -o mode=755 tmpfs $R/run
    modprobe veth 2>/dev/null; modprobe tun 2>/dev/null
    timeout 240 chroot $R sh /lab/local-test.sh 2>&1
    echo "(local-test exit $?)"
    umount -l $R 2>/dev/null
    mark local_done
fi
mark all_done
