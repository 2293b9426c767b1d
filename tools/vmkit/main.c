/* vmkit: parse the command line (cli.c), then run a VM (run.c) or serve one device over
 * vhost-user (serve.c). Public API only: this program includes nothing but vmkit.h. */
#include "cli.h"
#include "report.h"
#include "run.h"
#include "serve.h"

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    char err[4096];
    struct cli_request req;
    int status = cli_parse(argc, argv, &req, err, sizeof(err));
    if (status) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    switch (req.command) {
    case CLI_CMD_HELP:
        fputs(cli_usage(), stdout);
        status = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
        break;
    case CLI_CMD_VERSION:
        printf("vmkit %s\n", vmk_version_string());
        status = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
        break;
    case CLI_CMD_SERVE_DEVICE: status = serve_device(&req); break;
    case CLI_CMD_RUN: {
        /* Block the stop signals before the library makes threads: they inherit the mask, so
         * these signals reach only run's signalfd. */
        sigset_t stop_signals;
        sigemptyset(&stop_signals);
        sigaddset(&stop_signals, SIGINT);
        sigaddset(&stop_signals, SIGTERM);
        sigaddset(&stop_signals, SIGHUP);
        int e = pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
        if (e) {
            say("cannot block signals: %s", strerror(e));
            status = CLI_EXIT_ERROR;
            break;
        }
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (n > 0)
            exe[n] = '\0';
        status = run_vm(&req, n > 0 ? exe : NULL);
        break;
    }
    }
out:
    cli_request_free(&req);
    return status;
}
