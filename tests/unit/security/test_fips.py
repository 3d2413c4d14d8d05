"""Tests for FIPS mode (:mod:`pbx.security.fips`) and what it does to the configuration."""

from __future__ import annotations

import os
import textwrap

from OpenSSL import SSL, crypto

from twisted.trial.unittest import SynchronousTestCase

from pbx import tap
from pbx.config import parse_config
from pbx.errors import ConfigError
from pbx.security import fips
from pbx.security.fips import (
    TLS13_SUITES,
    FipsState,
    answers_sha256,
    library_state,
    refusal,
    restrict_context,
    unusable,
)
from pbx.sip.auth import DigestError
from pbx.sip.digest_client import answer_challenge

ON = FipsState(True, "OpenSSL 3.0.9 FIPS", True, "OpenSSL 3.0.9 FIPS")
OFF = FipsState(False, "OpenSSL 4.0.3", False, "OpenSSL 3.0.19")
TRUNK = """
trunks:
  carrier: {uri: "sip:sip.carrier.test;transport=tls", username: acme, password: s3cret-Carrier}
"""


def fips_config(extra: str = "") -> str:
    return textwrap.dedent("""
        sip: {domain: pbx.test}
        security: {fips: true}
    """) + extra


class RefusalTests(SynchronousTestCase):
    """pbx starts in FIPS mode only where both crypto libraries are in FIPS mode."""

    def test_off_never_refuses(self) -> None:
        """security.fips false: the libraries are not even asked."""
        self.assertIsNone(refusal(False, lambda: self.fail("asked")))

    def test_both_in_fips_mode(self) -> None:
        """Both libraries in FIPS mode: pbx may start."""
        self.assertIsNone(refusal(True, lambda: ON))

    def test_names_each_library_not_in_fips_mode(self) -> None:
        """The refusal names the library (and its version) that is not in FIPS mode."""
        self.assertIn("cryptography's OpenSSL 4.0.3 and hashlib's OpenSSL 3.0.19 are not", refusal(True, lambda: OFF))
        only_hashlib = FipsState(True, "OpenSSL 3.0.9 FIPS", False, "OpenSSL 3.0.19")
        problem = refusal(True, lambda: only_hashlib)
        self.assertIn("hashlib's OpenSSL 3.0.19 is not in FIPS mode", problem)
        self.assertNotIn("cryptography", problem)

    def test_library_without_a_provider_that_answers(self) -> None:
        """
        A library whose SHA-256 fails (in FIPS mode, with no FIPS provider
        started in it) is named, in one line, whatever the config says.
        """
        hollow = FipsState(True, "OpenSSL 4.0.3", True, "OpenSSL 3.0.19", crypto_sha256=False)
        self.assertFalse(hollow.enabled)
        problem = unusable(hollow)
        assert problem is not None
        self.assertTrue(problem.startswith("cryptography's OpenSSL 4.0.3 (in FIPS mode) cannot compute SHA-256"), problem)
        self.assertNotIn("hashlib", problem)
        self.assertEqual(len(problem.splitlines()), 1)
        both = FipsState(True, "OpenSSL 4.0.3", False, "OpenSSL 3.0.19", crypto_sha256=False, hashlib_sha256=False)
        self.assertIn("(in FIPS mode) and hashlib's OpenSSL 3.0.19 cannot", unusable(both))
        self.assertIsNone(unusable(ON))
        self.assertIsNone(unusable(OFF))

    def test_load_stops_before_the_config_where_sha256_fails(self) -> None:
        """
        twistd pbx stops with that one line before it reads the config (whose
        building makes a TLS context, which would fail with a traceback).
        """
        self.patch(fips, "library_state", lambda: FipsState(True, "OpenSSL 4.0.3", True, "OpenSSL 3.0.19", crypto_sha256=False))
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("sip: {domain: pbx.test}\n")  # FIPS mode not even asked for
        error = self.assertRaises(SystemExit, tap.load, {"config": path})
        self.assertTrue(str(error.code).startswith("pbx: cryptography's OpenSSL 4.0.3 (in FIPS mode) cannot compute SHA-256"), error.code)
        self.assertEqual(len(str(error.code).splitlines()), 1)

    def test_answers_sha256(self) -> None:
        """The known answer (FIPS 180-4 B.1) is checked; a library that refuses answers no."""
        import hashlib

        from cryptography.exceptions import InternalError, UnsupportedAlgorithm

        self.assertTrue(answers_sha256(lambda data: hashlib.sha256(data).digest()))
        self.assertFalse(answers_sha256(lambda data: hashlib.sha224(data).digest()))

        for error in (ValueError("unsupported"), InternalError("no provider", []), UnsupportedAlgorithm("no")):

            def refuses(data: bytes, error: Exception = error) -> bytes:
                raise error

            self.assertFalse(answers_sha256(refuses), error)

    def test_library_state_is_read_here(self) -> None:
        """The state comes from the libraries of this process, each asked for a SHA-256."""
        state = library_state()
        self.assertTrue(state.crypto_version.startswith("OpenSSL"))
        self.assertTrue(state.hashlib_version.startswith("OpenSSL"))
        # Not in FIPS mode here: the default providers answer.
        self.assertTrue(state.crypto_sha256)
        self.assertTrue(state.hashlib_sha256)
        self.assertEqual(state.enabled, state.crypto and state.hashlib)
        self.assertEqual(state.summary()["hashlib"], {"fips": state.hashlib, "openssl": state.hashlib_version, "sha256": True})

    def test_load_refuses_with_one_line(self) -> None:
        """twistd pbx (and --check-config) stops with one line naming security.fips when the libraries are not in FIPS mode."""
        self.patch(fips, "library_state", lambda: OFF)
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(fips_config())
        error = self.assertRaises(SystemExit, tap.load, {"config": path})
        self.assertTrue(str(error.code).startswith(f"pbx: {path}: security.fips: is true, but "), error.code)
        self.assertEqual(len(str(error.code).splitlines()), 1)

    def test_load_starts_where_the_libraries_allow(self) -> None:
        """With both libraries in FIPS mode the same file loads."""
        self.patch(fips, "library_state", lambda: ON)
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(fips_config())
        config, _, _ = tap.load({"config": path})
        self.assertTrue(config.security.fips)


