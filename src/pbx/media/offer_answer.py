"""
RFC 3264 offer/answer for a B2BUA that anchors media on plain RTP.

pbx sits in the media path: every SDP it sends names its own address and relay
ports.  :func:`rewrite_offer` turns the offer one leg made into the offer for
the other leg; :func:`make_answer` answers an offer; :func:`negotiated` reads
what an offer and its answer agreed on, for the relay.

Payload type numbers of the offer are kept on both legs (RFC 3264 §6.1), so
RTP is relayed unchanged, without rewriting headers.  SRTP keys, ICE and DTLS
attributes are never passed on: this module speaks plain RTP/AVP (SDES-SRTP is
keyed per leg around it, :mod:`pbx.media.sdes`), so a stream
offered only as SAVP/SAVPF/DTLS is rejected (port 0), and when every stream is
rejected :class:`NotAcceptable` is raised, for a ``488 Not Acceptable Here``.

Nothing here imports Twisted; every failure on bad input is an
:class:`~pbx.media.sdp.SDPError`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Literal

from attrs import evolve, frozen

from pbx.media.codecs_table import CodecSpec, static_codec
from pbx.media.sdp import (
    DIRECTIONS,
    Attribute,
    Connection,
    MediaDescription,
    Origin,
    SDPError,
    SessionDescription,
    effective_connection,
)
from pbx.media.sdp import direction as stream_direction

__all__ = [
    "PLAIN_RTP",
    "STRIPPED_ATTRIBUTES",
    "CodecSpec",
    "NegotiatedStream",
    "NotAcceptable",
    "answer_direction",
    "bump_version",
    "make_answer",
    "make_offer",
    "negotiated",
    "offered_codecs",
    "rewrite_offer",
]

PLAIN_RTP = ("RTP/AVP",)

# Attributes that describe the far end's transport, keys or bundling, never
# ours: SDES (RFC 4568), MIKEY (RFC 4567), ICE (RFC 8839), DTLS (RFC 8842,
# RFC 4145), rtcp-mux (RFC 5761) and the RTCP address (RFC 3605, we use port+1).
STRIPPED_ATTRIBUTES = frozenset({
    "crypto", "key-mgmt", "ice-ufrag", "ice-pwd", "ice-options", "ice-lite",
    "ice-mismatch", "ice-pacing", "candidate", "remote-candidates",
    "end-of-candidates", "fingerprint", "setup", "connection", "tls-id",
    "rtcp-mux", "rtcp-mux-only", "rtcp",
})  # fmt: skip
# Attributes whose first word is a payload type (RFC 4566 §6, RFC 4585 §4.2).
_PER_FORMAT = frozenset({"rtpmap", "fmtp", "rtcp-fb"})
_SENDING = ("sendrecv", "sendonly")
_RECEIVING = ("sendrecv", "recvonly")


class NotAcceptable(SDPError):
    """No stream of an offer can be used: answer ``488 Not Acceptable Here``."""


@frozen
class NegotiatedStream:
    """
    What an offer and its answer agreed on for one ``m=`` line.

    :ivar remote_address: where to send RTP (the remote side's connection
        address), ``None`` when the stream is not accepted.
    :ivar remote_rtcp_port: from ``a=rtcp`` (RFC 3605), else port + 1.
    :ivar payload_type: the first format of the answer also in the offer.
    :ivar telephone_event: the RFC 4733 payload type, if both sides have one.
    :ivar direction: the remote side's direction, ``c=0.0.0.0`` read as "does
        not receive" (RFC 3264 §8.4).
    :ivar ptime: the remote side's ``a=ptime``, how it wants to receive.
    """

    index: int
    media: str
    accepted: bool
    remote_address: str | None = None
    remote_port: int = 0
    remote_rtcp_port: int | None = None
    payload_type: int | None = None
    codec: CodecSpec | None = None
    telephone_event: int | None = None
    direction: str = "inactive"
    ptime: int | None = None


def offered_codecs(media: MediaDescription) -> list[CodecSpec]:
    """
    The codecs of an RTP ``m=`` line in its order, from ``a=rtpmap`` or the
    static table (RFC 3551); unknown dynamic payload types are left out.

    :returns: specs with ``payload_type`` and ``fmtp`` filled in.
    """
    if not media.is_rtp:
        return []
    rtpmap, fmtp = media.rtpmap, media.fmtp
    codecs = []
    for fmt in media.formats:
        pt = _payload_type(fmt)
        codec = rtpmap.get(fmt) or (static_codec(pt) if pt is not None else None)
        if codec is not None and pt is not None:
            codecs.append(CodecSpec(*codec, fmtp=fmtp.get(fmt), payload_type=pt))
    return codecs


def _payload_type(fmt: str) -> int | None:
    """The number of an RTP format; ``None`` only for a hand-built odd one."""
    return int(fmt) if fmt.isascii() and fmt.isdigit() and len(fmt) < 4 else None


def _combine(sends: bool, receives: bool) -> str:
    return {(True, True): "sendrecv", (True, False): "sendonly",
            (False, True): "recvonly", (False, False): "inactive"}[(sends, receives)]  # fmt: skip


def _declared(session: SessionDescription, media: MediaDescription) -> str:
    """A stream's direction as its author means it, ``c=0.0.0.0`` included."""
    declared = stream_direction(session, media)
    connection = effective_connection(session, media)
    if connection is not None and connection.is_null:
        # RFC 3264 §8.4: RFC 2543 hold; the author cannot receive anything.
        return _combine(declared in _SENDING, False)
    return declared


