#!/bin/sh
# The cases of test_nested.sh. Runs as /run.sh inside the outer machine (busybox sh), starts
# vmkit's default guest once per case and prints one result line per case:
#   nested-case: NAME ok[: detail]     or     nested-case: NAME not ok: reason
# test_nested.sh turns those into TAP; the exit status is 1 if any case failed. On a failure,
# the guest's console output follows in "nested-out: NAME| " lines.
#
# Input goes through a FIFO and only once the guest shows its prompt: the guest's serial
# driver empties the UART FIFO when the port is opened, so earlier input would be lost.

CASE_TIMEOUT=${CASE_TIMEOUT:-180} # seconds one guest may run
STEP_TIMEOUT=${STEP_TIMEOUT:-90}  # seconds of guest silence that make a stall
STEP_MAX=${STEP_MAX:-$((CASE_TIMEOUT - 10))} # seconds to wait for one expected line in all
PROMPT='guest# '
# The cases to run, comma-separated (all when empty): $VMKIT_NESTED_CASES, or nested.cases=
# on the outer machine's command line (run.sh puts it there). clock and warnings read the
# boot case's log.
only=${VMKIT_NESTED_CASES:-$(tr ' ' '\n' </proc/cmdline | sed -n 's/^nested\.cases=//p')}
want() {
    [ -z "$only" ] && return 0
    case ",$only," in *",$1,"*) return 0 ;; esac
    return 1
}

uptime_s() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }'; }

failures=0

# A line every 30 s while the cases run, so run.sh's watchdog can call an outer machine with
# no line for VMKIT_NESTED_SILENCE (150 s) wedged: a case waits silently for longer than that
# at times (a firmware boot, 60 to 90 s here), but never without this line going on.
(while sleep 30; do echo "nested: alive"; done) &
heartbeat=$!
result() {
    echo "nested-case: $*"
    case "$*" in *" not ok"*) failures=$((failures + 1)) ;; esac
}

# start_vm NAME VMKIT-ARGS...: vmkit runs the default guest in the background with a FIFO as
# stdin (held open on fd 3, so vmkit never reads EOF) and its console in $dir/out.
start_vm() {
    name=$1
    shift
    dir=/tmp/case-$name
    rm -rf "$dir"
    mkdir -p "$dir"
    mkfifo "$dir/in"
    : >"$dir/out"
    : >"$dir/err"
    exec 3<>"$dir/in"
    started=$(uptime_s)
    # Off the network unless the case is about it: the default guest's NAT device and DHCP
    # client would only add to each case's boot (the net case covers them).
    # Nor for firmware: OVMF would try a network boot from it (PXE) before its shell.
    case "$*" in *virtio-net* | *"--bootloader efi"*) ;; *) set -- "$@" --device virtio-net,none ;; esac
    echo "nested: case $name: vmkit run $*"
    # busybox timeout execs vmkit in this process, so $! is vmkit itself.
    timeout -s KILL "$CASE_TIMEOUT" vmkit run "$@" <"$dir/in" >"$dir/out" 2>"$dir/err" &
    vm=$!
}

# shell_out: what the guest's shell printed, from its console: carriage returns dropped, and
# the kernel's log lines taken out, also where one landed in the middle of a line the shell was
# printing (the serial console writes a kernel line at once, between any two bytes of user
# output still queued; a clocksource warning split "usb-r=sdb" from its newline once). Kernel
# messages are read from "$dir/out" itself.
shell_out() {
    awk '{ gsub(/\r/, "")
           if (match($0, /\[ *[0-9]+\.[0-9]+\] /)) { carry = carry substr($0, 1, RSTART - 1); next }
           print carry $0; carry = "" }
         END { if (carry != "") print carry }' "$dir/out"
}

# has_text TEXT: the guest's console holds TEXT, as printed or with kernel lines taken out.
has_text() { grep -qF -- "$1" "$dir/out" || shell_out | grep -qF -- "$1"; }

# wait_for TEXT: waits until the guest's output holds TEXT (a fixed string); fails when vmkit
# ends first, when the guest prints nothing for STEP_TIMEOUT seconds (a stall: a guest that is
# only slow goes on printing), or after STEP_MAX seconds in all (a guest too slow to wait for).
wait_for() {
    n=0
    quiet=0
    size=0
    while ! grep -qF -- "$1" "$dir/out"; do
        if ! kill -0 "$vm" 2>/dev/null; then
            has_text "$1" && return 0
            why="vmkit ended before the guest printed '$1'"
            return 1
        fi
        now=$(wc -c <"$dir/out")
        if [ "$now" -ne "$size" ]; then
            size=$now
            quiet=0
        fi
        # TEXT split by a kernel line: looked for once the output has rested for 2 s (it can
        # only appear with new output, and the look reads the whole console: in the emulated
        # outer machine that is not free).
        [ "$quiet" -eq 8 ] && shell_out | grep -qF -- "$1" && return 0
        if [ "$quiet" -ge $((STEP_TIMEOUT * 4)) ]; then
            why="no '$1' from the guest: it printed nothing for ${STEP_TIMEOUT}s (a stall)"
            return 1
        fi
        if [ "$n" -ge $((STEP_MAX * 4)) ]; then
            has_text "$1" && return 0
            why="no '$1' from the guest within ${STEP_MAX}s (still printing: slow)"
            return 1
        fi
        sleep 0.25
        n=$((n + 1))
        quiet=$((quiet + 1))
    done
}

# type_line TEXT: one line into the guest's shell.
type_line() { printf '%s\n' "$1" >&3; }

# finish_vm: waits (within STEP_TIMEOUT) for vmkit to end and sets $vm_status; kills it if it
# does not end.
finish_vm() {
    n=0
    while kill -0 "$vm" 2>/dev/null && [ "$n" -lt $((STEP_TIMEOUT * 4)) ]; do
        sleep 0.25
        n=$((n + 1))
    done
    kill -KILL "$vm" 2>/dev/null
    wait "$vm"
    vm_status=$?
    exec 3>&-
    echo "nested: case $name: vmkit exited with status $vm_status after $(since "$started") s"
}

# abort_vm: the case failed early; stop the guest and collect vmkit.
abort_vm() {
    kill -KILL "$vm" 2>/dev/null
    wait "$vm" 2>/dev/null
    exec 3>&-
}

dump() {
    echo "nested-out: $1| ---- vmkit stderr"
    sed "s/^/nested-out: $1| /" "/tmp/case-$1/err"
    echo "nested-out: $1| ---- guest console"
    tr -d '\r' <"/tmp/case-$1/out" | sed "s/^/nested-out: $1| /"
}

# A case whose guest triple-faults after it booted is run again (run_case), at most
# CASE_RETRIES times and only where boots are retried (an emulated outer machine), said in the
# log like a boot's fault and counted with them by test_nested.sh.
CASE_RETRIES=${CASE_RETRIES:-1}
booted=0 # the case's guest showed its prompt
rerun=0  # the case asked to be run again
fail() {
    if [ "$booted" = 1 ] && [ "${FAULT_RETRIES:-3}" -gt 0 ] && [ "$case_runs" -le "$CASE_RETRIES" ] &&
        grep -q 'triple fault' "$dir/err" 2>/dev/null; then
        echo "nested: case $name: the guest triple-faulted after booting ($(head -n 1 "$dir/err")); running the case again"
        tr -d '\r' <"$dir/out" | tail -n 3 | sed "s/^/nested-out: $name.run-$case_runs| /"
        rerun=1
        return
    fi
    result "$name not ok: $*"
    dump "$name"
}

# run_case FUNCTION: runs a case, again when fail() asks for it.
run_case() {
    case_runs=0
    while :; do
        case_runs=$((case_runs + 1))
        booted=0
        rerun=0
        "$1"
        [ "$rerun" = 1 ] || return 0
    done
}

