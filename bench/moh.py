"""
Benchmark of music on hold: N held callers on one music class (not a test).

Run: ``PYTHONPATH=src python bench/moh.py [--steps 250,500,1000,1500,2000] [--seconds 10]``

This process runs what pbx runs for held calls, on the real (epoll)
reactor: a :class:`pbx.media.relay.Relay` with one session per held call,
and one :class:`pbx.media.playout.Playout` of the shipped default class in
PCMU feeding leg ``b`` of every session
(:meth:`pbx.media.relay.RelaySession.feed`): one encoder, and per listener
an RTP header and a ``sendto`` from that session's own port.

A second process (this file with ``--receiver``, plain sockets, no
Twisted) plays the held phones: a few sockets, each the SDP address of an
equal share of the sessions.  It tells the streams apart by SSRC and counts,
per stream, the packets received against the span of sequence numbers seen
(RFC 3550 appendix A.1's expected count), and the inter-arrival times.

Per step (N held callers, for ``--seconds``) it reports:

* loss: packets missing from each stream's sequence span, over all streams;
* gap p99 and max: the time between consecutive packets of a stream (20 ms
  when on time);
* the relay process's CPU (user + sys), per listener and per packet;
* late ticks: 20 ms ticks of the media clock that ran more than 10 ms late.

Everything stays on 127.0.0.1 and is bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
RTP_HEADER = struct.Struct("!BBHII")
RECEIVERS = 8


# ---------------------------------------------------------------------------
# The held phones: plain sockets, no Twisted


def receiver() -> None:
    """Bind the phones' sockets, say their ports, then count what arrives until told to stop."""
    socks = []
    for _ in range(RECEIVERS):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        s.bind((HOST, 0))
        s.setblocking(False)
        socks.append(s)
    print(json.dumps({"ports": [s.getsockname()[1] for s in socks]}), flush=True)
    poller = select.epoll()
    for s in socks:
        poller.register(s.fileno(), select.EPOLLIN)
    poller.register(sys.stdin.fileno(), select.EPOLLIN)
    by_fd = {s.fileno(): s for s in socks}
    while True:
        # stream ssrc -> [first seq (extended), last seq (extended), count, last arrival]
        streams: dict[int, list[float]] = {}
        gaps = [0] * 2001  # 0.1 ms buckets up to 200 ms
        line = sys.stdin.readline()
        if not line or json.loads(line).get("cmd") == "quit":
            return
        for sock in socks:  # what queued up between runs is not counted
            while True:
                try:
                    sock.recv(2048)
                except BlockingIOError:
                    break
        cpu0 = time.process_time()
        deadline = time.monotonic() + json.loads(line)["seconds"]
        while time.monotonic() < deadline:
            for fd, _ in poller.poll(0.05):
                sock = by_fd.get(fd)
                if sock is None:
                    continue
                while True:
                    try:
                        data = sock.recv(2048)
                    except BlockingIOError:
                        break
                    now = time.monotonic()
                    _, _, seq, _, ssrc = RTP_HEADER.unpack_from(data)
                    st = streams.get(ssrc)
                    if st is None:
                        streams[ssrc] = [seq, seq, 1, now]
                        continue
                    last = int(st[1])
                    ext = last + (
                        (seq - last) & 0xFFFF
                    )  # forward within the 16-bit wrap
                    if ext > last:
                        st[1] = ext
                    st[2] += 1
                    gaps[min(2000, int((now - st[3]) * 10000))] += 1
                    st[3] = now
        expected = sum(int(st[1] - st[0]) + 1 for st in streams.values())
        received = sum(int(st[2]) for st in streams.values())
        print(json.dumps({
            "streams": len(streams), "expected": expected, "received": received,
            "gaps": gaps, "cpu": time.process_time() - cpu0,
        }), flush=True)  # fmt: skip