def answer_direction(offered: str, wanted: str = "sendrecv") -> str:
    """
    The direction to answer with (RFC 3264 §6.1): ``sendonly`` gets
    ``recvonly``, ``recvonly`` gets ``sendonly``, ``inactive`` gets
    ``inactive``, ``sendrecv`` gets ``wanted``, each limited by ``wanted``.

    :param offered: the offer's direction (see :func:`negotiated`).
    :param wanted: what we would like if the offerer allowed everything.
    """
    if offered not in DIRECTIONS or wanted not in DIRECTIONS:
        raise ValueError(f"unknown direction {offered!r} or {wanted!r}")
    return _combine(offered in _RECEIVING and wanted in _SENDING,
                    offered in _SENDING and wanted in _RECEIVING)  # fmt: skip


def _check_ports(offer: SessionDescription, ports: Sequence[int]) -> None:
    if len(ports) != len(offer.media):
        raise ValueError(f"{len(ports)} ports for {len(offer.media)} m= lines")
    if not all(0 <= p <= 65535 for p in ports):
        raise ValueError(f"bad port in {list(ports)!r}")


def _rejection(
    media: MediaDescription,
    port: int,
    media_types: Collection[str],
    protos: Collection[str],
) -> str | None:
    """Why we cannot take a stream at all, or ``None``."""
    if media.port == 0:
        return "disabled in the offer"
    if media.media.lower() not in {t.lower() for t in media_types}:
        return f"media type {media.media} not supported"
    if media.proto.upper() not in {p.upper() for p in protos}:
        why = ", we relay plain RTP" if media.is_secure else ""
        return f"transport {media.proto} not supported{why}"
    if port == 0:
        return "no local port"
    return None


def _disabled(media: MediaDescription) -> MediaDescription:
    """RFC 3264 §6: a refused stream keeps its formats, with port 0."""
    return MediaDescription(media.media, 0, media.proto, media.formats)


def _not_acceptable(reasons: list[str]) -> NotAcceptable:
    return NotAcceptable("no acceptable media stream: " + "; ".join(reasons))


def _session(
    local_address: str, session_id: int | str, version: int, username: str,
    media: list[MediaDescription], attributes: Sequence[Attribute] = (),
) -> SessionDescription:  # fmt: skip
    connection = Connection.for_address(local_address)
    origin = Origin(username, str(session_id), version, "IN", connection.addrtype,
                    local_address)  # fmt: skip
    return SessionDescription(origin=origin, connection=connection, media=media,
                              attributes=attributes)  # fmt: skip


def _intersect(
    media: MediaDescription, supported: Sequence[CodecSpec], prefer: str
) -> list[CodecSpec]:
    """Common codecs with the offer's payload types, real codecs first."""
    ours: dict[tuple[str, int, int], CodecSpec] = {}
    for spec in supported:
        ours.setdefault(spec.key, spec)
    common = [c for c in offered_codecs(media) if c.key in ours]
    if prefer == "answerer":
        rank = {key: i for i, key in enumerate(ours)}
        common.sort(key=lambda c: rank[c.key])  # stable: offer order among equals
    if all(c.is_auxiliary for c in common):
        return []  # telephone-event or CN alone carry no audio
    common.sort(key=lambda c: c.is_auxiliary)
    return [evolve(c, fmtp=ours[c.key].fmtp if ours[c.key].fmtp is not None else c.fmtp)
            for c in common]  # fmt: skip


def _codec_attributes(codecs: Sequence[CodecSpec]) -> list[Attribute]:
    attributes: list[Attribute] = []
    for codec in codecs:
        attributes.append(("rtpmap", f"{codec.payload_type} {codec.rtpmap_value()}"))
        if codec.fmtp:
            attributes.append(("fmtp", f"{codec.payload_type} {codec.fmtp}"))
    return attributes


