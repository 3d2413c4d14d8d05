"""
Calls through pbx as a B2BUA: call setup rate, and concurrent calls with RTP.

SIPp plays the phones: a UAC (``bench/sipp/uac_call.xml``) calls as one of
``--callers`` extensions with proxy authentication (INVITE, 407, ACK,
INVITE with credentials, 200, ACK, a short pause, BYE, 200); pbx
authenticates it, opens a media relay session and calls the callee
extension, which a SIPp UAS (``bench/sipp/uas_answer.xml``) answers at once.
Each callee is registered first (``bench/sipp/register_auth.xml``) from
the port its UAS then listens on, because pbx sends the callee's INVITE to
the address the REGISTER came from.  pbx runs from this checkout on
loopback, as in ``register.py``.

Setup rate (the default): the UAC climbs ``--rates`` (calls/s), each step
``rate x --seconds`` short calls (``--hold-ms`` between ACK and BYE).  A
step passes when no call failed at either phone, every call completed and
calls were set up at no less than 90 % of the offered rate; a step that
does not pass is run once more (``--retries``) and climbing stops at the
first rate that still does not pass.  Reported: the highest passing rate,
the 99th percentile call setup time there (INVITE with credentials sent to
200 received, from SIPp's ``-trace_rtt``; the INVITE/407 round trip before
it is reported separately), pbx's CPU time per call and its memory.

``--media``: concurrent calls with RTP.  For each count of ``--media-calls``
the UAC sets up that many calls at ``--media-rate`` calls/s, each lasting
``--media-seconds`` after the answer; during a call SIPp's ``rtp_stream``
sends G.711 mu-law (50 packets/s, a WAV file generated here) to pbx's
relay and the callee's SIPp (``-rtp_echo``) sends every packet back.  A
count passes when every call completed without failure.  While all calls
are up, two snapshots of pbx's ``/api/v1/calls`` give the packets the relay
forwarded per call in each direction; pbx's CPU and memory are sampled
from ``/proc``.  SIPp does not analyse the RTP it receives, so there is no
loss or jitter measurement here (``bench/relay.py`` measures the relay
itself); the relay's counters only show whether 50 packets/s per call went
through each way.  ``--both`` runs the two modes, each with a fresh pbx.

Usage, from a source checkout (nothing is installed; see bench/README.rst)::

    python bench/calls.py [--rates 25,50,...] [--media | --both]

The raw results go to ``bench/results/calls-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    DOMAIN,
    MIN_GOODPUT,
    OVERLOAD_STEPS,
    PBX,
    RESULTS,
    ROOT,
    SIPP_SCENARIOS,
    Usage,
    User,
    clock_tick,
    command_version,
    completion_rate,
    free_udp_port,
    goodput,
    machine,
    make_users,
    markdown_table,
    memory,
    read_rtt_file,
    rst_table,
    rtt_summary,
    sipp_counters,
    stop_process,
    strong_password,
    write_injection_file,
)

UAC = SIPP_SCENARIOS / "uac_call.xml"
UAC_RTP = SIPP_SCENARIOS / "uac_call_rtp.xml"
UAS = SIPP_SCENARIOS / "uas_answer.xml"
REGISTER = SIPP_SCENARIOS / "register_auth.xml"

RATES = (25, 50, 100, 150, 200, 300, 400, 500)
MEDIA_CALLS = (100, 200, 400, 600)
#: A step passes only if calls were set up at this share of the offered rate.
MIN_ACHIEVED = 0.9
#: SIPp writes its rtt dump in blocks of this many calls and drops a partial
#: last block at exit, so every step's call count is a multiple of it.
RTT_BLOCK = 50
#: A response not received within this time fails the call (SIPp -recv_timeout).
RECV_TIMEOUT_S = 10
#: After a step that did not pass, pbx may still retransmit requests of
#: abandoned transactions (BYE, CANCEL: Timer F = 64*T1 = 32 s) to the
#: callee's port, where the next step's UAS answers a BYE or CANCEL with 481
#: (uas_answer.xml) but would take anything else for a new call.
AFTER_FAILURE_S = 33.0
#: Setup mode: pbx's calls.media_timeout.  Its calls carry no RTP, so this
#: only ends calls a SIPp caller abandoned (on a timeout SIPp sends a BYE
#: without To tag, which pbx rightly refuses with 481, instead of a CANCEL).
SETUP_MEDIA_TIMEOUT = 10
#: pbx's relay port range: 4000 RTP/RTCP pairs, two per call.  Below the
#: 20000-32000 the test suite picks its ranges from, since other sessions
#: may run tests meanwhile.
RELAY_PORTS = (10000, 17999)
#: SIPp's media ports: the UAC's rtp_stream, and each callee's echo port
#: (-rtp_echo also echoes on port + 2).
UAC_MEDIA_PORT = 9100
UAS_MEDIA_PORT = 9000
#: G.711 at 20 ms: packets per second per direction of a call.
RTP_PPS = 50
#: The response-time timers of uac_call.xml (third column of the rtt dump).
TIMERS = {"challenge": "1", "setup": "2", "teardown": "3"}
ADMIN = "admin"


# ---------------------------------------------------------------------------
# pbx, its API, its sockets


def make_pbx(workdir: Path, users: Sequence[User], media_timeout: int) -> PBX:
    """pbx for calls: MD5 only, the relay on loopback, an API administrator."""
    server = PBX(workdir, free_udp_port(), users)
    server.digest_algorithms = ("MD5",)
    server.api_port = free_tcp_port()
    server.admin_password = strong_password(ADMIN, 24)
    server.extra_config = (
        "rtp:\n"
        f"  ports: {RELAY_PORTS[0]}-{RELAY_PORTS[1]}\n"
        "  interface: 127.0.0.1\n"
        "calls:\n"
        "  ring_timeout: 30\n"
        f"  media_timeout: {media_timeout}\n"
    )
    server.problem_pattern = re.compile(
        r"Traceback|Unhandled|CRITICAL|lockout|dropped|handler failed|handling failed"
        r"|forwarding failed|CDR failed|media check failed|closing the media"
        r"|no media ports|cannot be bound|media timeout|bad response|unusable"
        r"|media source moved|ended: (?!ANSWERED)",
        re.I,
    )
    return server


def free_tcp_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class API:
    """pbx's REST API as the administrator; logs in on first use."""

    def __init__(self, port: int, password: str) -> None:
        self.base = f"http://127.0.0.1:{port}/api/v1"
        self.password = password
        self.token: str | None = None

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def get(self, path: str) -> Any:
        """GET ``path`` (below /api/v1); the decoded JSON of a 2xx."""
        if self.token is None:
            body = {"username": ADMIN, "password": self.password}
            self.token = self._request("POST", "/auth/login", body)["token"]
        return self._request("GET", path)

    def calls(self) -> list[dict[str, Any]]:
        """The calls in progress, with the relay's counters."""
        return list(self.get("/calls")["calls"])


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process ``pid`` holds."""
    inodes: set[str] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def udp_table() -> dict[str, tuple[int, int]]:
    """Every UDP socket on this host: inode -> (local port, datagrams dropped)."""
    sockets = {}
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 12:
                port = int(parts[1].rsplit(":", 1)[1], 16)
                sockets[parts[9]] = (port, int(parts[12]))
    return sockets


@dataclass
class Sockets:
    """
    UDP sockets of pbx and of SIPp, sampled during a step: how many relay
    sockets pbx holds (four per call: RTP and RTCP of two legs) and how many
    datagrams the kernel dropped on full receive buffers of each side's
    sockets (per socket, so other programs on the machine do not count;
    a socket closed between two samples loses its last few drops).
    """

    server_pid: int
    uac_pid: int | None = None
    uas_pids: list[int] = field(default_factory=list)
    relay_peak: int = 0
    _drops: dict[tuple[str, str], int] = field(default_factory=dict)
    _start: dict[tuple[str, str], int] = field(default_factory=dict)

    def sample(self) -> int:
        """Update the counters; returns how many relay sockets pbx holds now."""
        table = udp_table()
        relay = 0
        owners = [("pbx", self.server_pid), *(("uas", p) for p in self.uas_pids)]
        if self.uac_pid is not None:
            owners.append(("uac", self.uac_pid))
        for role, pid in owners:
            for inode in socket_inodes(pid):
                if inode not in table:
                    continue
                port, drops = table[inode]
                key = (role, inode)
                self._start.setdefault(key, drops)
                self._drops[key] = max(self._drops.get(key, 0), drops)
                if role == "pbx" and RELAY_PORTS[0] <= port <= RELAY_PORTS[1]:
                    relay += 1
        self.relay_peak = max(self.relay_peak, relay)
        return relay

    def drops(self) -> dict[str, int]:
        """Datagrams dropped since the first sample of each socket, by owner (pbx, uac, uas)."""
        total = {"pbx": 0, "uac": 0, "uas": 0}
        for key, value in self._drops.items():
            total[key[0]] += value - self._start[key]
        return total


def relay_sockets(server: PBX) -> int:
    """How many relay sockets pbx holds now."""
    assert server.process is not None
    return Sockets(server.process.pid).sample()


def udp_port_bound(port: int) -> bool:
    """Whether some socket on this host has bound UDP ``port``."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            if int(line.split()[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def rss_mb(server: PBX) -> float:
    """pbx's resident memory now, MB."""
    return memory(server.pids())["rss_mb"]


