"""
Audio codecs: G.711 µ-law and A-law, G.722 and Opus as :class:`ICodec` plugins.

A codec object is a factory found by :func:`pbx.plugin_loader.discover_codecs`
in the dropin package :mod:`pbx.plugins`; every RTP stream gets its own encoder and decoder
from it.  PCM is a one-dimensional numpy ``int16`` array at the codec's
:attr:`~pbx.interfaces.ICodec.sample_rate`: 8000 for G.711, 16000 for G.722
(whose RTP clock says 8000, RFC 3551 §4.5.2) and 48000 for Opus (mono inside,
``opus/48000/2`` in the rtpmap, RFC 7587 §7).

The native libraries (``g722``, ``opuslib_next`` from opuslib-next-bundled)
are imported when the first encoder or decoder is made, so loading the dropin
costs only numpy.  A codec whose library is missing or broken raises
:class:`CodecUnavailable`; :func:`~pbx.plugin_loader.discover_codecs` probes
each codec and leaves such a codec out with one log line.

Loss concealment: Opus runs its own packet loss concealment
(:meth:`OpusDecoder.conceal`) and in-band FEC (:meth:`OpusDecoder.recover`,
decoding a lost frame from the redundancy in the next packet).  G.711 and
G.722 repeat the last good frame, fading to silence after 10 ms and silent
from 60 ms, a simple form of G.711 Appendix I (which repeats pitch periods).

telephone-event (RFC 4733) is not an audio codec: the DTMF module handles it.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
from attrs import define, field, frozen
from attrs.validators import and_, ge, le, optional

from zope.interface import implementer

from pbx.interfaces import ICodec, IDecoder, IEncoder
from pbx.media import g711

__all__ = [
    "FADE_SECONDS",
    "HOLD_SECONDS",
    "G722",
    "OPUS_FRAME_SAMPLES",
    "PCM",
    "PCMA",
    "PCMU",
    "CodecUnavailable",
    "G711Decoder",
    "G711Encoder",
    "G722Decoder",
    "G722Encoder",
    "Opus",
    "OpusDecoder",
    "OpusEncoder",
]


PCM = npt.NDArray[np.int16]

HOLD_SECONDS = 0.01
"""Concealment by repetition keeps full level this long (G.711 App. I: 10 ms)."""
FADE_SECONDS = 0.06
"""... and is silent from this long after the loss began (G.711 App. I: 60 ms)."""

OPUS_FRAME_SAMPLES = frozenset({120, 240, 480, 960, 1920, 2880, 3840, 4800, 5760})
"""Frame lengths Opus encodes at 48 kHz: 2.5 to 120 ms (RFC 6716 §2.1.4)."""
_OPUS_MAX_SAMPLES = 5760
_OPUS_PLC_STEP = 120  # PLC and FEC work in multiples of 2.5 ms (opus_decode docs)


class CodecUnavailable(Exception):
    """A codec's native library is not installed or does not work here."""


def _check_pcm(pcm: Any, codec: str) -> PCM:
    """
    ``pcm`` as a contiguous one-dimensional int16 array.

    :raises TypeError: if it is not an int16 numpy array.
    :raises ValueError: if it is not one-dimensional.
    """
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
        raise TypeError(f"{codec}: PCM must be an int16 numpy array, not {pcm!r:.60}")
    if pcm.ndim != 1:
        raise ValueError(
            f"{codec}: PCM must be mono (one-dimensional), not {pcm.shape}"
        )
    return np.ascontiguousarray(pcm)


