"""
Tests for :mod:`pbx.sip.events` (RFC 6665 subscriptions, driven through the
SIP core) and :mod:`pbx.sip.message_summary` (RFC 3842 bodies).
"""

from __future__ import annotations

import re

from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from pbx.interfaces import IEventPackage
from pbx.provisioning import extension_record
from pbx.records import Binding
from pbx.security.lockout import Lockout
from pbx.sip.auth import DigestAuthenticator, compute_ha1, compute_response
from pbx.sip.authn import RequestAuthenticator
from pbx.sip.core import SIPCore
from pbx.sip.dialog import LocalAddress
from pbx.sip.events import EventServer
from pbx.sip.ids import new_branch
from pbx.sip.message import (
    Request,
    Response,
    StreamFramer,
    make_response,
    parse_message,
)
from pbx.sip.message_summary import (
    MessageSummaryError,
    message_summary_body,
    parse_message_summary,
)
from pbx.sip.transaction import Peer
from pbx.sip.transport import SIPStreamFactory
from pbx.testing import FakeUDPPort, MemoryStore

REALM = "pbx.test"
PASSWORDS = {"1001": "Str0ng-pass-word", "1002": "An0ther-pass-word"}
PHONE = ("192.0.2.10", 5060)
OTHER_PHONE = ("192.0.2.20", 5062)
EVENT = "message-summary"
CONTENT_TYPE = "application/simple-message-summary"
EMPTY = b"Messages-Waiting: no\r\nVoice-Message: 0/0 (0/0)\r\n"
ONE_NEW = b"Messages-Waiting: yes\r\nVoice-Message: 1/0 (0/0)\r\n"


@implementer(IEventPackage)
class FixedPackage:
    """An event package whose state is a dict; each extension may watch only itself."""

    content_type = CONTENT_TYPE

    def __init__(self, event: str = EVENT, unsolicited: bool = True) -> None:
        self.event = event
        self.unsolicited = unsolicited
        self.bodies: dict[str, bytes] = {}
        #: When set, state() returns these Deferreds unfired, in order.
        self.held: list[Deferred[bytes]] | None = None

    def authorize(self, subscriber: str, resource: str) -> bool:
        """Only one's own resource."""
        return subscriber == resource

    def state(self, resource: str) -> Deferred[bytes]:
        """The body for ``resource`` (an empty mailbox by default)."""
        if self.held is not None:
            d: Deferred[bytes] = Deferred()
            self.held.append(d)
            return d
        return succeed(self.bodies.get(resource, EMPTY))


