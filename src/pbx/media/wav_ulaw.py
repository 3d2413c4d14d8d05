"""
A recording as a G.711 µ-law WAV file (``WAVE_FORMAT_MULAW``): 8 kHz, one
byte a sample, a quarter of the size of 16 kHz 16-bit PCM and half of 8 kHz
PCM, and still a WAV every player opens.  Voicemail e-mails attach it when
asked for a compressed recording.
"""

from __future__ import annotations

import struct

import numpy as np
import soxr

from pbx.media.g711 import ulaw_decode, ulaw_encode
from pbx.media.wav import load_wav

#: RIFF format tag of ITU-T G.711 µ-law (RFC 2361).
WAVE_FORMAT_MULAW = 7
RATE = 8000


def ulaw_wav_bytes(pcm: np.ndarray, rate: int) -> bytes:
    """
    The WAV file bytes of mono int16 ``pcm`` at ``rate``, resampled to 8 kHz
    and µ-law encoded.
    """
    samples = np.asarray(pcm, dtype=np.int16)
    if rate != RATE:
        samples = np.clip(np.round(soxr.resample(samples.astype(np.float64), rate, RATE)),
                          -32768, 32767).astype(np.int16)
    data = ulaw_encode(np.ascontiguousarray(samples))
    # WAVEFORMATEX: a non-PCM format has cbSize and a fact chunk.
    fmt = struct.pack("<HHIIHHH", WAVE_FORMAT_MULAW, 1, RATE, RATE, 1, 8, 0)
    fact = struct.pack("<I", len(data))
    chunks = (b"fmt " + struct.pack("<I", len(fmt)) + fmt
              + b"fact" + struct.pack("<I", len(fact)) + fact
              + b"data" + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b""))
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def ulaw_wav_from_file(path: str) -> bytes:
    """The µ-law WAV of the 16-bit WAV at ``path`` (blocking: call it in a thread)."""
    audio = load_wav(path)
    samples = audio.samples if audio.channels == 1 else audio.samples[:, 0]
    return ulaw_wav_bytes(samples, audio.sample_rate)


def read_ulaw_wav(data: bytes) -> tuple[int, np.ndarray]:
    """
    ``(rate, int16 samples)`` of a µ-law WAV made by :func:`ulaw_wav_bytes`
    (or any mono µ-law WAV).

    :raises ValueError: if it is not one.
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a RIFF WAVE file")
    offset, rate, samples = 12, 0, None
    while offset + 8 <= len(data):
        kind, size = data[offset:offset + 4], struct.unpack("<I", data[offset + 4:offset + 8])[0]
        body = data[offset + 8:offset + 8 + size]
        if kind == b"fmt ":
            tag, channels, rate = struct.unpack("<HHI", body[:8])
            if tag != WAVE_FORMAT_MULAW or channels != 1:
                raise ValueError(f"format {tag} with {channels} channels, not mono µ-law")
        elif kind == b"data":
            samples = np.asarray(ulaw_decode(body), dtype=np.int16)
        offset += 8 + size + size % 2
    if samples is None or not rate:
        raise ValueError("no fmt or data chunk")
    return rate, samples
