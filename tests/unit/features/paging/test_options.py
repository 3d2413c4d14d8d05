"""Tests for :mod:`pbx.features.paging.options`, :mod:`.autoanswer` and the feature object."""

from __future__ import annotations

import yaml

from zope.interface.verify import verifyObject

from twisted.plugin import IPlugin, getPlugins
from twisted.trial.unittest import SynchronousTestCase

from pbx import plugins
from pbx.errors import ConfigError
from pbx.features.paging.autoanswer import DEFAULT_STYLES, STYLES, auto_answer_headers
from pbx.features.paging.feature import paging
from pbx.features.paging.options import parse_options
from pbx.features.paging.service import PagingService
from pbx.interfaces import IFeature
from pbx.testing import FakePBX


class OptionsTests(SynchronousTestCase):
    """The ``features: paging:`` section."""

    def error(self, text: str) -> ConfigError:
        """The error parsing ``text`` raises."""
        with self.assertRaises(ConfigError) as caught:
            parse_options(yaml.safe_load(text))
        return caught.exception

    def test_full(self) -> None:
        """Every option is read; numbers given as YAML integers become strings."""
        options = parse_options(
            yaml.safe_load("""
intercom_prefix: "*81"
auto_answer: [polycom]
ring_timeout: 7
multicast_interface: 127.0.0.1
multicast_ttl: 3
multicast_loop: false
groups:
  warehouse: {number: 700, members: [1001, "1002", 1001], multicast: "239.1.1.1:5000", codec: g722,
              auto_answer: [grandstream, cisco], beep: false}
  office: {number: "701", members: ["1003"], busy: call, pagers: [1009]}
""")
        )
        group = options.groups["warehouse"]
        self.assertEqual(
            (
                group.number,
                group.members,
                group.multicast,
                group.codec,
                group.auto_answer,
                group.beep,
            ),
            (
                "700",
                ("1001", "1002"),
                ("239.1.1.1", 5000),
                "g722",
                ("grandstream", "cisco"),
                False,
            ),
        )
        office = options.groups["office"]
        self.assertEqual(
            (office.auto_answer, office.call_busy, office.pagers),
            (("polycom",), True, {"1009"}),
        )
        self.assertEqual(
            (
                options.intercom_prefix,
                options.auto_answer,
                options.ring_timeout,
                options.multicast_interface,
                options.multicast_ttl,
                options.multicast_loop,
            ),
            ("*81", ("polycom",), 7.0, "127.0.0.1", 3, False),
        )
        self.assertIs(options.group_by_number("701"), options.groups["office"])
        self.assertIsNone(options.group_by_number("702"))

    def test_defaults(self) -> None:
        """No section: no groups, prefix ``*80``, the default styles, TTL 1, loop on, 10 s to answer."""
        options = parse_options(None)
        self.assertEqual(
            (
                dict(options.groups),
                options.intercom_prefix,
                options.auto_answer,
                options.multicast_ttl,
                options.multicast_loop,
                options.ring_timeout,
            ),
            ({}, "*80", DEFAULT_STYLES, 1, True, 10.0),
        )
        group = parse_options(
            {"groups": {"g": {"number": "700", "members": ["1001"]}}}
        ).groups["g"]
        self.assertEqual(
            (group.multicast, group.codec, group.beep, group.call_busy, group.pagers),
            (None, "pcmu", True, False, frozenset()),
        )

    def test_errors(self) -> None:
        """Each bad value is refused with the key that holds it."""
        cases = {
            "loud: 1": "loud",
            "groups: [a]": "groups",
            "groups: {'bad name': {number: '700', members: ['1001']}}": "groups.bad name",
            "groups: {g: {members: ['1001']}}": "groups.g.number",
            "groups: {g: {number: '7x', members: ['1001']}}": "groups.g.number",
            "groups: {g: {number: '700'}}": "groups.g.members",
            "groups: {g: {number: '700', members: ['1001', 'abc']}}": "groups.g.members[1]",
            "groups: {g: {number: '700', members: ['1001'], multicast: '10.0.0.1:5000'}}": "groups.g.multicast",
            "groups: {g: {number: '700', members: ['1001'], multicast: '239.1.1.1'}}": "groups.g.multicast",
            "groups: {g: {number: '700', members: ['1001'], multicast: '239.1.1.1:0'}}": "groups.g.multicast",
            "groups: {g: {number: '700', members: ['1001'], multicast: 'host:5000'}}": "groups.g.multicast",
            "groups: {g: {number: '700', members: ['1001'], codec: opus}}": "groups.g.codec",
            "groups: {g: {number: '700', members: ['1001'], auto_answer: [snom]}}": "groups.g.auto_answer[0]",
            "groups: {g: {number: '700', members: ['1001'], auto_answer: []}}": "groups.g.auto_answer",
            "groups: {g: {number: '700', members: ['1001'], beep: 1}}": "groups.g.beep",
            "groups: {g: {number: '700', members: ['1001'], volume: 3}}": "groups.g.volume",
            "groups: {g: {number: '700', members: ['1001']}, h: {number: '700', members: ['1002']}}": "groups.h.number",
            "groups: {g: {number: '*805', members: ['1001']}}": "groups.g.number",
            "groups: {g: {number: '700', members: ['1001'], busy: wait}}": "groups.g.busy",
            "groups: {g: {number: '700', members: ['1001'], pagers: '1009'}}": "groups.g.pagers",
            "groups: {g: {number: '700', members: ['1001'], pagers: ['x']}}": "groups.g.pagers[0]",
            "intercom_prefix: '80a'": "intercom_prefix",
            "ring_timeout: 0": "ring_timeout",
            "multicast_interface: eth0": "multicast_interface",
            "multicast_ttl: 256": "multicast_ttl",
            "multicast_loop: yes please": "multicast_loop",
        }
        for text, key in cases.items():
            self.assertEqual(self.error(text).key, key, text)


