"""
The ``stir_shaken:`` section read with the rest of the configuration file:
paths taken from the file's directory, the files read at load, and every
mistake a ConfigError naming its key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt

from twisted.trial.unittest import SynchronousTestCase

from pbx.config import load_config, parse_config
from pbx.errors import ConfigError
from pbx.stir.identity import parse_identity
from pbx.switch import build_switch
from pbx.testing import FakeUDPReactor, MemoryStore
from pbx.trunks.hooks import OutboundContext

from support.stir import make_pki


class StirShakenSectionTests(SynchronousTestCase):
    """``stir_shaken:`` in pbx.yml."""

    def setUp(self) -> None:
        """A folder with a test PKI's files."""
        self.base = Path(self.mktemp()).absolute()
        self.base.mkdir()
        pki = make_pki()
        (self.base / "shaken.pem").write_bytes(pki.chain_pem())
        (self.base / "shaken.key").write_bytes(pki.signer_key_pem())
        (self.base / "ca.pem").write_bytes(pki.root_pem())

    def test_absent_is_off(self) -> None:
        """No section: no options and no credentials (nothing signed or verified)."""
        config = parse_config("{}\n", "x.yml")
        self.assertEqual((config.stir_shaken, config.stir_credentials), (None, None))

    def test_in_config_file(self) -> None:
        """Signing and verifying, relative paths from the file, key and anchors read at load."""
        path = self.base / "pbx.yml"
        path.write_text(
            "stir_shaken:\n  certificate: shaken.pem\n  key: shaken.key\n"
            "  x5u: https://certs.example.com/shaken.pem\n  trust: [ca.pem]\n  reject_failed: true\n"
        )
        config = load_config(path)
        options = config.stir_shaken
        self.assertEqual(
            (
                options.key,
                options.trust,
                options.reject_failed,
                options.signs,
                options.verifies,
            ),
            (
                str(self.base / "shaken.key"),
                (str(self.base / "ca.pem"),),
                True,
                True,
                True,
            ),
        )
        self.assertIsNotNone(config.stir_credentials.key)
        self.assertEqual(len(config.stir_credentials.trust.certificates), 1)

    def test_errors(self) -> None:
        """Each mistake is a ConfigError naming its key under stir_shaken."""
        cases = [
            ("stir_shaken: [1]\n", "stir_shaken"),
            ("stir_shaken: {trust: [ca.pem], colour: red}\n", "stir_shaken.colour"),
            ("stir_shaken: {trust: [ca.pem], max_age: -1}\n", "stir_shaken.max_age"),
            (
                "stir_shaken: {certificate: shaken.pem, key: shaken.key}\n",
                "stir_shaken.x5u",
            ),
            ("stir_shaken: {trust: [missing.pem]}\n", "stir_shaken.trust[0]"),
            (
                "stir_shaken: {certificate: shaken.pem, key: ca.pem, x5u: 'https://c.example.com/a.pem'}\n",
                "stir_shaken.key",
            ),
        ]
        for text, key in cases:
            path = self.base / "bad.yml"
            path.write_text(text)
            e = self.assertRaises(ConfigError, load_config, path)
            self.assertEqual(e.key, key, text)


class StirShakenSwitchTests(SynchronousTestCase):
    """:func:`pbx.switch.build_switch` joins STIR/SHAKEN to the trunks' hooks when configured."""

    def build(self, section: str) -> Any:
        """A switch from a config with ``section`` appended; its trunks' hooks."""
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        pki = make_pki(around=1_000.0)
        (base / "shaken.pem").write_bytes(pki.chain_pem())
        (base / "shaken.key").write_bytes(pki.signer_key_pem())
        path = base / "pbx.yml"
        path.write_text(
            "sip: {domain: pbx.test, listen: ['udp:5060:interface=127.0.0.1']}\n"
            "trunks:\n  carrier: {uri: 'sip:192.0.2.50', caller_id: '+15551230000',"
            " dids: {'+15551230000': {extension: '1001'}}}\n" + section
        )
        config = load_config(path)
        reactor = FakeUDPReactor()
        reactor.advance(1_000)
        switch = build_switch(config, MemoryStore(), reactor, b"s" * 32, {}, {})
        assert switch.calls.trunks is not None
        self.trunk = config.trunks.get("carrier")
        return switch.calls.trunks.hooks

    def test_joined(self) -> None:
        """With the section, one more outbound hook (it signs: attest A for the DID) and one inbound verifier."""
        plain = self.build("")
        hooks = self.build(
            "stir_shaken: {certificate: shaken.pem, key: shaken.key, x5u: 'https://c.example.com/s.pem',"
            " trust: [shaken.pem], require_tn_auth_list: false}\n"
        )
        self.assertEqual(
            (len(hooks.outbound), len(hooks.inbound)),
            (len(plain.outbound) + 1, len(plain.inbound) + 1),
        )
        change = hooks.outbound[-1](
            OutboundContext(
                "1001", True, self.trunk, "95552345678", "+15552345678", "+15551230000"
            )
        )
        [(name, value)] = change.headers
        self.assertEqual(
            (name, parse_identity(value).info),
            ("Identity", "https://c.example.com/s.pem"),
        )
        claims = jwt.decode(
            parse_identity(value).token, options={"verify_signature": False}
        )
        self.assertEqual(claims["attest"], "A")

    def test_halves(self) -> None:
        """Only signing: no verifier (inbound calls are not marked); only verifying: no signer."""
        plain = self.build("")
        signing = self.build(
            "stir_shaken: {certificate: shaken.pem, key: shaken.key, x5u: 'https://c.example.com/s.pem'}\n"
        )
        verifying = self.build("stir_shaken: {trust: [shaken.pem]}\n")
        self.assertEqual(
            [
                (
                    len(h.outbound) - len(plain.outbound),
                    len(h.inbound) - len(plain.inbound),
                )
                for h in (signing, verifying)
            ],
            [(1, 0), (0, 1)],
        )
