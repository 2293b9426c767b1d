/* measure: runs one command and prints its wall time and peak RSS.
 *
 *   measure [-t TIMEOUT_S] [-o LOGFILE] -- COMMAND [ARG...]
 *
 * Prints one line: "<wall_us> <maxrss_kib> <status>", where status is
 * "exit:N", "signal:N" or "timeout". Wall time runs from just before fork to
 * the reaping of the child; peak RSS is the child's ru_maxrss from wait4, so
 * it counts the command itself (all its threads), not its own children. The
 * command's stdin is /dev/null and its output goes to LOGFILE (or /dev/null). */
#define _GNU_SOURCE /* wait4, sigtimedwait, dprintf */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long elapsed_us(const struct timespec *a, const struct timespec *b)
{
    return (long long)(b->tv_sec - a->tv_sec) * 1000000LL + (b->tv_nsec - a->tv_nsec) / 1000;
}

static void usage(void)
{
    fprintf(stderr, "usage: measure [-t TIMEOUT_S] [-o LOGFILE] -- COMMAND [ARG...]\n");
}

/* In the child: stdin from /dev/null, stdout and stderr to the log. */
static void child_exec(char **argv, const char *log, const sigset_t *old_mask)
{
    int in = open("/dev/null", O_RDONLY);
    int out = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);

    if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
        _exit(126);
    close(in);
    close(out);
    sigprocmask(SIG_SETMASK, old_mask, NULL);
    execvp(argv[0], argv);
    dprintf(2, "measure: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int main(int argc, char **argv)
{
    const char *log = NULL;
    long timeout_s = 60;
    sigset_t chld, old_mask;
    struct timespec t0, t1, deadline, now, left;
    struct rusage ru;
    int opt, status = 0;
    pid_t pid, got = 0;
    char *end;

    while ((opt = getopt(argc, argv, "+t:o:")) != -1) {
        switch (opt) {
        case 't':
            errno = 0;
            timeout_s = strtol(optarg, &end, 10);
            if (errno || *end || timeout_s <= 0) {
                fprintf(stderr, "measure: bad timeout '%s'\n", optarg);
                return 2;
            }
            break;
        case 'o': log = optarg; break;
        default: usage(); return 2;
        }
    }
    if (optind >= argc) {
        usage();
        return 2;
    }

    /* SIGCHLD stays blocked so sigtimedwait can wait for it with a deadline. */
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &chld, &old_mask) != 0) {
        perror("measure: sigprocmask");
        return 2;
    }

    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid = fork();
    if (pid < 0) {
        perror("measure: fork");
        return 2;
    }
    if (pid == 0)
        child_exec(argv + optind, log, &old_mask);

    deadline = t0;
    deadline.tv_sec += timeout_s;
    for (;;) {
        got = wait4(pid, &status, WNOHANG, &ru);
        if (got == pid || (got < 0 && errno != EINTR))
            break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (elapsed_us(&now, &deadline) <= 0)
            break;
        left.tv_sec = deadline.tv_sec - now.tv_sec;
        left.tv_nsec = deadline.tv_nsec - now.tv_nsec;
        if (left.tv_nsec < 0) {
            left.tv_sec--;
            left.tv_nsec += 1000000000L;
        }
        sigtimedwait(&chld, NULL, &left);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);

    if (got != pid) {
        kill(pid, SIGKILL);
        while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
        }
        printf("%lld %ld timeout\n", elapsed_us(&t0, &t1), ru.ru_maxrss);
        return 1;
    }
    if (WIFEXITED(status))
        printf("%lld %ld exit:%d\n", elapsed_us(&t0, &t1), ru.ru_maxrss, WEXITSTATUS(status));
    else
        printf("%lld %ld signal:%d\n", elapsed_us(&t0, &t1), ru.ru_maxrss, WTERMSIG(status));
    return 0;
}
