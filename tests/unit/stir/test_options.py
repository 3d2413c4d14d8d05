"""Tests for :mod:`pbx.stir.options`: the ``stir_shaken:`` section and its files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from twisted.trial.unittest import SynchronousTestCase

from pbx.errors import ConfigError
from pbx.stir.options import StirShakenOptions, load_credentials, parse_options

from support.stir import make_pki, pem

SIGNING = {
    "certificate": "shaken.pem",
    "key": "shaken.key",
    "x5u": "https://certs.example.com/shaken.pem",
}


class ParseTests(SynchronousTestCase):
    """Validating the section."""

    def assertError(self, raw: Any, key: str, words: str = "") -> None:
        """Parsing ``raw`` fails naming ``key`` (and saying ``words``)."""
        with self.assertRaises(ConfigError) as caught:
            parse_options(raw, Path("/etc/pbx"))
        self.assertEqual(caught.exception.key, key, str(caught.exception))
        self.assertIn(words, caught.exception.problem)

    def test_absent(self) -> None:
        """No section: STIR/SHAKEN is off."""
        self.assertIsNone(parse_options(None))

    def test_issue_example(self) -> None:
        """The issue's one-line example parses, with the defaults."""
        options = parse_options(
            {
                "certificate": "/etc/pbx/shaken.pem",
                "key": "/etc/pbx/shaken.key",
                "x5u": "https://certs.example.com/shaken.pem",
                "trust": ["/etc/pbx/sti-ca.pem"],
            }
        )
        self.assertEqual(
            options,
            StirShakenOptions(
                certificate="/etc/pbx/shaken.pem",
                key="/etc/pbx/shaken.key",
                x5u="https://certs.example.com/shaken.pem",
                trust=("/etc/pbx/sti-ca.pem",),
            ),
        )
        assert options is not None
        self.assertTrue(options.signs and options.verifies)
        self.assertEqual(
            (options.max_age, options.reject_failed, options.allowed_x5u),
            (60, False, ()),
        )

    def test_everything(self) -> None:
        """Every key, relative paths taken from the base, prefixes normalised."""
        options = parse_options(
            dict(
                SIGNING,
                trust="ca.pem",
                allowed_x5u=[
                    "https://CR.STI-CA.example",
                    "http://127.0.0.1:8080/certs/",
                ],
                max_age=30,
                reject_failed=True,
                x5u_timeout=3,
                x5u_max_bytes=4096,
                x5u_cache_ttl=0,
                require_tn_auth_list=False,
            ),
            Path("/etc/pbx"),
        )
        assert options is not None
        self.assertEqual(
            (options.certificate, options.key),
            ("/etc/pbx/shaken.pem", "/etc/pbx/shaken.key"),
        )
        self.assertEqual(options.trust, ("/etc/pbx/ca.pem",))
        self.assertEqual(
            options.allowed_x5u,
            ("https://cr.sti-ca.example/", "http://127.0.0.1:8080/certs/"),
        )
        self.assertEqual(
            (
                options.max_age,
                options.reject_failed,
                options.x5u_timeout,
                options.x5u_max_bytes,
            ),
            (30, True, 3.0, 4096),
        )
        self.assertEqual(
            (options.x5u_cache_ttl, options.require_tn_auth_list), (0, False)
        )

    def test_http_x5u(self) -> None:
        """Our own x5u may be http, for pbx sites that allow it from each other."""
        options = parse_options(dict(SIGNING, x5u="http://127.0.0.1:8080/sp.pem"))
        assert options is not None
        self.assertEqual(options.x5u, "http://127.0.0.1:8080/sp.pem")

    def test_verify_only(self) -> None:
        """trust alone verifies without signing."""
        options = parse_options({"trust": ["/a.pem"]})
        assert options is not None
        self.assertFalse(options.signs)
        self.assertTrue(options.verifies)

    def test_errors_name_the_key(self) -> None:
        """Each mistake names its key."""
        self.assertError([], "stir_shaken", "mapping")
        self.assertError({}, "stir_shaken", "trust")
        self.assertError(
            {"trust": "a.pem", "colour": 1}, "stir_shaken.colour", "unknown"
        )
        self.assertError(
            {"certificate": "a.pem", "x5u": SIGNING["x5u"]},
            "stir_shaken.key",
            "together",
        )
        self.assertError(
            dict(SIGNING, x5u="ftp://certs.example.com/a.pem"),
            "stir_shaken.x5u",
            "https",
        )
        self.assertError(
            dict(SIGNING, x5u="https://certs.example.com/a/../b.pem"),
            "stir_shaken.x5u",
            "..",
        )
        self.assertError(dict(SIGNING, x5u="certs.example.com"), "stir_shaken.x5u")
        self.assertError(dict(SIGNING, x5u=5), "stir_shaken.x5u", "string")
        self.assertError(dict(SIGNING, key=["a"]), "stir_shaken.key", "string")
        self.assertError({"trust": ["a.pem", 5]}, "stir_shaken.trust[1]", "string")
        self.assertError({"trust": ["a.pem", ""]}, "stir_shaken.trust[1]", "file")
        self.assertError({"trust": {"a": 1}}, "stir_shaken.trust", "list")
        self.assertError(
            {"trust": "a", "allowed_x5u": ["ftp://x/"]},
            "stir_shaken.allowed_x5u[0]",
            "http",
        )
        self.assertError(
            {"trust": "a", "allowed_x5u": [7]}, "stir_shaken.allowed_x5u[0]"
        )
        self.assertError({"trust": "a", "max_age": 0}, "stir_shaken.max_age", "between")
        self.assertError(
            {"trust": "a", "max_age": "60"}, "stir_shaken.max_age", "whole number"
        )
        self.assertError({"trust": "a", "max_age": True}, "stir_shaken.max_age")
        self.assertError(
            {"trust": "a", "reject_failed": "yes"},
            "stir_shaken.reject_failed",
            "true or false",
        )
        self.assertError(
            {"trust": "a", "x5u_max_bytes": 10}, "stir_shaken.x5u_max_bytes"
        )
        self.assertError({"trust": "a\nb"}, "stir_shaken.trust[0]", "line break")


