"""
Benchmark of call recording on loopback (not a test): how many relayed calls
pbx records at once with every recording intact.

Run: ``python bench/recording.py [--steps 50,100,200,400] [--seconds 10]``;
``python bench/recording.py --hot-path`` measures only the relay's cost per
packet, untapped, tapped and recorded, without sockets.

This process runs a :class:`pbx.media.relay.Relay` on the real (epoll)
reactor, with the recording feature's :class:`CallRecorder` on every
session's tap (both legs, stereo 8 kHz WAV, files written in the reactor's
thread pool, fsynced and renamed when closed, as in pbx).  A second process
(this file with ``--generator``: plain sockets, no Twisted) plays both phones
of every call: G.711 µ-law RTP, 50 packets/s each way, calls spread over
the 20 ms period; every packet's payload is a frame of noise drawn from a
generator seeded with its stream's number, so each of the 2N streams is
different and known.

Per step (N concurrent recorded calls for ``--seconds``), once every
recording is closed, each file is read back and compared with what was
sent, 20 ms frame by frame: the left channel must hold leg a's frames and
the right channel leg b's, every one, in order and bit-exact after µ-law
decoding.  A recording is intact when no frame is missing or altered.
Reported: relay packets per second, the process's CPU (all threads: the
reactor and the file writers), µs of CPU per recorded packet, kernel drops
on the relay's sockets (``/proc/net/udp``), and intact
recordings out of N with the frames missing or altered.  A step with a
recording not intact ends the climb.  Everything is bounded in time and
stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import shutil
import socket
import struct
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

HOST = "127.0.0.1"
RTP_HEADER = struct.Struct("!BBHII")
PERIOD = 0.020
TICK = 0.001
FRAME = 160
MAX_OTHERS = 0.3  # CPU (in cores) other processes may use while a step starts


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def noise(stream: int, frames: int) -> np.ndarray:
    """The µ-law payloads stream ``stream`` sends: ``frames`` x 160 bytes, seeded by the stream."""
    return np.random.default_rng(1000 + stream).integers(
        0, 256, (frames, FRAME), dtype=np.uint8
    )


# ---------------------------------------------------------------------------
# The generator process: plain sockets, no Twisted


def _socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    s.bind((HOST, 0))
    s.setblocking(False)
    return s


def _drain(sock: socket.socket) -> int:
    n = 0
    while True:
        try:
            sock.recv(2048)
        except BlockingIOError:
            return n
        n += 1


def _run(
    a: socket.socket, b: socket.socket, calls: list[list[int]], frames: int
) -> dict[str, Any]:
    """Every call's two streams, ``frames`` packets each, paced at 20 ms; what came back."""
    n = len(calls)
    payloads = [
        [row.tobytes() for row in noise(stream, frames)] for stream in range(2 * n)
    ]
    slots: list[list[int]] = [[] for _ in range(round(PERIOD / TICK))]
    for i in range(n):
        slots[i % len(slots)].append(i)
    dests = [((HOST, ap), (HOST, bp)) for ap, bp in calls]
    poll = select.epoll()
    poll.register(a.fileno(), select.EPOLLIN)
    poll.register(b.fileno(), select.EPOLLIN)
    socks = {a.fileno(): a, b.fileno(): b}
    hdr = RTP_HEADER.pack
    sent = received = errors = 0
    start, late, cpu0 = time.monotonic(), 0.0, _cpu()
    ticks = frames * len(slots)
    # The table above took time: only the paced run and its stragglers count.
    tick = 0
    while tick < ticks:
        now = time.monotonic()
        while tick < ticks and start + tick * TICK <= now:
            seq = tick // len(slots)
            for i in slots[tick % len(slots)]:
                for direction, sock in ((0, a), (1, b)):
                    stream = 2 * i + direction
                    packet = (
                        hdr(0x80, 0, seq & 0xFFFF, seq * FRAME & 0xFFFFFFFF, stream)
                        + payloads[stream][seq]
                    )
                    try:
                        sock.sendto(packet, dests[i][direction])
                        sent += 1
                    except OSError:
                        errors += 1
            late = max(late, now - (start + tick * TICK))
            tick += 1
        for fd, _ in poll.poll(max(0.0, start + tick * TICK - time.monotonic())):
            received += _drain(socks[fd])
    quiet = time.monotonic()
    while time.monotonic() - quiet < 0.5:
        for fd, _ in poll.poll(0.05):
            if _drain(socks[fd]):
                quiet = time.monotonic()
    poll.close()
    return {
        "sent": sent,
        "received": received,
        "send_errors": errors,
        "late_ms": late * 1000,
        "seconds": time.monotonic() - start,
        "gen_cpu": (_cpu() - cpu0) / (time.monotonic() - start),
    }


