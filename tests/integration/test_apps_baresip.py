"""
Integration tests: a baresip phone calls pbx's own applications, the echo
test (``*43``) and the digit read-back (``*44``), and the test checks what
the phone heard.

The phone is :class:`support.baresip.Phone`: baresip 1.0 with only the
``g711`` codec module (so PCMU is negotiated and pbx plays its 8 kHz
prompts), ``aufile`` as the audio source and ``sndfile`` recording the
decoder's output, driven through ``ctrl_tcp``.

What the recording shows, and how the tests use it:

- pbx sends RTP only while it has something to play (a prompt, the echo);
  baresip writes a decoded frame only when a packet came, so the
  recording is everything pbx sent, back to back, with its pauses left
  out.  The recording grows while the call goes on (16 000 bytes a
  second), so its size tells the test how much pbx has played so far: the
  tests wait on that, not on the clock.
- baresip's jitter buffer keeps the last few packets of a burst until more
  arrive (``jitter_buffer_delay`` 5-10 frames), so the end of the last
  prompt before a pause shows up late or, at hang-up, never:
  :data:`HELD` allows for it.
- baresip 1.0 sends DTMF only as RFC 4733 telephone-events (ctrl_tcp's
  ``sndcode`` command: a start and an end event per key); it has no SIP
  INFO mode, so INFO is tested with SIPp in ``test_apps_sipp.py``.  Its
  audio source plays silence in the read-back test, so pbx can only have
  got the digits from the telephone-events.

A prompt is found in the recording by normalised cross-correlation with
its file (``share/prompts/en/8000``): see
:func:`support.apps.assert_read_back`.  The echo is checked as the relay
is in ``test_calls_baresip.py``: the caller's keyed tone must come back
at its frequency and with its on/off pattern, here a second at a time.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.apps import (
    MATCH,
    apps_config,
    assert_read_back,
    frames,
    locate,
    prompt,
    prompt_seconds,
)
from support.baresip import MODULES, NEEDED, Phone, press
from support.calls import (
    RATE,
    dominant_frequency,
    envelope,
    free_udp_block,
    keyed_tone,
    pearson,
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

pytestmark = pytest.mark.integration

CALLER = "1001"
ECHO, READBACK = "*43", "*44"
#: The caller's signal in the echo test: 440 Hz keyed in 20 ms slots.
TONE, SEED = 440.0, 7
#: Length of the phone's audio file (s): longer than any call here (baresip hangs up at its end).
SIGNAL_SECONDS = 30.0
#: Seconds of echo the echo test waits for after the introduction.
ECHO_SECONDS = 4.0
#: Audio (s) baresip's jitter buffer may still hold back at the end of a burst.
HELD = 0.25
#: Seconds the recording must stop growing for pbx to count as silent.
QUIET = 0.5
DIGITS = "471"
LIMIT = 20.0
RELAY_PORTS = 20


class _Recording:
    """The decoder recording of a :class:`Phone`'s one call, read while it grows."""

    def __init__(self, phone: Phone) -> None:
        self.phone = phone

    def seconds(self) -> float:
        """How much audio is recorded so far (0 before the call starts)."""
        paths = list(self.phone.recordings.glob("dump-*-dec.wav"))
        if not paths:
            return 0.0
        # A 44-byte WAV header, then 16-bit samples; the header is
        # rewritten only at the end, so the size is what counts.
        return max(0, paths[0].stat().st_size - 44) / 2 / RATE

    def wait(self, seconds: float, what: str) -> float:
        """
        Wait until at least ``seconds`` are recorded and pbx has stopped
        sending (the recording has not grown for :data:`QUIET` seconds).

        :returns: the seconds recorded then.
        """
        last = [-1.0, time.monotonic()]

        def settled() -> float | None:
            now, size = time.monotonic(), self.seconds()
            if size != last[0]:
                last[:] = [size, now]
                return None
            return size if size >= seconds and now - last[1] >= QUIET else None

        try:
            return wait_until(settled, LIMIT, what)
        except AssertionError as e:
            raise AssertionError(
                f"{e}: {self.seconds():.2f}s recorded\n{self.phone.output()[-3000:]}"
            ) from None

    def grow_to(self, seconds: float, what: str) -> float:
        """Wait until at least ``seconds`` are recorded; return how many are."""
        return wait_until(
            lambda: s if (s := self.seconds()) >= seconds else None, LIMIT, what
        )