def _quantile(hist: list[int], q: float) -> float:
    """The q-quantile of a 0.1 ms histogram, in ms."""
    total = sum(hist)
    if not total:
        return float("nan")
    rank, seen = q * total, 0
    for i, n in enumerate(hist):
        seen += n
        if seen >= rank:
            return i / 10
    return len(hist) / 10


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _bench(reactor: Any, steps: list[int], seconds: float) -> None:
    from twisted.internet import defer, protocol

    from pbx.media.codecs import PCMU
    from pbx.media.media_clock import MediaClock
    from pbx.media.music import default_music_dir, load_music_class
    from pbx.media.playout import HoldMusic
    from pbx.media.ports import PortAllocator
    from pbx.media.relay import Relay

    class Phones(protocol.ProcessProtocol):
        def __init__(self) -> None:
            self.buffer = b""
            self.waiting: defer.Deferred[dict[str, Any]] = defer.Deferred()

        def outReceived(self, data: bytes) -> None:  # noqa: N802 - twisted API
            self.buffer += data
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                waiting, self.waiting = self.waiting, defer.Deferred()
                waiting.callback(json.loads(line))

        def errReceived(self, data: bytes) -> None:  # noqa: N802 - twisted API
            sys.stderr.write(data.decode(errors="replace"))

        def ask(self, **cmd: Any) -> defer.Deferred[dict[str, Any]]:
            waiting = self.waiting
            assert self.transport is not None
            self.transport.write(json.dumps(cmd).encode() + b"\n")
            return waiting

    phones = Phones()
    ready = phones.waiting
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    reactor.spawnProcess(
        phones, sys.executable, [sys.executable, __file__, "--receiver"], env=env
    )
    ports = (await ready)["ports"]

    clock = MediaClock(reactor)
    late = [0, 0]  # ticks, ticks that came over 10 ms late (30 ms after the one before)
    last = [0.0]

    def watch(_: int) -> None:
        now = time.monotonic()
        if last[0] and now - last[0] > 0.030:
            late[1] += 1
        late[0] += 1
        last[0] = now

    music = HoldMusic(
        {"default": load_music_class("default", default_music_dir())},
        {},
        {"pcmu": PCMU()},
        clock,
    )
    playout = music.playout("default", "pcmu")
    assert playout is not None
    relay = Relay(reactor, PortAllocator(30000, 45999), HOST)
    sessions: list[Any] = []
    print(
        f"relay pid {os.getpid()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
        f"{seconds:g} s per step; class 'default' in PCMU, 172-byte packets, 50 pps per listener"
    )
    print(
        f"{'held':>6} {'pps out':>8} {'loss %':>8} {'gap p50':>8} {'gap p99':>8} {'gap max':>8} "
        f"{'CPU%':>6} {'µs/listener/s':>14} {'µs/pkt':>7} {'late ticks':>10} {'frames/s':>8} {'send err':>8}"
    )
    stop_watch = clock.add(watch)
    for i, n in enumerate([50, *steps]):  # the first run is a warm-up
        while len(sessions) < n:
            s = relay.open_session()
            s.set_remote("b", HOST, ports[len(sessions) % len(ports)])
            s.feed("b", playout, 0)
            sessions.append(s)
        while len(sessions) > n:
            relay.close(sessions.pop())
        late[:] = [0, 0]
        cpu0, wall0, frames0 = _cpu(), time.monotonic(), playout.frames_played
        errors0 = sum(s.feeding("b").send_errors for s in sessions)
        r = await phones.ask(cmd="run", seconds=seconds)
        cpu, wall = _cpu() - cpu0, time.monotonic() - wall0
        frames = (playout.frames_played - frames0) / wall
        errors = sum(s.feeding("b").send_errors for s in sessions) - errors0
        if i == 0:
            continue
        loss = 1 - r["received"] / max(r["expected"], 1)
        gaps = r["gaps"]
        top = max((j for j, c in enumerate(gaps) if c), default=0) / 10
        print(
            f"{n:>6} {r['received'] / seconds:>8.0f} {loss * 100:>8.3f} {_quantile(gaps, 0.5):>8.1f} "
            f"{_quantile(gaps, 0.99):>8.1f} {top:>8.1f} {cpu / wall * 100:>6.1f} "
            f"{cpu / wall / n * 1e6:>14.1f} {cpu / max(r['received'], 1) * 1e6:>7.1f} "
            f"{late[1]:>4}/{late[0]:<5} {frames:>8.1f} {errors:>8}",
            flush=True,
        )
        if r["streams"] < n * 0.99:
            print(f"       ({r['streams']} of {n} streams heard)")
        if loss > 0.05:
            print("       (stopping: saturated)")
            break
    stop_watch()
    assert phones.transport is not None
    phones.transport.write(b'{"cmd": "quit"}\n')
    await relay.close_all()
    assert playout.listeners == 0, "listeners left behind"


def main() -> None:
    """Parse arguments; run the held phones or the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--steps", default="250,500,1000,1500,2000")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if args.receiver:
        receiver()
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 4 sockets per session
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    steps = [int(x) for x in args.steps.split(",")]
    failures: list[Any] = []

    def done(result: Any) -> None:
        if hasattr(result, "printTraceback"):
            failures.append(result)
            result.printTraceback()
        if reactor.running:
            reactor.stop()

    d = Deferred.fromCoroutine(_bench(reactor, steps, args.seconds))
    d.addBoth(done)

    def out_of_time() -> None:
        print("time budget exceeded")
        failures.append("timeout")
        reactor.stop()

    guard = reactor.callLater((len(steps) + 1) * (args.seconds + 30) + 60, out_of_time)
    reactor.run()
    if guard.active():
        guard.cancel()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