def generator() -> None:
    """Serve JSON commands on stdin, one per line; answer each on stdout."""
    a, b = _socket(), _socket()
    print(json.dumps({"a": a.getsockname()[1], "b": b.getsockname()[1]}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] != "run":
            return
        print(json.dumps(_run(a, b, cmd["calls"], cmd["frames"])), flush=True)


# ---------------------------------------------------------------------------
# The recording process (this one)


def _busy() -> float:
    """Busy CPU seconds of the whole machine, all cores (from /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def _socket_drops(ports: set[int]) -> int:
    """Datagrams the kernel dropped on our sockets of ``ports`` (the last column of /proc/net/udp)."""
    total = 0
    with open("/proc/net/udp") as f:
        for line in list(f)[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) in ports:
                total += int(fields[-1])
    return total


def check(path: str, streams: tuple[int, int], frames: int) -> tuple[int, int]:
    """
    Compare a stereo recording with the two streams sent, frame by frame.

    :returns: (frames missing, frames altered) over both channels.
    """
    from pbx.media import g711

    with wave.open(path, "rb") as w:
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    missing = altered = 0
    for channel, stream in enumerate(streams):
        sent = np.concatenate(
            [g711.ulaw_decode(p.tobytes()) for p in noise(stream, frames)]
        ).reshape(-1, FRAME)
        got = audio[: len(audio) // FRAME * FRAME, channel].reshape(-1, FRAME)
        # The file starts at the first frame either leg produced: find this leg's first frame.
        first = next(
            (i for i in range(min(len(got), 100)) if np.array_equal(got[i], sent[0])),
            None,
        )
        if first is None:
            missing += frames
            continue
        mine = got[first : first + frames]
        missing += frames - len(mine)
        altered += int(np.count_nonzero((mine != sent[: len(mine)]).any(axis=1)))
    return missing, altered


async def _bench(reactor: Any, steps: list[int], seconds: float, keep: bool) -> None:
    from twisted.internet import defer, protocol, task

    async def quiet() -> None:
        """Wait (at most ~60 s) until other processes leave the machine nearly idle."""
        for _ in range(30):
            busy0, wall0 = _busy(), time.monotonic()
            await task.deferLater(reactor, 2.0, lambda: None)
            if (_busy() - busy0) / (time.monotonic() - wall0) < MAX_OTHERS:
                return

    from pbx.features.recording.recorder import CallRecorder
    from pbx.media.codecs import PCMU
    from pbx.media.ports import PortAllocator
    from pbx.media.relay import Relay
    from pbx.media.wav import WavWriter

    class Generator(protocol.ProcessProtocol):
        def __init__(self) -> None:
            self.buffer = b""
            self.waiting: defer.Deferred[dict[str, Any]] = defer.Deferred()

        def outReceived(self, data: bytes) -> None:  # noqa: N802
            self.buffer += data
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                waiting, self.waiting = self.waiting, defer.Deferred()
                waiting.callback(json.loads(line))

        def errReceived(self, data: bytes) -> None:  # noqa: N802
            sys.stderr.write(data.decode(errors="replace"))

        def ask(self, **cmd: Any) -> defer.Deferred[dict[str, Any]]:
            waiting = self.waiting
            assert self.transport is not None
            self.transport.write(json.dumps(cmd).encode() + b"\n")
            return waiting

    gen = Generator()
    ready = gen.waiting
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    reactor.spawnProcess(
        gen, sys.executable, [sys.executable, __file__, "--generator"], env=env
    )
    addrs = await ready
    reactor.suggestThreadPoolSize(4)
    relay = Relay(reactor, PortAllocator(30000, 39999), HOST)
    codecs = {"pcmu": PCMU()}
    types = {0: ("pcmu", 8000)}
    frames = round(seconds * 50)
    directory = tempfile.mkdtemp(prefix="pbx-recording-bench-")
    print(
        f"pid {os.getpid()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
        f"{seconds:g} s per step, G.711 50 pps each way per call, stereo 8 kHz WAV in {directory}"
    )
    print(
        f"{'calls':>6} {'pps':>7} {'CPU%':>6} {'µs/pkt':>7} {'drops':>6} {'intact':>9} {'missing':>8} "
        f"{'altered':>8} {'close s':>8} {'MB':>6} {'gen late':>8} {'others%':>7}"
    )
    try:
        for n in steps:
            sessions, recorders = [], []
            for _ in range(n):
                session = relay.open_session()
                session.set_remote("a", HOST, addrs["a"])
                session.set_remote("b", HOST, addrs["b"])
                path = os.path.join(directory, f"{len(sessions):05d}.wav")
                writer = WavWriter(path, reactor, channels=2)
                recorder = CallRecorder(writer, reactor, lambda leg: types, codecs)
                session.tap("a", lambda data, r=recorder: r.packet("a", data))
                session.tap("b", lambda data, r=recorder: r.packet("b", data))
                sessions.append(session)
                recorders.append(recorder)
            calls = [[s.local_port("a"), s.local_port("b")] for s in sessions]
            await quiet()
            ports = {
                p for s in sessions for p in (s.local_port("a"), s.local_port("b"))
            }
            drops0, cpu0, busy0 = _socket_drops(ports), _cpu(), _busy()
            result = await gen.ask(cmd="run", calls=calls, frames=frames)
            cpu, wall = _cpu() - cpu0, result["seconds"]
            drops = _socket_drops(ports) - drops0
            others = (_busy() - busy0 - cpu) / wall - result["gen_cpu"]
            # A reactor starved of CPU may still be reading: close once it has read everything.
            while True:
                before = sum(e.packets for s in sessions for e in s.endpoints())
                await task.deferLater(reactor, 0.3, lambda: None)
                if sum(e.packets for s in sessions for e in s.endpoints()) == before:
                    break
            closing = time.monotonic()
            paths = await defer.gatherResults([r.close() for r in recorders])
            closed = time.monotonic() - closing
            await defer.DeferredList([relay.close(s) for s in sessions])
            size = sum(os.path.getsize(p) for p in paths) / 1e6
            intact = missing = altered = 0
            for i, path in enumerate(paths):
                m, a = check(path, (2 * i, 2 * i + 1), frames)
                missing, altered = missing + m, altered + a
                intact += not (m or a)
            relayed = sum(e.packets for s in sessions for e in s.endpoints())
            print(
                f"{n:>6} {relayed / wall:>7.0f} {cpu / wall * 100:>6.1f} {cpu / max(relayed, 1) * 1e6:>7.1f} "
                f"{drops:>6} {intact:>4}/{n:<4} {missing:>8} {altered:>8} {closed:>8.2f} {size:>6.1f} "
                f"{result['late_ms']:>8.1f} {others * 100:>7.0f}",
                flush=True,
            )
            for path in paths if not keep else []:
                os.unlink(path)
            if intact < n:
                print("       (stopping: a recording is not intact)")
                break
    finally:
        assert gen.transport is not None
        gen.transport.write(b'{"cmd": "quit"}\n')
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)


def hot_path() -> None:
    """
    The relay's per-packet cost in this process, without sockets: an
    untapped endpoint (what every unrecorded call runs), one tapped with a
    listener that does nothing, one watched for keys (every call when an
    in-call feature code is configured), and one feeding a recorder.
    """
    import timeit

    from twisted.internet.task import Clock

    from pbx.calls.keys import SeatKeys
    from pbx.calls.media import CallMedia
    from pbx.features.recording.recorder import CallRecorder
    from pbx.media.codecs import PCMU
    from pbx.media.relay import RelayEndpoint
    from pbx.media.wav import WavWriter

    clock = Clock()
    a, b = RelayEndpoint(clock), RelayEndpoint(clock)
    a.peer, b.peer = b, a
    b.send = lambda data, addr: None
    b.dest, a.latched = (HOST, 4000), (HOST, 5000)
    source = (HOST, 5000)
    directory = tempfile.mkdtemp(prefix="pbx-recording-hot-")

    def cost(label: str) -> None:
        sequence = [0]

        def one() -> None:
            n = sequence[0] = sequence[0] + 1
            a.datagramReceived(
                RTP_HEADER.pack(0x80, 0, n & 0xFFFF, n * FRAME & 0xFFFFFFFF, 1)
                + bytes(FRAME),
                source,
            )
            if n % 50 == 0:
                clock.advance(1.0)

        runs = timeit.repeat(one, number=20_000, repeat=7)
        print(f"  {label:<40} {min(runs) / 20_000 * 1e9:>8.0f} ns/packet")

    print("relay per-packet cost, no sockets (packet building included):")
    cost("untapped")
    a.set_tap(lambda data: None)
    cost("tapped, listener does nothing")
    a.set_tap(SeatKeys(CallMedia(None, HOST), "a", lambda key: None).packet)
    cost("watched for keys (pbx.calls.keys)")
    writer = WavWriter(
        os.path.join(directory, "hot.wav"),
        clock,
        threadpool=object(),
        channels=2,  # type: ignore[arg-type]
        defer_to_thread_pool=lambda reactor, pool, f, *args: defer_inline(f, *args),
    )
    recorder = CallRecorder(
        writer, clock, lambda leg: {0: ("pcmu", 8000)}, {"pcmu": PCMU()}
    )
    a.set_tap(lambda data: recorder.packet("a", data))
    cost("tapped, recorded (file writes included)")
    recorder.abort()
    shutil.rmtree(directory, ignore_errors=True)


def defer_inline(f: Any, *args: Any) -> Any:
    """Run file work at once (the hot-path measure has no thread pool)."""
    from twisted.internet.defer import maybeDeferred

    return maybeDeferred(f, *args)


def main() -> None:
    """Parse arguments; run the generator or the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--steps", default="50,100,200,400")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--keep", action="store_true", help="keep the scratch directory"
    )
    parser.add_argument(
        "--hot-path", action="store_true", help="only the relay's cost per packet"
    )
    args = parser.parse_args()
    if args.generator:
        generator()
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    if args.hot_path:
        hot_path()
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
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

    d = Deferred.fromCoroutine(_bench(reactor, steps, args.seconds, args.keep))
    d.addBoth(done)
    guard = reactor.callLater(
        len(steps) * (args.seconds * 4 + 120),
        lambda: (failures.append("timeout"), reactor.stop()),
    )
    reactor.run()
    if guard.active():
        guard.cancel()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
