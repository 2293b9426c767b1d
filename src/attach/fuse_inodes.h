/* The FUSE server's inode and handle tables. A node id or file handle is a slot index with the
 * slot's generation in the top 32 bits, so a guest can name only a live slot, and a reused slot
 * answers to a new id. Inodes are found by (st_dev, st_ino, share entry); each holds an O_PATH
 * fd and the guest's lookup count. Threads hold an inode or handle with a reference while they
 * use it: a FORGET or RELEASE from another thread frees it only when the last user lets go. */
#ifndef VMK_ATTACH_FUSE_INODES_H
#define VMK_ATTACH_FUSE_INODES_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

struct fuse_inode {
    int fd;        /* O_PATH | O_NOFOLLOW, or -1: the made-up root, a memory file */
    int entry;     /* share entry it belongs to; -1 for the made-up root */
    uint32_t type; /* S_IFMT bits, fixed for the inode's life */
    dev_t dev;     /* the key, with ino and entry (host inodes only) */
    ino_t ino;
    uint64_t nodeid;
    /* Under the table's lock: */
    uint64_t nlookup;
    unsigned refs;
    bool pinned; /* a root or share entry: never freed before the table */
    bool hashed;
    uint32_t hnext; /* the hash chain, as slot indices */
    uint32_t slot;
};

struct fuse_handle {
    int fd;                  /* opened for I/O, or -1: memory file, made-up root */
    struct fuse_inode *node; /* held (a reference) until the handle goes */
    bool dir;
    bool writable;
    pthread_mutex_t dir_lock; /* a directory's position and the entries below */
    /* Entries getdents gave that the last READDIR had no room for, so the next one (asking
     * from dents_from) starts there without seeking: on tmpfs a seek walks from the start. */
    char *dents;
    size_t dents_len, dents_pos;
    uint64_t dents_from;
    /* Under the table's lock: */
    unsigned refs;
    bool released;
    uint32_t slot;
    int node_fd; /* when the handle's going took its inode too: that inode's fd to close */
};

struct fuse_slot {
    void *p; /* struct fuse_inode * or struct fuse_handle *; NULL when free */
    uint32_t gen;
    uint32_t next_free;
};

struct fuse_tables {
    pthread_mutex_t lock;
    unsigned max_inodes, max_handles;
    struct fuse_slot *islot; /* inodes: slot 0 is the root, FUSE_ROOT_ID */
    uint32_t icap, icount, ifree;
    uint32_t *bucket; /* hash heads (slot indices), nbucket a power of two */
    uint32_t nbucket;
    struct fuse_slot *hslot; /* handles */
    uint32_t hcap, hcount, hfree;
};

int fuse_tables_init(struct fuse_tables *t, unsigned max_inodes, unsigned max_handles);
/* Closes every fd and frees everything; nothing may be in use. */
void fuse_tables_fini(struct fuse_tables *t);

/* Adds an inode that never goes (roots, share entries), with lookup count 0. The first one
 * added is node id FUSE_ROOT_ID. fd < 0 for one without a host file (st then NULL). Takes fd,
 * closing it on failure. Returns NULL only when out of memory. */
struct fuse_inode *fuse_inode_add_pinned(struct fuse_tables *t, int fd, const struct stat *st,
                                         int entry);

/* The inode a node id names, held: fuse_inode_put when done; NULL for an id nobody knows. */
struct fuse_inode *fuse_inode_get(struct fuse_tables *t, uint64_t nodeid);
void fuse_inode_hold(struct fuse_tables *t, struct fuse_inode *n);
void fuse_inode_put(struct fuse_tables *t, struct fuse_inode *n);

/* The guest learnt of the host file fd (O_PATH, described by st) in entry: finds or adds its
 * inode, counts one lookup, and returns it held through *out. Takes fd (closed when the inode
 * was known already, or on failure). -ENFILE beyond max_inodes, -ENOMEM. */
int fuse_inode_learn(struct fuse_tables *t, int fd, const struct stat *st, int entry,
                     struct fuse_inode **out);
/* One more lookup of a known inode (a share entry named in the made-up root). */
void fuse_inode_lookup_inc(struct fuse_tables *t, struct fuse_inode *n);
/* The guest forgets n lookups (clamped): at zero the inode goes, once no thread holds it. */
void fuse_inode_forget(struct fuse_tables *t, uint64_t nodeid, uint64_t n);
/* Counts the inode's lookups down by n (clamped) through a pointer held by the caller. */
void fuse_inode_unlearn(struct fuse_tables *t, struct fuse_inode *node, uint64_t n);
/* Whether the table has room for one more inode (a hint: a creation checks before it makes
 * something on the host it then could not report). */
bool fuse_inode_room(struct fuse_tables *t);

/* A new handle on node (held by the handle from now) for fd; takes fd (closed on failure).
 * -EMFILE beyond max_handles. */
int fuse_handle_new(struct fuse_tables *t, struct fuse_inode *node, int fd, bool dir, bool writable,
                    uint64_t *fh);
/* The handle fh names, held; NULL for one nobody knows. */
struct fuse_handle *fuse_handle_get(struct fuse_tables *t, uint64_t fh);
void fuse_handle_put(struct fuse_tables *t, struct fuse_handle *h);
/* RELEASE: the handle is forgotten now and closed once no thread holds it; -EBADF if unknown. */
int fuse_handle_release(struct fuse_tables *t, uint64_t fh, bool dir);

/* Every lookup count to zero and every handle released (DESTROY, reset): what nobody holds
 * goes now, the rest when let go. Pinned inodes stay. */
void fuse_tables_forget_all(struct fuse_tables *t);
void fuse_tables_counts(struct fuse_tables *t, unsigned *inodes, unsigned *handles);

#endif
