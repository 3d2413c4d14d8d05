"""
Shared by the benchmarks in this directory (``register.py``, ``calls.py``).

- Extensions with strong random passwords and SIPp injection files.
- Processes: CPU time and memory from ``/proc``, the machine's busy time and
  UDP receive-buffer drops, stopping a child, version strings.
- :class:`PBX`: ``twistd -n pbx`` from this checkout with a generated
  configuration, in a scratch directory.
- :class:`Usage`: CPU of the server, of SIPp and of everything else over a
  stretch of time (the machine is shared).
- Reading SIPp's ``-trace_stat`` and ``-trace_rtt`` files; percentiles.
- Markdown and reStructuredText tables; what machine the numbers come from.

Not a benchmark itself: the scripts import it (``bench/`` is their
``sys.path[0]``).
"""

from __future__ import annotations

import math
import os
import platform
import re
import resource
import secrets
import signal
import socket
import string
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
SIPP_SCENARIOS = HERE / "sipp"

#: SIP domain and digest realm of the servers under test.
DOMAIN = "bench.test"
START_LIMIT_S = 180.0
CLK_TCK = os.sysconf("SC_CLK_TCK")

#: twistd run by this interpreter, as tests/support/daemon.py does.
TWISTD = [
    sys.executable,
    "-c",
    "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()",
]

_PASSWORD_ALPHABET = string.ascii_letters + string.digits


# ---------------------------------------------------------------------------
# Users


@dataclass(frozen=True)
class User:
    """One extension: number and SIP password."""

    number: str
    password: str


def strong_password(number: str, length: int = 20) -> str:
    """
    A random password that passes pbx's checks for ``number``.

    Letters and digits only, so it needs no quoting in YAML, in the SIPp CSV
    or in a Kamailio string; it always holds all three character classes and
    never contains the extension number.
    """
    while True:
        password = "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(length))
        classes = (string.ascii_lowercase, string.ascii_uppercase, string.digits)
        if (
            all(any(c in cls for c in password) for cls in classes)
            and number not in password
        ):
            return password


def make_users(count: int, first: int) -> list[User]:
    """``count`` users numbered from ``first``, each with a fresh password."""
    return [User(str(n), strong_password(str(n))) for n in range(first, first + count)]


def write_injection_file(users: Sequence[User], path: Path) -> None:
    """The SIPp injection file: ``SEQUENTIAL`` then ``user;password`` lines."""
    lines = ["SEQUENTIAL", *(f"{u.number};{u.password}" for u in users)]
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------
# Processes


def free_udp_port() -> int:
    """A UDP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stat_fields(pid: int | str, task: str | None = None) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (field 3 is index 0)."""
    path = f"/proc/{pid}/task/{task}/stat" if task else f"/proc/{pid}/stat"
    with open(path) as f:
        text = f.read()
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pids: Iterable[int]) -> float:
    """User plus system CPU time of the processes (all their threads), in seconds."""
    ticks = 0
    for pid in pids:
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / CLK_TCK


def thread_cpu_seconds(pid: int) -> float:
    """CPU time of a process's main thread alone (for pbx: the reactor thread)."""
    fields = _stat_fields(pid, str(pid))
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory(pids: Sequence[int]) -> dict[str, float]:
    """Summed VmRSS and Pss of the processes, in MB (10^6 bytes)."""
    rss = sum(_status_kib(p, "VmRSS") for p in pids)
    pss = sum(_pss_kib(p) for p in pids)
    return {
        "rss_mb": rss * 1024 / 1e6,
        "pss_mb": pss * 1024 / 1e6,
        "processes": len(pids),
    }


