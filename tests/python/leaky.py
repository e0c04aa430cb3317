"""A Python service that leaks sockets: a new connection per request, kept
and never closed, through socket.create_connection and through
http.client. Waits for "go" on stdin, makes the requests, says "done",
then waits (for fdtrace) until stdin closes.

usage: leaky.py HOST:PORT REQUESTS
"""
import http.client
import os
import socket
import sys

kept = []


def fetch_status(host, port):
    # One HTTPConnection per request, never closed: its socket stays open.
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", "/")
    status = conn.getresponse().status
    kept.append(conn)
    return status


class Pool:
    def connect(self, host, port):
        # A raw connection per call, kept in a list.
        sock = socket.create_connection((host, port), timeout=10)
        kept.append(sock)


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    port, n = int(port), int(sys.argv[2])
    print("ready", os.getpid(), flush=True)
    sys.stdin.readline()
    pool = Pool()
    for _ in range(n):
        fetch_status(host, port)
        pool.connect(host, port)
    print("done", flush=True)
    sys.stdin.readline()


if __name__ == "__main__":
    main()
