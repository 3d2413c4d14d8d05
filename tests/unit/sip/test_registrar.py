"""Tests for :mod:`pbx.sip.registrar`, driven through the SIP core (RFC 3261 §10.3)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import attrs

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from pbx.config import RegistrarConfig
from pbx.provisioning import extension_record
from pbx.records import Binding
from pbx.security.defence import SourceDefence
from pbx.security.lockout import Lockout
from pbx.security.log_lines import Remote
from pbx.sip.auth import DigestAuthenticator, compute_ha1, compute_response
from pbx.sip.authn import RequestAuthenticator
from pbx.sip.core import SIPCore
from pbx.sip.ids import new_branch
from pbx.sip.message import Response, parse_message
from pbx.sip.registrar import RETRY_AFTER, SWEEP_INTERVAL, Registrar
from pbx.sip.transaction import STATELESS_MEMORY, Peer
from pbx.sip.transport import SIPStreamFactory
from pbx.store.binding_writer import BATCH_DELAY, BindingWriter
from pbx.testing import FakeUDPPort, MemoryStore, RecordingSecurityLog

REALM = "pbx.test"
PASSWORD = "Str0ng-pass-word"
OTHER_PASSWORD = "An0ther-pass-word"
PHONE_ADDRESS = ("192.0.2.10", 5060)
CONTACT = "<sip:1001@192.0.2.10:5060>"


class Phone:
    """A SIP phone registering through the core, as a real one would."""

    def __init__(
        self,
        test: RegistrarTestCase,
        user: str = "1001",
        *,
        password: str = PASSWORD,
        aor: str | None = None,
        source: tuple[str, int] = PHONE_ADDRESS,
        call_id: str = "reg-1@192.0.2.10",
        cseq: int = 100,
    ) -> None:
        self.test = test
        self.user = user
        self.password = password
        self.aor = aor or user
        self.source = source
        self.call_id = call_id
        self.cseq = cseq
        self.uri = f"sip:{REALM}"

    def request(
        self,
        contacts: Sequence[str] = (CONTACT,),
        *,
        expires: int | None = None,
        authorization: str | None = None,
        branch: str | None = None,
    ) -> bytes:
        """The next REGISTER (CSeq incremented, fresh branch), as bytes."""
        self.cseq += 1
        host, port = self.source
        lines = [
            f"REGISTER {self.uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {host}:{port};branch={branch or new_branch()};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.aor}@{REALM}>;tag=ph-{self.user}",
            f"To: <sip:{self.aor}@{REALM}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            *(f"Contact: {c}" for c in contacts),
            *([f"Expires: {expires}"] if expires is not None else []),
            *([f"Authorization: {authorization}"] if authorization else []),
            "User-Agent: TestPhone/1.0",
            "Content-Length: 0",
            "",
            "",
        ]
        return "\r\n".join(lines).encode()

    def send(self, data: bytes) -> Response:
        """Send one REGISTER; return the one response it got."""
        return self.test.send(data, self.source)

    def authorization(
        self,
        nonce: str,
        *,
        username: str | None = None,
        password: str | None = None,
        uri: str | None = None,
        nc: int = 1,
    ) -> str:
        """Digest credentials answering ``nonce`` (RFC 7616 §3.4)."""
        username = username or self.user
        uri = uri or self.uri
        cnonce = "0a4f113b"
        ha1 = compute_ha1(username, REALM, password or self.password, "MD5")
        digest = compute_response(
            ha1,
            nonce=nonce,
            method="REGISTER",
            uri=uri,
            algorithm="MD5",
            qop="auth",
            nc=f"{nc:08x}",
            cnonce=cnonce,
        )
        return (
            f'Digest username="{username}", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
            f'response="{digest}", algorithm=MD5, qop=auth, nc={nc:08x}, cnonce="{cnonce}"'
        )

    def challenge(
        self, contacts: Sequence[str] = (CONTACT,), expires: int | None = None
    ) -> str:
        """Send an unauthenticated REGISTER; return the nonce of its 401."""
        response = self.send(self.request(contacts, expires=expires))
        self.test.assertEqual(response.status, 401)
        return nonce_of(response)

    def register(
        self,
        contacts: Sequence[str] = (CONTACT,),
        *,
        expires: int | None = None,
        username: str | None = None,
        password: str | None = None,
        uri: str | None = None,
    ) -> Response:
        """Register the whole way: be challenged, then answer the challenge."""
        nonce = self.challenge(contacts, expires)
        credentials = self.authorization(
            nonce, username=username, password=password, uri=uri
        )
        return self.send(
            self.request(contacts, expires=expires, authorization=credentials)
        )


def nonce_of(response: Response) -> str:
    """The nonce of a 401's challenge."""
    match = re.search(
        r'nonce="([^"]+)"', response.headers.get("WWW-Authenticate") or ""
    )
    assert match is not None, response
    return match.group(1)


