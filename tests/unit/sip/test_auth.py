"""Tests for :mod:`pbx.sip.auth`."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import attrs

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.sip.auth import (
    Credentials,
    DigestAuthenticator,
    DigestError,
    Verdict,
    compute_ha1,
    compute_response,
    parse_credentials,
)

# RFC 7616 §3.9.1.
RFC_USER = "Mufasa"
RFC_PASSWORD = "Circle of Life"
RFC_REALM = "http-auth@example.org"
RFC_URI = "/dir/index.html"
RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC_SHA256 = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
RFC_MD5 = "8ca523f5e9506fed4657c9700eebdbec"

REALM = "pbx.example.com"
SECRET = b"0123456789abcdef0123456789abcdef"
URI = "sip:pbx.example.com"
PASSWORDS = {"1001": "Blue-Tr4in-Station"}


def ha1_for(username: str, algorithm: str) -> str | None:
    """Look up the HA1 of a user in :data:`PASSWORDS`, as a store would."""
    password = PASSWORDS.get(username)
    if password is None:
        return None
    return compute_ha1(username, REALM, password, algorithm)


def challenge_params(value: str) -> dict[str, str]:
    """Read a challenge header value back with the credentials parser's grammar."""
    scheme, _, rest = value.partition(" ")
    assert scheme == "Digest"
    # The challenge lacks response directives: borrow the parser by adding them.
    parsed = parse_credentials(f'Digest username="u", uri="u", response="r", {rest}')
    return {
        "realm": parsed.realm,
        "nonce": parsed.nonce,
        "algorithm": parsed.algorithm,
        "qop": parsed.qop or "",
        "opaque": parsed.opaque or "",
    }


def answer(
    challenge: str,
    *,
    username: str = "1001",
    password: str = "Blue-Tr4in-Station",
    nc: str = "00000001",
    realm: str | None = None,
    method: str = "REGISTER",
) -> Credentials:
    """Answer a challenge the way a phone would, and parse the result."""
    params = challenge_params(challenge)
    realm = params["realm"] if realm is None else realm
    algorithm = params["algorithm"]
    ha1 = compute_ha1(username, realm, password, algorithm)
    cnonce = "0a4f113b"
    response = compute_response(
        ha1,
        nonce=params["nonce"],
        method=method,
        uri=URI,
        algorithm=algorithm,
        qop="auth",
        nc=nc,
        cnonce=cnonce,
    )
    return parse_credentials(
        f'Digest username="{username}", realm="{realm}", nonce="{params["nonce"]}", '
        f'uri="{URI}", response="{response}", algorithm={algorithm}, '
        f'cnonce="{cnonce}", qop=auth, nc={nc}'
    )


class ComputeTests(SynchronousTestCase):
    """The digest arithmetic against RFC 7616 §3.9.1."""

    def test_rfc7616_sha256(self) -> None:
        """The SHA-256 example response of RFC 7616 §3.9.1 is reproduced."""
        ha1 = compute_ha1(RFC_USER, RFC_REALM, RFC_PASSWORD, "SHA-256")
        response = compute_response(
            ha1,
            nonce=RFC_NONCE,
            method="GET",
            uri=RFC_URI,
            algorithm="SHA-256",
            qop="auth",
            nc="00000001",
            cnonce=RFC_CNONCE,
        )
        self.assertEqual(response, RFC_SHA256)

    def test_rfc7616_md5(self) -> None:
        """The MD5 example response of RFC 7616 §3.9.1 is reproduced."""
        ha1 = compute_ha1(RFC_USER, RFC_REALM, RFC_PASSWORD, "MD5")
        response = compute_response(
            ha1,
            nonce=RFC_NONCE,
            method="GET",
            uri=RFC_URI,
            algorithm="MD5",
            qop="auth",
            nc="00000001",
            cnonce=RFC_CNONCE,
        )
        self.assertEqual(response, RFC_MD5)

    def test_ha1_known_value(self) -> None:
        """HA1 is the hex hash of user:realm:password, algorithm names in any case."""
        expected = hashlib.md5(
            b"Mufasa:http-auth@example.org:Circle of Life"
        ).hexdigest()
        self.assertEqual(
            compute_ha1(RFC_USER, RFC_REALM, RFC_PASSWORD, "md5"), expected
        )
        self.assertEqual(len(compute_ha1("a", "b", "c", "SHA-256")), 64)

    def test_unsupported_algorithm(self) -> None:
        """An algorithm other than MD5 or SHA-256 raises DigestError."""
        self.assertRaises(DigestError, compute_ha1, "a", "b", "c", "SHA-512-256")
        self.assertRaises(DigestError, compute_ha1, "a", "b", "c", "MD5-sess")


