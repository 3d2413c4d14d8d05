"""
Integration tests: trunks changed through the API of a running daemon,
against SIPp carriers on loopback.

The configuration file defines ``carrier`` as a plain trunk (no account,
no registration) that the ``9`` route names.  Through the API the test
gives it the carrier's account and password and has it register: the SIPp
registrar challenges with digest and checks the answer (``verifyauth``);
a call dialled with 9 then goes out through it, the INVITE's challenge
answered with the same credentials, audio both ways, priced by a rate table
put through the API.  Deleting the API's copy unregisters (a SIPp registrar
that accepts only ``Expires: 0``) and the file's trunk is back.  A trunk
only the API defines is created (201) and registers; the route is pointed
at it through the API and a call goes out through it; once the route is
reset it is deleted, which unregisters it too.
"""

from __future__ import annotations

import itertools
import json
import socket
import time
from typing import Any

import pytest

from support.calls import free_udp_block
from support.daemon import free_port, wait_until
from support.sipp import CALLER, LIMIT, SIPpCallCase

pytestmark = pytest.mark.integration

PASSWORD = "Carrier-secret-7"
DIALLED = "95552345678"
SENT = "+15552345678"


class TrunkAPICase(SIPpCallCase):
    """The daemon with a bare ``carrier`` trunk in the file and a ``9`` route out through it."""

    def config(self, **kwargs: Any) -> str:
        """call_config plus the file's trunk and the route."""
        self.carrier_port = free_port(socket.SOCK_DGRAM)
        self.other_port = free_port(socket.SOCK_DGRAM)
        config = json.loads(super().config(**kwargs))
        config["trunks"] = {"carrier": {"uri": f"sip:127.0.0.1:{self.carrier_port}"}}
        config["dialplan"] = [
            {"match": "_9NXXNXXXXXX", "trunk": ["carrier"], "strip": 1, "prepend": "+1"}
        ]
        return json.dumps(config)

    def setUp(self) -> None:
        """The daemon; media ports for more SIPp runs than SIPpCallCase plans for."""
        super().setUp()
        more = free_udp_block(8 * 8)
        self.media_ports = itertools.chain(
            self.media_ports, range(more, more + 8 * 8, 8)
        )

    def carrier(
        self,
        scenario: str,
        port: int,
        *args: str,
        name: str,
        rows: list[tuple[str, ...]] | None = None,
    ) -> Any:
        """Run a carrier's UAS ``scenario`` on ``port`` (with an injection file of ``rows``)."""
        inf = ["-inf", str(self.injection(name, rows))] if rows else []
        return self.start_sipp(
            scenario,
            port,
            *inf,
            "-m",
            "1",
            "-mp",
            str(next(self.media_ports)),
            *args,
            name=name,
            limit=60,
        )

    def registered(self, name: str) -> dict[str, Any]:
        """Wait until the API says trunk ``name`` is registered; its state."""
        return dict(
            wait_until(
                lambda: (
                    t
                    if (t := self.api.get(f"/trunks/{name}"))["registration"][
                        "registered"
                    ]
                    else None
                ),
                LIMIT,
                f"trunk {name} registered",
            )
        )

    def media_both_ways(self, process: Any) -> tuple[int, int]:
        """While ``process`` runs, the most packets the relay carried each way in the one live call."""
        best = (0, 0)
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            for live in self.live_calls():
                media = live.get("media") or {}
                if live["state"] == "confirmed" and media:
                    best = max(
                        best,
                        (media["a_to_b"]["packets"], media["b_to_a"]["packets"]),
                        key=lambda c: min(c),
                    )
            time.sleep(0.1)
        return best


