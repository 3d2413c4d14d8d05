"""
Integration tests: follow-me and blind transfer to outside numbers through
a trunk, against SIPp phones and a SIPp carrier on loopback.

- Follow-me with ``confirm``: 1002's phone rings alone for ``after``
  seconds, then the carrier is called too; the carrier answers (digest
  challenge checked by SIPp's ``verifyauth``) and, three seconds into
  pbx's "press 1" prompt, sends the key 1 as SIP INFO; only then is the
  caller answered and bridged to the carrier, and 1002's phone stops.  A
  carrier that answers like a voicemail (key 5) is hung up and the caller
  is never answered.
- Blind transfer: 1002 answers and REFERs its caller to 9 + ten digits;
  the carrier gets the INVITE as +1 and the number, the transferor's final
  NOTIFY says 200, and the caller's audio goes through the relay to the
  carrier and back (``-rtp_echo``).
- A refused transfer: 1003, whose class of service is ``internal``, REFERs
  to the same number: its final NOTIFY says 403, nothing reaches the
  carrier, and it keeps the call until the caller hangs up.
- A refused call out: 1001 dials a +1 900 number; it gets a 183 with pbx's
  SDP, the announcement's length later the 403, and the carrier nothing.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import re
import socket
import time
import wave
from typing import Any

import pytest

from support.calls import free_udp_block
from support.daemon import free_port
from support.paths import ROOT
from support.sipp import ABSENT, CALLEE, SIPpCallCase

pytestmark = pytest.mark.integration

PASSWORD = "Carrier-secret-7"
DIALLED = "95552345678"
SENT = "+15552345678"
AFTER = 2
PROMPTS = ROOT / "share" / "prompts" / "en" / "8000"


class OutsideCase(SIPpCallCase):
    """The daemon with a ``carrier`` trunk, a ``9`` route, 1002's follow-me and 1003 kept internal."""

    def config(self, **kwargs: Any) -> str:
        """call_config plus the trunk, the route, the follow-me and the permissions."""
        self.carrier_port = free_port(socket.SOCK_DGRAM)
        config = json.loads(super().config(**kwargs))
        config["trunks"] = {
            "carrier": {
                "uri": f"sip:127.0.0.1:{self.carrier_port};transport=udp", "username": "acct-1",
                "password": "${CARRIER_PASSWORD}", "caller_id": "+15551230000",
            },
        }
        config["dialplan"] = [{"match": "_9NXXNXXXXXX", "trunk": ["carrier"], "strip": 1, "prepend": "+1"}]
        config["follow_me"] = {CALLEE: {"after": AFTER, "numbers": [DIALLED], "confirm": True, "timeout": 20}}
        config["permissions"] = {"default": "national", "extensions": {ABSENT: "internal"}}
        return json.dumps(config)

    def setUp(self) -> None:
        """The carrier's password is in the environment only."""
        os.environ["CARRIER_PASSWORD"] = PASSWORD
        self.addCleanup(os.environ.pop, "CARRIER_PASSWORD", None)
        super().setUp()
        more = free_udp_block(8 * 8)
        self.media_ports = itertools.chain(self.media_ports, range(more, more + 8 * 8, 8))

    def carrier(self, scenario: str, *rows: str, name: str) -> Any:
        """Run the carrier's UAS ``scenario`` (one call, echoing RTP) with one injection row."""
        inf = self.injection(name, [rows])
        return self.start_sipp(scenario, self.carrier_port, "-inf", str(inf), "-m", "1", "-rtp_echo",
                               "-mp", str(next(self.media_ports)), name=name, limit=60)

    def watch(self, process: Any) -> list[tuple[float, list[dict[str, Any]]]]:
        """The live calls, sampled every 50 ms while ``process`` runs."""
        samples = []
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            samples.append((time.monotonic(), self.live_calls()))
            time.sleep(0.05)
        return samples


class FollowMeOutsideTests(OutsideCase):
    """1001 calls 1002, whose follow-me calls the carrier after two seconds and must be accepted with 1."""

    def test_press_1_before_the_caller_is_connected(self) -> None:
        """The carrier rings after ``after``; the caller is answered only once the carrier pressed 1."""
        ringing = self.start_callee("uas_ring", self.register_callee(CALLEE), 1)
        far = self.carrier("carrier_confirm", "acct-1", PASSWORD, "1", name="carrier-confirm")
        caller = self.call("uac_call_rtp", CALLEE, "-d", "3000", wait=False)
        samples = self.watch(caller)
        self.finish(caller, "caller-uac_call_rtp")
        self.finish(far, "carrier-confirm")
        self.finish(ringing, "callee-uas_ring")
        self.assertIn(f"sent {SENT}", (self.workdir / "carrier-confirm.log").read_text())
        self.assertIn("pressed 1", (self.workdir / "carrier-confirm.log").read_text())
        started: dict[str, dict[str, Any]] = {}
        for _, calls in samples:
            for c in calls:
                started.setdefault(c["call_id"], c)  # as first seen
        [own] = [c for c in started.values() if c["callee"] == CALLEE and c.get("direction") != "outbound"]
        [out] = [c for c in started.values() if c["callee"] == SENT]
        self.assertGreaterEqual(out["started"] - own["started"], AFTER - 0.1)
        # Seconds the carrier's leg was up while the caller still waited (the prompt, before the 1).
        screened = [t for t, calls in samples
                    if any(c["callee"] == SENT and c["state"] == "confirmed" for c in calls)
                    and not any(c["callee"] == CALLEE and c["state"] in ("answered", "confirmed") for c in calls)]
        self.assertGreater(max(screened) - min(screened), 2.0)
        rows = {(r["callee"], r["disposition"], r["application"], r["hangup_cause"]) for r in self.wait_records(3)}
        self.assertIn((CALLEE, "ANSWERED", "follow-me", "BYE"), rows)  # the caller, bridged to the carrier
        self.assertIn((SENT, "ANSWERED", "", "caller hung up"), rows)  # the carrier's leg
        self.assert_idle()


    def test_other_key_never_takes_the_call(self) -> None:
        """A voicemail that answers and plays a key other than 1 is hung up; the caller is never answered."""
        ringing = self.start_callee("uas_ring", self.register_callee(CALLEE), 1)
        far = self.carrier("carrier_confirm", "acct-1", PASSWORD, "5", name="carrier-voicemail")
        self.call("uac_refused", CALLEE)
        self.finish(far, "carrier-voicemail")
        self.finish(ringing, "callee-uas_ring")
        self.assertIn("pressed 5", (self.workdir / "carrier-voicemail.log").read_text())
        self.assertEqual(self.final_status("uac_refused"), "480")
        rows = {(r["callee"], r["disposition"], r["hangup_cause"]) for r in self.wait_records(2)}
        self.assertIn((SENT, "ANSWERED", "not accepted"), rows)
        self.assertNotIn("ANSWERED", {r["disposition"] for r in self.records() if r["callee"] == CALLEE})
        self.assert_idle()