class ParseCredentialsTests(SynchronousTestCase):
    """:func:`parse_credentials` on well-formed and malformed header values."""

    def test_rfc_example(self) -> None:
        """The RFC 7616 §3.9.1 Authorization header parses into its fields."""
        c = parse_credentials(
            'Digest username="Mufasa",\r\n realm="http-auth@example.org",\r\n'
            ' uri="/dir/index.html",\r\n algorithm=SHA-256,\r\n'
            f' nonce="{RFC_NONCE}",\r\n nc=00000001,\r\n cnonce="{RFC_CNONCE}",\r\n'
            f' qop=auth,\r\n response="{RFC_SHA256}",\r\n'
            ' opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
        )
        self.assertEqual(
            c,
            Credentials(
                username=RFC_USER,
                realm=RFC_REALM,
                nonce=RFC_NONCE,
                uri=RFC_URI,
                response=RFC_SHA256,
                algorithm="SHA-256",
                cnonce=RFC_CNONCE,
                opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
                qop="auth",
                nc="00000001",
            ),
        )

    def test_response_not_in_repr(self) -> None:
        """The digest response does not appear in the credentials' repr."""
        c = parse_credentials(
            'Digest username="a", realm="r", nonce="n", uri="u", response="feedface"'
        )
        self.assertNotIn("feedface", repr(c))

    def test_tricky(self) -> None:
        """Escapes, commas and spaces in quoted values, odd spacing and case all parse."""
        c = parse_credentials(
            'dIgEsT   USERNAME = "a\\"b\\\\c" ,Realm=\t"x, y = z" , NONCE=abc.def ,'
            'uri = "sip:1001@pbx;transport=udp"  ,response="ABCDEF",algorithm=sha-256,'
            'unknown="ignored, really", Qop="auth",nc=0000000a, cnonce="\\q"  '
        )
        self.assertEqual(c.username, 'a"b\\c')
        self.assertEqual(c.realm, "x, y = z")
        self.assertEqual(c.nonce, "abc.def")
        self.assertEqual(c.uri, "sip:1001@pbx;transport=udp")
        self.assertEqual(c.response, "ABCDEF")
        self.assertEqual(c.algorithm, "SHA-256")
        self.assertEqual((c.qop, c.nc, c.cnonce), ("auth", "0000000a", "q"))

    def test_defaults(self) -> None:
        """Without algorithm, MD5 is assumed and the qop fields are None."""
        c = parse_credentials(
            'Digest username="a", realm="r", nonce="n", uri="u", response="0"'
        )
        self.assertEqual(
            (c.algorithm, c.qop, c.nc, c.cnonce, c.opaque),
            ("MD5", None, None, None, None),
        )

    def test_username_star(self) -> None:
        """An RFC 8187 username* is decoded from percent-encoded UTF-8."""
        c = parse_credentials(
            'Digest username*=UTF-8\'\'J%C3%A4s%C3%B8n%20Doe, realm="r", nonce="n", '
            'uri="u", response="0", userhash=false'
        )
        self.assertEqual(c.username, "J\u00e4s\u00f8n Doe")

    def test_non_ascii_quoted(self) -> None:
        """UTF-8 text inside a quoted string is kept."""
        c = parse_credentials(
            'Digest username="\u00e9l\u00e8ve", realm="r", nonce="n", uri="u", response="0"'
        )
        self.assertEqual(c.username, "\u00e9l\u00e8ve")

    def test_malformed(self) -> None:
        """Malformed values and other schemes raise DigestError."""
        base = 'username="a", realm="r", nonce="n", uri="u", response="0"'
        for value in [
            "",
            "Digest",
            "Digest ",
            f"Basic {base}",
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
            f"Digest{base}",
            f"Digest {base},",
            f"Digest , {base}",
            f"Digest {base},, qop=auth",
            f'Digest {base}, cnonce="unterminated',
            f'Digest {base}, cnonce="bad"quote"',
            f"Digest {base}, cnonce=has space",
            f"Digest {base}, cnonce=",
            f"Digest {base}, =value",
            f"Digest {base} qop=auth",
            f'Digest {base}, cnonce="a\x00b"',
            f'Digest {base}, cnonce="line\nbreak"',
            f'Digest {base}, realm="again"',
            f'Digest {base}, REALM="again"',
            'Digest realm="r", nonce="n", uri="u", response="0"',
            'Digest username="a", realm="r", nonce="n", uri="u"',
            f"Digest {base}, username*=UTF-8''x",
            "Digest username*=latin-1''x, realm=r, nonce=n, uri=u, response=0",
            "Digest username*=UTF-8''%FF, realm=r, nonce=n, uri=u, response=0",
            f"Digest {base}, userhash=maybe",
            "Digest " + base + ", x=" + "y" * 9000,
        ]:
            with self.subTest(value=value):
                self.assertRaises(DigestError, parse_credentials, value)

    def test_digest_error_is_value_error(self) -> None:
        """DigestError is a ValueError, so generic handlers catch it."""
        self.assertTrue(issubclass(DigestError, ValueError))


