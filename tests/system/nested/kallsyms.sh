#!/bin/bash
# Writes the outer machine's kernel symbols (text symbols of /proc/kallsyms, booted with
# nokaslr as run.sh boots it) to build/nested/System.map, so that a wedge dump names the
# function each outer vCPU was in. Debian's System.map is a placeholder (the real one is
# in the -dbg package), so the outer machine is booted once to read its own.
#   tests/system/nested/kallsyms.sh        (about a minute; nothing to do when up to date)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
dir=${VMKIT_NESTED_DIR:-$root/build/nested}
out=$dir/System.map
release=$(cat "$dir/KERNEL_RELEASE" 2>/dev/null || true)
if [ -n "$release" ] && [ -s "$out" ] && [ "$(head -n 1 "$out")" = "# $release" ]; then
    exit 0
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/vmkit-kallsyms.XXXXXX")
trap 'rm -rf "$work"' EXIT
truncate -s 64M "$work/disk.img"
cat >"$work/script.sh" <<'INNER'
#!/bin/sh
{ uname -r; grep -i ' t ' /proc/kallsyms | cut -d' ' -f1-3; } >/tmp/syms
dd if=/tmp/syms of=/dev/vda bs=1M conv=fsync 2>/dev/null && echo "nested-kallsyms: $(wc -l </tmp/syms) lines"
INNER
VMKIT_NESTED_DISK=$work/disk.img VMKIT_NESTED_LOG=$work/log "$here/run.sh" "$work/script.sh" >/dev/null
tr -d '\0' <"$work/disk.img" >"$work/syms"
release=$(head -n 1 "$work/syms")
{ echo "# $release"; tail -n +2 "$work/syms"; } >"$out"
echo "kallsyms.sh: $(($(wc -l <"$out") - 1)) symbols of $release in $out"