class BaresipApplicationTests(SynchronousTestCase):
    """baresip calls the echo test and the digit read-back; what it hears is checked."""

    def setUp(self) -> None:
        self.baresip = require_binary("baresip", "baresip-core")
        missing = [
            m
            for m in NEEDED
            if not (MODULES / f"{m}.so").is_file()
        ]
        if missing:
            raise AssertionError(
                f"baresip-core is incomplete: no {missing} in {MODULES}"
            )
        self.workdir = Path(self.mktemp()).absolute()
        self.workdir.mkdir(parents=True)
        self.sip_port = free_port()
        api_port = free_port()
        self.password = strong_password(CALLER)
        first = free_udp_block(RELAY_PORTS + 20)
        self.relay = (first, first + RELAY_PORTS - 1)
        self.phone_rtp = first + RELAY_PORTS
        admin = admin_password()
        self.daemon = Daemon(
            str(self.workdir / "pbx"),
            apps_config(
                api_port=api_port,
                sip_port=self.sip_port,
                admin_password=admin,
                extensions={CALLER: self.password},
                transports=("udp",),
                rtp_ports=self.relay,
            ),
        )
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.api = API(api_port, admin)

    def start_phone(self, samples: list[int]) -> Phone:
        """Start the phone of 1001 playing ``samples``; wait for its registration."""
        source = self.workdir / "signal.wav"
        write_pcm_wav(source, samples)
        phone = Phone(
            self.baresip,
            self.workdir / "baresip",
            CALLER,
            self.password,
            self.sip_port,
            # Relative to baresip's working directory (the line above): it
            # cuts configuration values short, and a test's path is long.
            Path("..", source.name),
            self.phone_rtp,
            answer=False,
        )
        self.addCleanup(phone.stop)
        try:
            wait_until(self.api.registrations, LIMIT, f"{CALLER}'s registration")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{phone.output()[-3000:]}") from None
        return phone

    def dial(self, phone: Phone, number: str, application: str) -> None:
        """Call ``number`` and wait until pbx runs ``application`` for it and the call is up."""
        phone.control.command("dial", number)
        phone.control.event("CALL_ESTABLISHED")
        self.daemon.wait_for(
            re.compile(rf"call {CALLER} -> \{number}: application {application}\b"),
            LIMIT,
        )

    def hang_up(self, phone: Phone, number: str) -> np.ndarray:
        """
        Hang up, check the call's record (answered by pbx, ended by the
        caller, PCMU), stop the phone and return what it heard.
        """
        phone.control.command("hangup")
        phone.control.event("CALL_CLOSED")
        [record] = wait_until(
            lambda: self.api.get("/cdr")["records"], LIMIT, "the call's record"
        )
        self.assertEqual(
            {
                k: record[k]
                for k in ("caller", "callee", "disposition", "leg", "codecs")
            },
            {
                "caller": CALLER,
                "callee": number,
                "disposition": "ANSWERED",
                "leg": "a",
                "codecs": "PCMU",
            },
        )
        self.assertEqual((record["hangup_side"], record["hangup_cause"]), ("a", "BYE"))
        wait_until(lambda: not self.api.get("/calls")["calls"], LIMIT, "no live call")
        self.assertEqual(phone.stop(), 0)
        self.assertFalse(self.daemon.tracebacks, "\n".join(self.daemon.tracebacks))
        return np.asarray(phone.heard(), dtype=np.float64)

    def test_echo(self) -> None:
        """
        1001 calls ``*43`` playing a keyed 440 Hz tone: it hears the
        introduction, then its own tone with its own on/off pattern, sent
        back by pbx through its decoder and encoder.
        """
        samples, pattern = keyed_tone(TONE, SIGNAL_SECONDS, SEED)
        phone = self.start_phone(samples)
        self.dial(phone, ECHO, "echo")
        intro = prompt("echo/intro")
        _Recording(phone).grow_to(
            len(intro) / RATE + ECHO_SECONDS,
            f"the introduction and {ECHO_SECONDS}s of echo",
        )
        heard = self.hang_up(phone, ECHO)

        r, start = locate(heard, intro)
        self.assertGreater(r, MATCH, f"echo/intro: r={r:.3f} at {start / RATE:.2f}s")
        self.assertLess(start / RATE, 0.5, "echo/intro: not at the start")
        # pbx plays whole 20 ms frames, the last one padded with silence.
        echoed = heard[start + frames(intro) * 160 :]
        self.assert_echo(echoed, pattern, len(intro) / RATE)

    def assert_echo(
        self, echoed: np.ndarray, pattern: list[bool], intro: float
    ) -> None:
        """
        ``echoed`` (what came after the introduction) is the caller's
        keyed tone: its frequency, mostly that tone, and its on/off pattern
        at a lag of about the introduction's length (pbx echoes what
        arrives now; what arrived during the introduction is gone).
        """
        self.assertGreaterEqual(len(echoed) / RATE, ECHO_SECONDS - HELD)
        audio = [int(x) for x in echoed]
        loud = [
            i
            for i in range(0, len(audio) - 160, 160)
            if max(map(abs, audio[i : i + 160])) > 1000
        ]
        self.assertGreaterEqual(len(loud) * 0.02, 1.0, "under a second of echo")
        found = dominant_frequency(audio[loud[0] : loud[0] + RATE])
        self.assertLessEqual(abs(found - TONE), 3.0, f"echo: dominant {found} Hz")
        self.assertGreater(tone_share(audio, TONE), 0.8)
        # Second by second, the envelope must follow the pattern at a lag of
        # about the introduction's length: pbx echoes what arrives now, and
        # what arrived during the introduction is gone.  (Its jitter buffer
        # may add or drop a frame of delay when the machine is busy, which
        # shifts the rest of the echo by 20 ms: hence each second's own lag.)
        sent = [1.0 if on else 0.0 for on in pattern]
        received = envelope(audio)
        expected = round(intro * 50)
        seconds = []
        for first in range(0, len(received) - 49, 50):
            piece = received[first : first + 50]
            seconds.append(
                max(
                    (pearson(piece, sent[lag + first : lag + first + 50]), lag)
                    for lag in range(expected - 10, expected + 50)
                )
            )
        report = ", ".join(f"r={r:.2f} at lag {lag * 0.02:.2f}s" for r, lag in seconds)
        self.assertGreaterEqual(len(seconds), ECHO_SECONDS - 1, report)
        self.assertGreater(min(r for r, _ in seconds), 0.5, f"echo: {report}")
        self.assertGreater(
            sorted(r for r, _ in seconds)[len(seconds) // 2], 0.9, f"echo: {report}"
        )
        lags = [lag for _, lag in seconds]
        self.assertLessEqual(max(lags) - min(lags), 10, f"echo: {report}")

    def test_readback_rfc4733(self) -> None:
        """
        1001 calls ``*44``, hears the introduction to its end, presses
        4, 7, 1 and # (RFC 4733 telephone-events) and hears "you entered
        four seven one".
        """
        phone = self.start_phone([0] * int(SIGNAL_SECONDS * RATE))
        self.dial(phone, READBACK, "readback")
        recording = _Recording(phone)
        intro = prompt_seconds("echo/digits")
        recording.wait(intro - HELD, "the introduction (echo/digits) to end")
        for n, key in enumerate(DIGITS + "#"):
            press(phone, key, n)
        said = ["general/you-entered", *(f"digits/{d}" for d in DIGITS)]
        total = intro + sum(prompt_seconds(p) for p in said)
        recording.wait(total - HELD, "the read-back to end")
        heard = self.hang_up(phone, READBACK)

        output = phone.output()
        for key in DIGITS + "#":
            self.assertIn(f"audio: send DTMF digit end: '{key}'", output)
        assert_read_back(self, heard, DIGITS)
        # Nothing else was played: the recording is the prompts and no more.
        self.assertLess(
            abs(len(heard) / RATE - total), 0.3, f"{len(heard) / RATE:.2f}s"
        )

    def test_readback_keys_during_introduction(self) -> None:
        """
        1001 calls ``*44`` and presses 4, 7, 1 and # while the introduction
        plays: the introduction stops and it hears "you entered four seven
        one" (the key that cut the introduction short is not lost).
        """
        phone = self.start_phone([0] * int(SIGNAL_SECONDS * RATE))
        self.dial(phone, READBACK, "readback")
        recording = _Recording(phone)
        recording.grow_to(1.0, "a second of the introduction")
        for n, key in enumerate(DIGITS + "#"):
            press(phone, key, n)
        said = ["general/you-entered", *(f"digits/{d}" for d in DIGITS)]
        recording.wait(
            1.0 + sum(prompt_seconds(p) for p in said) - HELD, "the read-back to end"
        )
        heard = self.hang_up(phone, READBACK)
        found = assert_read_back(self, heard, DIGITS, cut=True)
        _, _, last = found[-1]
        end = last + frames(prompt(f"digits/{DIGITS[-1]}")) * 0.02
        self.assertLess(abs(len(heard) / RATE - end), 0.3, f"{len(heard) / RATE:.2f}s")