class ChallengeTests(SynchronousTestCase):
    """Challenges from :meth:`DigestAuthenticator.challenge`."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.auth = DigestAuthenticator(realm=REALM, clock=self.clock, secret=SECRET)

    def test_sha256_first(self) -> None:
        """One challenge per algorithm, SHA-256 before MD5 (RFC 8760 §2.4), with qop auth."""
        values = self.auth.challenge()
        self.assertEqual(len(values), 2)
        self.assertEqual(
            [challenge_params(v)["algorithm"] for v in values], ["SHA-256", "MD5"]
        )
        for value in values:
            self.assertTrue(value.startswith("Digest "))
            self.assertIn(f'realm="{REALM}"', value)
            self.assertIn('qop="auth"', value)
            self.assertNotIn("stale", value)

    def test_stale(self) -> None:
        """A stale challenge says stale=true in every value."""
        for value in self.auth.challenge(stale=True):
            self.assertIn("stale=true", value)

    def test_fresh_nonces(self) -> None:
        """Each challenge carries a new nonce."""
        first = challenge_params(self.auth.challenge()[0])["nonce"]
        second = challenge_params(self.auth.challenge()[0])["nonce"]
        self.assertNotEqual(first, second)

    def test_opaque_and_escaping(self) -> None:
        """A configured opaque is sent, and a realm with quotes is escaped."""
        auth = DigestAuthenticator(
            realm='a "quoted" realm',
            clock=self.clock,
            secret=SECRET,
            opaque="xyz",
            algorithms=("MD5",),
        )
        (value,) = auth.challenge()
        params = challenge_params(value)
        self.assertEqual(
            (params["realm"], params["opaque"]), ('a "quoted" realm', "xyz")
        )

    def test_bad_configuration(self) -> None:
        """A short secret, an unknown algorithm or no algorithm is refused."""
        self.assertRaises(
            ValueError,
            DigestAuthenticator,
            realm=REALM,
            clock=self.clock,
            secret=b"short",
        )
        self.assertRaises(
            ValueError,
            DigestAuthenticator,
            realm=REALM,
            clock=self.clock,
            secret=SECRET,
            algorithms=("SHA-1",),
        )
        self.assertRaises(
            ValueError,
            DigestAuthenticator,
            realm=REALM,
            clock=self.clock,
            secret=SECRET,
            algorithms=(),
        )


class VerifyTests(SynchronousTestCase):
    """Checking answers with :meth:`DigestAuthenticator.verify`."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.auth = DigestAuthenticator(realm=REALM, clock=self.clock, secret=SECRET)
        self.sha256, self.md5 = self.auth.challenge()

    def verify(self, credentials: Credentials, **kwargs: object) -> Verdict:
        """Verify a REGISTER with the module's user table."""
        return self.auth.verify(credentials, "REGISTER", ha1_for, **kwargs)  # type: ignore[arg-type]

    def test_ok_sha256(self) -> None:
        """A correct SHA-256 answer is accepted."""
        self.assertIs(self.verify(answer(self.sha256)), Verdict.OK)

    def test_ok_md5(self) -> None:
        """A correct MD5 answer is accepted."""
        self.assertIs(self.verify(answer(self.md5)), Verdict.OK)

    def test_wrong_password(self) -> None:
        """An answer made with the wrong password fails."""
        self.assertIs(
            self.verify(answer(self.sha256, password="guess")), Verdict.FAILED
        )

    def test_unknown_user(self) -> None:
        """An unknown user gets the very same verdict as a wrong password, after one lookup."""
        looked_up: list[tuple[str, str]] = []

        def recording(username: str, algorithm: str) -> str | None:
            looked_up.append((username, algorithm))
            return ha1_for(username, algorithm)

        unknown = self.auth.verify(
            answer(self.md5, username="9999"), "REGISTER", recording
        )
        wrong = self.auth.verify(
            answer(self.md5, password="guess"), "REGISTER", recording
        )
        self.assertIs(unknown, wrong)
        self.assertIs(unknown, Verdict.FAILED)
        self.assertEqual(looked_up, [("9999", "MD5"), ("1001", "MD5")])

    def test_empty_stored_ha1(self) -> None:
        """A user whose stored HA1 is empty cannot log in, even with an empty response."""
        creds = answer(self.sha256)
        verdict = self.auth.verify(creds, "REGISTER", lambda u, a: "")
        self.assertIs(verdict, Verdict.FAILED)

    def test_wrong_method(self) -> None:
        """An answer computed for another method fails."""
        self.assertIs(
            self.auth.verify(answer(self.sha256), "INVITE", ha1_for), Verdict.FAILED
        )

    def test_uri_must_match(self) -> None:
        """When the Request-URI is given, the signed digest-uri must equal it."""
        self.assertIs(
            self.verify(answer(self.sha256), uri="sip:other.example.com"),
            Verdict.FAILED,
        )
        self.assertIs(self.verify(answer(self.sha256), uri=URI), Verdict.OK)

    def test_expired_nonce_stale(self) -> None:
        """A correct answer to an expired nonce is STALE, and a re-challenge says so."""
        self.clock.advance(301)
        self.assertIs(self.verify(answer(self.sha256)), Verdict.STALE)
        self.assertIn("stale=true", self.auth.challenge(stale=True)[0])

    def test_expired_nonce_wrong_password(self) -> None:
        """A wrong answer to an expired nonce fails rather than turning stale."""
        self.clock.advance(301)
        self.assertIs(
            self.verify(answer(self.sha256, password="guess")), Verdict.FAILED
        )

    def test_nonce_within_lifetime(self) -> None:
        """A nonce is still good just before its lifetime ends."""
        self.clock.advance(299)
        self.assertIs(self.verify(answer(self.sha256)), Verdict.OK)

    def test_tampered_nonce(self) -> None:
        """A nonce with any byte changed fails even with a correct response for it."""
        nonce = challenge_params(self.sha256)["nonce"]
        raw = bytearray(base64.urlsafe_b64decode(nonce + "="))
        for index in (0, 7, 8, 16, 31):
            changed = bytearray(raw)
            changed[index] ^= 1
            forged = base64.urlsafe_b64encode(bytes(changed)).rstrip(b"=").decode()
            value = self.sha256.replace(nonce, forged)
            self.assertIs(self.verify(answer(value)), Verdict.FAILED, index)

    def test_foreign_nonces(self) -> None:
        """Nonces from another secret, another realm or of the wrong shape fail."""
        other_secret = DigestAuthenticator(
            realm=REALM, clock=self.clock, secret=b"x" * 32
        )
        other_realm = DigestAuthenticator(
            realm="other", clock=self.clock, secret=SECRET
        )
        foreign = [
            challenge_params(other_secret.challenge()[0])["nonce"],
            other_realm.make_nonce(),
            "short",
            "A" * 44,
            RFC_NONCE,
        ]
        nonce = challenge_params(self.sha256)["nonce"]
        for bad in foreign:
            self.assertIs(
                self.verify(answer(self.sha256.replace(nonce, bad))),
                Verdict.FAILED,
                bad,
            )

    def test_non_canonical_nonce(self) -> None:
        """Another base64 spelling of a valid nonce fails, so it cannot reset the counter."""
        nonce = challenge_params(self.sha256)["nonce"]
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        last = alphabet.index(nonce[-1])
        twin = nonce[:-1] + alphabet[last ^ 1]  # differs only in unused low bits
        self.assertEqual(
            base64.urlsafe_b64decode(twin + "="), base64.urlsafe_b64decode(nonce + "=")
        )
        self.assertIs(
            self.verify(answer(self.sha256.replace(nonce, twin))), Verdict.FAILED
        )

    def test_replay(self) -> None:
        """Re-sending an accepted nonce-count fails; a higher one succeeds."""
        self.assertIs(self.verify(answer(self.sha256, nc="00000001")), Verdict.OK)
        self.assertIs(self.verify(answer(self.sha256, nc="00000001")), Verdict.FAILED)
        self.assertIs(self.verify(answer(self.sha256, nc="00000002")), Verdict.OK)
        self.assertIs(self.verify(answer(self.sha256, nc="0000000a")), Verdict.OK)
        self.assertIs(self.verify(answer(self.sha256, nc="00000005")), Verdict.FAILED)

    def test_failed_attempt_does_not_burn_counter(self) -> None:
        """A wrong answer does not advance the nonce-count, so the real phone still gets in."""
        self.assertIs(
            self.verify(answer(self.sha256, nc="00000009", password="x")),
            Verdict.FAILED,
        )
        self.assertIs(self.verify(answer(self.sha256, nc="00000001")), Verdict.OK)

    def test_zero_and_malformed_nc(self) -> None:
        """A nonce-count of zero or not eight hex digits fails."""
        for nc in ("00000000", "1", "0000000g", "+0000001"):
            self.assertIs(self.verify(answer(self.sha256, nc=nc)), Verdict.FAILED, nc)

    def test_wrong_realm(self) -> None:
        """An answer for another realm fails."""
        self.assertIs(
            self.verify(answer(self.sha256, realm="elsewhere")), Verdict.FAILED
        )

    def test_unsupported_algorithm(self) -> None:
        """An algorithm not offered fails, even if the rest is right."""
        md5_only = DigestAuthenticator(
            realm=REALM, clock=self.clock, secret=SECRET, algorithms=("MD5",)
        )
        self.assertIs(
            md5_only.verify(answer(self.sha256), "REGISTER", ha1_for), Verdict.FAILED
        )
        creds = answer(self.sha256)
        for algorithm in ("SHA-512-256", "MD5-SESS"):
            changed = Credentials(**{**_fields(creds), "algorithm": algorithm})
            self.assertIs(self.verify(changed), Verdict.FAILED, algorithm)

    def test_missing_qop_fields(self) -> None:
        """Without qop, or with qop but no nc or cnonce, the answer fails."""
        creds = answer(self.sha256)
        for change in (
            {"qop": None, "nc": None, "cnonce": None},
            {"nc": None},
            {"cnonce": None},
            {"qop": "auth-int"},
        ):
            changed = Credentials(**{**_fields(creds), **change})
            self.assertIs(self.verify(changed), Verdict.FAILED, change)

    def test_rfc2069_when_allowed(self) -> None:
        """An RFC 2069 answer without qop is accepted only with allow_no_qop."""
        nonce = challenge_params(self.md5)["nonce"]
        ha1 = compute_ha1("1001", REALM, PASSWORDS["1001"], "MD5")
        response = compute_response(
            ha1, nonce=nonce, method="REGISTER", uri=URI, algorithm="MD5", qop=None
        )
        creds = Credentials("1001", REALM, nonce, URI, response, "MD5")
        self.assertIs(self.verify(creds), Verdict.FAILED)
        lenient = DigestAuthenticator(
            realm=REALM, clock=self.clock, secret=SECRET, allow_no_qop=True
        )
        self.assertIs(lenient.verify(creds, "REGISTER", ha1_for), Verdict.OK)

    def test_response_case_and_garbage(self) -> None:
        """An upper-case hex response is accepted; a non-ASCII one fails without raising."""
        creds = answer(self.sha256)
        upper = Credentials(**{**_fields(creds), "response": creds.response.upper()})
        self.assertIs(self.verify(upper), Verdict.OK)
        garbage = Credentials(
            **{**_fields(creds), "response": "\u00e9" * 64, "nc": "00000002"}
        )
        self.assertIs(self.verify(garbage), Verdict.FAILED)

    def test_opaque_required(self) -> None:
        """With an opaque configured, an answer that drops it fails."""
        auth = DigestAuthenticator(
            realm=REALM, clock=self.clock, secret=SECRET, opaque="op"
        )
        challenge = auth.challenge()[0]
        creds = answer(challenge)
        self.assertIs(auth.verify(creds, "REGISTER", ha1_for), Verdict.FAILED)
        with_opaque = Credentials(**{**_fields(creds), "opaque": "op"})
        self.assertIs(auth.verify(with_opaque, "REGISTER", ha1_for), Verdict.OK)


