"""
Integration test: music on hold and recording by the outside line, with a
baresip phone as the carrier.

pbx has a trunk ``carrier`` whose INVITEs come from loopback
(``allow_from``); its DID +15551230000 rings extension 1002 and has the
music class ``alt`` (made here: tones at 22.05 kHz in stereo).  The trunk
itself and extension 1002 have the class ``own`` (the shipped default
tune), so the DID's class has to win over both.  The recording feature
records every call of the trunk (``trunks: [carrier]``).

The carrier's phone (it plays a 440 Hz keyed tone) calls the DID; 1002
(1000 Hz) answers by itself.  Then:

1. both talk: the carrier hears 1002's keying;
2. 1002 holds (baresip's ``hold``: a re-INVITE with ``a=sendonly``): the
   carrier hears class ``alt``, piece by piece (correlation above 0.9 at
   the best offset of the looped track, as test_moh_baresip.py checks),
   and not ``own``;
3. 1002 resumes, and the carrier hangs up.

The recording the trunk's policy made (started by ``policy``) is a stereo
WAV whose left channel follows the carrier's keying and right channel
1002's, in the talk before the hold.

Only loopback is used.
"""

from __future__ import annotations

import json
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from twisted.trial.unittest import SynchronousTestCase

from pbx.media.music import default_music_dir, load_music_class

from support.baresip import LIMIT, MODULES, NEEDED, Phone, recorded_seconds
from support.calls import RATE, call_config, free_udp_block, keyed_tone, write_pcm_wav
from support.daemon import (
    API,
    Daemon,
    admin_password,
    free_port,
    require_binary,
    strong_password,
    wait_until,
)
from support.keying import PIECE, keying_by_piece, tone_envelope
from support.music import best_match, decoded, write_alt_class

pytestmark = pytest.mark.integration

CARRIER, CALLEE = "9000", "1002"
DID = "+15551230000"
TONES = {CARRIER: (440.0, 31), CALLEE: (1000.0, 32)}
SIGNAL_SECONDS = 60.0
RELAY_PORTS = 40
#: Seconds of each stretch heard, and the margin after each change before it is measured.
STRETCH, SETTLE = 3.0, 0.8