class Phone:
    """A subscriber: builds SUBSCRIBE requests and keeps its dialog's To tag."""

    def __init__(self, test: EventsTestCase, user: str = "1001", source: tuple[str, int] = PHONE,
                 call_id: str = "sub-1@192.0.2.10") -> None:
        self.test = test
        self.user = user
        self.source = source
        self.call_id = call_id
        self.cseq = 0
        self.from_tag = f"ph-{user}"
        self.to_tag: str | None = None

    def request(self, *, resource: str | None = None, event: str | None = EVENT, expires: int | None = 3600,
                authorization: str | None = None, extra: tuple[str, ...] = ()) -> bytes:
        """The next SUBSCRIBE of this phone's dialog, as bytes."""
        self.cseq += 1
        host, port = self.source
        resource = resource or self.user
        to_tag = f";tag={self.to_tag}" if self.to_tag else ""
        lines = [
            f"SUBSCRIBE sip:{resource}@{REALM} SIP/2.0",
            f"Via: SIP/2.0/UDP {host}:{port};branch={new_branch()};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@{REALM}>;tag={self.from_tag}",
            f"To: <sip:{resource}@{REALM}>{to_tag}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} SUBSCRIBE",
            f"Contact: <sip:{self.user}@{host}:{port}>",
            *([f"Event: {event}"] if event is not None else []),
            *([f"Expires: {expires}"] if expires is not None else []),
            *([f"Authorization: {authorization}"] if authorization else []),
            *extra,
            "Content-Length: 0",
            "",
            "",
        ]
        return "\r\n".join(lines).encode()

    def authorization(self, nonce: str, resource: str | None = None) -> str:
        """Digest credentials for ``nonce`` (RFC 7616 §3.4)."""
        uri = f"sip:{resource or self.user}@{REALM}"
        ha1 = compute_ha1(self.user, REALM, PASSWORDS[self.user], "MD5")
        digest = compute_response(ha1, nonce=nonce, method="SUBSCRIBE", uri=uri, algorithm="MD5",
                                  qop="auth", nc="00000001", cnonce="c0ffee")
        return (f'Digest username="{self.user}", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
                f'response="{digest}", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"')

    def subscribe(self, *, resource: str | None = None, event: str | None = EVENT, expires: int | None = 3600,
                  extra: tuple[str, ...] = ()) -> tuple[Response, list[Request]]:
        """Be challenged, answer, and return the final response and the NOTIFYs that followed."""
        [challenge] = self.test.send(self.request(resource=resource, event=event, expires=expires, extra=extra),
                                     self.source)
        assert isinstance(challenge, Response)
        self.test.assertEqual(challenge.status, 401)
        match = re.search(r'nonce="([^"]+)"', challenge.headers.get("WWW-Authenticate") or "")
        assert match is not None
        auth = self.authorization(match.group(1), resource)
        response, *notifies = self.test.send(
            self.request(resource=resource, event=event, expires=expires, extra=extra, authorization=auth),
            self.source)
        assert isinstance(response, Response)
        if response.status == 200 and self.to_tag is None:
            self.to_tag = response.to.tag
        return response, [n for n in notifies if isinstance(n, Request)]


class EventsTestCase(SynchronousTestCase):
    """An event server behind a SIPCore, on a fake clock and UDP port."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = MemoryStore()
        for number, password in PASSWORDS.items():
            self.store.extensions[number] = extension_record(number, REALM, password=password)
        auth = DigestAuthenticator(realm=REALM, clock=self.clock, secret=b"k" * 32, algorithms=("MD5",))
        lockout = Lockout(self.clock, max_failures=3, window=60, base_delay=30)
        authn = RequestAuthenticator(self.store, self.clock, auth, lockout, self.store.get_extension)
        self.core = SIPCore(self.clock)
        self.port = FakeUDPPort(5060, None)
        self.core.transports.udp = self.port
        self.bindings: dict[str, list[Binding]] = {}
        self.events = EventServer(
            self.core, self.clock, authn, REALM, lambda transport: LocalAddress("udp", "192.0.2.1", 5060),
            lambda aor: self.bindings.get(aor, []), peer_for,
        )
        self.core.handlers["SUBSCRIBE"] = self.events
        self.package = FixedPackage()
        self.events.register(self.package)
        self.phone = Phone(self)

    def tearDown(self) -> None:
        self.events.stop()
        self.clock.advance(64)  # every transaction ends within 64*T1
        self.assertEqual(self.events.subscriptions(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def send(self, data: bytes, source: tuple[str, int] = PHONE) -> list[Request | Response]:
        """Feed one datagram to the core; return every message sent meanwhile (to ``source``)."""
        before = len(self.port.written)
        self.core.receive(data, Peer("udp", *source), False)
        return self.sent(before, source)

    def sent(self, before: int, to: tuple[str, int] | None = PHONE) -> list[Request | Response]:
        """Messages written since ``before``, checking they went to ``to``."""
        out = []
        for raw, addr in self.port.written[before:]:
            if to is not None:
                self.assertEqual(addr, to)
            out.append(parse_message(raw))
        return out

    def answer(self, notify: Request, status: int = 200, source: tuple[str, int] = PHONE) -> list[Request]:
        """Answer a NOTIFY from the phone; return the requests that followed."""
        before = len(self.port.written)
        self.core.receive(make_response(notify, status).to_bytes(), Peer("udp", *source), False)
        return [m for m in self.sent(before, None) if isinstance(m, Request)]

    def notify(self, resource: str = "1001") -> list[Request]:
        """Call EventServer.notify; return the requests it sent."""
        before = len(self.port.written)
        self.events.notify(EVENT, resource)
        return [m for m in self.sent(before, None) if isinstance(m, Request)]

    def subscribed(self) -> Request:
        """Subscribe 1001 to itself and answer the first NOTIFY; return that NOTIFY."""
        response, [notify] = self.phone.subscribe()
        self.assertEqual(response.status, 200)
        self.assertEqual(self.answer(notify), [])
        return notify


def peer_for(binding: Binding) -> Peer:
    """Where the test's registered phones are reached: their source address."""
    host, _, port = binding.source.rpartition(":")
    return Peer(binding.transport, host, int(port))


