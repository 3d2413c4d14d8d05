"""
Integration test: four baresip phones in one conference room, with real
audio.

Each phone dials room 800 (``{match: "800", app: conference}``) and plays
its own keyed tone (:func:`support.calls.keyed_tone`: 600, 900, 1300 or
1700 Hz, switched on and off in 20 ms slots by its own pattern) and
records what it hears.  The four frequencies are multiples of 50 Hz, so
over a 20 ms frame (160 samples) each is one exact DFT bin and measuring
one tells nothing of the others.

Once all four are in the room, every phone must hear each of the other
three: the amplitude of that phone's frequency, frame by frame, follows
its keying pattern (correlation, half second by half second, at the best
lag: above 0.9 for half the pieces and above 0.8 for three quarters; the
phones' calls started at different times, and an adaptive jitter buffer
may slip a frame on a busy machine); and not itself (its own frequency
below a tenth of the others').  Then the fourth phone presses ``*6``: the
API shows it muted, its tone disappears from what the other three hear,
and they still hear each other.

A waiting caller in room 802 (``wait_for_moderator``) hears the room's
music-on-hold class (a 1100 Hz tone in ``moh: classes:``) until a
moderator comes.

A further test has the four phones meet in room 801, which is recorded
(``record: true``): the recordings API lists the room's recording
(``kind: conference``, the room, the four participants) and the file
downloaded holds each phone's keyed tone (the same correlation test).

Only loopback is used: the phones and pbx's endpoints bind 127.0.0.1.
"""

from __future__ import annotations

import io
import json
import time
import urllib.request
import wave
from pathlib import Path

import numpy as np
import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.apps import locate, prompt
from support.baresip import LIMIT, MODULES, NEEDED, Phone, press, recorded_seconds
from support.calls import (
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
    http,
    require_binary,
    strong_password,
    wait_until,
)
from support.keying import keying_by_piece, tone_envelope

pytestmark = pytest.mark.integration

ROOM = "800"
#: A room recorded whenever someone is in it.
RECORDED = "801"
#: A room whose callers wait for moderator 1001 with a music-on-hold class.
WAITING = "802"
#: The class's music: a steady tone (Hz), none of the phones' own.
CLASS_TONE = 1100.0
#: Each phone's tone (Hz) and keying seed.
TONES = {"1001": (600.0, 11), "1002": (900.0, 12), "1003": (1300.0, 13), "1004": (1700.0, 14)}
MUTED = "1004"
#: Quieter than a two-party test's tones: three of them add up in the mix.
AMPLITUDE = 6000
#: Length of the signal files (s): longer than the calls (baresip hangs up when its file ends).
SIGNAL_SECONDS = 60.0
#: Seconds of the room with everyone heard, then with one phone muted.
TALK, MUTED_TALK = 4.0, 4.0
#: Margin (s) around each change (the last join tone, the mute key's way through pbx).
SETTLE = 0.6
RELAY_PORTS = 40


