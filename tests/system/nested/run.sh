#!/bin/bash
# Runs SCRIPT inside the outer machine of vmkit's nested tests: QEMU TCG with -cpu max (which
# emulates AMD SVM), a Debian kernel that loads kvm_amd, and vmkit with its default guest, so
# vmkit runs real KVM guests on a host without hardware virtualization.
#
#   tests/system/nested/run.sh SCRIPT [--interactive]
#
# SCRIPT (busybox sh) becomes the outer machine's /run.sh. The machine powers off when it
# ends. Non-interactive: the outer serial console goes to stdout and to a log file, under a
# time limit; the exit status is SCRIPT's, or 124 when the time ran out, 125 when the
# machine stopped without running SCRIPT to its end, or 126 when it wedged (its kernel
# reported a soft lockup, or no progress line came for VMKIT_NESTED_SILENCE seconds) and
# was killed. --interactive: the terminal is the outer
# serial console (QEMU's Ctrl-A x quits), so a person can type into a guest's shell.
#
# Environment:
#   VMKIT_BIN             vmkit binary to pack (build/tools/vmkit/vmkit); its ldd libraries go too
#   VMKIT_NESTED_DIR      where build-base.sh caches the outer machine (build/nested)
#   VMKIT_NESTED_LOG      log file (VMKIT_NESTED_DIR/logs/<script>.log)
#   VMKIT_NESTED_TIMEOUT  seconds before the outer machine is killed (600; none if interactive)
#   VMKIT_NESTED_SILENCE  seconds without a "nested..." line before it is killed (150)
#   VMKIT_NESTED_SMP, VMKIT_NESTED_MEM   outer CPUs and memory (2, 3G)
#   VMKIT_NESTED_ACCEL    the outer machine's accelerator (tcg; tcg,thread=single runs its
#                         vCPUs on one host thread, an experiment of boot_census.sh)
#   VMKIT_NESTED_CASES    comma-separated cases for cases.sh (nested.cases= on the outer
#                         command line; all when empty)
#   VMKIT_NESTED_DISK     a raw disk image the outer machine sees as /dev/vda (virtio-blk),
#                         e.g. the default guest's root disk, so what the guest writes there
#                         outlives the outer machine (setup.sh)
#   VMKIT_NESTED_EXTRA    a directory whose tree is added to the outer machine's root (a
#                         reference VMM and its libraries for boot_census.sh, say)
#   VMKIT_NESTED_APPEND   more words for the outer kernel's command line
#   VMKIT_NESTED_HOSTFWD  a QEMU hostfwd rule (tcp:127.0.0.1:8080-:8080): the outer machine
#                         gets a NIC on QEMU's user network with it, at 10.0.2.15 (setup.sh)
#   QEMU                  the outer machine's emulator (default: build-outer-qemu.sh's, Debian's
#                         QEMU with vmkit's fixes to its SVM emulation)
set -euo pipefail
# set -e ends the script at a failed command: say which, rather than exit without a word.
on_error='echo "run.sh: line $LINENO: a command failed (status $?)" >&2'
trap "$on_error" ERR

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)

usage() {
    echo "usage: $0 SCRIPT [--interactive]" >&2
    exit 2
}

script=
interactive=0
for arg in "$@"; do
    case "$arg" in
    --interactive) interactive=1 ;;
    -h | --help) usage ;;
    -*) echo "run.sh: unknown option '$arg'" >&2; usage ;;
    *) [ -z "$script" ] || usage; script=$arg ;;
    esac
done
[ -n "$script" ] || usage
[ -f "$script" ] || { echo "run.sh: no such script: $script" >&2; exit 2; }
case "${VMKIT_NESTED_CASES:-}" in
*[!a-z0-9,-]*) echo "run.sh: VMKIT_NESTED_CASES: case names, comma-separated" >&2; exit 2 ;;
esac

