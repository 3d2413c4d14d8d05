"""pbx registering with a carrier, answering digest challenges, and pinging it with OPTIONS."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.config import parse_config
from pbx.sip.auth import DigestAuthenticator, Verdict, compute_ha1, parse_credentials
from pbx.sip.dialog import LocalAddress
from pbx.sip.digest_client import answer_challenge, authorized_retry
from pbx.sip.message import Request, Response, make_response
from pbx.sip.transaction import Peer
from pbx.trunks.config import TrunkConfig
from pbx.trunks.keepalive import KeepAlive
from pbx.trunks.registration import Registration, refresh_delay

CARRIER = Peer("udp", "192.0.2.50", 5060)
ADDRESS = LocalAddress("udp", "192.0.2.1", 5060)


def trunk(extra: str = "") -> TrunkConfig:
    """A registering trunk to 192.0.2.50 as account acct-1."""
    config = parse_config(
        "trunks:\n  carrier: {uri: 'sip:192.0.2.50', username: acct-1, password: pw-1, register: true,"
        f" register_expires: 600{extra}}}\n"
    )
    return config.trunks.trunks[0]


class Carrier:
    """The carrier side: records what pbx sends and lets the test answer it."""

    def __init__(self, clock: Clock) -> None:
        self.sent: list[tuple[Request, Callable[[Response], None]]] = []
        self.digest = DigestAuthenticator(realm="carrier.example", clock=clock, secret=b"c" * 32,
                                          algorithms=("SHA-256", "MD5"))

    def send(self, request: Request, peer: Peer, on_response: Callable[[Response], None]) -> None:
        """What pbx's SIP sender would do: here, keep it."""
        assert peer == CARRIER
        self.sent.append((request, on_response))

    def challenge(self, status: int = 401) -> None:
        """Answer the last request with a challenge."""
        request, on_response = self.sent[-1]
        response = make_response(request, status, to_tag="c1")
        name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
        for value in self.digest.challenge():
            response.headers.add(name, value)
        on_response(response)

    def check(self, header: str = "Authorization") -> Verdict:
        """Verify the credentials of the last request as the carrier would."""
        request, _ = self.sent[-1]
        credentials = parse_credentials(request.headers.get(header) or "")
        return self.digest.verify(
            credentials, request.method,
            lambda user, algorithm: compute_ha1(user, "carrier.example", "pw-1", algorithm) if user == "acct-1"
            else None,
            uri=str(request.uri),
        )

    def answer(self, status: int, **headers: str) -> None:
        """Answer the last request with ``status``."""
        request, on_response = self.sent[-1]
        response = make_response(request, status, to_tag="c1")
        for name, value in headers.items():
            response.headers.add(name.replace("_", "-"), value)
        on_response(response)


class DigestClientTests(SynchronousTestCase):
    """Answering challenges (RFC 3261 §22.2, RFC 8760)."""

    def test_prefers_sha256(self) -> None:
        """Of SHA-256 and MD5 challenges the SHA-256 one is answered, and the answer verifies."""
        carrier = Carrier(Clock())
        answer = answer_challenge(401, carrier.digest.challenge(), method="REGISTER", uri="sip:carrier.example",
                                  username="acct-1", password="pw-1")
        credentials = parse_credentials(answer.value)
        self.assertEqual((answer.header, credentials.algorithm, credentials.qop), ("Authorization", "SHA-256", "auth"))

    def test_retry_is_a_new_transaction(self) -> None:
        """The retried request keeps Call-ID and tags, has CSeq + 1 and a new branch; a second challenge is not answered."""
        clock = Clock()
        carrier = Carrier(clock)
        registration = Registration(trunk(), carrier.send, lambda t: ADDRESS, CARRIER, clock)
        registration.start()
        first, _ = carrier.sent[0]
        response = make_response(first, 407, to_tag="x")
        for value in carrier.digest.challenge():
            response.headers.add("Proxy-Authenticate", value)
        retry = authorized_retry(first, response, "acct-1", "pw-1")
        assert retry is not None
        self.assertEqual((retry.call_id, retry.headers.get("From"), retry.cseq.number),
                         (first.call_id, first.headers.get("From"), first.cseq.number + 1))
        self.assertNotEqual(retry.top_via.branch, first.top_via.branch)
        self.assertIsNotNone(retry.headers.get("Proxy-Authorization"))
        self.assertIsNone(authorized_retry(retry, response, "acct-1", "pw-1"))


