"""
The media side of one call: SDP offer/answer on both legs, anchored on the
RTP relay.

pbx rewrites every SDP it passes so that each phone sends its media to a
relay port of pbx (RFC 3264 offer/answer on each leg).  Both legs are made
to agree on the codec the far end chose, so media is relayed unchanged:
no transcoding when the phones share a codec.

Each leg keys its own SRTP (SDES, :mod:`pbx.media.sdes`) as its policy
allows: the SDP pbx reasons about is the plain view of what phones send,
made SRTP again on the way out.
"""

from __future__ import annotations

import secrets
from typing import Any

from attrs import define, evolve, field

from pbx.media import sdes
from pbx.media.offer_answer import CodecSpec, make_answer, offered_codecs, rewrite_offer
from pbx.media.sdp import (
    SDPError,
    SessionDescription,
    effective_connection,
    is_hold,
    parse_sdp,
)
from pbx.media.transcode import RTPTranscoder

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
    #: Our codecs by lower-case name; offers to the other leg are extended
    #: with them, so a callee that shares no codec with the caller can still
    #: answer, and the relay transcodes.
    available: dict[str, Any] = field(factory=dict)
    transcoding: bool = False
    #: Whether each leg holds the call (its last SDP was sendonly or inactive).
    held: dict[str, bool] = field(factory=dict)
    #: The codecs each leg settled on in its last offer/answer exchange,
    #: with that leg's payload types, the one in use first.
    agreed: dict[str, list[CodecSpec]] = field(factory=dict)
    #: Each leg's SRTP policy, channel and keys (see :mod:`pbx.media.sdes`).
    srtp: dict[str, sdes.LegKeys] = field(factory=lambda: {"a": sdes.LegKeys(), "b": sdes.LegKeys()})
    _applied: dict[str, Any] = field(factory=dict)

    def secure(self, leg: str, transport: str, policy: str) -> None:
        """``leg``'s signalling goes over ``transport`` ("tls" may carry keys) and its SRTP ``policy``."""
        keys = self.srtp[leg]
        keys.secure, keys.policy = transport == "tls", policy

    def encrypted(self) -> dict[str, str]:
        """The SRTP suite each leg speaks ("" for plain RTP): what the call records say."""
        return {leg: keys.suite for leg, keys in self.srtp.items()}

    def offer_for(self, leg: str, body: bytes, transport: str) -> bytes:
        """
        The offer ``body`` made for ``leg`` by :meth:`offer_from`, for one
        phone of that leg on ``transport``: without keys unless it is TLS.
        """
        if transport == "tls" or not self.srtp[leg].offered or not body:
            return body
        return sdes.plain_view(self.parse(body)).to_bytes()

    def _apply_crypto(self, *legs: str) -> None:
        """Give the relay each leg's SRTP contexts where they changed (plain calls never call it)."""
        for leg in legs:
            contexts = self.srtp[leg].contexts()
            if contexts is not self._applied.get(leg):
                self._applied[leg] = contexts
                self.session.set_crypto(leg, contexts)

    def payload_types(self, leg: str) -> dict[int, tuple[str, int]]:
        """
        What the payload types ``leg`` sends mean now (a re-INVITE may
        change them): ``{pt: (lower-case encoding, RTP clock rate)}``,
        from the leg's own SDP (offer or answer), which names the payload
        types it uses (RFC 3264 §5.1, §6.1).
        """
        found: dict[int, tuple[str, int]] = {}
        for sdp in (self.answers.get(leg), self.offers.get(leg)):
            audio = None if sdp is None else next((m for m in sdp.media if m.media == "audio" and m.port), None)
            for spec in offered_codecs(audio) if audio is not None else ():
                if spec.payload_type is not None:
                    found.setdefault(spec.payload_type, (spec.encoding.lower(), spec.clock_rate))
        return found

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
        self.held[leg] = held
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
            plain = sdes.take_offer(self.srtp[leg], offer)
            rewritten = rewrite_offer(
                plain, local_address=self.address, ports=self._ports(other, offer),
                session_id=self._session_ids[other], version=self._next(other)[1],
            )
        except SDPError as e:
            raise MediaError(str(e)) from e
        self._learn(leg, plain)
        self.offers[leg] = offer
        if self.available:
            rewritten = extend_offer(rewritten, self.available)
        theirs = self.srtp[other]
        if theirs.wants_offer(self.srtp[leg].theirs is not None):
            rewritten = sdes.secure_offer(theirs, rewritten)
        else:
            theirs.offered = []
        return rewritten.to_bytes()

    def answer_from(self, leg: str, body: bytes) -> bytes:
        """
        ``leg`` answers the offer we made it with ``body``: learn its address
        and answer the other leg's offer with the codec ``leg`` chose.
        """
        other = OTHER[leg]
        offer = self.offers.get(other)
        if offer is None:
            raise MediaError("an answer without an offer")
        try:
            raw = self.parse(body)
            answer = sdes.take_answer(self.srtp[leg], raw)
        except SDPError as e:
            raise MediaError(str(e)) from e
        offer = sdes.plain_view(offer)
        supported = chosen_codecs(answer)
        transforms = None
        main = next((c for c in supported if not c.is_auxiliary), None)
        offered = _offered(offer)
        keys = {c.key for c in offered}
        if main is not None and not any(c.key in keys for c in supported if not c.is_auxiliary):
            # Nothing the answer accepts was offered by the other leg: only
            # a codec we added (extend_offer) was chosen, so transcode.
            supported, transforms = self._transcode(leg, main, supported, offered)
        try:
            ours = make_answer(
                offer, supported=supported, local_address=self.address,
                ports=self._ports(other, offer), session_id=self._session_ids[other],
                version=self._next(other)[1],
            )
        except SDPError as e:
            raise MediaError(str(e)) from e
        ours = sdes.secure_answer(self.srtp[other], ours)
        self._learn(leg, answer)
        self.answers[leg] = raw
        self._apply_crypto(leg, other)
        self.agreed[leg], self.agreed[other] = chosen_codecs(answer), chosen_codecs(ours)
        self.transcoding = transforms is not None
        for name, transform in (transforms or {leg: None, other: None}).items():
            self.session.set_transform(name, transform)
        # The codec in use is the first the answer lists (RFC 3264 §6.1).
        audio = [c.encoding for c in supported if not c.is_auxiliary]
        self.codecs = audio[0] if audio else ""
        if transforms is not None and main is not None:
            self.codecs = f"{self.codecs}<>{main.encoding}"
        return ours.to_bytes()

    def answer_here(self, leg: str, offer: SessionDescription, supported: list[CodecSpec]) -> bytes:
        """
        Answer ``leg``'s offer ourselves, without asking the other leg (a
        hold or a resume): with ``supported`` (the codec in use), on our
        relay port, the direction answered by RFC 3264 §6.1; learn what
        ``leg`` announced, as for an offer passed on.

        :raises MediaError: the offer has nothing ``supported`` names.
        """
        try:
            plain = sdes.take_offer(self.srtp[leg], offer)
            ours = make_answer(
                plain, supported=supported, local_address=self.address, ports=self._ports(leg, offer),
                session_id=self._session_ids[leg], version=self._next(leg)[1],
            )
        except SDPError as e:
            raise MediaError(str(e)) from e
        self._learn(leg, plain)
        self.offers[leg] = offer
        self.agreed[leg] = chosen_codecs(ours)
        self._apply_crypto(leg)
        return sdes.secure_answer(self.srtp[leg], ours).to_bytes()

    def _transcode(self, leg: str, chosen: CodecSpec, answered: list[CodecSpec],
                   offered: list[CodecSpec]) -> tuple[list[CodecSpec], dict[str, Any]]:
        """
        ``leg`` chose a codec the other leg did not offer: answer the other
        leg with its own first codec that we have, and transcode both ways.
        """
        other = OTHER[leg]
        mine = self.available.get(chosen.encoding.lower())
        theirs = next((c for c in offered if not c.is_auxiliary and c.encoding.lower() in self.available), None)
        if mine is None or theirs is None or chosen.payload_type is None or theirs.payload_type is None:
            raise MediaError("no codec to transcode between")
        their_codec = self.available[theirs.encoding.lower()]
        event_here = next((c for c in answered if c.encoding.lower() == "telephone-event"), None)
        event_there = next((c for c in offered if c.encoding.lower() == "telephone-event"), None)
        events = None
        supported = [theirs]
        if event_here is not None and event_there is not None:
            supported.append(event_there)
            events = (event_there.payload_type, event_here.payload_type)
        transforms = {
            other: RTPTranscoder(their_codec, theirs.payload_type, mine, chosen.payload_type,
                                 events),  # type: ignore[arg-type]
            leg: RTPTranscoder(mine, chosen.payload_type, their_codec, theirs.payload_type,
                               None if events is None else (events[1], events[0])),  # type: ignore[arg-type]
        }
        return supported, transforms

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


