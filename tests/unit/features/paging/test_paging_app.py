"""
Tests for :mod:`pbx.features.paging.app` (``paging``) and :mod:`.page`: a
pager pages a group on real channels ticked on a :class:`task.Clock`
(:class:`support.paging.PageRig`); the members' legs come from
:meth:`FakePBX.originate`.
"""

from __future__ import annotations

from zope.interface.verify import verifyObject

from twisted.trial.unittest import SynchronousTestCase

from pbx.interfaces import IDialplanApplication
from pbx.media.codecs import G722

from support.paging import PageRig, RingingPBX

GROUPS = """
groups:
  warehouse: {number: "700", members: ["1001", "1002", "1003"]}
  quiet: {number: "701", members: ["1001"], beep: false, auto_answer: [grandstream, yealink]}
"""
PAGER, M1, M2, M3 = 600.0, 900.0, 1300.0, 1700.0


class PagingTests(SynchronousTestCase):
    """A page to a group of three phones."""

    def setUp(self) -> None:
        """The rig, with three member phones that answer and talk."""
        self.rig = PageRig(GROUPS)
        self.m1 = self.rig.member("1001", M1)
        self.m2 = self.rig.member("1002", M2)
        self.m3 = self.rig.member("1003", M3)

    def tearDown(self) -> None:
        """Every call ends, and with it every application run."""
        self.assertEqual(self.rig.hang_up_all(), [])

    def test_provides(self) -> None:
        """The application provides IDialplanApplication under the name ``paging``."""
        self.assertTrue(verifyObject(IDialplanApplication, self.rig.paging))
        self.assertEqual(self.rig.paging.name, "paging")

    def test_members_called_with_auto_answer(self) -> None:
        """Every member is called at once, showing the pager, with the default auto-answer headers."""
        pager, _ = self.rig.dial(self.rig.paging, "1009", "700")
        self.assertEqual(self.rig.pbx.originated, ["1001", "1002", "1003"])
        self.assertEqual(
            self.rig.pbx.originate_headers["1001"],
            [
                ("Call-Info", f"<sip:{self.rig.pbx.config.sip.domain}>;answer-after=0"),
                ("Alert-Info", "<http://localhost>;info=alert-autoanswer"),
            ],
        )
        pager.hang_up()

    def test_group_styles(self) -> None:
        """A group's own auto-answer styles are sent instead of the default."""
        pager, _ = self.rig.dial(self.rig.paging, "1009", "701")
        self.assertEqual(
            self.rig.pbx.originate_headers["1001"],
            [("Alert-Info", "Ring Answer"), ("Alert-Info", "info=alert-autoanswer")],
        )
        pager.hang_up()

    def test_one_way_mix(self) -> None:
        """Members hear the pager and never each other; the pager hears none of them."""
        pager, _ = self.rig.dial(self.rig.paging, "1009", "700", frequency=PAGER)
        self.rig.run(1.0)
        for member, _own in ((self.m1, M1), (self.m2, M2), (self.m3, M3)):
            self.assertGreater(member.hears(PAGER), 0.8)
            for other in (M1, M2, M3):
                self.assertLess(
                    member.hears(other), 0.02, f"{member.number} hears {other} Hz"
                )
        for frequency in (M1, M2, M3):
            self.assertLess(pager.hears(frequency), 0.02)
        self.assertLess(pager.hears(PAGER), 0.02)
        pager.hang_up()

    def test_beeps(self) -> None:
        """Members hear a 1 kHz beep before the pager; the pager hears one when the page reaches someone."""
        pager, _ = self.rig.dial(self.rig.paging, "1009", "700", frequency=PAGER)
        self.rig.run(0.2)
        self.assertGreater(self.m1.hears(1000.0, 0.2), 0.1)
        self.assertGreater(pager.hears(1000.0, 0.2), 0.1)
        self.assertLess(self.m1.hears(PAGER, 0.2), 0.02)
        self.rig.run(0.6)
        self.assertLess(self.m1.hears(1000.0, 0.2), 0.02)
        self.assertGreater(self.m1.hears(PAGER, 0.2), 0.8)
        pager.hang_up()

    def test_no_beep(self) -> None:
        """A group with ``beep: false`` gives its members the pager at once."""
        pager, _ = self.rig.dial(self.rig.paging, "1009", "701", frequency=PAGER)
        self.rig.run(0.2)
        self.assertLess(self.m1.hears(1000.0, 0.2), 0.02)
        self.assertGreater(self.m1.hears(PAGER, 0.1), 0.8)
        pager.hang_up()

    def test_wideband_pager(self) -> None:
        """A G.722 pager is mixed at 16 kHz and heard by G.711 members; members are still not heard."""
        pager, _ = self.rig.dial(
            self.rig.paging, "1009", "700", frequency=PAGER, codec=G722()
        )
        self.rig.run(1.0)
        [page] = self.rig.paging.pages.values()
        self.assertEqual(page.mix.sample_rate, 16000)
        self.assertGreater(self.m1.hears(PAGER), 0.7)
        self.assertLess(pager.hears(M1), 0.02)

    def test_pager_hangs_up(self) -> None:
        """When the pager hangs up, every member is hung up and the application returns."""
        pager, done = self.rig.dial(self.rig.paging, "1009", "700")
        self.rig.run(0.4)
        pager.hang_up()
        for member in (self.m1, self.m2, self.m3):
            self.assertTrue(member.channel.hung_up)
            self.assertIsNone(member.channel.mix)
        self.successResultOf(done)
        self.assertEqual(self.rig.paging.pages, {})

    def test_busy_member_skipped(self) -> None:
        """A member that is busy or does not answer is skipped; the others are paged."""
        rig = self.rig = PageRig(GROUPS)
        m1 = rig.member("1001", M1, outcome="busy")
        m2 = rig.member("1002", M2, outcome="no_answer")
        m3 = rig.member("1003", M3)
        pager, _ = rig.dial(rig.paging, "1009", "700", frequency=PAGER)
        rig.run(1.0)
        self.assertGreater(m3.hears(PAGER), 0.8)
        self.assertEqual((m1.channel.mix, m2.channel.mix), (None, None))
        self.assertLess(max(m1.hears(PAGER), m2.hears(PAGER)), 0.02)
        [page] = rig.paging.pages.values()
        self.assertEqual(list(page.members), ["1003"])
        pager.hang_up()

    def test_member_leaves(self) -> None:
        """A member hanging up leaves the page; the others still hear the pager."""
        pager, _ = self.rig.dial(self.rig.paging, "1009", "700", frequency=PAGER)
        self.rig.run(0.4)
        self.m1.hang_up()
        self.rig.run(0.6)
        [page] = self.rig.paging.pages.values()
        self.assertEqual(sorted(page.members), ["1002", "1003"])
        self.assertGreater(self.m2.hears(PAGER), 0.8)
        pager.hang_up()

    def test_pager_not_called(self) -> None:
        """A pager who is a member of the group is not called."""
        pager, _ = self.rig.dial(self.rig.paging, "1002", "700")
        self.assertEqual(self.rig.pbx.originated, ["1001", "1003"])
        pager.hang_up()

    def test_nobody_answers(self) -> None:
        """A page that reaches nobody gives the pager a congestion tone, then hangs up."""
        rig = self.rig = PageRig(GROUPS)
        rig.pbx.outcome = "unavailable"
        pager, done = rig.dial(rig.paging, "1009", "700", frequency=None)
        rig.run(1.0)
        self.assertGreater(pager.hears(480.0, 0.5), 0.05)
        rig.run(1.5)
        self.assertEqual(pager.hangups, ["normal"])
        self.successResultOf(done)

    def test_by_group_name(self) -> None:
        """A route may name the group (``args: {group: quiet}``) whatever number was dialled."""
        pager, _ = self.rig.dial(
            self.rig.paging, "1009", "5555", args={"group": "quiet"}
        )
        self.assertEqual(self.rig.pbx.originated, ["1001"])
        pager.hang_up()

    def test_unknown_group(self) -> None:
        """A number that is no group's is told so, and hung up, without calling anyone."""
        pager, done = self.rig.dial(self.rig.paging, "1009", "799")
        self.rig.run(0.5)
        self.assertEqual(self.rig.pbx.originated, [])
        self.assertEqual(pager.played, ["general/invalid-number", "general/goodbye"])
        self.assertEqual(pager.hangups, ["normal"])
        self.successResultOf(done)