dir=${VMKIT_NESTED_DIR:-$root/build/nested}
vmkit=${VMKIT_BIN:-$root/build/tools/vmkit/vmkit}
limit=${VMKIT_NESTED_TIMEOUT:-600}
# cases.sh prints a line every 30 s while it runs (and census.sh at every boot): far longer
# without one is a wedge.
silence=${VMKIT_NESTED_SILENCE:-150}
log=${VMKIT_NESTED_LOG:-$dir/logs/$(basename "$script" .sh).log}

# The outer machine's emulator: Debian's QEMU with vmkit's fixes to its SVM emulation
# (build-outer-qemu.sh, built once and cached), unless $QEMU names another. Where it cannot
# be built (no deb-src access, say), Debian's own serves: its SVM races make an inner
# guest stall or triple-fault now and then, which the bounded retries absorb and count.
# The line below says which one ran; test_nested.sh reports it with the "outer" case.
mkdir -p "$dir"
if [ -n "${QEMU:-}" ]; then
    qemu=$QEMU
    echo "run.sh: outer QEMU: $qemu (\$QEMU)" >&2
elif qemu=$("$here/build-outer-qemu.sh" "$dir/outer-qemu" 2>"$dir/outer-qemu-build.log"); then
    echo "run.sh: outer QEMU: $qemu (Debian's source with vmkit's SVM fixes)" >&2
else
    why=$(grep -v '^build-outer-qemu.sh: \(fetching\|applying\|building\|installing\)' \
        "$dir/outer-qemu-build.log" | tail -n 3 | tr '\n' ' ')
    qemu="qemu-system-x86_64"
    echo "run.sh: outer QEMU: Debian's $qemu, unpatched: the patched one could not be" \
        "built (${why:-build-outer-qemu.sh failed}; $dir/outer-qemu-build.log)" >&2
fi
command -v "$qemu" >/dev/null || {
    echo "run.sh: $qemu not found (apt-get install qemu-system-x86)" >&2
    exit 2
}

