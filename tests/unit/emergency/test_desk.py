"""Tests for :mod:`pbx.emergency.desk`: what happens when 911 is dialled, and what the trunk side is given."""

from __future__ import annotations

import email
import json
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

from zope.interface.verify import verifyObject

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.events import CallEvent, CallEvents
from pbx.emergency.desk import make_desk
from pbx.emergency.event import AUDIT_KIND, EmergencyEvent
from pbx.emergency.interfaces import IEmergencyEvents
from pbx.emergency.options import parse_emergency
from pbx.features.voicemail.mailer import EmailConfig, EmailDeliveryError
from pbx.records import Binding, ExtensionRecord
from pbx.testing import MemoryStore

NOW = 1_765_000_000.0  # 2025-12-06 05:46:40 UTC
SECTION = {
    "notify": {
        "email": ["security@example.com", "desk@example.com"],
        "smtp": {"sender": "pbx@example.com", "server": "127.0.0.1:2525"},
    },
    "locations": {
        "hq-2": {
            "country": "US",
            "A1": "CA",
            "A3": "San Jose",
            "RD": "Main",
            "STS": "St",
            "HNO": "100",
            "FLR": "2",
            "ROOM": "210",
        },
        "lab": {"country": "US", "A3": "Austin", "BLD": "Lab"},
    },
    "extensions": {"1000": "hq-2"},
    "subnets": {"10.2.0.0/16": "lab"},
}
SDP = b"v=0\r\no=- 1 1 IN IP4 10.2.0.9\r\ns=-\r\nc=IN IP4 10.2.0.9\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


