"""
Tests for :mod:`pbx.calls.ringers`: the timing of hunt groups, ring-all
groups and follow-me on a :class:`task.Clock`, with a fake ``ring`` whose
outcomes the tests decide.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.follow_me import FollowMe
from pbx.calls.forks import Outcome, Rung
from pbx.calls.groups import RingGroup
from pbx.calls.ringers import FollowMeRinger, GroupRinger, GroupRung
from pbx.records import Binding


def phone(number: str) -> Binding:
    """One registered phone of extension ``number``."""
    return Binding(number, f"sip:{number}@192.0.2.1", 1e12)


class FakeFork:
    """What a Rung says of the phone that answered."""

    def __init__(self, binding: Binding) -> None:
        self.binding = binding


class Ringing:
    """A fake ``ring``: notes (time, numbers, timeout) and lets the test end each ringing; it times out itself."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.rings: list[tuple[float, list[str], float]] = []
        self.added: list[tuple[float, list[str]]] = []
        self.pending: Deferred[Rung] | None = None
        self.bindings: list[Binding] = []
        self.waiting = True

    def ring(self, bindings: list[Binding], timeout: float) -> Deferred[Rung]:
        """Start ringing ``bindings``; no answer after ``timeout`` seconds."""
        self.rings.append((self.clock.seconds(), [b.aor for b in bindings], timeout))
        self.bindings = list(bindings)
        d: Deferred[Rung] = Deferred()
        timer = self.clock.callLater(
            timeout, lambda: d.callback(Rung(Outcome.NO_ANSWER, 480))
        )
        d.addBoth(lambda r: (timer.cancel() if timer.active() else None, r)[1])
        self.pending = d
        return d

    def ring_more(self, bindings: list[Binding]) -> None:
        """Note phones added to the ringing."""
        self.added.append((self.clock.seconds(), [b.aor for b in bindings]))
        self.bindings.extend(bindings)

    def end(self, outcome: Outcome, status: int = 200, number: str = "") -> None:
        """End the current ringing with ``outcome`` (answered by ``number``'s phone)."""
        assert self.pending is not None
        fork: Any = FakeFork(phone(number)) if number else None
        pending, self.pending = self.pending, None
        pending.callback(Rung(outcome, status, fork))


