"""
Authenticated REGISTER throughput: pbx against Kamailio, same SIPp scenario.

For each server the benchmark generates ``--users`` extensions with strong
random passwords, starts the server on loopback with them (pbx from this
source checkout, Kamailio with ``bench/kamailio/kamailio.cfg``), and drives
it with ``bench/sipp/register_auth.xml`` at rising rates.  One SIPp "call"
is one authenticated registration: REGISTER, 401, REGISTER with digest
credentials, 200.

A rate *passes* when every call of the step succeeded and the registrations
completed at no less than 90 % of the offered rate (SIPp slows down by
itself when too many calls are open, which would otherwise hide overload).
A step that does not pass is run once more (``--retries``), because the
machine is shared; climbing stops after the first rate that still does not
pass.  Every attempt is kept in the JSON.

Reported per server: the highest passing rate; the 99th percentile of the
per-registration response time at that rate (first REGISTER sent to 200
received, from SIPp's ``-trace_rtt`` dump); the resident memory after the
run (``VmRSS``, summed over all processes for Kamailio); and the CPU time
the server used per registration at that rate (``utime + stime`` from
``/proc``), the figure that is most stable on a shared machine.

Usage, from a source checkout (nothing is installed; see bench/README.rst)::

    python bench/register.py [--users 1000] [--servers pbx,kamailio] [--max-rate 10000]

The raw results go to ``bench/results/register-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    DOMAIN,
    HERE,
    MIN_GOODPUT,
    OVERLOAD_STEPS,
    PBX,
    RESULTS,
    ROOT,
    START_LIMIT_S,
    Server,
    Usage,
    User,
    clock_tick,
    command_version,
    completion_rate,
    descendants,
    free_udp_port,
    goodput,
    machine,
    make_users,
    markdown_table,
    memory,
    read_rtt_file,
    rst_table,
    rtt_summary,
    sip_ping,
    sipp_counters,
    write_injection_file,
)

SCENARIO = HERE / "sipp" / "register_auth.xml"
KAMAILIO_CFG = HERE / "kamailio" / "kamailio.cfg"

RATES = (250, 500, 1000, 1500, 2000, 3000, 4000, 6000, 8000, 10000)
#: A step passes only if registrations completed at this share of the rate.
MIN_ACHIEVED = 0.9
#: SIPp writes the rtt dump in blocks of this many calls and drops a partial
#: last block at exit, so every step's call count is a multiple of it.
RTT_BLOCK = 50
#: A registration not answered within this time fails (SIPp -recv_timeout).
RECV_TIMEOUT_S = 10
#: Pause between steps, so retransmissions of one do not land in the next.
SETTLE_S = 2.0


# ---------------------------------------------------------------------------
# Kamailio


class Kamailio(Server):
    """Kamailio in the foreground with the benchmark's registrar configuration."""

    name = "kamailio"

    #: UDP worker processes (``children``): one per core of the 2-core machine.
    children = 2

    def start(self) -> None:
        """Copy the configuration next to a generated users.cfg, start, wait for SIP."""
        shutil.copy(KAMAILIO_CFG, self.workdir / "kamailio.cfg")
        lines = [f'$sht(users=>{u.number}) = "{u.password}";' for u in self.users]
        (self.workdir / "users.cfg").write_text("\n".join(lines) + "\n")
        rundir = self.workdir / "run"
        rundir.mkdir(exist_ok=True)
        self.command = [
            "kamailio",
            "-DD",
            "-E",
            "-f",
            str(self.workdir / "kamailio.cfg"),
            "-l",
            f"udp:127.0.0.1:{self.port}",
            "-Y",
            str(rundir),
            "-A",
            f"BENCH_CHILDREN={self.children}",
        ]
        self._spawn()
        assert self.process is not None
        if not sip_ping(self.port, START_LIMIT_S):
            code = self.process.poll()
            raise self._died(
                "does not answer OPTIONS"
                if code is None
                else f"exited with status {code}"
            )

    def pids(self) -> list[int]:
        """The main process and all the processes it forked."""
        assert self.process is not None
        return descendants(self.process.pid)

    def version(self) -> str:
        """``kamailio -v``, first line."""
        return command_version(["kamailio", "-v"])

    def log_problems(self) -> list[str]:
        """Errors and worse from Kamailio's log (it logs warnings and above)."""
        pattern = re.compile(r"\b(ERROR|CRITICAL|BUG|ALERT)\b")
        return [
            line
            for line in self.log_path.read_text(errors="replace").splitlines()
            if pattern.search(line)
        ]


