"""
Integration tests: calls that start without SDP (delayed offer, RFC 3261
§13.2.1 and §13.3.1, RFC 3264 §5) against the real daemon, driven by SIPp.

The caller (``sipp/uac_delayed_offer*.xml``) sends its INVITEs without a
body, requires an offer in pbx's 200 and answers it in its ACK:

- to ``*43``, the echo test, pbx answers itself: its 200 offers its own
  codecs and the echo starts at the ACK.  The answer names the port of the
  test's own RTP peer, which sends a 440 Hz tone once pbx's audio arrives
  (symmetric RTP) and records what comes back: the introduction, then the
  tone.
- to extension 1002, a SIPp UAS (``sipp/uas_delayed_offer.xml``, with
  ``-rtp_echo``) gets an INVITE without SDP too, offers PCMU in its 200,
  and requires the answer in pbx's ACK; the caller's SIPp sends RTP through
  pbx's relay and the callee echoes it, so media crosses the relay both ways.

Everything is bounded: SIPp runs with ``-timeout``, the test waits for its
exit with a time limit, and polls the API, never sleeping on pbx.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

import pytest

from support.apps import RTPRecorder, apps_config, prompt_seconds
from support.calls import (
    RATE,
    tone_share,
    ulaw,
)
from support.daemon import (
    wait_until,
)
from support.sipp import (
    CALLEE,
    CALLER,
    LIMIT,
    SIPpCallCase,
)

pytestmark = pytest.mark.integration

#: The tone the test's RTP peer sends to the echo test.
TONE = 440.0
#: One second of it as PCMU (440 whole periods: it loops without a seam).
TONE_ULAW = bytes(
    ulaw(round(8000 * math.sin(2 * math.pi * TONE * n / RATE))) for n in range(RATE)
)


class TonePeer(RTPRecorder):
    """
    :class:`~support.apps.RTPRecorder` sending a 440 Hz tone instead of
    silence, 20 ms packets, to wherever pbx's RTP comes from.
    """

    def _send(self) -> None:
        sequence, timestamp, ssrc = 1, 0, 0x70FE
        next_at = time.monotonic()
        while not self._stopped.wait(max(0.0, next_at - time.monotonic())):
            next_at += 0.02
            peer = self.peer
            if peer is None:
                continue
            start = timestamp % RATE
            payload = (TONE_ULAW + TONE_ULAW)[start : start + 160]
            header = bytes([0x80, 0]) + sequence.to_bytes(2, "big")
            header += timestamp.to_bytes(4, "big") + ssrc.to_bytes(4, "big")
            try:
                self.socket.sendto(header + payload, peer)
            except OSError:
                return
            sequence = (sequence + 1) & 0xFFFF
            timestamp = (timestamp + 160) & 0xFFFFFFFF


class SIPpDelayedOfferTests(SIPpCallCase):
    """Offer-less INVITEs from SIPp: answered by pbx itself, and through the B2BUA."""

    def config(self, **kwargs: Any) -> str:
        """As :class:`SIPpCallCase`, with the echo feature and ``*43`` routed to it."""
        return apps_config(**kwargs)

    def logged(self, name: str, label: str) -> str:
        """The one ``<label>: ...`` line a SIPp run logged, without the label."""
        log = (self.workdir / f"{name}.log").read_text(errors="replace")
        found = re.findall(rf"{label}: ([^\r\n]*)", log)
        self.assertEqual(len(found), 1, log)
        return found[0].strip()

    def test_echo(self) -> None:
        """
        ``*43`` called without SDP: pbx's 200 offers PCMU, PCMA, G.722 and
        telephone-event; after the ACK's answer the introduction plays and
        then the caller's tone comes back; the record names PCMU.
        """
        peer = TonePeer()
        self.addCleanup(peer.close)
        intro = prompt_seconds("echo/intro")
        length = intro + 3.0
        self.call(
            "uac_delayed_offer", "*43",
            "-key", "rtp_port", str(peer.port), "-d", str(round(length * 1000)),
        )  # fmt: skip

        offer = self.logged("caller-uac_delayed_offer", "offer")
        found = re.fullmatch(r"m=audio (\d+) RTP/AVP 0 8 9 101", offer)
        self.assertIsNotNone(found, offer)
        assert found is not None
        self.assertTrue(self.relay_first <= int(found.group(1)) <= self.relay_last)

        [record] = wait_until(
            lambda: self.records() or None, LIMIT, "the call's record"
        )
        self.assertEqual(
            {k: record[k] for k in ("caller", "callee", "disposition", "codecs")},
            {
                "caller": CALLER,
                "callee": "*43",
                "disposition": "ANSWERED",
                "codecs": "PCMU",
            },
        )
        self.assertEqual((record["hangup_side"], record["hangup_cause"]), ("a", "BYE"))

        heard = peer.audio()
        self.assertGreater(len(heard), 0, "no RTP from pbx")
        # The introduction first, then (half a second on, the echo's own
        # delay aside) the tone the peer sent, for at least a second.
        echoed = heard[round((intro + 0.5) * RATE) :]
        self.assertGreater(len(echoed), RATE, f"{len(heard) / RATE:.2f}s heard")
        self.assertGreater(tone_share(echoed.tolist(), TONE), 0.8)
        self.assertLess(tone_share(heard[: round(intro * RATE)].tolist(), TONE), 0.3)
        self.assert_idle()

    def test_through_b2bua(self) -> None:
        """
        1001 calls 1002 without SDP: 1002's INVITE has none, its offer
        reaches 1001 through the relay, 1001's answer reaches 1002 in pbx's
        ACK, also through the relay, and RTP crosses the relay both ways.
        """
        port = self.register_callee()
        callee = self.start_callee("uas_delayed_offer", port, 1, "-rtp_echo")
        caller = self.call(
            "uac_delayed_offer_rtp", CALLEE, "-d", "3000", wait=False
        )  # fmt: skip
        carried: dict[str, tuple[int, int]] = {}
        deadline = time.monotonic() + 60
        while caller.poll() is None and time.monotonic() < deadline:
            for live in self.live_calls():
                media = live.get("media") or {}
                if live["state"] == "confirmed" and media:
                    carried[live["call_id"]] = (
                        media["a_to_b"]["packets"],
                        media["b_to_a"]["packets"],
                    )
            time.sleep(0.1)
        self.finish(caller, "caller-uac_delayed_offer_rtp")
        self.finish(callee, "callee-uas_delayed_offer")

        # The caller got the callee's PCMU first, at a relay port.
        offer = self.logged("caller-uac_delayed_offer_rtp", "offer")
        found = re.fullmatch(r"m=audio (\d+) RTP/AVP 0( \d+)*", offer)
        self.assertIsNotNone(found, offer)
        assert found is not None
        self.assertTrue(self.relay_first <= int(found.group(1)) <= self.relay_last)
        # The callee's ACK carried the answer: PCMU at another relay port.
        answer = self.logged("callee-uas_delayed_offer", "answer")
        found = re.fullmatch(r"c=IN IP4 127\.0\.0\.1 m=audio (\d+) RTP/AVP 0", answer)
        self.assertIsNotNone(found, answer)
        assert found is not None
        self.assertTrue(self.relay_first <= int(found.group(1)) <= self.relay_last)

        [(a_to_b, b_to_a)] = carried.values()
        # Three seconds of 50 packets/s each way; the first ones may precede the sampling.
        self.assertGreater(a_to_b, 50, carried)
        self.assertGreater(b_to_a, 50, carried)

        records = self.wait_records(2)
        self.assertEqual(sorted(r["leg"] for r in records), ["a", "b"])
        for r in records:
            self.assertEqual(
                (r["caller"], r["callee"], r["disposition"], r["codecs"]),
                (CALLER, CALLEE, "ANSWERED", "PCMU"),
                r,
            )
            self.assertEqual((r["hangup_side"], r["hangup_cause"]), ("a", "BYE"), r)
        self.assert_idle()
