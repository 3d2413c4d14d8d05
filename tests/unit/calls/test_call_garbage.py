"""
A finished call leaves no cyclic garbage: its call, legs, forks,
transactions, timers, relay session and sockets (or, for a call pbx
answers itself, its application's channel and RTP endpoint) are freed by
reference counting when the last of them ends.  On a busy pbx, calls left
in reference cycles pile up until the garbage collector frees them, and
its collections pause the reactor for hundreds of milliseconds.
"""

from __future__ import annotations

import gc
import weakref
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from pbx.media.codecs import PCMA, PCMU
from pbx.media.music import MusicClass
from pbx.media.playout import HoldMusic
from pbx.sip.message import Request, Response

from support.app_calls import TICK, AppCallTestCase, frames
from support.phones import (
    CALLEE_SDP,
    CALLER_SDP,
    REALM,
    CallTestCase,
    describe,
    hold_sdp,
)

#: Long enough for every transaction of a call to end (64*T1) and its timers with it.
AFTERWARDS = 70


class _Seen(weakref.WeakSet[Any]):
    """The calls seen in progress, held weakly: those left are alive."""

    made = 0

    def note(self, calls: Iterable[Any]) -> None:
        """Remember ``calls``, counting the ones not seen before."""
        for call in calls:
            if call not in self:
                self.made += 1
                self.add(call)

    def clear(self) -> None:
        """Forget every call seen and the count."""
        super().clear()
        self.made = 0


class _GarbageChecks(CallTestCase):
    """A PBX whose calls can be checked for garbage (no tests of its own)."""

    def setUp(self) -> None:
        """Watch the calls as they go."""
        self.seen = _Seen()
        super().setUp()

    def deliver(self) -> None:
        """Note (weakly) every call in progress, then deliver what pbx sent."""
        self.seen.note(self.controller.calls.values())
        super().deliver()

    def forget_closed_ports(self) -> None:
        """
        The fake reactor keeps every UDP port it opened (tests look at them
        after they close); a real one forgets a closed port, and so must it
        here, or it would keep alive what a call leaves in cycles.
        """
        ports = self.clock.udpPorts
        for number in [n for n, port in ports.items() if not port.listening]:
            del ports[number]

    def assert_no_garbage(self, run: Callable[[], None], calls: int = 1) -> None:
        """
        Run the call ``run`` places twice, the second time with the
        collector off and keeping what it finds: no object at all is left
        in a cycle, and the call itself (``calls`` of them end) was freed
        before any collection.
        """
        run()
        self.advance(AFTERWARDS)
        self.forget_closed_ports()
        gc.collect()
        self.seen.clear()
        # Everything alive now is held until the end: what an earlier test
        # left (the log buffer lets go of old events as new ones come) is
        # not counted as this call's garbage.
        before = gc.get_objects()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            run()
            self.advance(AFTERWARDS)
            self.forget_closed_ports()
            self.assertEqual(self.seen.made, calls)
            self.assertEqual(len(self.seen), 0, "a call outlived its end")
            gc.collect()
            garbage = Counter(
                f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage
            )
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
            del before
        self.assertEqual(dict(garbage), {})