class AutoAnswerTests(SynchronousTestCase):
    """The auto-answer headers."""

    def test_every_style(self) -> None:
        """Each style gives its header; the same header twice (call_info and cisco) is sent once."""
        self.assertEqual(
            auto_answer_headers(list(STYLES), "pbx.example"),
            [
                ("Call-Info", "<sip:pbx.example>;answer-after=0"),
                ("Call-Info", "answer-after=0"),
                ("Alert-Info", "<http://localhost>;info=alert-autoanswer"),
                ("Alert-Info", "info=alert-autoanswer"),
                ("Alert-Info", "Ring Answer"),
            ],
        )

    def test_default(self) -> None:
        """The default is the Call-Info answer-after and Polycom's Alert-Info, both well-formed."""
        self.assertEqual(
            auto_answer_headers(DEFAULT_STYLES, "d"),
            [
                ("Call-Info", "<sip:d>;answer-after=0"),
                ("Alert-Info", "<http://localhost>;info=alert-autoanswer"),
            ],
        )


class FeatureTests(SynchronousTestCase):
    """The feature object, its dropin and its service."""

    def test_plugin(self) -> None:
        """The dropin offers the feature under the name ``paging``, and it provides IFeature."""
        self.assertIn(paging, list(getPlugins(IFeature, plugins)))
        self.assertTrue(verifyObject(IFeature, paging))
        self.assertTrue(IPlugin.providedBy(paging))
        self.assertEqual(paging.name, "paging")

    def test_service_registers_applications(self) -> None:
        """Starting the service registers ``paging`` and ``intercom``; stopping ends the pages in progress."""
        pbx = FakePBX()
        service = paging.make_service(pbx, paging.parse_options({}))
        assert isinstance(service, PagingService)
        service.startService()
        self.assertEqual(sorted(pbx.applications), ["intercom", "paging"])
        service.stopService()
        self.assertFalse(service.running)
