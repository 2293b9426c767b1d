#!/bin/sh
# The boot census (boot_census.sh runs it as the outer machine's /run.sh): boots the default
# guest again and again under each variant named on the outer command line and prints one line
# per boot, so that a fault that comes once in fifteen boots can be counted, and compared with
# a reference VMM on the same emulated machine.
#
#   nested.census=VARIANT:COUNT[,VARIANT:COUNT...]   (boots run round-robin over the variants)
#
# Variants:
#   vmkit             vmkit run (the default guest, 1 vCPU, 512 MiB)
#   vmkit-noxsave     the same with noxsave on the guest's command line
#   vmkit-smp2        vmkit run --cpus 2
#   qemu              exec qemu-system-x86_64 -accel kvm -cpu host, same kernel, initramfs, memory
#   qemu-noxsave      the same with noxsave
#   qemu-smp2         the same with -smp 2
#   vmkit@NAME        /usr/bin/vmkit-NAME run (another build of vmkit, packed by boot_census.sh)
#
# A boot ends in one of: ok (prompt, then poweroff and a clean exit), triple-fault (vmkit's
# error), reset (QEMU: the guest reset, which -no-reboot turns into an exit; a triple fault
# without a reboot message), exited (the VMM ended before the prompt otherwise), stall (no console output for STALL_S
# seconds: a slow guest goes on, one that lost a timer or an interrupt does not), slow (no
# prompt within BOOT_S seconds though output kept coming), no-exit (poweroff did not end it).
# Each line: "nested-census: VARIANT N OUTCOME prompt=S maxgap=S status=N | last console line".
STALL_S=${STALL_S:-90}
BOOT_S=${BOOT_S:-300}
CMDLINE="console=ttyS0 panic=-1"
G=${VMKIT_GUEST_DIR:-/usr/share/vmkit/guest}

plan=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^nested\.census=//p')
[ -n "$plan" ] || plan=vmkit:30,qemu:30,vmkit-noxsave:30

uptime_s() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }'; }

qemu_boot() {
    extra=$1
    shift
    # -no-reboot: a guest reset (a triple fault among them) ends QEMU with status 0;
    # -d cpu_reset logs each reset, so such an end is told from a power-off.
    exec qemu-system-x86_64 -accel kvm -cpu host -m 512 "$@" -nodefaults -display none \
        -serial stdio -monitor none -no-reboot -L /usr/share/qemu \
        -d cpu_reset -D /tmp/census/qemu-reset.log \
        -kernel "$G/vmlinuz" -initrd "$G/initramfs.img" -append "$CMDLINE$extra"
}

start_variant() {
    case "$1" in
    vmkit) exec vmkit run ;;
    vmkit-noxsave) exec vmkit run --cmdline "$CMDLINE noxsave" ;;
    vmkit-smp2) exec vmkit run --cpus 2 ;;
    vmkit@*) exec "vmkit-${1#vmkit@}" run ;;
    qemu) qemu_boot "" -smp 1 ;;
    qemu-noxsave) qemu_boot " noxsave" -smp 1 ;;
    qemu-smp2) qemu_boot "" -smp 2 ;;
    *) echo "census: unknown variant $1" >&2; exit 99 ;;
    esac
}

# diagnose LABEL PID: what the VMM's threads and the outer kernel do while the guest is stuck:
# each thread's state, kernel stack and CPU time twice, 3 s apart (a spinning thread gains
# time, a blocked one does not), and the outer kernel threads that gained CPU time meanwhile.
diagnose() {
    label=$1
    p=$2
    snap() {
        for t in /proc/"$p"/task/*; do
            tid=${t##*/}
            # fields 14, 15: utime, stime (ticks); 3: state; 39: CPU
            set -- $(cut -d' ' -f3,14,15,39 "$t/stat" 2>/dev/null)
            echo "$tid $(cat "$t/comm" 2>/dev/null) state=$1 utime=$2 stime=$3 cpu=$4" \
                "wchan=$(cat "$t/wchan" 2>/dev/null)"
        done
    }
    ksnap() {
        for k in /proc/[0-9]*; do
            [ -r "$k/stat" ] || continue
            set -- $(cut -d' ' -f2,14,15 "$k/stat" 2>/dev/null)
            echo "${k#/proc/} $1 $(($2 + $3))"
        done
    }
    snap >/tmp/diag.a
    ksnap >/tmp/kdiag.a
    sleep 3
    snap >/tmp/diag.b
    ksnap >/tmp/kdiag.b
    sed "s/^/nested-census-diag: $label| t0 /" /tmp/diag.a
    sed "s/^/nested-census-diag: $label| t3 /" /tmp/diag.b
    for t in /proc/"$p"/task/*; do
        echo "nested-census-diag: $label| stack of ${t##*/}:"
        sed "s/^/nested-census-diag: $label|   /" "$t/stack" 2>/dev/null
    done
    # Outer processes and kernel threads that ran meanwhile (ticks in 3 s).
    awk 'NR == FNR { a[$1] = $3; next } ($1 in a) && $3 - a[$1] > 5 { print $1, $2, $3 - a[$1] }' \
        /tmp/kdiag.a /tmp/kdiag.b | sed "s/^/nested-census-diag: $label| busy /"
    grep -E 'LOC|CAL|RES|TLB|^ *0:' /proc/interrupts | sed "s/^/nested-census-diag: $label| irq /"
}

