"""Tests for :mod:`pbx.emergency.options`: the ``emergency:`` section."""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pbx.config import parse_config
from pbx.emergency.options import (
    CIVIC_ELEMENTS,
    EmergencyConfig,
    parse_civic_address,
    parse_emergency,
)
from pbx.errors import ConfigError

HQ = {
    "country": "us",
    "A1": "CA",
    "A3": "San Jose",
    "RD": "Main",
    "STS": "St",
    "HNO": 100,
    "FLR": "2",
    "ROOM": "210",
}
SMTP = {"sender": "pbx@example.com", "server": "127.0.0.1:2525"}


def full() -> dict[str, Any]:
    """A complete section, as YAML would give it."""
    return {
        "trunk": ["carrier", "backup"],
        "dial": ["911", "933"],
        "prefixes": ["9"],
        "notify": {"email": ["security@example.com"], "smtp": dict(SMTP)},
        "locations": {
            "hq-2": dict(HQ),
            "lab": {"country": "US", "A3": "Austin", "BLD": "Lab"},
        },
        "extensions": {"1000": "hq-2"},
        "subnets": {"10.0.0.0/8": "hq-2", "10.2.0.0/16": "lab"},
        "callback_minutes": 45,
    }


class ParseEmergencyTests(SynchronousTestCase):
    """What the section accepts and the key each problem names."""

    def problem(self, raw: Any) -> ConfigError:
        """The error ``raw`` raises."""
        return self.assertRaises(ConfigError, parse_emergency, raw)

    def test_defaults(self) -> None:
        """No section: 911 and 933 (a read-back test), prefix 9, a 60-minute callback window, nobody alerted."""
        config = parse_emergency(None)
        self.assertEqual(config, EmergencyConfig())
        self.assertEqual(
            (config.dial, config.test_numbers, config.prefixes),
            (("911", "933"), ("933",), ("9",)),
        )
        self.assertEqual(
            (config.callback_minutes, config.notify_email, config.smtp), (60, (), None)
        )

    def test_full_section(self) -> None:
        """Every key is taken; the country is upper-cased and numbers become text."""
        config = parse_emergency(full())
        self.assertEqual(config.trunks, ("carrier", "backup"))
        self.assertEqual(config.notify_email, ("security@example.com",))
        assert config.smtp is not None
        self.assertEqual(config.smtp.server, "127.0.0.1:2525")
        self.assertEqual(config.locations["hq-2"].get("country"), "US")
        self.assertEqual(config.locations["hq-2"].get("HNO"), "100")
        self.assertEqual(config.extensions, {"1000": "hq-2"})
        self.assertEqual(config.callback_minutes, 45)

    def test_subnets_most_specific_first(self) -> None:
        """Subnets are kept most specific first, whatever order the file gives."""
        config = parse_emergency(full())
        self.assertEqual(
            config.subnets,
            (
                (ipaddress.ip_network("10.2.0.0/16"), "lab"),
                (ipaddress.ip_network("10.0.0.0/8"), "hq-2"),
            ),
        )

    def test_elements_in_schema_order(self) -> None:
        """A civic address keeps RFC 5139's element order, not the file's."""
        address = parse_civic_address(
            {"ROOM": "1", "country": "DE", "A3": "Berlin"}, "x"
        )
        self.assertEqual([n for n, _ in address.elements], ["country", "A3", "ROOM"])
        self.assertEqual(CIVIC_ELEMENTS[:3], ("country", "A1", "A2"))

    def test_unknown_element_named(self) -> None:
        """An element name RFC 5139 does not define is named in the error."""
        raw = full()
        raw["locations"]["hq-2"]["FLOOR"] = "2"
        e = self.problem(raw)
        self.assertEqual(e.key, "emergency.locations.hq-2.FLOOR")
        self.assertIn("unknown civic address element", e.problem)

    def test_country_required(self) -> None:
        """A location without a two-letter country is refused."""
        raw = full()
        raw["locations"]["lab"]["country"] = "USA"
        self.assertEqual(self.problem(raw).key, "emergency.locations.lab.country")
        del raw["locations"]["lab"]["country"]
        self.assertEqual(self.problem(raw).key, "emergency.locations.lab.country")

    def test_control_characters_refused(self) -> None:
        """A value with a line break cannot reach the PIDF-LO or an e-mail."""
        raw = full()
        raw["locations"]["lab"]["BLD"] = "Lab\nX-Evil: 1"
        self.assertEqual(self.problem(raw).key, "emergency.locations.lab.BLD")

    def test_unknown_location_referenced(self) -> None:
        """An extension or subnet naming a location that is not defined is an error naming it."""
        raw = full()
        raw["extensions"]["1001"] = "nowhere"
        e = self.problem(raw)
        self.assertEqual(
            (e.key, e.problem),
            (
                "emergency.extensions.1001",
                "no location 'nowhere' in emergency.locations",
            ),
        )
        raw = full()
        raw["subnets"]["192.0.2.0/24"] = "nowhere"
        self.assertEqual(self.problem(raw).key, "emergency.subnets.192.0.2.0/24")

    def test_bad_subnet_and_extension(self) -> None:
        """A subnet that is not CIDR and an extension that is not 2-10 digits are named."""
        raw = full()
        raw["subnets"] = {"10.0.0.0/33": "lab"}
        self.assertEqual(self.problem(raw).key, "emergency.subnets.10.0.0.0/33")
        raw = full()
        raw["extensions"] = {"1": "lab"}
        self.assertEqual(self.problem(raw).key, "emergency.extensions.1")

    def test_email_needs_smtp(self) -> None:
        """Recipients without an SMTP server to send through are refused."""
        raw = full()
        del raw["notify"]["smtp"]
        self.assertEqual(self.problem(raw).key, "emergency.notify.smtp")
        raw = full()
        raw["notify"]["email"] = ["not an address"]
        self.assertEqual(self.problem(raw).key, "emergency.notify.email[0]")
        raw = full()
        raw["notify"]["smtp"]["attach"] = "wav"
        self.assertEqual(self.problem(raw).key, "emergency.notify.smtp.attach")
        raw = full()
        raw["notify"]["smtp"]["starttls"] = "sometimes"
        self.assertEqual(self.problem(raw).key, "emergency.notify.smtp.starttls")

    def test_numbers_checked(self) -> None:
        """Emergency numbers and prefixes are digits; test numbers must be emergency numbers."""
        self.assertEqual(self.problem({"dial": ["9-1-1"]}).key, "emergency.dial[0]")
        self.assertEqual(self.problem({"dial": []}).key, "emergency.dial")
        self.assertEqual(self.problem({"prefixes": ["x"]}).key, "emergency.prefixes[0]")
        self.assertEqual(
            self.problem({"test_numbers": ["112"]}).key, "emergency.test_numbers[0]"
        )
        self.assertEqual(parse_emergency({"dial": ["112"]}).test_numbers, ())

    def test_other_keys(self) -> None:
        """Unknown keys, a bad window and a bad PIDF element are named."""
        self.assertEqual(self.problem({"trunks": []}).key, "emergency.trunks")
        self.assertEqual(
            self.problem({"callback_minutes": 0}).key, "emergency.callback_minutes"
        )
        self.assertEqual(
            self.problem({"callback_minutes": True}).key, "emergency.callback_minutes"
        )
        self.assertEqual(
            self.problem({"pidf_element": "person"}).key, "emergency.pidf_element"
        )
        self.assertEqual(
            self.problem({"locations": {"bad name": HQ}}).key,
            "emergency.locations.bad name",
        )
        self.assertEqual(self.problem([]).key, "emergency")

    def test_in_the_configuration_file(self) -> None:
        """The top-level ``emergency:`` key is parsed with the rest; a problem names its dotted key."""
        config = parse_config(
            "emergency:\n  locations: {hq: {country: US, A3: Town}}\n  extensions: {'1000': hq}\n",
            "p.yml",
            {},
        )
        self.assertEqual(config.emergency.extensions, {"1000": "hq"})
        self.assertEqual(
            parse_config("sip: {}", "p.yml", {}).emergency, EmergencyConfig()
        )
        e = self.assertRaises(
            ConfigError, parse_config, "emergency: {dial: [abc]}", "p.yml", {}
        )
        self.assertEqual(e.key, "emergency.dial[0]")
