/* How many descriptors this process has open, for the tests that check nothing leaked. */
#ifndef VMK_TESTS_FD_COUNT_H
#define VMK_TESTS_FD_COUNT_H

/* The entries of /proc/self/fd (the directory's own descriptor included), or -1. */
int fd_count(void);

#endif
