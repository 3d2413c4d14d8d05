"""
Integration test: a call between two baresip phones, recorded by policy.

Extension 1001 is recorded always (``features: recording: {always:
["1001"]}``).  Phone 1001 calls phone 1002 (auto answer); each plays its
own keyed tone (:func:`support.calls.keyed_tone`: 600 Hz for the caller,
1300 Hz for the callee, each switched on and off in 20 ms slots by its own
pattern; both frequencies are whole DFT bins of a 20 ms frame).  Midway the
caller's recording is paused through the API and resumed two seconds later;
then the caller hangs up.

The recording, listed and downloaded through the API, must be a stereo WAV
whose left channel follows the caller's keying (correlation of the 600 Hz
envelope with the pattern, half second by half second, at the best lag)
and whose right channel follows the callee's, each without the other's
tone; its metadata names the call, the parties, the format and the pause;
and every frame of the paused span is silent.

Two more calls: pbx is killed (SIGKILL) during a second recorded call and
restarted: the first recording is unchanged and the second is kept up to
the kill, as ``interrupted``, its left channel still the caller's keying;
and on a call no policy records, ``*1`` pressed on the callee's phone (RFC
4733) starts a recording and ``*1`` again stops it.  With ``announce:
true`` both phones hear "this call is recorded" (correlation with the
prompt), then each other.

Only loopback is used.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
import urllib.request
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.baresip import LIMIT, MODULES, NEEDED, Phone, press
from support.calls import (
    FRAME,
    RATE,
    call_config,
    free_udp_block,
    keyed_tone,
    read_pcm_wav,
    tone_share,
    write_pcm_wav,
)
from support.daemon import (
    ADMIN,
    Daemon,
    admin_password,
    free_port,
    http,
    require_binary,
    strong_password,
    wait_until,
)
from support.paths import ROOT

pytestmark = pytest.mark.integration

CALLER, CALLEE = "1001", "1002"
#: Each phone's tone (Hz) and keying seed.
TONES = {CALLER: (600.0, 21), CALLEE: (1300.0, 22), "1003": (900.0, 23)}
SIGNAL_SECONDS = 60.0
TALK, PAUSE, AFTER = 3.0, 2.0, 3.0
RELAY_PORTS = 20
PIECE = 25  # frames: half a second
PROMPT = ROOT / "share" / "prompts" / "en" / "8000" / "general" / "call-recorded.wav"
#: Seconds an announced call lasts: the prompt (3 s), then each party hears the other.
ANNOUNCED_CALL = 7.0


def envelope(audio: np.ndarray, frequency: float) -> np.ndarray:
    """The amplitude of ``frequency`` in each 20 ms frame of ``audio``."""
    frames = audio[: len(audio) // FRAME * FRAME].reshape(-1, FRAME).astype(np.float64)
    t = np.arange(FRAME) / RATE
    c = frames @ np.cos(2 * np.pi * frequency * t)
    s = frames @ np.sin(2 * np.pi * frequency * t)
    return np.sqrt(c * c + s * s) * 2 / FRAME


def best_match(heard: np.ndarray, prompt: np.ndarray, within: int) -> tuple[float, int]:
    """The highest normalised cross-correlation of ``prompt`` in ``heard[:within + len(prompt)]``, and its lag."""
    n = len(prompt)
    span = heard[: within + n].astype(np.float64)
    p = prompt.astype(np.float64)
    size = 1 << int(np.ceil(np.log2(len(span) + n)))
    dots = np.fft.irfft(np.fft.rfft(span, size) * np.conj(np.fft.rfft(p, size)), size)[: len(span) - n + 1]
    energy = np.concatenate([[0.0], np.cumsum(span * span)])
    windows = np.sqrt(np.maximum(energy[n:] - energy[:-n], 1e-9))
    scores = dots / (windows * np.sqrt(float(p @ p)))
    lag = int(np.argmax(scores))
    return float(scores[lag]), lag


def best_correlation(
    stretch: np.ndarray, pattern: list[bool], lags: range
) -> tuple[float, int]:
    """Pearson's r of ``stretch`` with the keying pattern at the best of ``lags`` (frames)."""
    sent = np.asarray(pattern, dtype=np.float64)
    best = (-1.0, 0)
    for lag in lags:
        if lag < 0 or lag + len(stretch) > len(sent):
            continue
        window = sent[lag : lag + len(stretch)]
        if window.std() == 0 or stretch.std() == 0:
            continue
        best = max(best, (float(np.corrcoef(stretch, window)[0, 1]), lag))
    return best