class TransferOutsideTests(OutsideCase):
    """A phone's REFER to an outside number."""

    def test_blind_transfer_reaches_the_carrier(self) -> None:
        """1002 transfers 1001 to 9+number: the carrier answers and 1001's audio goes there and back."""
        inf = self.injection("transferor", [(DIALLED,)])
        transferor = self.start_sipp("uas_blind_transferor", self.register_callee(CALLEE), "-inf", str(inf),
                                     "-m", "1", "-mp", str(next(self.media_ports)), name="transferor", limit=60)
        far = self.carrier("carrier_invite_auth", "acct-1", PASSWORD, name="carrier-transfer")
        caller = self.call("uac_call_rtp", CALLEE, "-d", "6000", wait=False)
        samples = self.watch(caller)
        self.finish(caller, "caller-uac_call_rtp")
        self.finish(transferor, "transferor")
        self.finish(far, "carrier-transfer")
        self.assertIn("final SIP/2.0 200", (self.workdir / "transferor.log").read_text())
        self.assertIn(f"sent {SENT}", (self.workdir / "carrier-transfer.log").read_text())
        carried = [
            (c["media"]["a_to_b"]["packets"], c["media"]["b_to_a"]["packets"])
            for _, calls in samples for c in calls
            if c["callee"] == SENT and c["state"] == "confirmed" and c.get("media")
        ]
        self.assertTrue(carried)
        self.assertGreater(min(max(carried, key=min)), 50, carried[-1])
        causes = {r["hangup_cause"] for r in self.wait_records(2)}
        self.assertIn(f"transferred to {DIALLED}", causes)
        self.assert_idle()

    def test_refused_transfer_keeps_the_call(self) -> None:
        """1003 (internal) REFERs to 9+number: final NOTIFY 403, nothing to the carrier, the call goes on."""
        inf = self.injection("transferor", [(DIALLED,)])
        transferor = self.start_sipp("uas_blind_transferor", self.register_callee(ABSENT), "-inf", str(inf),
                                     "-m", "1", "-mp", str(next(self.media_ports)), name="transferor", limit=60)
        caller = self.call("uac_call_rtp", ABSENT, "-d", "4000", wait=False)
        self.finish(caller, "caller-uac_call_rtp")
        self.finish(transferor, "transferor")
        log = (self.workdir / "transferor.log").read_text()
        self.assertEqual(re.findall(r"final SIP/2.0 (\d{3})", log), ["403"])
        records = self.wait_records(2)
        self.assertEqual({r["disposition"] for r in records}, {"ANSWERED"})
        self.assertEqual({r["callee"] for r in records}, {ABSENT})
        self.assertFalse(any("+1555" in line for line in self.daemon.output if "INVITE" in line))
        self.assert_idle()


class RefusedAnnouncementTests(OutsideCase):
    """A call out the calling-permissions guard refuses hears its announcement first."""

    def test_early_media_then_403(self) -> None:
        """183 with SDP, then 403 Call Not Permitted about the prompt's length later; nothing to the carrier."""
        self.call("uac_not_permitted", "99005550100")
        log = (self.workdir / "caller-uac_not_permitted.log").read_text()
        self.assertIn("final 403 Call Not Permitted", log)
        messages = (self.workdir / "caller-uac_not_permitted.messages").read_text()
        self.assertIn("SIP/2.0 183", messages)
        self.assertIn("m=audio", messages.split("SIP/2.0 183", 1)[1].split("SIP/2.0 403", 1)[0])
        stamps = re.findall(r"^----------------------------------------------- ([\d-]+ [\d:.]+)\n"
                            r"UDP message received \[\d+\] bytes :\n\nSIP/2.0 (183|403)", messages, re.M)
        self.assertEqual([code for _, code in stamps], ["183", "403"], messages[-2000:])
        early, final = (datetime.datetime.fromisoformat(stamp) for stamp, _ in stamps)
        prompt = PROMPTS / "general" / "not-available.wav"
        with wave.open(str(prompt)) as wav:
            seconds = wav.getnframes() / wav.getframerate()
        self.assertGreater((final - early).total_seconds(), seconds - 0.3)
        self.assertFalse(any("+1900" in line for line in self.daemon.output if "trunk" in line and "out" in line))
        self.assert_idle()
