"""
Helpers for the call integration tests (``test_calls_*.py``).

- :func:`call_config`: a loopback configuration with the ``rtp:`` and
  ``calls:`` sections set for a test.
- :func:`free_udp_block` and :func:`bound_udp_ports`: port ranges for pbx's
  relay and the peers' media, and what is bound in them right now, read from
  ``/proc/net/udp`` (how a test sees relay sockets without asking pbx).
- Test signals: keyed tones written as 8 kHz WAV files (16-bit PCM for
  baresip's ``aufile``, mu-law for SIPp's ``rtp_stream``), and the analysis
  of what a peer recorded: dominant frequency (Goertzel), how much of the
  signal is that tone, and how well its on/off pattern lines up with what
  was sent.  Pure Python: a few seconds of 8 kHz audio take well under a
second.
"""

from __future__ import annotations

import json
import math
import random
import struct
import wave
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from support.daemon import loopback_config

#: Sample rate of every test signal: G.711's.
RATE = 8000
#: Length of one on/off slot of a keyed tone, and of one envelope frame, in samples (20 ms).
FRAME = 160


def call_config(
    *,
    api_port: int,
    sip_port: int,
    admin_password: str,
    extensions: Mapping[str, str],
    rtp_ports: tuple[int, int],
    calls: Mapping[str, int] | None = None,
    **more: Any,
) -> str:
    """
    :func:`support.daemon.loopback_config` (``more`` goes to it) plus an
    ``rtp:`` section on 127.0.0.1 with the given port range and, if given,
    a ``calls:`` section.
    """
    config = json.loads(
        loopback_config(
            api_port=api_port,
            sip_port=sip_port,
            admin_password=admin_password,
            extensions=extensions,
            **more,
        )
    )
    config["rtp"] = {
        "ports": f"{rtp_ports[0]}-{rtp_ports[1]}",
        "interface": "127.0.0.1",
    }
    if calls:
        config["calls"] = dict(calls)
    return json.dumps(config, indent=1)


def bound_udp_ports(low: int = 1, high: int = 65535) -> set[int]:
    """Local UDP ports from ``low`` to ``high`` that some socket on this host has bound."""
    ports = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            local = line.split()[1]  # address:port in hex
            port = int(local.rsplit(":", 1)[1], 16)
            if low <= port <= high:
                ports.add(port)
    return ports


def free_udp_block(size: int, rng: random.Random | None = None) -> int:
    """
    The first port of ``size`` consecutive UDP ports, starting even, that
    nothing has bound right now (above the usual ephemeral range's start, so
    the kernel is unlikely to hand them out meanwhile).
    """
    rng = rng or random.Random()
    bound = bound_udp_ports()
    for _ in range(1000):
        first = rng.randrange(20000, 32000 - size) & ~1
        if not any(p in bound for p in range(first, first + size)):
            return first
    raise AssertionError(f"no {size} free consecutive UDP ports")


# -- signals ------------------------------------------------------------------


def keyed_tone(
    frequency: float, seconds: float, seed: int, amplitude: int = 12000
) -> tuple[list[int], list[bool]]:
    """
    A tone switched on and off in 20 ms slots by a seeded pseudo-random
    pattern (about 60 % on), with 2.5 ms ramps so keying does not splatter.

    :returns: the 16-bit samples and the pattern (one bool per slot).
    """
    rng = random.Random(seed)
    slots = int(seconds * RATE) // FRAME
    pattern = [rng.random() < 0.6 for _ in range(slots)]
    ramp = 20  # samples
    samples = []
    for slot, on in enumerate(pattern):
        for i in range(FRAME):
            if not on:
                samples.append(0)
                continue
            gain = min(1.0, (i + 1) / ramp, (FRAME - i) / ramp)
            n = slot * FRAME + i
            value = amplitude * gain * math.sin(2 * math.pi * frequency * n / RATE)
            samples.append(int(round(value)))
    return samples, pattern


def write_pcm_wav(path: Path, samples: Sequence[int]) -> None:
    """Write 8 kHz mono 16-bit PCM (what baresip's aufile reads)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(struct.pack(f"<{len(samples)}h", *samples))


def read_pcm_wav(path: Path) -> list[int]:
    """Read 8 kHz mono 16-bit PCM (what baresip's sndfile writes)."""
    with wave.open(str(path), "rb") as w:
        shape = (w.getnchannels(), w.getsampwidth(), w.getframerate())
        if shape != (1, 2, RATE):
            raise AssertionError(
                f"{path}: (channels, width, rate) {shape}, not (1, 2, {RATE})"
            )
        raw = w.readframes(w.getnframes())
    return list(struct.unpack(f"<{len(raw) // 2}h", raw))


#: Upper ends of the eight mu-law segments, in 14-bit magnitude plus bias.
_ULAW_SEGMENT_ENDS = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)


def ulaw(sample: int) -> int:
    """One 16-bit sample as G.711 mu-law, as the ITU-T reference code (g711.c) encodes it."""
    value = sample >> 2  # 14 bits, rounding towards minus infinity
    mask = 0xFF
    if value < 0:
        value, mask = -value, 0x7F
    value = min(value, 8159) + 0x21
    for segment, end in enumerate(_ULAW_SEGMENT_ENDS):
        if value <= end:
            return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask
    return 0x7F ^ mask  # the loudest code


