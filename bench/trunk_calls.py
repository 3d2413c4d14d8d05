"""
Calls out through a trunk: outbound calls per second through a SIPp carrier
that challenges every INVITE with digest, with zero failures.

SIPp plays both ends.  The phones: a UAC (``bench/sipp/uac_call.xml``)
calls ``9`` and ten digits as one of ``--callers`` extensions with proxy
authentication; pbx authenticates it, matches the ``trunk:`` route, sends
the call to the carrier as ``+1`` and the number, answers the carrier's
401 with the trunk's credentials (RFC 3261 §22.2) and relays the answer.
The carrier: a UAS (``bench/sipp/carrier_auth.xml``) that challenges each
INVITE, checks the answer with ``verifyauth`` and answers.  pbx runs from
this checkout on loopback (``_common.PBX``).

The UAC climbs ``--rates`` (calls/s), each step ``rate x --seconds`` short
calls.  A step passes when no call failed at either end, every call
completed, and calls completed at no less than 90 % of the offered rate
(SIPp's completion times of the setup timer, the INVITE with credentials
to its 200, over the first 99 % of calls); climbing stops at the first step
that does not pass.  Reported per step: calls, failures, the achieved rate,
the setup time (p50, p99: pbx authenticates the phone, routes, is
challenged by the carrier, answers, relays the 200), pbx's CPU time per call.

``--sign FILE``: YAML appended to pbx's configuration before the run (for
example the section that makes pbx sign outbound calls, once it exists),
and the run labelled "signed", to compare with the same run without it.

Usage, from a source checkout::

    python bench/trunk_calls.py [--rates 50,100,200,...] [--seconds 5] [--sign FILE]

The raw results go to ``bench/results/trunk_calls-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import (
    PBX,
    RESULTS,
    SIPP_SCENARIOS,
    Usage,
    User,
    command_version,
    completion_rate,
    free_udp_port,
    machine,
    make_users,
    percentile,
    read_rtt_file,
    rst_table,
    sipp_counters,
    stop_process,
    strong_password,
)

UAC = SIPP_SCENARIOS / "uac_call.xml"
CARRIER = SIPP_SCENARIOS / "carrier_auth.xml"
DIALLED = "95552345678"
ACCOUNT = "acct-1"
RELAY_PORTS = (10000, 17999)
RECV_TIMEOUT_S = 10


def make_pbx(workdir: Path, users: Sequence[User], carrier_port: int, password: str, sign: str) -> PBX:
    """pbx with one trunk to the carrier and a ``9`` route out through it."""
    server = PBX(workdir, free_udp_port(), users)
    server.digest_algorithms = ("MD5",)
    server.extra_config = (
        "rtp:\n"
        f"  ports: {RELAY_PORTS[0]}-{RELAY_PORTS[1]}\n"
        "  interface: 127.0.0.1\n"
        "trunks:\n"
        "  carrier:\n"
        f'    uri: "sip:127.0.0.1:{carrier_port}"\n'
        f"    username: {ACCOUNT}\n"
        f'    password: "{password}"\n'
        '    caller_id: "+15551230000"\n'
        "dialplan:\n"
        '  - {match: "_9NXXNXXXXXX", trunk: carrier, strip: 1, prepend: "+1"}\n'
        + sign
    )
    return server


def sipp(scenario: Path, port: int, *args: str, remote: int | None = None) -> list[str]:
    """A SIPp command line: ``scenario`` over UDP from 127.0.0.1:``port``."""
    command = ["sipp"] + ([f"127.0.0.1:{remote}"] if remote is not None else [])
    return [*command, "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port), "-t", "u1", "-nostdin", *args]


def spawn(command: Sequence[str], cwd: Path, name: str) -> subprocess.Popen[bytes]:
    """Start SIPp in ``cwd``; its output goes to ``<name>.out`` there."""
    with (cwd / f"{name}.out").open("wb") as out:
        return subprocess.Popen(list(command), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)


def run_step(server: PBX, workdir: Path, users: Sequence[User], carrier_port: int, password: str,
             rate: int, seconds: float) -> dict[str, Any]:
    """One step: ``rate`` x ``seconds`` calls; the counters of both ends and pbx's CPU."""
    stepdir = workdir / f"rate-{rate}"
    stepdir.mkdir()
    calls = max(1, math.ceil(rate * seconds))
    (stepdir / "carrier.csv").write_text(f"SEQUENTIAL\n{ACCOUNT};{password}\n")
    (stepdir / "callers.csv").write_text(
        "SEQUENTIAL\n" + "".join(f"{u.number};{DIALLED};{u.password}\n" for u in users))
    stats = ["-trace_stat", "-fd", "1", "-trace_err"]
    limit = math.ceil(seconds + 4 * RECV_TIMEOUT_S + 10)
    carrier = spawn(sipp(CARRIER, carrier_port, "-inf", str(stepdir / "carrier.csv"), "-m", str(calls),
                         "-timeout", f"{limit + 30}s", *stats), stepdir, "carrier")
    time.sleep(0.5)  # SIPp binds its port before the first INVITE reaches it
    usage = Usage(server.pids(), main_pid=server.pids()[0]).start()
    started = time.monotonic()
    uac = spawn(sipp(UAC, free_udp_port(), "-inf", str(stepdir / "callers.csv"), "-m", str(calls),
                     "-r", str(rate), "-d", "0", "-recv_timeout", str(RECV_TIMEOUT_S * 1000),
                     "-timeout", f"{limit}s", "-max_recv_loops", "10000", "-max_sched_loops", "10000", *stats,
                     "-trace_rtt", "-rtt_freq", "1", remote=server.port), stepdir, "uac")
    try:
        uac.wait(limit + 10)
    except subprocess.TimeoutExpired:
        stop_process(uac, 5)
    elapsed = time.monotonic() - started
    try:
        carrier.wait(15)
    except subprocess.TimeoutExpired:
        stop_process(carrier, 5)
    cpu = usage.stop()
    phones, far = sipp_counters(stepdir, "uac"), sipp_counters(stepdir, "carrier")
    # Timer 2 of uac_call.xml: the INVITE with credentials sent -> 200 received
    # (pbx authenticates, routes, is challenged by the carrier, answers it, relays the 200).
    rtt = sorted(stepdir.glob("uac_*_rtt.csv"))
    dates, setup = read_rtt_file(rtt[0], "2") if rtt else ([], [])
    achieved = completion_rate(dates)
    setup.sort()
    passed = (phones.get("failed", 1) == 0 and far.get("failed", 1) == 0
              and phones.get("successful") == calls and achieved >= 0.9 * rate)
    return {
        "rate": rate, "calls": calls, "passed": passed, "achieved_per_s": round(achieved, 1),
        "setup_ms_p50": round(percentile(setup, 50), 1) if setup else None,
        "setup_ms_p99": round(percentile(setup, 99), 1) if setup else None,
        "uac": phones, "carrier": far, "elapsed_s": round(elapsed, 2),
        "pbx_cpu_ms_per_call": round(1000 * cpu["server_cpu_s"] / max(1, calls), 3),
        "pbx_cpu_percent": round(cpu["server_cpu_percent"], 1), "usage": cpu,
        "errors": [line for path in sorted(stepdir.glob("*_errors.log"))
                   for line in path.read_text(errors="replace").splitlines()[:5]],
    }


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="50,100,200,300,400,500,600",
                        help="calls/s climbed, comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0, help="offered length of a step")
    parser.add_argument("--callers", type=int, default=20, help="calling extensions")
    parser.add_argument("--sign", type=Path, help="YAML appended to pbx's config (e.g. call signing)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Climb the rates and report."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if shutil.which("sipp") is None:
        print("trunk_calls: needs sipp (apt-get install sip-tester)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="pbx-bench-trunks-"))
    users = make_users(args.callers, 5000)
    carrier_port = free_udp_port()
    password = strong_password(ACCOUNT, 24)
    sign = args.sign.read_text() if args.sign else ""
    server = make_pbx(workdir, users, carrier_port, password, sign)
    server.start()
    steps: list[dict[str, Any]] = []
    try:
        for rate in (int(r) for r in args.rates.split(",")):
            step = run_step(server, workdir, users, carrier_port, password, rate, args.seconds)
            steps.append(step)
            print(f"{rate:5d} calls/s: {step['calls']} calls, failed {step['uac'].get('failed')}"
                  f"/{step['carrier'].get('failed')} (phones/carrier), {step['achieved_per_s']}/s achieved,"
                  f" pbx {step['pbx_cpu_ms_per_call']} ms CPU per call, {step['pbx_cpu_percent']} % of a core"
                  f" -> {'pass' if step['passed'] else 'FAIL'}", flush=True)
            if not step["passed"]:
                for line in step["errors"]:
                    print(f"      {line}")
                break
    finally:
        server.stop()
        problems = server.log_problems()
    best = max((s["rate"] for s in steps if s["passed"]), default=0)
    result = {
        "benchmark": "trunk_calls", "signed": bool(args.sign), "best_rate": best, "steps": steps,
        "pbx": server.version(), "sipp": command_version(["sipp", "-v"]), "machine": machine(),
        "log_problems": problems[:20],
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"trunk_calls-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=1))
    print(rst_table(("calls/s offered", "calls", "failed", "achieved/s", "setup p99 ms", "pbx CPU ms/call",
                     "pass"), [
        (str(s["rate"]), str(s["calls"]), str(s["uac"].get("failed", "?")), str(s["achieved_per_s"]),
         str(s["setup_ms_p99"]), str(s["pbx_cpu_ms_per_call"]), "yes" if s["passed"] else "no") for s in steps]))
    print(f"{'signed' if args.sign else 'unsigned'}: {best} calls/s with zero failures; results in {out}")
    if problems:
        print(f"pbx logged {len(problems)} problem line(s), e.g. {problems[0]}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"scratch directory kept: {workdir}")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