SERVERS: dict[str, type[Server]] = {"pbx": PBX, "kamailio": Kamailio}


# ---------------------------------------------------------------------------
# SIPp steps


@dataclass
class Step:
    """One SIPp run at one rate against one server."""

    rate: int
    calls: int
    attempt: int = 1
    #: "climb", or an overload step's label (1.5R, 3R, recovery).
    phase: str = "climb"
    command: list[str] = field(default_factory=list)
    exit_status: int | None = None
    wall_s: float = 0.0
    successful: int = 0
    failed: int = 0
    created: int = 0
    retransmissions: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    dead_call_msgs: int = 0
    out_of_call_msgs: int = 0
    watchdog_major: int = 0
    completion_rate: float = 0.0
    #: Registrations completed per second over the step (see _common.goodput).
    goodput: float = 0.0
    rtt_samples: int = 0
    rtt_tick_ms: float | None = None
    rtt_ms: dict[str, float] = field(default_factory=dict)
    server_cpu_s: float = 0.0
    server_main_thread_cpu_s: float | None = None
    server_cpu_percent: float = 0.0
    cpu_ms_per_registration: float | None = None
    sipp_cpu_s: float = 0.0
    sipp_cpu_percent: float = 0.0
    #: Busy CPU of everything else on the machine during the step (a shared
    #: machine: anything well above 0 makes the step's figures suspect).
    other_cpu_percent: float = 0.0
    #: Machine-wide (/proc/net/snmp RcvbufErrors): includes other programs.
    udp_receive_buffer_drops: int = 0
    memory_after: dict[str, float] = field(default_factory=dict)
    errors_sample: list[str] = field(default_factory=list)
    passed: bool = False
    verdict: str = ""


def run_step(
    server: Server, rate: int, calls: int, users_csv: Path, stepdir: Path
) -> Step:
    """Run SIPp once at ``rate`` for ``calls`` registrations and collect the figures."""
    stepdir.mkdir(parents=True)
    step = Step(rate=rate, calls=calls)
    offered_s = calls / rate
    step.command = [
        "sipp",
        f"127.0.0.1:{server.port}",
        "-sf",
        str(SCENARIO),
        "-inf",
        str(users_csv),
        "-key",
        "domain",
        DOMAIN,
        "-i",
        "127.0.0.1",
        "-p",
        str(free_udp_port()),
        "-t",
        "u1",
        "-r",
        str(rate),
        "-rp",
        "1000",
        "-m",
        str(calls),
        # Room for every call of a few seconds to be open at once, so SIPp
        # does not quietly slow down before the server fails.
        "-l",
        str(max(100, rate * 5)),
        "-recv_timeout",
        str(RECV_TIMEOUT_S * 1000),
        "-timeout",
        f"{math.ceil(offered_s) + 4 * RECV_TIMEOUT_S}s",
        "-max_recv_loops",
        "10000",
        "-max_sched_loops",
        "10000",
        "-trace_stat",
        "-fd",
        "1",
        "-trace_rtt",
        "-rtt_freq",
        str(RTT_BLOCK),
        "-trace_err",
        "-trace_screen",
        "-nostdin",
    ]
    usage = Usage(server.pids(), server.pids()[0] if isinstance(server, PBX) else None)
    usage.start()
    with (stepdir / "sipp.out").open("wb") as out:
        try:
            result = subprocess.run(
                step.command,
                cwd=stepdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=offered_s + 6 * RECV_TIMEOUT_S + 30,
            )
            step.exit_status = result.returncode
        except subprocess.TimeoutExpired:
            step.exit_status = None
    used = usage.stop()
    for name in (
        "wall_s",
        "server_cpu_s",
        "server_main_thread_cpu_s",
        "sipp_cpu_s",
        "server_cpu_percent",
        "sipp_cpu_percent",
        "other_cpu_percent",
        "udp_receive_buffer_drops",
    ):
        setattr(step, name, used[name])
    step.memory_after = memory(server.pids())

    for name, value in sipp_counters(stepdir).items():
        setattr(step, name, value)
    rtts = sorted(stepdir.glob("*_rtt.csv"))
    if rtts:
        dates, times = read_rtt_file(rtts[0])
        step.rtt_samples = len(times)
        step.rtt_tick_ms = clock_tick(dates)
        step.completion_rate = completion_rate(dates)
        step.goodput = goodput(step.successful, dates, offered_s)
        step.rtt_ms = rtt_summary(times)
    if step.successful:
        step.cpu_ms_per_registration = 1000 * step.server_cpu_s / step.successful
    errors = sorted(stepdir.glob("*_errors.log"))
    if errors:
        step.errors_sample = errors[0].read_text(errors="replace").splitlines()[:40]
    step.passed, step.verdict = judge(step)
    return step