# boot_once VARIANT N
boot_once() {
    v=$1
    dir=/tmp/census
    rm -rf "$dir"
    mkdir -p "$dir"
    mkfifo "$dir/in"
    : >"$dir/out"
    exec 3<>"$dir/in"
    t0=$(uptime_s)
    (start_variant "$v") <"$dir/in" >"$dir/out" 2>"$dir/err" &
    pid=$!
    last=0
    quiet=0
    maxgap=0
    outcome=
    prompt=-
    status=-
    while :; do
        if grep -qF 'guest# ' "$dir/out"; then
            prompt=$(since "$t0")
            break
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid"
            status=$?
            if grep -q 'triple fault' "$dir/err"; then
                outcome=triple-fault
            elif [ "$(grep -c '^CPU Reset' "$dir/qemu-reset.log" 2>/dev/null)" -gt 2 ]; then
                # QEMU resets its CPUs twice as it starts; a third reset is the guest's. The
                # registers QEMU logged then (its view as the guest went down) go with it.
                outcome=reset
                awk '/^CPU Reset/ { n++ } n == 3' "$dir/qemu-reset.log" | sed -n '1,4p' |
                    sed 's/^/qemu: /' >>"$dir/err"
            else
                outcome=exited
            fi
            break
        fi
        size=$(wc -c <"$dir/out")
        if [ "$size" -eq "$last" ]; then
            quiet=$((quiet + 1))
            [ "$quiet" -gt "$maxgap" ] && maxgap=$quiet
        else
            quiet=0
            last=$size
        fi
        if [ "$quiet" -ge $((STALL_S * 2)) ]; then
            outcome=stall
            break
        fi
        if [ "$(since "$t0" | cut -d. -f1)" -ge "$BOOT_S" ]; then
            outcome=slow
            break
        fi
        sleep 0.5
    done
    [ "$outcome" = stall ] && diagnose "$v $2" "$pid"
    if [ -z "$outcome" ]; then
        printf 'poweroff\n' >&3
        n=0
        while kill -0 "$pid" 2>/dev/null && [ "$n" -lt 120 ]; do
            sleep 0.5
            n=$((n + 1))
        done
        if kill -0 "$pid" 2>/dev/null; then
            outcome=no-exit
        else
            wait "$pid"
            status=$?
            outcome=ok
            [ "$status" -eq 0 ] || outcome=bad-exit
        fi
    fi
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    exec 3>&-
    lastline=$(tr -d '\r' <"$dir/out" | grep -v '^ *$' | tail -n 1 | cut -c1-160)
    err=$(grep -m1 -E 'triple|fault|error|^qemu: (CPU|RAX|RIP)' "$dir/err" | cut -c1-200)
    echo "nested-census: $v $2 $outcome prompt=$prompt maxgap=$(awk -v q="$maxgap" 'BEGIN { print q / 2 }') status=$status | $lastline${err:+ | $err}"
    if [ "$outcome" != ok ]; then
        tr -d '\r' <"$dir/out" | tail -n 30 | sed "s/^/nested-census-out: $v $2| /"
        sed "s/^/nested-census-err: $v $2| /" "$dir/err" | tail -n 10
        cp "$dir/out" "/tmp/census-$v-$2.out"
    fi
}

variants=$(echo "$plan" | tr ',' ' ')
max=0
for vc in $variants; do
    c=${vc##*:}
    [ "$c" -gt "$max" ] && max=$c
done
echo "nested-census: plan $plan, stall after ${STALL_S}s without output, $(grep -c ^processor /proc/cpuinfo) outer CPUs"
i=1
while [ "$i" -le "$max" ]; do
    for vc in $variants; do
        v=${vc%%:*}
        c=${vc##*:}
        [ "$i" -le "$c" ] && boot_once "$v" "$i"
    done
    i=$((i + 1))
done
echo "nested-census: done"