class RegistrarTestCase(SynchronousTestCase):
    """A registrar behind a SIPCore, on a fake clock and UDP port."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = MemoryStore()
        self.store.extensions["1001"] = extension_record(
            "1001", REALM, password=PASSWORD
        )
        self.store.extensions["1002"] = extension_record(
            "1002", REALM, password=OTHER_PASSWORD
        )
        self.auth = DigestAuthenticator(
            realm=REALM, clock=self.clock, secret=b"k" * 32, algorithms=("MD5",)
        )
        self.lockout = Lockout(self.clock, max_failures=3, window=60, base_delay=30)
        self.limits = RegistrarConfig(
            min_expires=60, max_expires=3600, default_expires=3600
        )
        self.registrar = self.make_registrar()
        self.core = SIPCore(self.clock)
        self.core.handlers["REGISTER"] = self.registrar
        self.port = FakeUDPPort(5060, None)
        self.core.transports.udp = self.port
        self.phone = Phone(self)

    def make_registrar(self) -> Registrar:
        """A registrar on the test's store, clock, authenticator and lockout."""
        authn = RequestAuthenticator(self.store, self.clock, self.auth, self.lockout, self.store.get_extension)
        return Registrar(self.store, self.clock, authn, self.limits)

    def tearDown(self) -> None:
        self.registrar.stop()
        # Transactions and loop-detection memory end within 64*T1.
        self.clock.advance(64)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.core.transactions.counts, (0, 0))

    def send(self, data: bytes, source: tuple[str, int] = PHONE_ADDRESS) -> Response:
        """Feed one datagram to the core; return the one response, checking its address."""
        before = len(self.port.written)
        self.core.receive(data, Peer("udp", *source), False)
        written = self.port.written[before:]
        self.assertEqual(len(written), 1, written)
        raw, addr = written[0]
        self.assertEqual(addr, source)
        response = parse_message(raw)
        assert isinstance(response, Response)
        return response

    def stored(self) -> dict[tuple[str, str], Binding]:
        """The bindings in the store."""
        return dict(self.store.bindings)

    def audit_kinds(self) -> list[str]:
        """Kinds of the audit events written, in order."""
        return [e.kind for e in self.store.audit]