def make_answer(
    offer: SessionDescription,
    *,
    supported: Sequence[CodecSpec],
    local_address: str,
    ports: Sequence[int],
    session_id: int | str,
    version: int,
    prefer: Literal["offerer", "answerer"] = "offerer",
    username: str = "-",
    media_types: Collection[str] = ("audio",),
    protos: Collection[str] = PLAIN_RTP,
    local_direction: str = "sendrecv",
) -> SessionDescription:
    """
    Answer an offer (RFC 3264 §6) with our address and relay ports.

    The answer has one ``m=`` line per offered one, in order.  A stream is
    refused (port 0, the offer's formats) when the offer disabled it, its
    media type or transport is not ours, ``ports`` gives it 0, or no real
    codec is common.  Accepted streams list the common codecs in the order of
    ``prefer`` (the offerer's by default, §6.1 "SHOULD"), with the offer's
    payload types, auxiliary formats (telephone-event, CN) last; ``ptime`` is
    copied and the direction answered by :func:`answer_direction`.

    :param supported: the codecs we accept; ``fmtp`` given here replaces the
        offer's in the answer (e.g. ``0-16`` for telephone-event).
    :param ports: our relay port for each ``m=`` line, 0 to refuse it.
    :param version: the ``o=`` sess-version; see :func:`bump_version`.
    :raises NotAcceptable: if every stream is refused.
    """
    if prefer not in ("offerer", "answerer"):
        raise ValueError(f"prefer must be 'offerer' or 'answerer', not {prefer!r}")
    _check_ports(offer, ports)
    if not offer.media:
        raise NotAcceptable("the offer has no media stream")
    streams, reasons = [], []
    for index, (media, port) in enumerate(zip(offer.media, ports, strict=True)):
        reason = _rejection(media, port, media_types, protos)
        codecs = [] if reason else _intersect(media, supported, prefer)
        if not reason and not codecs:
            reason = "no common codec"
        if reason:
            streams.append(_disabled(media))
            reasons.append(f"stream {index + 1} ({media.media}): {reason}")
            continue
        attributes = _codec_attributes(codecs)
        if media.ptime is not None:
            attributes.append(("ptime", str(media.ptime)))
        offered = _declared(offer, media)
        attributes.append((answer_direction(offered, local_direction), None))
        formats = [str(c.payload_type) for c in codecs]
        streams.append(MediaDescription(media.media, port, media.proto, formats,
                                        attributes=attributes))  # fmt: skip
    if len(reasons) == len(streams):
        raise _not_acceptable(reasons)
    return _session(local_address, session_id, version, username, streams)


def _keep(attribute: Attribute) -> bool:
    name = attribute[0].lower()
    if name == "group":  # RFC 9143 BUNDLE: our streams each have their own port
        return not (attribute[1] or "").startswith("BUNDLE")
    return name not in STRIPPED_ATTRIBUTES and name not in DIRECTIONS


def rewrite_offer(
    offer: SessionDescription,
    *,
    local_address: str,
    ports: Sequence[int],
    session_id: int | str,
    version: int,
    codecs: Sequence[CodecSpec] | None = None,
    username: str = "-",
    media_types: Collection[str] = ("audio",),
    protos: Collection[str] = PLAIN_RTP,
) -> SessionDescription:
    """
    The offer to send on the other leg: the same ``m=`` lines in the same
    order, pointing at our address and relay ports.

    Payload types, ``fmtp``, ``ptime`` and other attributes pass through;
    keys, ICE, DTLS and rtcp-mux attributes are dropped.  The direction of
    each stream is written out, with a ``c=0.0.0.0`` hold turned into
    ``sendonly``/``inactive`` (RFC 3264 §8.4).  A stream we cannot relay (see
    :func:`make_answer`) or left without an allowed codec gets port 0.

    :param ports: our relay port for each ``m=`` line, 0 to disable it.
    :param version: the ``o=`` sess-version; see :func:`bump_version`.
    :param codecs: if given, only these codecs are offered.
    :raises NotAcceptable: if no stream is left.
    """
    _check_ports(offer, ports)
    allowed = None if codecs is None else {c.key for c in codecs}
    streams, reasons = [], []
    for index, (media, port) in enumerate(zip(offer.media, ports, strict=True)):
        reason = _rejection(media, port, media_types, protos)
        formats = list(media.formats)
        if reason is None and allowed is not None and media.is_rtp:
            keep = [c for c in offered_codecs(media) if c.key in allowed]
            if all(c.is_auxiliary for c in keep):
                reason = "no allowed codec"
            pts = {c.payload_type for c in keep}
            formats = [f for f in media.formats if _payload_type(f) in pts]
        if reason:
            streams.append(_disabled(media))
            reasons.append(f"stream {index + 1} ({media.media}): {reason}")
            continue
        attributes = [a for a in media.attributes if _keep(a) and (
            a[0].lower() not in _PER_FORMAT or _first_word(a[1]) in {*formats, "*"})]  # fmt: skip
        attributes.append((_declared(offer, media), None))
        streams.append(MediaDescription(
            media.media, port, media.proto, formats, information=media.information,
            bandwidths=media.bandwidths, attributes=attributes,
            extra_lines=media.extra_lines))  # fmt: skip
    if len(reasons) == len(streams):
        raise _not_acceptable(reasons or ["the offer has no media stream"])
    session_attributes = [a for a in offer.attributes if _keep(a)]
    result = _session(local_address, session_id, version, username, streams,
                      session_attributes)  # fmt: skip
    return evolve(result, bandwidths=offer.bandwidths)


