"""
Helpers for tests that open many TCP connections to the daemon from
loopback addresses and watch what it does with them, from outside: its
accept queue, its open descriptors, and which connections it closed.
"""

from __future__ import annotations

import os
import select
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path

#: Source addresses 127.0.0.10 .. 127.0.0.69 (all of 127/8 is loopback).
SOURCES = [f"127.0.0.{n}" for n in range(10, 70)]


def open_connections(port: int, count: int, first: int = 0, sources: Sequence[str] = SOURCES) -> list[socket.socket]:
    """
    Start ``count`` non-blocking connections to 127.0.0.1:``port``, the
    ``i``-th from ``sources[i % len(sources)]`` (``first`` counts on from an
    earlier call).
    """
    sockets = []
    for i in range(first, first + count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind((sources[i % len(sources)], 0))
        s.connect_ex(("127.0.0.1", port))
        sockets.append(s)
    return sockets


def accept_queue(port: int, table: str | None = None) -> int | None:
    """
    Connections waiting to be accepted on 127.0.0.1:``port`` (the listening
    socket's rx_queue in /proc/net/tcp), or None if nothing listens there.

    :param table: the text of /proc/net/tcp; None reads it.
    """
    if table is None:
        table = Path("/proc/net/tcp").read_text()
    local = f"0100007F:{port:04X}"
    for line in table.splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] == "0A":  # 0A: LISTEN
            return int(fields[4].split(":")[1], 16)
    return None


def descriptors(pid: int) -> int:
    """How many descriptors process ``pid`` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def closed_by_server(sockets: Iterable[socket.socket]) -> set[socket.socket]:
    """The connections the server has closed (end of stream or reset)."""
    by_fd = {s.fileno(): s for s in sockets}
    poller = select.poll()
    for fd in by_fd:
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    closed = set()
    for fd, _ in poller.poll(0):
        s = by_fd[fd]
        try:
            if s.recv(1, socket.MSG_PEEK) == b"":
                closed.add(s)
        except BlockingIOError:
            pass
        except OSError:
            closed.add(s)
    return closed