class RegisterTests(RegistrarTestCase):
    """Authenticating and registering."""

    def test_challenge(self) -> None:
        """A REGISTER without credentials gets 401 with a Digest challenge and a To tag."""
        response = self.phone.send(self.phone.request())
        self.assertEqual(response.status, 401)
        challenge = response.headers.get("WWW-Authenticate") or ""
        self.assertTrue(challenge.startswith("Digest "))
        self.assertIn(f'realm="{REALM}"', challenge)
        self.assertIn("algorithm=MD5", challenge)
        self.assertIn('qop="auth"', challenge)
        self.assertNotIn("stale", challenge)
        self.assertTrue(response.to.tag)
        self.assertEqual(self.registrar.contacts("1001"), [])
        self.assertEqual(self.stored(), {})
        self.assertEqual(self.store.audit, [])

    def test_register(self) -> None:
        """Good credentials get 200 listing the contact with its expiry, and a Date."""
        response = self.phone.register()
        self.assertEqual(response.status, 200)
        self.assertEqual(
            response.headers.get_all("Contact"), [f"{CONTACT};expires=3600"]
        )
        self.assertTrue(response.to.tag)
        self.assertIn("GMT", response.headers.get("Date") or "")
        self.assertEqual(response.top_via.received, "192.0.2.10")
        self.assertEqual(self.store.audit, [])

    def test_binding(self) -> None:
        """The binding is in memory and in the store, with where it came from."""
        self.phone.register()
        now = self.clock.seconds()
        expected = Binding(
            aor="1001",
            contact="sip:1001@192.0.2.10:5060",
            expires_at=now + 3600,
            transport="udp",
            source="192.0.2.10:5060",
            user_agent="TestPhone/1.0",
            call_id="reg-1@192.0.2.10",
            cseq=102,
            q=1.0,
            registered_at=now,
        )
        self.assertEqual(self.registrar.contacts("1001"), [expected])
        self.assertEqual(
            self.stored(), {("1001", "sip:1001@192.0.2.10:5060"): expected}
        )

    def test_retransmission_absorbed(self) -> None:
        """A retransmitted REGISTER gets the same response; the registrar runs once."""
        nonce = self.phone.challenge()
        data = self.phone.request(authorization=self.phone.authorization(nonce))
        first = self.send(data)
        self.clock.advance(0.5)
        before = len(self.port.written)
        self.core.receive(data, Peer("udp", *PHONE_ADDRESS), False)
        self.assertEqual(len(self.port.written), before + 1)
        self.assertEqual(self.port.written[-1][0], first.to_bytes())
        self.assertEqual(first.status, 200)
        self.assertEqual(self.store.audit, [])

    def test_refresh(self) -> None:
        """A refresh with a higher CSeq updates the one binding's expiry and CSeq."""
        self.phone.register()
        self.clock.advance(1000)
        response = self.phone.register(expires=1800)
        self.assertEqual(response.status, 200)
        self.assertEqual(
            response.headers.get_all("Contact"), [f"{CONTACT};expires=1800"]
        )
        [binding] = self.registrar.contacts("1001")
        self.assertEqual(binding.expires_at, self.clock.seconds() + 1800)
        self.assertEqual(binding.cseq, 104)
        self.assertEqual(list(self.stored().values()), [binding])

    def test_default_expires(self) -> None:
        """Without Expires the default applies."""
        self.phone.register()
        [binding] = self.registrar.contacts("1001")
        self.assertEqual(binding.expires_at - self.clock.seconds(), 3600)

    def test_max_expires(self) -> None:
        """An expiry above the maximum is clamped to it."""
        response = self.phone.register(expires=86400)
        self.assertEqual(
            response.headers.get_all("Contact"), [f"{CONTACT};expires=3600"]
        )
        [binding] = self.registrar.contacts("1001")
        self.assertEqual(binding.expires_at - self.clock.seconds(), 3600)

    def test_contact_expires_param(self) -> None:
        """A Contact's expires parameter beats the Expires header (§10.2.1.1)."""
        response = self.phone.register([f"{CONTACT};expires=120"], expires=3000)
        self.assertEqual(
            response.headers.get_all("Contact"), [f"{CONTACT};expires=120"]
        )

    def test_423(self) -> None:
        """An expiry below the minimum gets 423 with Min-Expires, and binds nothing."""
        response = self.phone.register(expires=30)
        self.assertEqual(response.status, 423)
        self.assertEqual(response.headers.get("Min-Expires"), "60")
        self.assertEqual(self.registrar.contacts("1001"), [])
        self.assertEqual(self.stored(), {})
        response = self.phone.register([f"{CONTACT};expires=59"])
        self.assertEqual(response.status, 423)

    def test_min_expires_accepted(self) -> None:
        """An expiry of exactly the minimum is accepted."""
        self.assertEqual(self.phone.register(expires=60).status, 200)

    def test_multiple_contacts(self) -> None:
        """Several contacts in one REGISTER become several bindings, best q first."""
        contacts = [
            "<sip:1001@192.0.2.10:5060>;q=0.5",
            "<sip:1001@198.51.100.3:5062>;q=0.9",
        ]
        response = self.phone.register(contacts)
        self.assertEqual(response.status, 200)
        self.assertEqual(
            response.headers.get_all("Contact"),
            [
                "<sip:1001@198.51.100.3:5062>;expires=3600",
                "<sip:1001@192.0.2.10:5060>;expires=3600",
            ],
        )
        self.assertEqual([b.q for b in self.registrar.contacts("1001")], [0.9, 0.5])
        self.assertEqual(len(self.stored()), 2)

    def test_expires_zero_removes_one(self) -> None:
        """Expires 0 on one contact removes that binding only."""
        self.phone.register(
            ["<sip:1001@192.0.2.10:5060>", "<sip:1001@192.0.2.11:5060>"]
        )
        response = self.phone.register(["<sip:1001@192.0.2.10:5060>"], expires=0)
        self.assertEqual(response.status, 200)
        self.assertEqual(
            response.headers.get_all("Contact"),
            ["<sip:1001@192.0.2.11:5060>;expires=3600"],
        )
        self.assertEqual(
            [b.contact for b in self.registrar.contacts("1001")],
            ["sip:1001@192.0.2.11:5060"],
        )
        self.assertEqual(list(self.stored()), [("1001", "sip:1001@192.0.2.11:5060")])

    def test_expires_param_zero(self) -> None:
        """An expires=0 Contact parameter removes that binding."""
        self.phone.register()
        response = self.phone.register([f"{CONTACT};expires=0"])
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers.get_all("Contact"), [])
        self.assertEqual(self.registrar.contacts("1001"), [])
        self.assertEqual(self.stored(), {})

    def test_remove_unknown_contact(self) -> None:
        """Removing a contact that is not bound is not an error."""
        response = self.phone.register(expires=0)
        self.assertEqual(response.status, 200)
        self.assertEqual(self.registrar.contacts("1001"), [])

    def test_query(self) -> None:
        """A REGISTER without Contact lists the current bindings and changes nothing (§10.2.3)."""
        self.phone.register()
        response = self.phone.register([])
        self.assertEqual(response.status, 200)
        self.assertEqual(
            response.headers.get_all("Contact"), [f"{CONTACT};expires=3600"]
        )
        self.assertEqual(len(self.stored()), 1)

    def test_wildcard_removes_all(self) -> None:
        """Contact: * with Expires: 0 removes every binding of the AOR."""
        self.phone.register(
            ["<sip:1001@192.0.2.10:5060>", "<sip:1001@192.0.2.11:5060>"]
        )
        self.store.bindings[("1002", "sip:1002@192.0.2.20")] = Binding(
            "1002", "sip:1002@192.0.2.20", 1e12
        )
        response = self.phone.register(["*"], expires=0)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers.get_all("Contact"), [])
        self.assertEqual(self.registrar.contacts("1001"), [])
        self.assertEqual(list(self.stored()), [("1002", "sip:1002@192.0.2.20")])

    def test_wildcard_with_contact(self) -> None:
        """Contact: * together with another contact gets 400."""
        self.phone.register()
        response = self.phone.register(["*", CONTACT], expires=0)
        self.assertEqual(response.status, 400)
        self.assertEqual(len(self.registrar.contacts("1001")), 1)

    def test_wildcard_needs_expires_zero(self) -> None:
        """Contact: * without Expires: 0 gets 400."""
        self.phone.register()
        self.assertEqual(self.phone.register(["*"], expires=3600).status, 400)
        self.assertEqual(self.phone.register(["*"]).status, 400)
        self.assertEqual(len(self.registrar.contacts("1001")), 1)

    def test_cseq_out_of_order(self) -> None:
        """A lower CSeq in the same Call-ID gets 500 and changes nothing (§10.3 step 7)."""
        self.phone.register()
        [before] = self.registrar.contacts("1001")
        self.phone.cseq = 10
        response = self.phone.register(expires=600)
        self.assertEqual((response.status, response.reason), (500, "CSeq out of order"))
        self.assertEqual(self.registrar.contacts("1001"), [before])
        self.assertEqual(list(self.stored().values()), [before])

    def test_wildcard_cseq_out_of_order(self) -> None:
        """A wildcard removal with a lower CSeq in the same Call-ID gets 500."""
        self.phone.register()
        self.phone.cseq = 10
        self.assertEqual(self.phone.register(["*"], expires=0).status, 500)
        self.assertEqual(len(self.registrar.contacts("1001")), 1)

    def test_other_call_id_any_cseq(self) -> None:
        """A REGISTER in another Call-ID may use any CSeq."""
        self.phone.register()
        other = Phone(self, call_id="reg-2@192.0.2.10", cseq=1)
        response = other.register(expires=600)
        self.assertEqual(response.status, 200)
        [binding] = self.registrar.contacts("1001")
        self.assertEqual((binding.call_id, binding.cseq), ("reg-2@192.0.2.10", 3))

    def test_escaped_nulls(self) -> None:
        """Contacts sip:%00@h and sip:%00%00@h are two distinct bindings (RFC 4475 escnull)."""
        response = self.phone.register(
            ["<sip:%00@host5.example.com>", "<sip:%00%00@host5.example.com>"]
        )
        self.assertEqual(response.status, 200)
        contacts = sorted(b.contact for b in self.registrar.contacts("1001"))
        self.assertEqual(
            contacts, ["sip:%00%00@host5.example.com", "sip:%00@host5.example.com"]
        )
        self.assertEqual(len(self.stored()), 2)
        self.assertEqual(len(response.headers.get_all("Contact")), 2)

    def test_malformed_expires_param(self) -> None:
        """A malformed expires parameter gets 400 naming it."""
        response = self.phone.register([f"{CONTACT};expires=soon"])
        self.assertEqual(
            (response.status, response.reason), (400, "Malformed expires parameter")
        )
        self.assertEqual(self.stored(), {})

    def test_bad_q(self) -> None:
        """A q outside 0..1 gets 400."""
        response = self.phone.register([f"{CONTACT};q=1.5"])
        self.assertEqual(response.status, 400)
        self.assertEqual(self.stored(), {})

    def test_lookup(self) -> None:
        """When a lookup is given it is asked for the extension instead of the store."""
        asked: list[str] = []
        record = self.store.extensions.pop("1001")

        def lookup(number: str) -> Deferred[object]:
            asked.append(number)
            d: Deferred[object] = Deferred()
            d.callback(record if number == "1001" else None)
            return d

        self.registrar.authn.lookup = lookup  # type: ignore[assignment]
        self.assertEqual(self.phone.register().status, 200)
        self.assertEqual(asked, ["1001"])

    def test_forget(self) -> None:
        """forget drops an AOR's bindings from memory."""
        self.phone.register()
        self.registrar.forget("1001")
        self.assertEqual(self.registrar.contacts("1001"), [])


