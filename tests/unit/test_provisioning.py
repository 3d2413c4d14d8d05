"""
Tests for the reset of forgotten secrets in :mod:`pbx.provisioning`
(``twistd pbx --reset-password`` / ``--reset-pin``), on the in-memory store.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from pbx.config import parse_config
from pbx.provisioning import ResetError, extension_record, reset_password, reset_pin
from pbx.records import AdminRecord
from pbx.security.passwords import hash_password, pin_problem, verify_password
from pbx.sip.auth import compute_ha1
from pbx.testing import MemoryStore

CONFIG = """
state_dir: /unused
sip: {domain: pbx.test}
api: {admins: [{username: admin}, {username: ops, password: "Switchb0ard-long-key"}]}
extensions:
  "1001": {name: One}
  "1002": {name: Two, password: "Corr3ct-Horse-Battery", pin: "4826"}
"""


def cheap(secret: str) -> str:
    """PBKDF2 with few iterations, so tests stay quick."""
    return hash_password(secret, iterations=1000)


class ResetTests(SynchronousTestCase):
    """A forgotten password or PIN is replaced by a generated one; only its hash is stored."""

    def setUp(self) -> None:
        self.config = parse_config(CONFIG, "/etc/pbx/pbx.yml", {})
        self.store = MemoryStore()
        self.store.admins["admin"] = AdminRecord("admin", cheap("old-Password-1"))
        self.store.admins["ops"] = AdminRecord("ops", cheap("Switchb0ard-long-key"))
        for number, name in (("1001", "One"), ("1002", "Two")):
            self.store.extensions[number] = extension_record(
                number, "pbx.test", name=name, password="Old-sip-pass-1", source="config"
            )

    def run_reset(self, coroutine: Any) -> Any:
        """The result of a reset coroutine (the memory store answers at once)."""
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def refused(self, coroutine: Any) -> str:
        """The one-line reason a reset was refused."""
        return str(self.failureResultOf(Deferred.fromCoroutine(coroutine), ResetError).value)

    def test_admin(self) -> None:
        """An administrator gets a new password that verifies against the stored hash; the old one no longer does."""
        kind, password = self.run_reset(reset_password(self.store, self.config, "admin", cheap))
        self.assertEqual(kind, "API admin password")
        encoded = self.store.admins["admin"].password_hash
        self.assertTrue(verify_password(password, encoded))
        self.assertFalse(verify_password("old-Password-1", encoded))
        self.assertNotIn(password, encoded)
        self.assertEqual([(e.kind, e.subject) for e in self.store.audit], [("secret.reset", "admin")])

    def test_extension(self) -> None:
        """An extension gets a new SIP password, stored as HA1 values for sip.domain; the rest is kept."""
        kind, password = self.run_reset(reset_password(self.store, self.config, "1001", cheap))
        self.assertEqual(kind, "SIP password")
        record = self.store.extensions["1001"]
        self.assertEqual(record.ha1_md5, compute_ha1("1001", "pbx.test", password, "MD5"))
        self.assertEqual(record.ha1_sha256, compute_ha1("1001", "pbx.test", password, "SHA-256"))
        self.assertEqual((record.name, record.source), ("One", "config"))

    def test_unknown(self) -> None:
        """An unknown name is refused with one line, and nothing is written."""
        self.assertEqual(
            self.refused(reset_password(self.store, self.config, "nobody", cheap)),
            "no API administrator or extension named 'nobody'",
        )
        self.assertEqual(self.store.audit, [])

    def test_configured_password_refused(self) -> None:
        """A password written in the config file is refused: the next start would put it back."""
        self.assertEqual(
            self.refused(reset_password(self.store, self.config, "1002", cheap)),
            "1002's password is set in /etc/pbx/pbx.yml: change it there",
        )
        self.assertIn("ops's password is set", self.refused(reset_password(self.store, self.config, "ops", cheap)))

    def test_pin(self) -> None:
        """An extension gets a new acceptable PIN of the length asked, stored as a hash."""
        pin = self.run_reset(reset_pin(self.store, self.config, "1001", 8, cheap))
        self.assertEqual((len(pin), pin_problem(pin, "1001", 8)), (8, None))
        self.assertTrue(verify_password(pin, self.store.extensions["1001"].pin_hash))

    def test_pin_refused(self) -> None:
        """A PIN for an unknown extension, or one whose PIN is in the config file, is refused."""
        self.assertEqual(self.refused(reset_pin(self.store, self.config, "1009", 6, cheap)), "no extension '1009'")
        self.assertEqual(
            self.refused(reset_pin(self.store, self.config, "1002", 6, cheap)),
            "1002's PIN is set in /etc/pbx/pbx.yml: change it there",
        )


class PinHashTests(SynchronousTestCase):
    """A PIN given already hashed in the config (``pin_hash``)."""

    def test_stored_as_given(self) -> None:
        """The encoding is stored as it is, with nothing to hash; the PIN verifies; --reset-pin refuses it."""
        from pbx.provisioning import sync_extension

        encoded = cheap("582914")
        config = parse_config(f'extensions:\n  "1001": {{pin_hash: "{encoded}"}}\n', "/etc/pbx/pbx.yml", {})
        self.assertNotIn(encoded, repr(config))
        store = MemoryStore()

        def no_hashing(pin: str) -> str:
            raise AssertionError("nothing should be hashed")

        [ext] = config.extensions
        self.assertTrue(self.successResultOf(Deferred.fromCoroutine(
            sync_extension(store, ext, "pbx.test", lambda n, s: None, b"k" * 32, no_hashing))))
        self.assertTrue(verify_password("582914", store.extensions["1001"].pin_hash))
        failure = self.failureResultOf(Deferred.fromCoroutine(reset_pin(store, config, "1001", hasher=cheap)))
        self.assertIn("PIN is set in /etc/pbx/pbx.yml", str(failure.value))