# boot_vm NAME VMKIT-ARGS...: starts the guest and waits for its prompt; fails the case if
# it never comes.
#
# Under nested SVM emulated by QEMU TCG, an inner guest triple-faults now and then while
# it boots, at random points, also before its first line, and under QEMU -accel kvm as
# under vmkit (tests/system/nested/boot_census.sh counts them); KVM on AMD resets the vCPU
# on shutdown, so vmkit can only report RIP 0xfff0. There, and only there, such a boot is
# tried again, at most FAULT_RETRIES times, each time said in the log with the last lines
# the guest printed (test_nested.sh counts them and bounds their total); on hardware KVM
# (FAULT_RETRIES=0) a triple fault fails the case, as any other failure does. A boot that
# stalls (no output for STEP_TIMEOUT: a lost interrupt in the outer emulator) is tried again
# the same way, counted apart.
FAULT_RETRIES=${FAULT_RETRIES:-3}
boot_vm() { boot_until "$PROMPT" "$@"; }
# boot_until MARKER NAME VMKIT-ARGS...: the same, up to MARKER (the firmware's shell prompt).
boot_until() {
    marker=$1
    shift
    try=0
    while :; do
        try=$((try + 1))
        start_vm "$@"
        if wait_for "$marker"; then
            booted=1
            return 0
        fi
        abort_vm
        [ "$try" -le "$FAULT_RETRIES" ] || break
        if grep -q 'triple fault' "$dir/err"; then
            echo "nested: case $name: the guest triple-faulted while booting ($(head -n 1 "$dir/err")); booting it again"
        elif case "$why" in *"(a stall)"*) true ;; *) false ;; esac; then
            # The outer emulator's other symptom: a lost interrupt leaves the booting guest
            # silent (seen under QEMU -accel kvm in the same outer machine too).
            echo "nested: case $name: the guest stalled while booting ($why); booting it again"
        else
            break
        fi
        # Where the guest was: its last lines, for the census of these faults.
        tr -d '\r' <"$dir/out" | tail -n 3 | sed "s/^/nested-out: $name.boot-$try| /"
        cp "$dir/out" "/tmp/case-$name.boot-$try"
    done
    fail "$why"
    return 1
}

# guest_do COMMAND MARKER WHAT: types COMMAND into the guest's shell and waits for MARKER;
# when it does not come, stops the guest and fails the case with "WHAT: <why>".
guest_do() {
    type_line "$1"
    wait_for "$2" && return 0
    abort_vm
    fail "$3: $why"
    return 1
}

# poweroff_vm [WHAT]: `poweroff` in the guest's shell; vmkit must then exit 0 (a failure
# names WHAT, default "poweroff"). Sets $out, the guest's output.
poweroff_vm() {
    type_line poweroff
    finish_vm
    exited_ok "${1:-poweroff}" || return 1
    out=$(shell_out)
}

# exited_ok WHAT: vmkit's status after WHAT was 0, or the case fails.
exited_ok() {
    [ "$vm_status" -eq 0 ] && return 0
    fail "vmkit exited with status $vm_status after $1"
    return 1
}

all_cases="boot clock warnings cpus memory balloon vsock share display vnc power-button pci blk blk-readonly usb rng blk-kill console root-disk net tap efi-shell efi-shell-kill efi-install"

# The banner's numbers: "vmkit guest: Linux <release>, <N> CPUs, <M> MiB".
banner() { shell_out | grep -m1 '^vmkit guest: Linux '; }
banner_cpus() { banner | sed -n 's/.*, \([0-9]*\) CPUs, .*/\1/p'; }
banner_mib() { banner | sed -n 's/.* CPUs, \([0-9]*\) MiB$/\1/p'; }

if ! command -v vmkit >/dev/null; then
    for c in $all_cases; do want "$c" && result "$c not ok: no vmkit on PATH"; done
    exit 1
fi
if [ ! -c /dev/kvm ]; then
    for c in $all_cases; do want "$c" && result "$c not ok: no /dev/kvm"; done
    exit 1
fi

# boot: the default guest reaches its shell, runs a typed command, and `poweroff` ends vmkit
# with status 0.
case_boot() {
    boot_vm boot || return
    echo "nested: case boot: prompt after $(since "$started") s"
    # shellcheck disable=SC2016 # the guest's shell expands it
    guest_do 'echo marker-$((6*7))' marker-42 "the typed command did not run" || return
    poweroff_vm || return
    result "boot ok: $(banner)"
}

# clock: from the boot case's log, the guest calibrated its TSC against the platform's timers.
case_clock() {
    name=clock
    out=/tmp/case-boot/out
    if ! tr -d '\r' <"$out" | grep -q '^vmkit guest: Linux '; then
        result "clock not ok: the boot case never reached the banner"
        return
    fi
    # What arch/x86/kernel/tsc.c prints when no platform timer gave it a reference.
    pat='Unable to calibrate against PIT|No reference \(HPET/PMTIMER\)|TSC calibration failed'
    bad=$(tr -d '\r' <"$out" | grep -E "$pat" | head -n 3)
    cs=$(tr -d '\r' <"$out" | sed -n 's/.*clocksource: Switched to clocksource \(.*\)$/\1/p' |
        tail -n 1)
    if [ -n "$bad" ]; then
        result "clock not ok: $(echo "$bad" | sed 's/^\[[ 0-9.]*\] //' | tr '\n' ';')"
        dump boot
        return
    fi
    result "clock ok: no calibration failure, clocksource ${cs:-unknown}"
}

# warnings: the boot case's kernel log has no WARNING, BUG or Oops (a CPUID or device model
# that a driver finds inconsistent shows up here). Stalls and soft lockups are left out: slow
# nested emulation on a busy host can cause them. So is the "XSAVE consistency problem"
# warning from fpu/xstate.c: QEMU TCG's SVM does not intercept the guest's XSETBV, so KVM
# never updates CPUID 0xD's size; QEMU -accel kvm in the same outer machine shows it too.
case_warnings() {
    name=warnings
    out=/tmp/case-boot/out
    if ! tr -d '\r' <"$out" | grep -q '^vmkit guest: Linux '; then
        result "warnings not ok: the boot case never reached the banner"
        return
    fi
    bad=$(tr -d '\r' <"$out" | grep -E 'WARNING: CPU: |kernel BUG at|BUG: (unable|kernel)|Oops: ' |
        grep -v 'at arch/x86/kernel/fpu/xstate.c:' | sed 's/^\[[ 0-9.]*\] //' | head -n 3 |
        tr '\n' ';')
    if [ -n "$bad" ]; then
        result "warnings not ok: $bad"
        return
    fi
    result "warnings ok"
}

# cpus: --cpus 2 gives a guest that counts 2 CPUs in the banner and in nproc.
case_cpus() {
    boot_vm cpus --cpus 2 || return
    # shellcheck disable=SC2016 # the guest's shell expands it
    type_line 'echo nproc=$(nproc)'
    if ! wait_for 'nproc='; then abort_vm; fail "nproc did not answer: $why"; return; fi
    sleep 0.5
    nproc=$(shell_out | sed -n 's/^nproc=\([0-9]*\)$/\1/p' | head -n 1)
    type_line poweroff
    finish_vm
    cpus=$(banner_cpus)
    if [ "$cpus" != 2 ] || [ "$nproc" != 2 ]; then
        fail "banner says '${cpus}' CPUs and nproc '${nproc}', expected 2 and 2"
        return
    fi
    exited_ok poweroff || return
    result "cpus ok: banner 2 CPUs, nproc 2"
}

# memory: --memory 256 gives a guest whose MemTotal is 160..256 MiB (the kernel keeps some).
case_memory() {
    boot_vm memory --memory 256 || return
    type_line poweroff
    finish_vm
    mib=$(banner_mib)
    if [ -z "$mib" ] || [ "$mib" -lt 160 ] || [ "$mib" -gt 256 ]; then
        fail "MemTotal is '${mib}' MiB, expected 160..256"
        return
    fi
    exited_ok poweroff || return
    result "memory ok: MemTotal $mib MiB"
}