class AuthFailureTests(RegistrarTestCase):
    """Wrong credentials, lockout and the cases that must look alike."""

    def test_wrong_password(self) -> None:
        """A wrong password gets a fresh 401 challenge, binds nothing and is audited."""
        response = self.phone.register(password="wrong")
        self.assertEqual(response.status, 401)
        self.assertNotEqual(nonce_of(response), "")
        self.assertEqual(self.stored(), {})
        self.assertEqual(self.audit_kinds(), ["sip.auth.failure"])
        event = self.store.audit[0]
        self.assertEqual((event.subject, event.source), ("1001", "192.0.2.10"))

    def test_unknown_user_like_wrong_password(self) -> None:
        """An unknown user and a wrong password get alike responses, differing only in nonce, tags and branch."""
        wrong = self.phone.register(password="wrong")
        stranger = Phone(
            self, "1999", password="whatever", call_id="reg-1@192.0.2.10", cseq=100
        )
        unknown = stranger.register()
        self.assertEqual((wrong.status, wrong.reason), (unknown.status, unknown.reason))
        self.assertEqual([n for n, _ in wrong.headers], [n for n, _ in unknown.headers])

        def scrub(response: Response) -> bytes:
            text = response.to_bytes().decode()
            for pattern in (
                r'nonce="[^"]*"',
                r"tag=[\w-]+",
                r"branch=[\w-]+",
                r"Date: .*",
                r"(sip:)1\d\d\d@",
            ):
                text = re.sub(pattern, "", text)
            return text.encode()

        self.assertEqual(scrub(wrong), scrub(unknown))
        self.assertEqual(self.audit_kinds(), ["sip.auth.failure", "sip.auth.failure"])

    def test_disabled_extension(self) -> None:
        """A disabled extension cannot register, even with its password."""
        self.store.extensions["1001"] = attrs.evolve(
            self.store.extensions["1001"], enabled=False
        )
        response = self.phone.register()
        self.assertEqual(response.status, 401)
        self.assertEqual(self.registrar.contacts("1001"), [])
        self.assertEqual(self.stored(), {})
        self.assertEqual(self.audit_kinds(), ["sip.auth.failure"])

    def test_lockout(self) -> None:
        """Three failures lock the user out with 403, audited as failures and a lockout."""
        for _ in range(3):
            self.assertEqual(self.phone.register(password="wrong").status, 401)
        self.assertEqual(
            self.audit_kinds(),
            ["sip.auth.failure", "sip.auth.failure", "sip.auth.failure", "sip.lockout"],
        )
        lock = self.store.audit[-1]
        self.assertEqual(
            (lock.subject, lock.source, lock.detail), ("1001", "192.0.2.10", "30s")
        )
        # Now even the right password, or none, gets 403 without a challenge.
        response = self.phone.send(self.phone.request())
        self.assertEqual(response.status, 403)
        self.assertIsNone(response.headers.get("WWW-Authenticate"))
        self.assertTrue(response.to.tag)
        nonce = self.auth.challenge()[0].split('nonce="')[1].split('"')[0]
        response = self.phone.send(
            self.phone.request(authorization=self.phone.authorization(nonce))
        )
        self.assertEqual(response.status, 403)
        self.assertEqual(self.stored(), {})
        self.assertEqual(len(self.store.audit), 4)

    def test_lockout_logged(self) -> None:
        """The lockout is one warning naming the user, the address and the delay."""
        events: list[dict[str, Any]] = []
        self.patch(Lockout, "log", Logger(observer=events.append))
        for _ in range(3):
            self.phone.register(password="wrong")
        self.phone.send(self.phone.request())  # refused while locked: no second line
        self.assertEqual(
            [(e["log_level"].name, formatEvent(e)) for e in events],
            [
                (
                    "warn",
                    "SIP digest lockout: '1001' from 192.0.2.10 locked out for 30 s"
                    " (too many failures by sip-ip and sip-user)",
                )
            ],
        )

    def test_lockout_ends(self) -> None:
        """The lockout ends after its delay on the clock."""
        for _ in range(3):
            self.phone.register(password="wrong")
        self.clock.advance(29)
        self.assertEqual(self.phone.send(self.phone.request()).status, 403)
        self.clock.advance(1)
        self.assertEqual(self.phone.register().status, 200)
        self.assertEqual(len(self.registrar.contacts("1001")), 1)

    def test_lockout_covers_source(self) -> None:
        """While locked, other users from the same address get 403 too."""
        for _ in range(3):
            self.phone.register(password="wrong")
        other = Phone(self, "1002", password=OTHER_PASSWORD, call_id="reg-9@192.0.2.10")
        self.assertEqual(other.send(other.request()).status, 403)

    def test_lockout_covers_user(self) -> None:
        """While locked, the user gets 403 from any address."""
        for _ in range(3):
            self.phone.register(password="wrong")
        moved = Phone(
            self, source=("198.51.100.50", 5060), call_id="reg-3@198.51.100.50"
        )
        self.assertEqual(moved.send(moved.request()).status, 403)

    def test_failures_counted_for_username(self) -> None:
        """Guesses at one user's password lock that user whatever To names and wherever they come from."""
        for n in range(3):
            attacker = Phone(
                self,
                "1001",
                password="guess",
                aor=f"20{n}0",
                source=(f"203.0.113.{n + 1}", 5060),
                call_id=f"atk-{n}",
            )
            response = attacker.register()
            self.assertEqual(response.status, 401)
        self.assertIn("sip.lockout", self.audit_kinds())
        fresh = Phone(
            self, source=("198.51.100.77", 5060), call_id="reg-4@198.51.100.77"
        )
        self.assertEqual(fresh.send(fresh.request()).status, 403)
        # A correct guess on a locked user learns nothing either.
        spy = Phone(
            self, "1001", aor="2990", source=("203.0.113.99", 5060), call_id="atk-x"
        )
        nonce = spy.challenge()
        response = spy.send(spy.request(authorization=spy.authorization(nonce)))
        self.assertEqual(response.status, 403)
        self.assertEqual(self.registrar.contacts("1001"), [])

    def test_success_clears_failures(self) -> None:
        """A good registration forgets earlier failures."""
        self.phone.register(password="wrong")
        self.phone.register(password="wrong")
        self.assertEqual(self.phone.register().status, 200)
        self.phone.register(password="wrong")
        self.phone.register(password="wrong")
        self.assertEqual(self.phone.register().status, 200)
        self.assertNotIn("sip.lockout", self.audit_kinds())

    def test_stale_nonce(self) -> None:
        """A right answer to an expired nonce gets 401 stale=true, not a failure; the new nonce works."""
        nonce = self.phone.challenge()
        self.clock.advance(301)
        response = self.phone.send(
            self.phone.request(authorization=self.phone.authorization(nonce))
        )
        self.assertEqual(response.status, 401)
        self.assertIn("stale=true", response.headers.get("WWW-Authenticate") or "")
        self.assertEqual(self.store.audit, [])
        fresh = nonce_of(response)
        self.assertNotEqual(fresh, nonce)
        response = self.phone.send(
            self.phone.request(authorization=self.phone.authorization(fresh))
        )
        self.assertEqual(response.status, 200)

    def test_other_user(self) -> None:
        """Authenticated as 1002, registering 1001 gets 403 and binds nothing."""
        response = self.phone.register(username="1002", password=OTHER_PASSWORD)
        self.assertEqual(response.status, 403)
        self.assertEqual(self.registrar.contacts("1001"), [])
        self.assertEqual(self.registrar.contacts("1002"), [])
        self.assertEqual(self.stored(), {})

    def test_other_realm_ignored(self) -> None:
        """Credentials for another realm are ignored: a challenge, not a failure."""
        nonce = self.phone.challenge()
        credentials = self.phone.authorization(nonce).replace(
            f'realm="{REALM}"', 'realm="elsewhere"'
        )
        response = self.phone.send(self.phone.request(authorization=credentials))
        self.assertEqual(response.status, 401)
        self.assertEqual(self.store.audit, [])

    def test_replayed_credentials(self) -> None:
        """The same nonce and nonce-count used twice is refused the second time."""
        nonce = self.phone.challenge()
        credentials = self.phone.authorization(nonce)
        self.assertEqual(
            self.phone.send(self.phone.request(authorization=credentials)).status, 200
        )
        self.assertEqual(
            self.phone.send(self.phone.request(authorization=credentials)).status, 401
        )
        self.assertEqual(self.audit_kinds(), ["sip.auth.failure"])
        # The next nonce-count is fine.
        credentials = self.phone.authorization(nonce, nc=2)
        self.assertEqual(
            self.phone.send(self.phone.request(authorization=credentials)).status, 200
        )


