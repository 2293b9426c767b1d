/* What the vmkit command says on stderr: one line per message, each starting "vmkit: ". */
#ifndef VMKIT_REPORT_H
#define VMKIT_REPORT_H

/* One line. The library may have the terminal in raw mode (no newline translation), so it
 * ends in \r\n when stderr is a terminal. */
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Each line of a (possibly multi-line) library message, as its own line. */
void say_lines(const char *msg);
/* The name of a stop signal: "SIGTERM". */
const char *signal_name(int signo);

#endif
