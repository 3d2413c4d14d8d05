"""
Tests for the ``intercom`` application of :mod:`pbx.features.paging.app`:
``*80`` + an extension calls it with auto-answer and connects both ways
(:class:`support.paging.PageRig`).
"""

from __future__ import annotations

from zope.interface.verify import verifyObject

from twisted.trial.unittest import SynchronousTestCase

from pbx.interfaces import IDialplanApplication

from support.paging import PageRig, RingingPBX

OPTIONS = "intercom_prefix: '*80'\nauto_answer: [call_info]\n"
CALLER, CALLEE = 600.0, 900.0


class IntercomTests(SynchronousTestCase):
    """An intercom call from 1009 to 1001."""

    def setUp(self) -> None:
        """The rig, with 1001's phone answering."""
        self.rig = PageRig(OPTIONS)
        self.callee = self.rig.member("1001", CALLEE)

    def tearDown(self) -> None:
        """Every call ends, and with it every application run."""
        self.assertEqual(self.rig.hang_up_all(), [])

    def test_provides(self) -> None:
        """The application provides IDialplanApplication under the name ``intercom``."""
        self.assertTrue(verifyObject(IDialplanApplication, self.rig.intercom))
        self.assertEqual(self.rig.intercom.name, "intercom")

    def test_two_way(self) -> None:
        """The extension after the prefix is called with auto-answer; each side hears the other."""
        caller, _ = self.rig.dial(
            self.rig.intercom, "1009", "*801001", frequency=CALLER
        )
        self.assertEqual(self.rig.pbx.originated, ["1001"])
        self.assertEqual(
            self.rig.pbx.originate_headers["1001"],
            [("Call-Info", f"<sip:{self.rig.pbx.config.sip.domain}>;answer-after=0")],
        )
        self.rig.run(1.0)
        self.assertGreater(caller.hears(CALLEE), 0.8)
        self.assertGreater(self.callee.hears(CALLER), 0.8)
        self.assertLess(caller.hears(CALLER), 0.02)
        caller.hang_up()

    def test_callee_beeps_first(self) -> None:
        """The answered phone hears a beep before the caller's voice."""
        self.rig.dial(self.rig.intercom, "1009", "*801001", frequency=CALLER)
        self.rig.run(0.2)
        self.assertGreater(self.callee.hears(1000.0, 0.2), 0.1)

    def test_caller_hangs_up(self) -> None:
        """The caller hanging up hangs up the callee, and the application returns."""
        caller, done = self.rig.dial(self.rig.intercom, "1009", "*801001")
        self.rig.run(0.4)
        caller.hang_up()
        self.assertTrue(self.callee.channel.hung_up)
        self.successResultOf(done)

    def test_callee_hangs_up(self) -> None:
        """The callee hanging up ends the caller's call too."""
        caller, done = self.rig.dial(self.rig.intercom, "1009", "*801001")
        self.rig.run(0.4)
        self.callee.hang_up()
        self.successResultOf(done)
        self.assertEqual(caller.hangups, ["normal"])

    def test_busy(self) -> None:
        """A callee that cannot be reached gives the caller a busy tone, then the call ends."""
        self.rig.pbx.outcomes["1001"] = "busy"
        caller, done = self.rig.dial(
            self.rig.intercom, "1009", "*801001", frequency=None
        )
        self.rig.run(1.0)
        self.assertGreater(caller.hears(620.0, 1.0), 0.05)
        self.rig.run(2.5)
        self.successResultOf(done)
        self.assertEqual(caller.hangups, ["normal"])

    def test_route_names_extension(self) -> None:
        """A route may name the extension (``args: {extension: 1001}``)."""
        caller, _ = self.rig.dial(
            self.rig.intercom, "1009", "42", args={"extension": 1001}
        )
        self.assertEqual(self.rig.pbx.originated, ["1001"])
        caller.hang_up()

    def test_no_extension(self) -> None:
        """The prefix alone, another number, or one's own extension is told it is invalid."""
        for dialled in ("*80", "555", "*801009"):
            caller, done = self.rig.dial(self.rig.intercom, "1009", dialled)
            self.rig.run(0.5)
            self.assertEqual(
                caller.played, ["general/invalid-number", "general/goodbye"]
            )
            self.successResultOf(done)
        self.assertEqual(self.rig.pbx.originated, [])


class IntercomRingingTests(SynchronousTestCase):
    """An intercom call whose callee has not answered yet."""

    def setUp(self) -> None:
        """A rig whose callee rings until the test answers it."""
        self.rig = PageRig(OPTIONS, pbx=RingingPBX())
        self.pbx = self.rig.pbx
        assert isinstance(self.pbx, RingingPBX)

    def tearDown(self) -> None:
        """Every call ends, and with it every application run."""
        self.assertEqual(self.rig.hang_up_all(), [])

    def test_ringback_then_connected(self) -> None:
        """The caller hears ringback while the callee's phone rings, then the callee once it answers."""
        caller, _ = self.rig.dial(self.rig.intercom, "1009", "*801001", frequency=None)
        self.rig.run(0.6)
        self.assertGreater(caller.hears(440.0, 0.4), 0.05)
        callee = self.rig.phone("1001", CALLEE)
        self.pbx.answer("1001", callee.channel)
        self.rig.run(1.0)
        self.assertGreater(caller.hears(CALLEE, 0.4), 0.8)
        self.assertLess(caller.hears(440.0, 0.4), 0.02)

    def test_caller_hangs_up_while_ringing(self) -> None:
        """The caller hanging up before the answer cancels the callee's ringing."""
        caller, done = self.rig.dial(self.rig.intercom, "1009", "*801001")
        self.rig.run(0.4)
        caller.hang_up()
        self.assertEqual(self.pbx.cancelled, ["1001"])
        self.successResultOf(done)