class RecordingBaresipTests(SynchronousTestCase):
    """A policy recording of a real call: each party in its own channel, the pause silent."""

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
        self.passwords = {n: strong_password(n) for n in TONES}
        first = free_udp_block(RELAY_PORTS + 20 * len(TONES))
        self.phone_rtp = {n: first + RELAY_PORTS + 20 * i for i, n in enumerate(TONES)}
        self.admin = admin_password()
        config = json.loads(
            call_config(
                api_port=self.api_port,
                sip_port=self.sip_port,
                admin_password=self.admin,
                extensions=self.passwords,
                transports=("udp",),
                rtp_ports=(first, first + RELAY_PORTS - 1),
            )
        )
        config["features"] = {
            "recording": {"always": [CALLER], "dir": "rec", "retention_days": 30}
        }
        self.config = json.dumps(config, indent=1)
        self.daemon = Daemon(str(self.workdir / "pbx"), self.config)
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.base = f"http://127.0.0.1:{self.api_port}/api/v1"
        self.login()
        self.patterns: dict[str, list[bool]] = {}

    def login(self) -> None:
        """Log in as the administrator (again after a restart: tokens live in the process)."""
        status, body = http(
            "POST",
            f"{self.base}/auth/login",
            {"username": ADMIN, "password": self.admin},
        )
        self.assertEqual(status, 200, body)
        self.token = body["token"]

    def api(self, method: str, path: str) -> Any:
        """One JSON request as the administrator; the body of a 2xx."""
        status, body = http(method, f"{self.base}{path}", token=self.token)
        assert 200 <= status < 300, f"{method} {path}: {status} {body}"
        return body

    def download(self, path: str) -> tuple[str, bytes]:
        """GET ``path`` as raw bytes: (content type, body)."""
        request = urllib.request.Request(
            f"{self.base}{path}", headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.headers.get("Content-Type"), response.read()

    def start_phone(self, number: str, answer: bool) -> Phone:
        """Write ``number``'s signal file and start its phone; wait for its registration."""
        frequency, seed = TONES[number]
        samples, self.patterns[number] = keyed_tone(
            frequency, SIGNAL_SECONDS, seed, amplitude=8000
        )
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
            answer=answer,
        )
        self.addCleanup(phone.stop)
        try:
            wait_until(
                lambda: [
                    r
                    for r in self.api("GET", "/registrations")["registrations"]
                    if r["extension"] == number
                ],
                LIMIT,
                f"{number}'s registration",
            )
        except AssertionError as e:
            raise AssertionError(f"{e}\n{phone.output()[-3000:]}") from None
        return phone

    def test_recorded_call(self) -> None:
        """
        The policy recording of 1001 calling 1002 holds the caller on the left
        and the callee on the right, with the paused span silent; its metadata
        and download come through the API.
        """
        a = self.start_phone(CALLER, answer=False)
        b = self.start_phone(CALLEE, answer=True)
        a.control.command("dial", CALLEE)
        for phone in (a, b):
            phone.control.event("CALL_ESTABLISHED")
        [call] = wait_until(
            lambda: [
                c
                for c in self.api("GET", "/calls")["calls"]
                if c["state"] == "confirmed"
            ],
            LIMIT,
            "the confirmed call",
        )
        [running] = wait_until(
            lambda: self.api("GET", "/recordings/")["recordings"],
            LIMIT,
            "the recording",
        )
        self.assertEqual(
            (running["call_id"], running["status"]), (call["call_id"], "recording")
        )
        time.sleep(TALK)  # real phones talk in real time
        quoted = urllib.request.quote(call["call_id"], safe="")
        paused = self.api("POST", f"/recordings/calls/{quoted}/pause")
        self.assertTrue(paused["paused"])
        time.sleep(PAUSE)
        resumed = self.api("POST", f"/recordings/calls/{quoted}/resume")
        self.assertFalse(resumed["paused"])
        time.sleep(AFTER)
        a.control.command("hangup")
        for phone in (a, b):
            phone.control.event("CALL_CLOSED")
        meta = wait_until(
            lambda: (
                (m := self.api("GET", f"/recordings/{running['id']}"))["status"]
                == "complete"
                and m
            ),
            LIMIT,
            "the complete recording",
        )
        self.assertEqual(
            {
                k: meta[k]
                for k in (
                    "call_id",
                    "caller",
                    "callee",
                    "format",
                    "channels",
                    "rate",
                    "started_by",
                    "codec",
                )
            },
            {
                "call_id": call["call_id"],
                "caller": CALLER,
                "callee": CALLEE,
                "format": "stereo",
                "channels": 2,
                "rate": 8000,
                "started_by": "policy",
                "codec": call["codecs"],
            },
        )
        [[pause_from, pause_to]] = meta["pauses"]
        self.assertLess(abs(pause_to - pause_from - (PAUSE)), 0.5)
        self.assertLess(abs(meta["duration"] - (TALK + PAUSE + AFTER)), 1.5)
        self.assertEqual(
            [
                r["id"]
                for r in self.api("GET", f"/recordings/?caller={CALLER}")["recordings"]
            ],
            [meta["id"]],
        )

        kind, data = self.download(f"/recordings/{meta['id']}/audio")
        self.assertEqual(kind, "audio/wav")
        with wave.open(io.BytesIO(data)) as w:
            self.assertEqual(
                (w.getnchannels(), w.getframerate(), w.getsampwidth()), (2, RATE, 2)
            )
            audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(
                -1, 2
            )
        self.assertLess(abs(len(audio) / RATE - (meta["duration"])), 0.05)

        # The paused span (with a margin for the frames in flight) is silence on both channels.
        silent = audio[
            round((pause_from + 0.1) * RATE) : round((pause_to - 0.1) * RATE)
        ]
        self.assertGreater(len(silent), RATE)
        self.assertEqual(int(np.abs(silent).max()), 0, "the paused span holds audio")

        # Outside the pause, each channel follows its own party's keying and lacks the other's tone.
        spoken = [(0.2, pause_from - 0.2), (pause_to + 0.2, len(audio) / RATE - 0.3)]
        for channel, (talker, other) in enumerate(((CALLER, CALLEE), (CALLEE, CALLER))):
            frequency, other_frequency = TONES[talker][0], TONES[other][0]
            own = envelope(audio[:, channel].astype(np.float64), frequency)
            leak = envelope(audio[:, channel].astype(np.float64), other_frequency)
            pieces = []
            for begin, end in spoken:
                stretch = slice(round(begin * 50), round(end * 50))
                _, lag = best_correlation(
                    own[stretch], self.patterns[talker], range(0, 2000)
                )
                for i in range(stretch.start, stretch.stop - PIECE + 1, PIECE):
                    near = range(
                        lag + i - stretch.start - 3, lag + i - stretch.start + 4
                    )
                    pieces.append(
                        best_correlation(
                            own[i : i + PIECE], self.patterns[talker], near
                        )[0]
                    )
            what = f"channel {channel} ({talker}): " + ", ".join(
                f"{r:.2f}" for r in pieces
            )
            self.assertGreaterEqual(len(pieces), 8, what)
            rs = sorted(pieces)
            self.assertGreater(rs[len(rs) // 2], 0.9, what)
            self.assertGreater(rs[len(rs) // 4], 0.8, what)
            level = float(own[own > 0].mean())
            self.assertGreater(level, 1000, what)
            self.assertLess(float(leak.mean()), 0.05 * level, f"{what}: hears {other}")

    def left_keying(self, audio: np.ndarray) -> list[float]:
        """Correlations, half second by half second, of the left channel with the caller's keying."""
        own = envelope(audio[:, 0].astype(np.float64), TONES[CALLER][0])
        _, lag = best_correlation(own, self.patterns[CALLER], range(0, 2000))
        return [
            best_correlation(
                own[i : i + PIECE],
                self.patterns[CALLER],
                range(lag + i - 3, lag + i + 4),
            )[0]
            for i in range(0, len(own) - PIECE + 1, PIECE)
        ]

    def test_kill_keeps_recordings(self) -> None:
        """
        A finished recording survives SIGKILL unchanged; the one running at
        the kill is kept, up to the crash, and listed as interrupted after
        the restart.
        """
        a = self.start_phone(CALLER, answer=False)
        b = self.start_phone(CALLEE, answer=True)
        ids = []
        for hang_up in (True, False):
            mark = {p: p.control.mark() for p in (a, b)}
            a.control.command("dial", CALLEE)
            for phone in (a, b):
                phone.control.event("CALL_ESTABLISHED", since=mark[phone])
            running = wait_until(
                lambda: [
                    r
                    for r in self.api("GET", "/recordings/")["recordings"]
                    if r["status"] == "recording"
                ],
                LIMIT,
                "the recording",
            )
            ids.append(running[0]["id"])
            time.sleep(3.0)
            if hang_up:
                a.control.command("hangup")
                for phone in (a, b):
                    phone.control.event("CALL_CLOSED", since=mark[phone])
                wait_until(
                    lambda: (
                        self.api("GET", f"/recordings/{ids[0]}")["status"] == "complete"
                    ),
                    LIMIT,
                    "the first recording complete",
                )
                _, finished = self.download(f"/recordings/{ids[0]}/audio")
        assert self.daemon.process is not None
        os.kill(self.daemon.pid, signal.SIGKILL)
        self.daemon.process.wait(30)

        again = Daemon(str(self.workdir / "pbx"), self.config)
        self.addCleanup(again.stop)
        again.start(limit=120)
        self.login()
        listed = {r["id"]: r for r in self.api("GET", "/recordings/")["recordings"]}
        self.assertEqual(sorted(listed), sorted(ids))
        self.assertEqual(listed[ids[0]]["status"], "complete")
        self.assertEqual(self.download(f"/recordings/{ids[0]}/audio")[1], finished)
        interrupted = listed[ids[1]]
        self.assertEqual(
            (interrupted["status"], interrupted["caller"]), ("interrupted", CALLER)
        )
        # What was written before the kill: all but the last batch in memory (half a second).
        self.assertGreater(interrupted["duration"], 2.0)
        self.assertLess(interrupted["duration"], 3.5)
        kind, data = self.download(f"/recordings/{ids[1]}/audio")
        self.assertEqual(kind, "audio/wav")
        with wave.open(io.BytesIO(data)) as w:
            audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(
                -1, 2
            )
        self.assertLess(abs(len(audio) / RATE - interrupted["duration"]), 0.05)
        pieces = sorted(self.left_keying(audio[RATE // 5 :]))
        self.assertGreater(
            pieces[len(pieces) // 2],
            0.9,
            f"the interrupted recording's left channel: {pieces}",
        )
        self.assertEqual(
            [
                n
                for n in os.listdir(self.workdir / "pbx" / "pbx-data" / "rec")
                if n.endswith(".part")
            ],
            [],
        )
        self.assertFalse(self.daemon.tracebacks + again.tracebacks)

    def test_announcement_heard(self) -> None:
        """
        With ``announce: true`` both phones of a recorded call hear "this
        call is recorded" (normalised cross-correlation with the prompt
        above 0.9 in the first seconds; the relay's feed continues each
        phone's RTP stream, without which baresip 1.0 drops it), then the
        other phone's tone and not their own (the relay path restored).
        """
        self.daemon.stop()
        config = json.loads(self.config)
        config["features"]["recording"]["announce"] = True
        daemon = Daemon(str(self.workdir / "pbx-announce"), json.dumps(config, indent=1))
        self.addCleanup(daemon.stop)
        daemon.start()
        self.login()
        a = self.start_phone(CALLER, answer=False)
        b = self.start_phone(CALLEE, answer=True)
        a.control.command("dial", CALLEE)
        for phone in (a, b):
            phone.control.event("CALL_ESTABLISHED")
        wait_until(lambda: self.api("GET", "/recordings/")["recordings"], LIMIT, "the recording")
        time.sleep(ANNOUNCED_CALL)  # real phones talk in real time
        a.control.command("hangup")
        for phone in (a, b):
            phone.control.event("CALL_CLOSED")
            phone.stop()  # closes its recording of what it heard
        prompt = np.asarray(read_pcm_wav(PROMPT), dtype=np.int16)
        for listener, talker, phone in ((CALLER, CALLEE, a), (CALLEE, CALLER, b)):
            heard = np.asarray(phone.heard(), dtype=np.int16)
            score, lag = best_match(heard, prompt, within=3 * RATE)
            self.assertGreater(score, 0.9, f"{listener} hearing the prompt (lag {lag})")
            after = heard[lag + len(prompt) + RATE // 2 : lag + len(prompt) + 3 * RATE // 2]
            self.assertEqual(len(after), RATE, f"{listener}: a second of audio after the prompt")
            self.assertGreater(tone_share(after.tolist(), TONES[talker][0]), 0.8, f"{listener} hearing {talker}")
            self.assertLess(tone_share(after.tolist(), TONES[listener][0]), 0.05, f"{listener} hearing itself")
        self.assertFalse(daemon.tracebacks)

    def test_toggle_keys(self) -> None:
        """
        On a call no policy records, *1 pressed by the callee's phone (RFC
        4733 events) starts a recording and *1 again stops it.
        """
        b = self.start_phone(CALLEE, answer=False)
        c = self.start_phone("1003", answer=True)
        b.control.command("dial", "1003")
        for phone in (b, c):
            phone.control.event("CALL_ESTABLISHED")
        time.sleep(1.0)
        self.assertEqual(self.api("GET", "/recordings/")["recordings"], [])
        press(c, "*", 1)
        press(c, "1", 2)
        [running] = wait_until(
            lambda: self.api("GET", "/recordings/")["recordings"], LIMIT, "a recording"
        )
        self.assertEqual(
            (running["status"], running["started_by"]), ("recording", "keys:1003")
        )
        time.sleep(2.0)
        press(c, "*", 3)
        press(c, "1", 4)
        meta = wait_until(
            lambda: (
                (m := self.api("GET", f"/recordings/{running['id']}"))["status"]
                == "complete"
                and m
            ),
            LIMIT,
            "the recording stopped",
        )
        self.assertEqual((meta["caller"], meta["callee"]), (CALLEE, "1003"))
        self.assertLess(abs(meta["duration"] - 2.0), 1.0)
        b.control.command("hangup")
        for phone in (b, c):
            phone.control.event("CALL_CLOSED")
        self.assertEqual(len(self.api("GET", "/recordings/")["recordings"]), 1)
