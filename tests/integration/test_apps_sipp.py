"""
Integration test: the digit read-back (``*44``) with the keys sent as SIP
INFO (``application/dtmf-relay``), which baresip 1.0 cannot send.

SIPp does the signalling (``sipp/uac_info_dtmf.xml``: INVITE with proxy
authentication, ACK, INFO 4, 7, 1 and # each answered 200, BYE), and its
SDP names a port of the test's own :class:`~support.apps.RTPRecorder`,
which sends PCMU silence to pbx and records the RTP pbx sends back, on the
RTP timestamp line.  So the test hears what the caller would have heard:
the introduction, then "you entered four seven one", matched against the
prompt files as in ``test_apps_baresip.py``.

SIPp cannot wait for audio, so its scenario waits a timed second longer
than each prompt; the recording shows whether the introduction had ended
before the read-back began.  SIPp runs with ``-timeout``; everything else
is a bounded poll of the API or the recorder.
"""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.apps import RTPRecorder, apps_config, assert_read_back, frames, prompt
from support.calls import RATE, bound_udp_ports, free_udp_block
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

pytestmark = pytest.mark.integration

CALLER, READBACK = "1001", "*44"
DIGITS = "471"
RELAY_PORTS = 20
LIMIT = 20.0


class SIPpInfoDigitTests(SynchronousTestCase):
    """Digits sent as SIP INFO reach the read-back application."""

    def setUp(self) -> None:
        self.sipp = require_binary("sipp", "sip-tester")
        self.workdir = Path(self.mktemp()).absolute()
        self.workdir.mkdir(parents=True)
        self.sip_port = free_port()
        api_port = free_port()
        self.password = strong_password(CALLER)
        first = free_udp_block(RELAY_PORTS + 4)
        self.relay = (first, first + RELAY_PORTS - 1)
        # SIPp binds its own media port (and the one two above) though it sends no RTP.
        self.sipp_media = first + RELAY_PORTS
        admin = admin_password()
        self.daemon = Daemon(
            str(self.workdir / "pbx"),
            apps_config(
                api_port=api_port,
                sip_port=self.sip_port,
                admin_password=admin,
                extensions={CALLER: self.password},
                transports=("udp",),
                rtp_ports=self.relay,
            ),
        )
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.api = API(api_port, admin)

    def run_sipp(self, scenario: str, rtp_port: int, name: str) -> None:
        """
        Call ``*44`` as 1001 with ``tests/sipp/<scenario>.xml``, the SDP
        naming ``rtp_port``; require exit status 0 (every expected message
        came).  Its messages go to ``<name>.messages``.
        """
        inf = self.workdir / f"{name}.csv"
        inf.write_text(
            "SEQUENTIAL\n"
            f"{CALLER};{READBACK};"
            f"[authentication username={CALLER} password={self.password}]\n"
        )
        command = [
            self.sipp,
            "-sf", str(SCENARIOS / f"{scenario}.xml"),
            "-inf", str(inf),
            "-key", "rtp_port", str(rtp_port),
            "-i", "127.0.0.1",
            "-p", str(free_port(socket.SOCK_DGRAM)),
            "-mp", str(self.sipp_media),
            "-t", "u1",
            "-m", "1",
            "-nostdin",
            "-timeout", "60",
            "-timeout_error",
            "-trace_msg", "-message_file", str(self.workdir / f"{name}.messages"),
            "-trace_err", "-error_file", str(self.workdir / f"{name}.errors"),
            f"127.0.0.1:{self.sip_port}",
        ]  # fmt: skip
        with (self.workdir / f"{name}.out").open("w") as output:
            process = subprocess.Popen(
                command,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            try:
                status = process.wait(90)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)
                status = None
        if status != 0:
            self.fail(f"SIPp {name} exited {status}\n{self.report(name)}")

    def report(self, name: str) -> str:
        """The tails of a SIPp run's files and the daemon's log, for a failure message."""
        parts = []
        for suffix in ("out", "errors", "messages"):
            path = self.workdir / f"{name}.{suffix}"
            if path.exists():
                parts.append(
                    f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
                )
        parts.append("--- pbx\n" + "\n".join(list(self.daemon.output)[-40:]))
        return "\n".join(parts)

    def test_readback_sip_info(self) -> None:
        """
        1001 calls ``*44``, sends 4, 7, 1 and # as INFO once the
        introduction has played, gets 200 for each, and hears "you entered
        four seven one" on its RTP; the call is recorded as answered by the
        read-back application.
        """
        recorder = RTPRecorder()
        self.addCleanup(recorder.close)
        self.run_sipp("uac_info_dtmf", recorder.port, "info")

        [record] = wait_until(
            lambda: self.api.get("/cdr")["records"], LIMIT, "the call's record"
        )
        self.assertEqual(
            {
                k: record[k]
                for k in ("caller", "callee", "disposition", "codecs", "application")
            },
            {
                "caller": CALLER,
                "callee": READBACK,
                "disposition": "ANSWERED",
                "codecs": "PCMU",
                "application": "readback",
            },
        )
        self.assertEqual((record["hangup_side"], record["hangup_cause"]), ("a", "BYE"))
        self.daemon.wait_for(
            re.compile(rf"call {CALLER} -> \*44: application readback"), 1
        )

        # pbx answered each INFO 200 (SIPp would have stopped at anything else).
        messages = (self.workdir / "info.messages").read_text(errors="replace")
        answers = re.findall(
            r"SIP/2\.0 (\d{3}) [^\r\n]*\r?\n(?:[^\r\n]+\r?\n)*?CSeq: (\d+) INFO",
            messages,
        )
        self.assertEqual(sorted(set(answers)), [("200", str(n)) for n in range(3, 7)])

        heard = recorder.audio()
        self.assertGreater(len(heard), 0, "no RTP from pbx")
        found = assert_read_back(self, heard, DIGITS)
        # Nothing after the read-back: the audio ends with digits/1.
        _, _, last = found[-1]
        end = last + frames(prompt(f"digits/{DIGITS[-1]}")) * 0.02
        self.assertLess(abs(len(heard) / RATE - end), 0.1, f"{len(heard) / RATE:.2f}s")

        wait_until(lambda: not self.api.get("/calls")["calls"], LIMIT, "no live call")
        wait_until(
            lambda: not bound_udp_ports(*self.relay), LIMIT, "pbx's media ports closed"
        )
        self.assertFalse(self.daemon.tracebacks, "\n".join(self.daemon.tracebacks))
