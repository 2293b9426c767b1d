/* System tests: tiny hand-written guests (tests/guests) driven through the
 * public API only. Each test boots one guest under KVM and checks what a user
 * of libvmkit would see: serial output, states, delegate callbacks, results.
 *
 * Every test needing /dev/kvm is skipped on a host without it. Waits are long
 * (WAIT_MS) because on a kvm_pvm host guest kernel code is emulated; no test
 * asserts on how long anything took. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "vmkit.h"

#ifndef VMK_TINY_GUEST_DIR
#define VMK_TINY_GUEST_DIR "tests/guests"
#endif

#define WAIT_MS    30000
#define MAX_STATES 64
#define MIB        (1024ULL * 1024ULL)

/* ---- Delegate recorder ----------------------------------------------------- */

struct recorder {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    vmk_vm *vm; /* the VM the callbacks must name */
    vmk_vm_state states[MAX_STATES];
    unsigned n_states;
    unsigned did_stop;
    unsigned errors;
    unsigned wrong_vm;
    vmk_result error_code;
    char error_msg[1024];
};

static void recorder_init(struct recorder *r)
{
    pthread_condattr_t attr;

    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cond, &attr);
    pthread_condattr_destroy(&attr);
}

static void recorder_destroy(struct recorder *r)
{
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
}

static void rec_note_vm(struct recorder *r, vmk_vm *vm)
{
    if (vm != r->vm)
        r->wrong_vm++;
}