def _offered(offer: SessionDescription) -> list[CodecSpec]:
    audio = next((m for m in offer.media if m.media == "audio" and m.port), None)
    return offered_codecs(audio) if audio is not None else []


def extend_offer(offer: SessionDescription, available: dict[str, Any]) -> SessionDescription:
    """
    Add our codecs that the first audio stream lacks, after the offerer's own
    (so a callee that has one of those picks it, and the relay transcodes).
    """
    index = next((i for i, m in enumerate(offer.media) if m.media == "audio" and m.port), None)
    if index is None:
        return offer
    media = offer.media[index]
    present = {c.encoding.lower() for c in offered_codecs(media)}
    used = {f for f in media.formats}
    formats, attributes = list(media.formats), list(media.attributes)
    dynamic = (str(pt) for pt in range(96, 128) if str(pt) not in used)
    for name, codec in available.items():
        if name in present:
            continue
        static = codec.payload_type
        pt = str(static) if static is not None and str(static) not in used else next(dynamic, None)
        if pt is None:
            break
        used.add(pt)
        formats.append(pt)
        channels = f"/{codec.channels}" if codec.channels != 1 else ""
        attributes.insert(0, ("rtpmap", f"{pt} {codec.name}/{codec.clock_rate}{channels}"))
        if codec.fmtp:
            attributes.insert(1, ("fmtp", f"{pt} {codec.fmtp}"))
    media = evolve(media, formats=formats, attributes=attributes)
    return evolve(offer, media=[*offer.media[:index], media, *offer.media[index + 1:]])


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