@define(eq=False)
class _RepeatFade:
    """
    Concealment by repeating the last good frame, fading out.

    Like G.711 Appendix I, the first :data:`HOLD_SECONDS` of a loss are
    repeated at full level; the gain then falls linearly to silence at
    :data:`FADE_SECONDS` and stays there.  A good frame restores it.
    """

    _rate: int
    _last: PCM = field(factory=lambda: np.zeros(0, dtype=np.int16))
    _position: int = 0
    _concealed: int = 0

    def good(self, pcm: PCM) -> None:
        """Remember a decoded frame as the one to repeat."""
        self._last = pcm
        self._position = 0
        self._concealed = 0

    def conceal(self, samples: int) -> PCM:
        """``samples`` samples of repeated, fading audio (silence when faded)."""
        if samples < 0:
            raise ValueError(f"cannot conceal {samples} samples")
        hold, end = self._rate * HOLD_SECONDS, self._rate * FADE_SECONDS
        start = self._concealed
        self._concealed += samples
        if not len(self._last) or start >= end:
            return np.zeros(samples, dtype=np.int16)
        indices = (self._position + np.arange(samples)) % len(self._last)
        self._position = (self._position + samples) % len(self._last)
        gain = np.clip((end - start - np.arange(samples)) / (end - hold), 0.0, 1.0)
        return (self._last[indices] * gain).astype(np.int16)


# ---------------------------------------------------------------------------
# G.711


@implementer(IEncoder)
@define(eq=False)
class G711Encoder:
    """Encodes one stream to µ-law or A-law (stateless; any frame length)."""

    _table: npt.NDArray[np.uint8]
    _name: str

    def encode(self, pcm: PCM) -> bytes:
        """
        :param pcm: int16 samples at 8 kHz.
        :returns: one octet per sample.
        :raises TypeError: if ``pcm`` is not an int16 array.
        """
        return self._table[_check_pcm(pcm, self._name).view(np.uint16)].tobytes()


@implementer(IDecoder)
@define(eq=False)
class G711Decoder:
    """Decodes one µ-law or A-law stream; conceals loss by repeat-and-fade."""

    _table: PCM
    _concealer: _RepeatFade = field(factory=lambda: _RepeatFade(8000))

    def decode(self, payload: bytes) -> PCM:
        """:returns: one int16 sample per octet of ``payload``."""
        pcm = self._table[np.frombuffer(payload, dtype=np.uint8)]
        self._concealer.good(pcm)
        return pcm

    def conceal(self, samples: int) -> PCM:
        """The last frame repeated and fading, ``samples`` long."""
        return self._concealer.conceal(samples)


@implementer(ICodec)
@frozen
class PCMU:
    """ITU-T G.711 µ-law, static payload type 0 (RFC 3551 §4.5.14)."""

    name = "PCMU"
    clock_rate = 8000
    sample_rate = 8000
    channels = 1
    payload_type = 0
    fmtp = None

    def new_encoder(self) -> G711Encoder:
        """A µ-law encoder for one stream."""
        return G711Encoder(g711.ULAW_ENCODE, self.name)

    def new_decoder(self) -> G711Decoder:
        """A µ-law decoder for one stream."""
        return G711Decoder(g711.ULAW_DECODE)


@implementer(ICodec)
@frozen
class PCMA:
    """ITU-T G.711 A-law, static payload type 8 (RFC 3551 §4.5.14)."""

    name = "PCMA"
    clock_rate = 8000
    sample_rate = 8000
    channels = 1
    payload_type = 8
    fmtp = None

    def new_encoder(self) -> G711Encoder:
        """An A-law encoder for one stream."""
        return G711Encoder(g711.ALAW_ENCODE, self.name)

    def new_decoder(self) -> G711Decoder:
        """An A-law decoder for one stream."""
        return G711Decoder(g711.ALAW_DECODE)


# ---------------------------------------------------------------------------
# Native libraries, imported on first use


@functools.cache
def _native(module: str, package: str) -> ModuleType:
    """
    Import a codec library once.

    :raises CodecUnavailable: naming the PyPI package to install.
    """
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as e:
        raise CodecUnavailable(f"{package} is not usable here: {e}") from e


# ---------------------------------------------------------------------------
# G.722


G722_BIT_RATE = 64000
"""RTP carries G.722 at 64 kbit/s only (RFC 3551 §4.5.2)."""


