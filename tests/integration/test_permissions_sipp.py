"""
Integration test: calling permissions on calls out through a SIP trunk,
against SIPp on loopback.  It needs SIP trunks (``pbx.trunks``) with the
permissions guard asked before a call goes out, and is skipped until they
are there.

Extension 1001 has the international class of service and may make one
international call an hour; a tripped limit holds its outside calls.  The
carrier is a SIPp UAS that answers (``uas_answer.xml``) and logs every
INVITE it gets:

- 1001 dials a premium number (+1 900): 403 ``Call Not Permitted``, nothing
  reaches the carrier;
- 1001 calls London: the carrier answers;
- 1001 calls London again within the hour: 403 ``International Call
  Limit``; an alert (log line, audit row of kind ``toll_fraud``, the API's
  alert list) and a hold (the API's hold list);
- 1001 calls a national number: 403 ``Outside Calls Held``;
- 1001 dials 911: the carrier answers (emergency calls are never blocked);
- an administrator releases the hold; the national call goes out.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import re
import socket
import sqlite3
from typing import Any

import pytest

from support.calls import free_udp_block
from support.daemon import ADMIN, free_port, http, wait_until
from support.sipp import CALLER, LIMIT, SIPpCallCase

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("pbx.trunks") is None,
        reason="needs SIP trunks (pbx.trunks) asking the permissions guard",
    ),
]

PREMIUM = "919005550100"
LONDON = "9442071234567"
LONDON_AGAIN = "9442071234568"
NATIONAL = "912125550100"


class PermissionsTrunkTests(SIPpCallCase):
    """The daemon with a ``carrier`` trunk, routes out through it and a ``permissions:`` section."""

    def config(self, **kwargs: Any) -> str:
        """call_config plus the trunk, the routes (911 first) and the permissions."""
        self.carrier_port = free_port(socket.SOCK_DGRAM)
        self.admin_secret = kwargs["admin_password"]
        config = json.loads(super().config(**kwargs))
        config["trunks"] = {
            "carrier": {"uri": f"sip:127.0.0.1:{self.carrier_port};transport=udp"}
        }
        config["dialplan"] = [
            {"match": "911", "trunk": ["carrier"]},
            {"match": "_9X.", "trunk": ["carrier"], "strip": 1, "prepend": "+"},
        ]
        config["permissions"] = {
            "default": "national",
            "extensions": {CALLER: "international"},
            "limits": {"international_per_hour": 1, "hold": True},
        }
        return json.dumps(config)

    def setUp(self) -> None:
        super().setUp()
        # More SIPp runs than SIPpCallCase plans for: media ports for 8 more.
        more = free_udp_block(8 * 8)
        self.media_ports = itertools.chain(
            self.media_ports, range(more, more + 8 * 8, 8)
        )

    def refused(self, number: str) -> str:
        """1001 dials ``number`` and is refused with 403: the reason phrase."""
        self.call("uac_not_permitted", number)
        log = (self.workdir / "caller-uac_not_permitted.log").read_text(
            errors="replace"
        )
        found = re.findall(r"final 403 ([^\n]*)", log)
        self.assertTrue(found, log)
        # Should SIPp append to the log, the newest line is this call's.
        return found[-1].strip()

    def answered(self, number: str) -> None:
        """1001 dials ``number``; the carrier answers; 1001 hangs up after a second."""
        self.call("uac_call_rtp", number, "-d", "1000")

    def admin_token(self) -> str:
        """A bearer token of the configured administrator."""
        status, body = http(
            "POST",
            f"http://127.0.0.1:{self.api_port}/api/v1/auth/login",
            {"username": ADMIN, "password": self.admin_secret},
        )
        self.assertEqual(status, 200, body)
        return str(body["token"])

    def test_classes_limits_holds_and_emergency(self) -> None:
        """Premium refused, one international call then 403 with an alert and a hold, 911 through, release works."""
        carrier = self.start_sipp(
            "uas_answer", self.carrier_port, "-m", "3", "-rtp_echo",
            "-mp", str(next(self.media_ports)), name="carrier", limit=120,
        )  # fmt: skip

        self.assertEqual(self.refused(PREMIUM), "Call Not Permitted")
        self.answered(LONDON)
        self.assertEqual(self.refused(LONDON_AGAIN), "International Call Limit")
        self.assertEqual(self.refused(NATIONAL), "Outside Calls Held")
        self.answered("911")

        permissions = self.api.get("/permissions/")
        self.assertEqual(permissions["extensions"], {CALLER: "international"})
        [alert] = self.api.get("/permissions/alerts")["alerts"]
        self.assertEqual(
            (alert["extension"], alert["limit"], alert["number"], alert["count"]),
            (CALLER, "international_per_hour", "+442071234568", 1),
        )
        [hold] = self.api.get("/permissions/holds")["holds"]
        self.assertEqual(hold["extension"], CALLER)
        wait_until(
            lambda: any(
                "tripped international_per_hour" in line
                for line in list(self.daemon.output)
            ),
            LIMIT,
            "the toll-fraud log line",
        )
        database = self.workdir / "pbx" / "pbx-data" / "pbx.db"
        with contextlib.closing(sqlite3.connect(database)) as db:
            rows = db.execute(
                "SELECT subject, detail FROM audit WHERE kind = 'toll_fraud'"
            ).fetchall()
        self.assertEqual(len(rows), 1, rows)
        self.assertEqual(rows[0][0], CALLER)

        base = f"http://127.0.0.1:{self.api_port}/api/v1/permissions"
        status, _ = http("DELETE", f"{base}/holds/{CALLER}", token=self.admin_token())
        self.assertEqual(status, 204)
        self.answered(NATIONAL)

        self.finish(carrier, "carrier")
        messages = (self.workdir / "carrier.messages").read_text(errors="replace")
        invited = re.findall(r"^INVITE sip:([^@;>\s]+)", messages, flags=re.M)
        self.assertEqual(invited, ["+442071234567", "911", "+12125550100"])
        self.assert_idle()
