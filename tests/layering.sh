#!/usr/bin/env bash
# The layering docs/architecture.md draws, checked on the #include lines: a folder of src/
# includes only from itself and the folders below it, so the graph has no cycle and no
# generic folder reaches into arch/; the CLI (tools/vmkit) includes only vmkit.h and its
# own headers, as any program embedding the library would. One TAP case each.
#   tests/layering.sh
cd "$(dirname "$0")/.." || exit 1
echo "1..2"

# What each folder of src/ may include besides itself and vmkit.h.
allowed() {
    case $1 in
    core) echo "" ;;
    block | attach | devices/legacy | kvm | pci) echo "core" ;;
    devices/usb) echo "core pci" ;;
    arch/x86) echo "core pci" ;;
    virtio) echo "core block attach pci" ;;
    vhost_user) echo "core virtio" ;;
    machine) echo "core block attach devices/legacy devices/usb kvm pci arch/x86 virtio" ;;
    api) echo "core block arch/x86 vhost_user machine" ;;
    *) echo "?" ;;
    esac
}

bad=""
for f in $(git ls-files 'src/*.c' 'src/*.h'); do
    rel=${f#src/}
    from=$(dirname "$rel")
    ok=" $(allowed "$from") "
    if [ "$ok" = " ? " ]; then
        bad+="$f: folder $from has no place in the layering (tests/layering.sh)"$'\n'
        continue
    fi
    while read -r inc; do
        [ -n "$inc" ] || continue
        to=$(dirname "$inc")
        [ "$to" = . ] && [ "$inc" = vmkit.h ] && continue
        [ "$to" = . ] && to=$from # a header beside the file
        [ "$to" = "$from" ] && continue
        case "$ok" in *" $to "*) continue ;; esac
        bad+="$f includes $inc: $from may include only from: $(allowed "$from")"$'\n'
    done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f")
done
if [ -z "$bad" ]; then
    echo "ok 1 - src/ folders include only from the layers below"
else
    echo "not ok 1 - src/ folders include only from the layers below"
    printf '%s' "$bad" | sed 's/^/# /'
fi

bad=""
for f in $(git ls-files 'tools/vmkit/*.c' 'tools/vmkit/*.h'); do
    while read -r inc; do
        [ -n "$inc" ] || continue
        [ "$inc" = vmkit.h ] && continue
        [ -f "tools/vmkit/$inc" ] && continue
        bad+="$f includes $inc"$'\n'
    done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f")
done
if [ -z "$bad" ]; then
    echo "ok 2 - the CLI includes only vmkit.h and its own headers"
else
    echo "not ok 2 - the CLI includes only vmkit.h and its own headers"
    printf '%s' "$bad" | sed 's/^/# /'
fi
