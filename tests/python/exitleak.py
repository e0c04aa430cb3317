"""A short Python command that leaves sockets open at exit: after 3 s
(fdtrace has found its interpreter by then, even in a debug build on a
busy machine), a function connects N times and keeps the sockets; 0.5 s
later (fdtrace names Python frames from the process's memory as their
stack arrives: a process gone within a millisecond of its open takes its
code objects with it, which under a loaded CI happened) os._exit, as a
normal return would close them in finalization.

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
time.sleep(0.5)
os._exit(0)