class CredentialsTests(SynchronousTestCase):
    """Reading the files the options name."""

    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.pki = make_pki()
        (self.dir / "shaken.pem").write_bytes(self.pki.chain_pem())
        (self.dir / "shaken.key").write_bytes(self.pki.signer_key_pem())
        (self.dir / "ca.pem").write_bytes(self.pki.root_pem())

    def options(self, **changes: Any) -> StirShakenOptions:
        """Options over the files in the test directory."""
        raw = dict(SIGNING, trust=["ca.pem"])
        raw.update(changes)
        options = parse_options(raw, self.dir)
        assert options is not None
        return options

    def assertError(self, options: StirShakenOptions, key: str, words: str) -> None:
        """Loading fails naming ``key``."""
        with self.assertRaises(ConfigError) as caught:
            load_credentials(options)
        self.assertEqual(caught.exception.key, key, str(caught.exception))
        self.assertIn(words, caught.exception.problem)

    def test_load(self) -> None:
        """Key, chain and anchors are read."""
        credentials = load_credentials(self.options())
        assert credentials.key is not None
        self.assertEqual(credentials.key.public_key(), self.pki.signer_key.public_key())
        self.assertEqual(credentials.chain, (self.pki.signer, self.pki.intermediate))
        self.assertEqual(credentials.trust.certificates, (self.pki.root,))

    def test_missing_files(self) -> None:
        """A file that is not there is named by its key."""
        self.assertError(self.options(key="nope.key"), "stir_shaken.key", "cannot read")
        self.assertError(
            self.options(certificate="nope.pem"),
            "stir_shaken.certificate",
            "cannot read",
        )
        self.assertError(
            self.options(trust=["ca.pem", "nope.pem"]),
            "stir_shaken.trust[1]",
            "cannot read",
        )

    def test_wrong_contents(self) -> None:
        """A key that is not P-256, an encrypted key, a mismatched certificate, a trust file without certificates."""
        p384 = ec.generate_private_key(ec.SECP384R1())
        (self.dir / "p384.key").write_bytes(
            p384.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.assertError(self.options(key="p384.key"), "stir_shaken.key", "P-256")
        (self.dir / "locked.key").write_bytes(
            self.pki.signer_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            )
        )
        self.assertError(self.options(key="locked.key"), "stir_shaken.key", "encrypted")
        self.assertError(
            self.options(key="ca.pem"), "stir_shaken.key", "not a PEM private key"
        )
        (self.dir / "other.pem").write_bytes(pem([make_pki("Other").signer]))
        self.assertError(
            self.options(certificate="other.pem"),
            "stir_shaken.certificate",
            "do not match",
        )
        self.assertError(
            self.options(certificate="shaken.key"),
            "stir_shaken.certificate",
            "not a PEM",
        )
        self.assertError(
            self.options(trust=["shaken.key"]), "stir_shaken.trust[0]", "not a PEM"
        )
