"""Tests for :mod:`pbx.calls.refer`: Refer-To and Replaces parsing, sipfrag NOTIFYs."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.refer import (
    ReferError,
    ReferProgress,
    Replaces,
    parse_refer_to,
    parse_replaces,
    sipfrag,
    wants_subscription,
)
from pbx.sip.dialog import Dialog, LocalAddress
from pbx.sip.headers import parse_name_addr
from pbx.sip.message import Headers, Request, Response
from pbx.sip.transaction import Peer
from pbx.sip.uri import parse_uri


class ParseReferToTests(SynchronousTestCase):
    """What a Refer-To header asks for."""

    def test_plain(self) -> None:
        """A name-addr with a SIP URI gives its unescaped user part and no Replaces."""
        target = parse_refer_to('"Carol" <sip:1003@pbx.test:5060;transport=udp>')
        self.assertEqual(target.number, "1003")
        self.assertEqual(str(target.uri), "sip:1003@pbx.test:5060;transport=udp")
        self.assertIsNone(target.replaces)

    def test_method_invite(self) -> None:
        """RFC 3515 §2.1: ``method=INVITE`` is what pbx does anyway."""
        self.assertEqual(
            parse_refer_to("<sip:1003@pbx.test;method=INVITE>").number, "1003"
        )

    def test_bare_uri(self) -> None:
        """A bare URI (as some phones send) is taken too; %-escapes in the user part are undone."""
        self.assertEqual(parse_refer_to("sip:%2A97@pbx.test").number, "*97")

    def test_replaces(self) -> None:
        """RFC 3891 §7.1: an escaped Replaces header in the URI names the dialog; the URI loses it."""
        target = parse_refer_to(
            "<sip:1003@pbx.test?Replaces=abc%40host%3Bto-tag%3D111%3Bfrom-tag%3D222>"
        )
        self.assertEqual(target.replaces, Replaces("abc@host", "111", "222"))
        self.assertEqual(str(target.uri), "sip:1003@pbx.test")

    def test_refused(self) -> None:
        """No header, another scheme, no user part, bad syntax or a Replaces without tags: ReferError."""
        for value in (
            None,
            "",
            "<tel:+15551234>",
            "<sip:pbx.test>",
            "<sip:1003@",
            "<sip:1003@pbx.test?Replaces=abc%3Bto-tag%3D1>",
            "<sip:1003@pbx.test;method=BYE>",
        ):
            with self.assertRaises(ReferError, msg=value):
                parse_refer_to(value)


class ParseReplacesTests(SynchronousTestCase):
    """The Replaces header value (RFC 3891 §6.1)."""

    def test_parse(self) -> None:
        """Call-ID, both tags and early-only are read."""
        self.assertEqual(
            parse_replaces("x@y;from-tag=b;to-tag=a;early-only"),
            Replaces("x@y", "a", "b", True),
        )

    def test_keys(self) -> None:
        """Both readings of the tags are tried, RFC 3891 §3's first (to-tag is the recipient's)."""
        self.assertEqual(
            Replaces("c", "ours", "theirs").keys(),
            [("c", "ours", "theirs"), ("c", "theirs", "ours")],
        )

    def test_missing(self) -> None:
        """A missing Call-ID or tag is refused."""
        for value in (
            "",
            ";to-tag=a;from-tag=b",
            "c;to-tag=a",
            "c;from-tag=b",
            "c;;to-tag=a",
        ):
            with self.assertRaises(ReferError, msg=value):
                parse_replaces(value)


class SubscriptionTests(SynchronousTestCase):
    """The implicit subscription of a REFER and its NOTIFYs."""

    def request(self, *headers: tuple[str, str]) -> Request:
        """A REFER with ``headers``."""
        h = Headers()
        for name, value in headers:
            h.add(name, value)
        return Request("REFER", parse_uri("sip:pbx@pbx.test"), h)

    def test_refer_sub(self) -> None:
        """RFC 4488: only Refer-Sub: false (any case) turns the NOTIFYs off."""
        self.assertTrue(wants_subscription(self.request()))
        self.assertTrue(wants_subscription(self.request(("Refer-Sub", "true"))))
        self.assertFalse(wants_subscription(self.request(("Refer-Sub", " FALSE "))))

    def test_sipfrag(self) -> None:
        """A sipfrag body is one status line with the usual reason."""
        self.assertEqual(sipfrag(100), b"SIP/2.0 100 Trying\r\n")
        self.assertEqual(sipfrag(486), b"SIP/2.0 486 Busy Here\r\n")
        self.assertEqual(sipfrag(299, "Odd"), b"SIP/2.0 299 Odd\r\n")

    def progress(
        self, enabled: bool = True
    ) -> tuple[ReferProgress, list[tuple[Request, object]]]:
        """A progress reporter on a dialog, with a sender that keeps what it sends."""
        sent: list[tuple[Request, object]] = []

        class Sender:
            def request(
                self, request: Request, peer: Peer, on_response: object
            ) -> None:
                sent.append((request, on_response))

        dialog = Dialog(
            call_id="c1",
            local=parse_name_addr("<sip:pbx@pbx.test>;tag=us"),
            remote=parse_name_addr("<sip:1002@pbx.test>;tag=them"),
            remote_target=parse_uri("sip:1002@192.0.2.12"),
            peer=Peer("udp", "192.0.2.12", 5060),
            address=LocalAddress("udp", "127.0.0.1", 5060),
        )
        return ReferProgress(Sender(), dialog, enabled=enabled), sent  # type: ignore[arg-type]

    def test_notify(self) -> None:
        """Progress goes out as NOTIFY with Event refer; the final one terminates; nothing after it."""
        progress, sent = self.progress()
        answers: list[int] = []
        self.assertTrue(progress.report(100))
        self.assertTrue(
            progress.report(200, on_response=lambda r: answers.append(r.status))
        )
        self.assertFalse(progress.report(180))
        [(trying, _), (final, on_response)] = sent
        self.assertEqual((trying.method, trying.call_id), ("NOTIFY", "c1"))
        self.assertEqual(trying.headers.get("Event"), "refer")
        self.assertEqual(trying.headers.get("Subscription-State"), "active;expires=60")
        self.assertEqual(
            final.headers.get("Subscription-State"), "terminated;reason=noresource"
        )
        self.assertEqual(final.body, b"SIP/2.0 200 OK\r\n")
        self.assertEqual(
            final.headers.get("Content-Type"), "message/sipfrag;version=2.0"
        )
        self.assertGreater(final.cseq.number, trying.cseq.number)
        response = Response(200, "OK", Headers(), b"")
        on_response(response)  # type: ignore[operator]
        self.assertEqual(answers, [200])

    def test_disabled(self) -> None:
        """With Refer-Sub: false nothing is sent."""
        progress, sent = self.progress(enabled=False)
        self.assertFalse(progress.report(100))
        self.assertFalse(progress.report(200))
        self.assertEqual(sent, [])