def system_cpu_seconds() -> float:
    """Busy CPU time of the whole machine (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...: all but idle, iowait
    busy = sum(fields[:8]) - fields[3] - fields[4]
    return busy / CLK_TCK


def udp_receive_errors() -> int:
    """Datagrams the kernel dropped for a full receive buffer, machine-wide."""
    with open("/proc/net/snmp") as f:
        lines = [line.split() for line in f if line.startswith("Udp:")]
    header, values = lines[0], lines[1]
    return int(values[header.index("RcvbufErrors")])


@dataclass
class Usage:
    """
    CPU time over a stretch of time (a SIPp run): of the server's processes,
    of its main thread (pbx's reactor), of SIPp and of everything else on
    the machine, which is shared; plus the machine-wide UDP receive-buffer
    drops.  SIPp's time is that of this process's children reaped in
    between (SIPp run to its end), or of ``sipp_pids`` from ``/proc`` when
    given (SIPp still running at :meth:`stop`).
    """

    server_pids: list[int]
    main_pid: int | None = None
    sipp_pids: list[int] | None = None
    started: float = 0.0
    _server: float = 0.0
    _main: float = 0.0
    _children: float = 0.0
    _system: float = 0.0
    _drops: int = 0

    def _children_cpu(self) -> float:
        if self.sipp_pids is not None:
            return cpu_seconds(self.sipp_pids)
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    def start(self) -> Usage:
        """Note the counters now; returns self."""
        self._server = cpu_seconds(self.server_pids)
        self._main = thread_cpu_seconds(self.main_pid) if self.main_pid else 0.0
        self._children = self._children_cpu()
        self._system = system_cpu_seconds()
        self._drops = udp_receive_errors()
        self.started = time.monotonic()
        return self

    def stop(self) -> dict[str, Any]:
        """
        The figures since :meth:`start`: ``wall_s``, ``server_cpu_s``,
        ``server_main_thread_cpu_s`` (None without ``main_pid``),
        ``sipp_cpu_s``, the three as ``*_percent`` of one core (and
        ``other_cpu_percent``), and ``udp_receive_buffer_drops``.
        """
        wall = max(1e-6, time.monotonic() - self.started)
        system = system_cpu_seconds() - self._system
        server = cpu_seconds(self.server_pids) - self._server
        sipp = self._children_cpu() - self._children
        main = thread_cpu_seconds(self.main_pid) - self._main if self.main_pid else None
        return {
            "wall_s": wall,
            "server_cpu_s": server,
            "server_main_thread_cpu_s": main,
            "sipp_cpu_s": sipp,
            "server_cpu_percent": 100 * server / wall,
            "sipp_cpu_percent": 100 * sipp / wall,
            "other_cpu_percent": max(0.0, 100 * (system - server - sipp) / wall),
            "udp_receive_buffer_drops": udp_receive_errors() - self._drops,
        }


def descendants(root: int) -> list[int]:
    """``root`` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(entry)[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return sorted(found)


def stop_process(process: subprocess.Popen[bytes], limit: float = 30.0) -> int:
    """SIGTERM, then SIGKILL after ``limit`` seconds; returns the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(limit)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return int(process.returncode)


def command_version(command: Sequence[str]) -> str:
    """First non-empty line a ``--version``-like command prints, or ``?``."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    for line in (result.stdout + result.stderr).splitlines():
        if line.strip():
            return line.strip()
    return "?"


def sip_ping(port: int, limit: float) -> bool:
    """Send OPTIONS to 127.0.0.1:``port`` until any SIP response comes back."""
    deadline = time.monotonic() + limit
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.5)
        local = s.getsockname()[1]
        n = 0
        while time.monotonic() < deadline:
            n += 1
            message = (
                f"OPTIONS sip:{DOMAIN} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-bench-ping-{n};rport\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:ping@{DOMAIN}>;tag=ping{n}\r\n"
                f"To: <sip:{DOMAIN}>\r\n"
                f"Call-ID: bench-ping-{n}@127.0.0.1\r\n"
                f"CSeq: {n} OPTIONS\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            s.sendto(message.encode(), ("127.0.0.1", port))
            try:
                data = s.recv(65536)
            except (TimeoutError, ConnectionRefusedError):
                continue
            if data.startswith(b"SIP/2.0 "):
                return True
    return False


# ---------------------------------------------------------------------------
# Servers


class Server:
    """A server under test: started in a scratch directory, stopped at the end."""

    name = ""

    def __init__(self, workdir: Path, port: int, users: Sequence[User]) -> None:
        self.workdir = workdir
        self.port = port
        self.users = users
        self.process: subprocess.Popen[bytes] | None = None
        self.command: list[str] = []
        self.log_path = workdir / f"{self.name}.log"

    def start(self) -> None:
        """Start the server and return once it answers SIP."""
        raise NotImplementedError

    def pids(self) -> list[int]:
        """The processes whose CPU and memory count for this server."""
        assert self.process is not None
        return [self.process.pid]

    def stop(self) -> int:
        """Stop the server; returns its exit status."""
        if self.process is None:
            return 0
        return stop_process(self.process)

    def version(self) -> str:
        """The server's version string."""
        raise NotImplementedError

    def log_problems(self) -> list[str]:
        """Log lines that look like server faults rather than load."""
        return []

    def _spawn(self, env: dict[str, str] | None = None) -> None:
        log = self.log_path.open("wb")
        try:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()

    def _died(self, what: str) -> RuntimeError:
        tail = self.log_path.read_text(errors="replace").splitlines()[-30:]
        return RuntimeError(f"{self.name} {what}; log tail:\n" + "\n".join(tail))


class PBX(Server):
    """
    ``twistd -n pbx`` from this checkout, SQLite state in the scratch directory.

    The configuration is generated: UDP on 127.0.0.1, the users as
    extensions, otherwise defaults; a benchmark adjusts it with the
    attributes below (on the instance, before :meth:`start`).
    """

    name = "pbx"
    #: Challenge order (``sip.digest_algorithms``).  SIPp 3.6 answers only the
    #: first challenge and knows only MD5.
    digest_algorithms: tuple[str, ...] = ("MD5", "SHA-256")
    #: The REST API's port (0: any) and administrator password ("": none).
    api_port = 0
    admin_password = ""
    #: More top-level YAML (``rtp:``, ``calls:`` sections), appended as is.
    extra_config = ""
    #: ``sip.overload.lag_ms`` and ``queue_ms`` (0: that signal off); None: pbx's default.
    overload_lag_ms: int | None = None
    overload_queue_ms: int | None = None
    #: Log lines that look like faults rather than load (:meth:`log_problems`).
    problem_pattern = re.compile(
        r"Traceback|REGISTER failed|handler failed|dropped|Unhandled|CRITICAL|lockout",
        re.I,
    )

    def config_text(self) -> str:
        """The pbx YAML configuration: UDP on loopback, the users as extensions."""
        lines = [
            f"# Written by bench/{Path(sys.argv[0]).name}.",
            "sip:",
            f"  domain: {DOMAIN}",
            f'  listen: ["udp:{self.port}:interface=127.0.0.1"]',
            "  # SIPp 3.6 answers only the first challenge and knows only MD5.",
            f"  digest_algorithms: [{', '.join(self.digest_algorithms)}]",
        ]
        overload = {
            k: v
            for k, v in (("lag_ms", self.overload_lag_ms), ("queue_ms", self.overload_queue_ms))
            if v is not None
        }
        if overload:
            pairs = ", ".join(f"{k}: {v}" for k, v in overload.items())
            lines.append(f"  overload: {{{pairs}}}")
        lines += [
            "api:",
            f'  listen: "tcp:{self.api_port}:interface=127.0.0.1"',
        ]
        if self.admin_password:
            lines.append(
                f'  admins: [{{username: admin, password: "{self.admin_password}"}}]'
            )
        lines += [
            f"state_dir: {self.workdir / 'state'}",
            "# The load comes from one address: measure capacity, not the",
            "# per-source request limits (security.rate_limits).",
            "security: {allow: [127.0.0.1]}",
            "extensions:",
        ]
        lines += [
            f'  "{u.number}": {{name: Bench {u.number}, password: "{u.password}"}}'
            for u in self.users
        ]
        return "\n".join(lines) + "\n" + self.extra_config

    def environment(self) -> dict[str, str]:
        """This process's environment with the checkout's src/ and dropin on PYTHONPATH."""
        env = dict(os.environ)
        paths = [str(ROOT / "src"), str(ROOT)]
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        return env

    def start(self) -> None:
        """Start the daemon and wait for its ``pbx ready`` line."""
        config = self.workdir / "pbx.yml"
        config.write_text(self.config_text())
        self.command = [*TWISTD, "--pidfile=", "-n", "pbx", "-c", str(config)]
        self._spawn(self.environment())
        assert self.process is not None
        deadline = time.monotonic() + START_LIMIT_S
        while time.monotonic() < deadline:
            if "pbx ready" in self.log_path.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                raise self._died(
                    f"exited with status {self.process.returncode} before 'pbx ready'"
                )
            time.sleep(0.2)
        raise self._died(f"not ready after {START_LIMIT_S:.0f}s")

    def version(self) -> str:
        """The version of the checkout: pbx.__version__ and the git commit."""
        version = "?"
        init = (ROOT / "src" / "pbx" / "__init__.py").read_text()
        m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", init)
        if m:
            version = m.group(1)
        commit = command_version(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]
        )
        dirty = subprocess.run(
            # --no-optional-locks: status must not refresh (write) the index.
            [
                "git",
                "--no-optional-locks",
                "-C",
                str(ROOT),
                "status",
                "--porcelain",
                "--untracked-files=no",
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        return f"pbx {version} ({commit}{', modified' if dirty else ''})"

    def log_problems(self) -> list[str]:
        """Tracebacks, failed handlers and dropped datagrams from the daemon's log."""
        return [
            line
            for line in self.log_path.read_text(errors="replace").splitlines()
            if self.problem_pattern.search(line)
        ]


FAILURE_COLUMNS = (
    "FailedCannotSendMessage",
    "FailedMaxUDPRetrans",
    "FailedUnexpectedMessage",
    "FailedCallRejected",
    "FailedCmdNotSent",
    "FailedRegexpDoesntMatch",
    "FailedRegexpHdrNotFound",
    "FailedOutboundCongestion",
    "FailedTimeoutOnRecv",
    "FailedTimeoutOnSend",
)


def read_stat_file(path: Path) -> dict[str, str]:
    """The last row of a SIPp ``-trace_stat`` file, by column name."""
    rows = [
        line for line in path.read_text(errors="replace").splitlines() if line.strip()
    ]
    header, last = rows[0].split(";"), rows[-1].split(";")
    return dict(zip(header, last, strict=False))


def read_rtt_file(
    path: Path, rtd: str | None = None
) -> tuple[list[float], list[float]]:
    """
    Completion times and response times (ms) from a SIPp ``-trace_rtt`` file.

    :param rtd: only the rows of this response-time timer (third column,
        ``rtd_no``); None: every row.
    """
    dates, times = [], []
    for line in path.read_text(errors="replace").splitlines()[1:]:
        parts = line.split(";")
        if len(parts) >= 2:
            if rtd is not None and (len(parts) < 3 or parts[2].strip() != rtd):
                continue
            try:
                dates.append(float(parts[0]))
                times.append(float(parts[1]))
            except ValueError:
                continue
    return dates, times


def sipp_counters(stepdir: Path, prefix: str = "") -> dict[str, Any]:
    """
    The final counters of the SIPp run whose ``-trace_stat`` file is in
    ``stepdir`` (``<prefix>*_.csv``): successful, failed, created,
    retransmissions, failures by kind, dead-call and out-of-call messages,
    watchdog events.  Empty when there is no statistics file.
    """
    stats = sorted(stepdir.glob(f"{prefix}*_.csv"))
    if not stats:
        return {}
    row = read_stat_file(stats[0])

    def count(name: str) -> int:
        try:
            return int(float(row.get(name, "0") or 0))
        except ValueError:
            return 0

    return {
        "successful": count("SuccessfulCall(C)"),
        "failed": count("FailedCall(C)"),
        "created": count("TotalCallCreated"),
        "retransmissions": count("Retransmissions(C)"),
        "failures": {n: count(f"{n}(C)") for n in FAILURE_COLUMNS if count(f"{n}(C)")},
        "dead_call_msgs": count("DeadCallMsgs(C)"),
        "out_of_call_msgs": count("OutOfCallMsgs(C)"),
        "watchdog_major": count("WatchdogMajor(C)"),
    }


def rtt_summary(times: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99, p99.9, max and mean of response times (ms); empty for none."""
    ordered = sorted(times)
    if not ordered:
        return {}
    return {
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p99": percentile(ordered, 99),
        "p99.9": percentile(ordered, 99.9),
        "max": ordered[-1],
        "mean": sum(ordered) / len(ordered),
    }


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def completion_rate(dates: Sequence[float]) -> float:
    """
    Registrations completed per second, over the first 99 % of completions.

    The last 1 % is left out so that a handful of calls saved by a
    retransmission (500 ms later) do not stretch the interval.
    """
    ordered = sorted(dates)
    if len(ordered) < 2:
        return 0.0
    last = max(1, math.ceil(0.99 * len(ordered)) - 1)
    span = (ordered[last] - ordered[0]) / 1000
    return last / span if span > 0 else 0.0


def goodput(successful: int, dates: Sequence[float], offered_s: float) -> float:
    """
    Completions per second under overload: all ``successful`` ones over the
    offered time, or over the time their completion ``dates`` (ms) took if
    that was longer.
    """
    if not successful:
        return 0.0
    span = (max(dates) - min(dates)) / 1000 if dates else 0.0
    return successful / max(offered_s, span)


#: Overload steps after the zero-failure rate R is found: (label, share of R).
#: The last is the recovery step, R again.
OVERLOAD_STEPS = (("1.5R", 1.5), ("3R", 3.0), ("recovery", 1.0))
#: Under overload, goodput must stay at this share of R.
MIN_GOODPUT = 0.9


def clock_tick(dates: Sequence[float]) -> float | None:
    """The smallest step of SIPp's clock seen in the completion times."""
    steps = sorted(
        {round(b - a, 1) for a, b in zip(dates, dates[1:], strict=False) if b > a}
    )
    return steps[0] if steps else None


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown pipe table."""
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---:" if i else "---" for i in range(len(headers))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def rst_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An reStructuredText grid table."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(char: str) -> str:
        return "+" + "+".join(char * (w + 2) for w in widths) + "+"

    def cells(values: Sequence[str]) -> str:
        return (
            "|"
            + "|".join(f" {v:<{w}} " for v, w in zip(values, widths, strict=True))
            + "|"
        )

    out = [line("-"), cells(headers), line("=")]
    for row in rows:
        out += [cells(row), line("-")]
    return "\n".join(out)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_before": os.getloadavg(),
    }
