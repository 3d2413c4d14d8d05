"""
:mod:`pbx.trunks.moh`: the music-on-hold class of calls over trunks (``moh:``
on a trunk, a DID, a trunk route), its precedence and its validation.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.dialplan import ToTrunks, parse_dialplan
from pbx.config import parse_config
from pbx.errors import ConfigError
from pbx.media.music import default_music_dir
from pbx.trunks.config import parse_trunk, parse_trunks
from pbx.trunks.moh import check_classes, inbound_class, outbound_class

CONFIG = """
moh:
  classes: {{sales: "{music}"}}
trunks:
  carrier:
    uri: "sip:192.0.2.50"
    moh: {trunk}
    dids:
      "+15551230000": {{extension: "1001", moh: {did}}}
      "+15551230001": {{extension: "1002"}}
dialplan:
  - {{match: "_9NXXNXXXXXX", trunk: carrier, strip: 1, prepend: "+1", moh: {route}}}
  - {{match: "_8.", trunk: carrier, name: international}}
"""


def config(trunk: str = "sales", did: str = "default", route: str = "sales", extra: str = "") -> str:
    """The configuration above with these classes on the trunk, the first DID and the first route."""
    return CONFIG.format(music=default_music_dir(), trunk=trunk, did=did, route=route) + extra


def problem(text: str) -> str:
    """The ``key: problem`` a config is refused with."""
    try:
        parse_config(text, environ={})
    except ConfigError as e:
        return str(e)
    raise AssertionError("accepted")


class PrecedenceTests(SynchronousTestCase):
    """A DID's class wins over its trunk's on calls in; a route's over its trunk's on calls out."""

    def setUp(self) -> None:
        self.trunk = parse_trunk("carrier", {
            "uri": "sip:192.0.2.50", "moh": "lines",
            "dids": {"+15551230000": {"extension": "1001", "moh": "sales"}, "+15551230001": {"extension": "1002"}},
        })

    def test_inbound(self) -> None:
        """The DID's class, else the trunk's."""
        self.assertEqual(inbound_class(self.trunk, "+15551230000"), "sales")
        self.assertEqual(inbound_class(self.trunk, "+15551230001"), "lines")
        bare = parse_trunk("bare", {"uri": "sip:192.0.2.51"})
        self.assertEqual(inbound_class(bare, "+15551230000"), "")

    def test_outbound(self) -> None:
        """The route's class, else the trunk's; none before a trunk is tried and without a route's."""
        self.assertEqual(outbound_class(ToTrunks(("carrier",), moh="route"), self.trunk), "route")
        self.assertEqual(outbound_class(ToTrunks(("carrier",)), self.trunk), "lines")
        self.assertEqual(outbound_class(None, self.trunk), "lines")
        self.assertEqual(outbound_class(ToTrunks(("carrier",)), None), "")

    def test_public_view_round_trips(self) -> None:
        """The API's view of a trunk carries its class and its DIDs' classes, and parses back the same."""
        view = self.trunk.public()
        self.assertEqual((view["moh"], view["dids"]["+15551230000"]["moh"]), ("lines", "sales"))
        again = parse_trunk("carrier", {k: v for k, v in view.items()
                                        if k in ("uri", "moh", "dids")})
        self.assertEqual((again.moh, dict(again.did_moh)), ("lines", {"+15551230000": "sales"}))


class ValidationTests(SynchronousTestCase):
    """Every class a trunk, DID or route names must be in ``moh: classes:``; the error names the key."""

    def test_loads(self) -> None:
        """Known classes load onto the trunk, the DID and the route; a route is named by name:, else its pattern."""
        loaded = parse_config(config(), environ={})
        [carrier] = loaded.trunks.trunks
        self.assertEqual((carrier.moh, dict(carrier.did_moh)), ("sales", {"+15551230000": "default"}))
        first, second = (route.action for route in loaded.dialplan.routes)
        assert isinstance(first, ToTrunks) and isinstance(second, ToTrunks)
        self.assertEqual((first.moh, first.route_name, second.moh, second.route_name),
                         ("sales", "_9NXXNXXXXXX", "", "international"))

    def test_unknown_classes(self) -> None:
        """An unknown class on the trunk, a DID or a route is one error naming that key."""
        self.assertEqual(problem(config(trunk="salse")), "trunks.carrier.moh: no class 'salse' in moh.classes")
        self.assertEqual(problem(config(did="nope")),
                         "trunks.carrier.dids.+15551230000.moh: no class 'nope' in moh.classes")
        self.assertEqual(problem(config(route="nope")), "dialplan[0].moh: no class 'nope' in moh.classes")

    def test_bad_values(self) -> None:
        """A class that is not a name, and a route name that is not a string, are refused by key."""
        self.assertEqual(problem(config(trunk="[1]")), "trunks.carrier.moh: must be the name of a class in moh.classes")
        self.assertEqual(problem(config(route="3")), "dialplan[0].moh: must be the name of a class in moh.classes")
        with self.assertRaises(ConfigError) as raised:
            parse_dialplan([{"match": "_8.", "trunk": "carrier", "name": 7}])
        self.assertEqual(str(raised.exception), "dialplan[0].name: must be a name for the route")

    def test_music_off_checks_nothing(self) -> None:
        """With ``moh.enabled: false`` no class is played, so none is checked."""
        text = config(trunk="gone").replace("moh:\n  classes", "moh:\n  enabled: false\n  classes")
        self.assertEqual(parse_config(text, environ={}).trunks.trunks[0].moh, "gone")

    def test_check_classes_directly(self) -> None:
        """check_classes passes when every class is known."""
        trunks = parse_trunks({"t": {"uri": "sip:192.0.2.9", "moh": "a", "dids": {"+15550001111": {"extension": "10",
                                                                                                   "moh": "b"}}}})
        dialplan = parse_dialplan([{"match": "_9.", "trunk": "t", "moh": "c"}])
        check_classes({"a", "b", "c"}, dialplan, trunks)
        with self.assertRaises(ConfigError):
            check_classes({"a", "b"}, dialplan, trunks)