# balloon: --memory 256 with a balloon whose target is 192 MiB: the guest's virtio_balloon
# gives 64 MiB back (without deflate-on-oom it counts them out of MemTotal, which falls from
# about 200 to about 140 MiB). With free page reporting, memory the guest fills and frees goes
# back to the host: vmkit's guest RAM file (a memfd) holds at least 32 MiB less once the guest
# deletes a 48 MiB file it wrote.
ram_kib() { # KiB the host holds for vmkit's guest RAM
    for f in /proc/"$vm"/fd/*; do
        case $(readlink "$f") in
        *vmkit-guest-ram*)
            echo $(($(stat -L -c %b "$f") / 2))
            return
            ;;
        esac
    done
    echo 0
}
case_balloon() {
    name=balloon
    boot_vm balloon --memory 256 --device virtio-balloon,free-page-reporting,target=192 || return
    # shellcheck disable=SC2016 # the guest's shell expands it
    guest_do 'i=0; while set -- $(grep MemTotal /proc/meminfo); [ $(($2 / 1024)) -ge 160 ] && [ $i -lt 90 ]; do sleep 1; i=$((i + 1)); done; echo mem=$(($2 / 1024)); echo balloon-$((5+5))-done' balloon-10-done "the guest did not report its memory" || return
    mem=$(shell_out | sed -n 's/^mem=//p' | head -n 1)
    if [ -z "$mem" ] || [ "$mem" -ge 160 ] || [ "$mem" -lt 100 ]; then
        abort_vm
        fail "MemTotal is '$mem' MiB with a 64 MiB balloon, expected 100..159"
        return
    fi
    # shellcheck disable=SC2016 # the guest's shell expands it
    guest_do 'dd if=/dev/zero of=/balloon-fill bs=1M count=48 2>/dev/null; sync; echo fill-$((6+6))-done' fill-12-done "the guest did not write its file" || return
    filled=$(ram_kib)
    guest_do 'rm /balloon-fill; echo rm-$((7+7))-done' rm-14-done "the guest did not delete its file" || return
    # The guest reports free memory 2 s after it gathers (Linux's PAGE_REPORTING_DELAY).
    n=0
    while freed=$(ram_kib) && [ $((filled - freed)) -lt 32768 ] && [ "$n" -lt 60 ]; do
        sleep 1
        n=$((n + 1))
    done
    poweroff_vm || return
    if [ $((filled - freed)) -lt 32768 ]; then
        fail "the host's guest RAM went from $filled to $freed KiB in ${n}s after the guest freed 48 MiB (expected 32 MiB less)"
        return
    fi
    result "balloon ok: MemTotal $mem MiB with 64 MiB ballooned; guest RAM on the host $filled -> $freed KiB after the guest freed 48 MiB (${n}s)"
}

# vsock: virtio-vsock on Firecracker's convention (udsPath=/tmp/vsock.sock), the guest's end
# socat from the outer machine appended to the default guest's initramfs: the guest connects
# to host port 5000 (the outer machine's socat listening on /tmp/vsock.sock_5000) and sends
# 256 KiB; a client of /tmp/vsock.sock says CONNECT 6000, reads OK and sends 256 KiB to the
# guest's listener. md5 both ways.
case_vsock() {
    name=vsock
    extra=/usr/share/vmkit/guest-extra/socat.cpio.gz
    if ! command -v socat >/dev/null || [ ! -f "$extra" ]; then
        result "vsock not ok: no socat in the outer machine (run.sh stages the host's)"
        return
    fi
    G=${VMKIT_GUEST_DIR:-/usr/share/vmkit/guest}
    cat "$G/initramfs.img" "$extra" >/tmp/initrd-socat
    rm -f /tmp/vsock.sock /tmp/vsock.sock_5000 /tmp/from_guest.bin
    dd if=/dev/urandom of=/tmp/to_guest.bin bs=1024 count=256 2>/dev/null
    socat -u UNIX-LISTEN:/tmp/vsock.sock_5000 CREATE:/tmp/from_guest.bin 2>/tmp/socat5000.err &
    receiver=$!
    boot_vm vsock --kernel "$G/vmlinuz" --initrd /tmp/initrd-socat --cmdline "console=ttyS0 panic=-1" \
        --device virtio-vsock,udsPath=/tmp/vsock.sock || { kill "$receiver" 2>/dev/null; return; }
    # shellcheck disable=SC2016 # the guest's shell expands it
    guest_do 'dd if=/dev/urandom of=/tmp/out.bin bs=1024 count=256 2>/dev/null; echo gsum=$(md5sum </tmp/out.bin); /usr/local/bin/socat -u OPEN:/tmp/out.bin VSOCK-CONNECT:2:5000 && echo sent-$((9+9))-done' sent-18-done "the guest could not send to host port 5000" || { kill "$receiver" 2>/dev/null; return; }
    # shellcheck disable=SC2016 # the guest's shell expands it
    type_line '/usr/local/bin/socat -u VSOCK-LISTEN:6000 CREATE:/tmp/in.bin; echo hsum=$(md5sum </tmp/in.bin); echo got-$((10+10))-done'
    # Until the guest listens, its kernel refuses (the client then hears nothing): again.
    n=0
    while [ "$n" -lt 60 ]; do
        { printf 'CONNECT 6000\n'; sleep 1; cat /tmp/to_guest.bin; } |
            socat -t 5 - UNIX-CONNECT:/tmp/vsock.sock >/tmp/client.out 2>/dev/null
        grep -q '^OK [0-9]' /tmp/client.out && break
        sleep 1
        n=$((n + 1))
    done
    if ! wait_for got-20-done; then
        abort_vm
        fail "the guest did not receive the host's 256 KiB: $why (client: $(head -c 40 /tmp/client.out))"
        return
    fi
    poweroff_vm || return
    wait "$receiver" 2>/dev/null
    gsum=$(echo "$out" | sed -n 's/^gsum=\([0-9a-f]*\).*/\1/p' | head -n 1)
    hsum=$(echo "$out" | sed -n 's/^hsum=\([0-9a-f]*\).*/\1/p' | head -n 1)
    got=$(md5sum </tmp/from_guest.bin 2>/dev/null | cut -d' ' -f1)
    want=$(md5sum </tmp/to_guest.bin | cut -d' ' -f1)
    if [ -z "$gsum" ] || [ "$gsum" != "$got" ]; then
        fail "guest -> host port 5000: the guest sent $gsum, the host got ${got:-nothing}"
        return
    fi
    if [ "$hsum" != "$want" ]; then
        fail "host -> guest port 6000: the host sent $want, the guest got ${hsum:-nothing} (client: $(head -c 40 /tmp/client.out))"
        return
    fi
    result "vsock ok: guest -> P_5000 and CONNECT 6000 -> guest, 256 KiB each, md5 intact ($(head -n 1 /tmp/client.out))"
}

# share: virtio-fs and the translator share on a whole machine. `--device virtio-fs,sharedDir=
# /tmp/share,mountTag=host --device rosetta,mountTag=rosetta` puts vmkit.mount=host and
# vmkit.translator=rosetta on the default guest's command line; its init mounts /mnt/host and
# /mnt/rosetta and runs the translator's register script. The guest reads the outer machine's
# file, writes one back, and runs Debian's arm64 busybox-static from the share (run.sh stages
# it with qemu-aarch64-static and its binfmts entry).
case_share() {
    name=share
    rm -rf /tmp/share
    mkdir -p /tmp/share
    echo from-the-outer-machine >/tmp/share/hello
    arm64=/usr/share/vmkit/guest-extra/busybox-arm64
    translator=
    if [ -x "$arm64" ] && [ -x /usr/bin/qemu-aarch64-static ]; then
        cp "$arm64" /tmp/share/busybox-arm64
        translator="--device rosetta,mountTag=rosetta"
    fi
    # shellcheck disable=SC2086 # translator is two words or none
    boot_vm share --device virtio-fs,sharedDir=/tmp/share,mountTag=host $translator || return
    # shellcheck disable=SC2016 # the guest's shell expands it
    guest_do 'echo got=$(cat /mnt/host/hello); echo written-by-the-guest >/mnt/host/back; sync; echo share-$((3+4))-done' share-7-done "the guest could not use the share" || return
    if [ -n "$translator" ]; then
        # shellcheck disable=SC2016 # the guest's shell expands it
        guest_do 'echo arch=$(/mnt/host/busybox-arm64 uname -m); /mnt/host/busybox-arm64 echo arm64-$((4+4))-ran' arm64-8-ran "the arm64 busybox did not run" || return
    fi
    poweroff_vm || return
    got=$(echo "$out" | sed -n 's/^got=//p' | head -n 1)
    back=$(cat /tmp/share/back 2>/dev/null)
    if [ "$got" != from-the-outer-machine ] || [ "$back" != written-by-the-guest ]; then
        fail "the guest read '$got' from /mnt/host/hello, the outer machine read '$back' from what it wrote"
        return
    fi
    if [ -z "$translator" ]; then
        fail "no arm64 busybox or qemu-aarch64-static in the outer machine (run.sh stages them)"
        return
    fi
    arch=$(echo "$out" | sed -n 's/^arch=//p' | head -n 1)
    if [ "$arch" != aarch64 ]; then
        fail "the arm64 busybox says its machine is '$arch', expected aarch64"
        return
    fi
    result "share ok: the guest read and wrote /mnt/host; arm64 busybox ran through the translator share (uname -m: $arch)"
}

