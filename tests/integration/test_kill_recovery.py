"""
Integration tests: nothing pbx acknowledged is lost when it is killed with
SIGKILL (no shutdown code runs), and calls that were up get their records.

Registrations: SIPp registers 1,000 extensions at 250/s and logs every
``200`` it receives (``tests/sipp/register_auth_logged.xml``); pbx is
killed while the burst is under way, restarted on the same state, and
every registration SIPp saw acknowledged must be listed again.

Calls: SIPp places calls with RTP to a registered SIPp callee; once they
are all up and the journal of live calls has been touched past their
answer (read from the SQLite file, as a second reader of the WAL), pbx is
killed, restarted, and each call has one ``INTERRUPTED`` record per leg
that ends at the last touch.

Voicemail: a SIPp caller leaves a message for an extension that is not
registered and hangs up; pbx is killed the moment SIPp has the ``200`` to
its BYE, and after the restart the mailbox holds the message.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.calls import keyed_tone, write_ulaw_wav
from support.daemon import (
    API,
    Daemon,
    admin_password,
    free_port,
    loopback_config,
    require_binary,
    strong_password,
    wait_until,
)
from support.features import FeatureCallCase
from support.paths import SCENARIOS
from support.sipp import CALLEE, LIMIT, SIPpCallCase

pytestmark = pytest.mark.integration

EXTENSIONS = [str(n) for n in range(4000, 5000)]
RATE = 250
#: Registrations pbx must have taken before it is killed (of 1,000).
KILL_AFTER = 150
#: Calls up at the kill, and how long SIPp would have kept them (ms).
CALLS = 8
CALL_MS = 120_000
#: The journal's touch interval (pbx.calls.cdr.TOUCH_INTERVAL), and a bound
#: for the first touch after all calls are up.
TOUCH_INTERVAL = 30.0
TOUCH_LIMIT = TOUCH_INTERVAL + 20


#: How long the caller stays on after the greeting starts (ms): the greeting, then the message.
MESSAGE_CALL_MS = 20_000


def kill_hard(daemon: Daemon) -> None:
    """SIGKILL the daemon and reap it: no shutdown code runs."""
    assert daemon.process is not None
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.process.wait(30)


class RegistrationsSurviveKillTests(SynchronousTestCase):
    """Every registration SIPp saw acknowledged is there after a SIGKILL and a restart."""

    def setUp(self) -> None:
        self.sipp = require_binary("sipp", "sip-tester")
        self.workdir = Path(self.mktemp()).absolute()
        self.workdir.mkdir(parents=True)
        self.api_port = free_port()
        self.sip_port = free_port()
        self.passwords = {number: strong_password(number) for number in EXTENSIONS}
        self.admin = admin_password()
        self.config = loopback_config(
            api_port=self.api_port,
            sip_port=self.sip_port,
            admin_password=self.admin,
            extensions=self.passwords,
            digest_algorithms=["MD5", "SHA-256"],
            transports=("udp",),
        )
        self.daemon = Daemon(str(self.workdir / "pbx"), self.config)
        self.addCleanup(self.daemon.stop)
        self.daemon.start(limit=120)

    def start_sipp(self) -> subprocess.Popen[str]:
        """Start registering every extension; each 200 is logged to ``sipp.log``."""
        inf = self.workdir / "users.csv"
        inf.write_text("SEQUENTIAL\n" + "".join(
            f"{n};[authentication username={n} password={p}]\n" for n, p in self.passwords.items()
        ))
        command = [
            self.sipp,
            "-sf", str(SCENARIOS / "register_auth_logged.xml"),
            "-inf", str(inf),
            "-m", str(len(EXTENSIONS)),
            "-r", str(RATE),
            "-l", str(len(EXTENSIONS)),
            # Once pbx is gone, every open registration fails within seconds.
            "-recv_timeout", "4000",
            "-i", "127.0.0.1",
            "-p", str(free_port(socket.SOCK_DGRAM)),
            "-t", "u1",
            "-nostdin",
            "-timeout", "60",
            "-trace_logs", "-log_file", str(self.workdir / "sipp.log"),
            "-trace_err", "-error_file", str(self.workdir / "sipp.errors"),
            f"127.0.0.1:{self.sip_port}",
        ]  # fmt: skip
        output = (self.workdir / "sipp.out").open("w")
        self.addCleanup(output.close)
        process = subprocess.Popen(command, cwd=self.workdir, stdin=subprocess.DEVNULL,
                                   stdout=output, stderr=subprocess.STDOUT, text=True)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        return process

    def test_acknowledged_registrations_survive_kill(self) -> None:
        """
        pbx killed with SIGKILL in the middle of 1,000 registrations lists,
        after a restart, every one whose 200 SIPp received.
        """
        api = API(self.api_port, self.admin)
        sipp = self.start_sipp()
        wait_until(lambda: len(api.registrations()) >= KILL_AFTER, 30,
                   f"{KILL_AFTER} registrations under way", interval=0.02)
        kill_hard(self.daemon)
        sipp.wait(90)
        log = (self.workdir / "sipp.log").read_text(errors="replace")
        acknowledged = set(re.findall(r"registered (\d+)", log))
        self.assertGreaterEqual(len(acknowledged), KILL_AFTER // 2)
        # The kill must have cut the burst short, or this test proves nothing.
        self.assertLess(len(acknowledged), len(EXTENSIONS), "the kill came after the burst")

        again = Daemon(str(self.workdir / "pbx"), self.config)
        self.addCleanup(again.stop)
        again.start(limit=120)
        [restored] = [int(m.group(1)) for line in again.output
                      if (m := re.search(r"registrations restored: (\d+)", line))]
        # Tokens lived in the killed process: log in again.
        listed = {r["extension"] for r in API(self.api_port, self.admin).registrations()}
        self.assertEqual(acknowledged - listed, set())
        self.assertGreaterEqual(restored, len(acknowledged))
        self.assertFalse(self.daemon.tracebacks + again.tracebacks)


class InterruptedCallsTests(SIPpCallCase):
    """Calls that were up when pbx was killed are recorded as INTERRUPTED at the next start."""

    def config(self, **kwargs: Any) -> str:
        """The calls' media may pause for longer than the base case allows."""
        kwargs["calls"] = {**kwargs.get("calls", {}), "media_timeout": 600}
        return super().config(**kwargs)

    def journal(self) -> list[tuple[str, float, float]]:
        """``(call_id, answer, touched)`` of the journal's entries, read from the database file."""
        path = self.workdir / "pbx" / "pbx-data" / "pbx.db"
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return connection.execute("SELECT call_id, answer, touched FROM live_calls").fetchall()
        finally:
            connection.close()

    def test_calls_up_at_kill_get_interrupted_records(self) -> None:
        """
        8 calls up when pbx is killed with SIGKILL: after the restart each
        has an INTERRUPTED record per leg, answered, ending at the last
        touch of the journal (after the answer, before the kill).
        """
        port = self.register_callee()
        callee = self.start_callee("uas_answer", port, CALLS, "-rtp_echo")
        caller = self.call("uac_call_rtp", CALLEE, "-r", "10", "-l", str(CALLS), "-d", str(CALL_MS),
                           calls=CALLS, wait=False)
        wait_until(lambda: len([c for c in self.live_calls() if c["state"] == "confirmed"]) == CALLS,
                   LIMIT, f"{CALLS} calls up")
        # Each leg is journalled; wait for a touch after the last answer (one
        # statement touches every entry).
        touched = wait_until(
            lambda: j if len(j := self.journal()) == 2 * CALLS and min(t for _, _, t in j) > max(a for _, a, _ in j)
            else None,
            TOUCH_LIMIT, "the journal touched after every answer",
        )
        kill_hard(self.daemon)
        killed_at = time.time()
        for process in (caller, callee):
            process.kill()
            process.wait(30)

        again = Daemon(str(self.workdir / "pbx"), Path(self.daemon.config_path).read_text())
        self.addCleanup(again.stop)
        again.start()
        self.assertTrue([line for line in again.output
                         if f"records of calls the last stop interrupted: {2 * CALLS}" in line])
        self.daemon = again
        # Tokens lived in the killed process: log in again.
        admin = json.loads(Path(again.config_path).read_text())["api"]["admins"][0]["password"]
        self.api = API(self.api_port, admin)
        records = self.records()
        self.assertEqual(len(records), 2 * CALLS, json.dumps(records, indent=1))
        self.assertEqual(sorted(r["leg"] for r in records), ["a"] * CALLS + ["b"] * CALLS)
        last_touch = {call_id: t for call_id, _, t in touched}
        for r in records:
            self.assertEqual((r["disposition"], r["caller"], r["callee"], r["codecs"]),
                             ("INTERRUPTED", "1001", CALLEE, "PCMU"), r)
            self.assertIsNotNone(r["answer"])
            self.assertLessEqual(r["start"], r["answer"], r)
            self.assertGreaterEqual(r["end"], last_touch[r["call_id"]], r)
            self.assertLess(r["answer"], r["end"], r)
            self.assertLessEqual(r["end"], killed_at, r)
            self.assertLess(r["end"] - r["start"], TOUCH_LIMIT + LIMIT, r)
        self.assertEqual(self.journal(), [])
        self.assertFalse(again.tracebacks)


