/*
 * leaky: a C client that leaks TCP connections.
 *
 *   leaky HOST PORT REQUESTS INTERVAL_MS [--fixed] [--no-wait] [--exit=CODE]
 *
 * Prints "ready PID", waits for a line on stdin, then makes REQUESTS
 * requests, alternating between ping_server (closes its socket) and
 * open_session (keeps it in a table nobody frees: the leak). With --fixed,
 * open_session closes too. With --no-wait it starts at once; with
 * --exit=CODE it exits with CODE when done instead of waiting forever.
 * Built with -O2 -fno-omit-frame-pointer.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int sessions[4096];
static int nsessions;

static int dial(const char *host, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, host, &sa.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		perror("dial");
		exit(2);
	}
	char buf[64];
	if (write(fd, "GET c\n", 6) != 6 || read(fd, buf, sizeof buf) <= 0) {
		perror("request");
		exit(2);
	}
	return fd;
}

__attribute__((noinline)) void ping_server(const char *host, int port)
{
	close(dial(host, port));
}

__attribute__((noinline)) void open_session(const char *host, int port, int fixed)
{
	int fd = dial(host, port);
	if (fixed)
		close(fd);
	else
		sessions[nsessions++] = fd;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: %s HOST PORT REQUESTS INTERVAL_MS [--fixed]\n", argv[0]);
		return 1;
	}
	const char *host = argv[1];
	int port = atoi(argv[2]), requests = atoi(argv[3]), interval = atoi(argv[4]);
	int fixed = 0, wait = 1, exit_code = -1;
	for (int i = 5; i < argc; i++) {
		fixed |= strcmp(argv[i], "--fixed") == 0;
		wait &= strcmp(argv[i], "--no-wait") != 0;
		if (strncmp(argv[i], "--exit=", 7) == 0)
			exit_code = atoi(argv[i] + 7);
	}
	printf("ready %d\n", getpid());
	fflush(stdout);
	char line[16];
	if (wait && !fgets(line, sizeof line, stdin))
		return 1;
	for (int i = 0; i < requests; i++) {
		if (i % 2 == 0)
			ping_server(host, port);
		else
			open_session(host, port, fixed);
		usleep(interval * 1000);
	}
	printf("done %d\n", nsessions);
	fflush(stdout);
	if (exit_code >= 0)
		return exit_code;
	pause();
	return 0;
}