@implementer(IEncoder)
@define(eq=False)
class G722Encoder:
    """Encodes one G.722 stream: two 16 kHz samples per octet."""

    _state: Any

    def encode(self, pcm: PCM) -> bytes:
        """
        :param pcm: int16 samples at 16 kHz, an even number of them.
        :returns: one octet per two samples.
        :raises TypeError: if ``pcm`` is not an int16 array.
        :raises ValueError: for an odd number of samples.
        """
        pcm = _check_pcm(pcm, "G722")
        if len(pcm) % 2:
            raise ValueError(f"G722: encodes sample pairs, got {len(pcm)} samples")
        return bytes(self._state.encode(pcm))


@implementer(IDecoder)
@define(eq=False)
class G722Decoder:
    """Decodes one G.722 stream; conceals loss by repeat-and-fade."""

    _state: Any
    _concealer: _RepeatFade = field(factory=lambda: _RepeatFade(16000))

    def decode(self, payload: bytes) -> PCM:
        """:returns: two int16 samples at 16 kHz per octet of ``payload``."""
        # The library returns array('h') or, with G722-numpy, an ndarray.
        pcm = np.frombuffer(self._state.decode(payload), dtype=np.int16)
        self._concealer.good(pcm)
        return pcm

    def conceal(self, samples: int) -> PCM:
        """The last frame repeated and fading, ``samples`` long."""
        return self._concealer.conceal(samples)


@implementer(ICodec)
@frozen
class G722:
    """ITU-T G.722 at 64 kbit/s, static payload type 9 (the ``g722`` package)."""

    name = "G722"
    clock_rate = 8000
    sample_rate = 16000
    channels = 1
    payload_type = 9
    fmtp = None

    def probe(self) -> None:
        """
        Load the G.722 library.

        :raises CodecUnavailable: if the ``g722`` package is missing.
        """
        _native("G722", "the g722 package")

    def _state(self) -> Any:
        """Fresh ADPCM state of the ``g722`` package, 16 kHz PCM at 64 kbit/s."""
        return _native("G722", "the g722 package").G722(16000, G722_BIT_RATE)

    def new_encoder(self) -> G722Encoder:
        """A G.722 encoder with fresh ADPCM state."""
        return G722Encoder(self._state())

    def new_decoder(self) -> G722Decoder:
        """A G.722 decoder with fresh ADPCM state."""
        return G722Decoder(self._state())


# ---------------------------------------------------------------------------
# Opus


@implementer(IEncoder)
@define(eq=False)
class OpusEncoder:
    """Encodes one Opus stream, mono at 48 kHz, with in-band FEC."""

    _encoder: Any

    def encode(self, pcm: PCM) -> bytes:
        """
        :param pcm: int16 samples at 48 kHz, one Opus frame: 2.5, 5, 10, 20,
            40, 60, 80, 100 or 120 ms.
        :returns: one Opus packet.
        :raises TypeError: if ``pcm`` is not an int16 array.
        :raises ValueError: for another frame length.
        """
        pcm = _check_pcm(pcm, "opus")
        if len(pcm) not in OPUS_FRAME_SAMPLES:
            raise ValueError(f"opus: {len(pcm)} samples is not an Opus frame length")
        return bytes(self._encoder.encode(pcm.tobytes(), len(pcm)))