def judge_overload(step: Step, zero_failure_rate: int) -> tuple[bool, str]:
    """An overload step passes when goodput stays at MIN_GOODPUT of the zero-failure rate."""
    if step.exit_status is None:
        return False, "SIPp did not finish in time"
    floor = MIN_GOODPUT * zero_failure_rate
    if step.goodput < floor:
        return False, f"goodput {step.goodput:.0f} reg/s, under {floor:.0f}"
    return True, f"goodput ≥ {floor:.0f}"


def judge(step: Step) -> tuple[bool, str]:
    """Whether a step passes, and why not."""
    if step.exit_status is None:
        return False, "SIPp did not finish in time"
    if step.failed:
        kinds = ", ".join(f"{k} {v}" for k, v in step.failures.items()) or "see errors"
        return False, f"{step.failed} failed calls ({kinds})"
    if step.successful < step.calls:
        return False, f"only {step.successful} of {step.calls} calls completed"
    if step.completion_rate < MIN_ACHIEVED * step.rate:
        return (
            False,
            f"completed {step.completion_rate:.0f} reg/s, under {MIN_ACHIEVED:.0%} of the rate",
        )
    return True, "ok"


# ---------------------------------------------------------------------------
# One server, all rates


def step_calls(rate: int, seconds: float, cap: int) -> int:
    """Calls for one step: ``rate`` x ``seconds``, capped, rounded up to RTT_BLOCK."""
    calls = min(cap, max(RTT_BLOCK, round(rate * seconds)))
    return math.ceil(calls / RTT_BLOCK) * RTT_BLOCK


def print_step(step: Step) -> None:
    """One progress line for a finished step."""
    p99 = step.rtt_ms.get("p99", math.nan)
    again = f" (attempt {step.attempt})" if step.attempt > 1 else ""
    phase = f" [{step.phase}]" if step.phase != "climb" else ""
    print(
        f"   {step.rate:>6} reg/s x {step.calls:>6}{again}{phase}: {step.successful:>6} ok {step.failed:>5} failed,"
        f" {step.completion_rate:7.0f} reg/s done, goodput {step.goodput:7.0f}, p99 {p99:6.0f} ms,"
        f" CPU: server {step.server_cpu_percent:3.0f}% SIPp {step.sipp_cpu_percent:3.0f}%"
        f" other {step.other_cpu_percent:3.0f}%, UDP drops {step.udp_receive_buffer_drops}"
        f" -> {step.verdict}",
        flush=True,
    )


