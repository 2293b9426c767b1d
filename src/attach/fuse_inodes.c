/* The FUSE server's inode and handle tables (fuse_inodes.h). Both grow by doubling up to their
 * bounds; an inode or handle is its own allocation, so a pointer a thread holds stays valid
 * while the slot array moves. */
#include "attach/fuse_inodes.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NO_SLOT   UINT32_MAX
#define FIRST_CAP 64u

static uint64_t slot_id(const struct fuse_slot *s, uint32_t idx)
{
    return ((uint64_t)s[idx].gen << 32) | idx;
}

/* Node ids count from 1 (FUSE_ROOT_ID is slot 0); file handles from 0. */
static uint64_t node_id(const struct fuse_tables *t, uint32_t idx)
{
    return slot_id(t->islot, idx) + 1;
}

/* Takes a free slot, growing the array up to max; NO_SLOT when full or out of memory
 * (*full tells which). */
static uint32_t slot_take(struct fuse_slot **arr, uint32_t *cap, uint32_t *count,
                          uint32_t *free_head, unsigned max, bool *full)
{
    *full = false;
    if (*count >= max) {
        *full = true;
        return NO_SLOT;
    }
    if (*free_head == NO_SLOT) {
        uint32_t ncap = *cap ? *cap * 2 : FIRST_CAP;
        if (ncap > max)
            ncap = max;
        if (ncap <= *cap) {
            *full = true;
            return NO_SLOT;
        }
        struct fuse_slot *n = realloc(*arr, (size_t)ncap * sizeof(*n));
        if (!n)
            return NO_SLOT;
        /* New slots chain in index order, so the first taken is slot 0. */
        for (uint32_t i = *cap; i < ncap; i++)
            n[i] = (struct fuse_slot){ .p = NULL,
                                       .gen = 0,
                                       .next_free = i + 1 < ncap ? i + 1 : NO_SLOT };
        *arr = n;
        *free_head = *cap;
        *cap = ncap;
    }
    uint32_t idx = *free_head;
    *free_head = (*arr)[idx].next_free;
    (*count)++;
    return idx;
}

static void slot_give(struct fuse_slot *arr, uint32_t *count, uint32_t *free_head, uint32_t idx)
{
    arr[idx].p = NULL;
    arr[idx].gen++; /* the old id names nothing from now */
    arr[idx].next_free = *free_head;
    *free_head = idx;
    (*count)--;
}

/* The slot an id names, if it is live and of the same generation. */
static void *slot_find(const struct fuse_slot *arr, uint32_t cap, uint64_t id)
{
    uint32_t idx = (uint32_t)id, gen = (uint32_t)(id >> 32);
    if (idx >= cap || !arr[idx].p || arr[idx].gen != gen)
        return NULL;
    return arr[idx].p;
}

static uint32_t hash_key(dev_t dev, ino_t ino, int entry)
{
    uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull;
    h ^= ((uint64_t)dev + (uint64_t)(unsigned)entry * 0x85EBCA6Bu) * 0xC2B2AE3D27D4EB4Full;
    return (uint32_t)(h ^ (h >> 29));
}

int fuse_tables_init(struct fuse_tables *t, unsigned max_inodes, unsigned max_handles)
{
    memset(t, 0, sizeof(*t));
    t->max_inodes = max_inodes;
    t->max_handles = max_handles;
    t->ifree = t->hfree = NO_SLOT;
    t->nbucket = 64;
    t->bucket = malloc(t->nbucket * sizeof(*t->bucket));
    if (!t->bucket)
        return -ENOMEM;
    memset(t->bucket, 0xff, t->nbucket * sizeof(*t->bucket));
    int e = pthread_mutex_init(&t->lock, NULL);
    if (e) {
        free(t->bucket);
        return -e;
    }
    return 0;
}

/* ---- inodes ---- */

static void hash_insert(struct fuse_tables *t, struct fuse_inode *n)
{
    uint32_t b = hash_key(n->dev, n->ino, n->entry) & (t->nbucket - 1);
    n->hnext = t->bucket[b];
    t->bucket[b] = n->slot;
    n->hashed = true;
}