class RingingTests(SynchronousTestCase):
    """Members whose phones are still ringing when the page ends."""

    def setUp(self) -> None:
        """A rig whose members ring until the test answers them."""
        self.rig = PageRig(GROUPS, pbx=RingingPBX())
        self.pbx = self.rig.pbx
        assert isinstance(self.pbx, RingingPBX)

    def tearDown(self) -> None:
        """Every call ends, and with it every application run."""
        self.assertEqual(self.rig.hang_up_all(), [])

    def test_pager_hangs_up_while_ringing(self) -> None:
        """The pager hanging up cancels every member still ringing and hangs up those that answered."""
        pager, done = self.rig.dial(self.rig.paging, "1009", "700", frequency=PAGER)
        first = self.rig.phone("1001", None)
        self.pbx.answer("1001", first.channel)
        self.rig.run(0.4)
        self.assertGreater(first.hears(PAGER, 0.1), 0.8)
        pager.hang_up()
        self.assertEqual(sorted(self.pbx.cancelled), ["1002", "1003"])
        self.assertTrue(first.channel.hung_up)
        self.successResultOf(done)

    def test_answer_racing_the_end(self) -> None:
        """A member whose answer comes as its ringing is cancelled is hung up at once, never joined."""
        late = self.rig.phone("1002", None)
        self.pbx.answer_on_cancel["1002"] = late.channel
        pager, done = self.rig.dial(self.rig.paging, "1009", "700")
        pager.hang_up()
        self.assertTrue(late.channel.hung_up)
        self.assertIsNone(late.channel.mix)
        self.successResultOf(done)


