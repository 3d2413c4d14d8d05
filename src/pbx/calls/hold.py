"""
Hold answered by pbx, and music on hold for the party held.

When a phone holds (its re-INVITE or UPDATE offers ``sendonly`` or
``inactive``, or ``c=0.0.0.0``: RFC 3264 §8.4, RFC 6337 §5), pbx answers
the offer itself (``recvonly``/``inactive``, the codec in use, our relay
port) and does not pass it on: the other phone knows nothing of the hold
and hears the music class of the call's outside line (a DID's, a route's
or a trunk's: :mod:`pbx.trunks.moh`), else that of the holding extension
(:meth:`pbx.media.playout.HoldMusic.class_for`), sent from the relay
port it already talks to, in the codec it already uses
(:meth:`pbx.media.relay.RelaySession.feed`).  The resume (``sendrecv``
again) is answered the same way; the feed stops and the relay carries the
phones' packets unchanged again.

An offer pbx does not take here (a hold that drops the codec in use, a
codec change, anything without SDP) goes to the other leg as before, and
a hold pbx answered is released first.
"""

from __future__ import annotations

from collections.abc import Callable

from attrs import define, field

from twisted.logger import Logger

from pbx.calls.media import OTHER, CallMedia, MediaError
from pbx.media.codecs_table import CodecSpec
from pbx.media.offer_answer import offered_codecs
from pbx.media.playout import HoldMusic, Playout
from pbx.media.sdp import MediaDescription, SessionDescription, is_hold

__all__ = ["LocalHold"]


def _audio(offer: SessionDescription) -> MediaDescription | None:
    return next((m for m in offer.media if m.media == "audio" and m.port), None)


@define(eq=False)
class LocalHold:
    """
    The holds of one call that pbx answers itself, and who hears music.

    :param media: the call's media (SDP state and relay session).
    :param music: the classes and their playouts.
    :param extension_of: the extension on each leg (``"a"``, ``"b"``): its
        class is what the other party hears when it holds.
    :param line_class: the class of the outside line the call runs over
        now ("" for none): it wins over the holding extension's.
    """

    media: CallMedia
    music: HoldMusic
    extension_of: Callable[[str], str]
    line_class: Callable[[], str] = lambda: ""
    #: The legs whose hold pbx answered and keeps.
    holding: dict[str, bool] = field(factory=dict)
    #: What each fed leg hears: (playout, payload type).
    _feeding: dict[str, tuple[Playout, int]] = field(factory=dict)
    log = Logger()

    def answer(self, leg: str, body: bytes) -> bytes | None:
        """
        pbx's own answer to ``leg``'s in-dialog offer ``body`` when it is a
        hold or the resume of a hold pbx answered, with the codec in use;
        None when the offer is to go to the other leg.
        """
        offer = self._parse(body)
        audio = _audio(offer) if offer is not None else None
        holding = self.holding.get(leg, False)
        if offer is None or audio is None:
            self.release(leg)
            return None
        hold = is_hold(offer, audio)
        if not hold and not holding:
            return None
        supported = self._in_use(leg, audio)
        if supported is None:
            self.release(leg)
            return None
        try:
            ours = self.media.answer_here(leg, offer, supported)
        except MediaError as e:
            self.log.info("hold offer not answered here: {e}", e=e)
            self.release(leg)
            return None
        self.holding[leg] = hold
        self.refresh()
        return ours

    def release(self, leg: str) -> None:
        """Forget a hold pbx answered for ``leg`` (its next offer goes on): the music stops."""
        if self.holding.pop(leg, False):
            self.refresh()

    def stop(self) -> None:
        """The call is over: nobody hears music any more."""
        self.holding.clear()
        self._feeding.clear()
        for leg in OTHER:
            self.media.session.unfeed(leg)

    @staticmethod
    def _parse(body: bytes) -> SessionDescription | None:
        if not body:
            return None
        try:
            return CallMedia.parse(body)
        except MediaError:
            return None

    def _in_use(self, leg: str, audio: MediaDescription) -> list[CodecSpec] | None:
        """The codec ``leg`` uses now (and telephone-event), if its offer still has them."""
        agreed = self.media.agreed.get(leg) or []
        main = next((c for c in agreed if not c.is_auxiliary), None)
        offered = {c.key for c in offered_codecs(audio)}
        if main is None or main.key not in offered:
            return None
        return [main, *(c for c in agreed if c.is_auxiliary and c.key in offered)]

    def refresh(self) -> None:
        """
        Bring who hears what up to date: after pbx's own answers, and after
        an offer/answer passed between the phones (a held party's re-INVITE
        may change its codec or payload type).
        """
        session = self.media.session
        for leg, other in OTHER.items():
            wanted = self.holding.get(other, False) and not self.media.held.get(
                leg, False
            )
            source = self._source(leg, other) if wanted else None
            if source != self._feeding.get(leg):
                session.unfeed(leg)
                self._feeding.pop(leg, None)
                if source is not None:
                    session.feed(leg, *source)
                    self._feeding[leg] = source

    def _source(self, leg: str, other: str) -> tuple[Playout, int] | None:
        """The playout and payload type ``leg`` hears while ``other`` holds, if we have its codec."""
        codec = next(
            (c for c in self.media.agreed.get(leg) or [] if not c.is_auxiliary), None
        )
        class_name = self.music.class_for(self.extension_of(other), self.line_class())
        playout = (
            self.music.playout(class_name, codec.encoding)
            if codec is not None
            else None
        )
        if playout is None or codec is None or codec.payload_type is None:
            self.log.info("no music on hold for leg {leg}: codec {codec} not ours", leg=leg,
                          codec=codec.encoding if codec is not None else None)  # fmt: skip
            return None
        return playout, codec.payload_type
