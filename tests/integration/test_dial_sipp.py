"""
Integration tests: diverters and dialling from applications, with the real
daemon and SIPp phones.

A site plugin (written into the test's directory and named in
``plugin_dirs:``) registers, through :class:`pbx.interfaces.IPBX`:

- the application ``greeting``, which plays ``general/not-available`` and
  hangs up, and a diverter sending every call to 1002 that nobody answers
  to it;
- the application ``connect``, which dials the number in its arguments
  with ``IPBX.dial`` and logs the outcome; ``*60`` routes to it with 1002.

Extension 1002 is a SIPp UAS registered as in :mod:`support.sipp`; the
caller, 1001, is a SIPp UAC whose SDP names a port of the test's own
:class:`RTPRecorder`, which records what pbx sends.  SIPp runs with
``-timeout``; everything else is a bounded poll.
"""

from __future__ import annotations

import json
import math
import re
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from support.apps import RTPRecorder, locate, prompt
from support.calls import (
    RATE,
    call_config,
    dominant_frequency,
    free_udp_block,
    tone_share,
    ulaw,
)
from support.daemon import (
    API,
    Daemon,
    admin_password,
    free_port,
    require_binary,
    strong_password,
)
from support.sipp import CALLEE, CALLER, LIMIT, SIPP_RUNS, SIPpCallCase

pytestmark = pytest.mark.integration

RELAY_PORTS = 40
RING_TIMEOUT = 3
#: What the greeting application plays.
GREETING = "general/not-available"
#: The caller's own tone in the bridged call (Hz), far from ringback's 440 and 480.
CALLER_TONE = 700.0
#: How long the bridged call lasts (SIPp -d, ms).
BRIDGED_MS = 4000

SITE_PLUGIN = '''
"""A site feature for the integration tests: a greeting diverter and a dialling application."""

from zope.interface import implementer

from twisted.application.service import Service
from twisted.logger import Logger
from twisted.plugin import IPlugin

from pbx.calls.dialplan import ToApplication
from pbx.interfaces import IDialplanApplication, IFeature

log = Logger()


@implementer(IDialplanApplication)
class Greeting:
    name = "greeting"

    async def run(self, channel, args):
        await channel.play([args["prompt"]])
        await channel.hangup("greeted")


@implementer(IDialplanApplication)
class Connect:
    name = "connect"

    def __init__(self, pbx):
        self.pbx = pbx

    async def run(self, channel, args):
        outcome = await self.pbx.dial(channel, args["number"])
        log.info("connect outcome {outcome}", outcome=outcome)
        await channel.hangup("connected")


class SiteService(Service):
    def __init__(self, pbx, options):
        self.pbx = pbx
        self.options = options

    def startService(self):
        super().startService()
        self.pbx.register_application(Greeting())
        self.pbx.register_application(Connect(self.pbx))
        self.pbx.add_diverter(self.divert)

    def divert(self, callee, reason):
        if callee in self.options["divert"]:
            log.info("divert {callee} {reason}", callee=callee, reason=reason)
            return ToApplication("greeting", {"prompt": self.options["prompt"]})
        return None


@implementer(IPlugin, IFeature)
class SiteDial:
    name = "sitedial"
    description = "Test feature: greeting diverter and dialling application."

    def parse_options(self, options):
        return dict(options)

    def make_service(self, pbx, options):
        return SiteService(pbx, options)


sitedial = SiteDial()
'''


class TonePhone(RTPRecorder):
    """An :class:`RTPRecorder` that sends a steady PCMU tone instead of silence."""

    def __init__(self, frequency: float) -> None:
        """Precompute one second of the tone, then bind and start as RTPRecorder does."""
        samples = [int(8000 * math.sin(2 * math.pi * frequency * n / RATE)) for n in range(RATE)]
        data = bytes(ulaw(s) for s in samples)
        self.frames = [data[i : i + 160] for i in range(0, len(data), 160)]
        self.sent = 0
        super().__init__()

    def _send(self) -> None:
        sequence, timestamp, ssrc = 1, 0, 0x70BE
        next_at = time.monotonic()
        while not self._stopped.wait(max(0.0, next_at - time.monotonic())):
            next_at += 0.02
            peer = self.peer
            if peer is None:
                continue
            header = struct.pack("!BBHII", 0x80, 0, sequence, timestamp, ssrc)
            try:
                self.socket.sendto(header + self.frames[sequence % len(self.frames)], peer)
            except OSError:
                return
            self.sent += 1
            sequence = (sequence + 1) & 0xFFFF
            timestamp = (timestamp + 160) & 0xFFFFFFFF