@implementer(IDecoder)
@define(eq=False)
class OpusDecoder:
    """
    Decodes one Opus stream to mono 48 kHz.

    A stereo stream is mixed down by libopus.  Loss is concealed by libopus
    (:meth:`conceal`) or, when the packet after a loss has arrived, recovered
    from its in-band FEC data (:meth:`recover`).
    """

    _decoder: Any  # keeps the libopus state alive; freed with it
    _opus_decode: Any  # the ctypes opus_decode function
    _pointer_type: Any
    _buffer: PCM = field(factory=lambda: np.empty(_OPUS_MAX_SAMPLES, dtype=np.int16))

    def _run(self, payload: bytes | None, samples: int, fec: bool) -> PCM:
        pointer = self._buffer.ctypes.data_as(self._pointer_type)
        length = len(payload) if payload is not None else 0
        state = self._decoder.decoder_state
        count = self._opus_decode(state, payload, length, pointer, samples, int(fec))
        if count < 0:
            raise ValueError(f"opus: cannot decode the packet (libopus error {count})")
        return self._buffer[:count].copy()

    def decode(self, payload: bytes) -> PCM:
        """
        :returns: the packet's int16 samples at 48 kHz (960 for 20 ms).
        :raises ValueError: for a packet libopus rejects.
        """
        if not payload:
            raise ValueError("opus: empty packet")
        return self._run(payload, _OPUS_MAX_SAMPLES, fec=False)

    def conceal(self, samples: int) -> PCM:
        """
        ``samples`` samples of libopus packet loss concealment.

        libopus conceals in steps of 2.5 ms (120 samples); other lengths are
        concealed rounded up and cut.
        """
        if samples < 0:
            raise ValueError(f"cannot conceal {samples} samples")
        if samples == 0:
            return np.zeros(0, dtype=np.int16)
        rounded = min(-(-samples // _OPUS_PLC_STEP) * _OPUS_PLC_STEP, _OPUS_MAX_SAMPLES)
        pcm = self._run(None, rounded, fec=False)
        if len(pcm) < samples:
            pcm = np.concatenate([pcm, self.conceal(samples - len(pcm))])
        return pcm[:samples]

    def recover(self, next_payload: bytes, samples: int) -> PCM:
        """
        Rebuild a lost frame from the FEC data in the packet that followed it
        (RFC 7587 §3.2); libopus falls back to concealment if there is none.
        Decode ``next_payload`` normally afterwards.

        :param samples: the lost frame's length, a multiple of 120.
        :raises ValueError: for a packet libopus rejects.
        """
        if samples % _OPUS_PLC_STEP or not 0 < samples <= _OPUS_MAX_SAMPLES:
            raise ValueError(f"opus: cannot recover {samples} samples")
        return self._run(next_payload, samples, fec=True)


@implementer(ICodec)
@frozen
class Opus:
    """
    Opus (RFC 7587), dynamic payload type, ``opus/48000/2``, mono PCM inside.

    The encoder is in VoIP mode with in-band FEC on, tuned for
    :attr:`expected_loss` percent packet loss (FEC costs bits only when that
    is above 0).  The library is opuslib-next-bundled, which ships libopus.

    :ivar bitrate: bits per second (6000 to 510000), or ``None`` for
        libopus's choice.
    :ivar expected_loss: the packet loss, in percent, FEC is tuned for.
    """

    name = "opus"
    clock_rate = 48000
    sample_rate = 48000
    channels = 2
    payload_type = None
    fmtp = "minptime=10;useinbandfec=1"

    bitrate: int | None = field(
        default=None,
        validator=optional(and_(ge(6000), le(510000))),
    )
    expected_loss: int = field(default=10, validator=and_(ge(0), le(100)))

    def probe(self) -> None:
        """
        Load libopus.

        :raises CodecUnavailable: if opuslib-next-bundled is missing or its
            libopus does not load.
        """
        _native("opuslib_next", "opuslib-next-bundled")

    def new_encoder(self) -> OpusEncoder:
        """An Opus encoder for one stream."""
        opus = _native("opuslib_next", "opuslib-next-bundled")
        encoder = opus.Encoder(48000, 1, "voip")
        encoder.inband_fec = 1
        encoder.packet_loss_perc = self.expected_loss
        if self.bitrate is not None:
            encoder.bitrate = self.bitrate
        return OpusEncoder(encoder)

    def new_decoder(self) -> OpusDecoder:
        """An Opus decoder for one stream."""
        opus = _native("opuslib_next", "opuslib-next-bundled")
        api = _native("opuslib_next.api", "opuslib-next-bundled")
        decoder_api = _native("opuslib_next.api.decoder", "opuslib-next-bundled")
        # The high-level decode() cannot conceal (it needs a packet) and
        # returns bytes: call opus_decode itself, into a numpy buffer.
        return OpusDecoder(
            opus.Decoder(48000, 1), decoder_api.libopus_decode, api.c_int16_pointer
        )
