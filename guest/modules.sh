# Helpers for building initramfs images from an unpacked Debian kernel package (bash, sourced
# by guest/build.sh and tests/system/nested/build-base.sh).

# copy_modules MODDIR DEST NAME...
# Copies the named modules from MODDIR (an unpacked lib/modules/<release> with modules.dep)
# and every module modules.dep says they need into DEST (…/lib/modules/<release> of a staging
# tree), uncompressed, because busybox insmod/modprobe may not read .ko.xz or .ko.zst. Then
# runs depmod there so busybox modprobe resolves the same dependencies at boot. Names may use
# '-' or '_'; a name the package lacks is reported and skipped.
copy_modules() {
    local moddir=$1 dest=$2 name rel deps f src dst
    shift 2
    local -A want=()
    for name in "$@"; do
        # modules.dep lines read "kernel/path/mod.ko[.xz]: dep.ko dep.ko ..." (deps transitive).
        local line
        line=$(awk -v n="${name//-/_}" -F: '{
                    b = $1; sub(/.*\//, "", b); sub(/\.ko(\.(xz|zst|gz))?$/, "", b);
                    gsub(/-/, "_", b);
                    if (b == n) { print; exit }
                }' "$moddir/modules.dep")
        if [ -z "$line" ]; then
            echo "modules.sh: module '$name' is not in $(basename "$moddir"); skipped" >&2
            continue
        fi
        rel=${line%%:*}
        deps=${line#*:}
        want[$rel]=1
        for f in $deps; do want[$f]=1; done
    done

    mkdir -p "$dest"
    for rel in "${!want[@]}"; do
        src="$moddir/$rel"
        dst="$dest/${rel%.xz}"
        dst=${dst%.zst}
        dst=${dst%.gz}
        mkdir -p "$(dirname "$dst")"
        case "$rel" in
        *.ko.xz) xz -dc "$src" >"$dst" ;;
        *.ko.zst) zstd -qdc "$src" >"$dst" ;;
        *.ko.gz) gzip -dc "$src" >"$dst" ;;
        *) cp "$src" "$dst" ;;
        esac
    done
    for f in modules.order modules.builtin modules.builtin.modinfo; do
        [ -f "$moddir/$f" ] && cp "$moddir/$f" "$dest/"
    done
    # depmod -b BASE RELEASE reads BASE/lib/modules/RELEASE.
    local release base
    release=$(basename "$dest")
    base=${dest%/lib/modules/*}
    depmod -b "$base" "$release"
}

# install_initramfs STAGE VMLINUZ OUTDIR NAME GZIP_LEVEL
# Adds root's passwd/group entries to the staging tree, packs it as a reproducible newc
# archive (sorted names, owner 0:0) compressed with gzip -GZIP_LEVEL into OUTDIR/NAME, and
# copies the kernel to OUTDIR/vmlinuz; each file appears whole (written aside, then renamed).
install_initramfs() {
    local stage=$1 vmlinuz=$2 out=$3 name=$4 level=$5
    echo "root:x:0:0:root:/root:/bin/sh" >"$stage/etc/passwd"
    echo "root:x:0:" >"$stage/etc/group"
    (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort |
        cpio -o -H newc -R 0:0 --quiet | gzip "-${level}n") >"$out/$name.tmp"
    cp "$vmlinuz" "$out/vmlinuz.tmp"
    mv "$out/vmlinuz.tmp" "$out/vmlinuz"
    mv "$out/$name.tmp" "$out/$name"
}
