"""
Codec identities: the static payload types of RFC 3551 and well-known
dynamic codecs, and :class:`CodecSpec`, a codec as configured or negotiated.

Codecs are compared by :func:`codec_key`: (encoding name folded to lower case,
RTP clock rate, channels), because encoding names are case-insensitive
(RFC 4855 §3) and the clock rate is part of a codec's identity (``speex/8000``
and ``speex/16000`` are different codecs).  ``fmtp`` parameters are not part
of the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from attrs import frozen

__all__ = [
    "AUXILIARY",
    "STATIC_PAYLOAD_TYPES",
    "WELL_KNOWN",
    "CodecKey",
    "CodecSpec",
    "codec_key",
    "static_codec",
    "static_payload_type",
]

CodecKey = tuple[str, int, int]

# RFC 3551 §6, tables 4 and 5: (encoding, RTP clock rate, channels).  G722 is
# sampled at 16 kHz but its RTP clock runs at 8000 for historical reasons
# (RFC 3551 §4.5.2).  Payload type 2 is reserved: G726-32 is dynamic now.
STATIC_PAYLOAD_TYPES: Mapping[int, tuple[str, int, int]] = MappingProxyType({
    0: ("PCMU", 8000, 1), 3: ("GSM", 8000, 1), 4: ("G723", 8000, 1),
    5: ("DVI4", 8000, 1), 6: ("DVI4", 16000, 1), 7: ("LPC", 8000, 1),
    8: ("PCMA", 8000, 1), 9: ("G722", 8000, 1), 10: ("L16", 44100, 2),
    11: ("L16", 44100, 1), 12: ("QCELP", 8000, 1), 13: ("CN", 8000, 1),
    14: ("MPA", 90000, 1), 15: ("G728", 8000, 1), 16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1), 18: ("G729", 8000, 1), 25: ("CelB", 90000, 1),
    26: ("JPEG", 90000, 1), 28: ("nv", 90000, 1), 31: ("H261", 90000, 1),
    32: ("MPV", 90000, 1), 33: ("MP2T", 90000, 1), 34: ("H263", 90000, 1),
})  # fmt: skip

# Dynamic codecs named by their usual rtpmap: lower-case name -> (encoding,
# clock rate, channels).  Used to complete a bare name in configuration.
WELL_KNOWN: Mapping[str, tuple[str, int, int]] = MappingProxyType({
    "telephone-event": ("telephone-event", 8000, 1),  # RFC 4733
    "opus": ("opus", 48000, 2),  # RFC 7587 §7: always /48000/2
    "g726-32": ("G726-32", 8000, 1), "ilbc": ("iLBC", 8000, 1),
    "speex": ("speex", 8000, 1), "amr": ("AMR", 8000, 1),
    "amr-wb": ("AMR-WB", 16000, 1), "g7221": ("G7221", 16000, 1),
    "h264": ("H264", 90000, 1), "vp8": ("VP8", 90000, 1), "vp9": ("VP9", 90000, 1),
})  # fmt: skip

# Formats that carry no media by themselves: a stream needs a real codec too.
AUXILIARY = frozenset({"telephone-event", "cn", "red", "ulpfec", "flexfec", "rtx"})


def codec_key(encoding: str, clock_rate: int, channels: int | None = 1) -> CodecKey:
    """
    The identity of a codec, for comparing codecs across SDPs.

    :param encoding: the encoding name, any case.
    :param clock_rate: the RTP clock rate.
    :param channels: audio channels; ``None`` or ``0`` mean 1.
    :returns: ``(lower-case name, clock rate, channels)``.
    """
    name = encoding.lower()
    if name == "opus":
        channels = 2  # RFC 7587 §7: opus is always written /48000/2
    return (name, clock_rate, channels or 1)


_STATIC_BY_KEY = {codec_key(*codec): pt for pt, codec in STATIC_PAYLOAD_TYPES.items()}


def static_codec(payload_type: int) -> tuple[str, int, int] | None:
    """
    The codec of a static payload type (RFC 3551 §6).

    :returns: ``(encoding, clock rate, channels)`` or ``None`` if unassigned
        or dynamic.
    """
    return STATIC_PAYLOAD_TYPES.get(payload_type)


def static_payload_type(
    encoding: str, clock_rate: int, channels: int = 1
) -> int | None:
    """The static payload type of a codec, or ``None`` if it has none."""
    return _STATIC_BY_KEY.get(codec_key(encoding, clock_rate, channels))


@frozen
class CodecSpec:
    """
    A codec we allow, or one found in an SDP.

    :ivar fmtp: the ``a=fmtp`` parameters to announce with it, if any.
    :ivar payload_type: the payload type number; ``None`` for a static codec
        (looked up) or a dynamic one that takes the number the SDP gives it.
    """

    encoding: str
    clock_rate: int
    channels: int = 1
    fmtp: str | None = None
    payload_type: int | None = None

    @classmethod
    def parse(cls, text: str) -> CodecSpec:
        """
        Build a spec from ``NAME[/RATE[/CHANNELS]]``, as written in config.

        A bare name takes its rate and channels from the static table or
        :data:`WELL_KNOWN`: ``PCMA``, ``G722``, ``opus``, ``telephone-event``.

        :raises ValueError: for a malformed text or an unknown bare name.
        """
        name, *numbers = text.strip().split("/")
        if not name or len(numbers) > 2 or not all(n.isascii() and n.isdigit()
                                                   and len(n) < 10 for n in numbers):  # fmt: skip
            raise ValueError(f"bad codec {text!r}: expected NAME[/RATE[/CHANNELS]]")
        if numbers:
            channels = int(numbers[1]) if len(numbers) == 2 else 1
            return cls(name, int(numbers[0]), channels or 1)
        known = WELL_KNOWN.get(name.lower()) or next(
            (c for c in STATIC_PAYLOAD_TYPES.values() if c[0].lower() == name.lower()),
            None,
        )
        if known is None:
            raise ValueError(f"unknown codec {text!r}: give its clock rate, NAME/RATE")
        return cls(known[0], known[1], known[2])

    @property
    def key(self) -> CodecKey:
        """The :func:`codec_key` of this codec."""
        return codec_key(self.encoding, self.clock_rate, self.channels)

    @property
    def is_auxiliary(self) -> bool:
        """True for DTMF, comfort noise, redundancy, FEC and retransmission."""
        return self.encoding.lower() in AUXILIARY

    @property
    def static_payload_type(self) -> int | None:
        """The RFC 3551 static payload type of this codec, if it has one."""
        return _STATIC_BY_KEY.get(self.key)

    def rtpmap_value(self) -> str:
        """The codec part of ``a=rtpmap``: ``PCMU/8000``, ``opus/48000/2``."""
        channels = self.key[2]
        suffix = f"/{channels}" if channels != 1 else ""
        return f"{self.encoding}/{self.clock_rate}{suffix}"