class PersistenceTests(RegistrarTestCase):
    """Expiry sweeps and reloading after a restart."""

    def test_expired_not_listed(self) -> None:
        """An expired binding is not returned by contacts() even before a sweep."""
        self.phone.register(expires=60)
        self.clock.advance(60)
        self.assertEqual(self.registrar.contacts("1001"), [])

    def test_sweep(self) -> None:
        """sweep() drops expired bindings from memory and store and counts them."""
        self.phone.register(expires=60)
        other = Phone(self, "1002", password=OTHER_PASSWORD, call_id="reg-5@192.0.2.10")
        other.register(expires=600)
        self.clock.advance(61)
        dropped = self.successResultOf(Deferred.fromCoroutine(self.registrar.sweep()))
        self.assertEqual(dropped, 1)
        self.assertNotIn("1001", self.registrar.bindings)
        self.assertEqual(list(self.stored()), [("1002", "sip:1001@192.0.2.10:5060")])
        self.assertEqual(len(self.registrar.contacts("1002")), 1)

    def test_periodic_sweep(self) -> None:
        """start() sweeps every SWEEP_INTERVAL on the clock; stop() leaves no timer."""
        self.phone.register(expires=60)
        self.registrar.start()
        self.clock.advance(SWEEP_INTERVAL)
        self.assertEqual(len(self.stored()), 1)
        self.clock.advance(SWEEP_INTERVAL)
        self.assertEqual(self.stored(), {})
        self.assertEqual(self.registrar.bindings, {})
        self.registrar.stop()
        self.clock.advance(64)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_sweep_error_logged(self) -> None:
        """A failing sweep is logged and the periodic sweep carries on."""
        calls: list[float] = []

        def broken(now: float) -> Deferred[int]:
            calls.append(now)
            d: Deferred[int] = Deferred()
            d.errback(ZeroDivisionError("store down"))
            return d

        self.store.expire_bindings = broken  # type: ignore[method-assign]
        self.registrar.start()
        self.clock.advance(SWEEP_INTERVAL)
        self.clock.advance(SWEEP_INTERVAL)
        self.assertEqual(len(calls), 2)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)
        self.registrar.stop()

    def test_load_after_restart(self) -> None:
        """A new registrar on the same store loads the live bindings and drops expired ones."""
        self.phone.register(expires=600)
        other = Phone(self, "1002", password=OTHER_PASSWORD, call_id="reg-6@192.0.2.10")
        other.register(["<sip:1002@192.0.2.20>"], expires=60)
        self.clock.advance(120)
        restarted = self.make_registrar()
        count = self.successResultOf(Deferred.fromCoroutine(restarted.load()))
        self.assertEqual(count, 1)
        self.assertEqual(restarted.contacts("1001"), self.registrar.contacts("1001"))
        self.assertEqual(restarted.contacts("1002"), [])
        self.assertEqual(list(self.stored()), [("1001", "sip:1001@192.0.2.10:5060")])
        # The restarted registrar keeps enforcing CSeq order on the loaded binding.
        self.core.handlers["REGISTER"] = restarted
        self.registrar = restarted
        self.phone.cseq = 10
        self.assertEqual(self.phone.register().status, 500)


