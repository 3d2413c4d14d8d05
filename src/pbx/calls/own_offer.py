"""
Reading the answer to an offer pbx made itself (a call pbx places, or the
200 it sends to an INVITE without SDP): RFC 3264 §6.1, the answer's first
codec that we offered is the one in use.
"""

from __future__ import annotations

from attrs import frozen

from pbx.calls.media import MediaError
from pbx.interfaces import ICodec
from pbx.media.codecs_table import CodecSpec
from pbx.media.offer_answer import negotiated
from pbx.media.sdp import SDPError, SessionDescription, parse_sdp


@frozen
class Accepted:
    """
    What an answer to our own offer settled on (RFC 3264 §6.1).

    :ivar spec: the codec, with the payload type the answer gave it.
    :ivar codec: our codec of that name.
    :ivar telephone_event: the RFC 4733 payload type, if both sides have it.
    :ivar remote: where to send RTP, if the answer says.
    """

    spec: CodecSpec
    codec: ICodec
    telephone_event: int | None
    remote: tuple[str, int] | None


def accept_answer(
    offer: SessionDescription, offered: list[tuple[CodecSpec, ICodec]], body: bytes
) -> Accepted:
    """
    Read the answer ``body`` to our one-stream ``offer``: its first codec
    that we offered is the one in use.

    :raises MediaError: no answer, or none we can use.
    """
    if not body:
        raise MediaError("no answer")
    try:
        [stream, *_] = negotiated(offer, parse_sdp(body))
    except SDPError as e:
        raise MediaError(str(e)) from e
    if not stream.accepted or stream.codec is None:
        raise MediaError("the audio stream was refused")
    key = stream.codec.key
    chosen = next(((s, c) for s, c in offered if s.key == key), None)
    if chosen is None:
        raise MediaError("the answer names a codec we did not offer")
    spec = CodecSpec(
        chosen[0].encoding,
        chosen[0].clock_rate,
        chosen[0].channels,
        chosen[0].fmtp,
        stream.payload_type,
    )
    remote = None
    if stream.remote_address and stream.remote_port:
        remote = (stream.remote_address, stream.remote_port)
    return Accepted(spec, chosen[1], stream.telephone_event, remote)
