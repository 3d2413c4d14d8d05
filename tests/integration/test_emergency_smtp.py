"""
Integration test: an emergency call through the real daemon alerts the
designated people by e-mail, through a real SMTP server (aiosmtpd on
loopback), with the caller's dispatchable location.

The dialplan sends 911, 9911, 933 and 9933 to the echo application, so a
SIPp phone's call is answered by pbx itself: every call to an emergency
number, wherever the dialplan sends it, is an emergency call (the call
event ``created``), and the alert does not wait for the outside line.
Once SIP trunks carry 911 out, the same path runs for calls to the
emergency trunk (the PIDF-LO and the callback are unit-tested in
``tests/unit/emergency``).

The location follows its precedence: first the extension's fixed location;
after a SIPp REGISTER from 127.0.0.1, the subnet's (nomadic); after a PUT
of the user's own choice through the API, that one.  933 (the address
read-back test) is listed and audited but alerts nobody.  Everything is
bounded: SIPp runs with ``-timeout``, the inbox and the API are polled.
"""

from __future__ import annotations

import email
import json
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import pytest

from support.daemon import free_port, http, wait_until
from support.sipp import CALLER, LIMIT, SIPpCallCase

pytestmark = pytest.mark.integration

RECIPIENTS = ["security@example.com", "desk@example.com"]
HQ = {
    "country": "US",
    "A1": "CA",
    "A3": "San Jose",
    "RD": "Main",
    "STS": "St",
    "HNO": "100",
    "FLR": "2",
    "ROOM": "210",
}
LAB = {"country": "US", "A1": "TX", "A3": "Austin", "BLD": "Lab", "FLR": "1"}
HOME = {"country": "US", "A1": "CA", "A3": "Palo Alto", "RD": "Elm", "HNO": "5"}


class _Inbox:
    """An aiosmtpd handler that keeps every message it receives, with its envelope recipients."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd API
        """Keep the message."""
        message = email.message_from_bytes(envelope.content, policy=default_policy)
        assert isinstance(message, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 OK"


class EmergencyAlertTests(SIPpCallCase):
    """911 from a SIPp phone: the e-mail reaches the SMTP server with caller, extension, location and time."""

    def config(self, **kwargs: Any) -> str:
        """Extensions 1001-1003, the echo application for emergency numbers, the ``emergency:`` section."""
        from aiosmtpd.controller import Controller

        self.inbox = _Inbox()
        port = free_port()
        controller = Controller(self.inbox, hostname="127.0.0.1", port=port)
        controller.start()
        self.addCleanup(controller.stop)
        config = json.loads(super().config(**kwargs))
        config["features"] = {"echo": {}}
        config["dialplan"] = [{"match": "re:^9?9(11|33)$", "app": "echo"}]
        config["emergency"] = {
            "notify": {
                "email": RECIPIENTS,
                "smtp": {
                    "sender": "pbx@pbx.test",
                    "server": f"127.0.0.1:{port}",
                    "starttls": "never",
                    "timeout": 20,
                },
            },
            "locations": {"hq-2": HQ, "lab": LAB},
            "extensions": {CALLER: "hq-2"},
            "subnets": {"127.0.0.0/8": "lab"},
        }
        return json.dumps(config, indent=1)

    def alerts(self, count: int) -> list[tuple[list[str], EmailMessage]]:
        """Wait until ``count`` messages have arrived; all of them."""
        return wait_until(
            lambda: (
                list(self.inbox.messages) if len(self.inbox.messages) >= count else None
            ),
            LIMIT,
            f"{count} alert e-mail(s)",
        )

    def body(self, message: EmailMessage) -> str:
        """The message's plain text."""
        part = message.get_body(("plain",))
        assert part is not None
        text: str = part.get_content()
        return text

    def put_location(self, body: dict[str, Any]) -> dict[str, Any]:
        """PUT the caller's own location through the API (as the administrator)."""
        base = self.api.base
        status, login = http("POST", f"{base}/auth/login", self.api._credentials)
        self.assertEqual((status, login["role"]), (200, "admin"))
        status, shown = http(
            "PUT", f"{base}/extensions/{CALLER}/location", body, token=login["token"]
        )
        self.assertEqual(status, 200, shown)
        return dict(shown)

    def test_alerts_follow_the_location(self) -> None:
        """Each 911 call e-mails every designated person at once, with the location its precedence gives."""
        # 1. Not registered: the extension's fixed location.
        self.call("uac_auth", "911")
        first = self.alerts(2)
        self.assertEqual(
            sorted(to for rcpt, _ in first for to in rcpt), sorted(RECIPIENTS)
        )
        message = first[0][1]
        self.assertEqual(message["From"], "pbx@pbx.test")
        self.assertIn(
            f"EMERGENCY: 911 dialled by extension {CALLER} at 100 Main St",
            message["Subject"],
        )
        text = self.body(message)
        self.assertIn(f"Caller:    extension {CALLER}", text)
        self.assertIn(
            "Location:  100 Main St, floor 2, room 210, San Jose, CA, US", text
        )
        self.assertIn("the extension's fixed location: hq-2", text)
        self.assertRegex(text, r"Time:      20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC")

        # 2. Registered from 127.0.0.1: the subnet's location (nomadic), dialled with the outside-line prefix.
        self.register_callee(CALLER)
        self.call("uac_auth", "9911")
        second = self.alerts(4)[2:]
        text = self.body(second[0][1])
        self.assertIn("911 was dialled (as 9911).", text)
        self.assertIn("Location:  building Lab, floor 1, Austin, TX, US", text)
        self.assertIn("from the phone's network: lab", text)

        # 3. The user's own choice beats the subnet.
        shown = self.put_location({"address": HOME})
        self.assertEqual(shown["effective"]["origin"], "user")
        self.call("uac_auth", "911")
        third = self.alerts(6)[4:]
        self.assertIn("Location:  5 Elm, Palo Alto, CA, US", self.body(third[0][1]))

        # 4. 933 reads the address back: listed and audited, nobody alerted.
        self.call("uac_auth", "933")
        events = wait_until(
            lambda: (
                e
                if len(e := self.api.get("/emergency/events")["events"]) >= 4
                else None
            ),
            LIMIT,
            "four emergency events",
        )
        self.assertEqual(
            [(e["number"], e["dialled"], e["extension"], e["test"]) for e in events],
            [
                ("933", "933", CALLER, True),
                ("911", "911", CALLER, False),
                ("911", "9911", CALLER, False),
                ("911", "911", CALLER, False),
            ],
        )
        self.assertEqual(
            [e["location"]["origin"] for e in events],
            ["user", "user", "subnet", "extension"],
        )
        logged = [line for line in self.daemon.output if "EMERGENCY 9" in line]
        self.assertEqual(len(logged), 4)
        self.assertEqual(len(self.inbox.messages), 6)
        self.assert_idle()