work=$(mktemp -d "${TMPDIR:-/tmp}/vmkit-nested.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Quiet unless it fails: in --interactive mode the terminal belongs to the guest.
if ! "$here/build-base.sh" "$dir" 2>"$work/build.log"; then
    cat "$work/build.log" >&2
    echo "run.sh: building the outer machine failed" >&2
    exit 2
fi
stage="$work/stage"
mkdir -p "$stage/usr/bin"

# vmkit and the shared libraries it needs, at the paths the dynamic loader looks them up.
if [ -x "$vmkit" ]; then
    cp "$vmkit" "$stage/usr/bin/vmkit"
    # "libc.so.6 => /lib/.../libc.so.6 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)";
    # a static binary has none.
    # libslirp too, with what it needs: vmkit loads it (dlopen) for its NAT.
    # awk reads all of it: exiting at the match would kill ldconfig with SIGPIPE, and
    # pipefail would end this script there, silently (it did, now and then).
    slirp=$(ldconfig -p 2>/dev/null | awk '/libslirp\.so\.0 .*x86-64/ && !n++ { print $NF }')
    { ldd "$vmkit" 2>/dev/null || true; [ -n "$slirp" ] && { echo "	$slirp (0x0)"; ldd "$slirp"; }; } |
        awk '/=> \// { print $3 } /^\t\// { print $1 }' | sort -u | while read -r lib; do
            mkdir -p "$stage$(dirname "$lib")"
            cp -L "$lib" "$stage$lib"
        done
else
    echo "run.sh: warning: no vmkit binary at $vmkit (build it: ninja -C build);" \
        "the outer machine will have none" >&2
fi
# shellcheck source=tests/support/copy_with_libs.sh
. "$root/tests/support/copy_with_libs.sh"
# stage_binary BIN ROOT DIR: the host's BIN at ROOT/DIR, with the shared libraries it needs at
# their own paths under ROOT. False when the host has no BIN.
stage_binary() {
    local path
    path=$(command -v "$1") || return 1
    copy_with_libs "$path" "$2" "$3"
}
# socat, for the vsock case: in the outer machine (the host's end), and as an archive that
# the case appends to the default guest's initramfs (the guest's end, called by its path:
# busybox has no vsock).
if stage_binary socat "$stage" usr/bin && stage_binary socat "$work/guest-extra" usr/local/bin; then
    mkdir -p "$stage/usr/share/vmkit/guest-extra"
    (cd "$work/guest-extra" && find . -mindepth 1 | LC_ALL=C sort |
        cpio -o -H newc -R 0:0 --quiet | gzip -1n) >"$stage/usr/share/vmkit/guest-extra/socat.cpio.gz"
else
    echo "run.sh: warning: no socat on this host (apt-get install socat); the vsock case" \
        "cannot run" >&2
fi
# rfb_keys, for the vnc case: a tiny RFB client that types keys through vmkit's VNC server,
# built static (the outer machine has busybox only; no VNC client there).
if ! command -v gcc >/dev/null; then
    echo "run.sh: warning: no gcc on this host; the vnc case cannot run" >&2
elif ! gcc -static -O2 -o "$stage/usr/bin/rfb_keys" "$here/rfb_keys.c" 2>"$work/rfb_keys.log"; then
    echo "run.sh: warning: rfb_keys did not build (static libc: apt-get install libc6-dev);" \
        "the vnc case cannot run: $(head -n 3 "$work/rfb_keys.log" | tr '\n' ' ')" >&2
fi
# The translator share's parts, for the share case: qemu-user-static's aarch64 interpreter and
# its binfmts entry (what vmkit reads), and Debian's arm64 busybox-static for the guest to run.
if [ -x /usr/bin/qemu-aarch64-static ] && [ -f /usr/share/binfmts/qemu-aarch64 ] &&
    arm64=$("$root/tests/support/foreign_busybox.sh"); then
    mkdir -p "$stage/usr/bin" "$stage/usr/share/binfmts" "$stage/usr/libexec/qemu-binfmt" \
        "$stage/usr/share/vmkit/guest-extra"
    cp /usr/bin/qemu-aarch64-static "$stage/usr/bin/"
    cp /usr/share/binfmts/qemu-aarch64 "$stage/usr/share/binfmts/"
    cp -P /usr/libexec/qemu-binfmt/aarch64-binfmt-P "$stage/usr/libexec/qemu-binfmt/" 2>/dev/null ||
        ln -s ../../bin/qemu-aarch64-static "$stage/usr/libexec/qemu-binfmt/aarch64-binfmt-P"
    cp "$arm64" "$stage/usr/share/vmkit/guest-extra/busybox-arm64"
else
    echo "run.sh: warning: no qemu-user-static or arm64 busybox; the share case cannot run its" \
        "translator part" >&2
fi
# Debian's OVMF (package ovmf), for the efi-shell case: the code and the variable template at
# the paths vmkit looks for them.
if [ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] && [ -f /usr/share/OVMF/OVMF_VARS_4M.fd ]; then
    mkdir -p "$stage/usr/share/OVMF"
    cp /usr/share/OVMF/OVMF_CODE_4M.fd /usr/share/OVMF/OVMF_VARS_4M.fd "$stage/usr/share/OVMF/"
else
    echo "run.sh: warning: no OVMF on this host (apt-get install ovmf); the efi-shell case" \
        "cannot run" >&2
fi
# vmkit's installer ISO (GRUB for EFI, Debian's kernel, the default guest with a scripted
# installer), for the efi-install case: the firmware boots it from a USB drive.
guest_out="$root/guest/out"
if "$root/tests/support/make_installer_iso.sh" "$guest_out" "$work/installer.iso" \
    2>"$work/installer-iso.log"; then
    mkdir -p "$stage/usr/share/vmkit"
    mv "$work/installer.iso" "$stage/usr/share/vmkit/installer.iso"
else
    echo "run.sh: warning: no installer ISO ($(head -c 300 "$work/installer-iso.log")); the" \
        "efi-install case cannot run" >&2
fi
install -m 0755 "$script" "$stage/run.sh"
if [ -n "${VMKIT_NESTED_EXTRA:-}" ]; then
    [ -d "$VMKIT_NESTED_EXTRA" ] || { echo "run.sh: VMKIT_NESTED_EXTRA: no such directory" >&2; exit 2; }
    cp -a "$VMKIT_NESTED_EXTRA/." "$stage/"
fi

# Linux unpacks concatenated archives in order, so this one adds to the base.
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort |
    cpio -o -H newc -R 0:0 --quiet | gzip -1n) >"$work/run.cpio.gz"
