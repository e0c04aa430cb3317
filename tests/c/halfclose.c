/*
 * halfclose: a C client whose server hangs up and which never closes its
 * side, so each socket ends in CLOSE_WAIT.
 *
 *   halfclose HOST PORT COUNT
 *
 * Prints "ready PID", waits for a line, connects COUNT times from
 * watch_feed(), reads each to EOF, keeps them, prints "done", waits.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

__attribute__((noinline)) int watch_feed(const char *host, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, host, &sa.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		perror("connect");
		exit(2);
	}
	char buf[256];
	while (read(fd, buf, sizeof buf) > 0)
		;
	return fd; /* kept, never closed */
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s HOST PORT COUNT\n", argv[0]);
		return 1;
	}
	printf("ready %d\n", getpid());
	fflush(stdout);
	char line[16];
	if (!fgets(line, sizeof line, stdin))
		return 1;
	for (int i = 0; i < atoi(argv[3]); i++)
		watch_feed(argv[1], atoi(argv[2]));
	printf("done\n");
	fflush(stdout);
	pause();
	return 0;
}
