"""A short Python command that leaves sockets open at exit: after 3 s
(fdtrace has found its interpreter by then, even in a debug build on a
busy machine), a function connects N times
and keeps the sockets; then os._exit (a normal return would close them in
finalization).

usage: exitleak.py HOST:PORT N
"""
import os
import socket
import sys
import time

kept = []


def open_connections(host, port, n):
    for _ in range(n):
        kept.append(socket.create_connection((host, port), timeout=10))


host, port = sys.argv[1].rsplit(":", 1)
time.sleep(3)
open_connections(host, int(port), int(sys.argv[2]))
os._exit(0)