class RegistrationTests(SynchronousTestCase):
    """The registration's life: challenge, grant, refresh, failure and back-off, stop."""

    def setUp(self) -> None:
        """A registration to a carrier that challenges."""
        self.clock = Clock()
        self.carrier = Carrier(self.clock)
        self.registration = Registration(trunk(), self.carrier.send, lambda t: ADDRESS, CARRIER, self.clock)

    def test_register_with_digest(self) -> None:
        """REGISTER, 401, REGISTER with credentials the carrier verifies, 200: registered for what it granted."""
        self.registration.start()
        first, _ = self.carrier.sent[0]
        self.assertEqual((str(first.uri), first.headers.get("To"), first.headers.get("Expires")),
                         ("sip:192.0.2.50", "<sip:acct-1@192.0.2.50>", "600"))
        self.assertEqual(first.headers.get("Contact"), "<sip:acct-1@192.0.2.1:5060>")
        self.carrier.challenge()
        self.assertEqual(len(self.carrier.sent), 2)
        self.assertEqual(self.carrier.check(), Verdict.OK)
        self.carrier.answer(200, Contact="<sip:acct-1@192.0.2.1:5060>;expires=300")
        self.assertEqual(self.registration.state, "registered")
        self.assertEqual(self.registration.summary(),
                         {"state": "registered", "registered": True, "expires_in": 300, "last_status": 200,
                          "failures": 0})

    def test_refresh_before_expiry(self) -> None:
        """A binding granted for 300 s is refreshed after 240 s, with the same Call-ID and a higher CSeq."""
        self.registration.start()
        self.carrier.answer(200, Expires="300")
        self.assertEqual(refresh_delay(300), 240.0)
        self.clock.advance(239)
        self.assertEqual(len(self.carrier.sent), 1)
        self.clock.advance(1)
        self.assertEqual(len(self.carrier.sent), 2)
        first, second = self.carrier.sent[0][0], self.carrier.sent[1][0]
        self.assertEqual(second.call_id, first.call_id)
        self.assertGreater(second.cseq.number, first.cseq.number)
        self.assertTrue(self.registration.registered)

    def test_wrong_password_backs_off(self) -> None:
        """Credentials refused twice: failed, tried again after 10 s, then 20 s."""
        self.registration.start()
        self.carrier.challenge()
        self.carrier.challenge()  # the same challenge again: the password is wrong
        self.assertEqual((self.registration.state, self.registration.failures), ("failed", 1))
        self.assertEqual(len(self.carrier.sent), 2)
        self.clock.advance(10)
        self.assertEqual(len(self.carrier.sent), 3)
        self.carrier.answer(503)
        self.clock.advance(19)
        self.assertEqual(len(self.carrier.sent), 3)
        self.clock.advance(1)
        self.assertEqual(len(self.carrier.sent), 4)
        self.carrier.answer(200)
        self.assertEqual((self.registration.state, self.registration.failures), ("registered", 0))

    def test_interval_too_brief(self) -> None:
        """A 423 is answered with the Min-Expires asked (RFC 3261 §10.2.8)."""
        self.registration.start()
        self.carrier.answer(423, Min_Expires="1800")
        self.assertEqual(self.carrier.sent[-1][0].headers.get("Expires"), "1800")

    def test_stop_unregisters(self) -> None:
        """Stopping sends Expires: 0 and leaves no timer."""
        self.registration.start()
        self.carrier.answer(200)
        self.registration.stop()
        self.assertEqual(self.carrier.sent[-1][0].headers.get("Expires"), "0")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(self.registration.registered)


class KeepAliveTests(SynchronousTestCase):
    """OPTIONS pings mark the trunk up or down."""

    def test_up_and_down(self) -> None:
        """Any answer: up; the transaction's 408: down; an answer again: up."""
        clock = Clock()
        carrier = Carrier(clock)
        pinger = KeepAlive(trunk(", keepalive: 30"), carrier.send, lambda t: ADDRESS, CARRIER, clock)
        pinger.start()
        self.assertEqual((pinger.state, carrier.sent[0][0].method), ("unknown", "OPTIONS"))
        carrier.answer(200)
        self.assertTrue(pinger.up)
        clock.advance(30)
        carrier.answer(408)
        self.assertEqual((pinger.state, pinger.up), ("down", False))
        clock.advance(30)
        carrier.answer(404)
        self.assertEqual(pinger.state, "up")
        pinger.stop()
        self.assertEqual(clock.getDelayedCalls(), [])