static void on_state_changed(vmk_vm *vm, vmk_vm_state state, void *user)
{
    struct recorder *r = user;

    pthread_mutex_lock(&r->lock);
    rec_note_vm(r, vm);
    if (r->n_states < MAX_STATES)
        r->states[r->n_states++] = state;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static void on_guest_did_stop(vmk_vm *vm, void *user)
{
    struct recorder *r = user;

    pthread_mutex_lock(&r->lock);
    rec_note_vm(r, vm);
    r->did_stop++;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static void on_did_stop_with_error(vmk_vm *vm, const vmk_error *err, void *user)
{
    struct recorder *r = user;

    pthread_mutex_lock(&r->lock);
    rec_note_vm(r, vm);
    r->errors++;
    r->error_code = err ? vmk_error_code(err) : VMK_OK;
    snprintf(r->error_msg, sizeof(r->error_msg), "%s",
             err ? vmk_error_message(err) : "(NULL error)");
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static const vmk_vm_delegate recorder_delegate = {
    .size = sizeof(vmk_vm_delegate),
    .state_changed = on_state_changed,
    .guest_did_stop = on_guest_did_stop,
    .did_stop_with_error = on_did_stop_with_error,
};

static void deadline_after(struct timespec *ts, int timeout_ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += timeout_ms / 1000;
    ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

enum rec_cond { REC_LAST_STATE, REC_DID_STOP, REC_ERRORS };

static bool rec_cond_holds(const struct recorder *r, enum rec_cond what, unsigned value)
{
    switch (what) {
    case REC_LAST_STATE:
        return r->n_states > 0 && r->states[r->n_states - 1] == (vmk_vm_state)value;
    case REC_DID_STOP: return r->did_stop >= value;
    case REC_ERRORS: return r->errors >= value;
    }
    return false;
}

/* Callbacks may trail vmk_vm_wait (they run on the VM's own thread), so tests
 * wait for the callbacks themselves before they count them. */
static bool rec_wait(struct recorder *r, enum rec_cond what, unsigned value, int timeout_ms)
{
    struct timespec deadline;
    bool ok;

    deadline_after(&deadline, timeout_ms);
    pthread_mutex_lock(&r->lock);
    while (!(ok = rec_cond_holds(r, what, value))) {
        if (pthread_cond_timedwait(&r->cond, &r->lock, &deadline) == ETIMEDOUT) {
            ok = rec_cond_holds(r, what, value);
            break;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return ok;
}

static void rec_states_string(struct recorder *r, char *buf, size_t cap)
{
    size_t used = 0;

    buf[0] = '\0';
    pthread_mutex_lock(&r->lock);
    for (unsigned i = 0; i < r->n_states && used < cap; i++) {
        int n = snprintf(buf + used, cap - used, "%s%s", i ? "," : "",
                         vmk_vm_state_string(r->states[i]));
        if (n < 0)
            break;
        used += (size_t)n;
    }
    pthread_mutex_unlock(&r->lock);
}

/* Asserts the recorded states are exactly `want`. */
static void assert_states_exactly(struct recorder *r, const vmk_vm_state *want, unsigned n)
{
    char got[1024];
    bool same;

    pthread_mutex_lock(&r->lock);
    same = r->n_states == n;
    for (unsigned i = 0; same && i < n; i++)
        same = r->states[i] == want[i];
    pthread_mutex_unlock(&r->lock);
    if (!same) {
        rec_states_string(r, got, sizeof(got));
        fail_msg("state_changed sequence was %s", got);
    }
}

/* Asserts `want` occurs, in order, within the recorded states. */
static void assert_states_include(struct recorder *r, const vmk_vm_state *want, unsigned n)
{
    char got[1024];
    unsigned j = 0;

    pthread_mutex_lock(&r->lock);
    for (unsigned i = 0; i < r->n_states && j < n; i++)
        if (r->states[i] == want[j])
            j++;
    pthread_mutex_unlock(&r->lock);
    if (j != n) {
        rec_states_string(r, got, sizeof(got));
        fail_msg("state_changed sequence %s lacks %s (in order)", got,
                 vmk_vm_state_string(want[j]));
    }
}

/* ---- Files and output -------------------------------------------------------- */

static char *slurp(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;

    if (!f)
        return NULL;
    for (;;) {
        if (cap - len < 4096) {
            char *nbuf = realloc(buf, cap + 65536);
            if (!nbuf)
                break;
            buf = nbuf;
            cap += 65536;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        if (n == 0)
            break;
        len += n;
    }
    fclose(f);
    if (!buf)
        return NULL;
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}

static long long file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static bool file_contains(const char *path, const char *needle)
{
    char *text = slurp(path, NULL);
    bool found = text && strstr(text, needle);

    free(text);
    return found;
}

static bool wait_for_text(const char *path, const char *needle, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        if (file_contains(path, needle))
            return true;
        sleep_ms(10);
    }
    return file_contains(path, needle);
}

static bool wait_for_growth(const char *path, long long than, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        if (file_size(path) > than)
            return true;
        sleep_ms(10);
    }
    return file_size(path) > than;
}

static bool contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);

    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    return false;
}

static int count_dir_entries(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    int n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* ---- Fixture ----------------------------------------------------------------- */

#define MAX_VMS 2

struct fixture {
    char dir[2048];
    char out[MAX_VMS][PATH_MAX];
    struct recorder rec[MAX_VMS];
    /* VMs still alive; teardown frees them so no callback outlives a recorder
     * when an assertion ends a test early. */
    vmk_vm *vm[MAX_VMS];
    int fds[4];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    const char *tmp = getenv("TMPDIR");

    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "%s/vmkit-tiny-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    for (int i = 0; i < MAX_VMS; i++) {
        snprintf(f->out[i], sizeof(f->out[i]), "%s/serial%d.txt", f->dir, i);
        recorder_init(&f->rec[i]);
    }
    for (int i = 0; i < 4; i++)
        f->fds[i] = -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    DIR *d;
    struct dirent *e;
    char path[PATH_MAX + 256];

    for (int i = 0; i < MAX_VMS; i++) {
        vmk_vm_free(f->vm[i]);
        recorder_destroy(&f->rec[i]);
    }
    for (int i = 0; i < 4; i++)
        if (f->fds[i] >= 0)
            close(f->fds[i]);
    d = opendir(f->dir);
    if (d) {
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof(path), "%s/%s", f->dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static const char *guest_dir(void)
{
    const char *dir = getenv("VMK_TINY_GUEST_DIR");

    return dir && *dir ? dir : VMK_TINY_GUEST_DIR;
}

static uint64_t test_memory_size(void)
{
    uint64_t want = 16 * MIB;

    if (want < vmk_config_min_memory_size())
        want = vmk_config_min_memory_size();
    return want;
}

#define REQUIRE_KVM()                            \
    do {                                         \
        if (vmk_host_probe() == VMK_HOST_NO_KVM) \
            skip();                              \
    } while (0)

static vmk_config *guest_config(const char *guest, vmk_serial_attachment *att)
{
    char kernel[PATH_MAX];
    vmk_config *cfg = vmk_config_new();
    vmk_boot_loader *bl;

    snprintf(kernel, sizeof(kernel), "%s/%s.elf", guest_dir(), guest);
    if (access(kernel, R_OK) != 0)
        fail_msg("guest image %s is missing (set VMK_TINY_GUEST_DIR)", kernel);
    assert_non_null(cfg);
    assert_int_equal(vmk_config_set_cpu_count(cfg, 1), VMK_OK);
    assert_int_equal(vmk_config_set_memory_size(cfg, test_memory_size()), VMK_OK);
    bl = vmk_linux_boot_loader_new(kernel);
    assert_non_null(bl);
    assert_int_equal(vmk_config_set_boot_loader(cfg, bl), VMK_OK);
    if (att)
        assert_int_equal(vmk_config_add_serial_port(cfg, att), VMK_OK);
    return cfg;
}

/* Slot i of the fixture: guest `guest`, serial output to f->out[i] (or to `att`
 * when given), delegate f->rec[i]. */
static vmk_vm *make_vm_att(struct fixture *f, int i, const char *guest, vmk_serial_attachment *att)
{
    vmk_config *cfg;
    vmk_error *err = NULL;
    vmk_vm *vm;

    if (!att)
        att = vmk_file_serial_attachment_new(f->out[i], false);
    assert_non_null(att);
    cfg = guest_config(guest, att);
    vm = vmk_vm_new(cfg, &err);
    vmk_config_free(cfg);
    if (!vm)
        fail_msg("vmk_vm_new(%s): %s", guest, err ? vmk_error_message(err) : "(no error)");
    assert_null(err);
    f->vm[i] = vm;
    f->rec[i].vm = vm;
    assert_int_equal(vmk_vm_set_delegate(vm, &recorder_delegate, &f->rec[i]), VMK_OK);
    return vm;
}

static vmk_vm *make_vm(struct fixture *f, int i, const char *guest)
{
    return make_vm_att(f, i, guest, NULL);
}

static void free_vm(struct fixture *f, int i)
{
    vmk_vm_free(f->vm[i]);
    f->vm[i] = NULL;
}

/* Shows the guest's serial output for a failing test: its last lines, each as a
 * TAP comment. */
static void print_output(const char *path)
{
    char *text = slurp(path, NULL);
    const char *p;
    int lines = 0;

    if (!text) {
        print_message("# serial output %s: unreadable\n", path);
        return;
    }
    p = text + strlen(text);
    while (p > text && lines <= 20)
        if (*--p == '\n' && p[1])
            lines++;
    if (*p == '\n')
        p++;
    print_message("# serial output %s%s:\n", path, p > text ? " (last lines)" : "");
    while (*p) {
        const char *nl = strchr(p, '\n');
        int n = nl ? (int)(nl - p) : (int)strlen(p);

        print_message("# | %.*s\n", n, p);
        p += n + (nl ? 1 : 0);
    }
    free(text);
}

static void start_vm(vmk_vm *vm)
{
    vmk_error *err = NULL;
    vmk_result r = vmk_vm_start(vm, &err);

    if (r != VMK_OK)
        fail_msg("vmk_vm_start: %s: %s", vmk_result_string(r),
                 err ? vmk_error_message(err) : "(no error)");
    assert_null(err);
}

/* The error is passed by address: the call filling it is another argument, and
 * C leaves the order of argument evaluation open. */
static void expect_ok(vmk_result r, vmk_error **err, const char *what)
{
    if (r != VMK_OK)
        fail_msg("%s: %s: %s", what, vmk_result_string(r),
                 *err ? vmk_error_message(*err) : "(no error)");
    assert_null(*err);
}

/* Waits for the VM to end (STOPPED or ERROR) and for the matching callback. */
static void wait_end(struct fixture *f, int i, vmk_vm_state end)
{
    struct recorder *r = &f->rec[i];

    vmk_result w = vmk_vm_wait(f->vm[i], WAIT_MS);
    if (w == VMK_ERR_TIMEOUT) {
        print_output(f->out[i]);
        fail_msg("the VM did not stop within %d ms (state %s)", WAIT_MS,
                 vmk_vm_state_string(vmk_vm_get_state(f->vm[i])));
    }
    /* vmk_vm_wait says how it ended: OK once STOPPED, the error's code in ERROR, whose
     * message stays readable after the callback. */
    vmk_error *e = vmk_vm_copy_error(f->vm[i]);
    if (vmk_vm_get_state(f->vm[i]) == VMK_STATE_ERROR) {
        assert_non_null(e);
        assert_int_equal(w, vmk_error_code(e));
        assert_int_equal(vmk_vm_get_stop_reason(f->vm[i]), VMK_STOP_REASON_ERROR);
    } else {
        assert_int_equal(w, VMK_OK);
        assert_null(e);
    }
    vmk_error_free(e);
    if (vmk_vm_get_state(f->vm[i]) != end) {
        print_output(f->out[i]);
        fail_msg("the VM ended %s (wanted %s); error callback: %s",
                 vmk_vm_state_string(vmk_vm_get_state(f->vm[i])), vmk_vm_state_string(end),
                 r->errors ? r->error_msg : "none");
    }
    assert_true(rec_wait(r, REC_LAST_STATE, end, WAIT_MS));
}

/* A guest that stops itself: STOPPED, guest_did_stop once, no error. Frees it. */
static void finish_guest_stop(struct fixture *f, int i)
{
    struct recorder *r = &f->rec[i];

    wait_end(f, i, VMK_STATE_STOPPED);
    assert_true(rec_wait(r, REC_DID_STOP, 1, WAIT_MS));
    free_vm(f, i);
    assert_int_equal(r->did_stop, 1);
    if (r->errors)
        fail_msg("unexpected did_stop_with_error: %s", r->error_msg);
    assert_int_equal(r->wrong_vm, 0);
}

static void expect_output(struct fixture *f, int i, const char *text)
{
    if (!file_contains(f->out[i], text)) {
        print_output(f->out[i]);
        fail_msg("serial output lacks \"%s\"", text);
    }
}

static void expect_invalid_state(vmk_result r, vmk_error **err, const char *what)
{
    if (r != VMK_ERR_INVALID_STATE)
        fail_msg("%s returned %s, wanted VMK_ERR_INVALID_STATE", what, vmk_result_string(r));
    assert_non_null(*err);
    assert_int_equal(vmk_error_code(*err), VMK_ERR_INVALID_STATE);
    assert_non_null(vmk_error_message(*err));
    assert_true(strlen(vmk_error_message(*err)) > 0);
    vmk_error_free(*err);
    *err = NULL;
}

/* ---- Guests that stop themselves ------------------------------------------------ */

static void test_hello(void **state)
{
    struct fixture *f = *state;
    static const vmk_vm_state want[] = { VMK_STATE_STARTING, VMK_STATE_RUNNING, VMK_STATE_STOPPED };
    vmk_vm *vm;

    REQUIRE_KVM();
    vm = make_vm(f, 0, "hello");
    assert_int_equal(vmk_vm_get_state(vm), VMK_STATE_STOPPED);
    assert_int_equal(vmk_vm_get_debug_exit_code(vm), -1);
    assert_int_equal(vmk_vm_get_stop_reason(vm), VMK_STOP_REASON_NONE);
    start_vm(vm);
    wait_end(f, 0, VMK_STATE_STOPPED);
    assert_int_equal(vmk_vm_get_debug_exit_code(vm), -1);
    assert_int_equal(vmk_vm_get_stop_reason(vm), VMK_STOP_REASON_GUEST_POWER_OFF);
    finish_guest_stop(f, 0);
    expect_output(f, 0, "hello from vmkit guest\n");
    assert_states_exactly(&f->rec[0], want, 3);
}

static void run_to_guest_stop(struct fixture *f, const char *guest, const char *line,
                              vmk_stop_reason reason)
{
    REQUIRE_KVM();
    vmk_vm *vm = make_vm(f, 0, guest);
    start_vm(vm);
    wait_end(f, 0, VMK_STATE_STOPPED);
    assert_int_equal(vmk_vm_get_stop_reason(vm), reason);
    finish_guest_stop(f, 0);
    expect_output(f, 0, line);
}

static void test_reset_cf9(void **state)
{
    run_to_guest_stop(*state, "reset_cf9", "resetting through port 0xcf9\n",
                      VMK_STOP_REASON_GUEST_RESET);
}

static void test_reset_i8042(void **state)
{
    run_to_guest_stop(*state, "reset_i8042", "resetting through the i8042\n",
                      VMK_STOP_REASON_GUEST_RESET);
}

static void test_debug_exit(void **state)
{
    struct fixture *f = *state;
    vmk_vm *vm;

    REQUIRE_KVM();
    vm = make_vm(f, 0, "debug_exit");
    start_vm(vm);
    wait_end(f, 0, VMK_STATE_STOPPED);
    assert_int_equal(vmk_vm_get_debug_exit_code(vm), 42);
    assert_int_equal(vmk_vm_get_stop_reason(vm), VMK_STOP_REASON_GUEST_DEBUG_EXIT);
    finish_guest_stop(f, 0);
    expect_output(f, 0, "debug exit 42\n");
}

static void test_triple_fault(void **state)
{
    struct fixture *f = *state;
    struct recorder *r = &f->rec[0];

    REQUIRE_KVM();
    start_vm(make_vm(f, 0, "triple_fault"));
    wait_end(f, 0, VMK_STATE_ERROR);
    assert_true(rec_wait(r, REC_ERRORS, 1, WAIT_MS));
    free_vm(f, 0);
    assert_int_equal(r->errors, 1);
    assert_int_equal(r->did_stop, 0);
    assert_int_equal(r->wrong_vm, 0);
    assert_int_equal(r->error_code, VMK_ERR_GUEST_FAULT);
    if (!contains_nocase(r->error_msg, "triple fault") || !strstr(r->error_msg, "RIP"))
        fail_msg("error message \"%s\" should name the triple fault and RIP", r->error_msg);
    expect_output(f, 0, "about to fault\n");
}

static void test_power_button(void **state)
{
    struct fixture *f = *state;
    vmk_vm *vm;
    vmk_error *err = NULL;

    REQUIRE_KVM();
    vm = make_vm(f, 0, "power_button");
    start_vm(vm);
    if (!wait_for_text(f->out[0], "waiting for power button\n", WAIT_MS)) {
        print_output(f->out[0]);
        fail_msg("the guest never armed the power button");
    }
    assert_true(vmk_vm_can_request_stop(vm));
    expect_ok(vmk_vm_request_stop(vm, &err), &err, "vmk_vm_request_stop");
    finish_guest_stop(f, 0);
    expect_output(f, 0, "power button pressed\n");
    assert_false(file_contains(f->out[0], "did not clear"));
}

/* Reads from fd into buf (NUL-terminated) until it holds `needle`. */
static bool read_until(int fd, char *buf, size_t cap, size_t *len, const char *needle,
                       int timeout_ms)
{
    struct timespec deadline, now;

    deadline_after(&deadline, timeout_ms);
    while (!strstr(buf, needle)) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int left_ms;
        ssize_t n;

        clock_gettime(CLOCK_MONOTONIC, &now);
        left_ms = (int)((deadline.tv_sec - now.tv_sec) * 1000 +
                        (deadline.tv_nsec - now.tv_nsec) / 1000000);
        if (left_ms <= 0 || *len + 1 >= cap)
            return false;
        if (poll(&pfd, 1, left_ms) <= 0)
            continue;
        n = read(fd, buf + *len, cap - *len - 1);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return false;
        *len += (size_t)n;
        buf[*len] = '\0';
    }
    return true;
}

static void test_echo(void **state)
{
    struct fixture *f = *state;
    int in[2], out[2];
    char buf[256] = "";
    size_t len = 0;
    vmk_serial_attachment *att;
    vmk_vm *vm;

    REQUIRE_KVM();
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    f->fds[0] = in[0];
    f->fds[1] = in[1];
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    f->fds[2] = out[0];
    f->fds[3] = out[1];
    att = vmk_fd_serial_attachment_new(in[0], out[1]);
    assert_non_null(att);
    vm = make_vm_att(f, 0, "echo", att);
    start_vm(vm);
    if (!read_until(out[0], buf, sizeof(buf), &len, "ready\n", WAIT_MS))
        fail_msg("no \"ready\" from the guest; got \"%s\"", buf);
    assert_int_equal(write(in[1], "hello\n", 6), 6);
    if (!read_until(out[0], buf, sizeof(buf), &len, "HELLO\n", WAIT_MS))
        fail_msg("no echo from the guest; got \"%s\"", buf);
    finish_guest_stop(f, 0);

    /* The VM's copies are gone now: once ours is closed, EOF ends the output. */
    close(out[1]);
    f->fds[3] = -1;
    read_until(out[0], buf, sizeof(buf), &len, "\x01 never printed", 1000);
    assert_string_equal(buf, "ready\nHELLO\n");
}

/* COM1 on a pty: the path is known once the VM started, the guest's output waits there
 * for the user, and what the user types reaches the guest. */
static void test_echo_pty(void **state)
{
    struct fixture *f = *state;
    char buf[256] = "";
    size_t len = 0;

    REQUIRE_KVM();
    vmk_vm *vm = make_vm_att(f, 0, "echo", vmk_pty_serial_attachment_new());
    assert_null(vmk_vm_copy_serial_port_pty_path(vm, 0)); /* not started */
    start_vm(vm);
    char *path = vmk_vm_copy_serial_port_pty_path(vm, 0);
    assert_non_null(path);
    assert_true(strncmp(path, "/dev/pts/", 9) == 0);
    assert_null(vmk_vm_copy_serial_port_pty_path(vm, 1));
    assert_null(vmk_vm_copy_console_port_pty_path(vm, 0));
    int fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    assert_true(fd >= 0);
    f->fds[0] = fd;
    if (!read_until(fd, buf, sizeof(buf), &len, "ready\n", WAIT_MS))
        fail_msg("no \"ready\" on %s; got \"%s\"", path, buf);
    assert_int_equal(write(fd, "pty\n", 4), 4);
    if (!read_until(fd, buf, sizeof(buf), &len, "PTY\n", WAIT_MS))
        fail_msg("no echo on %s; got \"%s\"", path, buf);
    finish_guest_stop(f, 0);
    /* The pty went with the machine: our end reads a hang-up. */
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    assert_int_equal(poll(&pfd, 1, WAIT_MS), 1);
    assert_true(pfd.revents & POLLHUP);
    free(path);
}

/* COM1 on a unix socket vmkit listens on: a client types, the guest answers. */
static void test_echo_socket(void **state)
{
    struct fixture *f = *state;
    char buf[256] = "";
    size_t len = 0;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };

    REQUIRE_KVM();
    snprintf(sa.sun_path, sizeof(sa.sun_path), "/tmp/vmkit-tiny-%d.sock", (int)getpid());
    vmk_vm *vm = make_vm_att(f, 0, "echo", vmk_socket_serial_attachment_new(sa.sun_path));
    start_vm(vm);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    f->fds[0] = fd;
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(write(fd, "sock\n", 5), 5);
    if (!read_until(fd, buf, sizeof(buf), &len, "SOCK\n", WAIT_MS))
        fail_msg("no echo on %s; got \"%s\"", sa.sun_path, buf);
    finish_guest_stop(f, 0);
    assert_int_not_equal(access(sa.sun_path, F_OK), 0); /* removed at stop */
}

static void utc_date_line(char *buf, size_t cap)
{
    time_t now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    snprintf(buf, cap, "rtc %04d-%02d-%02d\n", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

static void test_rtc(void **state)
{
    struct fixture *f = *state;
    char before[64], after[64];

    REQUIRE_KVM();
    utc_date_line(before, sizeof(before));
    start_vm(make_vm(f, 0, "rtc"));
    finish_guest_stop(f, 0);
    utc_date_line(after, sizeof(after));
    /* Around midnight UTC either day is right. */
    if (!file_contains(f->out[0], before) && !file_contains(f->out[0], after)) {
        print_output(f->out[0]);
        fail_msg("the guest's date is not today's UTC date (%.*s)", (int)strlen(before) - 1,
                 before);
    }
}

/* Port 0x61 is the PIT's (KVM_PIT_SPEAKER_DUMMY): channel 2 gated from there runs out its
 * count, as Linux's TSC calibration against the PIT needs. */
static void test_pit_gate(void **state)
{
    struct fixture *f = *state;

    REQUIRE_KVM();
    start_vm(make_vm(f, 0, "pit_gate"));
    finish_guest_stop(f, 0);
    if (!file_contains(f->out[0], "pit gate ok\n")) {
        print_output(f->out[0]);
        fail_msg("channel 2 of the PIT did not behave through port 0x61");
    }
}

static void test_restart(void **state)
{
    struct fixture *f = *state;
    struct recorder *r = &f->rec[0];
    static const vmk_vm_state want[] = { VMK_STATE_STARTING, VMK_STATE_RUNNING, VMK_STATE_STOPPED,
                                         VMK_STATE_STARTING, VMK_STATE_RUNNING, VMK_STATE_STOPPED };
    vmk_vm *vm;

    REQUIRE_KVM();
    vm = make_vm(f, 0, "hello");
    start_vm(vm);
    wait_end(f, 0, VMK_STATE_STOPPED);
    assert_true(rec_wait(r, REC_DID_STOP, 1, WAIT_MS));
    expect_output(f, 0, "hello from vmkit guest\n");
    assert_true(vmk_vm_can_start(vm));

    /* The second guest_did_stop proves the guest ran through to its power-off. */
    start_vm(vm);
    wait_end(f, 0, VMK_STATE_STOPPED);
    assert_true(rec_wait(r, REC_DID_STOP, 2, WAIT_MS));
    free_vm(f, 0);
    assert_int_equal(r->did_stop, 2);
    assert_int_equal(r->errors, 0);
    expect_output(f, 0, "hello from vmkit guest\n");
    assert_states_exactly(r, want, 6);
}

/* ---- Guests the host stops ------------------------------------------------------ */

/* Every complete line must be "tick N" with N counting up from 0, and a final
 * partial line must be the start of the next one: pausing lost no state. */
static unsigned check_ticks(const char *text)
{
    unsigned next = 0;
    char want[32];

    while (*text) {
        const char *nl = strchr(text, '\n');
        size_t n = nl ? (size_t)(nl - text) : strlen(text);

        snprintf(want, sizeof(want), "tick %u", next);
        if (nl ? (n != strlen(want) || memcmp(text, want, n) != 0) : strncmp(text, want, n) != 0)
            fail_msg("line %u of the loop guest's output is \"%.*s\", wanted \"%s\"", next, (int)n,
                     text, want);
        if (!nl)
            break;
        next++;
        text = nl + 1;
    }
    return next;
}

static void test_loop_pause_resume(void **state)
{
    struct fixture *f = *state;
    struct recorder *r = &f->rec[0];
    static const vmk_vm_state want[] = { VMK_STATE_STARTING, VMK_STATE_RUNNING, VMK_STATE_PAUSED,
                                         VMK_STATE_RUNNING, VMK_STATE_STOPPED };
    vmk_error *err = NULL;
    long long paused_size;
    char *text;
    vmk_vm *vm;

    REQUIRE_KVM();
    vm = make_vm(f, 0, "loop");
    start_vm(vm);
    if (!wait_for_text(f->out[0], "tick 3\n", WAIT_MS)) {
        print_output(f->out[0]);
        fail_msg("the loop guest did not tick");
    }

    expect_ok(vmk_vm_pause(vm, &err), &err, "vmk_vm_pause");
    assert_int_equal(vmk_vm_get_state(vm), VMK_STATE_PAUSED);
    assert_true(vmk_vm_can_resume(vm));
    assert_false(vmk_vm_can_pause(vm));
    assert_false(vmk_vm_can_start(vm));
    /* Let output already on its way land, then nothing more may come. */
    sleep_ms(100);
    paused_size = file_size(f->out[0]);
    sleep_ms(300);
    assert_int_equal(file_size(f->out[0]), paused_size);
    assert_int_equal(vmk_vm_get_state(vm), VMK_STATE_PAUSED);

    expect_ok(vmk_vm_resume(vm, &err), &err, "vmk_vm_resume");
    assert_int_equal(vmk_vm_get_state(vm), VMK_STATE_RUNNING);
    /* Two more whole lines: the guest goes on where it was. */
    text = slurp(f->out[0], NULL);
    assert_non_null(text);
    char next[32];
    snprintf(next, sizeof(next), "tick %u\n", check_ticks(text) + 1);
    free(text);
    if (!wait_for_text(f->out[0], next, WAIT_MS))
        fail_msg("the output did not grow after resume (no \"%.*s\")", (int)strlen(next) - 1, next);

    assert_true(vmk_vm_can_stop(vm));
    expect_ok(vmk_vm_stop(vm, &err), &err, "vmk_vm_stop");
    assert_int_equal(vmk_vm_get_state(vm), VMK_STATE_STOPPED);
    assert_int_equal(vmk_vm_wait(vm, WAIT_MS), VMK_OK);
    assert_true(rec_wait(r, REC_LAST_STATE, VMK_STATE_STOPPED, WAIT_MS));
    free_vm(f, 0);
    assert_int_equal(r->did_stop, 0); /* the host stopped it, not the guest */
    assert_int_equal(r->errors, 0);
    assert_int_equal(r->wrong_vm, 0);
    assert_states_include(r, want, 5);

    text = slurp(f->out[0], NULL);
    assert_non_null(text);
    assert_true(check_ticks(text) > 4);
    free(text);
}

static void test_halt_stop(void **state)
{
    struct fixture *f = *state;
    struct recorder *r = &f->rec[0];
    vmk_error *err = NULL;
    vmk_vm *vm;

    REQUIRE_KVM();
    vm = make_vm(f, 0, "halt");
    start_vm(vm);
    if (!wait_for_text(f->out[0], "halting\n", WAIT_MS))
        fail_msg("the halt guest did not start");
    assert_int_equal(vmk_vm_get_state(vm), VMK_STATE_RUNNING);
    /* A halted vCPU must not stop the VM, nor keep it from stopping. */
    assert_int_equal(vmk_vm_wait(vm, 200), VMK_ERR_TIMEOUT);
    expect_ok(vmk_vm_stop(vm, &err), &err, "vmk_vm_stop");
    assert_int_equal(vmk_vm_get_state(vm), VMK_STATE_STOPPED);
    assert_int_equal(vmk_vm_wait(vm, WAIT_MS), VMK_OK);
    assert_int_equal(vmk_vm_get_stop_reason(vm), VMK_STOP_REASON_HOST_STOP);
    assert_true(vmk_vm_can_start(vm));
    assert_true(rec_wait(r, REC_LAST_STATE, VMK_STATE_STOPPED, WAIT_MS));
    free_vm(f, 0);
    assert_int_equal(r->did_stop, 0);
    assert_int_equal(r->errors, 0);
}

/* ---- The memory balloon at run time ---------------------------------------------- */

static void expect_code(vmk_result r, vmk_error **err, vmk_result want, const char *what)
{
    if (r != want)
        fail_msg("%s returned %s, wanted %s", what, vmk_result_string(r), vmk_result_string(want));
    assert_non_null(*err);
    assert_int_equal(vmk_error_code(*err), want);
    vmk_error_free(*err);
    *err = NULL;
}

static void test_balloon_target(void **state)
{
    struct fixture *f = *state;
    vmk_error *err = NULL;

    REQUIRE_KVM();
    vmk_serial_attachment *att = vmk_file_serial_attachment_new(f->out[0], false);
    assert_non_null(att);
    vmk_config *cfg = guest_config("halt", att);
    assert_int_equal(vmk_config_add_memory_balloon_device(
                         cfg, vmk_virtio_traditional_memory_balloon_device_new()),
                     VMK_OK);
    uint64_t mem = vmk_config_get_memory_size(cfg);
    vmk_vm *vm = vmk_vm_new(cfg, &err);
    vmk_config_free(cfg);
    assert_non_null(vm);
    f->vm[0] = vm;

    /* Not running: nothing to ask. */
    expect_invalid_state(vmk_vm_set_target_memory_size(vm, mem - MIB, &err), &err,
                         "set_target_memory_size before start");
    assert_int_equal(vmk_vm_get_target_memory_size(vm), 0);
    start_vm(vm);
    if (!wait_for_text(f->out[0], "halting\n", WAIT_MS))
        fail_msg("the halt guest did not start");
    /* Until a target is set, the guest keeps everything; it has no driver to give any. */
    assert_int_equal(vmk_vm_get_target_memory_size(vm), mem);
    expect_ok(vmk_vm_set_target_memory_size(vm, mem - MIB, &err), &err, "set target");
    assert_int_equal(vmk_vm_get_target_memory_size(vm), mem - MIB);
    assert_int_equal(vmk_vm_get_balloon_memory_size(vm), 0);
    expect_code(vmk_vm_set_target_memory_size(vm, mem - 4096, &err), &err, VMK_ERR_INVALID_ARGUMENT,
                "a target that is not whole MiB");
    expect_code(vmk_vm_set_target_memory_size(vm, mem + MIB, &err), &err, VMK_ERR_INVALID_ARGUMENT,
                "a target above the memory size");
    expect_code(vmk_vm_set_target_memory_size(vm, MIB, &err), &err, VMK_ERR_INVALID_ARGUMENT,
                "a target below the minimum");
    assert_int_equal(vmk_vm_get_target_memory_size(vm), mem - MIB);
    /* Paused is still running enough; the full size takes the balloon away. */
    expect_ok(vmk_vm_pause(vm, &err), &err, "pause");
    expect_ok(vmk_vm_set_target_memory_size(vm, mem, &err), &err, "set target paused");
    assert_int_equal(vmk_vm_get_target_memory_size(vm), mem);
    expect_ok(vmk_vm_stop(vm, &err), &err, "stop");
    expect_invalid_state(vmk_vm_set_target_memory_size(vm, mem, &err), &err,
                         "set_target_memory_size after stop");
    assert_int_equal(vmk_vm_get_balloon_memory_size(vm), 0);
    free_vm(f, 0);

    /* A machine without a balloon cannot have a target. */
    vm = make_vm(f, 0, "halt");
    start_vm(vm);
    expect_code(vmk_vm_set_target_memory_size(vm, mem - MIB, &err), &err, VMK_ERR_UNSUPPORTED,
                "set_target_memory_size without a balloon");
    assert_int_equal(vmk_vm_get_target_memory_size(vm), 0);
    expect_ok(vmk_vm_stop(vm, &err), &err, "stop");
    free_vm(f, 0);
    assert_int_equal(vmk_vm_set_target_memory_size(NULL, mem, NULL), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_vm_get_balloon_memory_size(NULL), 0);
}

/* A socket device's unix sockets live as long as the machine: made at start, gone at stop. */
static void test_socket_device_sockets(void **state)
{
    struct fixture *f = *state;
    vmk_error *err = NULL;

    REQUIRE_KVM();
    char dir[] = "/tmp/vmkit-vsock-XXXXXX", uds[64], listen_path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(uds, sizeof(uds), "%s/v.sock", dir);
    snprintf(listen_path, sizeof(listen_path), "%s/in.sock", dir);
    vmk_serial_attachment *att = vmk_file_serial_attachment_new(f->out[0], false);
    assert_non_null(att);
    vmk_config *cfg = guest_config("halt", att);
    vmk_socket_device *s = vmk_virtio_socket_device_new();
    assert_int_equal(vmk_virtio_socket_device_set_unix_socket_path(s, uds), VMK_OK);
    assert_int_equal(vmk_virtio_socket_device_add_port(s, 22, listen_path, true), VMK_OK);
    assert_int_equal(vmk_config_add_socket_device(cfg, s), VMK_OK);
    vmk_vm *vm = vmk_vm_new(cfg, &err);
    vmk_config_free(cfg);
    assert_non_null(vm);
    f->vm[0] = vm;
    assert_int_equal(access(uds, F_OK), -1);
    start_vm(vm);
    if (!wait_for_text(f->out[0], "halting\n", WAIT_MS))
        fail_msg("the halt guest did not start");
    struct stat st;
    assert_int_equal(stat(uds, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(stat(listen_path, &st), 0);
    expect_ok(vmk_vm_stop(vm, &err), &err, "stop");
    assert_int_equal(access(uds, F_OK), -1);
    assert_int_equal(access(listen_path, F_OK), -1);
    /* And again: a second start makes them anew. */
    start_vm(vm);
    assert_int_equal(stat(uds, &st), 0);
    expect_ok(vmk_vm_stop(vm, &err), &err, "stop");
    free_vm(f, 0);
    assert_int_equal(rmdir(dir), 0);
}

/* What the socket callbacks got, on the VM thread. */
struct socket_events {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int accepted_fd, connected_fd;
    uint32_t accepted_port;
    unsigned connects;
    vmk_result connect_result;
};

static void on_socket_accept(vmk_vm *vm, uint32_t port, int fd, void *user)
{
    struct socket_events *e = user;
    pthread_mutex_lock(&e->lock);
    e->accepted_fd = fd;
    e->accepted_port = port;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

static void on_socket_connected(vmk_vm *vm, uint32_t port, int fd, vmk_result result, void *user)
{
    struct socket_events *e = user;
    pthread_mutex_lock(&e->lock);
    e->connected_fd = fd;
    e->connect_result = result;
    e->connects++;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

/* Waits until *field (under e->lock) differs from `not`; returns it. */
static int wait_field(struct socket_events *e, const int *field, int not )
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&e->lock);
    while (*field == not &&pthread_cond_timedwait(&e->cond, &e->lock, &ts) == 0)
        ;
    int v = *field;
    pthread_mutex_unlock(&e->lock);
    return v;
}

/* Reads exactly n bytes within WAIT_MS. */
static void read_exactly(int fd, char *buf, size_t n)
{
    struct timeval tv = { .tv_sec = WAIT_MS / 1000 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0)
            fail_msg("read %zu of %zu bytes from the guest's socket", got, n);
        got += (size_t)r;
    }
}

/* The socket device's runtime API against vsock_echo, a tiny guest with its own vsock
 * driver: its connection to host port 1234 reaches the application's listener (refused when
 * there is none), and the application's connections to its port 7 echo, to port 8 fail. */
static void test_socket_api(void **state)
{
    struct fixture *f = *state;
    vmk_error *err = NULL;
    struct socket_events ev = { .lock = PTHREAD_MUTEX_INITIALIZER,
                                .cond = PTHREAD_COND_INITIALIZER,
                                .accepted_fd = -1,
                                .connected_fd = -1 };

    REQUIRE_KVM();
    vmk_serial_attachment *att = vmk_file_serial_attachment_new(f->out[0], false);
    assert_non_null(att);
    vmk_config *cfg = guest_config("vsock_echo", att);
    assert_int_equal(vmk_config_add_socket_device(cfg, vmk_virtio_socket_device_new()), VMK_OK);
    vmk_vm *vm = vmk_vm_new(cfg, &err);
    vmk_config_free(cfg);
    assert_non_null(vm);
    f->vm[0] = vm;
    expect_code(vmk_vm_connect_socket(vm, 7, on_socket_connected, &ev, &err), &err,
                VMK_ERR_INVALID_STATE, "connect before start");
    expect_code(vmk_vm_set_socket_listener(vm, 0, on_socket_accept, &ev, &err), &err,
                VMK_ERR_INVALID_ARGUMENT, "listener on port 0");

    /* No listener and no configured socket: the guest's connection is refused. */
    start_vm(vm);
    if (!wait_for_text(f->out[0], "vsock: 1234 refused\n", WAIT_MS))
        fail_msg("the guest's connection to 1234 was not refused");
    expect_ok(vmk_vm_stop(vm, &err), &err, "stop");

    /* A listener (it stays across starts): the guest's hello arrives on its socket. */
    expect_ok(vmk_vm_set_socket_listener(vm, 1234, on_socket_accept, &ev, &err), &err,
              "set listener");
    start_vm(vm);
    int fd = wait_field(&ev, &ev.accepted_fd, -1);
    if (fd < 0)
        fail_msg("no connection reached the listener");
    assert_int_equal(ev.accepted_port, 1234);
    char buf[64] = { 0 };
    read_exactly(fd, buf, 21);
    assert_string_equal(buf, "hello from the guest\n");
    close(fd);

    /* The application connects to the guest's echo port. */
    if (!wait_for_text(f->out[0], "vsock: connected to 1234\n", WAIT_MS))
        fail_msg("the guest did not say it connected");
    expect_ok(vmk_vm_connect_socket(vm, 7, on_socket_connected, &ev, &err), &err, "connect 7");
    fd = wait_field(&ev, &ev.connected_fd, -1);
    assert_int_equal(ev.connect_result, VMK_OK);
    if (fd < 0)
        fail_msg("the connection to port 7 did not complete");
    assert_int_equal(write(fd, "ping over vsock\n", 16), 16);
    memset(buf, 0, sizeof(buf));
    read_exactly(fd, buf, 16);
    assert_string_equal(buf, "ping over vsock\n");
    close(fd);

    /* Port 8: the guest refuses; the callback says so. */
    pthread_mutex_lock(&ev.lock);
    ev.connected_fd = -2;
    pthread_mutex_unlock(&ev.lock);
    expect_ok(vmk_vm_connect_socket(vm, 8, on_socket_connected, &ev, &err), &err, "connect 8");
    assert_int_equal(wait_field(&ev, &ev.connected_fd, -2), -1);
    assert_int_equal(ev.connect_result, VMK_ERR_IO);
    assert_int_equal(ev.connects, 2);
    expect_ok(vmk_vm_stop(vm, &err), &err, "stop");
    free_vm(f, 0);

    /* A machine without a socket device has none to connect over. */
    vm = make_vm(f, 0, "halt");
    start_vm(vm);
    expect_code(vmk_vm_connect_socket(vm, 7, on_socket_connected, &ev, &err), &err,
                VMK_ERR_UNSUPPORTED, "connect without a socket device");
    expect_ok(vmk_vm_stop(vm, &err), &err, "stop");
    free_vm(f, 0);
}

/* ---- Network devices at run time -------------------------------------------------- */

struct net_events {
    pthread_mutex_t lock;
    unsigned downs, ups, last_index;
};

static void on_net_changed(vmk_vm *vm, unsigned index, bool connected, void *user)
{
    struct net_events *e = user;
    (void)vm;
    pthread_mutex_lock(&e->lock);
    if (connected)
        e->ups++;
    else
        e->downs++;
    e->last_index = index;
    pthread_mutex_unlock(&e->lock);
}

static unsigned net_downs(struct net_events *e)
{
    pthread_mutex_lock(&e->lock);
    unsigned n = e->downs;
    pthread_mutex_unlock(&e->lock);
    return n;
}

/* A free loopback TCP port (bound and released: a small race with other programs). */
static unsigned free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static bool can_connect(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* The network API on a running machine, with no guest driver: a NAT device takes and drops
 * port forwards (the host port is listening, then not); a second device on a stream socket
 * whose peer closes reports link down through the delegate while the VM keeps running (a
 * datagram peer's going shows at the next frame sent to it); the
 * guest's address is unknown (no frame came). */
/* The guest's address and port forwards asked from another thread while the machine ends
 * (a triple fault, 20 times): the VM thread frees the machine while that thread looks it
 * up, which must never touch freed memory (ASan in the test build; a nested CI run caught
 * `vmkit run`'s address poll doing so). */
struct net_poller {
    vmk_vm *vm;
    unsigned port;
    atomic_bool quit;
    unsigned long calls;
};

static void *poll_network(void *arg)
{
    struct net_poller *p = arg;
    while (!atomic_load(&p->quit)) {
        free(vmk_vm_copy_network_device_ipv4_address(p->vm, 0));
        if (vmk_vm_add_port_forward(p->vm, 0, VMK_PORT_FORWARD_TCP, NULL, p->port, 80, NULL) ==
            VMK_OK)
            (void)vmk_vm_remove_port_forward(p->vm, 0, VMK_PORT_FORWARD_TCP, NULL, p->port, NULL);
        p->calls++;
    }
    return NULL;
}

static void test_network_queries_race_end(void **state)
{
    struct fixture *f = *state;
    vmk_error *err = NULL;
    REQUIRE_KVM();
    vmk_serial_attachment *att = vmk_file_serial_attachment_new(f->out[0], false);
    vmk_config *cfg = guest_config("triple_fault", att);
    assert_int_equal(vmk_config_add_network_device(
                         cfg, vmk_virtio_network_device_new(vmk_nat_network_attachment_new())),
                     VMK_OK);
    vmk_vm *vm = vmk_vm_new(cfg, &err);
    vmk_config_free(cfg);
    if (!vm)
        fail_msg("vmk_vm_new: %s", err ? vmk_error_message(err) : "?");
    struct net_poller p = { .vm = vm, .port = free_port() };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, poll_network, &p), 0);
    for (int i = 0; i < 20; i++) {
        expect_ok(vmk_vm_start(vm, &err), &err, "vmk_vm_start");
        assert_int_not_equal(vmk_vm_wait(vm, WAIT_MS), VMK_ERR_TIMEOUT);
        assert_int_equal(vmk_vm_get_state(vm), VMK_STATE_ERROR);
    }
    atomic_store(&p.quit, true);
    pthread_join(t, NULL);
    assert_true(p.calls > 0);
    vmk_vm_free(vm);
}

static void test_network_runtime(void **state)
{
    struct fixture *f = *state;
    vmk_error *err = NULL;
    REQUIRE_KVM();
    vmk_serial_attachment *att = vmk_file_serial_attachment_new(f->out[0], false);
    vmk_config *cfg = guest_config("halt", att);
    unsigned p1 = free_port(), p2 = free_port();
    vmk_network_attachment *nat = vmk_nat_network_attachment_new();
    assert_int_equal(
        vmk_nat_network_attachment_add_port_forward(nat, VMK_PORT_FORWARD_TCP, NULL, p1, 22),
        VMK_OK);
    assert_int_equal(vmk_config_add_network_device(cfg, vmk_virtio_network_device_new(nat)),
                     VMK_OK);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(
        vmk_config_add_network_device(
            cfg, vmk_virtio_network_device_new(vmk_file_handle_network_attachment_new(sv[0]))),
        VMK_OK);
    vmk_vm *vm = vmk_vm_new(cfg, &err);
    vmk_config_free(cfg);
    if (!vm)
        fail_msg("vmk_vm_new: %s", err ? vmk_error_message(err) : "?");
    struct net_events ev = { .lock = PTHREAD_MUTEX_INITIALIZER };
    vmk_vm_delegate d = { .size = sizeof(d), .network_attachment_changed = on_net_changed };
    assert_int_equal(vmk_vm_set_delegate(vm, &d, &ev), VMK_OK);
    /* Not running: no forward can change. */
    assert_int_equal(vmk_vm_add_port_forward(vm, 0, VMK_PORT_FORWARD_TCP, NULL, p2, 80, NULL),
                     VMK_ERR_INVALID_STATE);
    expect_ok(vmk_vm_start(vm, &err), &err, "vmk_vm_start");
    assert_true(can_connect(p1)); /* the config's forward listens */
    expect_ok(vmk_vm_add_port_forward(vm, 0, VMK_PORT_FORWARD_TCP, "127.0.0.1", p2, 80, &err), &err,
              "add_port_forward");
    assert_true(can_connect(p2));
    /* Taken now: a clear error naming it. */
    assert_int_equal(vmk_vm_add_port_forward(vm, 0, VMK_PORT_FORWARD_TCP, NULL, p2, 81, &err),
                     VMK_ERR_IO);
    assert_non_null(strstr(vmk_error_message(err), "Address already in use"));
    vmk_error_free(err);
    err = NULL;
    expect_ok(vmk_vm_remove_port_forward(vm, 0, VMK_PORT_FORWARD_TCP, NULL, p2, &err), &err,
              "remove_port_forward");
    assert_false(can_connect(p2));
    assert_int_equal(vmk_vm_remove_port_forward(vm, 0, VMK_PORT_FORWARD_TCP, NULL, p2, NULL),
                     VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_vm_add_port_forward(vm, 1, VMK_PORT_FORWARD_TCP, NULL, p2, 80, NULL),
                     VMK_ERR_UNSUPPORTED); /* a socket attachment has no forwards */
    assert_int_equal(vmk_vm_add_port_forward(vm, 0, VMK_PORT_FORWARD_TCP, NULL, 0, 80, NULL),
                     VMK_ERR_INVALID_ARGUMENT);
    assert_null(vmk_vm_copy_network_device_ipv4_address(vm, 0));
    /* The peer of device 2 goes away: link down, the VM runs on. */
    close(sv[1]);
    for (int i = 0; i < 100 && net_downs(&ev) == 0; i++)
        usleep(20000);
    assert_int_equal(net_downs(&ev), 1);
    assert_int_equal(ev.last_index, 1);
    assert_int_equal(vmk_vm_get_state(vm), VMK_STATE_RUNNING);
    expect_ok(vmk_vm_stop(vm, &err), &err, "vmk_vm_stop");
    assert_false(can_connect(p1)); /* the NAT's sockets went with the machine */
    vmk_vm_free(vm);
    close(sv[0]);
}

/* ---- Slow readers never stall the VM --------------------------------------------- */

static double ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Runs call on vm and fails unless it returned VMK_OK within a second. */
#define WITHIN_A_SECOND(call, what)                                                       \
    do {                                                                                  \
        struct timespec t0_;                                                              \
        vmk_error *e_ = NULL;                                                             \
        clock_gettime(CLOCK_MONOTONIC, &t0_);                                             \
        vmk_result r_ = (call);                                                           \
        double ms_ = ms_since(&t0_);                                                      \
        if (r_ != VMK_OK)                                                                 \
            fail_msg("%s: %s", what, e_ ? vmk_error_message(e_) : vmk_result_string(r_)); \
        if (ms_ > 1000)                                                                   \
            fail_msg("%s took %.0f ms", what, ms_);                                       \
        print_message("# %s: %.1f ms\n", what, ms_);                                      \
        vmk_error_free(e_);                                                               \
    } while (0)

/* The last "blk N" the virtio_io guest printed, or 0. */
static unsigned long last_blk(const char *path)
{
    char *text = slurp(path, NULL);
    unsigned long n = 0;
    for (const char *p = text; p && (p = strstr(p, "blk ")); p += 4)
        n = strtoul(p + 4, NULL, 10);
    free(text);
    return n;
}

/* COM1 on a pipe nobody reads, a guest printing as fast as it can: the UART's transmitter
 * stays busy once the buffer is full (the guest waits, as on a slow line), and no vCPU or VM
 * thread blocks: pause, resume and stop all answer within a second. Nothing was lost: the
 * pipe holds the guest's lines in order, with no gap. */
static void test_stdout_pipe_nobody_reads(void **state)
{
    struct fixture *f = *state;
    REQUIRE_KVM();
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    f->fds[0] = p[0];
    f->fds[1] = p[1]; /* the caller's until the VM is freed */
    vmk_vm *vm = make_vm_att(f, 0, "spam", vmk_fd_serial_attachment_new(-1, p[1]));
    start_vm(vm);
    /* Until the pipe (64 KiB) and the port's buffer are full and the guest waits. */
    int avail = 0;
    for (int i = 0; i < WAIT_MS / 10 && avail < 60000; i++) {
        sleep_ms(10);
        assert_int_equal(ioctl(p[0], FIONREAD, &avail), 0);
    }
    if (avail < 60000)
        fail_msg("the pipe holds only %d bytes", avail);
    sleep_ms(200);
    WITHIN_A_SECOND(vmk_vm_pause(vm, &e_), "pause");
    WITHIN_A_SECOND(vmk_vm_resume(vm, &e_), "resume");
    WITHIN_A_SECOND(vmk_vm_stop(vm, &e_), "stop");
    /* The lines, in order, none missing (the last one may be cut by the stop). */
    char buf[8192];
    ssize_t n = read(p[0], buf, sizeof(buf) - 1);
    assert_true(n > 100);
    buf[n] = '\0';
    unsigned long want = 0;
    for (char *line = buf, *nl; (nl = strchr(line, '\n')); line = nl + 1, want++) {
        char expect[32];
        snprintf(expect, sizeof(expect), "spam %lu", want);
        if ((size_t)(nl - line) != strlen(expect) || strncmp(line, expect, strlen(expect)))
            fail_msg("line %lu is \"%.*s\", not \"%s\"", want, (int)(nl - line), line, expect);
    }
    free_vm(f, 0);
}

/* virtio-console port 0 on a pipe nobody reads, a disk, and a guest driving both: once the
 * console's buffers are held (the host takes no more), disk reads still complete (the VM
 * thread that serves the doorbells never waits on the pipe), and pause and stop answer
 * within a second. */
static void test_console_held_disk_goes_on(void **state)
{
    struct fixture *f = *state;
    REQUIRE_KVM();
    char disk[PATH_MAX + 32];
    snprintf(disk, sizeof(disk), "%s/disk.img", f->dir);
    int dfd = open(disk, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(dfd >= 0);
    assert_int_equal(ftruncate(dfd, 64 << 10), 0);
    close(dfd);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    f->fds[0] = p[0];
    f->fds[1] = p[1]; /* the caller's until the VM is freed */
    vmk_config *cfg = guest_config("virtio_io", vmk_file_serial_attachment_new(f->out[0], false));
    vmk_console_device *con = vmk_virtio_console_device_new();
    assert_int_equal(vmk_virtio_console_device_add_port(con, NULL, false,
                                                        vmk_fd_serial_attachment_new(-1, p[1])),
                     VMK_OK);
    assert_int_equal(vmk_config_add_console_device(cfg, con), VMK_OK);
    assert_int_equal(
        vmk_config_add_storage_device(
            cfg, vmk_virtio_block_device_new(vmk_disk_image_attachment_new(disk, true))),
        VMK_OK);
    vmk_error *err = NULL;
    vmk_vm *vm = vmk_vm_new(cfg, &err);
    vmk_config_free(cfg);
    if (!vm)
        fail_msg("vmk_vm_new: %s", vmk_error_message(err));
    f->vm[0] = vm;
    f->rec[0].vm = vm;
    assert_int_equal(vmk_vm_set_delegate(vm, &recorder_delegate, &f->rec[0]), VMK_OK);
    start_vm(vm);
    if (!wait_for_text(f->out[0], "console held\n", WAIT_MS)) {
        print_output(f->out[0]);
        fail_msg("the guest's console output never filled the pipe");
    }
    unsigned long held_at = last_blk(f->out[0]);
    bool went_on = false;
    for (int i = 0; i < WAIT_MS / 10 && !went_on; i++) {
        sleep_ms(10);
        went_on = last_blk(f->out[0]) >= held_at + 20;
    }
    if (!went_on) {
        print_output(f->out[0]);
        fail_msg("disk reads stopped while the console was held (blk %lu, then %lu)", held_at,
                 last_blk(f->out[0]));
    }
    print_message("# console held at blk %lu; blk %lu since\n", held_at, last_blk(f->out[0]));
    WITHIN_A_SECOND(vmk_vm_pause(vm, &e_), "pause");
    WITHIN_A_SECOND(vmk_vm_stop(vm, &e_), "stop");
    /* The pipe holds the guest's console text, whole 64-byte lines in order. */
    char buf[4096];
    assert_int_equal(read(p[0], buf, sizeof(buf)), (ssize_t)sizeof(buf));
    for (unsigned k = 0; k < sizeof(buf); k++)
        if (buf[k] != (k % 64 == 63 ? '\n' : (char)('a' + k % 26)))
            fail_msg("console byte %u is 0x%02x", k, (unsigned char)buf[k]);
    free_vm(f, 0);
}

/* The delegate grows at its end: a caller states its size, the library reads that much. */
static void test_delegate_sizes(void **state)
{
    struct fixture *f = *state;
    vmk_vm *vm = make_vm(f, 0, "hello");
    vmk_vm_delegate d = recorder_delegate;
    d.size = offsetof(vmk_vm_delegate, did_stop_with_error); /* older than the first version */
    assert_int_equal(vmk_vm_set_delegate(vm, &d, &f->rec[0]), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_vm_set_delegate(NULL, &recorder_delegate, NULL), VMK_ERR_INVALID_ARGUMENT);
    /* A newer caller's larger struct: the callbacks this library knows are taken. */
    struct {
        vmk_vm_delegate d;
        void (*later)(void);
    } bigger = { .d = recorder_delegate };
    bigger.d.size = sizeof(bigger);
    assert_int_equal(vmk_vm_set_delegate(vm, &bigger.d, &f->rec[0]), VMK_OK);
    assert_int_equal(vmk_vm_set_delegate(vm, NULL, NULL), VMK_OK);
    assert_int_equal(vmk_vm_kick_signal(), SIGRTMIN + 4);
    if (vmk_host_probe() == VMK_HOST_NO_KVM) {
        free_vm(f, 0);
        return;
    }
    /* Without a delegate the VM runs as well; with the bigger one, its callbacks come. */
    assert_int_equal(vmk_vm_set_delegate(vm, &bigger.d, &f->rec[0]), VMK_OK);
    start_vm(vm);
    finish_guest_stop(f, 0);
}

/* vmk_vm_wait from a callback would wait for the thread that runs it: refused. */
struct waiting_callback {
    vmk_result wait, stop;
    unsigned calls;
};

static void wait_in_callback(vmk_vm *vm, vmk_vm_state state, void *user)
{
    struct waiting_callback *w = user;
    if (state != VMK_STATE_RUNNING)
        return;
    w->calls++;
    w->wait = vmk_vm_wait(vm, 1000);
    vmk_error *err = NULL;
    w->stop = vmk_vm_stop(vm, &err);
    vmk_error_free(err);
}

static void test_wait_from_callback(void **state)
{
    struct fixture *f = *state;
    REQUIRE_KVM();
    vmk_vm *vm = make_vm(f, 0, "halt");
    struct waiting_callback w = { 0 };
    const vmk_vm_delegate d = { .size = sizeof(d), .state_changed = wait_in_callback };
    assert_int_equal(vmk_vm_set_delegate(vm, &d, &w), VMK_OK);
    start_vm(vm);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.wait, VMK_ERR_INVALID_STATE);
    assert_int_equal(w.stop, VMK_ERR_INVALID_STATE);
    free_vm(f, 0);
}

/* Waits (bounded) for the process's thread count to fall back to `want`:
 * a library may join its threads a moment after a call returns. */
static int wait_thread_count(int want)
{
    int n = count_dir_entries("/proc/self/task");

    for (int i = 0; i < 200 && n != want; i++) {
        sleep_ms(10);
        n = count_dir_entries("/proc/self/task");
    }
    return n;
}

static void test_free_running(void **state)
{
    struct fixture *f = *state;
    int fds_before, threads_before;
    long long size;

    REQUIRE_KVM();
    fds_before = count_dir_entries("/proc/self/fd");
    threads_before = count_dir_entries("/proc/self/task");
    start_vm(make_vm(f, 0, "loop"));
    if (!wait_for_text(f->out[0], "tick 1\n", WAIT_MS))
        fail_msg("the loop guest did not tick");
    assert_true(count_dir_entries("/proc/self/task") > threads_before);

    free_vm(f, 0); /* while RUNNING */
    assert_int_equal(wait_thread_count(threads_before), threads_before);
    assert_int_equal(count_dir_entries("/proc/self/fd"), fds_before);
    size = file_size(f->out[0]);
    sleep_ms(200);
    assert_int_equal(file_size(f->out[0]), size);
    assert_int_equal(f->rec[0].errors, 0);
}

/* Four vCPUs: the three application processors sit in KVM_RUN waiting for a
 * SIPI the tiny guest never sends. Pause must still park all four, stop must
 * still join them, and each vCPU must have its own thread while running. */
static void test_smp_pause_stop(void **state)
{
    struct fixture *f = *state;
    vmk_error *err = NULL;
    int threads_before;
    long long size;

    REQUIRE_KVM();
    threads_before = count_dir_entries("/proc/self/task");
    vmk_serial_attachment *att = vmk_file_serial_attachment_new(f->out[0], false);
    vmk_config *cfg = guest_config("loop", att);
    assert_int_equal(vmk_config_set_cpu_count(cfg, 4), VMK_OK);
    vmk_vm *vm = vmk_vm_new(cfg, &err);
    vmk_config_free(cfg);
    assert_non_null(vm);
    f->vm[0] = vm;
    f->rec[0].vm = vm;
    vmk_vm_set_delegate(vm, &recorder_delegate, &f->rec[0]);
    start_vm(vm);
    if (!wait_for_text(f->out[0], "tick 1\n", WAIT_MS))
        fail_msg("the loop guest did not tick with 4 vCPUs");
    /* The VM thread plus one per vCPU. */
    assert_true(count_dir_entries("/proc/self/task") >= threads_before + 4);

    expect_ok(vmk_vm_pause(vm, &err), &err, "pause with 4 vCPUs");
    assert_int_equal(vmk_vm_get_state(vm), VMK_STATE_PAUSED);
    size = file_size(f->out[0]);
    sleep_ms(300);
    assert_int_equal(file_size(f->out[0]), size);
    expect_ok(vmk_vm_resume(vm, &err), &err, "resume with 4 vCPUs");
    if (!wait_for_growth(f->out[0], size, WAIT_MS))
        fail_msg("the guest did not run again after resume");
    expect_ok(vmk_vm_stop(vm, &err), &err, "stop with 4 vCPUs");
    assert_int_equal(vmk_vm_get_state(vm), VMK_STATE_STOPPED);
    assert_int_equal(f->rec[0].did_stop, 0);
    assert_int_equal(f->rec[0].errors, 0);
    free_vm(f, 0);
    assert_int_equal(wait_thread_count(threads_before), threads_before);
}

static void test_two_vms(void **state)
{
    struct fixture *f = *state;
    vmk_error *err = NULL;
    vmk_vm *loop;
    long long size;
    char *text;

    REQUIRE_KVM();
    loop = make_vm(f, 0, "loop");
    make_vm(f, 1, "hello");
    start_vm(loop);
    if (!wait_for_text(f->out[0], "tick 1\n", WAIT_MS))
        fail_msg("the loop guest did not tick");
    start_vm(f->vm[1]);
    finish_guest_stop(f, 1);
    expect_output(f, 1, "hello from vmkit guest\n");
    assert_false(file_contains(f->out[1], "tick"));

    /* The other VM ran on, unaffected. */
    assert_int_equal(vmk_vm_get_state(loop), VMK_STATE_RUNNING);
    size = file_size(f->out[0]);
    assert_true(wait_for_growth(f->out[0], size, WAIT_MS));
    expect_ok(vmk_vm_stop(loop, &err), &err, "vmk_vm_stop");
    assert_int_equal(vmk_vm_get_state(loop), VMK_STATE_STOPPED);
    assert_true(rec_wait(&f->rec[0], REC_LAST_STATE, VMK_STATE_STOPPED, WAIT_MS));
    free_vm(f, 0);
    assert_int_equal(f->rec[0].did_stop, 0);
    assert_int_equal(f->rec[0].errors, 0);
    assert_int_equal(f->rec[0].wrong_vm, 0);
    text = slurp(f->out[0], NULL);
    assert_non_null(text);
    assert_null(strstr(text, "hello"));
    check_ticks(text);
    free(text);
}

static void test_state_errors(void **state)
{
    struct fixture *f = *state;
    vmk_error *err = NULL;
    vmk_vm *vm;

    REQUIRE_KVM();
    vm = make_vm(f, 0, "halt");
    assert_int_equal(vmk_vm_get_state(vm), VMK_STATE_STOPPED);
    assert_true(vmk_vm_can_start(vm));
    assert_false(vmk_vm_can_pause(vm));
    assert_false(vmk_vm_can_resume(vm));
    assert_false(vmk_vm_can_request_stop(vm));

    expect_invalid_state(vmk_vm_pause(vm, &err), &err, "pause while STOPPED");
    expect_invalid_state(vmk_vm_resume(vm, &err), &err, "resume while STOPPED");
    expect_invalid_state(vmk_vm_request_stop(vm, &err), &err, "request_stop while STOPPED");
    assert_int_equal(vmk_vm_pause(vm, NULL), VMK_ERR_INVALID_STATE);
    assert_int_equal(vmk_vm_get_state(vm), VMK_STATE_STOPPED);

    start_vm(vm);
    if (!wait_for_text(f->out[0], "halting\n", WAIT_MS))
        fail_msg("the halt guest did not start");
    assert_false(vmk_vm_can_start(vm));
    assert_true(vmk_vm_can_pause(vm));
    assert_false(vmk_vm_can_resume(vm));
    assert_true(vmk_vm_can_stop(vm));
    assert_true(vmk_vm_can_request_stop(vm));
    expect_invalid_state(vmk_vm_resume(vm, &err), &err, "resume while RUNNING");
    expect_invalid_state(vmk_vm_start(vm, &err), &err, "start while RUNNING");
    assert_int_equal(vmk_vm_start(vm, NULL), VMK_ERR_INVALID_STATE);
    assert_int_equal(vmk_vm_get_state(vm), VMK_STATE_RUNNING);

    expect_ok(vmk_vm_stop(vm, &err), &err, "vmk_vm_stop");
    assert_int_equal(vmk_vm_get_state(vm), VMK_STATE_STOPPED);
    free_vm(f, 0);
    assert_int_equal(f->rec[0].errors, 0);
}

/* ---- Configurations vmk_vm_new must refuse (no KVM needed) ------------------------ */

static void expect_vm_new_fails(const vmk_config *cfg, const char *must_name)
{
    vmk_error *err = NULL;
    vmk_vm *vm = vmk_vm_new(cfg, &err);

    if (vm) {
        vmk_vm_free(vm);
        fail_msg("vmk_vm_new accepted a config without %s", must_name);
    }
    assert_non_null(err);
    assert_int_equal(vmk_error_code(err), VMK_ERR_INVALID_CONFIG);
    if (!contains_nocase(vmk_error_message(err), must_name))
        fail_msg("error \"%s\" does not name \"%s\"", vmk_error_message(err), must_name);
    vmk_error_free(err);
    assert_null(vmk_vm_new(cfg, NULL));
}

static void test_invalid_config(void **state)
{
    struct fixture *f = *state;
    char missing[PATH_MAX + 32];
    vmk_config *cfg = vmk_config_new();

    assert_non_null(cfg);
    assert_int_equal(vmk_config_set_cpu_count(cfg, 1), VMK_OK);
    assert_int_equal(vmk_config_set_memory_size(cfg, test_memory_size()), VMK_OK);
    expect_vm_new_fails(cfg, "boot");

    snprintf(missing, sizeof(missing), "%s/no-such-kernel.elf", f->dir);
    assert_int_equal(vmk_config_set_boot_loader(cfg, vmk_linux_boot_loader_new(missing)), VMK_OK);
    expect_vm_new_fails(cfg, missing);

    assert_int_equal(vmk_config_set_boot_loader(cfg, vmk_linux_boot_loader_new("")), VMK_OK);
    expect_vm_new_fails(cfg, "kernel");
    vmk_config_free(cfg);
}

static int group_setup(void **state)
{
    static const char *const kinds[] = { "none", "hardware KVM", "kvm_pvm" };
    vmk_host_kind kind = vmk_host_probe();

    (void)state;
    print_message("# host KVM: %s; guests from %s\n", (unsigned)kind < 3 ? kinds[kind] : "unknown",
                  guest_dir());
    return 0;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_hello),
        T(test_reset_cf9),
        T(test_reset_i8042),
        T(test_debug_exit),
        T(test_triple_fault),
        T(test_loop_pause_resume),
        T(test_power_button),
        T(test_echo),
        T(test_echo_pty),
        T(test_echo_socket),
        T(test_rtc),
        T(test_pit_gate),
        T(test_halt_stop),
        T(test_balloon_target),
        T(test_socket_device_sockets),
        T(test_socket_api),
        T(test_network_runtime),
        T(test_network_queries_race_end),
        T(test_free_running),
        T(test_smp_pause_stop),
        T(test_two_vms),
        T(test_state_errors),
        T(test_restart),
        T(test_invalid_config),
        T(test_delegate_sizes),
        T(test_wait_from_callback),
        T(test_stdout_pipe_nobody_reads),
        T(test_console_held_disk_goes_on),
    };

    return cmocka_run_group_tests(tests, group_setup, NULL);
}