class ApprovedConfigTests(SynchronousTestCase):
    """security.fips makes the configuration use approved algorithms only."""

    def test_sha256_digest_only(self) -> None:
        """Phones are challenged with SHA-256 only; TLS and trunks keep to approved algorithms."""
        config = parse_config(fips_config(TRUNK), "pbx.yml", {})
        self.assertEqual(config.sip.digest_algorithms, ("SHA-256",))
        self.assertTrue(config.sip.tls.approved_only)
        self.assertTrue(config.trunks.approved_only)
        self.assertEqual(config.trunks.trunks[0].digest_algorithms, ("SHA-256",))

    def test_md5_asked_for_is_an_error(self) -> None:
        """A file that asks for MD5 in FIPS mode is refused, naming the key."""
        text = fips_config().replace("sip: {domain: pbx.test}", "sip: {domain: pbx.test, digest_algorithms: [SHA-256, MD5]}")
        error = self.assertRaises(ConfigError, parse_config, text, "pbx.yml", {})
        self.assertEqual(error.key, "sip.digest_algorithms")
        self.assertIn("MD5 is not an approved algorithm", error.problem)

    def test_off_keeps_md5(self) -> None:
        """Without FIPS mode the defaults are as ever."""
        config = parse_config("sip: {domain: pbx.test}\n" + TRUNK, "pbx.yml", {})
        self.assertEqual(config.sip.digest_algorithms, ("MD5",))
        self.assertFalse(config.sip.tls.approved_only)
        self.assertEqual(config.trunks.trunks[0].digest_algorithms, ("SHA-256", "MD5"))

    def test_password_policy_applies_to_config_admins(self) -> None:
        """security.password_min_length applies to an administrator's password in the file."""
        text = textwrap.dedent("""
            security: {password_min_length: 20}
            api: {admins: [{username: boss, password: Quite-g00d-pass}]}
        """)
        error = self.assertRaises(ConfigError, parse_config, text, "pbx.yml", {})
        self.assertEqual(error.key, "api.admins[0].password")
        self.assertIn("shorter than 20", error.problem)

    def test_policy_bounds(self) -> None:
        """The policy's numbers are checked."""
        for text, key in (("security: {password_min_length: 4}", "security.password_min_length"),
                          ("security: {password_max_age_days: -1}", "security.password_max_age_days"),
                          ("security: {fips: maybe}", "security.fips")):
            error = self.assertRaises(ConfigError, parse_config, text, "pbx.yml", {})
            self.assertEqual(error.key, key)


class CarrierDigestTests(SynchronousTestCase):
    """A carrier's MD5 challenge is not answered in FIPS mode."""

    md5 = 'Digest realm="carrier", nonce="abc", qop="auth", algorithm=MD5'
    sha = 'Digest realm="carrier", nonce="def", qop="auth", algorithm=SHA-256'

    def test_md5_only_challenge_refused(self) -> None:
        """An MD5-only challenge has no answer with SHA-256 alone."""
        self.assertRaises(DigestError, answer_challenge, 401, [self.md5], method="REGISTER",
                          uri="sip:carrier", username="u", password="p", algorithms=("SHA-256",))

    def test_sha256_taken_when_offered(self) -> None:
        """With both offered, SHA-256 is answered."""
        answer = answer_challenge(401, [self.md5, self.sha], method="REGISTER", uri="sip:carrier",
                                  username="u", password="p", algorithms=("SHA-256",))
        self.assertIn("algorithm=SHA-256", answer.value)


