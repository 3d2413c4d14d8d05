"""
Integration test: hold and music on hold between two baresip phones, with
real audio.

1001 calls 1002 (which answers by itself).  Each phone plays its own keyed
tone (440 Hz and 1000 Hz, switched on and off in 20 ms slots by its own
pseudo-random pattern) and records what it decodes.  Then:

1. one phone holds (baresip's ``hold`` command: a re-INVITE with
   ``a=sendonly``).  pbx answers it itself; the other phone gets no
   re-INVITE and hears the music class of the holder: the default class
   pbx ships for 1001, 1002's own class ``alt`` (made here: tones at
   22.05 kHz in stereo, which pbx converts at load) for 1002.
2. it resumes: the other phone hears its keyed tone again, and the relay
   carries the other phone's packets to it again.  (baresip 1.0 stops
   writing what it decodes once it has held a call, also when the hold is
   passed on to the other phone; so the holder's side after the resume is
   read from the relay's counters.)

The caller holds in one test, the callee in the other.

"Hears the class" is checked by correlation: each half second of what the
phone recorded is compared with the class's track at 8 kHz (as pbx
converts it), at the best offset in the looped track; most pieces must
match above 0.9.  "Hears the other" is the keyed tone's envelope, frame by
frame, correlated with the pattern sent, as the conference test does.
The API's live call shows the holder's leg held while it holds.

Only loopback is used: the phones and pbx's relay bind 127.0.0.1.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from twisted.trial.unittest import SynchronousTestCase

from pbx.media.music import default_music_dir, load_music_class

from support.baresip import LIMIT, MODULES, NEEDED, Phone, recorded_seconds
from support.calls import (
    FRAME,
    RATE,
    call_config,
    free_udp_block,
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
from support.music import best_match, decoded, write_alt_class

pytestmark = pytest.mark.integration

CALLER, CALLEE = "1001", "1002"
TONES = {CALLER: (440.0, 1), CALLEE: (1000.0, 2)}
SIGNAL_SECONDS = 60.0
RELAY_PORTS = 40
#: Seconds of each stretch, and the margin after each change before it is measured.
STRETCH, SETTLE = 3.0, 0.8
#: Frames of each piece correlated on its own (0.5 s).
PIECE = 25




def tone_envelope(audio: np.ndarray, frequency: float) -> np.ndarray:
    """The amplitude of ``frequency`` in each 20 ms frame of ``audio``."""
    frames = audio[: len(audio) // FRAME * FRAME].reshape(-1, FRAME)
    t = np.arange(FRAME) / RATE
    c = frames @ np.cos(2 * np.pi * frequency * t)
    s = frames @ np.sin(2 * np.pi * frequency * t)
    return np.sqrt(c * c + s * s) * 2 / FRAME


def keying(envelope: np.ndarray, pattern: list[bool]) -> float:
    """The best correlation of ``envelope`` with the keying pattern at any lag."""
    sent = np.asarray(pattern, dtype=np.float64)
    best = -1.0
    for first in range(0, len(sent) - len(envelope)):
        window = sent[first : first + len(envelope)]
        if window.std() and envelope.std():
            best = max(best, float(np.corrcoef(envelope, window)[0, 1]))
    return best


class BaresipHoldTests(SynchronousTestCase):
    """Two baresip phones: each holds in turn, the other hears music, and the call comes back."""

    def setUp(self) -> None:
        """Start the daemon with music on hold: the shipped default class, and ``alt`` for 1002."""
        self.baresip = require_binary("baresip", "baresip-core")
        missing = [m for m in NEEDED if not (MODULES / f"{m}.so").is_file()]
        if missing:
            raise AssertionError(
                f"baresip-core is incomplete: no {missing} in {MODULES}"
            )
        self.workdir = Path(self.mktemp()).absolute()
        self.workdir.mkdir(parents=True)
        self.sip_port = free_port()
        api_port = free_port()
        self.passwords = {n: strong_password(n) for n in TONES}
        first = free_udp_block(RELAY_PORTS + 40)
        self.phone_rtp = {CALLER: first + RELAY_PORTS, CALLEE: first + RELAY_PORTS + 20}
        write_alt_class(self.workdir / "alt")
        admin = admin_password()
        config = json.loads(call_config(
            api_port=api_port, sip_port=self.sip_port, admin_password=admin, extensions=self.passwords,
            transports=("udp",), rtp_ports=(first, first + RELAY_PORTS - 1),
        ))  # fmt: skip
        config["moh"] = {
            "classes": {"alt": str(self.workdir / "alt")},
            "extensions": {CALLEE: "alt"},
        }
        self.daemon = Daemon(str(self.workdir / "pbx"), json.dumps(config, indent=1))
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.api = API(api_port, admin)
        self.patterns: dict[str, list[bool]] = {}
        self.classes = {
            CALLER: load_music_class("default", default_music_dir())
            .pcm(RATE)
            .astype(np.float64),
            CALLEE: load_music_class("alt", str(self.workdir / "alt"))
            .pcm(RATE)
            .astype(np.float64),
        }

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

    def stretch(self, phone: Phone, what: str) -> np.ndarray:
        """The next :data:`STRETCH` seconds ``phone`` records, after :data:`SETTLE` seconds."""
        start = recorded_seconds(phone) + SETTLE
        try:
            wait_until(lambda: recorded_seconds(phone) >= start + STRETCH, LIMIT, what)
        except AssertionError as e:
            daemon = "\n".join(list(self.daemon.output)[-30:])
            said = "\n".join(
                line for line in phone.output().splitlines() if "audio=" not in line
            )
            files = (
                sorted((p.name, p.stat().st_size) for p in phone.recordings.iterdir()),
                start,
            )
            raise AssertionError(
                f"{e}\n{said[-3000:]}\n{files}\n--- pbx\n{daemon}"
            ) from None
        audio = decoded(phone)
        return audio[int(start * RATE) : int((start + STRETCH) * RATE)]

    def assert_music(self, audio: np.ndarray, holder: str, listener: str) -> None:
        """``audio`` is the class of ``holder``, piece by piece, and holds neither phone's tone."""
        pieces = [
            audio[i : i + PIECE * FRAME]
            for i in range(0, len(audio) - PIECE * FRAME + 1, PIECE * FRAME)
        ]
        scores = [best_match(p, self.classes[holder]) for p in pieces]
        self.assertGreaterEqual(
            sum(s > 0.9 for s in scores),
            len(scores) - 1,
            f"{listener} hearing music: {scores}",
        )
        other = self.classes[CALLER if holder == CALLEE else CALLEE]
        wrong = [best_match(p, other) for p in pieces]
        self.assertLess(max(wrong), 0.6, f"{listener} hearing the other class: {wrong}")
        for number, (frequency, _) in TONES.items():
            self.assertLess(
                keying(tone_envelope(audio, frequency), self.patterns[number]),
                0.5,
                f"{listener} hearing {number}'s tone during the music",
            )

    def assert_talk(self, audio: np.ndarray, talker: str, listener: str) -> None:
        """``audio`` follows ``talker``'s keyed tone, and not the listener's own."""
        frequency = TONES[talker][0]
        r = keying(tone_envelope(audio, frequency), self.patterns[talker])
        self.assertGreater(r, 0.8, f"{listener} hearing {talker}")
        own = tone_envelope(audio, TONES[listener][0]).mean()
        self.assertLess(
            own,
            tone_envelope(audio, frequency).mean() / 10,
            f"{listener} hearing itself",
        )

    def held(self, leg: str) -> bool:
        """Whether the API shows ``leg`` of the one live call held."""
        [call] = self.api.get("/calls")["calls"]
        return bool(call["media"][leg]["held"])

    def towards(self, leg: str) -> int:
        """RTP packets the relay has carried to ``leg`` of the one live call (from the other leg)."""
        [call] = self.api.get("/calls")["calls"]
        media = call["media"]
        return int(
            media["b_to_a"]["packets"] if leg == "a" else media["a_to_b"]["packets"]
        )

    def hold_and_resume(self, holder_number: str) -> None:
        """
        1001 calls 1002; ``holder_number`` holds and resumes; the other phone
        hears the holder, then the holder's class, then the holder again;
        the relay carries nothing to the holder while it holds and the other
        phone's packets again once it resumed.
        """
        caller = self.start_phone(CALLER, answer=False)
        callee = self.start_phone(CALLEE, answer=True)
        caller.control.command("dial", CALLEE)
        caller.control.event("CALL_ESTABLISHED")
        callee.control.event("CALL_ESTABLISHED")
        holder, listener = (
            (caller, callee) if holder_number == CALLER else (callee, caller)
        )
        holder_leg = "a" if holder is caller else "b"
        self.assert_talk(
            self.stretch(listener, "talk before hold"), holder.number, listener.number
        )
        self.assert_talk(
            self.stretch(holder, "talk before hold"), listener.number, holder.number
        )

        holder.control.command("hold")
        music = self.stretch(listener, f"{holder.number} holding")
        on_hold = self.towards(holder_leg)
        self.assert_music(music, holder.number, listener.number)
        self.assertTrue(self.held(holder_leg))
        self.assertEqual(
            self.towards(holder_leg), on_hold, "RTP relayed to the phone that holds"
        )

        holder.control.command("resume")
        wait_until(lambda: not self.held(holder_leg), LIMIT, "the resume")
        self.assert_talk(
            self.stretch(listener, f"{holder.number} resumed"),
            holder.number,
            listener.number,
        )
        # baresip 1.0 stops writing what it decodes once it has held a call
        # (as much when pbx passes the hold on, moh.enabled false): what the
        # holder gets after resuming is read from the relay's counters.
        self.assertGreater(
            self.towards(holder_leg), on_hold + 100, "the holder's media after resuming"
        )

        # The phone not holding was never asked to change its media: its
        # stream was set up once (baresip logs each offer/answer it applies).
        self.assertEqual(
            listener.output().count("stream: update"), 1, listener.output()[-3000:]
        )
        self.assertEqual(holder.output().count("stream: update"), 3)
        caller.control.command("hangup")
        caller.control.event("CALL_CLOSED")
        callee.control.event("CALL_CLOSED")
        records = wait_until(
            lambda: r if len(r := self.api.get("/cdr")["records"]) >= 2 else None,
            LIMIT,
            "the call's records",
        )
        self.assertEqual({r["disposition"] for r in records}, {"ANSWERED"})

    def test_caller_holds(self) -> None:
        """
        The caller holds: the callee hears the shipped default class (1001's),
        not either phone's tone; the caller resumes: the callee hears it again
        and the relay carries the callee's audio to it again.
        """
        self.hold_and_resume(CALLER)

    def test_callee_holds(self) -> None:
        """
        The callee holds: the caller hears class ``alt`` (1002's, converted
        from 22.05 kHz stereo); the callee resumes and is heard again.
        """
        self.hold_and_resume(CALLEE)