class CommitBeforeOKTests(RegistrarTestCase):
    """A REGISTER is answered 200 only once its binding change is committed."""

    def make_registrar(self) -> Registrar:
        """A registrar whose binding writer's transactions commit when the test says so."""
        self.commits: list[Deferred[None]] = []
        self.batches: list[tuple[list[Binding], list[tuple[str, str]]]] = []

        def write_bindings(puts: list[Binding], deletes: list[tuple[str, str]]) -> Deferred[None]:
            d: Deferred[None] = Deferred()
            self.batches.append((puts, deletes))
            self.commits.append(d)
            return d

        self.store.write_bindings = write_bindings  # type: ignore[method-assign]
        authn = RequestAuthenticator(self.store, self.clock, self.auth, self.lockout, self.store.get_extension)
        return Registrar(self.store, self.clock, authn, self.limits, writer=BindingWriter(self.store, self.clock))

    def send_authenticated(self, phone: Phone, **kwargs: Any) -> None:
        """Challenge ``phone`` and send its authenticated REGISTER, whose answer waits."""
        nonce = phone.challenge(**kwargs)
        self.port.written.clear()
        data = phone.request(authorization=phone.authorization(nonce), **kwargs)
        self.core.receive(data, Peer("udp", *phone.source), False)

    def answers(self) -> list[int]:
        """Statuses of the responses written so far, then forgotten."""
        written, self.port.written[:] = list(self.port.written), []
        return [response.status for response in (parse_message(raw) for raw, _ in written)
                if isinstance(response, Response)]

    def test_no_200_before_commit(self) -> None:
        """The 200 is not sent while the binding's transaction is open, and is sent when it commits."""
        self.send_authenticated(self.phone)
        self.clock.advance(BATCH_DELAY)
        self.assertEqual((len(self.batches), self.answers()), (1, []))
        self.commits[0].callback(None)
        self.assertEqual(self.answers(), [200])

    def test_registers_together_share_a_commit(self) -> None:
        """Two phones' REGISTERs arriving together go in one transaction and both get 200 at its commit."""
        other = Phone(self, "1002", password=OTHER_PASSWORD, call_id="reg-9@192.0.2.10",
                      source=("192.0.2.11", 5060))
        nonces = [p.challenge() for p in (self.phone, other)]
        self.answers()
        for phone, nonce in zip((self.phone, other), nonces, strict=True):
            data = phone.request(authorization=phone.authorization(nonce))
            self.core.receive(data, Peer("udp", *phone.source), False)
        self.clock.advance(BATCH_DELAY)
        self.assertEqual(len(self.batches), 1)
        self.assertEqual(sorted(b.aor for b in self.batches[0][0]), ["1001", "1002"])
        self.assertEqual(self.answers(), [])
        self.commits[0].callback(None)
        self.assertEqual(self.answers(), [200, 200])

    def test_unregister_waits_for_commit(self) -> None:
        """An Expires: 0 REGISTER is answered only once the delete is committed."""
        self.send_authenticated(self.phone)
        self.clock.advance(BATCH_DELAY)
        self.commits[0].callback(None)
        self.answers()
        self.send_authenticated(self.phone, expires=0)
        self.clock.advance(BATCH_DELAY)
        self.assertEqual(self.batches[1], ([], [("1001", "sip:1001@192.0.2.10:5060")]))
        self.assertEqual(self.answers(), [])
        self.commits[1].callback(None)
        self.assertEqual(self.answers(), [200])

    def test_failed_commit_is_503(self) -> None:
        """A binding that cannot be committed is refused 503 with Retry-After, not acknowledged."""
        self.send_authenticated(self.phone)
        self.clock.advance(BATCH_DELAY)
        self.commits[0].errback(OSError("disk full"))
        written = [parse_message(raw) for raw, _ in self.port.written]
        self.port.written.clear()
        self.assertEqual([(r.status, r.headers.get("Retry-After")) for r in written  # type: ignore[union-attr]
                          ], [(503, str(RETRY_AFTER))])
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        # The change is tried again, and then committed.
        self.clock.advance(self.registrar.writer.retry_delay)  # type: ignore[union-attr]
        self.commits[1].callback(None)
        self.assertEqual(self.registrar.writer.pending, 0)  # type: ignore[union-attr]


