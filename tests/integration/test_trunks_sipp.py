"""
Integration tests: pbx's trunks against SIPp carriers on loopback.

The carrier (``carrier``, a registration trunk whose password comes from
the environment) challenges pbx's REGISTER and its INVITE with digest and
checks the answers with SIPp's ``verifyauth``; it answers the call and
echoes its RTP (``-rtp_echo``).  It also calls a DID of the trunk, which
rings the extension the DID names.  A second carrier (``backup``, an
IP-authenticated trunk) takes the calls the first refuses with 503, and
none that it refuses with 404.

Media is checked on the relay: packets went both ways through the call's
session while it was up (``/api/v1/calls``).  Every wait is bounded and
polls the API or the log, never sleeps on a guess.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
from typing import Any

import pytest

from support.calls import free_udp_block
from support.daemon import free_port, wait_until
from support.sipp import CALLEE, CALLER, LIMIT, SIPpCallCase

pytestmark = pytest.mark.integration

PASSWORD = "Carrier-secret-7"
DIALLED = "95552345678"
SENT = "+15552345678"
DID = "+15551230000"
OUTSIDE = "+13125550100"


class SIPpTrunkCase(SIPpCallCase):
    """The daemon with a ``carrier`` and a ``backup`` trunk, and a ``9`` route out through them."""

    register = True

    def config(self, **kwargs: Any) -> str:
        """call_config plus the trunks, the route, and a rate table."""
        self.carrier_port = free_port(socket.SOCK_DGRAM)
        self.backup_port = free_port(socket.SOCK_DGRAM)
        config = json.loads(super().config(**kwargs))
        config["trunks"] = {
            "carrier": {
                "uri": f"sip:127.0.0.1:{self.carrier_port};transport=udp", "username": "acct-1",
                "password": "${CARRIER_PASSWORD}", "register": self.register, "caller_id": "+15551230000",
                "dids": {DID: {"extension": CALLEE}},
            },
            "backup": {"uri": f"sip:127.0.0.1:{self.backup_port}", "allow_from": ["127.0.0.2/32"]},
        }
        config["dialplan"] = [
            {"match": "_9NXXNXXXXXX", "trunk": ["carrier", "backup"], "strip": 1, "prepend": "+1"},
        ]
        config["rates"] = {"carrier": {"1": 0.6}, "backup": {"1": 0.9}}
        return json.dumps(config)

    def setUp(self) -> None:
        """The carrier's password is in the environment only (``${CARRIER_PASSWORD}``)."""
        os.environ["CARRIER_PASSWORD"] = PASSWORD
        self.addCleanup(os.environ.pop, "CARRIER_PASSWORD", None)
        super().setUp()
        # More SIPp runs than SIPpCallCase plans for: media ports for 8 more.
        more = free_udp_block(8 * 8)
        self.media_ports = itertools.chain(self.media_ports, range(more, more + 8 * 8, 8))

    def carrier(self, scenario: str, port: int, *args: str, rows: list[tuple[str, ...]],
                name: str, calls: int = 1) -> Any:
        """Run a carrier's UAS ``scenario`` on ``port`` with an injection file."""
        inf = self.injection(name, rows)
        return self.start_sipp(scenario, port, "-inf", str(inf), "-m", str(calls),
                               "-mp", str(next(self.media_ports)), *args, name=name, limit=60)

    def trunk(self, name: str) -> dict[str, Any]:
        """The trunk's state from the API."""
        return dict(self.api.get(f"/trunks/{name}"))

    def media_both_ways(self, process: Any) -> tuple[int, int]:
        """While ``process`` runs, the most packets the relay carried each way in the one live call."""
        best = (0, 0)
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            for live in self.live_calls():
                media = live.get("media") or {}
                if live["state"] == "confirmed" and media:
                    best = max(best, (media["a_to_b"]["packets"], media["b_to_a"]["packets"]),
                               key=lambda c: min(c))
            time.sleep(0.1)
        return best