class SubscribeTests(EventsTestCase):
    """Creating, refreshing and ending subscriptions."""

    def test_package_double(self) -> None:
        """The test package provides IEventPackage."""
        self.assertTrue(verifyObject(IEventPackage, self.package))

    def test_challenge_then_subscribe(self) -> None:
        """SUBSCRIBE is challenged with 401, then accepted with 200 and an immediate NOTIFY in the dialog."""
        response, [notify] = self.phone.subscribe()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers.get("Expires"), "3600")
        self.assertEqual(response.headers.get("Contact"), "<sip:pbx@192.0.2.1:5060>")
        self.assertEqual(response.headers.get("Allow-Events"), EVENT)
        tag = response.to.tag
        self.assertTrue(tag)
        self.assertEqual(notify.method, "NOTIFY")
        self.assertEqual(str(notify.uri), "sip:1001@192.0.2.10:5060")
        self.assertEqual(notify.call_id, self.phone.call_id)
        self.assertEqual(notify.from_.tag, tag)
        self.assertEqual(notify.to.tag, "ph-1001")
        self.assertEqual(str(notify.cseq), "1 NOTIFY")
        self.assertEqual(notify.headers.get("Event"), EVENT)
        self.assertEqual(notify.headers.get("Subscription-State"), "active;expires=3600")
        self.assertEqual(notify.headers.get("Content-Type"), CONTENT_TYPE)
        self.assertEqual(notify.body, EMPTY)
        [subscription] = self.events.subscriptions(EVENT, "1001")
        self.assertEqual(subscription.subscriber, "1001")

    def test_event_id_echoed(self) -> None:
        """The NOTIFY carries the SUBSCRIBE's event id (RFC 6665 §8.2.1)."""
        _, [notify] = self.phone.subscribe(event=f"{EVENT};id=7")
        self.assertEqual(notify.headers.get("Event"), f"{EVENT};id=7")

    def test_default_and_clamped_expiry(self) -> None:
        """Without Expires the default applies; a longer request is shortened to the maximum."""
        response, _ = self.phone.subscribe(expires=None)
        self.assertEqual(response.headers.get("Expires"), "3600")
        response, _ = Phone(self, call_id="sub-2").subscribe(expires=86400)
        self.assertEqual(response.headers.get("Expires"), "3600")

    def test_unknown_event(self) -> None:
        """An unknown or missing Event gets 489 with Allow-Events, before any challenge."""
        for event in ("presence", None):
            [response] = self.send(self.phone.request(event=event))
            assert isinstance(response, Response)
            self.assertEqual(response.status, 489)
            self.assertEqual(response.headers.get("Allow-Events"), EVENT)
        self.assertEqual(self.events.subscriptions(), [])

    def test_malformed_event(self) -> None:
        """An Event header with broken parameters gets 400."""
        [response] = self.send(self.phone.request(event=f"{EVENT};;id"))
        assert isinstance(response, Response)
        self.assertEqual(response.status, 400)

    def test_forbidden_resource(self) -> None:
        """A resource the package does not let the subscriber watch gets 403 and no NOTIFY."""
        response, notifies = self.phone.subscribe(resource="1002")
        self.assertEqual(response.status, 403)
        self.assertEqual(notifies, [])
        self.assertEqual(self.events.subscriptions(), [])

    def test_interval_too_brief(self) -> None:
        """An expiry below the minimum gets 423 with Min-Expires."""
        [response] = self.send(self.phone.request(expires=30))
        assert isinstance(response, Response)
        self.assertEqual(response.status, 423)
        self.assertEqual(response.headers.get("Min-Expires"), "60")

    def test_not_acceptable(self) -> None:
        """An Accept header excluding the package's type gets 406; a wildcard is fine."""
        [response] = self.send(self.phone.request(extra=("Accept: application/pidf+xml",)))
        assert isinstance(response, Response)
        self.assertEqual(response.status, 406)
        self.assertEqual(response.headers.get("Accept"), CONTENT_TYPE)
        response, _ = self.phone.subscribe(extra=("Accept: application/*",))
        self.assertEqual(response.status, 200)

    def test_fetch(self) -> None:
        """An initial SUBSCRIBE with Expires 0 gets the state once, terminated, and keeps nothing."""
        response, [notify] = self.phone.subscribe(expires=0)
        self.assertEqual(response.headers.get("Expires"), "0")
        self.assertEqual(notify.headers.get("Subscription-State"), "terminated;reason=timeout")
        self.assertEqual(notify.body, EMPTY)
        self.assertEqual(self.events.subscriptions(), [])

    def test_state_sent_when_ready(self) -> None:
        """The 200 goes first; the NOTIFY follows when the package's state is ready."""
        self.package.held = []
        response, notifies = self.phone.subscribe()
        self.assertEqual((response.status, notifies), (200, []))
        before = len(self.port.written)
        self.package.held[0].callback(ONE_NEW)
        [notify] = self.sent(before)
        assert isinstance(notify, Request)
        self.assertEqual(notify.body, ONE_NEW)

    def test_refresh(self) -> None:
        """An in-dialog SUBSCRIBE resets the expiry and sends a NOTIFY; the old expiry no longer applies."""
        self.subscribed()
        self.clock.advance(3000)
        response, [notify] = self.phone.subscribe(expires=600)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers.get("Expires"), "600")
        self.assertEqual(str(notify.cseq), "2 NOTIFY")
        self.assertEqual(notify.headers.get("Subscription-State"), "active;expires=600")
        self.answer(notify)
        self.clock.advance(599)
        self.assertEqual(len(self.events.subscriptions()), 1)
        before = len(self.port.written)
        self.clock.advance(1)
        [final] = self.sent(before)
        assert isinstance(final, Request)
        self.assertEqual(final.headers.get("Subscription-State"), "terminated;reason=timeout")

    def test_unsubscribe(self) -> None:
        """Expires 0 in the dialog gets 200 and a final NOTIFY with the state; the subscription is gone."""
        self.subscribed()
        response, [notify] = self.phone.subscribe(expires=0)
        self.assertEqual((response.status, response.headers.get("Expires")), (200, "0"))
        self.assertEqual(notify.headers.get("Subscription-State"), "terminated;reason=timeout")
        self.assertEqual(notify.body, EMPTY)
        self.assertEqual(self.events.subscriptions(), [])
        self.assertEqual(self.answer(notify), [])
        self.assertEqual(self.notify(), [])

    def test_expiry(self) -> None:
        """When the duration runs out, a final NOTIFY says terminated;reason=timeout."""
        self.subscribed()
        before = len(self.port.written)
        self.clock.advance(3600)
        [notify] = self.sent(before)
        assert isinstance(notify, Request)
        self.assertEqual(notify.headers.get("Subscription-State"), "terminated;reason=timeout")
        self.assertEqual(self.events.subscriptions(), [])
        self.answer(notify)

    def test_unknown_dialog(self) -> None:
        """An in-dialog SUBSCRIBE matching no subscription gets 481."""
        self.phone.to_tag = "not-ours"
        response, notifies = self.phone.subscribe()
        self.assertEqual((response.status, notifies), (481, []))

    def test_other_subscriber_cannot_refresh(self) -> None:
        """Another extension's credentials in the dialog get 403."""
        self.subscribed()
        intruder = Phone(self, user="1002", call_id=self.phone.call_id)
        intruder.to_tag, intruder.from_tag, intruder.cseq = self.phone.to_tag, self.phone.from_tag, 5
        response, _ = intruder.subscribe(resource="1001")
        self.assertEqual(response.status, 403)

    def test_register_twice(self) -> None:
        """A second package for one event is refused."""
        self.assertRaises(ValueError, self.events.register, FixedPackage())

    def test_options_allow_events(self) -> None:
        """OPTIONS answers list the registered events (RFC 6665 §4.4.4)."""
        data = self.phone.request().replace(b"SUBSCRIBE", b"OPTIONS")
        [response] = self.send(data)
        assert isinstance(response, Response)
        self.assertEqual(response.headers.get("Allow-Events"), EVENT)
        self.assertIn("SUBSCRIBE", response.headers.get_all("Allow"))

    def test_stop(self) -> None:
        """Stopping ends each subscription with terminated;reason=deactivated and cancels its timer."""
        self.subscribed()
        before = len(self.port.written)
        self.events.stop()
        [notify] = self.sent(before)
        assert isinstance(notify, Request)
        self.assertEqual(notify.headers.get("Subscription-State"), "terminated;reason=deactivated")
        self.assertEqual(notify.body, b"")
        self.answer(notify)
        self.assertEqual(self.events.subscriptions(), [])


