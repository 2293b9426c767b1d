/*
 * rfb_keys HOST PORT ACTION...: a tiny RFB 3.8 client for the nested "vnc" case. It connects
 * to a VNC server without authentication (security type None), trying again for up to 30 s
 * until the server accepts, does the handshake (ProtocolVersion, security, SecurityResult,
 * ClientInit shared, ServerInit), prints one line with the server's size and name, says it
 * takes the ExtendedDesktopSize encoding, then does each ACTION: a KEYSYM (hex, 0x61 for 'a')
 * is pressed and released with a KeyEvent down and up, ~50 ms apart; size=WxH asks the server
 * for that desktop size (SetDesktopSize, one screen), as a resized viewer window does. Exits 0
 * when all were sent, 1 on any failure (with a line on stderr).
 *
 * The outer machine of the nested tests has busybox only: run.sh builds this statically.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
    fprintf(stderr, "rfb_keys: %s%s%s\n", what, errno ? ": " : "", errno ? strerror(errno) : "");
    exit(1);
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

static void read_all(int fd, void *buf, size_t len, const char *what)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = read(fd, p, len);
        if (n == 0) {
            errno = 0;
            die(what);
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die(what);
        }
        p += n;
        len -= (size_t)n;
    }
}

static void write_all(int fd, const void *buf, size_t len, const char *what)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die(what);
        }
        p += n;
        len -= (size_t)n;
    }
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A connected socket to HOST (an IPv4 address: a static binary has no resolver) and PORT,
 * trying again for up to 30 s (the server may not listen yet). */
static int connect_retry(const char *host, const char *port)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    char *end;
    unsigned long p = strtoul(port, &end, 10);
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1 || *end || end == port || !p || p > 65535) {
        fprintf(stderr, "rfb_keys: '%s' '%s' is not an IPv4 address and port\n", host, port);
        exit(2);
    }
    a.sin_port = htons((uint16_t)p);
    for (int tries = 0; tries < 300; tries++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            die("socket");
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
            return fd;
        close(fd);
        sleep_ms(100);
    }
    die("no connection within 30 s");
    return -1;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: rfb_keys HOST PORT ACTION...  (keysyms in hex: 0x61; size=WxH)\n");
        return 2;
    }
    uint32_t keys[64]; /* a keysym, or a size: SIZE_BIT | width << 16 | height */
    const uint64_t SIZE_BIT = 1ull << 40;
    uint64_t actions[64];
    if (argc - 3 > 64) {
        fprintf(stderr, "rfb_keys: at most 64 actions\n");
        return 2;
    }
    for (int i = 3; i < argc; i++) {
        unsigned w, h;
        char tail;
        if (sscanf(argv[i], "size=%ux%u%c", &w, &h, &tail) == 2) {
            if (!w || !h || w > 16384 || h > 16384) {
                fprintf(stderr, "rfb_keys: '%s': sides are 1..16384\n", argv[i]);
                return 2;
            }
            actions[i - 3] = SIZE_BIT | (uint64_t)w << 16 | h;
            continue;
        }
        char *end;
        errno = 0;
        unsigned long k = strtoul(argv[i], &end, 16);
        if (errno || *end || end == argv[i] || k > 0xffffffffUL) {
            fprintf(stderr, "rfb_keys: '%s' is not a hex keysym\n", argv[i]);
            return 2;
        }
        keys[i - 3] = (uint32_t)k;
        actions[i - 3] = k;
    }

    int fd = connect_retry(argv[1], argv[2]);
    /* Never hang on a server that stops talking. */
    struct timeval tv = { 10, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

    char version[13] = { 0 };
    read_all(fd, version, 12, "reading ProtocolVersion");
    if (memcmp(version, "RFB 003.", 8) != 0) {
        fprintf(stderr, "rfb_keys: not an RFB server: '%.11s'\n", version);
        return 1;
    }
    write_all(fd, "RFB 003.008\n", 12, "writing ProtocolVersion");

    uint8_t ntypes;
    read_all(fd, &ntypes, 1, "reading the security types");
    if (ntypes == 0) {
        uint8_t len[4];
        char reason[256] = { 0 };
        read_all(fd, len, 4, "reading the refusal");
        uint32_t n = be32(len);
        read_all(fd, reason, n < sizeof(reason) - 1 ? n : sizeof(reason) - 1,
                 "reading the refusal");
        fprintf(stderr, "rfb_keys: the server refused: %s\n", reason);
        return 1;
    }
    uint8_t types[255];
    read_all(fd, types, ntypes, "reading the security types");
    if (!memchr(types, 1, ntypes)) {
        fprintf(stderr, "rfb_keys: the server does not offer security type None (1)\n");
        return 1;
    }
    write_all(fd, "\1", 1, "choosing security type None");
    uint8_t result[4];
    read_all(fd, result, 4, "reading SecurityResult");
    if (be32(result) != 0) {
        fprintf(stderr, "rfb_keys: SecurityResult %u (failed)\n", be32(result));
        return 1;
    }

    write_all(fd, "\1", 1, "writing ClientInit"); /* shared */
    uint8_t si[24];
    read_all(fd, si, sizeof(si), "reading ServerInit");
    unsigned width = (unsigned)(si[0] << 8 | si[1]), height = (unsigned)(si[2] << 8 | si[3]);
    uint32_t name_len = be32(si + 20);
    char name[256] = { 0 };
    /* The name is read in full and kept only as far as it fits. */
    for (uint32_t done = 0; done < name_len;) {
        char chunk[256];
        uint32_t n = name_len - done < sizeof(chunk) ? name_len - done : sizeof(chunk);
        read_all(fd, chunk, n, "reading the server's name");
        if (done < sizeof(name) - 1)
            memcpy(name + done, chunk, done + n < sizeof(name) - 1 ? n : sizeof(name) - 1 - done);
        done += n;
    }
    printf("rfb_keys: server %ux%u '%s'\n", width, height, name);
    fflush(stdout);

    /* SetEncodings: Raw, and ExtendedDesktopSize (-308) so SetDesktopSize is understood. */
    const uint8_t encodings[] = { 2, 0, 0, 2, 0, 0, 0, 0, 0xff, 0xff, 0xfe, 0xcc };
    write_all(fd, encodings, sizeof(encodings), "writing SetEncodings");

    for (int i = 0; i < argc - 3; i++) {
        if (actions[i] & SIZE_BIT) {
            unsigned w = (unsigned)(actions[i] >> 16 & 0xffff), h = (unsigned)(actions[i] & 0xffff);
            uint8_t m[24] = { 251, 0, (uint8_t)(w >> 8), (uint8_t)w, (uint8_t)(h >> 8), (uint8_t)h,
                              1, 0,
                              /* screen 0: id, x, y, width, height, flags */
                              0, 0, 0, 0, 0, 0, 0, 0, (uint8_t)(w >> 8), (uint8_t)w,
                              (uint8_t)(h >> 8), (uint8_t)h, 0, 0, 0, 0 };
            write_all(fd, m, sizeof(m), "writing SetDesktopSize");
            sleep_ms(200);
            continue;
        }
        for (int down = 1; down >= 0; down--) {
            uint8_t ev[8] = { 4, (uint8_t)down, 0, 0 };
            uint32_t k = htonl(keys[i]);
            memcpy(ev + 4, &k, 4);
            write_all(fd, ev, sizeof(ev), "writing KeyEvent");
            sleep_ms(50);
        }
    }
    /* A moment for the server to take the last events before the connection closes. */
    sleep_ms(200);
    close(fd);
    return 0;
}