class GroupRingerTests(SynchronousTestCase):
    """Ring groups by strategy, on the clock."""

    def setUp(self) -> None:
        """A clock, a fake ring, and members 1002-1004 each with one phone except those in ``absent``."""
        self.clock = Clock()
        self.ringing = Ringing(self.clock)
        self.absent: set[str] = set()

    def available(self, member: str) -> Deferred[list[Binding]]:
        """A member's phones: none when absent."""
        return succeed([] if member in self.absent else [phone(member)])

    def start(self, strategy: str, **settings: Any) -> Deferred[GroupRung]:
        """Start ringing a group of 1002, 1003, 1004."""
        group = RingGroup(
            "sales", "600", ("1002", "1003", "1004"), strategy, **settings
        )
        ringer = GroupRinger(
            group,
            list(group.members),
            self.available,
            self.ringing.ring,
            lambda: self.ringing.waiting,
            self.clock,
        )
        return Deferred.fromCoroutine(ringer.run())

    def tearDown(self) -> None:
        """No timer is left."""
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_hunt_timing(self) -> None:
        """Each member rings member_timeout seconds in turn; the last ring is cut to what is left of timeout."""
        result = self.start("hunt", member_timeout=15, timeout=50)
        self.clock.pump([15, 15, 15, 5])
        self.assertEqual(
            self.ringing.rings,
            [
                (0, ["1002"], 15),
                (15, ["1003"], 15),
                (30, ["1004"], 15),
                (45, ["1002"], 5),
            ],
        )
        self.assertEqual(
            self.successResultOf(result), GroupRung(Rung(Outcome.NO_ANSWER, 480))
        )

    def test_hunt_answer_names_member(self) -> None:
        """The second member answers: the outcome is answered, naming it."""
        result = self.start("hunt", member_timeout=15, timeout=60)
        self.clock.advance(15)
        self.ringing.end(Outcome.ANSWERED, 200, "1003")
        rung = self.successResultOf(result)
        self.assertEqual((rung.rung.outcome, rung.member), (Outcome.ANSWERED, "1003"))
        self.assertEqual(len(self.ringing.rings), 2)

    def test_hunt_skips_absent(self) -> None:
        """Members without phones to ring are skipped without waiting."""
        self.absent = {"1002", "1003"}
        self.start("hunt", member_timeout=10, timeout=60)
        self.assertEqual(self.ringing.rings, [(0, ["1004"], 10)])
        self.ringing.end(Outcome.ANSWERED, 200, "1004")

    def test_hunt_every_member_busy(self) -> None:
        """A round where every member is busy ends the hunt at once, busy."""
        result = self.start("hunt", member_timeout=10, timeout=60)
        for _ in range(3):
            self.ringing.end(Outcome.BUSY, 486)
        self.assertEqual(self.successResultOf(result).rung, Rung(Outcome.BUSY, 486))
        self.assertEqual(self.clock.seconds(), 0)

    def test_nobody_available(self) -> None:
        """With no member to ring, ringing ends at once as unavailable."""
        self.absent = {"1002", "1003", "1004"}
        for strategy in ("hunt", "ringall"):
            self.assertEqual(
                self.successResultOf(self.start(strategy)).rung.outcome,
                Outcome.UNAVAILABLE,
            )
        self.assertEqual(self.ringing.rings, [])

    def test_ringall_one_ringing(self) -> None:
        """Ringall rings every member's phones in one ringing for the group's timeout."""
        result = self.start("ringall", timeout=40)
        self.assertEqual(self.ringing.rings, [(0, ["1002", "1003", "1004"], 40)])
        self.clock.advance(40)
        self.assertEqual(self.successResultOf(result).rung.outcome, Outcome.NO_ANSWER)

    def test_caller_gone(self) -> None:
        """A caller who left before the next member rings ends the hunt as cancelled."""
        result = self.start("hunt", member_timeout=10, timeout=60)
        self.ringing.waiting = False
        self.clock.advance(10)
        self.assertEqual(self.successResultOf(result).rung.outcome, Outcome.CANCELLED)
        self.assertEqual(len(self.ringing.rings), 1)


