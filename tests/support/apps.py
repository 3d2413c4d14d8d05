"""
Helpers for the dialplan application integration tests (``test_apps_*.py``).

- :func:`apps_config`: :func:`support.calls.call_config` plus the ``echo``
  feature and the ``*43`` / ``*44`` routes of ``etc/pbx.yml``.
- :func:`prompt`: the samples of one of pbx's prompt files, the reference
  a recording is compared with.
- :func:`locate`: where a prompt occurs in a recording, by normalised
  cross-correlation; :func:`locate_in_order` for a sequence of prompts;
  :func:`assert_read_back` for what the digit read-back must have said.
- :func:`ulaw_to_linear` and :class:`RTPRecorder`: a minimal phone's media
  side on loopback (sends silence, keeps what it receives on the RTP
  timeline), for a SIP peer that cannot record audio itself (SIPp).

numpy (a dependency of pbx) does the correlation: a prompt of a few
seconds against a recording of ten takes a few milliseconds with FFTs.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import wave
from collections.abc import Sequence
from typing import Any

import numpy as np

from twisted.trial.unittest import SynchronousTestCase

from support.calls import RATE, call_config
from support.paths import ROOT

#: The English prompts of the source checkout, by sample rate.
PROMPTS = ROOT / "share" / "prompts" / "en"
#: Smallest correlation with its file that counts as "this prompt is here".
#: The prompt itself matches at r above 0.99 after G.711; other prompts of
#: the same synthetic voice reach 0.7 in places (a short "two" inside
#: "Press any digits"), so the brief's 0.6 would not tell them apart.
MATCH = 0.9
#: By how much (r) a spoken digit must match its own prompt better than any other digit's.
MARGIN = 0.2
#: The dialplan of ``etc/pbx.yml``.
DIALPLAN = [{"match": "*43", "app": "echo"}, {"match": "*44", "app": "readback"}]


def apps_config(**kwargs: Any) -> str:
    """:func:`support.calls.call_config` (``kwargs`` go to it) with ``features: {echo: {}}`` and :data:`DIALPLAN`."""
    config = json.loads(call_config(**kwargs))
    config["features"] = {"echo": {}}
    config["dialplan"] = DIALPLAN
    return json.dumps(config, indent=1)


def prompt(prompt_id: str, rate: int = RATE) -> np.ndarray:
    """The samples of ``share/prompts/en/<rate>/<prompt_id>.wav`` (16-bit mono) as floats."""
    path = PROMPTS / str(rate) / f"{prompt_id}.wav"
    with wave.open(str(path), "rb") as w:
        shape = (w.getnchannels(), w.getsampwidth(), w.getframerate())
        if shape != (1, 2, rate):
            raise AssertionError(f"{path}: (channels, width, rate) {shape}")
        raw = w.readframes(w.getnframes())
    return np.frombuffer(raw, "<i2").astype(np.float64)


def prompt_seconds(prompt_id: str, rate: int = RATE) -> float:
    """The length of a prompt file in seconds."""
    return len(prompt(prompt_id, rate)) / rate


def locate(
    audio: Sequence[float] | np.ndarray, template: np.ndarray, first: bool = False
) -> tuple[float, int]:
    """
    Where ``template`` best matches ``audio``: the highest normalised
    cross-correlation (Pearson's r of the template and the stretch of audio
    under it) over every offset.

    The audio is padded with silence at its end, so a template whose last
    few frames are missing (a phone's jitter buffer keeps the last packets
    of a burst) still matches where it starts; the missing part only lowers
    r a little.  Loudness does not matter (r is scale-free), so a prompt
    sent through G.711 matches its file at r above 0.99; another prompt or
    another signal stays well below 0.5.

    :param first: where the template first matches (r above
        :data:`MATCH`), not where it matches best: a prompt said twice
        matches both times at r near 1, and the best of the two is chance.
    :returns: (r, offset in samples).
    """
    x = np.concatenate([np.asarray(audio, dtype=np.float64), np.zeros(len(template))])
    t = np.asarray(template, dtype=np.float64)
    n = len(t)
    if len(x) < n or n == 0:
        return 0.0, 0
    t = t - t.mean()
    norm = float(np.linalg.norm(t))
    if norm == 0:
        return 0.0, 0
    t /= norm
    size = 1 << (len(x) + n - 1).bit_length()
    # Sum over the window of x[k + i] * t[i], for every offset k (an FFT correlation).
    dot = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(t, size)), size)
    dot = dot[: len(x) - n + 1]
    sums = np.concatenate([[0.0], np.cumsum(x)])
    squares = np.concatenate([[0.0], np.cumsum(x * x)])
    window_sum = sums[n:] - sums[:-n]
    window_squares = squares[n:] - squares[:-n]
    # The template has zero mean, so the window's mean drops out of the
    # numerator; the denominator is the window's standard deviation * sqrt(n).
    spread = np.sqrt(np.maximum(window_squares - window_sum**2 / n, 0.0))
    # Windows that are (nearly) silent cannot match anything.
    floor = 1e-3 * float(np.sqrt(np.sum(x * x) + 1.0))
    r = np.where(spread > floor, dot / np.maximum(spread, floor), 0.0)
    best = int(np.argmax(r))
    if first and r[best] > MATCH:
        # The peak of the first stretch above MATCH (not its rising edge).
        start = int(np.argmax(r > MATCH))
        best = start + int(np.argmax(r[start : start + n // 2 + 1]))
    return float(r[best]), best


def locate_in_order(
    audio: Sequence[float] | np.ndarray, prompt_ids: Sequence[str], rate: int = RATE
) -> list[tuple[str, float, float]]:
    """
    Find each prompt of ``prompt_ids`` in ``audio``, each searched for only
    after the end of the previous one's best match.

    :returns: (prompt id, r, start in seconds) for each.
    """
    found = []
    start = 0
    samples = np.asarray(audio, dtype=np.float64)
    for prompt_id in prompt_ids:
        template = prompt(prompt_id, rate)
        r, offset = locate(samples[start:], template, first=True)
        found.append((prompt_id, r, (start + offset) / rate))
        start += offset + len(template) // 2
    return found


def frames(samples: np.ndarray) -> int:
    """How many 20 ms frames pbx sends for 8 kHz ``samples`` (the last one padded with silence)."""
    return -(-len(samples) // 160)


def assert_read_back(
    test: SynchronousTestCase, heard: np.ndarray, digits: str, cut: bool = False
) -> list[tuple[str, float, float]]:
    """
    ``heard`` holds echo/digits at its start, then general/you-entered and
    one digits/N per digit of ``digits``: in that order, each matching its
    file above :data:`MATCH`, the read-back prompts back to back (one
    ``play()``), and each spoken digit matching its own prompt by
    :data:`MARGIN` better than any other digit's.

    :param cut: the caller pressed the keys during the introduction, so it
        must have been cut short (only its first half second is looked
        for); otherwise it must have played to its end before the read-back.
    :returns: what :func:`locate_in_order` found for the read-back prompts,
        after what it found for (the start of) the introduction.
    """
    intro = prompt("echo/digits")
    said = ["general/you-entered", *(f"digits/{d}" for d in digits)]
    if cut:
        r, at = locate(heard[: len(intro)], intro[: RATE // 2])
        opening = [("echo/digits (first 0.5 s)", r, at / RATE)]
        found = opening + locate_in_order(heard[at + RATE // 2 :], said)
        found[1:] = [(p, r, t + at / RATE + 0.5) for p, r, t in found[1:]]
    else:
        found = locate_in_order(heard, ["echo/digits", *said])
    report = ", ".join(f"{p} r={r:.3f} at {t:.2f}s" for p, r, t in found)
    for prompt_id, r, _ in found:
        test.assertGreater(r, MATCH, f"{prompt_id}: {report}")
    test.assertLess(found[0][2], 0.5, f"echo/digits not at the start: {report}")
    intro_end = found[0][2] + frames(intro) * 0.02
    if cut:
        test.assertLess(found[1][2], intro_end - 0.3, f"introduction not cut: {report}")
    else:
        test.assertGreater(found[1][2], intro_end - 0.03, f"introduction cut: {report}")
    for (before, _, start), (_, _, following) in zip(
        found[1:], found[2:], strict=False
    ):
        test.assertAlmostEqual(
            following, start + frames(prompt(before)) * 0.02, delta=0.05, msg=report
        )
    for digit, (_, r, start) in zip(digits, found[2:], strict=True):
        at = int(start * RATE)
        stretch = heard[max(0, at - 800) : at + len(prompt(f"digits/{digit}")) + 800]
        others = {
            d: locate(stretch, prompt(f"digits/{d}"))[0]
            for d in "0123456789"
            if d != digit
        }
        best = max(others, key=others.__getitem__)
        test.assertGreater(
            r - others[best],
            MARGIN,
            f"digits/{digit} vs digits/{best}: {others}; {report}",
        )
    return found


# -- G.711 and RTP --------------------------------------------------------------


def _ulaw_table() -> np.ndarray:
    """The 16-bit value of each mu-law code (ITU-T G.711, as its reference decoder)."""
    codes = np.arange(256)
    u = ~codes & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


_ULAW = _ulaw_table()


def ulaw_to_linear(data: bytes) -> np.ndarray:
    """Decode G.711 mu-law bytes to 16-bit samples."""
    return _ULAW[np.frombuffer(data, dtype=np.uint8)]


#: A PCMU packet of silence: 20 ms of the mu-law code for 0.
SILENCE = b"\xff" * 160


class RTPRecorder:
    """
    The media side of a phone on 127.0.0.1: binds a UDP port, sends 20 ms
    PCMU silence packets to pbx once it knows where pbx's media comes from
    (symmetric RTP, RFC 4961), and keeps every packet it receives.

    :meth:`audio` lays the payloads out on the RTP timestamp line, so the
    pauses pbx leaves (it sends nothing when it has nothing to play) stay
    pauses in the result.
    """

    def __init__(self) -> None:
        """Bind an even port (RTP) on 127.0.0.1 and start the receiver and sender threads."""
        self.socket = _bind_even_port()
        self.socket.settimeout(0.1)
        self.port: int = self.socket.getsockname()[1]
        #: (sequence number, timestamp, payload type, payload) of each packet, in arrival order.
        self.packets: list[tuple[int, int, int, bytes]] = []
        self.peer: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._threads = [
            threading.Thread(target=self._receive, daemon=True),
            threading.Thread(target=self._send, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _receive(self) -> None:
        while not self._stopped.is_set():
            try:
                data, peer = self.socket.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) < 12 or data[0] >> 6 != 2:
                continue
            header = 12 + 4 * (data[0] & 0x0F)
            sequence, timestamp = struct.unpack("!HI", data[2:8])
            with self._lock:
                self.peer = peer
                self.packets.append(
                    (sequence, timestamp, data[1] & 0x7F, data[header:])
                )

    def _send(self) -> None:
        sequence, timestamp, ssrc = 1, 0, 0x5EC0DE
        next_at = time.monotonic()
        while not self._stopped.wait(max(0.0, next_at - time.monotonic())):
            next_at += 0.02
            peer = self.peer
            if peer is None:
                continue
            header = struct.pack("!BBHII", 0x80, 0, sequence, timestamp, ssrc)
            try:
                self.socket.sendto(header + SILENCE, peer)
            except OSError:
                return
            sequence = (sequence + 1) & 0xFFFF
            timestamp = (timestamp + 160) & 0xFFFFFFFF

    def received(self) -> int:
        """How many packets arrived so far."""
        with self._lock:
            return len(self.packets)

    def audio(self, payload_type: int = 0) -> np.ndarray:
        """The PCMU audio received so far, as :func:`timeline` lays it out."""
        with self._lock:
            packets = list(self.packets)
        return timeline(packets, payload_type)

    def close(self) -> None:
        """Stop both threads and close the socket."""
        self._stopped.set()
        for thread in self._threads:
            thread.join(10)
        self.socket.close()


def timeline(
    packets: Sequence[tuple[int, int, int, bytes]], payload_type: int = 0
) -> np.ndarray:
    """
    Decode received PCMU packets (sequence number, timestamp, payload type,
    payload) onto one line of samples: each packet at its timestamp's
    distance from the first packet's (wrapping at 2**32), silence where
    none came, the later of two packets for the same place winning.  Other
    payload types (telephone-event, comfort noise) are left out.
    """
    chosen = [p for p in packets if p[2] == payload_type]
    if not chosen:
        return np.zeros(0, dtype=np.int16)
    first = chosen[0][1]
    places = [((ts - first) & 0xFFFFFFFF, payload) for _, ts, _, payload in chosen]
    length = max(place + len(payload) for place, payload in places)
    out = np.zeros(length, dtype=np.int16)
    for place, payload in places:
        out[place : place + len(payload)] = ulaw_to_linear(payload)
    return out


def _bind_even_port() -> socket.socket:
    """A UDP socket on 127.0.0.1 bound to an even port (RTP's convention, RFC 3550 §11)."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        if s.getsockname()[1] % 2 == 0:
            return s
        s.close()
    raise AssertionError("no even UDP port on 127.0.0.1")