class LinePolicyTests(SynchronousTestCase):
    """A call in from a trunk: held, the caller hears the DID's class; the trunk's policy records it."""

    def setUp(self) -> None:
        """Start pbx with the trunk, the classes and the recording policy, then both phones."""
        self.baresip = require_binary("baresip", "baresip-core")
        missing = [m for m in NEEDED if not (MODULES / f"{m}.so").is_file()]
        if missing:
            raise AssertionError(f"baresip-core is incomplete: no {missing} in {MODULES}")
        self.workdir = Path(self.mktemp()).absolute()
        self.workdir.mkdir(parents=True)
        self.sip_port = free_port()
        passwords = {n: strong_password(n) for n in TONES}
        first = free_udp_block(RELAY_PORTS + 40)
        write_alt_class(self.workdir / "alt")
        admin = admin_password()
        config = json.loads(call_config(
            api_port=(api_port := free_port()), sip_port=self.sip_port, admin_password=admin,
            extensions=passwords, transports=("udp",), rtp_ports=(first, first + RELAY_PORTS - 1),
        ))
        config["moh"] = {"classes": {"alt": str(self.workdir / "alt"), "own": default_music_dir()},
                         "extensions": {CALLEE: "own"}}
        config["trunks"] = {"carrier": {"uri": "sip:127.0.0.1:5", "allow_from": ["127.0.0.1/32"], "moh": "own",
                                        "dids": {DID: {"extension": CALLEE, "moh": "alt"}}}}
        self.recordings = self.workdir / "rec"
        config["features"] = {"recording": {"trunks": ["carrier"], "dir": str(self.recordings), "toggle": ""}}
        self.daemon = Daemon(str(self.workdir / "pbx"), json.dumps(config, indent=1))
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.api = API(api_port, admin)
        self.classes = {name: load_music_class(name, folder).pcm(RATE).astype(np.float64)
                        for name, folder in (("alt", str(self.workdir / "alt")), ("own", default_music_dir()))}
        self.patterns: dict[str, list[bool]] = {}
        self.phones: dict[str, Phone] = {}
        for index, (number, answer) in enumerate(((CARRIER, False), (CALLEE, True))):
            frequency, seed = TONES[number]
            samples, self.patterns[number] = keyed_tone(frequency, SIGNAL_SECONDS, seed)
            write_pcm_wav(self.workdir / f"signal-{number}.wav", samples)
            phone = Phone(self.baresip, self.workdir / f"baresip-{number}", number, passwords[number],
                          self.sip_port, Path("..", f"signal-{number}.wav"), first + RELAY_PORTS + 20 * index, answer)
            self.addCleanup(phone.stop)
            self.phones[number] = phone
            wait_until(lambda n=number: [r for r in self.api.registrations() if r["extension"] == n], LIMIT,
                       f"{number}'s registration")

    def stretch(self, phone: Phone, what: str) -> tuple[np.ndarray, float]:
        """The next :data:`STRETCH` seconds ``phone`` decodes, after :data:`SETTLE`: (audio, start in seconds)."""
        start = recorded_seconds(phone) + SETTLE
        try:
            wait_until(lambda: recorded_seconds(phone) >= start + STRETCH, LIMIT, what)
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- pbx\n" + "\n".join(list(self.daemon.output)[-30:])) from None
        return decoded(phone)[int(start * RATE): int((start + STRETCH) * RATE)], start

    def follows(self, audio: np.ndarray, start: float, talker: str) -> list[float]:
        """How well each half second of ``audio`` (from ``start`` s of its recording) follows ``talker``'s keying."""
        envelope = tone_envelope(audio, TONES[talker][0])
        return [r for r, _ in keying_by_piece(envelope, self.patterns[talker], round(start * 50))]

    def held(self) -> bool:
        """Whether the API shows 1002's leg (b) of the one live call held."""
        [call] = self.api.get("/calls")["calls"]
        return bool(call["media"]["b"]["held"])

    def test_did_class_and_trunk_recording(self) -> None:
        """
        Held by 1002, the caller from the trunk hears the DID's class ``alt``,
        not 1002's or the trunk's ``own``; the trunk's policy recorded the
        call, the carrier on the left channel and 1002 on the right.
        """
        carrier, callee = self.phones[CARRIER], self.phones[CALLEE]
        carrier.control.command("dial", f"sip:{DID}@127.0.0.1:{self.sip_port}")
        for phone in (carrier, callee):
            phone.control.event("CALL_ESTABLISHED")
        talk, start = self.stretch(carrier, "talk before the hold")
        scores = self.follows(talk, start, CALLEE)
        self.assertGreaterEqual(sum(r > 0.8 for r in scores), len(scores) - 1, f"carrier hearing 1002: {scores}")

        callee.control.command("hold")
        wait_until(self.held, LIMIT, "1002's hold")
        music, _ = self.stretch(carrier, "1002 holding")
        pieces = [music[i: i + PIECE * 160] for i in range(0, len(music) - PIECE * 160 + 1, PIECE * 160)]
        alt = [best_match(p, self.classes["alt"]) for p in pieces]
        own = [best_match(p, self.classes["own"]) for p in pieces]
        self.assertGreaterEqual(sum(s > 0.9 for s in alt), len(alt) - 1, f"carrier hearing alt: {alt}")
        self.assertLess(max(own), 0.6, f"carrier hearing own: {own}")

        callee.control.command("resume")
        wait_until(lambda: not self.held(), LIMIT, "the resume")
        time.sleep(1.0)  # real phones talk in real time
        carrier.control.command("hangup")
        for phone in (carrier, callee):
            phone.control.event("CALL_CLOSED")

        [meta] = wait_until(
            lambda: [r for r in self.api.get("/recordings/")["recordings"] if r["status"] == "complete"] or None,
            LIMIT, "the complete recording")
        self.assertEqual((meta["caller"], meta["callee"], meta["started_by"], meta["channels"]),
                         (CARRIER, CALLEE, "policy", 2))
        with wave.open(str(self.recordings / f"{meta['id']}.wav")) as w:
            self.assertEqual((w.getnchannels(), w.getframerate()), (2, RATE))
            audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2).astype(np.float64)
        # The talk before the hold (the recording starts at the answer).
        spoken = audio[int(0.5 * RATE): int((0.5 + STRETCH) * RATE)]
        for channel, talker, other in ((0, CARRIER, CALLEE), (1, CALLEE, CARRIER)):
            envelope = tone_envelope(spoken[:, channel], TONES[talker][0])
            scores = [r for r, _ in keying_by_piece(envelope, self.patterns[talker], 25)]
            self.assertGreaterEqual(sum(r > 0.8 for r in scores), len(scores) - 1,
                                    f"channel {channel} following {talker}: {scores}")
            self.assertLess(tone_envelope(spoken[:, channel], TONES[other][0]).mean(), envelope.mean() / 10,
                            f"channel {channel} holding {other}'s tone")
        self.assertFalse(self.daemon.tracebacks)