class TrunkAPITests(TrunkAPICase):
    """Trunks put and deleted through the API take effect at once."""

    def test_put_registers_routes_and_delete_unregisters(self) -> None:
        """
        PUT gives the file's trunk an account: pbx registers with digest at
        once (no password in any answer); 9 + 10 digits goes out through it,
        audio both ways, priced by the rate table PUT before the call;
        DELETE sends Expires: 0 and the file's trunk is back.
        """
        status, body = self.api.request(
            "PUT", "/trunks/carrier", {"uri": "sip:127.0.0.1", "max_calls": "x"}
        )
        self.assertEqual((status, body["error"].split(":")[0]), (400, "max_calls"))

        registrar = self.carrier(
            "carrier_register",
            self.carrier_port,
            rows=[("acct-1", PASSWORD)],
            name="carrier-register",
        )
        status, body = self.api.request(
            "PUT",
            "/trunks/carrier",
            {
                "uri": f"sip:127.0.0.1:{self.carrier_port};transport=udp",
                "username": "acct-1",
                "password": PASSWORD,
                "register": True,
                "register_expires": 600,
                "caller_id": "+15551230000",
            },
        )
        self.assertEqual(
            (status, body["source"], body["password_set"]), (200, "api", True)
        )
        self.finish(registrar, "carrier-register")
        state = self.registered("carrier")
        self.assertEqual(
            (state["registration"]["state"], state["registration"]["last_status"]),
            ("registered", 200),
        )
        self.assertNotIn(PASSWORD, json.dumps(self.api.get("/trunks/")))
        self.assertEqual(self.api.get("/routes/")["routes"][0]["trunks"], ["carrier"])
        status, _ = self.api.request(
            "PUT", "/trunks/rates", {"rates": {"carrier": {"1": 0.6}}}
        )
        self.assertEqual(status, 200)

        far = self.carrier(
            "carrier_invite_auth",
            self.carrier_port,
            "-rtp_echo",
            rows=[("acct-1", PASSWORD)],
            name="carrier-invite",
        )
        caller = self.call("uac_call_rtp", DIALLED, "-d", "3000", wait=False)
        ab, ba = self.media_both_ways(caller)
        self.finish(caller, "caller-uac_call_rtp")
        self.finish(far, "carrier-invite")
        self.assertGreater(min(ab, ba), 20, (ab, ba))
        a = next(r for r in self.wait_records(2) if r["leg"] == "a")
        self.assertEqual(
            (a["caller"], a["disposition"], a["trunk"], a["sent"]),
            (CALLER, "ANSWERED", "carrier", SENT),
        )
        self.assertAlmostEqual(a["cost"], round(0.6 * a["billable"] / 60, 4), places=3)

        gone = self.carrier(
            "carrier_unregister", self.carrier_port, name="carrier-unregister"
        )
        self.assertEqual(self.api.request("DELETE", "/trunks/carrier")[0], 204)
        self.finish(gone, "carrier-unregister")
        state = self.api.get("/trunks/carrier")
        self.assertEqual(
            (state["source"], state["registration"], state["password_set"]),
            ("file", None, False),
        )
        self.assertEqual(self.api.request("DELETE", "/trunks/carrier")[0], 409)
        self.assert_idle()

    def test_created_trunk_routed_then_deleted(self) -> None:
        """
        A trunk only the API defines: 201, it registers with digest at once;
        the 9 route is pointed at it and a call goes out through it (audio
        both ways); it cannot be deleted while routed (409); after the route
        is reset, DELETE unregisters it (Expires: 0) and it is gone.
        """
        registrar = self.carrier(
            "carrier_register",
            self.other_port,
            rows=[("acct-2", PASSWORD)],
            name="other-register",
        )
        status, body = self.api.request(
            "PUT",
            "/trunks/other",
            {
                "uri": f"sip:127.0.0.1:{self.other_port}",
                "username": "acct-2",
                "password": PASSWORD,
                "register": True,
                "caller_id": "+15557770000",
            },
        )
        self.assertEqual((status, body["source"]), (201, "api"))
        self.assertNotIn(PASSWORD, json.dumps(body))
        self.finish(registrar, "other-register")
        self.registered("other")

        status, body = self.api.request("PUT", "/routes/0", {"trunk": ["other"]})
        self.assertEqual(
            (status, body["trunks"], body["prepend"]), (200, ["other"], "+1")
        )
        far = self.carrier(
            "carrier_invite_auth",
            self.other_port,
            "-rtp_echo",
            rows=[("acct-2", PASSWORD)],
            name="other-invite",
        )
        caller = self.call("uac_call_rtp", DIALLED, "-d", "3000", wait=False)
        ab, ba = self.media_both_ways(caller)
        self.finish(caller, "caller-uac_call_rtp")
        self.finish(far, "other-invite")
        self.assertGreater(min(ab, ba), 20, (ab, ba))
        a = next(r for r in self.wait_records(2) if r["leg"] == "a")
        self.assertEqual(
            (a["disposition"], a["trunk"], a["sent"]), ("ANSWERED", "other", SENT)
        )

        self.assertEqual(self.api.request("DELETE", "/trunks/other")[0], 409)
        self.assertEqual(self.api.request("DELETE", "/routes/0")[0], 204)
        self.assertEqual(self.api.get("/routes/")["routes"][0]["trunks"], ["carrier"])
        gone = self.carrier(
            "carrier_unregister", self.other_port, name="other-unregister"
        )
        self.assertEqual(self.api.request("DELETE", "/trunks/other")[0], 204)
        self.finish(gone, "other-unregister")
        self.assertEqual(self.api.request("GET", "/trunks/other")[0], 404)
        self.assert_idle()
