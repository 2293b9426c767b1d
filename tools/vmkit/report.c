#include "report.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("vmkit: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(isatty(STDERR_FILENO) ? "\r\n" : "\n", stderr);
    va_end(ap);
    fflush(stderr);
}

void say_lines(const char *msg)
{
    while (msg && *msg) {
        size_t len = strcspn(msg, "\n");
        if (len > 0)
            say("%.*s", (int)len, msg);
        msg += len;
        if (*msg == '\n')
            msg++;
    }
}

const char *signal_name(int signo)
{
    switch (signo) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    default: return "signal";
    }
}