OUTBOUND_CONTACT = (
    '<sip:1001@192.0.2.10:5060;transport=tcp>;reg-id=1;+sip.instance="<urn:uuid:00000000-0000-0000-0000-000000000001>"'
)


class OutboundTests(RegistrarTestCase):
    """RFC 5626: a REGISTER over a connection with reg-id and +sip.instance asks for outbound."""

    def setUp(self) -> None:
        """Open the phone's TCP connection to pbx."""
        super().setUp()
        address = IPv4Address("TCP", "192.0.2.10", 40010)
        self.connection = SIPStreamFactory(self.core.transports, "tcp").buildProtocol(address)
        self.wire = StringTransport(peerAddress=address)
        self.connection.makeConnection(self.wire)

    def tearDown(self) -> None:
        """Close the connection, then the usual checks."""
        self.connection.connectionLost(None)  # type: ignore[arg-type]
        super().tearDown()

    def send(self, data: bytes, source: tuple[str, int] = PHONE_ADDRESS) -> Response:
        """Send on the connection; return the one response that came back on it."""
        self.connection.dataReceived(data)
        response = parse_message(self.wire.value(), stream=True)
        self.wire.clear()
        assert isinstance(response, Response)
        return response

    def test_outbound(self) -> None:
        """reg-id and +sip.instance make the binding outbound; a refresh without them does not."""
        self.assertEqual(self.phone.register([OUTBOUND_CONTACT]).status, 200)
        [binding] = self.registrar.contacts("1001")
        self.assertEqual((binding.transport, binding.source), ("tcp", "192.0.2.10:40010"))
        self.assertTrue(self.registrar.outbound(binding))
        self.assertEqual(self.phone.register(["<sip:1001@192.0.2.10:5060;transport=tcp>"]).status, 200)
        self.assertFalse(self.registrar.outbound(binding))

    def test_plain_contact(self) -> None:
        """A Contact without them is not outbound, unless its URI has ob."""
        self.phone.register(["<sip:1001@192.0.2.10:5060;transport=tcp>"])
        [binding] = self.registrar.contacts("1001")
        self.assertFalse(self.registrar.outbound(binding))
        self.phone.register(["<sip:1001@192.0.2.10:5060;transport=tcp;ob>"], expires=0)
        self.phone.register(["<sip:1001@192.0.2.10:5061;transport=tcp;ob>"])
        self.assertEqual(
            [self.registrar.outbound(b) for b in self.registrar.contacts("1001")], [False, True]
        )

    def test_sweep_forgets(self) -> None:
        """An expired outbound binding is forgotten by the sweep."""
        self.phone.register([OUTBOUND_CONTACT], expires=60)
        [binding] = self.registrar.contacts("1001")
        self.registrar.start()
        self.clock.advance(SWEEP_INTERVAL * 3)
        self.assertEqual(self.registrar.contacts("1001"), [])
        self.assertFalse(self.registrar.outbound(binding))