static void hash_remove(struct fuse_tables *t, struct fuse_inode *n)
{
    uint32_t *p = &t->bucket[hash_key(n->dev, n->ino, n->entry) & (t->nbucket - 1)];
    while (*p != NO_SLOT) {
        struct fuse_inode *c = t->islot[*p].p;
        if (c == n) {
            *p = n->hnext;
            n->hashed = false;
            return;
        }
        p = &c->hnext;
    }
}

/* Doubles the buckets when there are more inodes than buckets; failing to is harmless. */
static void hash_grow(struct fuse_tables *t)
{
    if (t->icount <= t->nbucket || t->nbucket >= (1u << 30))
        return;
    uint32_t nb = t->nbucket * 2;
    uint32_t *b = malloc(nb * sizeof(*b));
    if (!b)
        return;
    memset(b, 0xff, nb * sizeof(*b));
    free(t->bucket);
    t->bucket = b;
    t->nbucket = nb;
    for (uint32_t i = 0; i < t->icap; i++) {
        struct fuse_inode *n = t->islot[i].p;
        if (n && n->hashed)
            hash_insert(t, n);
    }
}

static struct fuse_inode *hash_find(struct fuse_tables *t, dev_t dev, ino_t ino, int entry)
{
    uint32_t i = t->bucket[hash_key(dev, ino, entry) & (t->nbucket - 1)];
    while (i != NO_SLOT) {
        struct fuse_inode *n = t->islot[i].p;
        if (n->dev == dev && n->ino == ino && n->entry == entry)
            return n;
        i = n->hnext;
    }
    return NULL;
}

/* Under the lock: a new inode in a free slot, hashed when it has a host file. */
static int inode_insert(struct fuse_tables *t, int fd, const struct stat *st, int entry,
                        bool pinned, struct fuse_inode **out)
{
    struct fuse_inode *n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    bool full;
    uint32_t idx = slot_take(&t->islot, &t->icap, &t->icount, &t->ifree, t->max_inodes, &full);
    if (idx == NO_SLOT) {
        free(n);
        return full ? -ENFILE : -ENOMEM;
    }
    n->fd = fd;
    n->entry = entry;
    n->pinned = pinned;
    n->slot = idx;
    n->hnext = NO_SLOT;
    if (st) {
        n->type = st->st_mode & S_IFMT;
        n->dev = st->st_dev;
        n->ino = st->st_ino;
    }
    t->islot[idx].p = n;
    n->nodeid = node_id(t, idx);
    if (fd >= 0) {
        hash_insert(t, n);
        hash_grow(t);
    }
    *out = n;
    return 0;
}

/* Under the lock: frees n if nobody counts or holds it; returns the fd to close (-1: none). */
static int inode_maybe_free(struct fuse_tables *t, struct fuse_inode *n)
{
    if (n->pinned || n->nlookup || n->refs)
        return -1;
    if (n->hashed)
        hash_remove(t, n);
    slot_give(t->islot, &t->icount, &t->ifree, n->slot);
    int fd = n->fd;
    free(n);
    return fd;
}

static void close_fd(int fd)
{
    if (fd >= 0)
        close(fd);
}

struct fuse_inode *fuse_inode_add_pinned(struct fuse_tables *t, int fd, const struct stat *st,
                                         int entry)
{
    struct fuse_inode *n = NULL;
    pthread_mutex_lock(&t->lock);
    /* An entry that is the same host file as one before it stays apart from it: the key has
     * the entry in it. */
    int e = inode_insert(t, fd, fd >= 0 ? st : NULL, entry, true, &n);
    if (!e && fd < 0 && st)
        n->type = st->st_mode & S_IFMT;
    pthread_mutex_unlock(&t->lock);
    if (e) {
        close_fd(fd);
        return NULL;
    }
    return n;
}

struct fuse_inode *fuse_inode_get(struct fuse_tables *t, uint64_t nodeid)
{
    if (nodeid == 0)
        return NULL;
    pthread_mutex_lock(&t->lock);
    struct fuse_inode *n = slot_find(t->islot, t->icap, nodeid - 1);
    if (n)
        n->refs++;
    pthread_mutex_unlock(&t->lock);
    return n;
}

