"""
Integration test: a call between two baresip phones through pbx, with real
audio both ways.

Each phone plays its own test signal into the call and records what it
hears, so the test can compare the decoded audio with what the other phone
sent:

- baresip 1.0's ``aufile`` module is an audio *source* only: it plays an
  8 kHz mono 16-bit WAV file (``audio_source aufile,<file>``).  When the
  file ends, baresip hangs up, so the files are longer than the call.
- its ``sndfile`` audio filter records, per call, what goes to the encoder
  (``dump-<time>-enc.wav``) and what came out of the decoder
  (``dump-<time>-dec.wav``) into ``snd_path``; no audio player is needed
  (the receive pipeline runs without one).
- ``net_interface 127.0.0.1`` keeps baresip's SDP on loopback.
- ``ctrl_tcp`` (with ``menu`` for the commands) takes ``dial`` and
  ``hangup`` as netstring-framed JSON and reports call events the same way.
- the callee's account has ``answermode=auto``.

The signals are keyed tones: the caller sends 440 Hz and the callee 1000
Hz, each switched on and off in 20 ms slots by its own pseudo-random
pattern.  What a phone recorded must be the other's tone (dominant
frequency within a few hertz, most of each loud frame's energy at it, and
almost none at its own tone) and its on/off envelope must line up with the
other's pattern (normalised cross-correlation well above 0.5).  A phone
that heard nothing, its own audio, or noise fails.

Only loopback is used: the phones bind 127.0.0.1 and name it in their SDP,
and pbx's relay binds 127.0.0.1.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.baresip import LIMIT, MODULES, NEEDED, Phone
from support.calls import (
    call_config,
    free_udp_block,
    heard_problems,
    keyed_tone,
    write_pcm_wav,
)
from support.daemon import (
    API,
    Daemon,
    admin_password,
    free_port,
    require_binary,
    strong_password,
    wait_until,
)

pytestmark = pytest.mark.integration

CALLER, CALLEE = "1001", "1002"
#: Each side's tone (Hz) and keying seed.
TONES = {CALLER: (440.0, 1), CALLEE: (1000.0, 2)}
#: Length of the signal files (s): longer than the call (baresip hangs up when its file ends).
SIGNAL_SECONDS = 12.0
#: Audio each way (20 ms packets) the call carries before the test hangs up: 3 s.
PACKETS = 150
RELAY_PORTS = 40


class BaresipCallTests(SynchronousTestCase):
    """Two baresip phones call each other through pbx and hear each other."""

    def setUp(self) -> None:
        self.baresip = require_binary("baresip", "baresip-core")
        missing = [m for m in NEEDED if not (MODULES / f"{m}.so").is_file()]
        if missing:
            raise AssertionError(
                f"baresip-core is incomplete: no {missing} in {MODULES}"
            )
        self.workdir = Path(self.mktemp()).absolute()
        self.workdir.mkdir(parents=True)
        self.sip_port = free_port()
        self.api_port = free_port()
        self.passwords = {n: strong_password(n) for n in (CALLER, CALLEE)}
        # One block: pbx's relay, then 20 ports for each phone's RTP.
        first = free_udp_block(RELAY_PORTS + 40)
        self.relay = (first, first + RELAY_PORTS - 1)
        self.phone_rtp = {CALLER: first + RELAY_PORTS, CALLEE: first + RELAY_PORTS + 20}
        admin = admin_password()
        self.daemon = Daemon(
            str(self.workdir / "pbx"),
            call_config(
                api_port=self.api_port,
                sip_port=self.sip_port,
                admin_password=admin,
                extensions=self.passwords,
                transports=("udp",),
                rtp_ports=self.relay,
            ),
        )
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.api = API(self.api_port, admin)
        self.patterns: dict[str, list[bool]] = {}

    def start_phone(self, number: str, answer: bool) -> Phone:
        """Write ``number``'s signal file and start its phone; wait for its registration."""
        frequency, seed = TONES[number]
        samples, self.patterns[number] = keyed_tone(frequency, SIGNAL_SECONDS, seed)
        source = self.workdir / f"signal-{number}.wav"
        write_pcm_wav(source, samples)
        phone = Phone(
            self.baresip,
            self.workdir / f"baresip-{number}",
            number,
            self.passwords[number],
            self.sip_port,
            # Relative to baresip's working directory (the line above): it
            # cuts configuration values short, and a test's path is long.
            Path("..", source.name),
            self.phone_rtp[number],
            answer,
        )
        self.addCleanup(phone.stop)
        try:
            wait_until(
                lambda: [
                    r for r in self.api.registrations() if r["extension"] == number
                ],
                LIMIT,
                f"{number}'s registration",
            )
        except AssertionError as e:
            raise AssertionError(f"{e}\n{phone.output()[-3000:]}") from None
        return phone

    def carried(self) -> tuple[int, int] | None:
        """Packets the relay carried each way in the one live call, if any."""
        calls = self.api.get("/calls")["calls"]
        if len(calls) != 1 or calls[0]["state"] != "confirmed":
            return None
        media = calls[0]["media"]
        return media["a_to_b"]["packets"], media["b_to_a"]["packets"]

    def assert_heard(self, listener: str, talker: str, audio: list[int]) -> None:
        """``audio``, recorded by ``listener``, is ``talker``'s signal and not the listener's own."""
        problems = heard_problems(
            audio, talker=TONES[talker][0], own=TONES[listener][0], pattern=self.patterns[talker]
        )
        self.assertEqual(problems, [], f"{listener} hearing {talker}")

    def test_audio_both_ways(self) -> None:
        """
        1001 calls 1002, which answers by itself; each hears the other's
        tone and keying pattern through pbx's relay; 1001 hangs up and both
        legs are recorded as ANSWERED.
        """
        caller = self.start_phone(CALLER, answer=False)
        callee = self.start_phone(CALLEE, answer=True)
        caller.control.command("dial", CALLEE)
        caller.control.event("CALL_ESTABLISHED")
        callee.control.event("CALL_ESTABLISHED")

        # Hang up once the relay has carried 3 s of audio each way.
        wait_until(
            lambda: (c := self.carried()) and min(c) >= PACKETS,
            LIMIT,
            f"{PACKETS} packets each way through the relay",
        )
        caller.control.command("hangup")
        caller.control.event("CALL_CLOSED")
        callee.control.event("CALL_CLOSED")

        records = wait_until(
            lambda: r if len(r := self.api.get("/cdr")["records"]) >= 2 else None,
            LIMIT,
            "the call's records",
        )
        self.assertEqual(sorted(r["leg"] for r in records), ["a", "b"])
        for r in records:
            # baresip answers with every codec it shares; the first is used.
            self.assertEqual(
                (r["caller"], r["callee"], r["disposition"], r["codecs"].split(",")[0]),
                (CALLER, CALLEE, "ANSWERED", "PCMU"),
            )
            self.assertEqual((r["hangup_side"], r["hangup_cause"]), ("a", "BYE"))
            self.assertGreater(r["end"] - r["answer"], PACKETS * 0.02 - 0.5)
        self.assertEqual(self.api.get("/calls")["calls"], [])

        # Each phone received its RTP from a relay port of pbx, not from the other phone.
        for phone in (caller, callee):
            source = re.search(r"receiving from 127\.0\.0\.1:(\d+)", phone.output())
            self.assertIsNotNone(source, phone.output()[-3000:])
            assert source is not None
            self.assertTrue(self.relay[0] <= int(source.group(1)) <= self.relay[1])

        # Stopping baresip closes the recordings.
        self.assertEqual(caller.stop(), 0)
        self.assertEqual(callee.stop(), 0)
        self.assert_heard(CALLER, CALLEE, caller.heard())
        self.assert_heard(CALLEE, CALLER, callee.heard())
        self.assertFalse([line for line in self.daemon.output if "malformed" in line])
        self.assertFalse(self.daemon.tracebacks)
