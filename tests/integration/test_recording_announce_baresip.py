"""
Integration test: ``features: recording: {announce: true}`` with two
baresip phones.

Extension 1001 is recorded always, with the announcement.  Phone 1001
calls phone 1002 (auto answer); each plays its own steady tone (600 Hz and
1300 Hz).  When the recording starts, pbx feeds "this call is recorded"
(``general/call-recorded``) into both legs through the relay, continuing
the RTP stream each phone has been hearing (its SSRC and sequence; baresip
1.0 drops a new SSRC mid-call, RFC 3550 §8.2): each phone's decoded audio
must hold the prompt (normalised cross-correlation with the
prompt's samples above 0.9 at the best lag in the first seconds), and after
it the other phone's tone and not its own (the relay path restored).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.baresip import LIMIT, MODULES, NEEDED, Phone
from support.calls import (
    RATE,
    call_config,
    free_udp_block,
    read_pcm_wav,
    tone_share,
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
from support.paths import ROOT

pytestmark = pytest.mark.integration

CALLER, CALLEE = "1001", "1002"
TONES = {CALLER: 600.0, CALLEE: 1300.0}
PROMPT = ROOT / "share" / "prompts" / "en" / "8000" / "general" / "call-recorded.wav"
RELAY_PORTS = 20
#: Seconds the call lasts: the prompt (3 s), then each party hears the other.
CALL_SECONDS = 7.0


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


def steady_tone(frequency: float, seconds: float) -> list[int]:
    """A steady tone at a quarter of full scale."""
    t = np.arange(int(seconds * RATE)) / RATE
    return [int(v) for v in (8000 * np.sin(2 * np.pi * frequency * t))]


class RecordingAnnounceTests(SynchronousTestCase):
    """Both parties of a recorded call hear the announcement, then each other."""

    def setUp(self) -> None:
        """pbx recording 1001's calls with the announcement; two phones."""
        baresip = require_binary("baresip", "baresip-core")
        missing = [m for m in NEEDED if not (MODULES / f"{m}.so").is_file()]
        if missing:
            raise AssertionError(f"baresip-core is incomplete: no {missing} in {MODULES}")
        self.workdir = Path(self.mktemp()).absolute()
        self.workdir.mkdir(parents=True)
        sip_port, api_port = free_port(), free_port()
        passwords = {n: strong_password(n) for n in TONES}
        first = free_udp_block(RELAY_PORTS + 20 * len(TONES))
        admin = admin_password()
        config = json.loads(call_config(
            api_port=api_port, sip_port=sip_port, admin_password=admin, extensions=passwords,
            transports=("udp",), rtp_ports=(first, first + RELAY_PORTS - 1),
        ))
        config["features"] = {"recording": {"always": [CALLER], "dir": "rec", "announce": True}}
        self.daemon = Daemon(str(self.workdir / "pbx"), json.dumps(config, indent=1))
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.api = API(api_port, admin)
        self.phones: dict[str, Phone] = {}
        for index, number in enumerate(TONES):
            source = self.workdir / f"signal-{number}.wav"
            write_pcm_wav(source, steady_tone(TONES[number], 60.0))
            phone = Phone(baresip, self.workdir / f"baresip-{number}", number, passwords[number], sip_port,
                          Path("..", source.name), first + RELAY_PORTS + 20 * index, answer=number == CALLEE)
            self.addCleanup(phone.stop)
            self.phones[number] = phone
            wait_until(lambda n=number: [r for r in self.api.registrations() if r["extension"] == n],
                       LIMIT, f"{number}'s registration")

    def test_both_parties_hear_the_announcement(self) -> None:
        """Each phone's audio starts with the prompt, then carries the other phone's tone."""
        a, b = self.phones[CALLER], self.phones[CALLEE]
        a.control.command("dial", CALLEE)
        for phone in (a, b):
            phone.control.event("CALL_ESTABLISHED")
        wait_until(lambda: self.api.get("/recordings/")["recordings"], LIMIT, "the recording")
        time.sleep(CALL_SECONDS)  # real phones talk in real time
        a.control.command("hangup")
        for phone in (a, b):
            phone.control.event("CALL_CLOSED")
        for phone in (a, b):
            phone.stop()  # closes its recording of what it heard
        prompt = np.asarray(read_pcm_wav(PROMPT), dtype=np.int16)
        for listener, talker in ((CALLER, CALLEE), (CALLEE, CALLER)):
            heard = np.asarray(self.phones[listener].heard(), dtype=np.int16)
            score, lag = best_match(heard, prompt, within=3 * RATE)
            self.assertGreater(score, 0.9, f"{listener} hearing the prompt (lag {lag})")
            after = heard[lag + len(prompt) + RATE // 2 : lag + len(prompt) + 3 * RATE // 2]
            self.assertEqual(len(after), RATE, f"{listener}: a second of audio after the prompt")
            self.assertGreater(tone_share(after.tolist(), TONES[talker]), 0.8, f"{listener} hearing {talker}")
            self.assertLess(tone_share(after.tolist(), TONES[listener]), 0.05, f"{listener} hearing itself")
        self.assertFalse(self.daemon.tracebacks)
