"""
The media of one answered, relayed two-party call, as a feature that listens
to it (recording) sees it: the relay session's taps and what each leg's
payload types mean.

A :class:`CallTap` is what :meth:`pbx.interfaces.IPBX.tap_call` returns; it
hands out no signalling; what it may change is what a party hears: a
supervisor's feed, or a prompt for its length (:meth:`CallTap.announce`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from attrs import define

from twisted.internet.defer import Deferred, succeed

from pbx.calls.announce import RECORDED, Announcer
from pbx.calls.media import CallMedia
from pbx.interfaces import ICodec
from pbx.media.offer_answer import offered_codecs

__all__ = ["CallTap"]


@define(eq=False)
class CallTap:
    """
    What a listener may do with a live relayed call's media.

    :ivar call_id: the call's key (the caller's Call-ID), as call events name it.
    :ivar caller: who called (leg ``"a"``).
    :ivar callee: who answered (leg ``"b"``).
    :ivar codecs: the codec plugins by lower-case encoding name, to decode
        what a leg sends.
    """

    call_id: str
    caller: str
    callee: str
    _media: CallMedia
    codecs: Mapping[str, ICodec]
    #: Plays a prompt into both legs (None: pbx has no media services).
    _announcer: Announcer | None = None

    def announce(self, prompt: str = RECORDED) -> Deferred[bool]:
        """
        Play ``prompt`` to both parties (each hears it instead of the other
        while it plays); fires once the relay path is restored, with False
        when nobody could hear it (see :mod:`pbx.calls.announce`).
        """
        if self._announcer is None:
            return succeed(False)
        return Deferred.fromCoroutine(self._announcer.play(self._media, prompt))

    @property
    def codec(self) -> str:
        """The codec in use (``PCMU``; ``PCMU<>G722`` when the relay transcodes)."""
        return self._media.codecs

    def tap(self, leg: str, listener: Callable[[bytes], object]) -> None:
        """
        Hand every RTP packet ``leg`` sends (as it arrived) to ``listener``
        (see :meth:`pbx.media.relay.RelaySession.tap`).

        :raises ValueError: ``leg`` is not ``"a"`` or ``"b"``.
        """
        self._media.session.tap(leg, listener)

    def untap(self, leg: str) -> None:
        """Stop listening to ``leg``."""
        self._media.session.untap(leg)

    def payload_types(self, leg: str) -> dict[int, tuple[str, int]]:
        """
        What the payload types ``leg`` sends mean now (a re-INVITE may
        change them): ``{pt: (lower-case encoding, RTP clock rate)}``,
        from the leg's own SDP (offer or answer), which names the payload
        types it uses (RFC 3264 §5.1, §6.1).
        """
        found: dict[int, tuple[str, int]] = {}
        for sdp in (self._media.answers.get(leg), self._media.offers.get(leg)):
            if sdp is None:
                continue
            audio: Any = next(
                (m for m in sdp.media if m.media == "audio" and m.port), None
            )
            if audio is None:
                continue
            for spec in offered_codecs(audio):
                if spec.payload_type is not None:
                    found.setdefault(
                        spec.payload_type, (spec.encoding.lower(), spec.clock_rate)
                    )
        return found

    def listen(
        self, leg: str, listener: Callable[[bytes], object]
    ) -> Callable[[], None]:
        """
        Hand every RTP packet ``leg`` sends to ``listener`` too, beside a
        recording's :meth:`tap` (see :meth:`pbx.media.relay.RelaySession.listen`).

        :returns: a function that removes the listener.
        :raises ValueError: ``leg`` is not ``"a"`` or ``"b"``.
        """
        return self._media.session.listen(leg, listener)

    def feed(self, leg: str, source: Any, payload_type: int) -> None:
        """
        ``leg`` hears ``source`` instead of the other leg, sent from its own
        relay port (see :meth:`pbx.media.relay.RelaySession.feed`): how a
        supervisor's whisper reaches the agent.

        :raises ValueError: ``leg`` is not ``"a"`` or ``"b"``, or the payload type is out of range.
        """
        self._media.session.feed(leg, source, payload_type)

    def unfeed(self, leg: str) -> None:
        """``leg`` hears the other leg again, relayed unchanged."""
        self._media.session.unfeed(leg)