class LimitTests(EventsTestCase):
    """Subscriptions are bounded per subscriber and in total."""

    def test_per_subscriber(self) -> None:
        """Beyond the per-subscriber limit SUBSCRIBE gets 503; ending one makes room."""
        self.events.max_per_subscriber = 2
        phones = [Phone(self, call_id=f"sub-{i}") for i in range(3)]
        self.assertEqual(phones[0].subscribe()[0].status, 200)
        self.assertEqual(phones[1].subscribe()[0].status, 200)
        self.assertEqual(phones[2].subscribe()[0].status, 503)
        self.assertEqual(len(self.events.subscriptions()), 2)
        phones[0].subscribe(expires=0)
        self.assertEqual(phones[2].subscribe()[0].status, 200)

    def test_total(self) -> None:
        """Beyond the total limit every subscriber gets 503."""
        self.events.max_total = 1
        self.assertEqual(self.phone.subscribe()[0].status, 200)
        other = Phone(self, user="1002", source=OTHER_PHONE, call_id="sub-2")
        response, _ = other.subscribe()
        self.assertEqual(response.status, 503)


class NotifyTests(EventsTestCase):
    """State changes reach subscribers, and unsubscribed registered phones."""

    def test_notify_subscriber(self) -> None:
        """notify() sends the new state in the subscription's dialog."""
        first = self.subscribed()
        self.package.bodies["1001"] = ONE_NEW
        [notify] = self.notify()
        self.assertEqual(notify.call_id, first.call_id)
        self.assertEqual(str(notify.cseq), "2 NOTIFY")
        self.assertEqual(notify.body, ONE_NEW)
        self.assertTrue((notify.headers.get("Subscription-State") or "").startswith("active;expires="))
        self.answer(notify)

    def test_one_notify_in_flight(self) -> None:
        """While a NOTIFY is unanswered, changes wait; the newest state follows the answer."""
        self.subscribed()
        [pending] = self.notify()
        self.package.bodies["1001"] = ONE_NEW
        self.assertEqual(self.notify(), [])
        self.assertEqual(self.notify(), [])
        [latest] = self.answer(pending)
        self.assertEqual(latest.body, ONE_NEW)
        self.assertEqual(str(latest.cseq), "3 NOTIFY")
        self.assertEqual(self.answer(latest), [])

    def test_notify_481_ends_subscription(self) -> None:
        """A NOTIFY answered 481 ends the subscription; later changes send nothing to it."""
        self.package.unsolicited = False
        self.subscribed()
        [notify] = self.notify()
        self.answer(notify, 481)
        self.assertEqual(self.events.subscriptions(), [])
        self.assertEqual(self.notify(), [])

    def test_notify_timeout_ends_subscription(self) -> None:
        """A NOTIFY nobody answers (408 from the transaction) ends the subscription."""
        self.subscribed()
        self.notify()
        self.clock.advance(32)
        self.assertEqual(self.events.subscriptions(), [])

    def test_unsolicited(self) -> None:
        """A registered phone without a subscription gets an out-of-dialog NOTIFY."""
        self.bindings["1001"] = [Binding("1001", "sip:1001@192.0.2.20:5062", 2e9, "udp", "192.0.2.20:5062")]
        self.package.bodies["1001"] = ONE_NEW
        before = len(self.port.written)
        self.events.notify(EVENT, "1001")
        [notify] = self.sent(before, OTHER_PHONE)
        assert isinstance(notify, Request)
        self.assertEqual(str(notify.uri), "sip:1001@192.0.2.20:5062")
        self.assertEqual((notify.headers.get("From") or "").split(";tag=")[0], f"<sip:1001@{REALM}>")
        self.assertTrue(notify.from_.tag)
        self.assertEqual((str(notify.to), notify.to.tag), (f"<sip:1001@{REALM}>", None))
        self.assertEqual(str(notify.cseq), "1 NOTIFY")
        self.assertEqual(notify.headers.get("Event"), EVENT)
        self.assertEqual(notify.headers.get("Subscription-State"), "active")
        self.assertEqual(notify.headers.get("Content-Type"), CONTENT_TYPE)
        self.assertEqual(notify.body, ONE_NEW)
        self.answer(notify, source=OTHER_PHONE)

    def test_no_unsolicited_to_subscribed_phone(self) -> None:
        """A phone with a subscription gets only the in-dialog NOTIFY; its other phone still gets one."""
        self.bindings["1001"] = [
            Binding("1001", "sip:1001@192.0.2.10:5060", 2e9, "udp", "192.0.2.10:5060"),
            Binding("1001", "sip:1001@192.0.2.20:5062", 2e9, "udp", "192.0.2.20:5062"),
        ]
        first = self.subscribed()
        in_dialog, unsolicited = self.notify()
        self.assertEqual(in_dialog.call_id, first.call_id)
        self.assertEqual(str(unsolicited.uri), "sip:1001@192.0.2.20:5062")
        self.answer(in_dialog)

    def test_no_unsolicited_unless_asked(self) -> None:
        """A package that does not ask for unsolicited NOTIFY sends none to registered phones."""
        self.package.unsolicited = False
        self.bindings["1001"] = [Binding("1001", "sip:1001@192.0.2.20:5062", 2e9, "udp", "192.0.2.20:5062")]
        self.assertEqual(self.notify(), [])

    def test_unreadable_binding_skipped(self) -> None:
        """A binding whose address cannot be read is skipped; the other phones still get NOTIFY."""
        self.bindings["1001"] = [
            Binding("1001", "not a uri", 2e9, "udp", "nowhere"),
            Binding("1001", "sip:1001@192.0.2.20:5062", 2e9, "udp", "192.0.2.20:5062"),
        ]
        [notify] = self.notify()
        self.assertEqual(str(notify.uri), "sip:1001@192.0.2.20:5062")
        self.answer(notify, source=OTHER_PHONE)

    def test_unknown_event_notify(self) -> None:
        """notify() for an event nobody registered sends nothing."""
        self.events.notify("presence", "1001")
        self.assertEqual(self.port.written, [])


