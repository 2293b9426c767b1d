/* net_rr — a 64-byte TCP request/response client for bench/virtio_net.sh, built static so
 * that it runs in the benchmark's busybox guest (whose nc cannot do this in one process).
 *
 *   net_rr HOST PORT COUNT
 *
 * Connects (TCP_NODELAY), then COUNT times writes 64 bytes and reads the 64 the server sends
 * back; prints "rr: COUNT transactions in S s". Exit status 1 on any error, said on stderr. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MSG 64

static int die(const char *what)
{
    perror(what);
    return 1;
}

/* Reads exactly len bytes; 0, or -1 on an error or early end. */
static int read_all(int fd, char *buf, size_t len)
{
    while (len) {
        ssize_t n = read(fd, buf, len);
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: net_rr HOST PORT COUNT\n");
        return 2;
    }
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])) };
    long count = atol(argv[3]);
    if (inet_pton(AF_INET, argv[1], &a.sin_addr) != 1 || count <= 0) {
        fprintf(stderr, "net_rr: bad host or count\n");
        return 2;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        return die("connect");
    char req[MSG], resp[MSG];
    memset(req, 'q', sizeof(req));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < count; i++) {
        if (write(fd, req, sizeof(req)) != (ssize_t)sizeof(req))
            return die("write");
        if (read_all(fd, resp, sizeof(resp)) < 0)
            return die("read");
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("rr: %ld transactions in %.3f s\n", count, s);
    close(fd);
    return 0;
}
