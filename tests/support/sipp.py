"""
Calls through the real daemon between SIPp phones: :class:`SIPpCallCase`.

It starts the daemon with extensions 1001-1003, registers a callee from a
SIPp instance (``register_auth.xml``), runs a SIPp UAS scenario on that same
port (pbx sends the callee's INVITE to the address the REGISTER came from)
and calls it from a SIPp UAC scenario with proxy authentication.  SIPp exits
0 only when every call of the run succeeded; it cannot take an expected
response code from the command line, so ``uac_refused.xml`` logs the final
status it got and :meth:`SIPpCallCase.final_status` reads that line.

Whether pbx leaked relay ports is seen from outside: the relay's range is
reserved for the test, so once the calls are over nothing may be bound in
it (``/proc/net/udp``), and every ``RelayEndpoint starting on N`` line of
the daemon's log must have its ``(UDP Port N Closed)``.

Everything is bounded: SIPp runs with ``-timeout`` and the test waits for
its exit with a time limit; the API and the log are polled, never slept on.
"""

from __future__ import annotations

import re
import socket
import subprocess
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from support.calls import (
    bound_udp_ports,
    call_config,
    free_udp_block,
    keyed_tone,
    write_ulaw_wav,
)
from support.daemon import (
    API,
    Daemon,
    admin_password,
    free_port,
    require_binary,
    strong_password,
    wait_until,
)
from support.paths import SCENARIOS

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
