/* The translator share, vmkit's analog of Rosetta for Linux guests: Debian's qemu-user-static
 * interpreters, read-only, beside a `register` script that registers each with the guest's
 * binfmt_misc the way update-binfmts does (the magic and mask of Debian's /usr/share/binfmts
 * files, flag F so the kernel opens the interpreter at registration: it keeps working after the
 * share is unmounted and inside containers). */
#ifndef VMK_ATTACH_TRANSLATOR_SHARE_H
#define VMK_ATTACH_TRANSLATOR_SHARE_H

#include "attach/fuse_server.h"
#include "vmkit.h"

#define TRANSLATOR_BINFMTS_DIR "/usr/share/binfmts"
#define TRANSLATOR_MAX_ARCHES  48

struct translator_share {
    struct fuse_share_entry entries[TRANSLATOR_MAX_ARCHES + 1]; /* interpreters, then register */
    unsigned count;
    char *names[TRANSLATOR_MAX_ARCHES];
    char *paths[TRANSLATOR_MAX_ARCHES];
    char *script;
};

/* Reads binfmts_dir (TRANSLATOR_BINFMTS_DIR unless testing) for qemu-user-static's entries and
 * fills t. VMK_ERR_UNSUPPORTED naming the package when it holds none. */
vmk_result translator_share_load(struct translator_share *t, const char *binfmts_dir,
                                 vmk_error **err);
void translator_share_fini(struct translator_share *t);

#endif