cat "$dir/base.cpio.gz" "$work/run.cpio.gz" >"$work/initrd"

# nokaslr: the wedge dump's addresses are System.map's.
append="console=ttyS0 panic=-1 quiet nokaslr${VMKIT_NESTED_CASES:+ nested.cases=$VMKIT_NESTED_CASES}"
append+="${VMKIT_NESTED_APPEND:+ $VMKIT_NESTED_APPEND}"
nic=none
if [ -n "${VMKIT_NESTED_HOSTFWD:-}" ]; then
    nic="user,model=virtio-net-pci,hostfwd=$VMKIT_NESTED_HOSTFWD"
    append+=" nested.net" # the outer /init brings the NIC up
fi
qemu_args=(-accel "${VMKIT_NESTED_ACCEL:-tcg}" -cpu max -smp "${VMKIT_NESTED_SMP:-2}" -m "${VMKIT_NESTED_MEM:-3G}"
    -nic "$nic" -no-reboot -kernel "$dir/vmlinuz" -initrd "$work/initrd")

if [ -n "${VMKIT_NESTED_DISK:-}" ]; then
    [ -f "$VMKIT_NESTED_DISK" ] || [ -b "$VMKIT_NESTED_DISK" ] ||
        { echo "run.sh: VMKIT_NESTED_DISK: no such image: $VMKIT_NESTED_DISK" >&2; exit 2; }
    # In -drive options a comma is written twice.
    qemu_args+=(-drive "file=${VMKIT_NESTED_DISK//,/,,},if=virtio,format=raw")
    # nested.disk tells the outer /init to load virtio_blk.
    append+=" nested.disk"
fi

if [ "$interactive" -eq 1 ]; then
    # Serial and monitor share the terminal (raw): ^C reaches the guest, Ctrl-A x quits.
    # nested.interactive tells the outer /init to give SCRIPT the console as its terminal.
    "$qemu" "${qemu_args[@]}" -append "$append nested.interactive" -nographic
    exit $?
fi

