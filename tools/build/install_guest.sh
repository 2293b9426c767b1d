#!/bin/sh
# meson install step: the default guest (guest/out, made by guest/build.sh) goes to
# <prefix>/share/vmkit/guest, where an installed vmkit run looks for it. A tree whose guest
# was never built installs without it and says so.
src=$MESON_SOURCE_ROOT/guest/out
dest=${MESON_INSTALL_DESTDIR_PREFIX:?run by meson install}/share/vmkit/guest
if [ ! -f "$src/vmlinuz" ] || [ ! -f "$src/initramfs.img" ]; then
    echo "install_guest.sh: no default guest in $src (guest/build.sh makes it); not installed"
    exit 0
fi
mkdir -p "$dest"
for f in vmlinuz initramfs.img rootfs.ext4 KERNEL_RELEASE VERSION; do
    [ -f "$src/$f" ] || continue
    cp --sparse=always "$src/$f" "$dest/$f.tmp" && mv "$dest/$f.tmp" "$dest/$f" || exit 1
done
echo "install_guest.sh: default guest installed in $dest"