# display: virtio-gpu and a virtio keyboard on a whole machine: `--device virtio-gpu,width=640,
# height=480 --device virtio-input,keyboard --screenshot-on-exit /tmp/shot.png`. The default
# guest's virtio_gpu driver takes the display (/dev/fb0 640x480, from GET_DISPLAY_INFO and the
# EDID) and its keyboard shows in /proc/bus/input/devices; the guest paints the top half red
# and the bottom half blue through /dev/fb0 (fbcon stays bound: unbinding it turns the display
# off), then powers off at once; vmkit writes the
# last image it showed as a PNG, printed here in base64 (nested-png:) for test_nested.sh to
# check pixel by pixel (busybox cannot read a PNG).
case_display() {
    name=display
    rm -f /tmp/shot.png
    boot_vm display --device virtio-gpu,width=640,height=480 --device virtio-input,keyboard \
        --screenshot-on-exit /tmp/shot.png || return
    # shellcheck disable=SC2016 # the guest's shell expands it
    guest_do 'echo fb=$(cat /sys/class/graphics/fb0/virtual_size /sys/class/graphics/fb0/bits_per_pixel /sys/class/graphics/fb0/stride | tr "\n" " "); echo kbd=$(grep -c "vmkit keyboard" /proc/bus/input/devices); echo fb-$((2+3))-read' fb-5-read "the guest has no framebuffer" || return
    # shellcheck disable=SC2016 # the guest's shell expands it
    guest_do 'echo 0 >/sys/class/graphics/fbcon/cursor_blink; i=0; while [ $i -lt 640 ]; do printf "\000\000\377\000"; i=$((i+1)); done >/tmp/red; i=0; while [ $i -lt 640 ]; do printf "\377\000\000\000"; i=$((i+1)); done >/tmp/blue; { i=0; while [ $i -lt 240 ]; do cat /tmp/red; i=$((i+1)); done; i=0; while [ $i -lt 240 ]; do cat /tmp/blue; i=$((i+1)); done; } >/tmp/img; dd if=/tmp/img of=/dev/fb0 bs=1228800 2>/dev/null; sleep 4; echo painted-$((5+6))' painted-11 "the guest could not paint /dev/fb0" || return
    # poweroff -f: no shutdown sequence that would redraw the console over the picture.
    type_line 'poweroff -f'
    finish_vm
    exited_ok "poweroff -f" || return
    out=$(shell_out)
    fb=$(echo "$out" | sed -n 's/^fb=//p' | head -n 1)
    kbd=$(echo "$out" | sed -n 's/^kbd=//p' | head -n 1)
    case "$fb" in
    "640,480 32 2560"*) ;;
    *)
        fail "/dev/fb0 is '$fb' (size, bits per pixel, stride), expected '640,480 32 2560'"
        return
        ;;
    esac
    if [ "$kbd" != 1 ]; then
        fail "the guest lists $kbd 'vmkit keyboard' input devices, expected 1"
        return
    fi
    if [ ! -s /tmp/shot.png ]; then
        fail "vmkit wrote no screenshot at /tmp/shot.png"
        return
    fi
    base64 /tmp/shot.png | sed 's/^/nested-png: /'
    result "display ok: /dev/fb0 $fb, a virtio keyboard; screenshot of $(wc -c </tmp/shot.png) bytes (its pixels are checked by test_nested.sh)"
}

# vnc: keys typed through vmkit's VNC server reach the guest's keyboard. vmkit runs with a
# virtio-gpu display, a virtio keyboard and `--vnc 127.0.0.1:5901`; the guest reads four
# input events (24 bytes each on x86-64: time, u16 type, u16 code, s32 value) from the
# keyboard's /dev/input/eventN in the background, and rfb_keys (run.sh builds it), an RFB 3.8
# client in the outer machine, presses and releases 'a' (keysym 0x61). The guest must see
# EV_KEY (1) KEY_A (0x1e) with value 1 and then 0: the whole path from an RFB KeyEvent
# through vmkit's keysym mapping and virtio-input to the guest's evdev. Then the client asks
# for 800x600 (SetDesktopSize, as a resized viewer does) and the guest's DRM connector must
# list 800x600 first (/sys/class/drm/card*-Virtual-1/modes): the reconfigure path.
case_vnc() {
    name=vnc
    if ! command -v rfb_keys >/dev/null; then
        result "vnc not ok: no rfb_keys in the outer machine (run.sh builds it with gcc)"
        return
    fi
    ip link set lo up 2>/dev/null # vmkit's VNC server listens on loopback
    boot_vm vnc --device virtio-gpu,width=640,height=480 --device virtio-input,keyboard \
        --vnc 127.0.0.1:5901 || return
    # The keyboard's event device, from its Handlers line; the reader runs in the background
    # (-v: od would print identical lines as "*").
    # shellcheck disable=SC2016 # the guest's shell expands it
    guest_do 'ev=$(grep -A5 "vmkit keyboard" /proc/bus/input/devices | grep -o "event[0-9]*" | head -n 1); echo evdev=$ev; dd if=/dev/input/$ev bs=24 count=4 2>/dev/null | od -An -v -tx1 >/tmp/ev.txt & sleep 1; echo reader-$((1+2))-started' reader-3-started "the guest could not read its keyboard" || return
    if ! timeout 60 rfb_keys 127.0.0.1 5901 0x61 size=800x600 >/tmp/rfb.out 2>&1; then
        abort_vm
        fail "rfb_keys failed: $(tr '\n' ' ' </tmp/rfb.out)"
        return
    fi
    # $(cat) puts the od lines on one line, one space between bytes: an event's bytes may
    # straddle od's lines.
    # shellcheck disable=SC2016 # the guest's shell expands it
    # The viewer's resize: the guest's driver hears a display change, reads the display info
    # and EDID again, and its connector's preferred (first) mode is the new size; a detect
    # makes sure the connector was probed since.
    guest_do 'sleep 2; echo ev=$(cat /tmp/ev.txt); for c in /sys/class/drm/card*-Virtual-1; do echo detect >$c/status; echo modes=$(head -n 1 $c/modes); done; echo vnc-$((3+4))-done' vnc-7-done "the guest did not answer" || return
    poweroff_vm || return
    evdev=$(echo "$out" | sed -n 's/^evdev=//p' | head -n 1)
    ev=$(echo "$out" | sed -n 's/^ev=//p' | head -n 1)
    case "$evdev" in
    event[0-9]*) ;;
    *)
        fail "the guest has no event device for 'vmkit keyboard' (got '$evdev')"
        return
        ;;
    esac
    case "$ev" in
    *"01 00 1e 00 01 00 00 00"*"01 00 1e 00 00 00 00 00"*) ;;
    *)
        fail "the guest's $evdev gave '$ev', expected EV_KEY KEY_A press (01 00 1e 00 01 00 00 00) then release (01 00 1e 00 00 00 00 00) ($(head -n 1 /tmp/rfb.out))"
        return
        ;;
    esac
    modes=$(echo "$out" | sed -n 's/^modes=//p' | head -n 1)
    if [ "$modes" != 800x600 ]; then
        fail "after the RFB client asked for 800x600 the guest's first DRM mode is '$modes', expected 800x600"
        return
    fi
    result "vnc ok: 'a' typed over RFB reached the guest's $evdev as KEY_A press and release; the client's resize to 800x600 is the guest's preferred DRM mode ($(sed 's/^rfb_keys: //' /tmp/rfb.out | head -n 1); $(grep -m1 'VNC on' "$dir/err"))"
}

# power-button: SIGTERM to vmkit presses the ACPI power button; the guest's acpid powers it
# off and vmkit exits 0.
case_power_button() {
    boot_vm power-button || return
    kill -TERM "$vm"
    if ! wait_for 'power button pressed'; then
        abort_vm
        fail "the guest saw no power-button press: $why"
        return
    fi
    finish_vm
    exited_ok "the power button" || return
    result "power-button ok"
}

# pci: the guest enumerates the host bridge at 00:00.0 with vmkit's ids, and its boot log has
# no PCI resource conflict and no complaint that the ECAM window (MMCONFIG) is unreserved.
case_pci() {
    boot_vm pci || return
    d=/sys/bus/pci/devices/0000:00:00.0
    # The guest's shell expands \$(...); "pci-end-42" appears only in its answer.
    type_line "echo pci-dev=\$(cat $d/vendor):\$(cat $d/device):\$(cat $d/class) pci-end-\$((6*7))"
    if ! wait_for 'pci-end-42'; then abort_vm; fail "the guest did not answer: $why"; return; fi
    got=$(shell_out | sed -n 's/^pci-dev=\([^ ]*\) pci-end-42$/\1/p' | head -n 1)
    type_line poweroff
    finish_vm
    want=0x1b36:0x0008:0x060000
    if [ "$got" != "$want" ]; then
        fail "0000:00:00.0 reads '${got}', expected $want"
        return
    fi
    pat='conflict|not reserved|[Ff]ailed to .*PCI|PCI.*(BAR|window).*(fail|ignored)|MMCONFIG.*disabled'
    bad=$(tr -d '\r' <"$dir/out" | grep -iE 'pci|ecam|mmconfig' | grep -E "$pat" |
        sed 's/^\[[ 0-9.]*\] //' | head -n 3 | tr '\n' ';')
    if [ -n "$bad" ]; then
        fail "boot log: $bad"
        return
    fi
    # For the log: what the guest's kernel said about the bus.
    tr -d '\r' <"$dir/out" | grep -E 'PCI|pci 0000|PNP0A08|ECAM|MMCONFIG|_OSC' | head -n 40 |
        sed 's/^/nested: case pci: guest| /'
    exited_ok poweroff || return
    ecam=$(tr -d '\r' <"$dir/out" | grep -m1 -E 'PCI: (ECAM|MMCONFIG) ' | sed 's/^\[[ 0-9.]*\] //')
    result "pci ok: 00:00.0 is $want; ${ecam:-no ECAM line}"
}