class ThreatScoreTests(RegistrarTestCase):
    """Failed authentication counts against the source's threat score."""

    def make_registrar(self) -> Registrar:
        """A registrar whose authenticator reports to a source defence."""
        self.defence = SourceDefence(self.clock)
        authn = RequestAuthenticator(
            self.store, self.clock, self.auth, self.lockout, self.store.get_extension, self.defence
        )
        return Registrar(self.store, self.clock, authn, self.limits)

    def test_scores(self) -> None:
        """A wrong password scores 10, an unknown user 20, a try while locked out 10."""
        self.phone.register(password="wrong")
        self.assertEqual(self.defence.scores(), [("192.0.2.10", 10.0)])
        Phone(self, "1999", password="x", call_id="reg-2@192.0.2.10", cseq=50).register()
        self.assertEqual(self.defence.scores(), [("192.0.2.10", 30.0)])
        self.phone.register(password="wrong")  # the third failure locks the address out
        self.assertEqual(self.phone.send(self.phone.request()).status, 403)
        self.assertEqual(self.defence.scores(), [("192.0.2.10", 50.0)])

    def test_challenge_is_stateless(self) -> None:
        """The 401 to a REGISTER without credentials leaves no transaction behind, its bytes only for T4."""
        self.assertEqual(self.phone.send(self.phone.request()).status, 401)
        self.assertEqual(self.core.transactions.counts, (1, 0))
        self.clock.advance(STATELESS_MEMORY)
        self.assertEqual(self.core.transactions.counts, (0, 0))


class SecurityLogTests(RegistrarTestCase):
    """Failed authentication is written to the security log (for fail2ban)."""

    def make_registrar(self) -> Registrar:
        """A registrar whose authenticator writes to a recording security log."""
        self.security_log = RecordingSecurityLog()
        authn = RequestAuthenticator(
            self.store, self.clock, self.auth, self.lockout, self.store.get_extension,
            security_log=self.security_log,
        )
        return Registrar(self.store, self.clock, authn, self.limits)

    def test_failures_written(self) -> None:
        """A wrong password and an unknown user are each one entry, with the source's transport and port."""
        self.phone.register(password="wrong")
        Phone(self, "1999", password="x", call_id="reg-2@192.0.2.10", cseq=50).register()
        source = Remote("udp", *PHONE_ADDRESS)
        self.assertEqual(self.security_log.failures, [
            ("SIP", "1001", source, True, "REGISTER"),
            ("SIP", "1999", source, False, "REGISTER"),
        ])

    def test_success_and_challenge_not_written(self) -> None:
        """A request without credentials (the challenge) and a good login write nothing."""
        self.assertEqual(self.phone.send(self.phone.request()).status, 401)
        self.assertEqual(self.phone.register().status, 200)
        self.assertEqual(self.security_log.failures, [])
