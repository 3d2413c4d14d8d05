"""
Sample-rate conversion between codecs, and transcoding one codec to another.

:class:`Resampler` wraps a :class:`soxr.ResampleStream` (int16 in and out,
filter state kept across frames) and turns its bursty output into exactly
``len(frame) * to_rate / from_rate`` samples per call, at a fixed latency.

Latency, measured with soxr 1.1 for 20 ms frames between 8, 16 and 48 kHz:
soxr's fixed-ratio stream works in large FFT blocks and holds back 20 to
175 ms depending on quality and rates (``HQ``: 115 ms for 8 -> 16 kHz, 175 ms
for 8 -> 48 kHz; ``QQ`` holds back nothing but does not filter aliases),
which is too much for a call.  Its variable-rate engine (``vr=True``, marked
experimental in python-soxr) holds back 12.5 to 30 ms, whatever the frame
size, with stop-band rejection above 100 dB, so it is the default here
(``low_latency=True``) at about 3 to 4 times the CPU.  ``soxr`` is imported
only when the first resampler between two different rates is made.

:func:`transcoder` chains decode -> resample -> encode for one stream.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from attrs import define, field

from pbx.interfaces import ICodec, IDecoder, IEncoder
from pbx.media.codecs import PCM

__all__ = ["FRAME_MS", "Resampler", "Transcoder", "transcoder"]

FRAME_MS = 20
"""The frame length transcoders encode, in milliseconds."""


def _empty() -> PCM:
    return np.zeros(0, dtype=np.int16)


@define(eq=False)
class Resampler:
    """
    A streaming resampler for one direction of one stream.

    Each call returns exactly as many samples as its input covers at the new
    rate (fractions carried over to the next call).  The first calls are
    padded with silence while soxr fills its filter, so the delay stays
    constant and a frame in gives a frame out.

    :param from_rate: the input sample rate.
    :param to_rate: the output sample rate.
    :param quality: the soxr quality: ``"QQ"``, ``"LQ"``, ``"MQ"``, ``"HQ"``
        or ``"VHQ"`` (the variable-rate engine of ``low_latency`` ignores it).
    :param low_latency: use soxr's variable-rate engine (see the module
        docstring).
    """

    from_rate: int
    to_rate: int
    quality: str = "HQ"
    low_latency: bool = True
    _stream: Any = field(init=False, default=None)
    _pending: PCM = field(init=False, factory=_empty)
    _consumed: int = field(init=False, default=0)
    _produced: int = field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        if self.from_rate <= 0 or self.to_rate <= 0:
            raise ValueError(f"bad sample rates {self.from_rate} -> {self.to_rate}")
        if self.from_rate != self.to_rate:
            import soxr  # loaded with the first resampler that needs it

            self._stream = soxr.ResampleStream(
                self.from_rate, self.to_rate, 1, dtype="int16",
                quality=self.quality, vr=self.low_latency,
            )  # fmt: skip

    def __call__(self, pcm: PCM) -> PCM:
        """
        Resample the next stretch of the stream.

        :param pcm: int16 samples at :attr:`from_rate`.
        :returns: int16 samples at :attr:`to_rate`.
        :raises TypeError: if ``pcm`` is not an int16 array.
        """
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise TypeError("resample: PCM must be a one-dimensional int16 array")
        if self._stream is None:
            return pcm
        out = self._stream.resample_chunk(np.ascontiguousarray(pcm))
        self._consumed += len(pcm)
        want = self._consumed * self.to_rate // self.from_rate - self._produced
        have = len(self._pending) + len(out)
        if have < want:
            # Start-up: soxr still holds its filter delay.  Silence in front
            # of the stream keeps every later call exact.
            silence = np.zeros(want - have, dtype=np.int16)
            buffered = np.concatenate([silence, self._pending, out])
        elif len(self._pending):
            buffered = np.concatenate([self._pending, out])
        else:
            buffered = out
        result, self._pending = buffered[:want], buffered[want:]
        self._produced += want
        return result


@define(eq=False)
class Transcoder:
    """
    One stream's payloads in one codec turned into payloads in another.

    Decodes, resamples and encodes :data:`FRAME_MS` frames.  A payload of
    20 ms gives a payload of 20 ms; other lengths are buffered and encoded in
    whole frames (several frames into one payload; an empty payload while
    less than a frame is buffered).  Not thread-safe: one per stream.
    """

    source: ICodec
    destination: ICodec
    _decoder: IDecoder = field(init=False)
    _encoder: IEncoder = field(init=False)
    _resampler: Resampler = field(init=False)
    _frame: int = field(init=False)
    _pending: PCM = field(init=False, factory=_empty)

    def __attrs_post_init__(self) -> None:
        self._decoder = self.source.new_decoder()
        self._encoder = self.destination.new_encoder()
        self._resampler = Resampler(
            self.source.sample_rate, self.destination.sample_rate
        )
        self._frame = self.destination.sample_rate * FRAME_MS // 1000

    def __call__(self, payload: bytes) -> bytes:
        """
        Transcode the next payload of the stream.

        :returns: the destination payload, empty while less than a frame is
            buffered.
        :raises ValueError: for a payload the source codec cannot decode.
        """
        return self._feed(self._decoder.decode(payload))

    def conceal(self, samples: int) -> bytes:
        """
        A destination payload for a lost source packet of ``samples``
        samples (at the source sample rate), from the source's concealment.
        """
        return self._feed(self._decoder.conceal(samples))

    def _feed(self, pcm: PCM) -> bytes:
        pcm = self._resampler(pcm)
        if not len(self._pending) and len(pcm) == self._frame:
            return bytes(self._encoder.encode(pcm))
        buffered = np.concatenate([self._pending, pcm])
        whole = len(buffered) - len(buffered) % self._frame
        self._pending = buffered[whole:]
        if not whole:
            return b""
        return bytes(self._encoder.encode(buffered[:whole]))


def transcoder(src: ICodec, dst: ICodec) -> Transcoder:
    """
    A callable turning ``src`` payloads into ``dst`` payloads for one stream.

    :param src: the codec the payloads arrive in.
    :param dst: the codec to send them on in.
    """
    return Transcoder(src, dst)