class SIPpDialTests(SIPpCallCase):
    """Unanswered calls diverted to a site application, and an application that dials and bridges."""

    def setUp(self) -> None:
        """The daemon with 1001-1003, the site plugin, and ``*60`` routed to ``connect``."""
        self.sipp = require_binary("sipp", "sip-tester")
        self.workdir = Path(self.mktemp()).absolute()
        self.workdir.mkdir(parents=True)
        site = self.workdir / "site"
        site.mkdir()
        (site / "sitedial.py").write_text(SITE_PLUGIN)
        self.api_port = free_port()
        self.sip_port = free_port()
        self.passwords = {n: strong_password(n) for n in (CALLER, CALLEE, "1003")}
        self.relay_first = free_udp_block(RELAY_PORTS + 8 * SIPP_RUNS)
        self.relay_last = self.relay_first + RELAY_PORTS - 1
        self.media_ports = iter(range(self.relay_last + 1, self.relay_last + 1 + 8 * SIPP_RUNS, 8))
        admin = admin_password()
        config = json.loads(call_config(
            api_port=self.api_port, sip_port=self.sip_port, admin_password=admin,
            extensions=self.passwords, transports=("udp",),
            rtp_ports=(self.relay_first, self.relay_last), calls={"ring_timeout": RING_TIMEOUT},
        ))
        config["plugin_dirs"] = [str(site)]
        config["features"] = {"sitedial": {"divert": [CALLEE], "prompt": GREETING}}
        config["dialplan"] = [{"match": "*60", "app": "connect", "args": {"number": CALLEE}}]
        self.daemon = Daemon(str(self.workdir / "pbx"), json.dumps(config, indent=1))
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.api = API(self.api_port, admin)
        self.processes = []
        self.addCleanup(self._kill_all)

    def phone(self, recorder: RTPRecorder) -> RTPRecorder:
        """Close ``recorder`` at the end of the test."""
        self.addCleanup(recorder.close)
        return recorder

    def test_no_answer_diverted(self) -> None:
        """
        1001 calls 1002, whose phone rings and never answers: after the ring
        timeout pbx cancels it, answers 1001 itself (the diverter's greeting
        application, in the dialog of the 180), plays the greeting and
        hangs up.  The records say NO ANSWER ("diverted: no_answer"), then
        ANSWERED.
        """
        recorder = self.phone(RTPRecorder())
        port = self.register_callee()
        callee = self.start_callee("uas_ring", port, 1)
        started = time.monotonic()
        self.call("uac_answered", CALLEE, "-key", "rtp_port", str(recorder.port))
        self.finish(callee, "callee-uas_ring")
        self.assertGreaterEqual(time.monotonic() - started, RING_TIMEOUT)
        self.daemon.wait_for(re.compile(rf"divert {CALLEE} no_answer"), 1)

        heard = recorder.audio()
        r, at = locate(heard, prompt(GREETING))
        self.assertGreater(r, 0.9, f"{GREETING} not heard (r={r:.3f})")
        self.assertLess(at / RATE, 0.5)

        records = self.wait_records(2)
        self.assertEqual(
            [(r["leg"], r["caller"], r["callee"], r["disposition"], r["hangup_cause"]) for r in records],
            [("a", CALLER, CALLEE, "NO ANSWER", "diverted: no_answer"),
             ("a", CALLER, CALLEE, "ANSWERED", "greeted")],
        )
        self.assertEqual(records[0]["call_id"], records[1]["call_id"])
        # The 180 from the callee's phone and pbx's 200 share pbx's To tag.
        messages = (self.workdir / "caller-uac_answered.messages").read_text(errors="replace")
        tags = {}
        for status, headers in re.findall(r"SIP/2\.0 (180|200) [^\r\n]*\r?\n((?:[^\r\n]+\r?\n)*)", messages):
            if re.search(r"^CSeq: *2 INVITE", headers, re.M):
                tags.setdefault(status, set()).update(re.findall(r"^To:[^\r\n]*;tag=([^;\s>]+)", headers, re.M))
        self.assertEqual(sorted(tags), ["180", "200"], messages[-3000:])
        self.assertEqual(len(tags["180"] | tags["200"]), 1, tags)
        self.assert_idle()

    def test_early_media_then_diverted(self) -> None:
        """
        1002's phone answers 183 with SDP (early media) and never answers:
        after the ring timeout the application answers 1001 with the very
        SDP of that 183 (RFC 3261 §13.2.1: one answer per offer), from the
        same port, and the greeting is heard there.
        """
        recorder = self.phone(RTPRecorder())
        port = self.register_callee()
        callee = self.start_callee("uas_ring_early", port, 1)
        self.call("uac_answered", CALLEE, "-key", "rtp_port", str(recorder.port))
        self.finish(callee, "callee-uas_ring_early")
        self.daemon.wait_for(re.compile(rf"divert {CALLEE} no_answer"), 1)
        messages = (self.workdir / "caller-uac_answered.messages").read_text(errors="replace")
        bodies = {}
        for status, rest in re.findall(r"SIP/2\.0 (183|200) [^\n]*\n(.*?)(?=\n-{20,}|\Z)", messages, re.S):
            headers, _, body = rest.replace("\r\n", "\n").partition("\n\n")
            if re.search(r"^CSeq: *2 INVITE", headers, re.M):
                bodies.setdefault(status, body.strip())
        self.assertEqual(sorted(bodies), ["183", "200"], messages[-3000:])
        self.assertIn("m=audio ", bodies["183"])
        self.assertEqual(bodies["200"], bodies["183"])
        media_port = int(re.search(r"^m=audio (\d+)", bodies["183"], re.M).group(1))  # type: ignore[union-attr]
        self.assertTrue(self.relay_first <= media_port <= self.relay_last, media_port)

        heard = recorder.audio()
        r, at = locate(heard, prompt(GREETING))
        self.assertGreater(r, 0.9, f"{GREETING} not heard (r={r:.3f})")
        # What the caller heard came from the port of the 183's answer.
        self.assertEqual(recorder.peer, ("127.0.0.1", media_port))
        self.assert_idle()

    def test_dial_bridged(self) -> None:
        """
        1001 calls ``*60``: pbx answers, ``connect`` dials 1002, whose phone
        rings (1001 hears ringback) and answers with RTP echo; 1001's tone
        goes to 1002 and comes back through both legs; 1001's BYE reaches
        1002; dial() gave "answered", and the callee's leg has its record.
        """
        caller_phone = TonePhone(CALLER_TONE)
        self.phone(caller_phone)
        port = self.register_callee()
        callee = self.start_callee("uas_ring_answer", port, 1, "-rtp_echo")
        self.call("uac_bridged", "*60", "-key", "rtp_port", str(caller_phone.port), "-d", str(BRIDGED_MS))
        self.finish(callee, "callee-uas_ring_answer")
        self.daemon.wait_for(re.compile(r"connect outcome answered"), LIMIT)

        heard = caller_phone.audio().astype(np.float64)
        self.assertGreater(caller_phone.sent, 50, "the caller's tone was never sent")
        ring = heard[: RATE]
        self.assertTrue(
            abs(dominant_frequency(ring.tolist()) - 440) < 5 or abs(dominant_frequency(ring.tolist()) - 480) < 5,
            f"no ringback at the start: {dominant_frequency(ring.tolist())} Hz",
        )
        echoed = heard[int(2.5 * RATE):]
        loud = [int(x) for x in echoed]
        self.assertGreater(tone_share(loud, CALLER_TONE), 0.8, "the caller's tone did not come back")

        records = self.wait_records(2)
        by_leg = {r["leg"]: r for r in records}
        self.assertEqual(
            (by_leg["a"]["callee"], by_leg["a"]["disposition"], by_leg["a"]["hangup_side"]),
            ("*60", "ANSWERED", "a"),
        )
        self.assertEqual(
            {k: by_leg["b"][k] for k in ("caller", "callee", "disposition", "hangup_side", "codecs")},
            {"caller": CALLER, "callee": CALLEE, "disposition": "ANSWERED", "hangup_side": "a", "codecs": "PCMU"},
        )
        self.assertIsNotNone(by_leg["b"]["answer"])
        self.assert_idle()