# blk: a disk image as virtio-blk on PCI. The guest finds /dev/vda with the host's data and
# the serial the host gave it, writes a sector and syncs it, powers off; the host reads the
# sector back from the image.
BLK_IMG=/tmp/blk.img
case_blk() {
    name=blk
    dd if=/dev/zero of=$BLK_IMG bs=1M count=8 2>/dev/null
    printf 'host-wrote-this' | dd of=$BLK_IMG conv=notrunc 2>/dev/null
    boot_vm blk --device virtio-blk,path=$BLK_IMG,id=vmkit-disk0 || return
    # shellcheck disable=SC2016 # the guest's shell expands it
    guest_do 'cat /sys/block/vda/serial; echo; head -c 15 /dev/vda; echo; echo guest-wrote-this | dd of=/dev/vda bs=512 seek=1 conv=fsync,sync 2>/dev/null && echo write-$((1+1))-done' write-2-done "the guest did not write its sector" || return
    poweroff_vm || return
    if ! echo "$out" | grep -q '^vmkit-disk0$'; then
        fail "/sys/block/vda/serial is not vmkit-disk0"
        return
    fi
    if ! echo "$out" | grep -q '^host-wrote-this$'; then
        fail "the guest did not read the host's data from /dev/vda"
        return
    fi
    if ! dd if=$BLK_IMG bs=512 skip=1 count=1 2>/dev/null | grep -q guest-wrote-this; then
        fail "the guest's sector is not in the image after poweroff"
        return
    fi
    result "blk ok: serial, host data read, guest write on disk"
}

# blk-readonly: the same image attached read-only: the guest's block layer marks vda
# read-only and a write fails; the image is unchanged.
case_blk_readonly() {
    name=blk-readonly
    boot_vm blk-readonly --device virtio-blk,path=$BLK_IMG,readonly || return
    # shellcheck disable=SC2016 # the guest's shell expands it
    guest_do 'echo ro=$(cat /sys/block/vda/ro); echo overwrite | dd of=/dev/vda bs=512 seek=2 conv=fsync,sync; echo dd-status=$? ro-$((2+2))-done' ro-4-done "the guest did not finish" || return
    poweroff_vm || return
    if ! echo "$out" | grep -q '^ro=1$'; then
        fail "/sys/block/vda/ro is not 1"
        return
    fi
    if echo "$out" | grep -q '^dd-status=0 '; then
        fail "a write to the read-only disk succeeded"
        return
    fi
    if dd if=$BLK_IMG bs=512 skip=2 count=1 2>/dev/null | grep -q overwrite; then
        fail "the read-only image was changed"
        return
    fi
    result "blk-readonly ok: vda is read-only and the write failed"
}

# usb: two USB drives on vmkit's xHCI controller (--device usb-mass-storage): an 8 MiB writable
# image and a 4 MiB read-only one, each starting with its name. The default guest's xhci_pci,
# usb-storage and sd_mod find them as /dev/sdX (which is which goes by content: enumeration
# order is the guest's); the read-only drive's whole image reads back with the host's md5
# (multi-TRB bulk transfers through the bulk-only transport), /sys/block/sdX/ro is 1 for it and
# a write to it fails; a sector written and synced to the writable drive is in its image after
# poweroff.
USB_IMG=/tmp/usb-rw.img
USB_RO_IMG=/tmp/usb-ro.img
case_usb() {
    name=usb
    dd if=/dev/urandom of=$USB_IMG bs=1M count=8 2>/dev/null
    dd if=/dev/urandom of=$USB_RO_IMG bs=1M count=4 2>/dev/null
    printf 'usb-writable-disk' | dd of=$USB_IMG conv=notrunc 2>/dev/null
    printf 'usb-readonly-disk' | dd of=$USB_RO_IMG conv=notrunc 2>/dev/null
    ro_md5=$(md5sum <$USB_RO_IMG | cut -c1-32)
    boot_vm usb --device usb-mass-storage,path=$USB_IMG \
        --device usb-mass-storage,path=$USB_RO_IMG,readonly || return
    # shellcheck disable=SC2016 # the guest's shell expands it
    guest_do 'i=0; while [ $i -lt 60 ] && ! { [ -b /dev/sda ] && [ -b /dev/sdb ]; }; do sleep 1; i=$((i+1)); done; w=; r=; for d in sda sdb; do h=$(head -c 17 /dev/$d 2>/dev/null); [ "$h" = usb-writable-disk ] && w=$d; [ "$h" = usb-readonly-disk ] && r=$d; done; echo usb-w=$w usb-r=$r; echo usb-ro-flag=$(cat /sys/block/$r/ro) usb-sizes=$(cat /sys/block/$w/size),$(cat /sys/block/$r/size); echo usb-ro-md5=$(md5sum </dev/$r | cut -c1-32); echo guest-wrote-usb | dd of=/dev/$w bs=512 seek=1 conv=fsync,sync 2>/dev/null && echo usb-write=ok; echo overwrite | dd of=/dev/$r bs=512 seek=1 conv=fsync,sync 2>/dev/null; echo usb-rodd=$?; echo usb-$((4+5))-done' usb-9-done "the guest did not finish with its USB drives" || return
    poweroff_vm || return
    drives=$(echo "$out" | sed -n 's/^usb-w=//p' | head -n 1)
    case "$drives" in
    sd?" usb-r=sd"?) ;;
    *)
        fail "the guest did not find both USB drives as /dev/sdX by their contents (got 'w=$drives'; dmesg may say why)"
        return
        ;;
    esac
    if ! echo "$out" | grep -q '^usb-ro-flag=1 usb-sizes=16384,8192$'; then
        fail "the read-only drive is not read-only, or the sizes are wrong: $(echo "$out" | grep '^usb-ro-flag=' | head -n 1) (expected ro 1, 16384 and 8192 sectors)"
        return
    fi
    got_md5=$(echo "$out" | sed -n 's/^usb-ro-md5=//p' | head -n 1)
    if [ "$got_md5" != "$ro_md5" ]; then
        fail "the read-only drive read back with md5 '$got_md5', the image's is $ro_md5"
        return
    fi
    if ! echo "$out" | grep -q '^usb-write=ok$' ||
        ! dd if=$USB_IMG bs=512 skip=1 count=1 2>/dev/null | grep -q guest-wrote-usb; then
        fail "the guest's sector on the writable USB drive is not in its image after poweroff"
        return
    fi
    if echo "$out" | grep -q '^usb-rodd=0$' ||
        dd if=$USB_RO_IMG bs=512 skip=1 count=1 2>/dev/null | grep -q overwrite; then
        fail "a write to the read-only USB drive succeeded or changed its image"
        return
    fi
    result "usb ok: two USB drives on the xHCI controller as /dev/$(echo "$drives" | sed 's/ usb-r=/ and \/dev\//'); 4 MiB read back md5-intact, the read-only one refused a write, the writable one's sector is in its image"
}

# rng: virtio-rng on PCI. The guest's hw_random core picks virtio_rng as its current source,
# and /dev/hwrng gives bytes (16 of them on od's first line).
case_rng() {
    name=rng
    boot_vm rng --device virtio-rng || return
    # shellcheck disable=SC2016 # the guest's shell expands it
    guest_do 'echo rng=$(cat /sys/class/misc/hw_random/rng_current); echo od=$(dd if=/dev/hwrng bs=64 count=1 2>/dev/null | od -An -tx1 | head -1); echo rng-$((3+3))-done' rng-6-done "the guest did not finish" || return
    poweroff_vm || return
    current=$(echo "$out" | sed -n 's/^rng=//p')
    case "$current" in
    virtio_rng*) ;;
    *)
        fail "rng_current is '$current', not virtio_rng"
        return
        ;;
    esac
    bytes=$(echo "$out" | sed -n 's/^od=//p')
    if ! echo "$bytes" | grep -Eq '^ *([0-9a-f]{2} +){15}[0-9a-f]{2} *$'; then
        fail "no 16 bytes from /dev/hwrng (od printed '$bytes')"
        return
    fi
    result "rng ok: rng_current $current, /dev/hwrng gave $bytes"
}

