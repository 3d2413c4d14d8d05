"""
The media side of one call: SDP offer/answer on both legs, anchored on the
RTP relay.

pbx rewrites every SDP it passes so that each phone sends its media to a
relay port of pbx (RFC 3264 offer/answer on each leg).  Both legs are made
to agree on the codec the far end chose, so media is relayed unchanged:
no transcoding when the phones share a codec.
"""

from __future__ import annotations

import secrets
from typing import Any

from attrs import define, field

from pbx.media.offer_answer import CodecSpec, make_answer, rewrite_offer
from pbx.media.sdp import (
    SDPError,
    SessionDescription,
    effective_connection,
    is_hold,
    parse_sdp,
)

OTHER = {"a": "b", "b": "a"}


class MediaError(Exception):
    """SDP that cannot be used: answer 488 Not Acceptable Here."""


@define(eq=False)
class CallMedia:
    """
    SDP state of one call and the relay session carrying its RTP.

    :ivar session: the relay session (two legs, ``"a"`` and ``"b"``).
    :ivar address: the address phones send RTP to (ours).
    """

    session: Any
    address: str
    offers: dict[str, SessionDescription] = field(factory=dict)  # last offer each leg made
    answers: dict[str, SessionDescription] = field(factory=dict)  # last answer each leg made
    _versions: dict[str, int] = field(factory=lambda: {"a": 0, "b": 0})
    _session_ids: dict[str, int] = field(factory=lambda: {
        "a": secrets.randbelow(2**31), "b": secrets.randbelow(2**31)})
    codecs: str = ""

    def _next(self, leg: str) -> tuple[int, int]:
        self._versions[leg] += 1
        return self._session_ids[leg], self._versions[leg]

    @staticmethod
    def parse(body: bytes) -> SessionDescription:
        """Parse SDP from a phone, or raise MediaError."""
        try:
            return parse_sdp(body)
        except SDPError as e:
            raise MediaError(str(e)) from e

    def _learn(self, leg: str, sdp: SessionDescription) -> None:
        """Point the relay at what ``leg`` announced; honour its hold state."""
        audio = next((m for m in sdp.media if m.media == "audio" and m.port), None)
        if audio is None:
            return
        connection = effective_connection(sdp, audio)
        host = connection.address if connection is not None else ""
        held = is_hold(sdp, audio)
        if host and host not in ("0.0.0.0", "::"):
            self.session.set_remote(leg, host, audio.port)
        if held:
            self.session.hold(leg)
        else:
            self.session.unhold(leg)

    def offer_from(self, leg: str, body: bytes) -> bytes:
        """
        ``leg`` offers ``body``: learn its address and make the offer to
        send on the other leg, pointing at our relay port there.
        """
        offer = self.parse(body)
        other = OTHER[leg]
        try:
            rewritten = rewrite_offer(
                offer, local_address=self.address, ports=self._ports(other, offer),
                session_id=self._session_ids[other], version=self._next(other)[1],
            )
        except SDPError as e:
            raise MediaError(str(e)) from e
        self._learn(leg, offer)
        self.offers[leg] = offer
        return rewritten.to_bytes()

    def answer_from(self, leg: str, body: bytes) -> bytes:
        """
        ``leg`` answers the offer we made it with ``body``: learn its address
        and answer the other leg's offer with the codec ``leg`` chose.
        """
        answer = self.parse(body)
        other = OTHER[leg]
        offer = self.offers.get(other)
        if offer is None:
            raise MediaError("an answer without an offer")
        supported = chosen_codecs(answer)
        try:
            ours = make_answer(
                offer, supported=supported, local_address=self.address,
                ports=self._ports(other, offer), session_id=self._session_ids[other],
                version=self._next(other)[1],
            )
        except SDPError as e:
            raise MediaError(str(e)) from e
        self._learn(leg, answer)
        self.answers[leg] = answer
        # The codec in use is the first the answer lists (RFC 3264 §6.1).
        audio = [c.encoding for c in supported if c.encoding.lower() not in ("telephone-event", "cn")]
        self.codecs = audio[0] if audio else ""
        return ours.to_bytes()

    def _ports(self, leg: str, offer: SessionDescription) -> list[int]:
        """Our relay port on ``leg`` for the first audio stream; 0 for every other stream."""
        ports, used = [], False
        for m in offer.media:
            if m.media == "audio" and m.port and not used:
                ports.append(self.session.local_port(leg))
                used = True
            else:
                ports.append(0)
        return ports


def chosen_codecs(answer: SessionDescription) -> list[CodecSpec]:
    """The codecs an answer accepted on its first live audio stream, in its order."""
    audio = next((m for m in answer.media if m.media == "audio" and m.port), None)
    if audio is None:
        raise MediaError("the answer accepts no audio stream")
    rtpmap = audio.rtpmap
    fmtp = audio.fmtp
    codecs = []
    for pt in audio.formats:
        if pt in rtpmap:
            encoding, rate, channels = rtpmap[pt]
            codecs.append(CodecSpec(encoding, rate, channels or 1, fmtp.get(pt), int(pt)))
        elif pt.isdigit() and int(pt) in _STATIC:
            encoding, rate = _STATIC[int(pt)]
            codecs.append(CodecSpec(encoding, rate, 1, None, int(pt)))
    if not codecs:
        raise MediaError("the answer names no codec")
    return codecs


_STATIC = {0: ("PCMU", 8000), 3: ("GSM", 8000), 4: ("G723", 8000), 8: ("PCMA", 8000),
           9: ("G722", 8000), 13: ("CN", 8000), 18: ("G729", 8000)}