def write_ulaw_wav(path: Path, samples: Iterable[int]) -> None:
    """
    Write 8 kHz mono mu-law WAV (format tag 7), what SIPp's ``rtp_stream``
    sends as PCMU: it copies the data chunk into RTP payloads unchanged.
    """
    data = bytes(ulaw(s) for s in samples)
    fmt = struct.pack("<HHIIHH", 7, 1, RATE, RATE, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    Path(path).write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


# -- analysis -----------------------------------------------------------------


def goertzel_power(samples: Sequence[float], frequency: float) -> float:
    """The power of ``samples`` at ``frequency`` (Goertzel; |X(f)|² of the DFT)."""
    k = 2 * math.cos(2 * math.pi * frequency / RATE)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + k * s1 - s2, s1
    return s1 * s1 + s2 * s2 - k * s1 * s2


def dominant_frequency(samples: Sequence[float]) -> float:
    """The strongest frequency of ``samples`` between 100 Hz and 3.9 kHz, to 0.5 Hz."""
    coarse = max(range(100, 3900, 20), key=lambda f: goertzel_power(samples, f))
    return max(
        (coarse + step / 2 for step in range(-40, 41)),
        key=lambda f: goertzel_power(samples, f),
    )


def tone_share(samples: Sequence[int], frequency: float, floor: float = 500.0) -> float:
    """
    How much of the signal is a tone at ``frequency``: over the 20 ms frames
    louder than ``floor`` (RMS), the mean share of each frame's energy at
    that frequency, i.e. its normalised correlation with the best-matching
    sinusoid (about 1 for the tone, near 0 for another tone or noise).
    """
    shares = []
    for i in range(0, len(samples) - FRAME + 1, FRAME):
        frame = samples[i : i + FRAME]
        energy = sum(x * x for x in frame)
        if energy > floor * floor * FRAME:
            shares.append(goertzel_power(frame, frequency) / (FRAME / 2 * energy))
    return sum(shares) / len(shares) if shares else 0.0


def envelope(samples: Sequence[int]) -> list[float]:
    """RMS of each 20 ms frame."""
    return [
        math.sqrt(sum(x * x for x in samples[i : i + FRAME]) / FRAME)
        for i in range(0, len(samples) - FRAME + 1, FRAME)
    ]


def pearson(a: Sequence[float], b: Sequence[float]) -> float:
    """The normalised cross-correlation (Pearson's r) of two equally long sequences."""
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    return cov / math.sqrt(va * vb) if va and vb else 0.0


def best_alignment(
    received: Sequence[float], pattern: Sequence[bool], max_lag: int = 100
) -> tuple[float, int]:
    """
    How well the on/off envelope of ``received`` matches the keying
    ``pattern`` that was sent, at the best lag (in 20 ms frames, the
    recording starting up to ``max_lag`` frames into the pattern).

    :returns: (normalised cross-correlation, lag in frames).
    """
    sent = [1.0 if on else 0.0 for on in pattern]
    best = (-1.0, 0)
    for lag in range(0, max_lag + 1):
        n = min(len(received), len(sent) - lag)
        if n < 50:  # one second at least
            break
        r = pearson(received[:n], sent[lag : lag + n])
        best = max(best, (r, lag))
    return best


def heard_problems(
    audio: Sequence[int],
    *,
    talker: float,
    own: float,
    pattern: Sequence[bool],
    seconds: float = 1.0,
) -> list[str]:
    """
    What is wrong with ``audio``, recorded by a phone that sent a keyed tone
    at ``own`` Hz, as the keyed tone at ``talker`` Hz sent with ``pattern``:
    at least ``seconds`` of sound, dominant frequency within 3 Hz of the
    talker's, over 80 % of the loud frames' energy at it and under 5 % at
    its own tone, and an on/off envelope that lines up with the pattern
    (correlation above 0.8).

    :returns: one line per failed check; empty when it is the talker's signal.
    """
    loud = [
        i
        for i in range(0, len(audio) - FRAME, FRAME)
        if max(map(abs, audio[i : i + FRAME])) > 1000
    ]
    if len(loud) * FRAME / RATE < seconds:
        return [f"{len(loud) * FRAME / RATE:.2f}s of sound, under {seconds}s"]
    problems = []
    start = loud[0]
    found = dominant_frequency(audio[start : start + RATE])
    if abs(found - talker) > 3.0:
        problems.append(f"dominant {found} Hz, not {talker} Hz")
    if (share := tone_share(audio, talker)) <= 0.8:
        problems.append(f"{share:.2f} of the energy at {talker} Hz")
    if (share := tone_share(audio, own)) >= 0.05:
        problems.append(f"{share:.2f} of the energy at its own {own} Hz")
    r, lag = best_alignment(envelope(audio), pattern)
    if r <= 0.8:
        problems.append(f"envelope correlation {r:.2f} at lag {lag}")
    return problems
