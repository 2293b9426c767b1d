# copy_with_libs.sh, sourced by bash scripts: copy_with_libs BIN ROOT DIR [NAME] copies the
# program at path BIN to ROOT/DIR (as NAME when given), and each shared library ldd names for it
# to the same path under ROOT (one already there is kept), so that a root built from ROOT (an
# initramfs, an ISO's layer) runs it with the host's own loader and libraries.
copy_with_libs() {
    mkdir -p "$2/$3"
    cp -L "$1" "$2/$3/${4:-}"
    { ldd "$1" 2>/dev/null || true; } | awk '/=> \// { print $3 } /^\t\// { print $1 }' |
        while read -r lib; do
            [ -e "$2$lib" ] && continue
            mkdir -p "$2$(dirname "$lib")"
            cp -L "$lib" "$2$lib"
        done
}