class PolicyTests(SynchronousTestCase):
    """Who may page, and members already in a call."""

    def setUp(self) -> None:
        """A rig with a group only 1009 may page, and one that calls busy members too."""
        self.rig = PageRig("""
groups:
  guarded: {number: "700", members: ["1001", "1002"], pagers: ["1009"]}
  all: {number: "701", members: ["1001", "1002"], busy: call}
""")
        self.m1 = self.rig.member("1001", M1)
        self.m2 = self.rig.member("1002", M2)

    def tearDown(self) -> None:
        """Every call ends, and with it every application run."""
        self.assertEqual(self.rig.hang_up_all(), [])

    def test_pager_not_allowed(self) -> None:
        """An extension not among the group's pagers is told it is not available; nobody is called."""
        pager, done = self.rig.dial(self.rig.paging, "1005", "700")
        self.rig.run(0.5)
        self.assertEqual(self.rig.pbx.originated, [])
        self.assertEqual(pager.played, ["general/not-available", "general/goodbye"])
        self.successResultOf(done)

    def test_pager_allowed(self) -> None:
        """One of the group's pagers pages it."""
        pager, _ = self.rig.dial(self.rig.paging, "1009", "700")
        self.assertEqual(self.rig.pbx.originated, ["1001", "1002"])

    def test_busy_member_not_called(self) -> None:
        """A member on an answered call is skipped without being called; a ringing one is not busy."""
        self.rig.pbx.calls = [
            {"caller": "1002", "callee": "1003", "state": "confirmed", "answered": 5.0},
            {"caller": "1004", "callee": "1001", "state": "ringing", "answered": None},
        ]
        self.rig.dial(self.rig.paging, "1009", "700")
        self.assertEqual(self.rig.pbx.originated, ["1001"])

    def test_busy_member_called(self) -> None:
        """A group with ``busy: call`` calls members in a call too."""
        self.rig.pbx.calls = [
            {"caller": "1003", "callee": "1002", "state": "confirmed", "answered": 5.0}
        ]
        self.rig.dial(self.rig.paging, "1009", "701")
        self.assertEqual(self.rig.pbx.originated, ["1001", "1002"])