class FollowMeRingerTests(SynchronousTestCase):
    """Follow-me timing."""

    def setUp(self) -> None:
        """A clock and a fake ring."""
        self.clock = Clock()
        self.ringing = Ringing(self.clock)

    def tearDown(self) -> None:
        """No timer is left."""
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def start(self, mode: str) -> Deferred[Rung]:
        """Ring 1002 with follow-me to 1003 and 1004 after 10 s, ringing them 20 s."""
        plan = FollowMe("1002", ("1003", "1004"), after=10, mode=mode, timeout=20)
        ringer = FollowMeRinger(
            plan,
            [phone("1002")],
            lambda n: succeed([phone(n)]),
            self.ringing.ring,
            self.ringing.ring_more,
            lambda: self.ringing.waiting,
            self.clock,
            30,
        )
        return Deferred.fromCoroutine(ringer.run())

    def test_also(self) -> None:
        """Mode also: one ringing of after + timeout; the other numbers join it after ``after`` seconds."""
        result = self.start("also")
        self.clock.advance(9.9)
        self.assertEqual(self.ringing.added, [])
        self.clock.advance(0.1)
        self.assertEqual(self.ringing.rings, [(0, ["1002"], 30)])
        self.assertEqual(self.ringing.added, [(10, ["1003", "1004"])])
        self.clock.advance(20)
        self.assertEqual(self.successResultOf(result).outcome, Outcome.NO_ANSWER)

    def test_also_answered_before(self) -> None:
        """Answered before ``after``: the other numbers never ring."""
        result = self.start("also")
        self.clock.advance(5)
        self.ringing.end(Outcome.ANSWERED, 200, "1002")
        self.assertEqual(self.successResultOf(result).outcome, Outcome.ANSWERED)
        self.clock.advance(10)
        self.assertEqual(self.ringing.added, [])

    def test_only(self) -> None:
        """Mode only: the extension rings ``after`` seconds, then the other numbers ring ``timeout`` seconds."""
        result = self.start("only")
        self.clock.pump([10, 20])
        self.assertEqual(
            self.ringing.rings, [(0, ["1002"], 10), (10, ["1003", "1004"], 20)]
        )
        self.assertEqual(self.successResultOf(result).outcome, Outcome.NO_ANSWER)

    def test_only_busy_stops(self) -> None:
        """Mode only: an extension that is busy does not go on to the other numbers."""
        result = self.start("only")
        self.ringing.end(Outcome.BUSY, 486)
        self.assertEqual(self.successResultOf(result).outcome, Outcome.BUSY)
        self.assertEqual(len(self.ringing.rings), 1)

    def test_no_own_phone(self) -> None:
        """With no phone of the extension to ring, the other numbers ring at once, in either mode."""
        for mode in ("also", "only"):
            self.ringing.rings.clear()
            plan = FollowMe("1002", ("1003",), after=10, mode=mode, timeout=20)
            ringer = FollowMeRinger(
                plan,
                [],
                lambda n: succeed([phone(n)]),
                self.ringing.ring,
                self.ringing.ring_more,
                lambda: True,
                self.clock,
                30,
            )
            result = Deferred.fromCoroutine(ringer.run())
            self.assertEqual(self.ringing.rings, [(self.clock.seconds(), ["1003"], 20)])
            self.clock.advance(20)
            self.assertEqual(self.successResultOf(result).outcome, Outcome.NO_ANSWER)

    def test_only_with_screen(self) -> None:
        """Mode only with confirm: after ``after`` the caller waits on no phone while the screen calls the others."""
        screen = FakeScreen()
        plan = FollowMe(
            "1002", ("1003",), after=10, mode="only", timeout=20, confirm=True
        )
        ringer = FollowMeRinger(
            plan,
            [phone("1002")],
            lambda n: succeed([phone(n)]),
            self.ringing.ring,
            self.ringing.ring_more,
            lambda: True,
            self.clock,
            30,
            screen,
        )  # type: ignore[arg-type]
        result = Deferred.fromCoroutine(ringer.run())
        self.clock.advance(10)
        self.assertEqual(self.ringing.rings, [(0, ["1002"], 10), (10, [], 20)])
        self.assertEqual((screen.started, screen.stopped), ([["1003"]], False))
        self.clock.advance(20)
        self.assertEqual(self.successResultOf(result).outcome, Outcome.NO_ANSWER)
        self.assertTrue(screen.stopped)

    def test_also_with_screen(self) -> None:
        """Mode also with confirm: the others go to the screen, not into the ringing; it is stopped at the end."""
        screen = FakeScreen()
        plan = FollowMe(
            "1002", ("1003",), after=10, mode="also", timeout=20, confirm=True
        )
        ringer = FollowMeRinger(
            plan,
            [phone("1002")],
            lambda n: succeed([phone(n)]),
            self.ringing.ring,
            self.ringing.ring_more,
            lambda: True,
            self.clock,
            30,
            screen,
        )  # type: ignore[arg-type]
        result = Deferred.fromCoroutine(ringer.run())
        self.clock.advance(10)
        self.assertEqual((screen.started, self.ringing.added), ([["1003"]], []))
        self.ringing.end(Outcome.ANSWERED, 200, "1002")
        self.assertEqual(self.successResultOf(result).outcome, Outcome.ANSWERED)
        self.assertTrue(screen.stopped)


class FakeScreen:
    """Notes the phones it is asked to call and whether it was stopped."""

    def __init__(self) -> None:
        self.started: list[list[str]] = []
        self.stopped = False

    def start(self, bindings: list[Binding]) -> None:
        """Note the numbers."""
        self.started.append([b.aor for b in bindings])

    def stop(self) -> None:
        """Note the stop."""
        self.stopped = True
