"""
Whole calls through the B2BUA, in memory: scripted phones and the PBX they call.

A real :class:`SIPCore`, registrar, authenticator and :class:`CallController`
are wired as :func:`pbx.switch.build_switch` wires them, on a
:class:`FakeUDPReactor` (its clock drives every timer, its fake UDP ports
carry the relay's sockets).  A :class:`Phone` is scripted: it registers, then
sends requests and answers what pbx sends it, datagram by datagram, or over
a TCP or TLS connection it opens to pbx (a ``StringTransport``).
:class:`CallTestCase` is that PBX with a caller and callees' phones.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

import attrs

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.controller import CallController
from pbx.calls.dialplan import Dialplan
from pbx.config import (
    APIConfig,
    CallsConfig,
    Config,
    RegistrarConfig,
    RTPConfig,
    SecurityConfig,
    SIPConfig,
    TransferConfig,
)
from pbx.media.ports import PortAllocator
from pbx.media.relay import Relay, RelaySession
from pbx.media.sdp import DIRECTIONS, parse_sdp
from pbx.provisioning import extension_record
from pbx.records import CallRecord
from pbx.security.lockout import Lockout
from pbx.sip.auth import DigestAuthenticator, compute_ha1, compute_response
from pbx.sip.authn import RequestAuthenticator
from pbx.sip.core import SIPCore
from pbx.sip.dialog import LocalAddress
from pbx.sip.ids import new_branch
from pbx.sip.message import (
    Headers,
    KeepAlive,
    Request,
    Response,
    StreamFramer,
    make_response,
    parse_message,
)
from pbx.sip.registrar import Registrar
from pbx.sip.transaction import Peer
from pbx.sip.transport import SIPStreamFactory, SIPStreamProtocol
from pbx.sip.uri import parse_uri
from pbx.testing import FakeUDPPort, FakeUDPReactor, MemoryStore

REALM = "pbx.test"
PBX = ("127.0.0.1", 5060)
PASSWORDS = {
    "1001": "Caller-pass-1001",
    "1002": "Callee-pass-1002",
    "1003": "Other-pass-1003",
    "1004": "Fourth-pass-1004",
}
RTP_MIN, RTP_MAX = 30000, 30099

CALLER_SDP = (
    b"v=0\r\n"
    b"o=alice 100 1 IN IP4 192.0.2.11\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.11\r\n"
    b"t=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=sendrecv\r\n"
)

CALLEE_SDP = (
    b"v=0\r\n"
    b"o=bob 200 1 IN IP4 192.0.2.12\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.12\r\n"
    b"t=0 0\r\n"
    b"m=audio 5000 RTP/AVP 8 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=sendrecv\r\n"
)


def hold_sdp(sdp: bytes, direction: str, version: int = 2) -> bytes:
    """``sdp`` with its direction changed and its o= version bumped."""
    text = sdp.decode().replace("a=sendrecv", f"a={direction}")
    text = re.sub(r"^(o=\S+ \S+) 1 ", rf"\g<1> {version} ", text, flags=re.M)
    return text.encode()


def audio(body: bytes) -> tuple[str, int, list[str], str]:
    """(c= address, port, payload types, direction) of the first stream of an SDP body."""
    sdp = parse_sdp(body)
    media = sdp.media[0]
    connection = media.connection or sdp.connection
    assert connection is not None
    directions = [name for name, _ in media.attributes if name in DIRECTIONS]
    return (
        connection.address,
        media.port,
        list(media.formats),
        (directions or ["sendrecv"])[0],
    )


@attrs.define
class Leg:
    """A phone's side of one dialog (or of one transaction before it)."""

    call_id: str
    local: str  # our From/To value, with our tag
    remote: str  # the other side's, with its tag once known
    target: str  # where in-dialog requests go (the other side's Contact)
    cseq: int