# net: the default guest on vmkit's NAT, as `vmkit run` gives it: its init's DHCP lease
# (10.0.2.15), the address vmkit prints, a ping of the gateway, a payload the guest fetches
# from the outer machine's web server through 10.0.2.2, and one the outer machine fetches
# from the guest's web server through a hostfwd, both md5-checked; and the page of the web
# server the default guest runs on port 80, through a second hostfwd (what setup.sh gives).
case_net() {
    name=net
    ip link set lo up 2>/dev/null # the NAT's sockets and the web server are on loopback
    mkdir -p /tmp/www
    head -c 262144 /dev/urandom >/tmp/www/payload
    sum=$(md5sum </tmp/www/payload | cut -d' ' -f1)
    httpd -p 127.0.0.1:7001 -h /tmp/www
    boot_vm net --device virtio-net,hostfwd=tcp:127.0.0.1:7002-:7002,hostfwd=tcp:127.0.0.1:7080-:80 || return
    if ! wait_for 'eth0 has 10.0.2.15'; then
        abort_vm
        fail "no DHCP lease: $why"
        return
    fi
    # shellcheck disable=SC2016 # the guest's shell expands it
    guest_do 'mkdir -p /tmp/www; head -c 262144 /dev/urandom >/tmp/www/back; httpd -p 7002 -h /tmp/www; echo back=$(md5sum </tmp/www/back | cut -d" " -f1); echo fetched=$(wget -q -O - http://10.0.2.2:7001/payload | md5sum | cut -d" " -f1); ping -c 1 -W 10 10.0.2.2 >/dev/null && echo ping=ok; echo net-$((4+4))-done' net-8-done "the guest did not finish" || return
    got=$(wget -q -O - http://127.0.0.1:7002/back | md5sum | cut -d' ' -f1)
    page=$(wget -q -O - http://127.0.0.1:7080/)
    poweroff_vm || return
    back=$(echo "$out" | sed -n 's/^back=//p')
    fetched=$(echo "$out" | sed -n 's/^fetched=//p')
    if [ "$fetched" != "$sum" ]; then
        fail "the guest fetched md5 '$fetched' through 10.0.2.2, want $sum"
        return
    fi
    if [ -z "$back" ] || [ "$got" != "$back" ]; then
        fail "through the hostfwd the outer machine got md5 '$got', the guest has '$back'"
        return
    fi
    if ! grep -q 'virtio-net 1: guest 10.0.2.15' "$dir/err"; then
        fail "vmkit did not print the guest's address: $(tr '\n' ' ' <"$dir/err")"
        return
    fi
    if ! echo "$out" | grep -q '^ping=ok'; then
        fail "the guest's ping of 10.0.2.2 got no answer"
        return
    fi
    case "$page" in
    "vmkit guest: Linux "*) ;;
    *)
        fail "the guest's web server on port 80 (hostfwd 127.0.0.1:7080) gave '$page'"
        return
        ;;
    esac
    result "net ok: lease 10.0.2.15, printed by vmkit; ping; 256 KiB each way, md5 intact; port 80 says '$page'"
}

# tap: the guest on a tap device of the outer machine (vmkit's stand-in for VZ's bridged
# attachment; tap=IFNAME with a vnet header, so checksum and TSO offloads cross as the guest
# negotiates them): busybox udhcpd on the tap leases it an address in 192.168.77.50-60, vmkit
# prints that address (snooped from the guest's frames), the guest fetches 1 MiB from a web
# server on the tap's address, md5-checked, and the outer machine pings the guest.
case_tap() {
    name=tap
    # busybox's tunctl makes a persistent tap; vmkit asks for the vnet header as it opens it.
    if ! modprobe tun || ! tunctl -t tap0 >/dev/null || ! ip addr add 192.168.77.1/24 dev tap0 ||
        ! ip link set tap0 up; then
        fail "cannot make tap0 (modprobe tun, tunctl -t tap0)"
        return
    fi
    mkdir -p /tmp/wwwtap
    head -c 1048576 /dev/urandom >/tmp/wwwtap/payload
    sum=$(md5sum </tmp/wwwtap/payload | cut -d' ' -f1)
    httpd -p 192.168.77.1:7011 -h /tmp/wwwtap
    printf '%s\n' "start 192.168.77.50" "end 192.168.77.60" "interface tap0" \
        "lease_file /tmp/udhcpd.leases" "option subnet 255.255.255.0" \
        "option router 192.168.77.1" >/tmp/udhcpd.conf
    : >/tmp/udhcpd.leases
    udhcpd -f /tmp/udhcpd.conf >/tmp/udhcpd.log 2>&1 &
    dhcpd=$!
    tap_case_body
    kill "$dhcpd" 2>/dev/null
    tunctl -d tap0 >/dev/null 2>&1
}

tap_case_body() {
    boot_vm tap --device virtio-net,tap=tap0 || return
    if ! wait_for 'eth0 has 192.168.77.'; then
        abort_vm
        fail "no DHCP lease from udhcpd on tap0: $why ($(tr '\n' ' ' </tmp/udhcpd.log))"
        return
    fi
    lease=$(shell_out | sed -n 's/.*eth0 has \(192\.168\.77\.[0-9]*\) .*/\1/p' | head -n 1)
    # shellcheck disable=SC2016 # the guest's shell expands it
    guest_do 'echo fetched=$(wget -q -O - http://192.168.77.1:7011/payload | md5sum | cut -d" " -f1); echo tap-$((4+5))-done' tap-9-done "the guest did not finish" || return
    pinged=no
    ping -c 1 -W 10 "$lease" >/dev/null 2>&1 && pinged=yes
    poweroff_vm || return
    fetched=$(echo "$out" | sed -n 's/^fetched=//p')
    if [ "$fetched" != "$sum" ]; then
        fail "the guest fetched md5 '$fetched' from 192.168.77.1 over the tap, want $sum"
        return
    fi
    if [ "$pinged" != yes ]; then
        fail "the outer machine's ping of the guest ($lease) got no answer"
        return
    fi
    if ! grep -q "virtio-net 1: guest $lease\$" "$dir/err"; then
        fail "vmkit did not print the guest's address: $(tr '\n' ' ' <"$dir/err")"
        return
    fi
    result "tap ok: lease $lease from udhcpd, printed by vmkit; 1 MiB fetched, md5 intact; ping answered"
}

# blk-kill: a sector the guest wrote and synced is in the image after vmkit is killed
# with SIGKILL (nothing waits in vmkit's memory once the guest's flush completed).
case_blk_kill() {
    name=blk-kill
    boot_vm blk-kill --device virtio-blk,path=$BLK_IMG || return
    # shellcheck disable=SC2016 # the guest's shell expands it
    guest_do 'echo survives-kill-9 | dd of=/dev/vda bs=512 seek=3 conv=fsync,sync 2>/dev/null && echo synced-$((4+4))-done' synced-8-done "the guest did not sync its sector" || return
    abort_vm # SIGKILL
    if ! dd if=$BLK_IMG bs=512 skip=3 count=1 2>/dev/null | grep -q survives-kill-9; then
        fail "the synced sector is not in the image after kill -9"
        return
    fi
    result "blk-kill ok: the synced sector survived kill -9 of vmkit"
}

# console: a virtio console device with one named port writing to a host file. The guest
# finds the port by its name in sysfs and writes a line to its /dev/vportNpM; after poweroff
# the line is in the host's file.
VPORT_OUT=/tmp/vport.out
case_console() {
    name=console
    rm -f $VPORT_OUT
    boot_vm console --device virtio-serial,file=$VPORT_OUT,name=org.vmkit.test || return
    # shellcheck disable=SC2016 # the guest's shell expands it
    guest_do 'for p in /sys/class/virtio-ports/*; do if [ "$(cat $p/name)" = org.vmkit.test ]; then echo vport-name=$(cat $p/name) dev=${p##*/}; echo guest-wrote-to-vport >/dev/${p##*/}; fi; done; echo vport-$((5+5))-done' vport-10-done "the guest did not finish" || return
    poweroff_vm || return
    line=$(echo "$out" | grep '^vport-name=')
    if ! echo "$line" | grep -q '^vport-name=org.vmkit.test dev=vport[0-9]*p[0-9]*$'; then
        fail "no port named org.vmkit.test in /sys/class/virtio-ports (got '$line')"
        return
    fi
    if ! grep -qx guest-wrote-to-vport $VPORT_OUT 2>/dev/null; then
        fail "$VPORT_OUT does not hold the guest's line (it holds '$(head -c 200 $VPORT_OUT 2>/dev/null)')"
        return
    fi
    result "console ok: ${line#vport-name=}, its line is in $VPORT_OUT"
}

