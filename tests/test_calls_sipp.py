"""
Integration tests: calls through pbx between SIPp phones.

pbx is a B2BUA: the caller's dialog (leg ``a``, pbx the UAS) and the
callee's (leg ``b``, pbx the UAC) are two dialogs with their own Call-IDs,
and the media of both is anchored on pbx's RTP relay.  Every test here
starts the real daemon, registers extension 1002 from a SIPp instance
(``register_auth.xml``), runs a SIPp UAS scenario on that same port (pbx
sends the callee's INVITE to the address the REGISTER came from) and calls
1002 as 1001 from a SIPp UAC scenario with proxy authentication.

Each scenario succeeds only if every message it expects arrives in order;
SIPp exits 0 only when every call of the run succeeded.  SIPp cannot take
an expected response code from the command line, so ``uac_refused.xml``
logs the final status it got and the test reads that line.

Whether pbx leaked relay ports is seen from outside: the relay's range is
reserved for the test, so once the calls are over nothing may be bound in
it (``/proc/net/udp``), and every ``RelayEndpoint starting on N`` line of
the daemon's log must have its ``(UDP Port N Closed)``.

Everything is bounded: SIPp runs with ``-timeout`` and the test waits for
its exit with a time limit; the API and the log are polled, never slept on.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from twisted.trial.unittest import SynchronousTestCase

from calls_support import (
    bound_udp_ports,
    call_config,
    free_udp_block,
    keyed_tone,
    write_ulaw_wav,
)
from pbx_daemon import (
    API,
    Daemon,
    admin_password,
    free_port,
    require_binary,
    strong_password,
    wait_until,
)

pytestmark = pytest.mark.integration

SCENARIOS = Path(__file__).parent / "sipp"
CALLER, CALLEE, ABSENT = "1001", "1002", "1003"
#: Ports reserved for pbx's relay: 60 RTP/RTCP pairs, 30 calls at once.
RELAY_PORTS = 120
#: Most SIPp runs in one test.
SIPP_RUNS = 5
#: Ring timeout (s) for the no-answer test, and media timeout (s) for the dead phone.
RING_TIMEOUT = 3
MEDIA_TIMEOUT = 6
#: Upper bound for anything the API should show after SIPp is done.
LIMIT = 20.0
#: The load test: calls, calls per second, and the length of each call (ms).
CALLS = 100
RATE = 10
CALL_MS = 1000

RELAY_OPENED = re.compile(r"RelayEndpoint starting on (\d+)")
RELAY_CLOSED = re.compile(r"\(UDP Port (\d+) Closed\)")


class SIPpCallCase(SynchronousTestCase):
    """The daemon with extensions 1001-1003, and the means to run SIPp against it."""

    def config(self, **kwargs: Any) -> str:
        """The daemon's configuration (a subclass adds features and routes)."""
        return call_config(**kwargs)

    def setUp(self) -> None:
        self.sipp = require_binary("sipp", "sip-tester")
        self.workdir = Path(self.mktemp()).absolute()
        self.workdir.mkdir(parents=True)
        self.api_port = free_port()
        self.sip_port = free_port()
        self.passwords = {n: strong_password(n) for n in (CALLER, CALLEE, ABSENT)}
        # One block of free ports: the relay's range, then 8 ports for each
        # SIPp run's media (-mp: SIPp binds it and the port two above; its
        # rtp_stream sends from it too).
        self.relay_first = free_udp_block(RELAY_PORTS + 8 * SIPP_RUNS)
        self.relay_last = self.relay_first + RELAY_PORTS - 1
        self.media_ports = iter(
            range(self.relay_last + 1, self.relay_last + 1 + 8 * SIPP_RUNS, 8)
        )
        admin = admin_password()
        self.daemon = Daemon(
            str(self.workdir / "pbx"),
            self.config(
                api_port=self.api_port,
                sip_port=self.sip_port,
                admin_password=admin,
                extensions=self.passwords,
                transports=("udp",),
                rtp_ports=(self.relay_first, self.relay_last),
                calls={"ring_timeout": RING_TIMEOUT, "media_timeout": MEDIA_TIMEOUT},
            ),
        )
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.api = API(self.api_port, admin)
        self.processes: list[subprocess.Popen[str]] = []
        self.addCleanup(self._kill_all)
        # SIPp's rtp_stream file, in SIPp's working directory.
        samples, _ = keyed_tone(440, 2.0, seed=1)
        write_ulaw_wav(self.workdir / "tone.wav", samples)

    def _kill_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(30)

    # -- running SIPp ------------------------------------------------------

    def injection(self, name: str, rows: Sequence[Sequence[str]]) -> Path:
        """Write a SIPp injection file (SEQUENTIAL; one ``;``-separated row per call)."""
        path = self.workdir / f"{name}.csv"
        path.write_text("SEQUENTIAL\n" + "".join(";".join(r) + "\n" for r in rows))
        return path

    def start_sipp(
        self, scenario: str, port: int, *args: str, name: str, limit: float = 60.0
    ) -> subprocess.Popen[str]:
        """
        Start SIPp with ``tests/sipp/<scenario>.xml`` from 127.0.0.1:``port``.

        Its SIP messages, unexpected messages and ``<log>`` lines go to
        ``<name>.messages``, ``<name>.errors`` and ``<name>.log`` in the
        work directory; ``-timeout`` ends it after ``limit`` seconds (and
        makes that a failure).
        """
        command = [
            self.sipp,
            "-sf", str(SCENARIOS / f"{scenario}.xml"),
            "-i", "127.0.0.1",
            "-p", str(port),
            "-t", "u1",
            "-nostdin",
            "-timeout", f"{limit:.0f}",
            "-timeout_error",
            "-trace_msg", "-message_file", str(self.workdir / f"{name}.messages"),
            "-trace_err", "-error_file", str(self.workdir / f"{name}.errors"),
            "-trace_logs", "-log_file", str(self.workdir / f"{name}.log"),
            "-trace_screen", "-screen_file", str(self.workdir / f"{name}.screen"),
            *args,
        ]  # fmt: skip
        output = (self.workdir / f"{name}.out").open("w")
        self.addCleanup(output.close)
        process = subprocess.Popen(
            command,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.processes.append(process)
        return process

    def finish(
        self, process: subprocess.Popen[str], name: str, limit: float = 90.0
    ) -> None:
        """Wait for SIPp to exit and require exit status 0 (every call succeeded)."""
        try:
            status = process.wait(limit)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
            self.fail(
                f"SIPp {name} still running after {limit:.0f}s\n{self.report(name)}"
            )
        if status != 0:
            self.fail(f"SIPp {name} exited {status}\n{self.report(name)}")

    def report(self, name: str) -> str:
        """The tails of a SIPp run's files and the daemon's log, for a failure message."""
        parts = []
        for suffix in ("out", "screen", "errors", "log", "messages"):
            path = self.workdir / f"{name}.{suffix}"
            if path.exists():
                parts.append(
                    f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
                )
        parts.append("--- pbx\n" + "\n".join(list(self.daemon.output)[-40:]))
        return "\n".join(parts)

    def register_callee(self, number: str = CALLEE) -> int:
        """
        Register ``number`` from a fresh SIPp port and return that port (run
        the callee's UAS scenario there).
        """
        port = free_port(socket.SOCK_DGRAM)
        rows = [
            (
                number,
                f"[authentication username={number} password={self.passwords[number]}]",
            )
        ]
        inf = self.injection(f"register-{number}", rows)
        process = self.start_sipp(
            "register_auth", port, "-inf", str(inf), "-m", "1",
            "-mp", str(next(self.media_ports)),
            f"127.0.0.1:{self.sip_port}", name=f"register-{number}", limit=20,
        )  # fmt: skip
        self.finish(process, f"register-{number}")
        wait_until(
            lambda: any(
                r["extension"] == number and r["source"] == f"127.0.0.1:{port}"
                for r in self.api.registrations()
            ),
            LIMIT,
            f"the binding of {number}",
        )
        return port

    def start_callee(
        self, scenario: str, port: int, calls: int, *args: str
    ) -> subprocess.Popen[str]:
        """Run the callee's UAS ``scenario`` for ``calls`` calls on ``port``."""
        return self.start_sipp(
            scenario, port, "-m", str(calls), "-mp", str(next(self.media_ports)), *args,
            name=f"callee-{scenario}", limit=120,
        )  # fmt: skip

    def call(
        self,
        scenario: str,
        callee: str = CALLEE,
        *args: str,
        calls: int = 1,
        password: str | None = None,
        wait: bool = True,
    ) -> subprocess.Popen[str]:
        """
        Call ``callee`` as 1001 ``calls`` times with the UAC ``scenario``.

        :param password: the caller's password (default: the right one).
        :param wait: wait for SIPp to finish successfully before returning.
        """
        secret = password if password is not None else self.passwords[CALLER]
        row = (CALLER, callee, f"[authentication username={CALLER} password={secret}]")
        inf = self.injection(f"caller-{scenario}", [row])
        process = self.start_sipp(
            scenario, free_port(socket.SOCK_DGRAM),
            "-inf", str(inf), "-m", str(calls), "-mp", str(next(self.media_ports)),
            *args, f"127.0.0.1:{self.sip_port}",
            name=f"caller-{scenario}", limit=120,
        )  # fmt: skip
        if wait:
            self.finish(process, f"caller-{scenario}")
        return process

    def final_status(self, scenario: str) -> str:
        """The ``final <status>`` a run of ``uac_refused.xml`` logged."""
        log = (self.workdir / f"caller-{scenario}.log").read_text(errors="replace")
        found = re.findall(r"final (\d{3})", log)
        self.assertEqual(len(found), 1, log)
        return found[0]

    # -- what pbx shows --------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """Every call detail record, oldest first."""
        return list(reversed(self.api.get("/cdr?limit=1000")["records"]))

    def wait_records(self, count: int) -> list[dict[str, Any]]:
        """Wait until there are at least ``count`` records (they are written just after a call ends)."""
        return wait_until(
            lambda: r if len(r := self.records()) >= count else None,
            LIMIT,
            f"{count} call detail record(s)",
        )

    def live_calls(self) -> list[dict[str, Any]]:
        """The calls in progress."""
        return list(self.api.get("/calls")["calls"])

    def assert_idle(self) -> None:
        """No call is left, every relay port is closed again, and pbx logged no trouble."""
        wait_until(lambda: not self.live_calls(), LIMIT, "no call in progress")
        wait_until(
            lambda: not bound_udp_ports(self.relay_first, self.relay_last),
            LIMIT,
            f"relay ports {self.relay_first}-{self.relay_last} all closed",
        )
        opened, closed = Counter[str](), Counter[str]()
        for line in list(self.daemon.output):
            if m := RELAY_OPENED.search(line):
                opened[m.group(1)] += 1
            elif m := RELAY_CLOSED.search(line):
                closed[m.group(1)] += 1
        self.assertEqual(opened, closed & opened)
        # Every message of the scenarios parsed, and nothing went wrong inside.
        self.assertFalse([line for line in self.daemon.output if "malformed" in line])
        self.assertFalse(self.daemon.tracebacks)


class SIPpCallTests(SIPpCallCase):
    """Answered calls: many in a row, hold and unhold, and a phone that dies."""

    def test_hundred_calls(self) -> None:
        """
        100 authenticated calls at 10/s, each with a second of RTP echoed by
        the callee, all succeed; each leaves one ANSWERED record per leg, the
        two legs are separate dialogs, media flowed both ways through the
        relay, and no relay port is left open.
        """
        port = self.register_callee()
        callee = self.start_callee("uas_answer", port, CALLS, "-rtp_echo")
        caller = self.call(
            "uac_call_rtp", CALLEE,
            "-r", str(RATE), "-l", "40", "-d", str(CALL_MS),
            calls=CALLS, wait=False,
        )  # fmt: skip

        # While SIPp calls, note what the relay of each call has carried
        # (sampled every 0.1 s: this watches, it waits for nothing).
        carried: dict[str, tuple[int, int]] = {}
        deadline = time.monotonic() + 120
        while caller.poll() is None and time.monotonic() < deadline:
            for live in self.live_calls():
                media = live.get("media") or {}
                if live["state"] == "confirmed" and media:
                    carried[live["call_id"]] = (
                        media["a_to_b"]["packets"],
                        media["b_to_a"]["packets"],
                    )
            time.sleep(0.1)
        self.finish(caller, "caller-uac_call_rtp")
        self.finish(callee, "callee-uas_answer")

        records = self.wait_records(2 * CALLS)
        self.assertEqual(len(records), 2 * CALLS)
        a = [r for r in records if r["leg"] == "a"]
        b = [r for r in records if r["leg"] == "b"]
        self.assertEqual(len(a), CALLS)
        self.assertEqual(len(b), CALLS)
        # SIPp's Call-IDs are <call number>-<pid>@<local ip>.
        expected = {f"{n}-{caller.pid}@127.0.0.1" for n in range(1, CALLS + 1)}
        self.assertEqual({r["call_id"] for r in a}, expected)
        self.assertEqual(len({r["call_id"] for r in b}), CALLS)
        self.assertFalse(expected & {r["call_id"] for r in b})
        for r in records:
            self.assertEqual(
                (r["caller"], r["callee"], r["disposition"], r["codecs"]),
                (CALLER, CALLEE, "ANSWERED", "PCMU"),
                r,
            )
            self.assertEqual((r["hangup_side"], r["hangup_cause"]), ("a", "BYE"), r)
            self.assertIsNotNone(r["answer"])
            self.assertGreaterEqual(r["end"] - r["answer"], CALL_MS / 1000 - 0.2, r)

        # Media went both ways through the relay in the calls seen live.
        both_ways = [c for c, (ab, ba) in carried.items() if ab > 0 and ba > 0]
        # Each call lasts over a second, so sampling sees (nearly) every one.
        self.assertGreaterEqual(len(both_ways), CALLS * 9 // 10, carried)
        self.assertTrue(set(carried) <= expected)
        self.assert_idle()

    def test_hold_and_unhold(self) -> None:
        """
        The caller's re-INVITE with sendonly is answered recvonly, and the
        one with sendrecv sendrecv; the callee receives both re-INVITEs, and
        the relay holds the caller's media in between.
        """
        port = self.register_callee()
        callee = self.start_callee("uas_hold", port, 1)
        caller = self.call("uac_hold", CALLEE, "-d", "1000", wait=False)
        # Meanwhile, the relay stops sending to the caller while it holds
        # (sampled every 0.1 s; each state lasts 1 s, -d).
        held: list[bool] = []
        deadline = time.monotonic() + 60
        while caller.poll() is None and time.monotonic() < deadline:
            for live in self.live_calls():
                if live["state"] == "confirmed" and live.get("media"):
                    state = live["media"]["a"]["held"]
                    if not held or held[-1] != state:
                        held.append(state)
            time.sleep(0.1)
        self.finish(caller, "caller-uac_hold")
        self.finish(callee, "callee-uas_hold")
        self.assertEqual(held, [False, True, False])
        caller_log = (self.workdir / "caller-uac_hold.log").read_text()
        callee_log = (self.workdir / "callee-uas_hold.log").read_text()
        self.assertIn("answer: a=recvonly", caller_log)
        self.assertIn("answer: a=sendrecv", caller_log)
        self.assertIn("offer: a=sendonly", callee_log)
        self.assertIn("offer: a=sendrecv", callee_log)
        records = self.wait_records(2)
        self.assertEqual(
            sorted((r["leg"], r["disposition"]) for r in records),
            [("a", "ANSWERED"), ("b", "ANSWERED")],
        )
        self.assert_idle()

    def test_dead_phone(self) -> None:
        """
        When the caller's phone dies mid-call (SIGKILL), the media timeout
        ends the call: the callee gets a BYE, the call leaves the API and its
        record says "media timeout".
        """
        port = self.register_callee()
        callee = self.start_callee("uas_answer", port, 1, "-rtp_echo")
        caller = self.call("uac_call_rtp", CALLEE, "-d", "60000", wait=False)

        def flowing() -> bool:
            for live in self.live_calls():
                media = live.get("media") or {}
                if (
                    media
                    and min(media["a_to_b"]["packets"], media["b_to_a"]["packets"])
                    >= 25
                ):
                    return True
            return False

        wait_until(flowing, LIMIT, "half a second of media both ways")
        os.kill(caller.pid, signal.SIGKILL)
        killed = time.monotonic()
        caller.wait(30)

        wait_until(
            lambda: not self.live_calls(), 3 * MEDIA_TIMEOUT, "the dead call to end"
        )
        ended = time.monotonic() - killed
        # The watchdog runs every 5 s: the call ends 6 to 11 s after the last packet.
        self.assertGreaterEqual(ended, MEDIA_TIMEOUT - 1)
        self.assertLess(ended, MEDIA_TIMEOUT + 9)
        # The callee got its BYE (the scenario ends only with BYE -> 200).
        self.finish(callee, "callee-uas_answer", limit=LIMIT)
        records = self.wait_records(2)
        for r in records:
            self.assertEqual(
                (r["disposition"], r["hangup_side"], r["hangup_cause"]),
                ("ANSWERED", "pbx", "media timeout"),
                r,
            )
        self.assertEqual(sorted(r["leg"] for r in records), ["a", "b"])
        self.assert_idle()


class SIPpOutcomeTests(SIPpCallCase):
    """Calls that are not answered end with the right status for the caller and the right record."""

    def refused(self, scenario: str, status: str) -> dict[str, Any]:
        """
        The callee refuses with ``status`` (its UAS ``scenario`` requires
        pbx's ACK); the caller gets it.

        :returns: the call's one record.
        """
        port = self.register_callee()
        callee = self.start_callee(scenario, port, 1)
        self.call("uac_refused")
        self.finish(callee, f"callee-{scenario}")
        self.assertEqual(self.final_status("uac_refused"), status)
        [record] = self.wait_records(1)
        self.assertEqual(
            (record["leg"], record["caller"], record["callee"]), ("a", CALLER, CALLEE)
        )
        self.assertIsNone(record["answer"])
        self.assertTrue(record["hangup_cause"].startswith(status), record)
        self.assert_idle()
        return record

    def test_busy(self) -> None:
        """The callee answers 486: the caller gets 486 and the record says BUSY."""
        record = self.refused("uas_busy", "486")
        self.assertEqual((record["disposition"], record["hangup_side"]), ("BUSY", "b"))

    def test_decline(self) -> None:
        """The callee answers 603: the caller gets 603; the record counts it as BUSY, refused by the callee."""
        record = self.refused("uas_decline", "603")
        self.assertEqual((record["disposition"], record["hangup_side"]), ("BUSY", "b"))

    def test_no_answer(self) -> None:
        """
        The callee rings and never answers: after calls.ring_timeout pbx
        cancels its INVITE (the callee's scenario requires the CANCEL) and
        the caller gets 480; the record says NO ANSWER.
        """
        port = self.register_callee()
        callee = self.start_callee("uas_ring", port, 1)
        started = time.monotonic()
        self.call("uac_refused")
        rang = time.monotonic() - started
        self.finish(callee, "callee-uas_ring")
        self.assertEqual(self.final_status("uac_refused"), "480")
        self.assertGreaterEqual(rang, RING_TIMEOUT)
        self.assertLess(rang, RING_TIMEOUT + 5)
        [record] = self.wait_records(1)
        self.assertEqual((record["leg"], record["disposition"]), ("a", "NO ANSWER"))
        self.assertIsNone(record["answer"])
        self.assert_idle()

    def test_caller_cancels(self) -> None:
        """
        The caller cancels while the callee rings: the caller gets 200 for the
        CANCEL and 487 for the INVITE, the callee gets a CANCEL, and the
        record says CANCELLED, ended by the caller.
        """
        port = self.register_callee()
        callee = self.start_callee("uas_ring", port, 1)
        self.call("uac_cancel", CALLEE, "-d", "500")
        self.finish(callee, "callee-uas_ring")
        log = (self.workdir / "caller-uac_cancel.log").read_text()
        self.assertIn("200 for 2 CANCEL", log)
        self.assertIn("487 for 2 INVITE", log)
        [record] = self.wait_records(1)
        self.assertEqual(
            (record["leg"], record["disposition"], record["hangup_side"]),
            ("a", "CANCELLED", "a"),
        )
        self.assertIsNone(record["answer"])
        self.assert_idle()

    def test_unregistered_callee(self) -> None:
        """Calling an extension with no registered phone gets 480, and no call is set up."""
        self.call("uac_refused", ABSENT)
        self.assertEqual(self.final_status("uac_refused"), "480")
        self.assertEqual(self.records(), [])
        self.assert_idle()

    def test_unknown_number(self) -> None:
        """Calling a number that is no extension and matches no route gets 404."""
        self.call("uac_refused", "9999")
        self.assertEqual(self.final_status("uac_refused"), "404")
        self.assertEqual(self.records(), [])
        self.assert_idle()

    def test_wrong_password(self) -> None:
        """A caller whose credentials are wrong is challenged again with 407, and no call starts."""
        self.register_callee()
        self.call("uac_wrong_password", CALLEE, password=self.passwords[CALLER] + "x")
        self.assertEqual(self.records(), [])
        self.assertFalse(
            [line for line in self.daemon.output if f"call {CALLER} -> " in line]
        )
        self.assert_idle()