class BaresipConferenceTests(SynchronousTestCase):
    """Four baresip phones meet in a room and hear each other; one mutes itself."""

    def setUp(self) -> None:
        self.baresip = require_binary("baresip", "baresip-core")
        missing = [m for m in NEEDED if not (MODULES / f"{m}.so").is_file()]
        if missing:
            raise AssertionError(f"baresip-core is incomplete: no {missing} in {MODULES}")
        self.workdir = Path(self.mktemp()).absolute()
        self.workdir.mkdir(parents=True)
        self.sip_port = free_port()
        api_port = free_port()
        self.passwords = {n: strong_password(n) for n in TONES}
        first = free_udp_block(RELAY_PORTS + 20 * len(TONES))
        relay = (first, first + RELAY_PORTS - 1)
        self.phone_rtp = {n: first + RELAY_PORTS + 20 * i for i, n in enumerate(TONES)}
        admin = admin_password()
        config = json.loads(call_config(
            api_port=api_port, sip_port=self.sip_port, admin_password=admin,
            extensions=self.passwords, transports=("udp",), rtp_ports=relay,
        ))
        music = self.workdir / "moh-tone"
        music.mkdir()
        t = np.arange(2 * RATE) / RATE
        write_pcm_wav(music / "tone.wav", (np.sin(2 * np.pi * CLASS_TONE * t) * 8000).astype(int).tolist())
        config["moh"] = {"classes": {"tone": str(music)}}
        waiting = {"moderators": ["1001"], "wait_for_moderator": True, "music_class": "tone"}
        config["features"] = {
            "conference": {"rooms": {ROOM: {}, RECORDED: {"record": True}, WAITING: waiting}},
            "recording": {"dir": "rec"},
        }
        config["dialplan"] = [{"match": n, "app": "conference"} for n in (ROOM, RECORDED, WAITING)]
        self.admin = admin
        self.daemon = Daemon(str(self.workdir / "pbx"), json.dumps(config, indent=1))
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.api = API(api_port, admin)
        self.base = f"http://127.0.0.1:{api_port}/api/v1"
        self.patterns: dict[str, list[bool]] = {}

    def start_phone(self, number: str) -> Phone:
        """Write ``number``'s signal file and start its phone; wait for its registration."""
        frequency, seed = TONES[number]
        samples, self.patterns[number] = keyed_tone(frequency, SIGNAL_SECONDS, seed, amplitude=AMPLITUDE)
        source = self.workdir / f"signal-{number}.wav"
        write_pcm_wav(source, samples)
        phone = Phone(self.baresip, self.workdir / f"baresip-{number}", number, self.passwords[number],
                      self.sip_port, Path("..", source.name), self.phone_rtp[number], answer=False)
        self.addCleanup(phone.stop)
        try:
            wait_until(lambda: [r for r in self.api.registrations() if r["extension"] == number],
                       LIMIT, f"{number}'s registration")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{phone.output()[-3000:]}") from None
        return phone

    def participants(self, room: str = ROOM) -> list[dict[str, object]]:
        """A room's participants, from the API."""
        return list(self.api.get(f"/conference/rooms/{room}/participants")["participants"])

    def download(self, path: str) -> bytes:
        """GET ``path`` (below /api/v1) as the administrator, as raw bytes."""
        status, body = http("POST", f"{self.base}/auth/login", {"username": "admin", "password": self.admin})
        self.assertEqual(status, 200, body)
        request = urllib.request.Request(f"{self.base}{path}", headers={"Authorization": f"Bearer {body['token']}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return bytes(response.read())

    def record_until(self, phones: dict[str, Phone], seconds: dict[str, float], what: str) -> None:
        """Wait until each phone's recording holds at least ``seconds[number]``."""
        wait_until(lambda: all(recorded_seconds(p) >= seconds[n] for n, p in phones.items()), LIMIT, what)

    def test_four_phones(self) -> None:
        """
        Four phones in room 800 each hear the other three's keyed tones and
        not their own; after 1004 presses *6 the others stop hearing it and
        still hear each other.
        """
        phones = {n: self.start_phone(n) for n in TONES}
        for phone in phones.values():
            phone.control.command("dial", ROOM)
            phone.control.event("CALL_ESTABLISHED")
        wait_until(lambda: len(p := self.participants()) == 4 and not any(x["waiting"] for x in p),
                   LIMIT, "four participants in the room")
        # The first caller hears it is alone (a prompt, not the mix) and
        # everyone hears join tones: the measured stretch begins after them.
        joined = {n: recorded_seconds(p) + SETTLE for n, p in phones.items()}
        start = {n: max(joined[n], 3.5) for n in phones}
        self.record_until(phones, {n: s + TALK for n, s in start.items()}, f"{TALK}s of the full room")

        mute_pressed = {n: recorded_seconds(p) for n, p in phones.items()}
        press(phones[MUTED], "*", 1)
        press(phones[MUTED], "6", 2)
        wait_until(lambda: [p for p in self.participants() if p["caller"] == MUTED and p["muted"]],
                   LIMIT, f"{MUTED} muted")
        muted_from = {n: recorded_seconds(p) + SETTLE for n, p in phones.items()}
        # 1004 hears "you are now muted" instead of the room for a moment
        # (found in its recording below); record enough after it.
        self.record_until(phones, {n: s + MUTED_TALK + (3.0 if n == MUTED else 0.0)
                                   for n, s in muted_from.items()}, f"{MUTED_TALK}s with {MUTED} muted")
        for phone in phones.values():
            phone.control.command("hangup")
            phone.control.event("CALL_CLOSED")
        wait_until(lambda: not self.participants(), LIMIT, "an empty room")
        heard = {}
        for number, phone in phones.items():
            phone.stop()
            heard[number] = np.asarray(phone.heard(), dtype=np.float64)
        said = prompt("conf/muted")
        r, offset = locate(heard[MUTED], said, first=True)
        self.assertGreater(r, 0.9, f"{MUTED} did not hear conf/muted")
        muted_from[MUTED] = max(muted_from[MUTED], (offset + len(said)) / RATE + 0.2)

        for listener, audio in heard.items():
            full = slice(round(start[listener] * 50), round(mute_pressed[listener] * 50) - 5)
            muted = slice(round(muted_from[listener] * 50), round((muted_from[listener] + MUTED_TALK) * 50) - 10)
            levels = {}
            for talker, (frequency, _) in TONES.items():
                envelope = tone_envelope(audio, frequency)
                levels[talker] = (float(envelope[full].mean()), float(envelope[muted].mean()))
                if talker == listener:
                    continue
                stretches = [("", full)] + ([(" after the mute", muted)] if talker != MUTED else [])
                for when, stretch in stretches:
                    pieces = keying_by_piece(envelope[stretch], self.patterns[talker], stretch.start)
                    what = f"{listener} hearing {talker}{when}: " + ", ".join(
                        f"r={r:.2f} at lag {lag}" for r, lag in pieces)
                    rs = sorted(r for r, _ in pieces)
                    self.assertGreaterEqual(len(rs), 6, what)
                    self.assertGreater(rs[len(rs) // 2], 0.9, what)
                    self.assertGreater(rs[len(rs) // 4], 0.8, what)
            report = f"{listener}: (full room, {MUTED} muted) levels {levels}"
            others = [levels[t][0] for t in TONES if t != listener]
            self.assertGreater(min(others), 500, report)
            self.assertLess(levels[listener][0], 0.1 * min(others), f"hears itself; {report}")
            if listener != MUTED:
                self.assertLess(levels[MUTED][1], 0.05 * levels[MUTED][0], f"still hears {MUTED}; {report}")

    def test_recorded_room(self) -> None:
        """
        Four phones in recorded room 801: the recordings API lists the room's
        recording with kind conference and the four participants, and its file
        holds each phone's keyed tone.
        """
        phones = {n: self.start_phone(n) for n in TONES}
        for phone in phones.values():
            phone.control.command("dial", RECORDED)
            phone.control.event("CALL_ESTABLISHED")
        wait_until(lambda: len(p := self.participants(RECORDED)) == 4 and not any(x["waiting"] for x in p),
                   LIMIT, "four participants in the room")
        all_in = time.time()
        live = self.api.get(f"/conference/rooms/{RECORDED}")["recording"]
        self.assertIsNotNone(live, "room 801 is not being recorded")
        wait_until(lambda: time.time() >= all_in + SETTLE + TALK, LIMIT, f"{TALK}s of the full room")
        hung_up = time.time()
        for phone in phones.values():
            phone.control.command("hangup")
            phone.control.event("CALL_CLOSED")
        wait_until(lambda: not self.participants(RECORDED), LIMIT, "an empty room")

        def finished() -> list[dict[str, object]]:
            found = self.api.get("/recordings/")["recordings"]
            return [m for m in found if m.get("kind") == "conference" and m["status"] == "complete"]

        wait_until(finished, LIMIT, "the room's recording complete")
        [meta] = finished()
        self.assertEqual((meta["id"], meta["room"]), (live, RECORDED))
        self.assertEqual(sorted(meta["participants"]), sorted(TONES))  # type: ignore[arg-type]
        self.assertEqual(self.api.get(f"/recordings/{meta['id']}")["kind"], "conference")
        with wave.open(io.BytesIO(self.download(f"/recordings/{meta['id']}/audio")), "rb") as w:
            self.assertEqual((w.getframerate(), w.getnchannels()), (RATE, 1))
            audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
        self.assertLess(abs(len(audio) / RATE - float(meta["duration"])), 0.05)  # type: ignore[arg-type]
        started = float(meta["started"])  # type: ignore[arg-type]
        full = slice(round((all_in + SETTLE - started) * 50), round((hung_up - started - 0.3) * 50))
        self.assertGreaterEqual(full.stop - full.start, round(TALK * 50) - 20)
        for talker, (frequency, _) in TONES.items():
            envelope = tone_envelope(audio, frequency)
            pieces = keying_by_piece(envelope[full], self.patterns[talker], full.start)
            what = f"the recording holding {talker}: " + ", ".join(f"r={r:.2f} at lag {lag}" for r, lag in pieces)
            rs = sorted(r for r, _ in pieces)
            self.assertGreaterEqual(len(rs), 6, what)
            self.assertGreater(rs[len(rs) // 2], 0.9, what)
            self.assertGreater(rs[len(rs) // 4], 0.8, what)
            self.assertGreater(float(envelope[full].mean()), 500, what)

    def test_waiting_hears_the_music_class(self) -> None:
        """A caller waiting for the moderator of room 802 hears the room's music-on-hold class."""
        phone = self.start_phone("1002")
        phone.control.command("dial", WAITING)
        phone.control.event("CALL_ESTABLISHED")
        wait_until(lambda: [p for p in self.participants(WAITING) if p["waiting"]], LIMIT, "1002 waiting")
        self.record_until({"1002": phone}, {"1002": recorded_seconds(phone) + 3.0}, "3s of waiting")
        phone.control.command("hangup")
        phone.control.event("CALL_CLOSED")
        wait_until(lambda: not self.participants(WAITING), LIMIT, "an empty room")
        phone.stop()
        heard = np.asarray(phone.heard(), dtype=np.float64)
        last = tone_envelope(heard, CLASS_TONE)[-150:-25]
        self.assertGreater(float(np.median(last)), 4000, f"the class's tone: {np.percentile(last, [10, 50, 90])}")