class FakeSender:
    """Takes messages as the SMTP sender would; fails for the addresses in :attr:`failing`."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.failing: set[str] = set()

    def __call__(
        self, reactor: Any, config: EmailConfig, to: str, message: bytes
    ) -> Deferred[None]:
        """Record one message."""
        if to in self.failing:
            return fail(
                EmailDeliveryError("SMTP server 127.0.0.1:2525: connection refused")
            )
        self.sent.append((to, message))
        return succeed(None)

    def messages(self) -> list[EmailMessage]:
        """The messages sent, parsed back."""
        out = []
        for _, raw in self.sent:
            message = email.message_from_bytes(raw, policy=default_policy)
            assert isinstance(message, EmailMessage)
            out.append(message)
        return out


class DeskTests(SynchronousTestCase):
    """An emergency call: audit, event, alert; the INVITE parts; the callback."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = MemoryStore()
        self.store.extensions["1000"] = ExtensionRecord("1000", name="Alice Example")
        self.bindings: dict[str, list[Binding]] = {}
        self.sender = FakeSender()
        self.desk = make_desk(
            parse_emergency(SECTION),
            self.store,
            self.clock,
            lambda aor: self.bindings.get(aor, []),
        )
        self.desk.send = self.sender
        self.events: list[EmergencyEvent] = []
        self.desk.subscribe(self.events.append)

    def dial(self, extension: str, dialled: str, **kw: Any) -> EmergencyEvent | None:
        """``extension`` dials ``dialled``; the event, if any."""
        return self.successResultOf(
            Deferred.fromCoroutine(self.desk.dialled(extension, dialled, **kw))
        )

    def audits(self) -> list[Any]:
        """The audit trail's emergency records."""
        return self.successResultOf(self.store.list_audit(kind=AUDIT_KIND))

    def test_provides_the_interface(self) -> None:
        """The desk is what other parts subscribe to for emergency events."""
        self.assertTrue(verifyObject(IEmergencyEvents, self.desk))

    def test_alert_mail(self) -> None:
        """Every designated person gets an e-mail with caller, extension, number, location and time."""
        event = self.dial("1000", "9911", call_id="c1")
        assert event is not None
        self.assertEqual(
            [to for to, _ in self.sender.sent],
            ["security@example.com", "desk@example.com"],
        )
        message = self.sender.messages()[0]
        self.assertEqual(message["To"], "security@example.com")
        self.assertEqual(message["From"], "pbx@example.com")
        self.assertIn(
            "EMERGENCY: 911 dialled by Alice Example (extension 1000)",
            message["Subject"],
        )
        self.assertIn("100 Main St", message["Subject"])
        body = message.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        self.assertIn("911 was dialled (as 9911).", text)
        self.assertIn("Caller:    Alice Example (extension 1000)", text)
        self.assertIn("Time:      2025-12-06 05:46:40 UTC", text)
        self.assertIn(
            "Location:  100 Main St, floor 2, room 210, San Jose, CA, US", text
        )
        self.assertIn("the extension's fixed location: hq-2", text)
        self.assertIn("  ROOM: 210", text)
        self.assertIn("Call:      c1", text)

    def test_event_and_audit(self) -> None:
        """The emergency event goes to subscribers and the call to the audit trail, with its location."""
        self.bindings["1000"] = [
            Binding("1000", "sip:1000@10.2.0.9", NOW + 60, source="10.2.0.9:5060")
        ]
        event = self.dial("1000", "911", call_id="c1", callback_number="+15551230000")
        self.assertEqual(self.events, [event])
        assert event is not None and event.location is not None
        self.assertEqual(
            (event.number, event.extension, event.location.name, event.time),
            ("911", "1000", "lab", NOW),
        )
        [audit] = self.audits()
        self.assertEqual(
            (audit.kind, audit.subject, audit.time), ("emergency.call", "1000", NOW)
        )
        detail = json.loads(audit.detail)
        self.assertEqual(
            (
                detail["number"],
                detail["dialled"],
                detail["callback"],
                detail["location"]["name"],
            ),
            ("911", "911", "+15551230000", "lab"),
        )
        self.assertEqual(EmergencyEvent.from_audit(audit), {**event.as_dict()})
        self.assertEqual(self.desk.callback_target("+15551230000"), "1000")

    def test_no_location(self) -> None:
        """An extension with no known location still alerts, saying the location is unknown."""
        event = self.dial("1005", "911")
        assert event is not None
        self.assertIsNone(event.location)
        text = self.sender.messages()[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
        self.assertIn("no dispatchable location is known", text)
        self.assertIn("extension 1005", self.sender.messages()[0]["Subject"])

    def test_test_number(self) -> None:
        """933 (address read-back) is audited and published but alerts nobody and opens no callback window."""
        event = self.dial("1000", "9933", callback_number="+15551230000")
        assert event is not None
        self.assertTrue(event.test)
        self.assertEqual(
            (self.sender.sent, len(self.events), len(self.audits())), ([], 1, 1)
        )
        self.assertIsNone(self.desk.callback_target("+15551230000"))

    def test_not_emergency(self) -> None:
        """Any other number does nothing."""
        self.assertIsNone(self.dial("1000", "1001"))
        self.assertEqual((self.sender.sent, self.events, self.audits()), ([], [], []))

    def test_once_per_call(self) -> None:
        """A call told twice (call event and trunk route) alerts once; another call alerts again."""
        self.assertIsNotNone(self.dial("1000", "911", call_id="c1"))
        self.assertIsNone(self.dial("1000", "9911", call_id="c1"))
        self.assertIsNotNone(self.dial("1000", "911", call_id="c2"))
        self.assertEqual(len(self.audits()), 2)
        self.assertEqual(len(self.sender.sent), 4)

    def test_failed_alert_audited(self) -> None:
        """A recipient the mail server refuses is logged and audited; the others still get theirs."""
        self.sender.failing.add("security@example.com")
        self.dial("1000", "911")
        self.assertEqual([to for to, _ in self.sender.sent], ["desk@example.com"])
        failures = self.successResultOf(
            self.store.list_audit(kind="emergency.alert.failure")
        )
        self.assertEqual(
            [f.detail for f in failures],
            ["security@example.com: SMTP server 127.0.0.1:2525: connection refused"],
        )

    def test_subscriber_failure_contained(self) -> None:
        """A subscriber that raises is logged; the others, the audit and the alert go on."""

        def broken(event: EmergencyEvent) -> None:
            raise RuntimeError("console gone")

        self.desk.subscribe(broken)
        later: list[EmergencyEvent] = []
        unsubscribe = self.desk.subscribe(later.append)
        self.dial("1000", "911")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(
            (len(later), len(self.audits()), len(self.sender.sent)), (1, 1, 2)
        )
        unsubscribe()
        self.dial("1000", "911")
        self.assertEqual(len(later), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_call_events(self) -> None:
        """A ``created`` call event for a call to an emergency number is an emergency call; others are not."""
        events = CallEvents()
        events.subscribe(self.desk.on_call_event, kinds=["created"])
        events.publish(CallEvent("created", "c9", "1000", "9911", NOW))
        events.publish(CallEvent("created", "c10", "1000", "1001", NOW))
        events.publish(CallEvent("ended", "c9", "1000", "911", NOW))
        self.assertEqual(
            [(e.call_id, e.number, e.dialled) for e in self.events],
            [("c9", "911", "9911")],
        )

    def test_outbound_invite(self) -> None:
        """The trunk hook gets the PIDF-LO of the caller's location and the callback window opens."""
        invite = self.successResultOf(
            Deferred.fromCoroutine(
                self.desk.outbound_invite(
                    "1000", "+15551230000", SDP, "pbx.test", source="10.2.0.9:5060"
                )
            )
        )
        self.assertTrue(invite.content_type.startswith("multipart/mixed;boundary="))
        self.assertIn(b"<ca:A3>Austin</ca:A3>", invite.location)
        self.assertIn(b"<gp:method>Derived</gp:method>", invite.location)
        self.assertIn(
            ("P-Asserted-Identity", "<tel:+15551230000>"),
            invite.headers,
        )
        self.assertEqual(self.desk.callback_target("5551230000"), "1000")
        self.clock.advance(3600)
        self.assertIsNone(self.desk.callback_target("5551230000"))

    def test_outbound_invite_without_location(self) -> None:
        """Nothing known: the SDP goes unchanged, with the callback number."""
        invite = self.successResultOf(
            Deferred.fromCoroutine(
                self.desk.outbound_invite("1009", "+15551230009", SDP, "pbx.test")
            )
        )
        self.assertEqual((invite.body, invite.content_type), (SDP, "application/sdp"))

    def test_defaults_alert_nobody(self) -> None:
        """With no ``emergency:`` section 911 is recognised and audited; nobody is e-mailed."""
        desk = make_desk(None, self.store, self.clock, lambda aor: [])
        desk.send = self.sender
        self.successResultOf(Deferred.fromCoroutine(desk.dialled("1000", "9911")))
        self.assertEqual((len(self.audits()), self.sender.sent), (1, []))

    def test_trunk_change(self) -> None:
        """The trunk hook's call: nothing for other numbers; for 911 the alert once, the headers and the PIDF-LO part."""

        def change(dialled: str, call_id: str) -> Any:
            return self.successResultOf(
                Deferred.fromCoroutine(
                    self.desk.trunk_change(
                        "1000", dialled, "+15551230000", "pbx.test", call_id=call_id
                    )
                )
            )

        self.assertIsNone(change("95552345678", "c1"))
        self.desk.on_call_event(CallEvent("created", "c2", "1000", "9911", NOW))
        invite = change("9911", "c2")
        assert invite is not None
        self.assertEqual(len(self.audits()), 1)
        self.assertIn(("Geolocation", f"<cid:{invite.content_id}>"), invite.headers)
        self.assertIn(b"<ca:ROOM>210</ca:ROOM>", invite.location)
        self.assertEqual(self.desk.callback_target("+15551230000"), "1000")