class MessageSummaryTests(SynchronousTestCase):
    """RFC 3842 §5.2 bodies."""

    def test_body(self) -> None:
        """The body lists the waiting status, the account and voice counts, CRLF-terminated."""
        self.assertEqual(
            message_summary_body(True, 2, 8, "sip:*97@pbx.test"),
            b"Messages-Waiting: yes\r\nMessage-Account: sip:*97@pbx.test\r\nVoice-Message: 2/8 (0/0)\r\n",
        )
        self.assertEqual(message_summary_body(False, 0, 0, None), EMPTY)

    def test_bad_arguments(self) -> None:
        """Negative counts and multi-line accounts are refused."""
        self.assertRaises(ValueError, message_summary_body, True, -1, 0, None)
        self.assertRaises(ValueError, message_summary_body, True, 1, 0, "sip:a\r\nX: y")

    def test_round_trip(self) -> None:
        """What the builder writes, the parser reads back."""
        summary = parse_message_summary(message_summary_body(True, 3, 1, "sip:1001@pbx.test"))
        self.assertEqual((summary.waiting, summary.account, summary.voice), (True, "sip:1001@pbx.test", (3, 1)))

    def test_parse_rfc_example(self) -> None:
        """Names in any case, urgent counts, other classes and trailing message headers are understood."""
        body = (b"messages-waiting: YES\r\nMessage-Account: sip:alice@vmail.example.com\r\n"
                b"Voice-Message: 4/8 (1/2)\r\nFax-Message: 0/1\r\n\r\nTo: <alice@atlanta.example.com>\r\n")
        summary = parse_message_summary(body)
        self.assertTrue(summary.waiting)
        self.assertEqual(summary.counts, {"voice-message": (4, 8, 1, 2), "fax-message": (0, 1, 0, 0)})

    def test_parse_errors(self) -> None:
        """A body without Messages-Waiting first, or with bad counts, is refused."""
        for body in (b"", b"Voice-Message: 1/0\r\n", b"Messages-Waiting: maybe\r\n",
                     b"Messages-Waiting: yes\r\nVoice-Message: 1\r\n", b"Messages-Waiting: yes\r\nVoice-Message: 1/0 (0/0\r\n"):
            self.assertRaises(MessageSummaryError, parse_message_summary, body)


