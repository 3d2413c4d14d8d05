"""
ITU-T G.711 µ-law (PCMU) and A-law (PCMA), vectorised with numpy.

Both laws are tables built once at import: a 256-entry decode table (code ->
int16) and a 65536-entry encode table indexed by the int16 sample read as
uint16, so encoding or decoding a frame is one numpy indexing operation.

The tables follow the ITU-T reference implementation (G.191 Software Tools
Library, ``g711.c``): 16-bit linear input is reduced to 14 bits (µ-law) or
13 bits (A-law) by truncation, negative samples by one's complement (so a
small negative sample becomes the negative zero of its law, never a larger
magnitude), and a code decodes to the middle of its quantisation interval
(G.711 tables 1a and 2a).  µ-law inverts every bit of the code (G.711 §3.3)
and A-law every even bit (G.711 §3.2, ``^ 0x55``).

Pure numpy: nothing here knows about RTP or Twisted.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALAW_DECODE",
    "ALAW_ENCODE",
    "ULAW_DECODE",
    "ULAW_ENCODE",
    "alaw_decode",
    "alaw_encode",
    "ulaw_decode",
    "ulaw_encode",
]

PCM = npt.NDArray[np.int16]


def _ulaw_expand(codes: npt.NDArray[np.int32]) -> npt.NDArray[np.int16]:
    """Decode µ-law codes (G.191 ``ulaw_expand``)."""
    inverted = ~codes & 0xFF
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    step = 4 << (exponent + 1)
    magnitude = (0x80 << exponent) + step * mantissa + step // 2 - 4 * 33
    return np.where(codes < 0x80, -magnitude, magnitude).astype(np.int16)


def _ulaw_compress(samples: npt.NDArray[np.int32]) -> npt.NDArray[np.uint8]:
    """Encode 16-bit samples to µ-law codes (G.191 ``ulaw_compress``)."""
    # 14-bit magnitude (one's complement for negatives), biased by 33.
    biased = np.where(samples < 0, ~samples, samples) >> 2
    biased = np.minimum(biased + 33, 0x1FFF)
    # Segment: the position of the highest set bit above bit 5 (1..8).
    segment = np.ones_like(biased)
    for bit in range(6, 13):
        segment += (biased >> bit) > 0
    high = 8 - segment
    low = 0x0F - ((biased >> segment) & 0x0F)
    codes = (high << 4) | low
    codes = np.where(samples >= 0, codes | 0x80, codes)
    return codes.astype(np.uint8)


def _alaw_expand(codes: npt.NDArray[np.int32]) -> npt.NDArray[np.int16]:
    """Decode A-law codes (G.191 ``alaw_expand``)."""
    toggled = (codes ^ 0x55) & 0x7F
    exponent = toggled >> 4
    mantissa = toggled & 0x0F
    mantissa = np.where(exponent > 0, mantissa + 16, mantissa)
    mantissa = (mantissa << 4) + 0x08
    magnitude = np.where(
        exponent > 1, mantissa << np.maximum(exponent - 1, 0), mantissa
    )
    return np.where(codes > 127, magnitude, -magnitude).astype(np.int16)


def _alaw_compress(samples: npt.NDArray[np.int32]) -> npt.NDArray[np.uint8]:
    """Encode 16-bit samples to A-law codes (G.191 ``alaw_compress``)."""
    # 12-bit magnitude, one's complement for negatives.
    magnitude = np.where(samples < 0, ~samples, samples) >> 4
    # Segment 0 and 1 share a step; above, each segment doubles the step.
    exponent = np.zeros_like(magnitude)
    for bit in range(5, 12):
        exponent += (magnitude >> bit) > 0
    exponent = np.where(magnitude > 15, exponent + 1, 0)
    mantissa = np.where(
        exponent > 0, (magnitude >> np.maximum(exponent - 1, 0)) - 16, magnitude
    )
    codes = (exponent << 4) + mantissa
    codes = np.where(samples >= 0, codes | 0x80, codes)
    return (codes ^ 0x55).astype(np.uint8)


_CODES = np.arange(256, dtype=np.int32)
# Every int16 value, in the order of its uint16 bit pattern: 0..32767, -32768..-1.
_SAMPLES = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16)

ULAW_DECODE: PCM = _ulaw_expand(_CODES)
"""µ-law code -> int16 sample."""
ALAW_DECODE: PCM = _alaw_expand(_CODES)
"""A-law code -> int16 sample."""
ULAW_ENCODE: npt.NDArray[np.uint8] = _ulaw_compress(_SAMPLES.astype(np.int32))
"""int16 sample viewed as uint16 -> µ-law code."""
ALAW_ENCODE: npt.NDArray[np.uint8] = _alaw_compress(_SAMPLES.astype(np.int32))
"""int16 sample viewed as uint16 -> A-law code."""
for _table in (ULAW_DECODE, ALAW_DECODE, ULAW_ENCODE, ALAW_ENCODE):
    _table.flags.writeable = False
del _table


def _as_index(pcm: PCM) -> npt.NDArray[np.uint16]:
    """The samples of ``pcm`` as uint16 table indices.

    :raises TypeError: if ``pcm`` is not an int16 array.
    """
    if getattr(pcm, "dtype", None) != np.int16:
        raise TypeError(f"G.711 encodes int16 samples, not {type(pcm).__name__}")
    return np.ascontiguousarray(pcm).view(np.uint16)


def ulaw_encode(pcm: PCM) -> bytes:
    """
    Encode int16 samples to µ-law.

    :param pcm: a one-dimensional int16 array.
    :returns: one octet per sample.
    :raises TypeError: if ``pcm`` is not an int16 array.
    """
    return ULAW_ENCODE[_as_index(pcm)].tobytes()


def alaw_encode(pcm: PCM) -> bytes:
    """
    Encode int16 samples to A-law.

    :param pcm: a one-dimensional int16 array.
    :returns: one octet per sample.
    :raises TypeError: if ``pcm`` is not an int16 array.
    """
    return ALAW_ENCODE[_as_index(pcm)].tobytes()


def ulaw_decode(payload: bytes) -> PCM:
    """
    Decode µ-law octets.

    :returns: a new int16 array, one sample per octet.
    """
    return ULAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]


def alaw_decode(payload: bytes) -> PCM:
    """
    Decode A-law octets.

    :returns: a new int16 array, one sample per octet.
    """
    return ALAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]
