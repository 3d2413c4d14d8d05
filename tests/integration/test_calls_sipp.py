"""
Integration tests: calls through pbx between SIPp phones.

pbx is a B2BUA: the caller's dialog (leg ``a``, pbx the UAS) and the
callee's (leg ``b``, pbx the UAC) are two dialogs with their own Call-IDs,
and the media of both is anchored on pbx's RTP relay.  Every test here
starts the real daemon, registers extension 1002 from a SIPp instance
(``register_auth.xml``), runs a SIPp UAS scenario on that same port (pbx
sends the callee's INVITE to the address the REGISTER came from) and calls
1002 as 1001 from a SIPp UAC scenario with proxy authentication.

Each scenario succeeds only if every message it expects arrives in order;
SIPp exits 0 only when every call of the run succeeded.  SIPp cannot take
an expected response code from the command line, so ``uac_refused.xml``
logs the final status it got and the test reads that line.

Whether pbx leaked relay ports is seen from outside: the relay's range is
reserved for the test, so once the calls are over nothing may be bound in
it (``/proc/net/udp``), and every ``RelayEndpoint starting on N`` line of
the daemon's log must have its ``(UDP Port N Closed)``.

Everything is bounded: SIPp runs with ``-timeout`` and the test waits for
its exit with a time limit; the API and the log are polled, never slept on.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest

from support.daemon import wait_until
from support.sipp import (
    ABSENT,
    CALLEE,
    CALLER,
    LIMIT,
    MEDIA_TIMEOUT,
    RING_TIMEOUT,
    SIPpCallCase,
)

pytestmark = pytest.mark.integration

#: The load test: calls, calls per second, and the length of each call (ms).
CALLS = 100
RATE = 10
CALL_MS = 1000


class SIPpCallTests(SIPpCallCase):
    """Answered calls: many in a row, hold and unhold, and a phone that dies."""

    def config(self, **kwargs: Any) -> str:
        """
        The daemon with ``moh.enabled: false``: a hold re-INVITE goes on to
        the callee, as these scenarios expect (music on hold is tested in
        test_moh_baresip.py).
        """
        config = json.loads(super().config(**kwargs))
        config["moh"] = {"enabled": False}
        return json.dumps(config, indent=1)

    def test_hundred_calls(self) -> None:
        """
        100 authenticated calls at 10/s, each with a second of RTP echoed by
        the callee, all succeed; each leaves one ANSWERED record per leg, the
        two legs are separate dialogs, media flowed both ways through the
        relay, and no relay port is left open.
        """
        port = self.register_callee()
        callee = self.start_callee("uas_answer", port, CALLS, "-rtp_echo")
        caller = self.call(
            "uac_call_rtp", CALLEE,
            "-r", str(RATE), "-l", "40", "-d", str(CALL_MS),
            calls=CALLS, wait=False,
        )  # fmt: skip

        # While SIPp calls, note what the relay of each call has carried
        # (sampled every 0.1 s: this watches, it waits for nothing).
        carried: dict[str, tuple[int, int]] = {}
        deadline = time.monotonic() + 120
        while caller.poll() is None and time.monotonic() < deadline:
            for live in self.live_calls():
                media = live.get("media") or {}
                if live["state"] == "confirmed" and media:
                    carried[live["call_id"]] = (
                        media["a_to_b"]["packets"],
                        media["b_to_a"]["packets"],
                    )
            time.sleep(0.1)
        self.finish(caller, "caller-uac_call_rtp")
        self.finish(callee, "callee-uas_answer")

        records = self.wait_records(2 * CALLS)
        self.assertEqual(len(records), 2 * CALLS)
        a = [r for r in records if r["leg"] == "a"]
        b = [r for r in records if r["leg"] == "b"]
        self.assertEqual(len(a), CALLS)
        self.assertEqual(len(b), CALLS)
        # SIPp's Call-IDs are <call number>-<pid>@<local ip>.
        expected = {f"{n}-{caller.pid}@127.0.0.1" for n in range(1, CALLS + 1)}
        self.assertEqual({r["call_id"] for r in a}, expected)
        self.assertEqual(len({r["call_id"] for r in b}), CALLS)
        self.assertFalse(expected & {r["call_id"] for r in b})
        for r in records:
            self.assertEqual(
                (r["caller"], r["callee"], r["disposition"], r["codecs"]),
                (CALLER, CALLEE, "ANSWERED", "PCMU"),
                r,
            )
            self.assertEqual((r["hangup_side"], r["hangup_cause"]), ("a", "BYE"), r)
            self.assertIsNotNone(r["answer"])
            self.assertGreaterEqual(r["end"] - r["answer"], CALL_MS / 1000 - 0.2, r)

        # Media went both ways through the relay in the calls seen live.
        both_ways = [c for c, (ab, ba) in carried.items() if ab > 0 and ba > 0]
        # Each call lasts over a second, so sampling sees (nearly) every one.
        self.assertGreaterEqual(len(both_ways), CALLS * 9 // 10, carried)
        self.assertTrue(set(carried) <= expected)
        self.assert_idle()

    def test_hold_and_unhold(self) -> None:
        """
        The caller's re-INVITE with sendonly is answered recvonly, and the
        one with sendrecv sendrecv; the callee receives both re-INVITEs, and
        the relay holds the caller's media in between.
        """
        port = self.register_callee()
        callee = self.start_callee("uas_hold", port, 1)
        caller = self.call("uac_hold", CALLEE, "-d", "1000", wait=False)
        # Meanwhile, the relay stops sending to the caller while it holds
        # (sampled every 0.1 s; each state lasts 1 s, -d).
        held: list[bool] = []
        deadline = time.monotonic() + 60
        while caller.poll() is None and time.monotonic() < deadline:
            for live in self.live_calls():
                if live["state"] == "confirmed" and live.get("media"):
                    state = live["media"]["a"]["held"]
                    if not held or held[-1] != state:
                        held.append(state)
            time.sleep(0.1)
        self.finish(caller, "caller-uac_hold")
        self.finish(callee, "callee-uas_hold")
        self.assertEqual(held, [False, True, False])
        caller_log = (self.workdir / "caller-uac_hold.log").read_text()
        callee_log = (self.workdir / "callee-uas_hold.log").read_text()
        self.assertIn("answer: a=recvonly", caller_log)
        self.assertIn("answer: a=sendrecv", caller_log)
        self.assertIn("offer: a=sendonly", callee_log)
        self.assertIn("offer: a=sendrecv", callee_log)
        records = self.wait_records(2)
        self.assertEqual(
            sorted((r["leg"], r["disposition"]) for r in records),
            [("a", "ANSWERED"), ("b", "ANSWERED")],
        )
        self.assert_idle()

    def test_dead_phone(self) -> None:
        """
        When the caller's phone dies mid-call (SIGKILL), the media timeout
        ends the call: the callee gets a BYE, the call leaves the API and its
        record says "media timeout".
        """
        port = self.register_callee()
        callee = self.start_callee("uas_answer", port, 1, "-rtp_echo")
        caller = self.call("uac_call_rtp", CALLEE, "-d", "60000", wait=False)

        def flowing() -> bool:
            for live in self.live_calls():
                media = live.get("media") or {}
                if (
                    media
                    and min(media["a_to_b"]["packets"], media["b_to_a"]["packets"])
                    >= 25
                ):
                    return True
            return False

        wait_until(flowing, LIMIT, "half a second of media both ways")
        os.kill(caller.pid, signal.SIGKILL)
        killed = time.monotonic()
        caller.wait(30)

        wait_until(
            lambda: not self.live_calls(), 3 * MEDIA_TIMEOUT, "the dead call to end"
        )
        ended = time.monotonic() - killed
        # The watchdog runs every 5 s: the call ends 6 to 11 s after the last packet.
        self.assertGreaterEqual(ended, MEDIA_TIMEOUT - 1)
        self.assertLess(ended, MEDIA_TIMEOUT + 9)
        # The callee got its BYE (the scenario ends only with BYE -> 200).
        self.finish(callee, "callee-uas_answer", limit=LIMIT)
        records = self.wait_records(2)
        for r in records:
            self.assertEqual(
                (r["disposition"], r["hangup_side"], r["hangup_cause"]),
                ("ANSWERED", "pbx", "media timeout"),
                r,
            )
        self.assertEqual(sorted(r["leg"] for r in records), ["a", "b"])
        self.assert_idle()


class SIPpOutcomeTests(SIPpCallCase):
    """Calls that are not answered end with the right status for the caller and the right record."""

    def refused(self, scenario: str, status: str) -> dict[str, Any]:
        """
        The callee refuses with ``status`` (its UAS ``scenario`` requires
        pbx's ACK); the caller gets it.

        :returns: the call's one record.
        """
        port = self.register_callee()
        callee = self.start_callee(scenario, port, 1)
        self.call("uac_refused")
        self.finish(callee, f"callee-{scenario}")
        self.assertEqual(self.final_status("uac_refused"), status)
        [record] = self.wait_records(1)
        self.assertEqual(
            (record["leg"], record["caller"], record["callee"]), ("a", CALLER, CALLEE)
        )
        self.assertIsNone(record["answer"])
        self.assertTrue(record["hangup_cause"].startswith(status), record)
        self.assert_idle()
        return record

    def test_busy(self) -> None:
        """The callee answers 486: the caller gets 486 and the record says BUSY."""
        record = self.refused("uas_busy", "486")
        self.assertEqual((record["disposition"], record["hangup_side"]), ("BUSY", "b"))

    def test_decline(self) -> None:
        """The callee answers 603: the caller gets 603; the record counts it as BUSY, refused by the callee."""
        record = self.refused("uas_decline", "603")
        self.assertEqual((record["disposition"], record["hangup_side"]), ("BUSY", "b"))

    def test_no_answer(self) -> None:
        """
        The callee rings and never answers: after calls.ring_timeout pbx
        cancels its INVITE (the callee's scenario requires the CANCEL) and
        the caller gets 480; the record says NO ANSWER.
        """
        port = self.register_callee()
        callee = self.start_callee("uas_ring", port, 1)
        started = time.monotonic()
        self.call("uac_refused")
        rang = time.monotonic() - started
        self.finish(callee, "callee-uas_ring")
        self.assertEqual(self.final_status("uac_refused"), "480")
        self.assertGreaterEqual(rang, RING_TIMEOUT)
        self.assertLess(rang, RING_TIMEOUT + 5)
        [record] = self.wait_records(1)
        self.assertEqual((record["leg"], record["disposition"]), ("a", "NO ANSWER"))
        self.assertIsNone(record["answer"])
        self.assert_idle()

    def test_caller_cancels(self) -> None:
        """
        The caller cancels while the callee rings: the caller gets 200 for the
        CANCEL and 487 for the INVITE, the callee gets a CANCEL, and the
        record says CANCELLED, ended by the caller.
        """
        port = self.register_callee()
        callee = self.start_callee("uas_ring", port, 1)
        self.call("uac_cancel", CALLEE, "-d", "500")
        self.finish(callee, "callee-uas_ring")
        log = (self.workdir / "caller-uac_cancel.log").read_text()
        self.assertIn("200 for 2 CANCEL", log)
        self.assertIn("487 for 2 INVITE", log)
        [record] = self.wait_records(1)
        self.assertEqual(
            (record["leg"], record["disposition"], record["hangup_side"]),
            ("a", "CANCELLED", "a"),
        )
        self.assertIsNone(record["answer"])
        self.assert_idle()

    def test_unregistered_callee(self) -> None:
        """Calling an extension with no registered phone gets 480, and no call is set up."""
        self.call("uac_refused", ABSENT)
        self.assertEqual(self.final_status("uac_refused"), "480")
        self.assertEqual(self.records(), [])
        self.assert_idle()

    def test_unknown_number(self) -> None:
        """Calling a number that is no extension and matches no route gets 404."""
        self.call("uac_refused", "9999")
        self.assertEqual(self.final_status("uac_refused"), "404")
        self.assertEqual(self.records(), [])
        self.assert_idle()

    def test_wrong_password(self) -> None:
        """A caller whose credentials are wrong is challenged again with 407, and no call starts."""
        self.register_callee()
        self.call("uac_wrong_password", CALLEE, password=self.passwords[CALLER] + "x")
        self.assertEqual(self.records(), [])
        self.assertFalse(
            [line for line in self.daemon.output if f"call {CALLER} -> " in line]
        )
        self.assert_idle()