class Phone:
    """
    One registered SIP phone, scripted by a test.

    Over ``tcp`` or ``tls`` it opens one connection to pbx from an ephemeral
    port (:attr:`source_port`) and listens at ``port``, which its Contact
    names, as a phone does.
    """

    def __init__(
        self,
        test: CallTestCase,
        user: str,
        host: str,
        port: int = 5060,
        transport: str = "udp",
        contact_params: str = "",
        via_params: str = "",
    ) -> None:
        self.test = test
        self.user = user
        self.host = host
        self.port = port
        self.transport = transport
        self.contact_params = contact_params
        self.via_params = via_params
        self.password = PASSWORDS[user]
        self.inbox: list[Request | Response] = []
        self.tag = f"tag-{user}-{host.rsplit('.', 1)[1]}"
        self.count = 0
        self.source_port = 40000 + int(host.rsplit(".", 1)[1])
        #: Seconds what this phone sends over UDP waits in pbx's receive queue (None: unknown).
        self.waited: float | None = None
        #: The open connection to pbx (streams only) and what pbx wrote on it.
        self.connection: SIPStreamProtocol | None = None
        self.wire: StringTransport | None = None
        self._framer = StreamFramer(65536)

    @property
    def address(self) -> tuple[str, int]:
        """Where this phone sends from and receives at."""
        return (self.host, self.port)

    @property
    def contact(self) -> str:
        """This phone's Contact URI."""
        suffix = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"sip:{self.user}@{self.host}:{self.port}{suffix}{self.contact_params}"

    # -- the wire -----------------------------------------------------------

    def send(self, message: Request | Response) -> None:
        """Put one message on the wire to pbx (opening the connection first over a stream)."""
        if self.transport == "udp":
            self.test.core.receive(
                message.to_bytes(), Peer("udp", self.host, self.port), False, self.waited
            )
        else:
            if self.connection is None:
                self.connect()
            assert self.connection is not None
            self.connection.dataReceived(message.to_bytes())
        self.test.deliver()

    def connect(self) -> None:
        """Open a new connection to pbx from :attr:`source_port` (the next port after a close)."""
        factory = SIPStreamFactory(self.test.core.transports, self.transport)
        address = IPv4Address("TCP", self.host, self.source_port)
        self.connection = factory.buildProtocol(address)
        self.wire = StringTransport(peerAddress=address)
        self.connection.makeConnection(self.wire)

    def disconnect(self) -> None:
        """The connection to pbx closes."""
        assert self.connection is not None
        self.connection.connectionLost(Failure(ConnectionError("closed")))
        self.connection = self.wire = None
        self.source_port += 1

    def take_stream(self) -> None:
        """Move what pbx wrote on the connection into the inbox."""
        if self.wire is None:
            return
        data = self.wire.value()
        self.wire.clear()
        for item in self._framer.feed(data):
            if not isinstance(item, KeepAlive):
                message = parse_message(item, stream=True)
                self.inbox.append(message)

    def received(self) -> list[Request | Response]:
        """Everything pbx sent this phone since the last look."""
        self.test.deliver()
        messages, self.inbox = self.inbox, []
        return messages

    def expect(self, *kinds: str | int) -> list[Any]:
        """
        The messages received since the last look, which must be exactly
        ``kinds`` in order (a method for a request, a status for a response).
        """
        messages = self.received()
        self.test.assertEqual(
            [describe(m) for m in messages], list(kinds), f"to {self.user}@{self.host}"
        )
        return messages

    def expect_one(self, kind: str | int) -> Any:
        """The one message received since the last look, which must be ``kind``."""
        return self.expect(kind)[0]

    def request_to(
        self,
        method: str,
        uri: str,
        leg: Leg,
        *,
        body: bytes = b"",
        branch: str | None = None,
        extra: Sequence[tuple[str, str]] = (),
        cseq: int | None = None,
    ) -> Request:
        """Build a request of ``leg`` (CSeq given, or the leg's next)."""
        if cseq is None:
            leg.cseq += 1
            cseq = leg.cseq
        headers = Headers()
        headers.add(
            "Via",
            f"SIP/2.0/{self.transport.upper()} {self.host}:{self.port}"
            f";branch={branch or new_branch()};rport{self.via_params}",
        )
        headers.add("Max-Forwards", "70")
        headers.add("From", leg.local)
        headers.add("To", leg.remote)
        headers.add("Call-ID", leg.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        if method in ("INVITE", "UPDATE", "REGISTER"):
            headers.add("Contact", f"<{self.contact}>")
        for name, value in extra:
            headers.add(name, value)
        if body:
            headers.add("Content-Type", "application/sdp")
        return Request(method, parse_uri(uri), headers, body)

    def respond(
        self,
        request: Request,
        status: int,
        *,
        body: bytes = b"",
        extra: Sequence[tuple[str, str]] = (),
    ) -> Response:
        """Answer a request pbx sent (with this phone's To tag and, for 1xx/2xx, Contact)."""
        response = make_response(
            request, status, to_tag=None if status == 100 else self.tag
        )
        if 100 < status < 300:
            response.headers.add("Contact", f"<{self.contact}>")
        for name, value in extra:
            response.headers.add(name, value)
        if body:
            response.headers.add("Content-Type", "application/sdp")
            response.body = body
        self.send(response)
        return response

    # -- registering ----------------------------------------------------------

    def register(self) -> None:
        """REGISTER this phone's contact, answering the 401 challenge."""
        leg = Leg(
            f"reg-{self.user}-{self.host}",
            f"<sip:{self.user}@{REALM}>;tag={self.tag}",
            f"<sip:{self.user}@{REALM}>",
            f"sip:{REALM}",
            0,
        )
        self.send(self.request_to("REGISTER", f"sip:{REALM}", leg))
        challenge = self.expect_one(401)
        credentials = self.credentials(
            challenge, "REGISTER", f"sip:{REALM}", "WWW-Authenticate"
        )
        self.send(
            self.request_to(
                "REGISTER", f"sip:{REALM}", leg, extra=[("Authorization", credentials)]
            )
        )
        self.expect(200)

    def credentials(
        self, challenge: Request | Response, method: str, uri: str, header: str
    ) -> str:
        """Digest credentials answering the challenge of a 401/407 (RFC 7616 §3.4)."""
        found = re.search(r'nonce="([^"]+)"', challenge.headers.get(header) or "")
        assert found is not None, challenge
        nonce = found.group(1)
        self.count += 1
        nc, cnonce = f"{self.count:08x}", "0a4f113b"
        ha1 = compute_ha1(self.user, REALM, self.password, "MD5")
        digest = compute_response(
            ha1,
            nonce=nonce,
            method=method,
            uri=uri,
            algorithm="MD5",
            qop="auth",
            nc=nc,
            cnonce=cnonce,
        )
        return (
            f'Digest username="{self.user}", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
            f'response="{digest}", algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}"'
        )

    # -- calling ----------------------------------------------------------------

    def invite(
        self,
        number: str = "1002",
        *,
        body: bytes = CALLER_SDP,
        extra: Sequence[tuple[str, str]] = (),
        authenticate: bool = True,
        claimed: str | None = None,
    ) -> tuple[Request, Leg]:
        """
        Call ``number``: INVITE, take the 407, ACK it, INVITE again with
        credentials.  Returns the INVITE that went through and the phone's leg.
        """
        self.test.call_count += 1
        uri = f"sip:{number}@{REALM}"
        me = claimed or self.user
        leg = Leg(
            f"call-{self.test.call_count}@{self.host}",
            f'"Phone {me}" <sip:{me}@{REALM}>;tag={self.tag}',
            f"<{uri}>",
            uri,
            0,
        )
        invite = self.request_to("INVITE", uri, leg, body=body, extra=extra)
        self.send(invite)
        if not authenticate:
            return invite, leg
        # RFC 3261 §8.2.7: the challenge is stateless, with no 100 before it.
        challenge = self.expect_one(407)
        self.ack_failure(invite, challenge)
        credentials = self.credentials(challenge, "INVITE", uri, "Proxy-Authenticate")
        invite = self.request_to(
            "INVITE",
            uri,
            leg,
            body=body,
            extra=[*extra, ("Proxy-Authorization", credentials)],
        )
        self.send(invite)
        return invite, leg

    def ack_failure(self, invite: Request, response: Response) -> None:
        """§17.1.1.3: ACK a non-2xx final response (same branch, the response's To)."""
        leg = Leg(
            invite.call_id,
            invite.headers.get("From") or "",
            response.headers.get("To") or "",
            str(invite.uri),
            invite.cseq.number,
        )
        self.send(
            self.request_to(
                "ACK",
                str(invite.uri),
                leg,
                branch=invite.top_via.branch,
                cseq=invite.cseq.number,
            )
        )

    def confirm(self, invite: Request, leg: Leg, ok: Response) -> Request:
        """Take a 2xx into the leg (To tag, Contact) and ACK it (§13.2.2.4)."""
        leg.remote = ok.headers.get("To") or ""
        leg.target = str(ok.contacts[0].uri)
        ack = self.request_to("ACK", leg.target, leg, cseq=invite.cseq.number)
        self.send(ack)
        return ack

    def ack_reinvite(self, leg: Leg) -> None:
        """ACK the 2xx of the leg's last request, a re-INVITE."""
        self.send(self.request_to("ACK", leg.target, leg, cseq=leg.cseq))

    def cancel(self, invite: Request) -> Request:
        """CANCEL a pending INVITE (§9.1: same branch and CSeq number)."""
        leg = Leg(
            invite.call_id,
            invite.headers.get("From") or "",
            invite.headers.get("To") or "",
            str(invite.uri),
            invite.cseq.number,
        )
        cancel = self.request_to(
            "CANCEL",
            str(invite.uri),
            leg,
            branch=invite.top_via.branch,
            cseq=invite.cseq.number,
        )
        self.send(cancel)
        return cancel

    def in_dialog(
        self,
        leg: Leg,
        method: str,
        *,
        body: bytes = b"",
        extra: Sequence[tuple[str, str]] = (),
    ) -> Request:
        """Send a request within ``leg``."""
        request = self.request_to(method, leg.target, leg, body=body, extra=extra)
        self.send(request)
        return request

    def answer_leg(self, invite: Request) -> Leg:
        """The callee's leg of a dialog pbx's ``invite`` starts."""
        return Leg(
            invite.call_id,
            f"{invite.headers.get('To')};tag={self.tag}",
            invite.headers.get("From") or "",
            str(invite.contacts[0].uri),
            0,
        )


def describe(message: Request | Response) -> str | int:
    """A request's method or a response's status."""
    return message.method if isinstance(message, Request) else message.status


class CallTestCase(SynchronousTestCase):
    """A PBX wired like pbx.switch.build_switch, with phones 1001 (caller) and 1002 (callee) registered."""

    calls_config = CallsConfig(
        ring_timeout=30, media_timeout=60, min_session_expires=90
    )
    #: The ``park:`` section (None: no call park).
    park_config: Any = None
    #: The ``transfer:`` section (its feature code ``##`` by default).
    transfer_config = TransferConfig()

    def setUp(self) -> None:
        """Wire core, registrar, authenticator, relay and controller; register 1001 and 1002."""
        self.clock = FakeUDPReactor()
        self.clock.advance(1_700_000_000)
        self.store = MemoryStore()
        for number, password in PASSWORDS.items():
            self.store.extensions[number] = extension_record(
                number, REALM, name=f"User {number}", password=password
            )
        self.config = Config(
            path="<test>",
            sip=SIPConfig(domain=REALM),
            rtp=RTPConfig(port_min=RTP_MIN, port_max=RTP_MAX),
            api=APIConfig(),
            security=SecurityConfig(),
            database="sqlite://:memory:",
            state_dir=".",
            extensions=(),
            features={},
            calls=self.calls_config,
            dialplan=Dialplan(),
            park=self.park_config,
            transfer=self.transfer_config,
        )
        self.core = SIPCore(self.clock, user_agent="pbx-test")
        self.port = FakeUDPPort(5060, None)
        self.core.transports.udp = self.port
        digest = DigestAuthenticator(
            realm=REALM, clock=self.clock, secret=b"k" * 32, algorithms=("MD5",)
        )
        lockout = Lockout(self.clock, max_failures=5, window=300, base_delay=30)
        self.authn = RequestAuthenticator(
            self.store, self.clock, digest, lockout, self.store.get_extension
        )
        self.registrar = Registrar(
            self.store, self.clock, self.authn, RegistrarConfig()
        )
        self.core.handlers["REGISTER"] = self.registrar
        self.allocator = PortAllocator(RTP_MIN, RTP_MAX, random.Random(4))
        self.relay = Relay(self.clock, self.allocator, "127.0.0.1")
        self.address = LocalAddress("udp", *PBX)
        self.controller = CallController(
            self.core,
            self.registrar,
            self.authn,
            self.store,
            self.config,
            self.relay,
            lambda transport: self.address if transport == "udp" else LocalAddress(transport, *PBX),
            "127.0.0.1",
            self.store.get_extension,
        )
        self.registrar.start()
        self.controller.install()
        self.phones: dict[tuple[str, int], Phone] = {}
        self.call_count = 0
        self.caller = self.phone("1001", "192.0.2.11")
        self.callee = self.phone("1002", "192.0.2.12")

    def phone(self, user: str, host: str, transport: str = "udp", **options: str) -> Phone:
        """A registered phone of extension ``user`` at ``host`` (``options`` go to :class:`Phone`)."""
        phone = Phone(self, user, host, transport=transport, **options)
        self.phones[phone.address] = phone
        phone.register()
        return phone

    def tearDown(self) -> None:
        """No call or RTP port is left; once the transaction timers ran out, no timer either."""
        self.assertEqual(list(self.controller.calls), [])
        self.assertEqual(self.allocator.in_use, 0)
        self.registrar.stop()
        self.controller.stop()
        # Transactions and the loop-detection memory end within 64*T1.
        self.advance(70)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.core.transactions.counts, (0, 0))

    # -- plumbing -------------------------------------------------------------

    def deliver(self) -> None:
        """Hand every datagram pbx wrote to the phone it was addressed to, and what it wrote on each connection."""
        for phone in self.phones.values():
            phone.take_stream()
        written, self.port.written = self.port.written, []
        for data, addr in written:
            message = parse_message(data)
            phone = self.phones.get(addr)
            self.assertIsNotNone(
                phone, f"{describe(message)} sent to {addr}, where no phone is"
            )
            assert phone is not None
            self.assertEqual(
                phone.transport, "udp", f"{describe(message)} sent by UDP to a {phone.transport} phone"
            )
            phone.inbox.append(message)

    def advance(self, seconds: float, step: float = 0.25) -> None:
        """Let ``seconds`` pass on the clock, in small steps as real time would."""
        end = self.clock.seconds() + seconds
        while self.clock.seconds() + step <= end:
            self.clock.advance(step)
        self.clock.advance(end - self.clock.seconds())
        self.deliver()

    def quiet(self, *phones: Phone) -> None:
        """None of ``phones`` got anything since the last look."""
        for phone in phones:
            self.assertEqual(
                [describe(m) for m in phone.received()],
                [],
                f"to {phone.user}@{phone.host}",
            )

    def session(self) -> RelaySession:
        """The relay session of the one call in progress."""
        [call] = self.controller.calls.values()
        session = call.media.session
        assert isinstance(session, RelaySession)
        return session

    def answered_invite(self) -> Request:
        """The INVITE pbx sent to the phone that answered the one call in progress."""
        [call] = self.controller.calls.values()
        assert call.b is not None
        return call.b.invite

    def records(self) -> dict[str, CallRecord]:
        """The call detail records written, by leg."""
        return {r.leg: r for r in self.store.calls}

    # -- whole steps of a call ------------------------------------------------------

    def ring(
        self,
        *callees: Phone,
        number: str = "1002",
        body: bytes = CALLER_SDP,
        extra: Sequence[tuple[str, str]] = (),
    ) -> tuple[Request, Leg, list[Request]]:
        """The caller calls; each of ``callees`` gets one INVITE.  Returns (INVITE, leg, forked INVITEs)."""
        invite, leg = self.caller.invite(number, body=body, extra=extra)
        self.caller.expect(100)
        forked = []
        for callee in callees or (self.callee,):
            request = callee.expect_one("INVITE")
            assert isinstance(request, Request)
            forked.append(request)
        return invite, leg, forked

    def answer(
        self, callee: Phone, forked: Request, *, body: bytes = CALLEE_SDP
    ) -> Leg:
        """``callee`` rings and answers ``forked``; pbx ACKs; returns the callee's leg."""
        callee.respond(forked, 180)
        callee.respond(forked, 200, body=body)
        ack = callee.expect_one("ACK")
        assert isinstance(ack, Request)
        self.assertEqual(str(ack.cseq), f"{forked.cseq.number} ACK")
        return callee.answer_leg(forked)

    def establish(self) -> tuple[Request, Leg, Leg]:
        """A confirmed call 1001 -> 1002: (caller's INVITE, caller's leg, callee's leg)."""
        invite, leg, [forked] = self.ring()
        callee_leg = self.answer(self.callee, forked)
        ringing, ok = self.caller.expect(180, 200)
        assert isinstance(ok, Response)
        self.caller.confirm(invite, leg, ok)
        self.assertEqual(
            [c.state for c in self.controller.calls.values()], ["confirmed"]
        )
        return invite, leg, callee_leg

    def abandon(self, invite: Request, *ringing: tuple[Phone, Request]) -> None:
        """The caller CANCELs its pending INVITE; each ringing phone answers CANCEL 200 and INVITE 487."""
        self.caller.cancel(invite)
        ok, terminated = self.caller.expect(200, 487)
        assert isinstance(terminated, Response)
        self.caller.ack_failure(invite, terminated)
        for phone, forked in ringing:
            cancel = phone.expect_one("CANCEL")
            assert isinstance(cancel, Request)
            phone.respond(cancel, 200)
            phone.respond(forked, 487)
            phone.expect("ACK")

    def hang_up(self, leg: Leg) -> None:
        """The caller hangs up a confirmed call; the callee's BYE is answered."""
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        bye = self.callee.expect_one("BYE")
        assert isinstance(bye, Request)
        self.callee.respond(bye, 200)