# root-disk: the default guest boots from its root disk (guest/build.sh's rootfs.ext4, a
# copy) on virtio-blk: root=/dev/vda gives / as ext4 on vda, with the drivers the initramfs
# loaded before switching (virtio_rng); a file written and synced there, then poweroff, leaves
# a clean filesystem (no journal to replay), and a second boot, by root=LABEL=vmkit-root and
# read-only, reads the file back.
ROOT_IMG=/tmp/root-disk.ext4
case_root_disk() {
    name=root-disk
    src=${VMKIT_GUEST_DIR:-}/rootfs.ext4
    if [ ! -f "$src" ]; then
        result "root-disk not ok: no $src (guest/build.sh makes it)"
        return
    fi
    cp "$src" $ROOT_IMG
    boot_vm root-disk --cmdline "console=ttyS0 panic=-1 root=/dev/vda rw" \
        --device virtio-blk,path=$ROOT_IMG --device virtio-rng || return
    # shellcheck disable=SC2016 # the guest's shell expands it
    guest_do 'echo root=$(grep " / " /proc/mounts); echo rng=$(cat /sys/class/misc/hw_random/rng_current); echo written-on-the-root-disk >/root/persist.txt && sync && echo root-$((7+7))-done' root-14-done "the guest did not write its file" || return
    poweroff_vm || return
    mounted=$(echo "$out" | sed -n 's/^root=//p' | head -n 1)
    case "$mounted" in
    "/dev/vda / ext4 rw"*) ;;
    *)
        fail "/ is '$mounted' in /proc/mounts, expected /dev/vda / ext4 rw"
        return
        ;;
    esac
    rng=$(echo "$out" | sed -n 's/^rng=//p' | head -n 1)
    case "$rng" in
    virtio_rng*) ;;
    *)
        fail "rng_current is '$rng' on the root disk: the drivers the initramfs loads are missing"
        return
        ;;
    esac
    first_banner=$(banner)
    # ext4's incompat features (superblock at 1024, field at 0x60): bit 2 says the journal
    # needs replaying, i.e. / was not made read-only at poweroff.
    incompat=$(dd if=$ROOT_IMG bs=1 skip=1120 count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
    if [ -z "$incompat" ] || [ $((incompat & 4)) -ne 0 ]; then
        fail "the image needs journal recovery after poweroff (incompat byte '${incompat}')"
        return
    fi
    cp "$dir/out" /tmp/case-root-disk.first-boot
    boot_vm root-disk --cmdline "console=ttyS0 panic=-1 root=LABEL=vmkit-root ro" \
        --device virtio-blk,path=$ROOT_IMG || return
    # shellcheck disable=SC2016 # the guest's shell expands it
    guest_do 'echo again=$(grep " / " /proc/mounts); echo got=$(cat /root/persist.txt); echo reboot-$((8+8))-done' reboot-16-done "the second boot did not answer" || return
    poweroff_vm "poweroff of the second boot" || return
    again=$(echo "$out" | sed -n 's/^again=//p' | head -n 1)
    got=$(echo "$out" | sed -n 's/^got=//p' | head -n 1)
    case "$again" in
    "/dev/vda / ext4 ro"*) ;;
    *)
        fail "second boot (root=LABEL=vmkit-root ro): / is '$again', expected /dev/vda / ext4 ro"
        return
        ;;
    esac
    if [ "$got" != written-on-the-root-disk ]; then
        fail "second boot: /root/persist.txt holds '$got', not the line the first boot wrote"
        return
    fi
    result "root-disk ok: / was ${mounted%% 0 0}, $rng loaded; the file came back on a boot by LABEL (${first_banner#vmkit guest: })"
}