# ---------------------------------------------------------------------------
# Media file


def ulaw(sample: int) -> int:
    """One 16-bit sample as G.711 mu-law (ITU-T G.711's segment search)."""
    sign = 0
    if sample < 0:
        sample, sign = -sample, 0x80
    sample = min(sample, 32635) + 0x84
    exponent, mask = 7, 0x4000
    while exponent and not sample & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | exponent << 4 | mantissa) & 0xFF


def write_tone_wav(path: Path, seconds: float = 2.0, frequency: float = 440.0) -> None:
    """
    An 8 kHz mono mu-law WAV (format tag 7) holding a tone: what SIPp's
    ``rtp_stream`` sends as PCMU, copying the data chunk into payloads.
    """
    rate = 8000
    data = bytes(
        ulaw(round(8000 * math.sin(2 * math.pi * frequency * i / rate)))
        for i in range(int(seconds * rate))
    )
    fmt = struct.pack("<HHIIHH", 7, 1, rate, rate, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


# ---------------------------------------------------------------------------
# SIPp


def sipp(scenario: Path, port: int, *args: str, remote: int | None = None) -> list[str]:
    """A SIPp command line: ``scenario`` over UDP from 127.0.0.1:``port``."""
    command = ["sipp"]
    if remote is not None:
        command.append(f"127.0.0.1:{remote}")
    command += ["-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port)]
    command += ["-t", "u1", "-nostdin", *args]
    return command


def spawn(command: Sequence[str], cwd: Path, name: str) -> subprocess.Popen[bytes]:
    """Start SIPp in ``cwd``; its output goes to ``<name>.out`` there."""
    with (cwd / f"{name}.out").open("wb") as out:
        return subprocess.Popen(
            list(command), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def register_callees(server: PBX, callees: Sequence[User], workdir: Path) -> list[int]:
    """
    Register each callee once from a port of its own (register_auth.xml)
    and return the ports: the callee's UAS listens there afterwards.
    """
    ports = []
    for user in callees:
        port = free_udp_port()
        inf = workdir / f"register-{user.number}.csv"
        write_injection_file([user], inf)
        command = sipp(
            REGISTER, port, "-inf", str(inf), "-key", "domain", DOMAIN, "-m", "1",
            "-timeout", "20s", "-timeout_error", "-trace_err",
            "-error_file", str(workdir / f"register-{user.number}-errors.log"),
            remote=server.port,
        )  # fmt: skip
        process = spawn(command, workdir, f"register-{user.number}")
        try:
            status = process.wait(40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            status = None
        if status != 0:
            raise RuntimeError(
                f"registering callee {user.number} from port {port}: SIPp exited {status}"
                f" (see {workdir})"
            )
        ports.append(port)
    return ports


def injection_rows(
    callers: Sequence[User], callees: Sequence[User]
) -> list[tuple[User, User]]:
    """One row per caller, callees taken in turn: (caller, callee)."""
    return [(c, callees[i % len(callees)]) for i, c in enumerate(callers)]


def write_call_injection(rows: Sequence[tuple[User, User]], path: Path) -> None:
    """The UAC's injection file: SEQUENTIAL, then ``caller;callee;password``."""
    lines = ["SEQUENTIAL", *(f"{a.number};{b.number};{a.password}" for a, b in rows)]
    path.write_text("\n".join(lines) + "\n")


def calls_per_callee(
    rows: Sequence[tuple[User, User]], callees: Sequence[User], calls: int
) -> list[int]:
    """How many of ``calls`` SEQUENTIAL calls (row ``n % len(rows)``) reach each callee."""
    counts = collections.Counter(rows[n % len(rows)][1].number for n in range(calls))
    return [counts[c.number] for c in callees]


def wait_bound(ports: Sequence[int], limit: float = 10.0) -> bool:
    """Wait (bounded) until every port is bound: the UAS listens."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if all(udp_port_bound(p) for p in ports):
            return True
        time.sleep(0.05)
    return False


def rtt_files(stepdir: Path, name: str) -> list[Path]:
    """The ``-trace_rtt`` file(s) of the SIPp scenario ``name`` in ``stepdir``."""
    return sorted(stepdir.glob(f"{name}_*_rtt.csv"))


@dataclass
class Pair:
    """A step's SIPp processes: one UAC and one UAS per callee."""

    uac: subprocess.Popen[bytes]
    uases: list[subprocess.Popen[bytes]]
    commands: list[list[str]]

    def pids(self) -> list[int]:
        """Process ids of all of them."""
        return [self.uac.pid, *(p.pid for p in self.uases)]


def start_pair(
    server: PBX,
    stepdir: Path,
    uac_scenario: Path,
    uac_args: Sequence[str],
    callee_ports: Sequence[int],
    callee_calls: Sequence[int],
    uas_args: Sequence[str],
    limit_s: float,
) -> Pair:
    """
    Start the callees' UASes, wait until they listen, then the UAC.

    A UAS gets no ``-m``: a BYE or CANCEL that pbx still sends again for a
    call of an earlier step counts as a call in SIPp (uas_answer.xml
    answers it 481), and would end the UAS before this step's calls came.
    :func:`finish_pair` stops it.
    """
    stats = ["-trace_stat", "-fd", "1", "-trace_rtt", "-rtt_freq", str(RTT_BLOCK)]
    stats += ["-trace_err"]
    uases, commands = [], []
    for i, (port, calls) in enumerate(zip(callee_ports, callee_calls, strict=True)):
        if not calls:
            continue
        command = sipp(
            UAS, port, "-mp", str(UAS_MEDIA_PORT + 4 * i),
            "-timeout", f"{math.ceil(limit_s) + 60}s", *stats, *uas_args,
        )  # fmt: skip
        commands.append(command)
        uases.append(spawn(command, stepdir, f"uas-{i}"))
    if not wait_bound(
        [p for p, n in zip(callee_ports, callee_calls, strict=True) if n]
    ):
        for p in uases:
            stop_process(p, 5)
        raise RuntimeError(f"the callees' SIPp did not start listening (see {stepdir})")
    command = sipp(
        uac_scenario, free_udp_port(), *uac_args, "-mp", str(UAC_MEDIA_PORT),
        "-recv_timeout", str(RECV_TIMEOUT_S * 1000),
        "-timeout", f"{math.ceil(limit_s)}s",
        "-max_recv_loops", "10000", "-max_sched_loops", "10000",
        *stats, remote=server.port,
    )  # fmt: skip
    commands.insert(0, command)
    return Pair(spawn(command, stepdir, "uac"), uases, commands)


def finish_pair(
    pair: Pair,
    limit_s: float,
    grace_s: float,
    tick: Callable[[], None],
    quiet: Callable[[], bool],
) -> tuple[int | None, list[int | None]]:
    """
    Wait for the UAC (at most ``limit_s``), calling ``tick`` about twice a
    second, then give the UASes up to ``grace_s`` to finish their calls:
    once ``quiet()`` (pbx holds no relay socket) each is asked to end when
    its open calls have (SIGUSR1, SIPp's soft exit), and those still
    running at the end are stopped.  Returns the exit statuses (None:
    stopped).
    """
    deadline = time.monotonic() + limit_s
    while pair.uac.poll() is None and time.monotonic() < deadline:
        tick()
        time.sleep(0.5)
    uac_status = pair.uac.poll()
    if uac_status is None:
        stop_process(pair.uac, 5)
    deadline = time.monotonic() + grace_s
    asked = False
    while any(p.poll() is None for p in pair.uases) and time.monotonic() < deadline:
        tick()
        if not asked and quiet():
            asked = True
            for p in pair.uases:
                if p.poll() is None:
                    p.send_signal(signal.SIGUSR1)
        time.sleep(0.25)
    statuses: list[int | None] = []
    for p in pair.uases:
        status = p.poll()
        if status is None:
            stop_process(p, 5)
        statuses.append(status)
    return uac_status, statuses


def kill_pair(pair: Pair) -> None:
    """Stop every SIPp of a step (on an error or an interruption)."""
    for p in (pair.uac, *pair.uases):
        if p.poll() is None:
            p.kill()
            p.wait()


def sum_counters(stepdir: Path, prefix: str) -> dict[str, Any]:
    """:func:`sipp_counters` of every SIPp run in ``stepdir`` whose stat file starts with ``prefix``, summed."""
    total: dict[str, Any] = {}
    for path in sorted(stepdir.glob(f"{prefix}_*_.csv")):
        one = sipp_counters(stepdir, path.name[: -len("_.csv")])
        for key, value in one.items():
            if isinstance(value, dict):
                merged = total.setdefault(key, {})
                for k, v in value.items():
                    merged[k] = merged.get(k, 0) + v
            else:
                total[key] = total.get(key, 0) + value
    return total


def uac_timers(stepdir: Path, scenario: str) -> dict[str, Any]:
    """Per response-time timer of the UAC: samples, percentiles; the setup timer's completion rate and clock tick."""
    files = rtt_files(stepdir, scenario)
    result: dict[str, Any] = {}
    if not files:
        return result
    for name, rtd in TIMERS.items():
        dates, times = read_rtt_file(files[0], rtd)
        result[name] = {"samples": len(times), **rtt_summary(times)}
        if name == "setup":
            result["completion_rate"] = completion_rate(dates)
    # SIPp's clock tick: the smallest step between two of its timestamps or
    # the smallest non-zero response time, over the rows of all timers.
    dates, times = read_rtt_file(files[0])
    ticks = [
        t
        for t in (
            clock_tick(sorted(dates)),
            min((x for x in times if x > 0), default=None),
        )
        if t
    ]
    result["tick_ms"] = round(min(ticks), 1) if ticks else None
    return result


def log_size(server: PBX) -> int:
    """Bytes in pbx's log now (to read what a step added)."""
    try:
        return server.log_path.stat().st_size
    except OSError:
        return 0


def log_problems_since(server: PBX, offset: int) -> list[str]:
    """The suspicious lines pbx logged after ``offset`` bytes."""
    with server.log_path.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return [line for line in text.splitlines() if server.problem_pattern.search(line)]


def error_sample(stepdir: Path) -> list[str]:
    """The first lines of the SIPp error logs of a step."""
    lines: list[str] = []
    for path in sorted(stepdir.glob("*_errors.log")):
        lines += [
            f"{path.name}: {x}"
            for x in path.read_text(errors="replace").splitlines()[:20]
        ]
    return lines[:40]


def wait_relay_closed(server: PBX, limit: float = 20.0) -> int:
    """Wait (bounded) until pbx holds no relay socket; returns how many are left."""
    deadline = time.monotonic() + limit
    left = relay_sockets(server)
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = relay_sockets(server)
    return left


def settle(server: PBX, api: API, seconds: float, passed: bool) -> float:
    """
    Between steps: wait (bounded) until pbx has no call and no relay socket
    left, then ``seconds`` more, and :data:`AFTER_FAILURE_S` more after a
    step that did not pass.  Returns how long pbx took to be quiet (s).
    """
    started = time.monotonic()
    deadline = started + 3 * SETUP_MEDIA_TIMEOUT + 10
    while time.monotonic() < deadline:
        try:
            if not api.calls() and not relay_sockets(server):
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    quiet = time.monotonic() - started
    if not passed:
        print(
            f"   (waiting {AFTER_FAILURE_S:.0f} s for pbx's retransmissions to end)",
            flush=True,
        )
    time.sleep(seconds + (0 if passed else AFTER_FAILURE_S))
    return round(quiet, 2)


# ---------------------------------------------------------------------------
# Setup rate


@dataclass
class SetupStep:
    """One SIPp run of short calls at one rate."""

    rate: int
    calls: int
    attempt: int = 1
    #: "climb", or an overload step's label (1.5R, 3R, recovery).
    phase: str = "climb"
    commands: list[list[str]] = field(default_factory=list)
    uac_exit: int | None = None
    uas_exit: list[int | None] = field(default_factory=list)
    uac: dict[str, Any] = field(default_factory=dict)
    uas: dict[str, Any] = field(default_factory=dict)
    #: Per timer of uac_call.xml (challenge, setup, teardown): ms percentiles.
    timers: dict[str, Any] = field(default_factory=dict)
    #: Calls/s set up (200 received), over the first 99 % of them.
    completion_rate: float = 0.0
    #: Calls/s completed (set up and torn down) over the step (_common.goodput).
    goodput: float = 0.0
    tick_ms: float | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    cpu_ms_per_call: float | None = None
    rss_before_mb: float = 0.0
    rss_peak_mb: float = 0.0
    memory_after: dict[str, float] = field(default_factory=dict)
    #: Seconds after the step until pbx had no call and no relay socket left.
    quiet_after_s: float | None = None
    relay_sockets_peak: int = 0
    #: Relay sockets still open some seconds after the step (a leak if not 0).
    relay_sockets_left: int = 0
    #: Datagrams the kernel dropped on full sockets of pbx, the UAC and the
    #: UASes.  The UAC does not read the RTP echoed back to it, so in media
    #: mode its drops are every echoed packet, not a loss of pbx's.
    socket_drops: dict[str, int] = field(default_factory=dict)
    log_problems: list[str] = field(default_factory=list)
    errors_sample: list[str] = field(default_factory=list)
    passed: bool = False
    verdict: str = ""


def judge_overload(step: SetupStep, zero_failure_rate: int) -> tuple[bool, str]:
    """An overload step passes when goodput stays at MIN_GOODPUT of the zero-failure rate."""
    if step.uac_exit is None:
        return False, "SIPp did not finish in time"
    floor = MIN_GOODPUT * zero_failure_rate
    if step.goodput < floor:
        return False, f"goodput {step.goodput:.1f} calls/s, under {floor:.0f}"
    return True, f"goodput ≥ {floor:.0f}"


def judge_setup(step: SetupStep) -> tuple[bool, str]:
    """Whether a step passes, and why not."""
    if step.uac_exit is None:
        return False, "SIPp did not finish in time"
    failed = step.uac.get("failed", 0) + step.uas.get("failed", 0)
    if failed:
        kinds = {**step.uac.get("failures", {})}
        for k, v in step.uas.get("failures", {}).items():
            kinds[f"UAS {k}"] = v
        text = ", ".join(f"{k} {v}" for k, v in kinds.items()) or "see errors"
        return False, f"{failed} failed calls ({text})"
    if step.uac.get("successful", 0) < step.calls:
        return (
            False,
            f"only {step.uac.get('successful', 0)} of {step.calls} calls completed",
        )
    if step.completion_rate < MIN_ACHIEVED * step.rate:
        return (
            False,
            f"set up {step.completion_rate:.0f} calls/s, under {MIN_ACHIEVED:.0%} of the rate",
        )
    return True, "ok"


def run_setup_step(
    server: PBX,
    args: argparse.Namespace,
    rate: int,
    calls: int,
    rows: Sequence[tuple[User, User]],
    callees: Sequence[User],
    callee_ports: Sequence[int],
    inf: Path,
    stepdir: Path,
) -> SetupStep:
    """Run one step of short calls at ``rate`` and collect the figures."""
    stepdir.mkdir(parents=True)
    step = SetupStep(rate=rate, calls=calls)
    hold_s = args.hold_ms / 1000
    offered_s = calls / rate
    limit_s = offered_s + hold_s + 4 * RECV_TIMEOUT_S + 10
    uac_args = [
        "-inf", str(inf), "-r", str(rate), "-rp", "1000", "-m", str(calls),
        # Room for every call of several seconds to be open at once, so
        # SIPp does not quietly slow down before pbx fails.
        "-l", str(max(100, math.ceil(rate * (hold_s + 5)))),
        "-d", str(args.hold_ms),
    ]  # fmt: skip
    offset = log_size(server)
    step.rss_before_mb = rss_mb(server)
    assert server.process is not None
    pid = server.process.pid
    profile = None
    usage = Usage(server.pids(), pid)
    pair = start_pair(
        server, stepdir, UAC, uac_args, callee_ports,
        calls_per_callee(rows, callees, calls), [], limit_s,
    )  # fmt: skip
    usage.start()
    if args.profile_rate == rate and step_is_first_attempt(stepdir):
        profile = start_profile(pid, max(2.0, offered_s - 1), stepdir / "py-spy.txt")

    sockets = Sockets(pid, pair.uac.pid, [p.pid for p in pair.uases])
    sockets.sample()

    def tick() -> None:
        step.rss_peak_mb = max(step.rss_peak_mb, rss_mb(server))
        sockets.sample()

    try:
        step.uac_exit, step.uas_exit = finish_pair(
            pair, limit_s, hold_s + 15, tick, lambda: not relay_sockets(server)
        )
    except BaseException:
        kill_pair(pair)
        raise
    step.usage = usage.stop()
    step.relay_sockets_peak = sockets.relay_peak
    step.socket_drops = sockets.drops()
    step.commands = pair.commands
    step.memory_after = memory(server.pids())
    step.uac = sum_counters(stepdir, "uac_call")
    step.uas = sum_counters(stepdir, "uas_answer")
    timers = uac_timers(stepdir, "uac_call")
    step.completion_rate = timers.pop("completion_rate", 0.0)
    step.tick_ms = timers.pop("tick_ms", None)
    step.timers = timers
    files = rtt_files(stepdir, "uac_call")
    dates = read_rtt_file(files[0], TIMERS["setup"])[0] if files else []
    step.goodput = goodput(step.uac.get("successful", 0), dates, offered_s)
    if step.uac.get("successful"):
        step.cpu_ms_per_call = (
            1000 * step.usage["server_cpu_s"] / step.uac["successful"]
        )
    step.relay_sockets_left = wait_relay_closed(server)
    step.log_problems = log_problems_since(server, offset)[:30]
    step.errors_sample = error_sample(stepdir)
    step.passed, step.verdict = judge_setup(step)
    if profile is not None:
        finish_profile(profile)
    return step


def step_is_first_attempt(stepdir: Path) -> bool:
    """Steps are named ``<n>-rate-<rate>-<attempt>``: profile only the first attempt."""
    return stepdir.name.endswith("-1")


def step_calls(rate: int, seconds: float) -> int:
    """Calls for one step: ``rate`` x ``seconds``, rounded up to RTT_BLOCK."""
    calls = max(RTT_BLOCK, round(rate * seconds))
    return math.ceil(calls / RTT_BLOCK) * RTT_BLOCK


def print_setup_step(step: SetupStep) -> None:
    """One progress line for a finished step."""
    p99 = step.timers.get("setup", {}).get("p99", math.nan)
    again = f" (attempt {step.attempt})" if step.attempt > 1 else ""
    again += f" [{step.phase}]" if step.phase != "climb" else ""
    u = step.usage
    print(
        f"   {step.rate:>4} calls/s x {step.calls:>5}{again}: {step.uac.get('successful', 0):>5} ok"
        f" {step.uac.get('failed', 0) + step.uas.get('failed', 0):>4} failed,"
        f" {step.completion_rate:6.1f} calls/s, goodput {step.goodput:6.1f}, setup p99 {p99:5.0f} ms,"
        f" CPU: pbx {u.get('server_cpu_percent', 0):3.0f}% SIPp {u.get('sipp_cpu_percent', 0):3.0f}%"
        f" other {u.get('other_cpu_percent', 0):3.0f}%; UDP drops pbx {step.socket_drops.get('pbx', 0)}"
        f" UAS {step.socket_drops.get('uas', 0)} UAC {step.socket_drops.get('uac', 0)} -> {step.verdict}",
        flush=True,
    )


def bench_setup(
    args: argparse.Namespace,
    callers: Sequence[User],
    callees: Sequence[User],
    scratch: Path,
) -> dict[str, Any]:
    """Start pbx, register the callees, climb the rates, stop pbx."""
    workdir = scratch / "setup"
    workdir.mkdir()
    server = make_pbx(workdir, [*callers, *callees], SETUP_MEDIA_TIMEOUT)
    server.overload_lag_ms = args.overload_lag_ms
    server.overload_queue_ms = args.overload_queue_ms
    result: dict[str, Any] = {"mode": "setup", "version": server.version()}
    print(f"== call setup rate: {result['version']}", flush=True)
    server.start()
    result["command"] = server.command
    api = API(server.api_port, server.admin_password)
    steps: list[SetupStep] = []
    try:
        callee_ports = register_callees(server, callees, workdir)
        rows = injection_rows(callers, callees)
        inf = workdir / "calls.csv"
        write_call_injection(rows, inf)
        result["memory_idle"] = memory(server.pids())
        for index, rate in enumerate(args.rate_list, 1):
            calls = step_calls(rate, args.seconds)
            for attempt in range(1, args.retries + 2):
                step = run_setup_step(
                    server, args, rate, calls, rows, callees, callee_ports, inf,
                    workdir / f"{index:02d}-rate-{rate}-{attempt}",
                )  # fmt: skip
                step.attempt = attempt
                steps.append(step)
                print_setup_step(step)
                last = step.passed and index == len(args.rate_list)
                last = last or (not step.passed and attempt > args.retries)
                if not last:
                    step.quiet_after_s = settle(server, api, args.settle, step.passed)
                if step.passed:
                    break
            if not step.passed:
                break
        best = max((s for s in steps if s.passed), key=lambda s: s.rate, default=None)
        base = args.overload_rate or (best.rate if best is not None else None)
        if args.overload and base is not None:
            step.quiet_after_s = settle(server, api, args.settle, step.passed)
            steps += overload_steps(
                server, args, base, rows, callees, callee_ports, inf, workdir, api
            )
        result["memory_after"] = memory(server.pids())
        if args.idle_memory > 0:
            # Completed transactions are kept up to 32 s (Timer J): after
            # that, what is left is what pbx does not give back.
            time.sleep(args.idle_memory)
            result["memory_after_idle"] = {
                **memory(server.pids()),
                "idle_s": args.idle_memory,
            }
    finally:
        result["exit_status"] = server.stop()
        result["log"] = str(server.log_path)
        result["log_problems"] = server.log_problems()[:50]
        result["steps"] = [asdict(s) for s in steps]
    best = max(
        (s for s in steps if s.passed and s.phase == "climb"),
        key=lambda s: s.rate,
        default=None,
    )
    result["best"] = asdict(best) if best else None
    profiles = sorted(workdir.glob("*-rate-*/py-spy.txt"))
    if profiles:
        result["profile"] = {"file": str(profiles[0]), "text": profiles[0].read_text()}
    return result


def overload_steps(
    server: PBX,
    args: argparse.Namespace,
    rate: int,
    rows: Sequence[tuple[User, User]],
    callees: Sequence[User],
    callee_ports: Sequence[int],
    inf: Path,
    workdir: Path,
    api: API,
) -> list[SetupStep]:
    """
    After the zero-failure rate R: a step at 1.5R and at 3R (failures are
    expected there; goodput counts), then R again, which must pass as in
    the climb.  Between them the benchmark waits only until pbx holds no
    call (``settle`` as after a passing step): recovery is measured at once.
    """
    steps: list[SetupStep] = []
    for index, (label, share) in enumerate(OVERLOAD_STEPS, 1):
        offered = round(rate * share)
        step = run_setup_step(
            server, args, offered, step_calls(offered, args.seconds), rows, callees,
            callee_ports, inf, workdir / f"overload-{index}-{label}-1",
        )  # fmt: skip
        step.phase = label
        if label != "recovery":
            step.passed, step.verdict = judge_overload(step, rate)
        steps.append(step)
        print_setup_step(step)
        if index < len(OVERLOAD_STEPS):
            step.quiet_after_s = settle(server, api, args.settle, True)
    return steps


# ---------------------------------------------------------------------------
# Profiling with py-spy (optional)


@dataclass
class Profile:
    """A running ``py-spy record`` and where its text summary goes."""

    process: subprocess.Popen[bytes]
    raw: Path
    out: Path


def start_profile(pid: int, seconds: float, out: Path) -> Profile | None:
    """Sample pbx with ``py-spy record`` (collapsed stacks) for ``seconds``."""
    if shutil.which("py-spy") is None:
        print("   (py-spy is not installed: no profile)", flush=True)
        return None
    raw = out.with_suffix(".raw")
    command = [
        "py-spy", "record", "--pid", str(pid), "--duration", str(math.ceil(seconds)),
        "--rate", "100", "--nonblocking", "--format", "raw", "--output", str(raw),
    ]  # fmt: skip
    log = out.with_suffix(".log").open("wb")
    try:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()
    return Profile(process, raw, out)


def finish_profile(profile: Profile, top: int = 20) -> None:
    """
    Wait for py-spy and write, for pbx's reactor thread and for its other
    threads (the database pool), the functions with the most samples: by
    themselves ("self") and with what they call ("total"; frames on
    nearly every stack of the thread, the runner's, are left out).
    py-spy's ``--nonblocking`` mode counts some waiting threads as busy:
    samples whose innermost frame is a wait (:data:`WAITS`) are counted
    apart as idle, and the percentages are of the other samples.
    """
    try:
        profile.process.wait(60)
    except subprocess.TimeoutExpired:
        profile.process.kill()
        profile.process.wait()
    if not profile.raw.exists():
        profile.out.write_text("py-spy wrote nothing (see py-spy.log)\n")
        return
    stacks: dict[str, list[tuple[list[str], int]]] = {"reactor": [], "other": []}
    idle = {"reactor": 0, "other": 0}
    for line in profile.raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_short_frame(f) for f in stack.split(";")]
        # twistd runs from ``python -c``: the reactor's stacks start there.
        thread = "reactor" if frames[0].startswith("<module> (<string>") else "other"
        if WAITS.match(frames[-1]):
            idle[thread] += int(count)
        else:
            stacks[thread].append((frames, int(count)))
    lines = [
        "py-spy at 100 Hz: busy samples (and waiting ones) per thread:"
        + ",".join(
            f" {name} {sum(n for _, n in rows)} ({idle[name]})"
            for name, rows in stacks.items()
        ),
    ]
    for name, rows in stacks.items():
        samples = sum(n for _, n in rows)
        if not samples:
            continue
        own: collections.Counter[str] = collections.Counter()
        total: collections.Counter[str] = collections.Counter()
        for frames, n in rows:
            own[frames[-1]] += n
            for frame in set(frames):
                total[frame] += n
        common = {f for f, n in total.items() if n >= 0.95 * samples}
        lines += ["", f"{name} thread(s), {samples} samples", "  self %  function"]
        lines += [f"  {100 * n / samples:6.1f}  {f}" for f, n in own.most_common(top)]
        lines += ["  total %  function (with what it calls)"]
        ranked = [(f, n) for f, n in total.most_common() if f not in common][:top]
        lines += [f"  {100 * n / samples:6.1f}  {f}" for f, n in ranked]
    profile.out.write_text("\n".join(lines) + "\n")


#: Innermost frames of a thread that waits (epoll, a pool thread's queue).
WAITS = re.compile(r"(EPollReactor\.doPoll|Condition\.wait|Queue\.get) ")


def _short_frame(frame: str) -> str:
    """``func (path/to/file.py:12)`` with the path cut after site-packages or src/."""
    return re.sub(
        r"\(\S*?(?:site-packages/|/src/|lib/python3\.\d+/)", "(", frame.strip()
    )


# ---------------------------------------------------------------------------
# Concurrent calls with RTP


@dataclass
class MediaStep:
    """One SIPp run of ``calls`` concurrent calls with RTP."""

    calls: int
    rate: int
    seconds: float
    commands: list[list[str]] = field(default_factory=list)
    uac_exit: int | None = None
    uas_exit: list[int | None] = field(default_factory=list)
    uac: dict[str, Any] = field(default_factory=dict)
    uas: dict[str, Any] = field(default_factory=dict)
    timers: dict[str, Any] = field(default_factory=dict)
    #: Seconds from the UAC's start until pbx held relay sockets for every call.
    all_up_after_s: float | None = None
    #: The measurement window while all calls were up, from two /calls snapshots.
    window_s: float = 0.0
    confirmed_calls: int = 0
    #: Packets/s the relay forwarded per call: caller -> callee (what SIPp's
    #: rtp_stream sent) and callee -> caller (the echo); min, median, max.
    a_to_b_pps: dict[str, float] = field(default_factory=dict)
    b_to_a_pps: dict[str, float] = field(default_factory=dict)
    relayed_pps: float = 0.0
    expected_pps: float = 0.0
    #: Echoed packets over forwarded packets in the window (the round trip
    #: relay -> callee's SIPp -> relay).
    echo_ratio: float | None = None
    relay_dropped: int = 0
    usage: dict[str, Any] = field(default_factory=dict)
    cpu_us_per_packet: float | None = None
    rss_before_mb: float = 0.0
    rss_plateau_mb: float = 0.0
    rss_peak_mb: float = 0.0
    #: (plateau RSS - RSS before the first call of the mode) / calls.
    rss_per_call_kb: float | None = None
    relay_sockets_peak: int = 0
    relay_sockets_left: int = 0
    socket_drops: dict[str, int] = field(default_factory=dict)
    log_problems: list[str] = field(default_factory=list)
    errors_sample: list[str] = field(default_factory=list)
    passed: bool = False
    verdict: str = ""


def judge_media(step: MediaStep) -> tuple[bool, str]:
    """Whether every call of the step survived, and why not."""
    if step.uac_exit is None:
        return False, "SIPp did not finish in time"
    failed = step.uac.get("failed", 0) + step.uas.get("failed", 0)
    if failed:
        kinds = {**step.uac.get("failures", {})}
        for k, v in step.uas.get("failures", {}).items():
            kinds[f"UAS {k}"] = v
        text = ", ".join(f"{k} {v}" for k, v in kinds.items()) or "see errors"
        return False, f"{failed} failed calls ({text})"
    if step.uac.get("successful", 0) < step.calls:
        return (
            False,
            f"only {step.uac.get('successful', 0)} of {step.calls} calls completed",
        )
    if any("media timeout" in line for line in step.log_problems):
        return False, "pbx ended calls for media timeout"
    return True, "ok"


def _spread(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}
    return {
        "min": round(ordered[0], 2),
        "median": round(ordered[len(ordered) // 2], 2),
        "max": round(ordered[-1], 2),
    }


def media_counters(
    snapshot: Sequence[dict[str, Any]],
) -> dict[str, tuple[int, int, int]]:
    """Per confirmed call: packets relayed a->b, b->a, and dropped, from a /calls snapshot."""
    counters = {}
    for call in snapshot:
        media = call.get("media") or {}
        if call.get("state") != "confirmed" or not media:
            continue
        counters[call["call_id"]] = (
            int(media["a_to_b"]["packets"]),
            int(media["b_to_a"]["packets"]),
            int(media.get("dropped", 0)),
        )
    return counters


def run_media_step(
    server: PBX,
    api: API,
    args: argparse.Namespace,
    calls: int,
    rows: Sequence[tuple[User, User]],
    callees: Sequence[User],
    callee_ports: Sequence[int],
    inf: Path,
    stepdir: Path,
    baseline_mb: float,
) -> MediaStep:
    """Set up ``calls`` calls with RTP, measure while all are up, let them end."""
    stepdir.mkdir(parents=True)
    rate = args.media_rate
    step = MediaStep(calls=calls, rate=rate, seconds=args.media_seconds)
    write_tone_wav(stepdir / "rtp.wav")
    ramp_s = calls / rate
    limit_s = ramp_s + args.media_seconds + 4 * RECV_TIMEOUT_S + 20
    uac_args = [
        "-inf", str(inf), "-r", str(rate), "-rp", "1000", "-m", str(calls),
        "-l", str(calls), "-d", str(round(args.media_seconds * 1000)),
    ]  # fmt: skip
    offset = log_size(server)
    step.rss_before_mb = rss_mb(server)
    pair = start_pair(
        server, stepdir, UAC_RTP, uac_args, callee_ports,
        calls_per_callee(rows, callees, calls), ["-rtp_echo"], limit_s,
    )  # fmt: skip
    started = time.monotonic()
    # The window: from shortly after every call is up until a few seconds
    # before the first call ends (or --media-window seconds).
    first_end = started + args.media_seconds
    state: dict[str, Any] = {"first": None, "usage": None, "until": None}

    assert server.process is not None
    sockets = Sockets(server.process.pid, pair.uac.pid, [p.pid for p in pair.uases])
    sockets.sample()

    def tick() -> None:
        now = time.monotonic()
        step.rss_peak_mb = max(step.rss_peak_mb, rss_mb(server))
        relay = sockets.sample()
        if step.all_up_after_s is None and (
            relay >= 4 * calls or now > started + ramp_s + 10
        ):
            step.all_up_after_s = now - started
        if (
            state["first"] is None
            and step.all_up_after_s is not None
            and now >= started + step.all_up_after_s + 2
            and now < first_end - 5
        ):
            state["first"] = (now, calls_or_error(api, step))
            state["usage"] = Usage(server.pids(), server.pids()[0], pair.pids()).start()
            state["until"] = min(now + args.media_window, first_end - 3)
        elif (
            state["first"] is not None
            and state["until"] is not None
            and now >= state["until"]
        ):
            state["until"] = None
            step.usage = state["usage"].stop()
            last = (time.monotonic(), calls_or_error(api, step))
            step.rss_plateau_mb = rss_mb(server)
            media_window(step, state["first"], last)

    try:
        step.uac_exit, step.uas_exit = finish_pair(
            pair, limit_s, 20, tick, lambda: not relay_sockets(server)
        )
    except BaseException:
        kill_pair(pair)
        raise
    step.relay_sockets_peak = sockets.relay_peak
    step.socket_drops = sockets.drops()
    step.commands = pair.commands
    step.uac = sum_counters(stepdir, "uac_call_rtp")
    step.uas = sum_counters(stepdir, "uas_answer")
    timers = uac_timers(stepdir, "uac_call_rtp")
    timers.pop("completion_rate", None)
    timers.pop("tick_ms", None)
    step.timers = timers
    if step.rss_plateau_mb:
        step.rss_per_call_kb = 1000 * (step.rss_plateau_mb - baseline_mb) / calls
    step.relay_sockets_left = wait_relay_closed(server)
    step.log_problems += log_problems_since(server, offset)[:30]
    step.errors_sample = error_sample(stepdir)
    step.passed, step.verdict = judge_media(step)
    return step


def calls_or_error(api: API, step: MediaStep) -> list[dict[str, Any]]:
    """/calls, or nothing (noting why in the step) when the API does not answer."""
    try:
        return api.calls()
    except (OSError, ValueError) as e:  # URLError, timeouts, bad JSON
        step.log_problems.append(f"GET /api/v1/calls failed: {e}")
        return []


def media_window(
    step: MediaStep,
    first: tuple[float, list[dict[str, Any]]],
    last: tuple[float, list[dict[str, Any]]],
) -> None:
    """Packets per call and per second between two /calls snapshots."""
    (t0, s0), (t1, s1) = first, last
    window = t1 - t0
    before, after = media_counters(s0), media_counters(s1)
    both = [c for c in before if c in after]
    step.window_s = window
    step.confirmed_calls = len(both)
    if not both or window <= 0:
        return
    ab = [(after[c][0] - before[c][0]) / window for c in both]
    ba = [(after[c][1] - before[c][1]) / window for c in both]
    step.a_to_b_pps = _spread(ab)
    step.b_to_a_pps = _spread(ba)
    step.relayed_pps = sum(ab) + sum(ba)
    step.expected_pps = 2 * RTP_PPS * len(both)
    step.echo_ratio = sum(ba) / sum(ab) if sum(ab) else None
    step.relay_dropped = sum(after[c][2] - before[c][2] for c in both)
    packets = step.relayed_pps * window
    if packets and step.usage:
        step.cpu_us_per_packet = 1e6 * step.usage["server_cpu_s"] / packets


def print_media_step(step: MediaStep) -> None:
    """One progress line for a finished step."""
    u = step.usage
    ab = step.a_to_b_pps.get("median", math.nan)
    ba = step.b_to_a_pps.get("median", math.nan)
    print(
        f"   {step.calls:>4} calls: {step.uac.get('successful', 0):>4} ok"
        f" {step.uac.get('failed', 0) + step.uas.get('failed', 0):>3} failed;"
        f" window {step.window_s:4.1f} s with {step.confirmed_calls} calls up:"
        f" relayed {step.relayed_pps:7.0f} of {step.expected_pps:7.0f} packets/s"
        f" (per call median {ab:4.1f} a->b, {ba:4.1f} b->a),"
        f" CPU: pbx {u.get('server_cpu_percent', 0):3.0f}% SIPp {u.get('sipp_cpu_percent', 0):3.0f}%"
        f" other {u.get('other_cpu_percent', 0):3.0f}%; RSS {step.rss_plateau_mb:6.1f} MB;"
        f" UDP drops pbx {step.socket_drops.get('pbx', 0)} UAS {step.socket_drops.get('uas', 0)}"
        f" UAC {step.socket_drops.get('uac', 0)} (unread echo)"
        f" -> {step.verdict}",
        flush=True,
    )


def bench_media(
    args: argparse.Namespace,
    callers: Sequence[User],
    callees: Sequence[User],
    scratch: Path,
) -> dict[str, Any]:
    """Start pbx, register the callees, ramp the concurrent calls, stop pbx."""
    workdir = scratch / "media"
    workdir.mkdir()
    server = make_pbx(workdir, [*callers, *callees], args.media_timeout)
    server.overload_lag_ms = args.overload_lag_ms
    server.overload_queue_ms = args.overload_queue_ms
    result: dict[str, Any] = {"mode": "media", "version": server.version()}
    print(f"== concurrent calls with RTP: {result['version']}", flush=True)
    server.start()
    result["command"] = server.command
    api = API(server.api_port, server.admin_password)
    steps: list[MediaStep] = []
    try:
        callee_ports = register_callees(server, callees, workdir)
        rows = injection_rows(callers, callees)
        inf = workdir / "calls.csv"
        write_call_injection(rows, inf)
        api.calls()  # log in before measuring
        result["memory_idle"] = memory(server.pids())
        baseline = result["memory_idle"]["rss_mb"]
        for calls in args.media_list:
            step = run_media_step(
                server, api, args, calls, rows, callees, callee_ports, inf,
                workdir / f"calls-{calls}", baseline,
            )  # fmt: skip
            steps.append(step)
            print_media_step(step)
            if not step.passed:
                break
            if calls != args.media_list[-1]:
                settle(server, api, args.settle, step.passed)
        result["memory_after"] = memory(server.pids())
    finally:
        result["exit_status"] = server.stop()
        result["log"] = str(server.log_path)
        result["log_problems"] = server.log_problems()[:50]
        result["steps"] = [asdict(s) for s in steps]
    best = max((s for s in steps if s.passed), key=lambda s: s.calls, default=None)
    result["best"] = asdict(best) if best else None
    return result


# ---------------------------------------------------------------------------
# Report


SETUP_SUMMARY = (
    "max zero-failure rate (calls/s)",
    "p99 setup (ms)",
    "p99 INVITE/407 (ms)",
    "CPU ms per call",
    "RSS after the step (MB)",
    "RSS after idling (MB)",
)
SETUP_STEPS = (
    "offered (calls/s)",
    "calls",
    "failed",
    "set up (calls/s)",
    "setup p50/p99 (ms)",
    "INVITE/407 p99 (ms)",
    "BYE p99 (ms)",
    "pbx CPU %",
    "CPU ms per call",
    "other CPU %",
    "RSS (MB)",
    "result",
)
OVERLOAD_HEADERS = (
    "step",
    "offered (calls/s)",
    "goodput (calls/s)",
    "failed",
    "setup p99 (ms)",
    "pbx UDP drops",
    "result",
)
MEDIA_STEPS = (
    "concurrent calls",
    "failed",
    "setup p99 (ms)",
    "relayed packets/s (expected)",
    "per call a→b / b→a (pps, median)",
    "pbx CPU %",
    "CPU µs per packet",
    "RSS (MB)",
    "RSS per call (KB)",
    "result",
)


def _ms(value: float | None, tick: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if tick and value < tick:
        return f"< {tick:g}"
    return f"{value:g}"


def setup_summary_rows(
    result: dict[str, Any], rates: Sequence[int]
) -> list[tuple[str, ...]]:
    """The one-line summary of the setup-rate mode."""
    best = result.get("best")
    idle = result.get("memory_after_idle", {}).get("rss_mb")
    idle_text = f"{idle:.1f}" if idle else "n/a"
    if best is None:
        return [(f"< {rates[0]}", "n/a", "n/a", "n/a", "n/a", idle_text)]
    tick = best.get("tick_ms")
    rate = f"≥ {best['rate']}" if best["rate"] == rates[-1] else str(best["rate"])
    cpu = best.get("cpu_ms_per_call")
    return [
        (
            rate,
            _ms(best["timers"].get("setup", {}).get("p99"), tick),
            _ms(best["timers"].get("challenge", {}).get("p99"), tick),
            f"{cpu:.2f}" if cpu is not None else "n/a",
            f"{best['memory_after'].get('rss_mb', 0):.1f}",
            idle_text,
        )
    ]


def setup_step_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per step of the setup-rate mode."""
    rows: list[tuple[str, ...]] = []
    for s in result.get("steps", []):
        tick = s.get("tick_ms")
        setup = s["timers"].get("setup", {})
        cpu = s.get("cpu_ms_per_call")
        u = s.get("usage", {})
        rows.append(
            (
                f"{s['rate']}" + (f" (#{s['attempt']})" if s["attempt"] > 1 else ""),
                str(s["calls"]),
                str(s["uac"].get("failed", 0) + s["uas"].get("failed", 0)),
                f"{s['completion_rate']:.1f}",
                f"{_ms(setup.get('p50'), tick)} / {_ms(setup.get('p99'), tick)}",
                _ms(s["timers"].get("challenge", {}).get("p99"), tick),
                _ms(s["timers"].get("teardown", {}).get("p99"), tick),
                f"{u.get('server_cpu_percent', 0):.0f}",
                f"{cpu:.2f}" if cpu is not None else "n/a",
                f"{u.get('other_cpu_percent', 0):.0f}",
                f"{s['memory_after'].get('rss_mb', 0):.1f}",
                s["verdict"],
            )
        )
    return rows


def overload_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per step at and after the zero-failure rate R."""
    best = result.get("best")
    overload = [s for s in result.get("steps", []) if s["phase"] != "climb"]
    rows: list[tuple[str, ...]] = []
    for s in [best, *overload] if best is not None else overload:
        rows.append(
            (
                "R" if s["phase"] == "climb" else s["phase"],
                str(s["rate"]),
                f"{s['goodput']:.1f}",
                str(s["uac"].get("failed", 0) + s["uas"].get("failed", 0)),
                _ms(s["timers"].get("setup", {}).get("p99"), s.get("tick_ms")),
                str(s["socket_drops"].get("pbx", 0)),
                s["verdict"],
            )
        )
    return rows


def media_step_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per step of the media mode."""
    rows: list[tuple[str, ...]] = []
    for s in result.get("steps", []):
        u = s.get("usage", {})
        per_call = s.get("rss_per_call_kb")
        cpu = s.get("cpu_us_per_packet")
        ab = s["a_to_b_pps"].get("median")
        ba = s["b_to_a_pps"].get("median")
        setup = s["timers"].get("setup", {}).get("p99")
        rows.append(
            (
                str(s["calls"]),
                str(s["uac"].get("failed", 0) + s["uas"].get("failed", 0)),
                _ms(setup, None),
                f"{s['relayed_pps']:.0f} ({s['expected_pps']:.0f})",
                f"{ab:.1f} / {ba:.1f}" if ab is not None and ba is not None else "n/a",
                f"{u.get('server_cpu_percent', 0):.0f}" if u else "n/a",
                f"{cpu:.1f}" if cpu is not None else "n/a",
                f"{s['rss_plateau_mb']:.1f}" if s["rss_plateau_mb"] else "n/a",
                f"{per_call:.1f}" if per_call is not None else "n/a",
                s["verdict"],
            )
        )
    return rows


def print_tables(
    title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]
) -> None:
    """A table as Markdown, then as reStructuredText."""
    if not rows:
        return
    print(f"\n{title}\n")
    print(markdown_table(headers, rows))
    print()
    print(rst_table(headers, rows))


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    """Print the tables of one mode and what they mean."""
    if result.get("error"):
        print(f"\n{result['mode']}: {result['error']}")
        return
    if result["mode"] == "setup":
        print_tables(
            "Call setup rate", SETUP_SUMMARY, setup_summary_rows(result, args.rate_list)
        )
        print_tables("Steps", SETUP_STEPS, setup_step_rows(result))
        overload = overload_rows(result)
        if overload:
            print_tables("Overload", OVERLOAD_HEADERS, overload)
        print(
            f"\n{args.callers} callers, {args.callees} callee(s); steps of {args.seconds:g} s;"
            f" calls held {args.hold_ms} ms after the ACK. A rate counts when no call failed"
            f" at either phone and {MIN_ACHIEVED:.0%} of it was set up. Setup: INVITE with"
            " credentials sent to 200 received (after the INVITE/407/ACK round, shown"
            " apart). CPU: pbx process, utime+stime, per completed call. RSS: after that"
            " step"
            + (
                f", and after the last step plus {args.idle_memory:g} s idle."
                if args.idle_memory > 0
                else "."
            )
        )
        profile = result.get("profile")
        if profile:
            print(f"\npy-spy during the step at {args.profile_rate} calls/s:\n")
            print(profile["text"])
    else:
        print_tables("Concurrent calls with RTP", MEDIA_STEPS, media_step_rows(result))
        print(
            f"\nCalls set up at {args.media_rate} calls/s, each {args.media_seconds:g} s after"
            " the answer; caller plays G.711 (50 packets/s), callee echoes. Packets/s: what"
            " pbx's relay forwarded (both directions) between two /calls snapshots while"
            " every call was up. RSS per call: (RSS then - RSS before the first call) / calls."
            " SIPp does not measure loss or jitter of what it receives."
        )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--media", action="store_true", help="concurrent calls with RTP only"
    )
    mode.add_argument(
        "--both", action="store_true", help="setup rate, then concurrent calls with RTP"
    )
    parser.add_argument(
        "--callers", type=int, default=100, help="caller extensions (default 100)"
    )
    parser.add_argument(
        "--callees",
        type=int,
        default=1,
        help="callee extensions, one SIPp UAS each (default 1)",
    )
    parser.add_argument(
        "--rates",
        help=f"setup rates climbed, calls/s (default {','.join(map(str, RATES))})",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=10.0,
        help="offered seconds per setup step (default 10)",
    )
    parser.add_argument(
        "--hold-ms",
        type=int,
        default=1000,
        help="ms between ACK and BYE in the setup steps (default 1000)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=1,
        help="run a setup step that did not pass again this many times (default 1)",
    )
    parser.add_argument(
        "--profile-rate",
        type=int,
        help="record pbx with py-spy during the setup step at this rate",
    )
    parser.add_argument(
        "--media-calls",
        help=f"concurrent calls ramped (default {','.join(map(str, MEDIA_CALLS))})",
    )
    parser.add_argument(
        "--media-seconds",
        type=float,
        default=60.0,
        help="length of a media call after the answer (default 60)",
    )
    parser.add_argument(
        "--media-rate",
        type=int,
        default=50,
        help="calls/s at which media calls are set up (default 50)",
    )
    parser.add_argument(
        "--media-window",
        type=float,
        default=20.0,
        help="seconds measured while all media calls are up (default 20)",
    )
    parser.add_argument(
        "--media-timeout",
        type=int,
        default=60,
        help=f"pbx calls.media_timeout in media mode (default 60; setup mode: {SETUP_MEDIA_TIMEOUT})",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=3.0,
        help="seconds between steps once pbx is quiet (default 3)",
    )
    parser.add_argument(
        "--idle-memory",
        type=float,
        default=35.0,
        help="seconds to wait after the setup steps before measuring memory again (default 35; 0: skip)",
    )
    parser.add_argument(
        "--no-overload",
        dest="overload",
        action="store_false",
        help="skip the overload steps (1.5R, 3R, then R again) after the setup climb",
    )
    parser.add_argument(
        "--overload-rate",
        type=int,
        help="R for the overload steps, calls/s (default: the zero-failure rate found)",
    )
    parser.add_argument(
        "--overload-lag-ms",
        type=int,
        help="pbx's sip.overload.lag_ms (0: off; default: pbx's own)",
    )
    parser.add_argument(
        "--overload-queue-ms",
        type=int,
        help="pbx's sip.overload.queue_ms (0: off; default: pbx's own)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the scratch directory (logs, SIPp traces)",
    )
    args = parser.parse_args(argv)  # fmt: skip
    if not 1 <= args.callers <= 1000 or not 1 <= args.callees <= 20:
        parser.error("--callers must be 1-1000 and --callees 1-20")
    if not 0 <= args.retries <= 5:
        parser.error("--retries must be 0-5")
    rates = [int(r) for r in args.rates.split(",")] if args.rates else list(RATES)
    args.rate_list = sorted(r for r in rates if r > 0)
    media = (
        [int(n) for n in args.media_calls.split(",")]
        if args.media_calls
        else list(MEDIA_CALLS)
    )
    args.media_list = sorted(n for n in media if n > 0)
    if not args.rate_list or not args.media_list:
        parser.error("no rate or no call count")
    if 4 * max(args.media_list) > RELAY_PORTS[1] - RELAY_PORTS[0]:
        parser.error(f"--media-calls: at most {(RELAY_PORTS[1] - RELAY_PORTS[0]) // 4}")
    if args.media_rate < 1 or args.media_seconds < 15:
        parser.error("--media-rate must be >= 1 and --media-seconds >= 15")
    args.modes = (
        ["media"] if args.media else ["setup", "media"] if args.both else ["setup"]
    )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if shutil.which("sipp") is None:
        print("calls.py: sipp is not installed (see bench/README.rst)", file=sys.stderr)
        return 2
    command_line = shlex.join(
        ["python", "bench/calls.py", *(sys.argv[1:] if argv is None else argv)]
    )
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    scratch = Path(tempfile.mkdtemp(prefix="pbx-bench-calls-"))
    callers = make_users(args.callers, 3000)
    callees = make_users(args.callees, 4000)
    report_data: dict[str, Any] = {
        "benchmark": "calls",
        "started": stamp,
        "command": command_line,
        "machine": machine(),
        "sipp": command_version(["sipp", "-v"]),
        "options": {k: v for k, v in vars(args).items() if not k.startswith("_")},
        "relay_ports": RELAY_PORTS,
        "timers": {
            "challenge": "first INVITE sent -> 407 received",
            "setup": "INVITE with credentials sent -> 200 received",
            "teardown": "BYE sent -> 200 received",
        },
        "pass_rule": {
            "setup": f"no failed call at either phone, all calls completed, set up at >= {MIN_ACHIEVED:.0%} of the offered rate",
            "media": "no failed call at either phone, all calls completed, no media timeout in pbx's log",
        },
        "scratch": str(scratch),
        "results": [],
    }  # fmt: skip
    print(
        f"callers {callers[0].number}-{callers[-1].number}, callees"
        f" {callees[0].number}-{callees[-1].number}; modes {', '.join(args.modes)}; scratch {scratch}",
        flush=True,
    )
    status = 0
    try:
        for mode in args.modes:
            bench = bench_setup if mode == "setup" else bench_media
            try:
                report_data["results"].append(bench(args, callers, callees, scratch))
            except (RuntimeError, OSError, urllib.error.URLError) as e:
                print(f"== {mode}: {e}", file=sys.stderr, flush=True)
                report_data["results"].append(
                    {"mode": mode, "error": str(e), "steps": []}
                )
                status = 1
    finally:
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"calls-{stamp}.json"
        out.write_text(json.dumps(report_data, indent=2) + "\n")
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    for result in report_data["results"]:
        report(result, args)
    print(f"\nCommand: {command_line}")
    busy = [
        (r["mode"], s.get("rate") if r["mode"] == "setup" else s.get("calls"), s["usage"]["other_cpu_percent"])
        for r in report_data["results"]
        for s in r.get("steps", [])
        if s.get("usage", {}).get("other_cpu_percent", 0) > 20
    ]  # fmt: skip
    if busy:
        worst = max(busy, key=lambda b: b[2])
        print(
            f"Warning: other processes used up to {worst[2]:.0f}% CPU during a step"
            f" ({worst[0]} mode, step {worst[1]}): rates may be low; CPU per call holds best."
        )
    print(f"Raw results: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return status


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