def bench_server(
    name: str,
    users: Sequence[User],
    rates: Sequence[int],
    args: argparse.Namespace,
    scratch: Path,
) -> dict[str, Any]:
    """Start one server, climb the rates, stop it; returns its results."""
    workdir = scratch / name
    workdir.mkdir()
    users_csv = scratch / "users.csv"
    server = SERVERS[name](workdir, free_udp_port(), users)
    if isinstance(server, PBX):
        server.overload_lag_ms = args.overload_lag_ms
        server.overload_queue_ms = args.overload_queue_ms
    result: dict[str, Any] = {
        "server": name,
        "version": server.version(),
        "port": server.port,
    }
    print(f"== {name}: {result['version']}", flush=True)
    started = time.monotonic()
    server.start()
    result["command"] = server.command
    result["start_s"] = round(time.monotonic() - started, 2)
    result["memory_idle"] = memory(server.pids())
    steps: list[Step] = []
    try:
        for rate in rates:
            calls = step_calls(rate, args.seconds, args.max_calls)
            for attempt in range(1, args.retries + 2):
                step = run_step(
                    server, rate, calls, users_csv, workdir / f"rate-{rate}-{attempt}"
                )
                step.attempt = attempt
                steps.append(step)
                print_step(step)
                time.sleep(SETTLE_S)
                if step.passed:
                    break
            if not step.passed:
                break
        best = max((s for s in steps if s.passed), key=lambda s: s.rate, default=None)
        base = args.overload_rate or (best.rate if best is not None else None)
        if args.overload and base is not None:
            steps += overload_steps(server, base, args, users_csv, workdir)
        result["memory_after"] = memory(server.pids())
        if args.idle_memory > 0:
            # After Timer J (32 s) every transaction of the run has ended.
            time.sleep(args.idle_memory)
            result["memory_after_idle"] = {
                **memory(server.pids()),
                "idle_s": args.idle_memory,
            }
    finally:
        result["exit_status"] = server.stop()
    result["log_problems"] = server.log_problems()[:50]
    result["log"] = str(server.log_path)
    result["steps"] = [asdict(s) for s in steps]
    best = max(
        (s for s in steps if s.passed and s.phase == "climb"),
        key=lambda s: s.rate,
        default=None,
    )
    result["best"] = asdict(best) if best else None
    if result["log_problems"]:
        print(
            f"   {len(result['log_problems'])} suspicious line(s) in the {name} log, e.g.:",
            flush=True,
        )
        for line in result["log_problems"][:3]:
            print(f"     {line[:200]}", flush=True)
    return result


def overload_steps(
    server: Server, rate: int, args: argparse.Namespace, users_csv: Path, workdir: Path
) -> list[Step]:
    """
    After the zero-failure rate R: a step at 1.5R and at 3R (failures are
    expected there; goodput counts), then R again, which must pass as in
    the climb: the server recovers once the load drops.
    """
    steps: list[Step] = []
    for label, share in OVERLOAD_STEPS:
        offered = round(rate * share)
        calls = step_calls(offered, args.seconds, args.max_calls)
        step = run_step(server, offered, calls, users_csv, workdir / f"overload-{label}")
        step.phase = label
        if label != "recovery":
            step.passed, step.verdict = judge_overload(step, rate)
        steps.append(step)
        print_step(step)
        time.sleep(SETTLE_S)
    return steps


# ---------------------------------------------------------------------------
# Report


HEADERS = (
    "server",
    "max zero-failure rate (reg/s)",
    "p99 at that rate (ms)",
    "RSS (MB)",
    "CPU ms per registration",
)