class CallGarbageTests(_GarbageChecks):
    """Each kind of relayed call, run once the PBX is warm, leaves nothing for the garbage collector."""

    def setUp(self) -> None:
        """The PBX of CallTestCase with a third phone, 1003 (a transfer target)."""
        super().setUp()
        self.target = self.phone("1003", "192.0.2.13")

    def test_caller_hangs_up(self) -> None:
        """A two-party call the caller hangs up leaves no garbage."""

        def run() -> None:
            _, leg, _ = self.establish()
            self.hang_up(leg)

        self.assert_no_garbage(run)

    def test_callee_hangs_up(self) -> None:
        """A two-party call the callee hangs up leaves no garbage."""

        def run() -> None:
            _, _, callee_leg = self.establish()
            self.callee.in_dialog(callee_leg, "BYE")
            self.callee.expect(200)
            bye = self.caller.expect_one("BYE")
            self.caller.respond(bye, 200)

        self.assert_no_garbage(run)

    def test_busy(self) -> None:
        """A call the callee refuses as busy (486) leaves no garbage."""

        def run() -> None:
            invite, _, [forked] = self.ring()
            self.callee.respond(forked, 486)
            self.callee.expect("ACK")
            busy = self.caller.expect_one(486)
            self.caller.ack_failure(invite, busy)

        self.assert_no_garbage(run)

    def test_not_found(self) -> None:
        """A call to a number that does not exist (404) leaves no garbage."""

        def run() -> None:
            invite, _ = self.caller.invite("1999")
            _, not_found = self.caller.expect(100, 404)
            self.caller.ack_failure(invite, not_found)

        self.assert_no_garbage(run, calls=0)

    def test_cancelled(self) -> None:
        """A call the caller cancels while it rings leaves no garbage."""

        def run() -> None:
            invite, _, [forked] = self.ring()
            self.callee.respond(forked, 180)
            self.caller.expect(180)
            self.abandon(invite, (self.callee, forked))

        self.assert_no_garbage(run)

    def test_hold_passed_on(self) -> None:
        """A call whose caller holds (a re-INVITE passed to the callee) leaves no garbage."""

        def run() -> None:
            _, leg, _ = self.establish()
            self.caller.in_dialog(leg, "INVITE", body=hold_sdp(CALLER_SDP, "sendonly"))
            self.caller.expect(100)
            reinvite = self.callee.expect_one("INVITE")
            self.callee.respond(reinvite, 200, body=hold_sdp(CALLEE_SDP, "recvonly"))
            self.callee.expect("ACK")
            self.caller.expect(200)
            self.caller.ack_reinvite(leg)
            self.hang_up(leg)

        self.assert_no_garbage(run)

    def test_key_relayed(self) -> None:
        """A call whose caller presses a key (INFO, watched for in-call codes and relayed) leaves no garbage."""

        def run() -> None:
            _, leg, _ = self.establish()
            self.caller.in_dialog(
                leg,
                "INFO",
                body=b"Signal=5\r\nDuration=160\r\n",
                extra=[("Content-Type", "application/dtmf-relay")],
            )
            self.callee.respond(self.callee.expect_one("INFO"), 200)
            self.caller.expect(200)
            self.hang_up(leg)

        self.assert_no_garbage(run)

    def test_blind_transfer(self) -> None:
        """A call the callee transfers blind to 1003 (ringback meanwhile), then hung up, leaves no garbage."""

        def run() -> None:
            _, leg, callee_leg = self.establish()
            self.callee.in_dialog(
                callee_leg, "REFER", extra=[("Refer-To", f"<sip:1003@{REALM}>")]
            )
            accepted, notify = self.callee.received()
            self.assertEqual(describe(accepted), 202)
            assert isinstance(notify, Request)
            self.callee.respond(notify, 200)
            forked = self.target.expect_one("INVITE")
            self.target.respond(forked, 180)
            for kind in ("NOTIFY", "BYE"):
                self.callee.respond(self.callee.expect_one(kind), 200)
            self.target.respond(forked, 200, body=CALLEE_SDP)
            self.target.expect("ACK")
            self.caller.in_dialog(leg, "BYE")
            self.caller.expect(200)
            self.target.respond(self.target.expect_one("BYE"), 200)

        # The transferred call goes on as the same call: one call in all.
        self.assert_no_garbage(run)

    def test_hold_with_music(self) -> None:
        """A call whose caller holds, hears pbx answer it and the callee music, then resumes, leaves no garbage."""
        track = ((np.arange(8000) % 400) - 200) / 400.0
        self.controller.music = HoldMusic(
            {"default": MusicClass("default", 8000, track)},
            {},
            {"pcmu": PCMU(), "pcma": PCMA()},
            self.controller.media_clock,
        )

        def run() -> None:
            _, leg, _ = self.establish()
            for direction, version in (("sendonly", 2), ("sendrecv", 3)):
                self.caller.in_dialog(
                    leg, "INVITE", body=hold_sdp(CALLER_SDP, direction, version)
                )
                _, ok = self.caller.expect(100, 200)
                assert isinstance(ok, Response)
                self.caller.ack_reinvite(leg)
                self.advance(0.2, step=0.02)
            self.quiet(self.callee)
            self.hang_up(leg)

        self.assert_no_garbage(run)


class ApplicationCallGarbageTests(_GarbageChecks, AppCallTestCase):
    """A call pbx answers itself for an application leaves nothing for the garbage collector."""

    def test_caller_hangs_up(self) -> None:
        """The caller hangs up on the echo application."""

        def run() -> None:
            leg, port = self.connect("*43")
            self.rtp(port, bytes(160))
            self.media(0.2)
            self.bye(leg)

        self.assert_no_garbage(run)

    def test_application_hangs_up(self) -> None:
        """An application plays a beep and hangs up."""

        def run() -> None:
            leg, _ = self.connect("*46")
            self.media(frames("general/beep") * TICK)
            self.caller.respond(self.caller.expect_one("BYE"), 200)

        self.assert_no_garbage(run)