class VoicemailSurvivesKillTests(FeatureCallCase):
    """A message whose caller has hung up is in the mailbox after a SIGKILL and a restart."""

    def configure(self, config: dict[str, Any]) -> None:
        """Voicemail for every extension; 1002 never registers, so its calls go to its mailbox."""
        config["features"] = {"voicemail": {}}

    def test_message_survives_kill(self) -> None:
        """
        1001 calls 1002 (not registered), leaves a message with RTP and
        hangs up; pbx is killed with SIGKILL at once; after the restart the
        mailbox lists the message, several seconds long.
        """
        # SIPp's rtp_stream file, in SIPp's working directory: the message.
        samples, _ = keyed_tone(440, 2.0, seed=1)
        write_ulaw_wav(self.workdir / "tone.wav", samples)
        self.call("uac_call_rtp", CALLEE, "-d", str(MESSAGE_CALL_MS))
        kill_hard(self.daemon)
        again = Daemon(str(self.workdir / "pbx"), Path(self.daemon.config_path).read_text())
        self.addCleanup(again.stop)
        again.start()
        self.daemon = again
        api = API(self.api_port, self.admin)
        [message] = wait_until(lambda: api.get(f"/voicemail/{CALLEE}/messages")["messages"], LIMIT,
                               "the message in the mailbox")
        self.assertEqual((message["caller"], message["folder"]), ("1001", "new"))
        self.assertGreater(message["duration"], 2.0, message)
        self.assertFalse(again.tracebacks)