def _certificate() -> tuple[crypto.PKey, crypto.X509]:
    key = crypto.PKey()
    key.generate_key(crypto.TYPE_RSA, 2048)
    cert = crypto.X509()
    cert.get_subject().CN = "pbx.test"
    cert.set_serial_number(1)
    cert.gmtime_adj_notBefore(0)
    cert.gmtime_adj_notAfter(3600)
    cert.set_issuer(cert.get_subject())
    cert.set_pubkey(key)
    cert.sign(key, "sha256")
    return key, cert


def _handshake(server_ctx: SSL.Context, client_ctx: SSL.Context) -> SSL.Connection:
    """Run a TLS handshake between two memory connections; return the server's end."""
    server, client = SSL.Connection(server_ctx, None), SSL.Connection(client_ctx, None)
    server.set_accept_state()
    client.set_connect_state()
    for _ in range(20):
        for a, b in ((client, server), (server, client)):
            try:
                a.do_handshake()
            except SSL.WantReadError:
                pass
            try:
                b.bio_write(a.bio_read(65536))
            except SSL.WantReadError:
                pass
        if server.get_cipher_name() and client.get_cipher_name():
            try:
                server.do_handshake()
                return server
            except SSL.WantReadError:
                pass
    raise AssertionError("no handshake")


class TLSTests(SynchronousTestCase):
    """A restricted context negotiates approved suites only."""

    def setUp(self) -> None:
        key, cert = _certificate()
        self.server = SSL.Context(SSL.TLS_METHOD)
        self.server.use_privatekey(key)
        self.server.use_certificate(cert)
        restrict_context(self.server)

    def client(self, version: int, ciphers: bytes) -> SSL.Context:
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_min_proto_version(version)
        ctx.set_max_proto_version(version)
        if version == SSL.TLS1_3_VERSION:
            ctx.set_tls13_ciphersuites(ciphers)
        else:
            ctx.set_cipher_list(ciphers)
        return ctx

    def test_aes_gcm_negotiated(self) -> None:
        """TLS 1.3 and 1.2 with AES-GCM complete."""
        tls13 = _handshake(self.server, self.client(SSL.TLS1_3_VERSION, TLS13_SUITES.encode()))
        self.assertIn("AES", tls13.get_cipher_name())
        tls12 = _handshake(self.server, self.client(SSL.TLS1_2_VERSION, b"ECDHE-RSA-AES128-GCM-SHA256"))
        self.assertEqual(tls12.get_cipher_name(), "ECDHE-RSA-AES128-GCM-SHA256")

    def test_chacha_refused(self) -> None:
        """A client offering only ChaCha20-Poly1305 (not approved) gets no connection, in TLS 1.3 or 1.2."""
        self.assertRaises(SSL.Error, _handshake, self.server,
                          self.client(SSL.TLS1_3_VERSION, b"TLS_CHACHA20_POLY1305_SHA256"))
        self.assertRaises(SSL.Error, _handshake, self.server,
                          self.client(SSL.TLS1_2_VERSION, b"ECDHE-RSA-CHACHA20-POLY1305"))

    def test_cbc_and_old_versions_refused(self) -> None:
        """AES-CBC with SHA-1 and TLS 1.1 are refused."""
        self.assertRaises(SSL.Error, _handshake, self.server,
                          self.client(SSL.TLS1_2_VERSION, b"ECDHE-RSA-AES128-SHA"))
        old = SSL.Context(SSL.TLS_METHOD)
        old.set_max_proto_version(SSL.TLS1_1_VERSION)
        old.set_cipher_list(b"ALL:@SECLEVEL=0")
        self.assertRaises(SSL.Error, _handshake, self.server, old)

    def test_listener_context_restricted(self) -> None:
        """The TLS listeners' context is restricted in FIPS mode and not otherwise."""
        from pbx.config import TLSConfig
        from pbx.sip.tls import server_context

        state = self.mktemp()
        restricted, _, _ = server_context(TLSConfig(approved_only=True), state, "pbx.test")
        chacha = self.client(SSL.TLS1_3_VERSION, b"TLS_CHACHA20_POLY1305_SHA256")
        self.assertRaises(SSL.Error, _handshake, restricted.getContext(), chacha)
        plain, _, _ = server_context(TLSConfig(), state, "pbx.test")
        self.assertIn("CHACHA20", _handshake(plain.getContext(), chacha).get_cipher_name())