# efi-shell: Debian's OVMF on vmkit's EFI machine, no disks: its UEFI shell comes up on COM1
# (the firmware's own boot options fail over to it). The firmware reads what is typed on the
# serial console with Enter as CR. First boot: a fresh store from the template, setvar writes a
# non-volatile variable and reads it back, reset -s powers off (OVMF's ResetSystem: PM1
# control, SLP_TYP 0); the variable's name is then in the store file. Second boot with the
# same store: setvar reads the variable back. Each nested OVMF boot takes about a minute.
EFI_VAR_GUID=5d6a5a8e-7c2f-4b6e-9f0a-1b2c3d4e5f60
efi_type() { printf '%s\r' "$1" >&3; }
efi_boot() { # efi_boot WHICH BOOTLOADER-SUFFIX [VMKIT-ARGS...]: firmware up to its shell's prompt
    which=$1
    store_opts=$2
    shift 2
    # A boot the outer emulator faults or stalls is tried again as a Linux boot is (bounded and
    # counted alike); a first boot creates its store with overwrite, so a second try starts
    # from a new one too.
    boot_until 'Shell>' "$name" --bootloader "efi,variable-store=/tmp/$name-vars.fd$store_opts" \
        "$@" || return 1
    echo "nested: case $name: $which boot: shell prompt after $(since "$started") s"
    # Past the prompt's own output before typing (the shell reads ConIn once it is idle).
    sleep 2
}
efi_shutdown() { # efi_shutdown WHICH: reset -s, and vmkit must exit 0
    efi_type 'reset -s'
    finish_vm
    exited_ok "reset -s ($1 boot)"
}
case_efi_shell() {
    name=efi-shell
    if [ ! -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || [ ! -f /usr/share/OVMF/OVMF_VARS_4M.fd ]; then
        result "efi-shell not ok: no OVMF in the outer machine (run.sh stages the host's ovmf package)"
        return
    fi
    rm -f /tmp/efi-shell-vars.fd
    efi_boot first ",create,overwrite" || return
    efi_type "setvar VmkitTest -guid $EFI_VAR_GUID -nv -bs =766d6b6974"
    sleep 2
    efi_type "setvar VmkitTest -guid $EFI_VAR_GUID"
    if ! wait_for '76 6D 6B 69 74'; then abort_vm; fail "first boot: setvar: $why"; return; fi
    first_s=$(since "$started")
    efi_shutdown first || return
    cp "$dir/out" /tmp/efi-first.out
    if cmp -s /tmp/efi-shell-vars.fd /usr/share/OVMF/OVMF_VARS_4M.fd; then
        fail "the store file is still the template after the first boot"
        return
    fi
    if ! tr -d '\000' </tmp/efi-shell-vars.fd | grep -q VmkitTest; then
        fail "the store file has no VmkitTest after the first boot"
        return
    fi
    efi_kill_mid_write || return
    # The second boot also has a display and a USB keyboard: `ver` typed through vmkit's VNC
    # server reaches the shell by OVMF's USB keyboard driver (the serial console is the other
    # input; the count of `ver`'s line tells its answer from the banner's).
    ip link set lo up 2>/dev/null # vmkit's VNC server listens on loopback
    rm -f /tmp/efi-shot.png
    efi_boot second "" --device usb-keyboard --device virtio-gpu --vnc 127.0.0.1:5902 \
        --screenshot-on-exit /tmp/efi-shot.png || return
    if ! command -v rfb_keys >/dev/null; then
        abort_vm
        fail "no rfb_keys to type through VNC (run.sh builds it with gcc)"
        return
    fi
    banners=$(grep -c 'UEFI v2' "$dir/out")
    if ! timeout 60 rfb_keys 127.0.0.1 5902 0x76 0x65 0x72 0xff0d >/tmp/efi-rfb.out 2>&1; then
        abort_vm
        fail "rfb_keys failed: $(tr '\n' ' ' </tmp/efi-rfb.out)"
        return
    fi
    n=0
    while [ "$(grep -c 'UEFI v2' "$dir/out")" -le "$banners" ] && [ "$n" -lt 240 ]; do
        sleep 0.25
        n=$((n + 1))
    done
    if [ "$(grep -c 'UEFI v2' "$dir/out")" -le "$banners" ]; then
        abort_vm
        fail "'ver' typed over VNC on the USB keyboard got no answer from the shell in 60 s"
        return
    fi
    sleep 2
    efi_type "setvar VmkitTest -guid $EFI_VAR_GUID"
    if ! wait_for '76 6D 6B 69 74'; then abort_vm; fail "second boot: VmkitTest not read back: $why"; return; fi
    second_s=$(since "$started")
    efi_shutdown second || return
    # What OVMF drew through its virtio-gpu driver (GOP), checked by test_nested.sh.
    if [ ! -s /tmp/efi-shot.png ]; then
        fail "vmkit wrote no screenshot at /tmp/efi-shot.png"
        return
    fi
    base64 /tmp/efi-shot.png | sed 's/^/nested-efi-png: /'
    result "efi-shell ok: shell and setvar in ${first_s}s, VmkitTest read back on the next boot in ${second_s}s, 'ver' typed over VNC answered through the USB keyboard, reset -s exits 0; the screen OVMF drew on virtio-gpu ($(wc -c </tmp/efi-shot.png) bytes of PNG) is checked by test_nested.sh"
    if [ -n "$kill_note" ]; then
        result "efi-shell-kill ok: $kill_note; the next boot came up with the store and read VmkitTest back"
    fi
}
# efi_kill_mid_write: a boot with the store that vmkit's kill -9 ends at the firmware's first
# write to it (OVMF writes variables on every boot: its monotonic counter, boot options),
# seen as the file's checksum changing; the store stays whole (vmkit writes the flash in place
# and flushes it when the firmware's program or erase completes, and never changes its size).
# Sets $kill_note; the efi-shell-kill result follows the case's next boot.
kill_note=
efi_kill_mid_write() {
    want efi-shell-kill || return 0
    before=$(md5sum </tmp/efi-shell-vars.fd)
    size=$(wc -c </tmp/efi-shell-vars.fd)
    start_vm "$name" --bootloader "efi,variable-store=/tmp/efi-shell-vars.fd"
    n=0
    while [ "$(md5sum </tmp/efi-shell-vars.fd)" = "$before" ] && kill -0 "$vm" 2>/dev/null &&
        [ "$n" -lt $((STEP_MAX * 20)) ]; do
        sleep 0.05
        n=$((n + 1))
    done
    changed_s=$(since "$started")
    if ! kill -KILL "$vm" 2>/dev/null; then
        wait "$vm"
        result "efi-shell-kill not ok: vmkit ended (status $?) before the firmware wrote to the store"
        exec 3>&-
        return 0
    fi
    wait "$vm" 2>/dev/null
    exec 3>&-
    if [ "$(md5sum </tmp/efi-shell-vars.fd)" = "$before" ]; then
        result "efi-shell-kill not ok: no write to the store within ${STEP_MAX}s of the boot"
        return 0
    fi
    if [ "$(wc -c </tmp/efi-shell-vars.fd)" != "$size" ]; then
        result "efi-shell-kill not ok: the store's size changed from $size to $(wc -c </tmp/efi-shell-vars.fd) bytes"
        return 0
    fi
    kill_note="kill -9 at the boot's first store write (${changed_s}s in), the size unchanged"
}

# efi-install: installing Linux from an ISO on a USB drive, end to end, as the framework's
# Linux-install sample does. The ISO (make_installer_iso.sh: GRUB for EFI, Debian's kernel, the
# default guest plus a scripted installer) goes on a read-only USB drive, with an empty virtio
# disk and a new variable store. OVMF's boot discovery finds \EFI\BOOT\BOOTX64.EFI on the drive
# (the store has no boot entries); the installer partitions the disk (GPT: ESP + ext4), copies
# the system in, puts GRUB on the ESP under \EFI\vmkit (no removable-media path, so only NVRAM
# can boot it), writes its boot entry with efibootmgr and a variable of its own through efivarfs,
# and powers off. Then the same store boots the disk alone: the installer's entry is
# BootCurrent, GRUB loads the installed kernel, / is the ext4 root, the variable reads back.
# Last, a USB drive hot-plugged through vmkit's control socket appears as /dev/sda with the
# host's data (read-only), and leaves when detached.
INSTALLER_ISO=${VMKIT_INSTALLER_ISO:-/usr/share/vmkit/installer.iso}
EFI_GLOBAL_GUID=8be4df61-93ca-11d2-aa0d-00e098032b8c
# control COMMAND: vmkit's answer on the case's control socket.
control() { echo "$1" | socat -t 10 - "UNIX-CONNECT:/tmp/$name.sock" 2>&1; }
case_efi_install() {
    name=efi-install
    if [ ! -f "$INSTALLER_ISO" ] || [ ! -f /usr/share/OVMF/OVMF_CODE_4M.fd ]; then
        result "efi-install not ok: no $INSTALLER_ISO or OVMF in the outer machine (run.sh builds the ISO with make_installer_iso.sh: apt-get install ovmf fdisk dosfstools efibootmgr grub-efi-amd64-bin xorriso mtools)"
        return
    fi
    vars=/tmp/efi-install-vars.fd
    disk=/tmp/efi-install-disk.img
    rm -f "$vars" "$disk"
    dd if=/dev/zero of="$disk" bs=1M count=0 seek=256 2>/dev/null
    # The installer; a boot tried again after a fault starts from a new store and disk.
    boot_until 'vmkit-install: done' "$name" \
        --bootloader "efi,variable-store=$vars,create,overwrite" \
        --device "usb-mass-storage,path=$INSTALLER_ISO,readonly" \
        --device "virtio-blk,path=$disk" || return
    install_s=$(since "$started")
    echo "nested: case $name: the installer finished after $install_s s"
    finish_vm
    exited_ok "the installer's poweroff" || return
    if ! grep -q 'grub: loading the kernel' "$dir/out"; then
        fail "the installer ran without GRUB's line from the ISO: not booted from the USB drive"
        return
    fi
    entry=$(shell_out | sed -n 's/^vmkit-install: done: Boot\([0-9A-F]\{4\}\),.*/\1/p')
    cp "$dir/out" "/tmp/$name.install.out"

    # The installed system: the same store, the disk alone (and the control socket).
    rm -f "/tmp/$name.sock"
    boot_vm "$name" --bootloader "efi,variable-store=$vars" --device "virtio-blk,path=$disk" \
        --control-socket "/tmp/$name.sock" || return
    boot_s=$(since "$started")
    echo "nested: case $name: the installed system's shell after $boot_s s"
    if ! grep -q 'grub: loading the installed system' "$dir/out"; then
        abort_vm
        fail "the second boot reached a shell without the installed GRUB's line"
        return
    fi
    # shellcheck disable=SC2016 # the guest's shell expands it
    guest_do 'echo "root=$(awk '"'"'$2 == "/" { print $1 }'"'"' /proc/mounts) fs=$(stat -f -c %T /) installed=$(wc -l </etc/vmkit-installed) var=$(tail -c +5 /sys/firmware/efi/efivars/VmkitInstalled-'"$EFI_VAR_GUID"') current=$(tail -c +5 /sys/firmware/efi/efivars/BootCurrent-'"$EFI_GLOBAL_GUID"' | od -An -tx2 | tr -d " ")"; echo installed-$((6+7))-done' \
        installed-13-done "the installed system did not answer" || return
    got=$(shell_out | grep '^root=' | tail -n 1)
    want_line="root=/dev/vda2 fs=ext2/ext3 installed=1 var=vmkit-installed current=$(echo "$entry" | tr 'A-F' 'a-f')"
    if [ -z "$entry" ] || [ "$got" != "$want_line" ]; then
        abort_vm
        fail "the installed system: got '$got', want '$want_line' (the installer's entry: Boot${entry:-?})"
        return
    fi

    # USB hot-plug into the running system: 4 MiB the host wrote, read back whole.
    stick=/tmp/$name-stick.img
    dd if=/dev/urandom of="$stick" bs=1M count=4 2>/dev/null
    stick_md5=$(md5sum <"$stick" | cut -d' ' -f1)
    reply=$(control "usb-attach path=$stick,readonly")
    case "$reply" in
    "ok port="*) port=${reply#ok port=} ;;
    *) abort_vm; fail "usb-attach on the control socket: '$reply'"; return ;;
    esac
    # shellcheck disable=SC2016 # the guest's shell expands it
    guest_do 'n=0; while [ ! -b /dev/sda ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done; echo "stick=$(md5sum </dev/sda | cut -c1-32) ro=$(cat /sys/block/sda/ro)"; echo plug-$((3+4))-done' \
        plug-7-done "the hot-plugged drive" || return
    got=$(shell_out | grep '^stick=' | tail -n 1)
    if [ "$got" != "stick=$stick_md5 ro=1" ]; then
        abort_vm
        fail "the hot-plugged drive: got '$got', want 'stick=$stick_md5 ro=1'"
        return
    fi
    echo "nested: case $name: the hot-plugged drive read back after $(since "$started") s"
    reply=$(control "usb-detach port=$port")
    if [ "$reply" != ok ]; then abort_vm; fail "usb-detach port=$port: '$reply'"; return; fi
    # shellcheck disable=SC2016 # the guest's shell expands it
    guest_do 'n=0; while [ -b /dev/sda ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done; echo "gone=$([ -b /dev/sda ] && echo no || echo yes)"; echo unplug-$((4+5))-done' \
        unplug-9-done "the detached drive" || return
    if ! shell_out | grep -q '^gone=yes'; then
        abort_vm
        fail "/dev/sda is still there after usb-detach"
        return
    fi
    poweroff_vm || return
    result "efi-install ok: from the USB ISO with an empty store the installer ran and powered off in ${install_s}s; the disk alone booted its NVRAM entry Boot$entry (BootCurrent) to the installed system's shell in ${boot_s}s (/ = /dev/vda2 ext4, VmkitInstalled read back); a hot-plugged USB drive appeared as /dev/sda, md5-intact and read-only, and left on detach; poweroff exits 0"
}

want boot && run_case case_boot
want clock && run_case case_clock
want warnings && run_case case_warnings
want cpus && run_case case_cpus
want memory && run_case case_memory
want balloon && run_case case_balloon
want vsock && run_case case_vsock
want share && run_case case_share
want display && run_case case_display
want vnc && run_case case_vnc
want power-button && run_case case_power_button
want pci && run_case case_pci
want blk && run_case case_blk
want blk-readonly && run_case case_blk_readonly
want usb && run_case case_usb
want blk-kill && run_case case_blk_kill
want rng && run_case case_rng
want console && run_case case_console
want root-disk && run_case case_root_disk
want net && run_case case_net
want tap && run_case case_tap
{ want efi-shell || want efi-shell-kill; } && run_case case_efi_shell
# Each of its two boots runs about 90 s here: more room than the other cases' guests need, so
# that a machine running at half speed still passes.
if want efi-install; then
    CASE_TIMEOUT=360 STEP_MAX=350
    run_case case_efi_install
fi
kill "$heartbeat" 2>/dev/null
echo "nested-cases: done, $failures failed"
[ "$failures" -eq 0 ]