def _fields(c: Credentials) -> dict[str, Any]:
    """The credentials' fields as keyword arguments."""
    return attrs.asdict(c, recurse=False)


class ReplayMemoryTests(SynchronousTestCase):
    """The nonce-count map stays bounded without weakening replay protection."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.auth = DigestAuthenticator(
            realm=REALM, clock=self.clock, secret=SECRET, max_nc_tracked=50
        )

    def test_bounded(self) -> None:
        """Many distinct nonces used at once keep the map at its cap."""
        for _ in range(500):
            self.clock.advance(0.01)
            challenge = self.auth.challenge()[0]
            self.assertIs(
                self.auth.verify(answer(challenge), "REGISTER", ha1_for), Verdict.OK
            )
        self.assertLessEqual(self.auth.tracked_nonces, 50)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_evicted_nonce_goes_stale(self) -> None:
        """A nonce whose counter was evicted is re-challenged, never replayable."""
        first = self.auth.challenge()[0]
        self.assertIs(self.auth.verify(answer(first), "REGISTER", ha1_for), Verdict.OK)
        for _ in range(60):
            self.clock.advance(0.01)
            challenge = self.auth.challenge()[0]
            self.auth.verify(answer(challenge), "REGISTER", ha1_for)
        self.assertIs(
            self.auth.verify(answer(first), "REGISTER", ha1_for), Verdict.STALE
        )

    def test_expired_forgotten(self) -> None:
        """Counters of expired nonces are dropped once a lifetime has passed."""
        for _ in range(20):
            challenge = self.auth.challenge()[0]
            self.auth.verify(answer(challenge), "REGISTER", ha1_for)
        self.assertEqual(self.auth.tracked_nonces, 20)
        self.clock.advance(301)
        challenge = self.auth.challenge()[0]
        self.assertIs(
            self.auth.verify(answer(challenge), "REGISTER", ha1_for), Verdict.OK
        )
        self.assertEqual(self.auth.tracked_nonces, 1)
