"""Tests for :mod:`pbx.security.pending`: PINs hashed off the startup path."""

from __future__ import annotations

from attrs import evolve

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.config import ExtensionConfig
from pbx.provisioning import config_fingerprint, drop_placeholders, sync_extension
from pbx.records import ExtensionRecord
from pbx.security.pending import PendingPINs, is_placeholder
from pbx.testing import MemoryStore


class PendingPINsTests(SynchronousTestCase):
    """A held PIN works at once; its hash replaces the placeholder when it lands."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore()
        self.hashing: list[tuple[str, Deferred[str]]] = []
        self.landed: list[str] = []
        self.pins = PendingPINs(self.store, self.clock, self.hash, self.landed.append, concurrency=2)

    def hash(self, pin: str) -> Deferred[str]:
        """A hash that lands when the test says so."""
        d: Deferred[str] = Deferred()
        self.hashing.append((pin, d))
        return d

    def hold(self, number: str, pin: str) -> str:
        """Store ``number`` with ``pin`` held; queue its hash."""
        placeholder = self.pins.hold(pin)
        self.store.extensions[number] = ExtensionRecord(number, pin_hash=placeholder)
        self.pins.hash_later(number, placeholder)
        return placeholder

    def test_verify_before_the_hash_lands(self) -> None:
        """Until the hash lands, the placeholder verifies against the PIN in memory."""
        placeholder = self.hold("1001", "482913")
        self.assertTrue(is_placeholder(placeholder))
        self.assertIs(self.pins.verify("482913", placeholder), True)
        self.assertIs(self.pins.verify("000000", placeholder), False)
        self.assertIsNone(self.pins.verify("482913", "pbkdf2-sha256$1$AA==$AA=="))
        self.assertEqual(self.pins.pending, 1)

    def test_hash_lands(self) -> None:
        """The landed hash replaces the placeholder, the PIN leaves memory and the record's caches are told."""
        placeholder = self.hold("1001", "482913")
        [(pin, d)] = self.hashing
        self.assertEqual(pin, "482913")
        d.callback("pbkdf2-sha256$600000$c2FsdA==$a2V5")
        self.assertEqual(self.store.extensions["1001"].pin_hash, "pbkdf2-sha256$600000$c2FsdA==$a2V5")
        self.assertEqual((self.pins.pending, self.landed), (0, ["1001"]))
        self.assertIs(self.pins.verify("482913", placeholder), False)

    def test_pin_changed_meanwhile(self) -> None:
        """A PIN changed before the old one's hash landed keeps the new one."""
        self.hold("1001", "482913")
        self.store.extensions["1001"] = evolve(self.store.extensions["1001"], pin_hash="new-hash")
        self.hashing[0][1].callback("old-hash")
        self.assertEqual(self.store.extensions["1001"].pin_hash, "new-hash")
        self.assertEqual((self.pins.pending, self.landed), (0, []))

    def test_few_at_a_time(self) -> None:
        """Only ``concurrency`` hashes run at once; the next starts when one lands."""
        for i in range(5):
            self.hold(f"10{i:02d}", "482913")
        self.assertEqual(len(self.hashing), 2)
        self.hashing[0][1].callback("h0")
        self.assertEqual(len(self.hashing), 3)

    def test_stopped(self) -> None:
        """After stop nothing is stored (the store is closing) and no more hashing starts."""
        self.hold("1001", "482913")
        self.hold("1002", "560391")
        self.hold("1003", "739146")
        self.pins.stop()
        self.hashing[0][1].callback("h")
        self.assertTrue(is_placeholder(self.store.extensions["1001"].pin_hash))
        self.assertEqual(len(self.hashing), 2)


class ProvisioningTests(SynchronousTestCase):
    """Configured PINs through :func:`sync_extension`, and leftovers of a run that stopped early."""

    def test_config_pin_marked_synced_once_hashed(self) -> None:
        """A configured PIN is stored as a placeholder; the entry counts as synced only once its hash is stored."""
        store, hashing = MemoryStore(), []

        def hasher(pin: str) -> Deferred[str]:
            d: Deferred[str] = Deferred()
            hashing.append(d)
            return d

        pins = PendingPINs(store, Clock(), hasher)
        ext = ExtensionConfig("1001", pin="482913", password="Corr3ct-horse-battery")
        written = self.successResultOf(Deferred.fromCoroutine(
            sync_extension(store, ext, "pbx.test", lambda n, s: None, b"k" * 32, pending=pins)))
        self.assertTrue(written)
        self.assertTrue(is_placeholder(store.extensions["1001"].pin_hash))
        self.assertNotIn("config.extension.1001", store.settings)
        hashing[0].callback("pbkdf2-sha256$600000$c2FsdA==$a2V5")
        self.assertEqual(store.extensions["1001"].pin_hash, "pbkdf2-sha256$600000$c2FsdA==$a2V5")
        self.assertEqual(store.settings["config.extension.1001"], config_fingerprint(b"k" * 32, ext, "pbx.test"))

    def test_drop_placeholders(self) -> None:
        """Placeholders an earlier run left behind are cleared; hashes are kept."""
        store = MemoryStore()
        store.extensions["1001"] = ExtensionRecord("1001", pin_hash="pending$abc")
        store.extensions["1002"] = ExtensionRecord("1002", pin_hash="pbkdf2-sha256$1$AA==$AA==")
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(drop_placeholders(store))), ["1001"])
        self.assertEqual(store.extensions["1001"].pin_hash, "")
        self.assertEqual(store.extensions["1002"].pin_hash, "pbkdf2-sha256$1$AA==$AA==")