def table_rows(
    results: Sequence[dict[str, Any]], rates: Sequence[int]
) -> list[tuple[str, ...]]:
    """One row of text per server; ``≥`` marks a server that passed the highest rate tried."""
    first_rate, top_rate = rates[0], rates[-1]
    rows: list[tuple[str, ...]] = []
    for r in results:
        best = r.get("best")
        rss = r.get("memory_after", {}).get("rss_mb")
        rss_text = f"{rss:.1f}" if rss is not None else "n/a"
        if best is None:
            rows.append((r["server"], f"< {first_rate}", "n/a", rss_text, "n/a"))
            continue
        p99 = best["rtt_ms"].get("p99", math.nan)
        tick = clock_resolution(results) or 0
        p99_text = f"< {tick:g}" if tick and p99 < tick else f"{p99:g}"
        cpu = best.get("cpu_ms_per_registration")
        rate_text = (
            f"≥ {best['rate']}" if best["rate"] == top_rate else str(best["rate"])
        )
        rows.append(
            (
                r["server"],
                rate_text,
                p99_text,
                rss_text,
                f"{cpu:.3f}" if cpu is not None else "n/a",
            )
        )
    return rows


OVERLOAD_HEADERS = (
    "server",
    "step",
    "offered (reg/s)",
    "goodput (reg/s)",
    "failed",
    "p99 (ms)",
    "UDP drops",
    "result",
)