class StreamSubscriberTests(EventsTestCase):
    """A subscriber on TCP gets its NOTIFYs on the connection it subscribed on (the dialog's flow)."""

    def test_notify_on_connection(self) -> None:
        """The 401, the 200, the first NOTIFY and a later one all go on the phone's connection; none by UDP."""
        address = IPv4Address("TCP", "192.0.2.10", 40100)
        protocol = SIPStreamFactory(self.core.transports, "tcp").buildProtocol(address)
        wire = StringTransport(peerAddress=address)
        protocol.makeConnection(wire)

        def exchange(data: bytes) -> list[Request | Response]:
            protocol.dataReceived(data)
            framer_output = StreamFramer(65536).feed(wire.value())
            wire.clear()
            return [parse_message(item, stream=True) for item in framer_output if isinstance(item, bytes)]

        [challenge] = exchange(self.phone.request())
        assert isinstance(challenge, Response)
        nonce = re.search(r'nonce="([^"]+)"', challenge.headers.get("WWW-Authenticate") or "")
        assert nonce is not None
        ok, notify = exchange(self.phone.request(authorization=self.phone.authorization(nonce.group(1))))
        assert isinstance(ok, Response) and isinstance(notify, Request)
        self.assertEqual((ok.status, notify.method), (200, "NOTIFY"))
        self.assertEqual(exchange(make_response(notify, 200).to_bytes()), [])
        self.events.notify(EVENT, "1001")
        [later] = exchange(b"")
        assert isinstance(later, Request)
        self.assertEqual(later.method, "NOTIFY")
        self.assertEqual(exchange(make_response(later, 200).to_bytes()), [])
        self.assertEqual(self.port.written, [])
        self.events.stop()
        protocol.connectionLost(None)  # type: ignore[arg-type]