void fuse_inode_hold(struct fuse_tables *t, struct fuse_inode *n)
{
    pthread_mutex_lock(&t->lock);
    n->refs++;
    pthread_mutex_unlock(&t->lock);
}

void fuse_inode_put(struct fuse_tables *t, struct fuse_inode *n)
{
    if (!n)
        return;
    pthread_mutex_lock(&t->lock);
    n->refs--;
    int fd = inode_maybe_free(t, n);
    pthread_mutex_unlock(&t->lock);
    close_fd(fd);
}

int fuse_inode_learn(struct fuse_tables *t, int fd, const struct stat *st, int entry,
                     struct fuse_inode **out)
{
    pthread_mutex_lock(&t->lock);
    struct fuse_inode *n = hash_find(t, st->st_dev, st->st_ino, entry);
    int e = 0;
    if (n) {
        n->nlookup++;
        n->refs++;
    } else {
        e = inode_insert(t, fd, st, entry, false, &n);
        if (!e) {
            n->nlookup = 1;
            n->refs = 1;
            fd = -1; /* the inode's now */
        }
    }
    pthread_mutex_unlock(&t->lock);
    close_fd(fd);
    *out = e ? NULL : n;
    return e;
}

void fuse_inode_lookup_inc(struct fuse_tables *t, struct fuse_inode *n)
{
    pthread_mutex_lock(&t->lock);
    n->nlookup++;
    pthread_mutex_unlock(&t->lock);
}

static int forget_locked(struct fuse_tables *t, struct fuse_inode *n, uint64_t count)
{
    n->nlookup = count >= n->nlookup ? 0 : n->nlookup - count;
    return inode_maybe_free(t, n);
}

void fuse_inode_forget(struct fuse_tables *t, uint64_t nodeid, uint64_t count)
{
    if (nodeid == 0)
        return;
    pthread_mutex_lock(&t->lock);
    struct fuse_inode *n = slot_find(t->islot, t->icap, nodeid - 1);
    int fd = n ? forget_locked(t, n, count) : -1;
    pthread_mutex_unlock(&t->lock);
    close_fd(fd);
}

void fuse_inode_unlearn(struct fuse_tables *t, struct fuse_inode *node, uint64_t count)
{
    pthread_mutex_lock(&t->lock);
    int fd = forget_locked(t, node, count);
    pthread_mutex_unlock(&t->lock);
    close_fd(fd);
}

bool fuse_inode_room(struct fuse_tables *t)
{
    pthread_mutex_lock(&t->lock);
    bool room = t->icount < t->max_inodes;
    pthread_mutex_unlock(&t->lock);
    return room;
}

/* ---- handles ---- */

int fuse_handle_new(struct fuse_tables *t, struct fuse_inode *node, int fd, bool dir, bool writable,
                    uint64_t *fh)
{
    struct fuse_handle *h = calloc(1, sizeof(*h));
    if (!h || pthread_mutex_init(&h->dir_lock, NULL) != 0) {
        free(h);
        close_fd(fd);
        return -ENOMEM;
    }
    h->fd = fd;
    h->node_fd = -1;
    h->node = node;
    h->dir = dir;
    h->writable = writable;
    pthread_mutex_lock(&t->lock);
    bool full;
    uint32_t idx = slot_take(&t->hslot, &t->hcap, &t->hcount, &t->hfree, t->max_handles, &full);
    if (idx != NO_SLOT) {
        h->slot = idx;
        t->hslot[idx].p = h;
        node->refs++;
        *fh = slot_id(t->hslot, idx);
    }
    pthread_mutex_unlock(&t->lock);
    if (idx == NO_SLOT) {
        pthread_mutex_destroy(&h->dir_lock);
        free(h);
        close_fd(fd);
        return full ? -EMFILE : -ENOMEM;
    }
    return 0;
}

struct fuse_handle *fuse_handle_get(struct fuse_tables *t, uint64_t fh)
{
    pthread_mutex_lock(&t->lock);
    struct fuse_handle *h = slot_find(t->hslot, t->hcap, fh);
    if (h)
        h->refs++;
    pthread_mutex_unlock(&t->lock);
    return h;
}

