"""Tests for :mod:`pbx.emergency.locations`: where a caller is, and in which order that is decided."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pbx.emergency.locations import LOCATION_KIND, USER_KIND, Locator, source_host
from pbx.emergency.options import parse_emergency
from pbx.records import Binding
from pbx.testing import MemoryStore

SECTION = {
    "locations": {
        "hq-2": {
            "country": "US",
            "A3": "San Jose",
            "RD": "Main",
            "HNO": "100",
            "FLR": "2",
            "ROOM": "210",
        },
        "lab": {"country": "US", "A3": "Austin", "BLD": "Lab", "FLR": "1"},
        "branch": {"country": "US", "A3": "Reno", "BLD": "Branch"},
        "v6": {"country": "US", "A3": "Portland", "BLD": "Six"},
    },
    "extensions": {"1000": "hq-2", "1001": "hq-2"},
    "subnets": {"10.0.0.0/8": "branch", "10.2.0.0/16": "lab", "2001:db8::/32": "v6"},
}


class LocatorTests(SynchronousTestCase):
    """The precedence: set by the user, then the phone's subnet, then the extension's fixed location."""

    def setUp(self) -> None:
        self.store = MemoryStore()
        self.bindings: dict[str, list[Binding]] = {}
        self.locator = Locator(
            parse_emergency(SECTION), self.store, lambda aor: self.bindings.get(aor, [])
        )

    def locate(self, extension: str, source: str = "") -> tuple[str, str] | None:
        """(origin, name) of ``extension``'s location, or None."""
        located = self.successResultOf(self.locator.locate(extension, source))
        return None if located is None else (located.origin, located.name)

    def register(self, extension: str, source: str, at: float) -> None:
        """A live registration of ``extension`` from ``source`` made at ``at``."""
        self.bindings.setdefault(extension, []).append(
            Binding(
                extension,
                f"sip:{extension}@{source}",
                10_000.0,
                source=source,
                registered_at=at,
            )
        )

    def test_fixed_location(self) -> None:
        """An extension with no registration in a known subnet has its configured location."""
        self.assertEqual(self.locate("1000"), ("extension", "hq-2"))
        self.register("1000", "192.0.2.5:5060", 1.0)
        self.assertEqual(self.locate("1000"), ("extension", "hq-2"))

    def test_nothing_known(self) -> None:
        """An extension with no location anywhere has none."""
        self.assertIsNone(self.locate("1002"))

    def test_nomadic_most_specific_subnet(self) -> None:
        """A phone registered from a subnet takes the most specific subnet's location, over the fixed one."""
        self.register("1000", "10.2.3.4:5060", 1.0)
        self.assertEqual(self.locate("1000"), ("subnet", "lab"))
        self.register("1002", "10.9.9.9:5060", 1.0)
        self.assertEqual(self.locate("1002"), ("subnet", "branch"))

    def test_newest_registration_first(self) -> None:
        """Of several registrations the newest one's subnet counts."""
        self.register("1000", "10.9.0.1:5060", 1.0)
        self.register("1000", "10.2.0.1:5060", 5.0)
        self.assertEqual(self.locate("1000"), ("subnet", "lab"))

    def test_call_source_first(self) -> None:
        """The call's own source address beats the registrations'."""
        self.register("1000", "10.2.0.1:5060", 5.0)
        self.assertEqual(self.locate("1000", "10.9.0.1:5062"), ("subnet", "branch"))

    def test_ipv6(self) -> None:
        """An IPv6 source ([address]:port) finds its subnet."""
        self.register("1003", "[2001:db8::7]:5060", 1.0)
        self.assertEqual(self.locate("1003"), ("subnet", "v6"))
        self.assertEqual(source_host("[2001:db8::7]:5060"), "2001:db8::7")
        self.assertEqual(source_host("10.0.0.1:5060"), "10.0.0.1")
        self.assertEqual(source_host("10.0.0.1"), "10.0.0.1")

    def test_user_set_named_overrides(self) -> None:
        """A location the user chose beats the subnet and the fixed location."""
        self.register("1000", "10.2.0.1:5060", 5.0)
        self.store.put_item(USER_KIND, "1000", "location", {"location": "branch"})
        self.assertEqual(self.locate("1000"), ("user", "branch"))

    def test_user_set_address(self) -> None:
        """A user may give an address of their own; the PIDF-LO method is then Manual."""
        self.store.put_item(
            USER_KIND,
            "1000",
            "location",
            {"address": {"country": "US", "A3": "Home", "HNO": "5"}},
        )
        located = self.successResultOf(self.locator.locate("1000"))
        assert located is not None
        self.assertEqual(
            (located.origin, located.name, located.address.get("A3"), located.method),
            ("user", "", "Home", "Manual"),
        )

    def test_subnet_method_derived(self) -> None:
        """A location found from the network is marked Derived."""
        self.register("1000", "10.2.0.1:5060", 5.0)
        located = self.successResultOf(self.locator.locate("1000"))
        assert located is not None
        self.assertEqual(located.method, "Derived")

    def test_vanished_choice_falls_through(self) -> None:
        """A user's choice naming a location that no longer exists is passed over."""
        self.store.put_item(USER_KIND, "1000", "location", {"location": "gone"})
        self.assertEqual(self.locate("1000"), ("extension", "hq-2"))

    def test_named_from_the_api(self) -> None:
        """Locations added through the API are found by name and listed after the configuration's."""
        self.store.put_item(
            LOCATION_KIND, "", "annex", {"country": "US", "A3": "Annex"}
        )
        self.store.put_item(
            LOCATION_KIND, "", "hq-2", {"country": "US", "A3": "Shadowed"}
        )
        self.store.put_item(LOCATION_KIND, "", "broken", {"street": "x"})
        annex = self.successResultOf(self.locator.named("annex"))
        assert annex is not None
        self.assertEqual(annex.get("A3"), "Annex")
        listed = self.successResultOf(self.locator.all_named())
        self.assertEqual(
            [(name, source) for name, _, source in listed],
            [
                ("annex", "api"),
                ("branch", "config"),
                ("hq-2", "config"),
                ("lab", "config"),
                ("v6", "config"),
            ],
        )
        self.assertEqual(listed[2][1].get("A3"), "San Jose")
        self.store.put_item(USER_KIND, "1002", "location", {"location": "annex"})
        self.assertEqual(self.locate("1002"), ("user", "annex"))
