/* A short command that leaves fds open when it exits: 7 UDP sockets from
 * open_probes(), a log file from open_log(), then, after argv[2] ms
 * (default 0: gone before fdtrace has read its first event), _exit(3) (no
 * atexit, no stdio flush). fdtrace's exit tests launch it. */
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

__attribute__((noinline)) static int open_probe(void) { return socket(AF_INET, SOCK_DGRAM, 0); }

__attribute__((noinline)) static void open_probes(int n) {
    for (int i = 0; i < n; i++)
        if (open_probe() < 0)
            _exit(1);
}

__attribute__((noinline)) static void open_log(void) {
    if (open("/dev/null", O_WRONLY) < 0)
        _exit(1);
}

int main(int argc, char **argv) {
    open_probes(argc > 1 ? atoi(argv[1]) : 7);
    open_log();
    int wait_ms = argc > 2 ? atoi(argv[2]) : 0;
    if (wait_ms > 0)
        usleep(wait_ms * 1000);
    _exit(3);
}