def overload_rows(results: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    """One row per step at and after the zero-failure rate R."""
    rows: list[tuple[str, ...]] = []
    for r in results:
        best = r.get("best")
        overload = [s for s in r.get("steps", []) if s["phase"] != "climb"]
        shown = [best, *overload] if best is not None else overload
        for s in shown:
            p99 = s["rtt_ms"].get("p99")
            rows.append(
                (
                    r["server"],
                    "R" if s["phase"] == "climb" else s["phase"],
                    str(s["rate"]),
                    f"{s['goodput']:.0f}",
                    str(s["failed"]),
                    f"{p99:g}" if p99 is not None else "n/a",
                    str(s["udp_receive_buffer_drops"]),
                    s["verdict"],
                )
            )
    return rows


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--users", type=int, default=1000, help="extensions to register (default 1000)"
    )
    parser.add_argument(
        "--first-user",
        type=int,
        default=3000,
        help="first extension number (default 3000)",
    )
    parser.add_argument(
        "--servers", default="pbx,kamailio", help="comma-separated: pbx, kamailio"
    )
    parser.add_argument(
        "--max-rate",
        type=int,
        default=10000,
        help="highest rate tried, reg/s (default 10000)",
    )
    parser.add_argument(
        "--rates",
        help=f"comma-separated rates to climb (default {','.join(map(str, RATES))})",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=5.0,
        help="offered seconds per step (default 5)",
    )
    parser.add_argument(
        "--max-calls",
        type=int,
        default=50000,
        help="most registrations per step (default 50000)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=1,
        help="run a step that did not pass again this many times (default 1)",
    )
    parser.add_argument(
        "--idle-memory",
        type=float,
        default=35.0,
        help="seconds to wait after the run before measuring memory again (default 35; 0: skip)",
    )
    parser.add_argument(
        "--no-overload",
        dest="overload",
        action="store_false",
        help="skip the overload steps (1.5R, 3R, then R again) after the climb",
    )
    parser.add_argument(
        "--overload-rate",
        type=int,
        help="R for the overload steps, reg/s (default: the zero-failure rate found)",
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
    args = parser.parse_args(argv)
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in names if s not in SERVERS]
    if unknown or not names:
        parser.error(
            f"--servers: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(SERVERS)}"
        )
    args.server_names = names
    if not 0 <= args.retries <= 5:
        parser.error("--retries must be 0-5")
    if not 1 <= args.users <= 100000:
        parser.error("--users must be 1-100000")
    if args.first_user < 10 or len(str(args.first_user + args.users - 1)) > 10:
        parser.error("--first-user: extension numbers are 2-10 digits")
    rates = [int(r) for r in args.rates.split(",")] if args.rates else list(RATES)
    args.rate_list = sorted(r for r in rates if 0 < r <= args.max_rate)
    if not args.rate_list:
        parser.error("no rate at or under --max-rate")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    missing = [
        tool
        for tool in ("sipp", *(["kamailio"] if "kamailio" in args.server_names else []))
        if shutil.which(tool) is None
    ]
    if missing:
        print(
            f"register.py: not installed: {', '.join(missing)} (see bench/README.rst)",
            file=sys.stderr,
        )
        return 2
    command_line = (
        shlex.join(["python", *sys.argv])
        if argv is None
        else shlex.join(["python", "bench/register.py", *argv])
    )
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    scratch = Path(tempfile.mkdtemp(prefix="pbx-bench-register-"))
    users = make_users(args.users, args.first_user)
    write_injection_file(users, scratch / "users.csv")
    report: dict[str, Any] = {
        "benchmark": "register",
        "started": stamp,
        "command": command_line,
        "machine": machine(),
        "sipp": command_version(["sipp", "-v"]),
        "users": args.users,
        "first_user": args.first_user,
        "domain": DOMAIN,
        "rates": args.rate_list,
        "seconds_per_step": args.seconds,
        "max_calls": args.max_calls,
        "retries": args.retries,
        "pass_rule": f"no failed call, all calls completed, completion rate >= {MIN_ACHIEVED:.0%} of the offered rate",
        "scratch": str(scratch),
        "results": [],
    }
    print(
        f"{args.users} users {users[0].number}-{users[-1].number}; rates {args.rate_list}; scratch {scratch}",
        flush=True,
    )
    status = 0
    try:
        for name in args.server_names:
            try:
                report["results"].append(
                    bench_server(name, users, args.rate_list, args, scratch)
                )
            except (RuntimeError, OSError) as e:
                print(f"== {name}: {e}", file=sys.stderr, flush=True)
                report["results"].append(
                    {"server": name, "error": str(e), "best": None, "steps": []}
                )
                status = 1
    finally:
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"register-{stamp}.json"
        out.write_text(json.dumps(report, indent=2) + "\n")
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    rows = table_rows(report["results"], args.rate_list)
    print()
    print(markdown_table(HEADERS, rows))
    print()
    print(rst_table(HEADERS, rows))
    print()
    overload = overload_rows(report["results"])
    if overload:
        print(markdown_table(OVERLOAD_HEADERS, overload))
        print()
        print(rst_table(OVERLOAD_HEADERS, overload))
        print()
    print(f"Command: {command_line}")
    print(
        f"{args.users} users; steps of {args.seconds:g} s at {', '.join(map(str, args.rate_list))} reg/s;"
        f" a rate counts when no call failed and {MIN_ACHIEVED:.0%} of it was achieved."
        " p99: first REGISTER to 200, SIPp clock ticks every"
        f" {_tick_text(report['results'])}. RSS after the run; Kamailio: summed over its processes."
        f" ≥: passed the highest rate tried."
    )
    busy = [
        (r["server"], s["rate"], s["other_cpu_percent"])
        for r in report["results"]
        for s in r.get("steps", [])
        if s.get("other_cpu_percent", 0) > 20
    ]
    if busy:
        worst = max(busy, key=lambda b: b[2])
        print(
            f"Warning: other processes used up to {worst[2]:.0f}% CPU during a step"
            f" ({worst[0]} at {worst[1]} reg/s): figures may be low; CPU ms per registration holds best."
        )
    print(f"Raw results: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return status


def clock_resolution(results: Sequence[dict[str, Any]]) -> float | None:
    """SIPp's clock tick: the smallest one seen in any step (sparse steps show multiples)."""
    ticks = [
        s["rtt_tick_ms"]
        for r in results
        for s in r.get("steps", [])
        if s.get("rtt_tick_ms")
    ]
    return min(ticks) if ticks else None


def _tick_text(results: Sequence[dict[str, Any]]) -> str:
    tick = clock_resolution(results)
    return f"{tick:g} ms" if tick else "? ms"


if __name__ == "__main__":
    sys.exit(main())