/* Under the lock: a released handle nobody holds leaves the table; returns it to destroy. */
static struct fuse_handle *handle_maybe_free(struct fuse_tables *t, struct fuse_handle *h)
{
    if (!h->released || h->refs)
        return NULL;
    /* Its inode is let go here, still under the lock; the caller closes what went. */
    h->node->refs--;
    h->node_fd = inode_maybe_free(t, h->node);
    h->node = NULL;
    return h;
}

static void handle_destroy(struct fuse_handle *h)
{
    if (!h)
        return;
    close_fd(h->fd);
    close_fd(h->node_fd);
    pthread_mutex_destroy(&h->dir_lock);
    free(h->dents);
    free(h);
}

void fuse_handle_put(struct fuse_tables *t, struct fuse_handle *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&t->lock);
    h->refs--;
    struct fuse_handle *dead = handle_maybe_free(t, h);
    pthread_mutex_unlock(&t->lock);
    handle_destroy(dead);
}

/* Under the lock: takes h out of the table (its id names nothing from now). */
static struct fuse_handle *release_locked(struct fuse_tables *t, struct fuse_handle *h)
{
    slot_give(t->hslot, &t->hcount, &t->hfree, h->slot);
    h->released = true;
    return handle_maybe_free(t, h);
}

int fuse_handle_release(struct fuse_tables *t, uint64_t fh, bool dir)
{
    pthread_mutex_lock(&t->lock);
    struct fuse_handle *h = slot_find(t->hslot, t->hcap, fh);
    bool ok = h && h->dir == dir;
    struct fuse_handle *dead = ok ? release_locked(t, h) : NULL;
    pthread_mutex_unlock(&t->lock);
    handle_destroy(dead);
    return ok ? 0 : -EBADF;
}

/* ---- the whole ---- */

void fuse_tables_forget_all(struct fuse_tables *t)
{
    for (;;) {
        /* Closing happens outside the lock, a few at a time. */
        int fds[64];
        struct fuse_handle *dead[64];
        unsigned nfd = 0, ndead = 0;
        bool more = false;
        pthread_mutex_lock(&t->lock);
        for (uint32_t i = 0; i < t->hcap && !more; i++) {
            struct fuse_handle *h = t->hslot[i].p;
            if (!h)
                continue;
            if (ndead == 64) {
                more = true;
                break;
            }
            struct fuse_handle *d = release_locked(t, h);
            if (d)
                dead[ndead++] = d;
        }
        for (uint32_t i = 0; i < t->icap && !more; i++) {
            struct fuse_inode *n = t->islot[i].p;
            if (!n || !n->nlookup)
                continue;
            if (nfd == 64) {
                more = true;
                break;
            }
            int fd = forget_locked(t, n, UINT64_MAX);
            if (fd >= 0)
                fds[nfd++] = fd;
        }
        pthread_mutex_unlock(&t->lock);
        for (unsigned i = 0; i < ndead; i++)
            handle_destroy(dead[i]);
        for (unsigned i = 0; i < nfd; i++)
            close(fds[i]);
        if (!more)
            return;
    }
}

void fuse_tables_counts(struct fuse_tables *t, unsigned *inodes, unsigned *handles)
{
    pthread_mutex_lock(&t->lock);
    if (inodes)
        *inodes = t->icount;
    if (handles)
        *handles = t->hcount;
    pthread_mutex_unlock(&t->lock);
}

void fuse_tables_fini(struct fuse_tables *t)
{
    fuse_tables_forget_all(t);
    for (uint32_t i = 0; i < t->icap; i++) {
        struct fuse_inode *n = t->islot[i].p;
        if (n) {
            close_fd(n->fd);
            free(n);
        }
    }
    /* Handles still held by a thread (none may be, by the contract) are leaked, not freed
     * under it. */
    free(t->islot);
    free(t->hslot);
    free(t->bucket);
    pthread_mutex_destroy(&t->lock);
    memset(t, 0, sizeof(*t));
}
