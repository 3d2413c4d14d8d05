"""
The media of one answered, relayed two-party call, as a feature that listens
to it (recording) sees it: the relay session's taps, what each leg's
payload types mean, and the keys its parties press (:mod:`pbx.calls.keys`).

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
    #: Watches the call's keys (:meth:`pbx.calls.keys.CallKeys.watch` for this call); None: no keys.
    _watch_keys: Callable[[Callable[[str, str], None]], Callable[[], None]] | None = None

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

    def keys(self, listener: Callable[[str, str], None]) -> Callable[[], None]:
        """
        ``listener(leg, key)`` for every key a party presses from now on:
        RFC 4733 events in its RTP or SIP INFO, seen, not swallowed (see
        :mod:`pbx.calls.keys`).

        :returns: a function that stops it.
        """
        if self._watch_keys is None:
            return lambda: None
        return self._watch_keys(listener)

    def untap(self, leg: str) -> None:
        """Stop listening to ``leg``."""
        self._media.session.untap(leg)

    def payload_types(self, leg: str) -> dict[int, tuple[str, int]]:
        """What the payload types ``leg`` sends mean now (see :meth:`pbx.calls.media.CallMedia.payload_types`)."""
        return self._media.payload_types(leg)

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