class RegistrationTrunkTests(SIPpTrunkCase):
    """A carrier that challenges: registration, a call out, a call to a DID."""

    def test_register_call_out_and_in(self) -> None:
        """
        pbx registers with digest (the API shows it, and no password); 1001
        dials 9 + 10 digits and the call goes out as +1 and the number with
        the INVITE's digest challenge answered, audio both ways, recorded
        with trunk, numbers and cost; then the carrier calls the DID and
        1002's phone answers, audio both ways.
        """
        registrar = self.carrier("carrier_register", self.carrier_port, rows=[("acct-1", PASSWORD)],
                                 name="carrier-register")
        self.finish(registrar, "carrier-register")
        state = wait_until(lambda: t if (t := self.trunk("carrier"))["registration"]["registered"] else None,
                           LIMIT, "the carrier registration")
        self.assertEqual((state["registration"]["state"], state["registration"]["last_status"]),
                         ("registered", 200))
        self.assertGreater(state["registration"]["expires_in"], 500)
        listing = json.dumps(self.api.get("/trunks/"))
        self.assertNotIn(PASSWORD, listing)
        self.assertEqual(self.api.get("/trunks/rates")["rates"]["carrier"], {"1": 0.6})

        # Out: 1001 -> 95552345678 -> carrier, challenged, answered, echoing.
        far = self.carrier("carrier_invite_auth", self.carrier_port, "-rtp_echo",
                           rows=[("acct-1", PASSWORD)], name="carrier-invite")
        caller = self.call("uac_call_rtp", DIALLED, "-d", "3000", wait=False)
        ab, ba = self.media_both_ways(caller)
        self.finish(caller, "caller-uac_call_rtp")
        self.finish(far, "carrier-invite")
        self.assertGreater(min(ab, ba), 20, (ab, ba))
        log = (self.workdir / "carrier-invite.log").read_text()
        self.assertIn(f"sent {SENT}", log)
        [a, b] = sorted(self.wait_records(2), key=lambda r: r["leg"])
        self.assertEqual((a["caller"], a["disposition"], a["trunk"], a["dialled"], a["sent"]),
                         (CALLER, "ANSWERED", "carrier", DIALLED, SENT))
        self.assertAlmostEqual(a["cost"], round(0.6 * a["billable"] / 60, 4), places=3)
        self.assertEqual(b["trunk"], "carrier")

        # In: the carrier calls the DID; 1002 answers and echoes.
        port = self.register_callee()
        callee = self.start_callee("uas_answer", port, 1, "-rtp_echo")
        inf = self.injection("did", [(OUTSIDE, "acct-1", DID)])
        outside = self.start_sipp("carrier_call_did", free_port(socket.SOCK_DGRAM), "-inf", str(inf), "-m", "1",
                                  "-mp", str(next(self.media_ports)), "-d", "3000", f"127.0.0.1:{self.sip_port}",
                                  name="carrier-did", limit=60)
        ab, ba = self.media_both_ways(outside)
        self.finish(outside, "carrier-did")
        self.finish(callee, "callee-uas_answer")
        self.assertGreater(min(ab, ba), 20, (ab, ba))
        records = self.wait_records(4)
        inbound = [r for r in records if r["caller"] == OUTSIDE]
        self.assertEqual({(r["callee"], r["disposition"], r["trunk"], r["dialled"]) for r in inbound},
                         {(CALLEE, "ANSWERED", "carrier", DID)})
        self.assertEqual(self.trunk("carrier")["calls_in_use"], 0)
        self.assert_idle()


class FailoverTests(SIPpTrunkCase):
    """The first carrier refuses: 503 goes to the backup, 404 does not."""

    register = False

    def test_503_fails_over_and_404_does_not(self) -> None:
        """A 503 from the carrier sends the call to the backup (answered there); a 404 reaches the caller."""
        first = self.start_sipp("carrier_unavailable", self.carrier_port, "-m", "1", name="carrier-503", limit=60)
        backup = self.start_sipp("uas_answer", self.backup_port, "-m", "1", "-rtp_echo",
                                 "-mp", str(next(self.media_ports)), name="backup", limit=60)
        caller = self.call("uac_call_rtp", DIALLED, "-d", "2000", wait=False)
        ab, ba = self.media_both_ways(caller)
        self.finish(caller, "caller-uac_call_rtp")
        self.finish(first, "carrier-503")
        self.finish(backup, "backup")
        self.assertGreater(min(ab, ba), 10, (ab, ba))
        a = next(r for r in self.wait_records(2) if r["leg"] == "a")
        self.assertEqual((a["disposition"], a["trunk"], a["sent"], a["cost"] > 0), ("ANSWERED", "backup", SENT, True))

        refusing = self.start_sipp("carrier_not_found", self.carrier_port, "-m", "1", name="carrier-404", limit=60)
        self.call("uac_refused", DIALLED)
        self.finish(refusing, "carrier-404")
        self.assertEqual(self.final_status("uac_refused"), "404")
        self.assertFalse((self.workdir / "backup-2.messages").exists())
        refused = [r for r in self.wait_records(3) if r["leg"] == "a" and r["disposition"] != "ANSWERED"]
        self.assertEqual([(r["trunk"], r["hangup_cause"]) for r in refused], [("carrier", "404")])
        self.assert_idle()