mkdir -p "$(dirname "$log")"
echo "run.sh: outer machine running $(basename "$script") (limit ${limit}s, log $log)" >&2
rm -f "$log.pid" "$log.wedged" "$log.wedge"
: >"$log"
# The emulated machine has been seen to wedge: a kvm-pit kernel thread spinning on one
# vCPU (soft lockup) for good, or both vCPUs busy for good with no line printed, nested
# SVM under TCG. Kill it when its kernel reports a soft lockup, or when no progress line
# ("nested...") came for so long that no case can be running (a case's steps time out
# well within that); first ask its monitor where each vCPU is, twice, into $log.wedge.
monitor=$work/monitor.sock
# The outer kernel's symbols (kallsyms.sh writes them; the outer kernel boots with
# nokaslr, so they hold): a wedge dump names the function each vCPU is in.
sysmap=$dir/System.map
# hmp COMMAND...: the outer QEMU's answers to human-monitor commands, then the symbol
# of each kernel RIP they showed.
hmp() {
    HMP_SYSMAP=$sysmap python3 - "$monitor" "$@" <<'PY'
import bisect, os, re, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
def answer():
    buf = b""
    while not buf.endswith(b"(qemu) "):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", buf.decode(errors="replace")).replace("\r", "")
    return text.split("\n", 1)[1] if "\n" in text else text  # the first line echoes the command
answer()
rips = set()
stacks = []  # (cpu, kernel addresses found on its stack)
cpu = None
for command in sys.argv[2:]:
    s.sendall(command.encode() + b"\n")
    out = answer()
    print("(qemu) " + command + "\n" + out.rsplit("(qemu) ", 1)[0], end="")
    rips.update(int(r, 16) for r in re.findall(r"RIP=(ffffffff[0-9a-f]{8})", out))
    if command.startswith("cpu "):
        cpu = command.split()[1]
    elif "gx $rsp" in command:
        words = re.findall(r"0x(ffffffff[0-9a-f]{8})\b", out.split(":", 1)[-1])
        stacks.append((cpu, [int(w, 16) for w in words]))
syms = []
if os.path.exists(os.environ["HMP_SYSMAP"]):
    for line in open(os.environ["HMP_SYSMAP"]):
        f = line.split()
        if len(f) >= 3 and f[1] in "Tt":
            syms.append((int(f[0], 16), f[2]))
    syms.sort()
else:
    print("(no %s: tests/system/nested/kallsyms.sh writes it)" % os.environ["HMP_SYSMAP"])
def name(addr):
    i = bisect.bisect_right(syms, (addr, "\xff")) - 1
    return "%s+0x%x" % (syms[i][1], addr - syms[i][0]) if i >= 0 else "?"
for rip in sorted(rips):
    print("RIP %x = %s" % (rip, name(rip)))
# Return addresses among the stack words: a rough backtrace, innermost first.
text_end = syms[-1][0] if syms else 0
for c, words in stacks:
    names = [name(w) for w in words if syms and syms[0][0] <= w <= text_end]
    print("stack of cpu %s: %s" % (c, " < ".join(names) if names else "(no kernel text)"))
PY
}
wedge_dump() {
    local cpus=${VMKIT_NESTED_SMP:-2} c args=()
    for _ in 1 2; do
        args+=("info registers -a")
        for ((c = 0; c < cpus; c++)); do
            args+=("cpu $c" "x/8i \$pc" "x/64gx \$rsp")
        done
        hmp "${args[@]}" 2>&1
        args=()
        sleep 2
    done
}
(
    set +e  # the watchdog lives until killed: a grep that matches nothing is no reason to end
    last=-1
    quiet=0
    while sleep 10; do
        lines=$(tr -d '\r' <"$log" 2>/dev/null | grep -c '^nested')
        if [ "$lines" != "$last" ]; then
            last=$lines
            quiet=0
        else
            quiet=$((quiet + 10))
        fi
        if { [ "$quiet" -ge "$silence" ] || grep -q 'BUG: soft lockup' "$log"; } &&
            [ -s "$log.pid" ]; then
            wedge_dump >"$log.wedge"
            touch "$log.wedged"
            kill -KILL "$(cat "$log.pid")" 2>/dev/null
            exit 0
        fi
    done
) &
watchdog=$!
set +e
trap - ERR # its status is looked at below
timeout -k 10 "$limit" "$qemu" "${qemu_args[@]}" -append "$append" -display none \
    -monitor "unix:$monitor,server=on,wait=off" -serial stdio -pidfile "$log.pid" \
    </dev/null | tee "$log"
qemu_status=${PIPESTATUS[0]}
set -e
trap "$on_error" ERR
kill "$watchdog" 2>/dev/null || true
wait "$watchdog" 2>/dev/null || true

if [ -e "$log.wedged" ]; then
    echo "run.sh: the outer machine wedged (a soft lockup, or no progress for ${silence}s) and was" \
        "killed; where its vCPUs were: $log.wedge" >&2
    exit 126
fi
if [ "$qemu_status" -eq 124 ] || [ "$qemu_status" -eq 137 ]; then
    echo "run.sh: the outer machine ran past ${limit}s and was killed" >&2
    exit 124
fi
status=$(tr -d '\r' <"$log" | sed -n 's/^nested: \/run.sh exited with status \([0-9]*\)$/\1/p' |
    tail -n 1)
if [ -z "$status" ]; then
    echo "run.sh: the outer machine stopped (QEMU status $qemu_status) before" \
        "$(basename "$script") finished; see $log" >&2
    exit 125
fi
exit "$status"