def _first_word(value: str | None) -> str:
    words = (value or "").split()
    return words[0] if words else ""


def make_offer(
    *,
    codecs: Sequence[CodecSpec],
    local_address: str,
    port: int,
    session_id: int | str,
    version: int,
    username: str = "-",
    media: str = "audio",
    ptime: int | None = None,
    direction: str = "sendrecv",
) -> SessionDescription:
    """
    A fresh one-stream offer of our own (calls pbx originates, late offers).

    Codecs take their ``payload_type``, else their static one, else the next
    free dynamic number from 96 (RFC 3551 §3).

    :raises ValueError: for no codecs, a bad direction or no free payload type.
    """
    if not codecs or direction not in DIRECTIONS:
        raise ValueError("an offer needs codecs and a known direction")
    used = {c.payload_type or c.static_payload_type for c in codecs} - {None}
    free = (pt for pt in range(96, 128) if pt not in used)
    numbered = []
    for codec in codecs:
        pt = codec.payload_type
        if pt is None:
            pt = codec.static_payload_type
        if pt is None:
            pt = next(free, None)
            if pt is None:
                raise ValueError("no free dynamic payload type")
        numbered.append(evolve(codec, payload_type=pt))
    attributes = _codec_attributes(numbered)
    if ptime is not None:
        attributes.append(("ptime", str(ptime)))
    attributes.append((direction, None))
    formats = [str(c.payload_type) for c in numbered]
    stream = MediaDescription(media, port, "RTP/AVP", formats, attributes=attributes)
    return _session(local_address, session_id, version, username, [stream])


def bump_version(sdp: SessionDescription) -> SessionDescription:
    """
    The same description with ``o=`` sess-version plus one, as every new
    offer in a session needs (RFC 3264 §8, RFC 4566 §5.2).
    """
    origin = sdp.origin
    return evolve(sdp, origin=evolve(origin, sess_version=origin.sess_version + 1))


def negotiated(
    offer: SessionDescription,
    answer: SessionDescription,
    *,
    remote: Literal["offerer", "answerer"] = "answerer",
) -> list[NegotiatedStream]:
    """
    What each stream of an offer/answer exchange settled on (RFC 3264 §6).

    :param remote: which side is the far end whose address the relay sends to:
        ``"answerer"`` after our offer was answered, ``"offerer"`` after we
        answered an offer.
    :raises SDPError: when the answer does not match the offer (another
        number of ``m=`` lines, another media type, no codec of the offer).
    """
    if remote not in ("offerer", "answerer"):
        raise ValueError(f"remote must be 'offerer' or 'answerer', not {remote!r}")
    if len(answer.media) != len(offer.media):
        raise SDPError(f"the answer has {len(answer.media)} m= lines, "
                       f"the offer {len(offer.media)}")  # fmt: skip
    streams = []
    for index, (ours, theirs) in enumerate(zip(offer.media, answer.media, strict=True)):
        if ours.media.lower() != theirs.media.lower():
            raise SDPError(
                f"stream {index + 1}: answered {theirs.media} to {ours.media}"
            )
        if ours.port == 0 or theirs.port == 0:
            streams.append(NegotiatedStream(index, ours.media, False))
            continue
        session, media = (answer, theirs) if remote == "answerer" else (offer, ours)
        connection = effective_connection(session, media)
        offered = {c.key for c in offered_codecs(ours)}
        common = [c for c in offered_codecs(theirs) if c.key in offered]
        codec = next((c for c in common if not c.is_auxiliary), None)
        if codec is None and theirs.is_rtp:
            raise SDPError(f"stream {index + 1}: the answer has no codec of the offer")
        events = [c for c in common if c.encoding.lower() == "telephone-event"]
        events.sort(key=lambda c: codec is None or c.clock_rate != codec.clock_rate)
        rtcp = media.rtcp
        streams.append(NegotiatedStream(
            index, ours.media, True,
            remote_address=connection.host if connection is not None else None,
            remote_port=media.port,
            remote_rtcp_port=rtcp.port if rtcp is not None else media.port + 1,
            payload_type=codec.payload_type if codec is not None else None,
            codec=codec,
            telephone_event=events[0].payload_type if events else None,
            direction=_declared(session, media),
            ptime=media.ptime,
        ))  # fmt: skip
    return streams
