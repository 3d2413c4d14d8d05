"""
The keys parties press in relayed calls: one stream per call and seat.

Phones send keys as telephone-event packets inside their RTP (RFC 4733;
most phones, and baresip by default) or as SIP INFO
(``application/dtmf-relay``, ``application/dtmf``).  :class:`CallKeys`
reads both and hands each key, with the seat it came from (``"a"`` the
caller's, ``"b"`` the callee's), to whoever subscribed: the in-call feature
codes (:mod:`pbx.calls.feature_codes`, through :mod:`pbx.calls.transfer`)
for every call, and features for one call (the recording toggle, through
:meth:`pbx.calls.tap.CallTap.keys`).  Keys are seen, never swallowed: the
relay forwards the event packets and the call relays the INFO, unchanged.

Cost.  The relay's hot path does not parse packets
(:mod:`pbx.media.relay`), and a call nobody subscribes to is not watched
at all.  A watched seat has one relay listener
(:meth:`pbx.media.relay.RelaySession.listen`) that reads one octet of each
packet, its payload type; only packets of the payload types the seat
negotiated for ``telephone-event`` (re-read when its SDP changes) are
parsed, and :class:`~pbx.media.dtmf.RFC4733Receiver` makes one press of
an event's start, updates and three end packets (RFC 4733 §2.5.1.4).
A phone that sends one press both ways (RTP and INFO) is seen twice; phones
send one or the other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define, field

from twisted.logger import Logger

from pbx.calls.call import Call
from pbx.calls.events import CallEvent, CallEvents
from pbx.calls.media import CallMedia
from pbx.media.dtmf import RFC4733Receiver, parse_dtmf_info
from pbx.media.rtp import parse_rtp
from pbx.sip.message import Request

__all__ = ["CallKeys", "KeyListener", "SeatKeys"]

SEATS = ("a", "b")

#: ``listener(call, seat, key)``: a key pressed in any watched call.
KeyListener = Callable[[Any, str, str], None]
#: ``listener(seat, key)``: a key pressed in one call.
SeatListener = Callable[[str, str], None]


def event_types(media: CallMedia, seat: str) -> frozenset[int]:
    """The payload types ``seat`` negotiated for ``telephone-event`` (RFC 4733 §7.1.1)."""
    return frozenset(
        pt for pt, (name, _) in media.payload_types(seat).items() if name == "telephone-event"
    )


@define(eq=False)
class SeatKeys:
    """The telephone-event packets one seat sends, made into keys."""

    media: CallMedia
    seat: str
    deliver: Callable[[str], None]
    _types: frozenset[int] = frozenset()
    #: Payload types seen that were not telephone-event when last looked up.
    _others: set[int] = field(factory=set)
    _ssrc: int | None = None
    _receiver: RFC4733Receiver = field(factory=RFC4733Receiver)

    def packet(self, data: bytes) -> None:
        """One packet the seat's phone sent (relayed already)."""
        if len(data) < 12:
            return
        pt = data[1] & 0x7F
        if pt not in self._types:
            if pt in self._others:
                return  # audio: the common case, two set lookups
            # A payload type not seen before: the seat's SDP may have changed
            # (re-INVITE, a phone seated by a transfer); look again.
            self._types = event_types(self.media, self.seat)
            self._others = {p for p in (*self._others, pt) if p not in self._types}
            if pt not in self._types:
                return
        try:
            packet = parse_rtp(data)
            if packet.ssrc != self._ssrc:
                # Another stream (a phone seated by a transfer, a restart):
                # its event timestamps are its own (RFC 3550 §5.1).
                self._ssrc, self._receiver = packet.ssrc, RFC4733Receiver()
            presses = self._receiver.feed(packet.timestamp, packet.marker, packet.payload)
        except ValueError:
            return
        for press in presses:
            self.deliver(press.digit)


@define(eq=False)
class _Watched:
    """One call whose keys someone wants."""

    call: Any
    listeners: list[SeatListener] = field(factory=list)
    everywhere: bool = False
    _unlisten: list[Callable[[], None]] = field(factory=list)

    @property
    def wanted(self) -> bool:
        return self.everywhere or bool(self.listeners)


@define(eq=False)
class CallKeys:
    """
    The key stream of every relayed call somebody subscribes to.

    :ivar events: ``answered`` starts watching a call for :meth:`subscribe`'s
        listeners; ``ended`` stops it.
    :ivar lookup: the live call of a call id, or None; only answered relayed
        two-party calls (:class:`~pbx.calls.call.Call`) are watched.
    """

    events: CallEvents
    lookup: Callable[[str], Any]
    _everywhere: list[KeyListener] = field(factory=list)
    _watched: dict[str, _Watched] = field(factory=dict)
    _following: bool = False
    log = Logger()

    def subscribe(self, listener: KeyListener) -> Callable[[], None]:
        """
        ``listener(call, seat, key)`` for every key pressed in any answered
        relayed call from now on (a feature code).

        :returns: a function that unsubscribes.
        """
        self._everywhere.append(listener)
        self._follow()

        def unsubscribe() -> None:
            if listener in self._everywhere:
                self._everywhere.remove(listener)

        return unsubscribe

    def watch(self, call: Any, listener: SeatListener) -> Callable[[], None]:
        """
        ``listener(seat, key)`` for every key pressed in ``call`` from now on.

        :returns: a function that stops it (the call is no longer watched
            when nobody else wants its keys).
        """
        self._follow()
        watched = self._start(call)
        watched.listeners.append(listener)

        def stop() -> None:
            if listener in watched.listeners:
                watched.listeners.remove(listener)
                self._maybe_stop(watched)

        return stop

    def info(self, call: Any, seat: str, request: Request) -> None:
        """An INFO from ``seat`` of ``call`` (relayed by the call as ever): a key, if it carries one."""
        watched = self._watched.get(call.call_id)
        if watched is None:
            return
        event = parse_dtmf_info(request.headers.get("Content-Type") or "", request.body)
        if event is not None:
            self._deliver(watched, seat, event.digit)

    @property
    def watching(self) -> int:
        """How many calls are watched."""
        return len(self._watched)

    def _follow(self) -> None:
        if not self._following:
            self._following = True
            self.events.subscribe(self._event, kinds=("answered", "ended"))

    def _event(self, event: CallEvent) -> None:
        if event.kind == "ended":
            watched = self._watched.pop(event.call_id, None)
            if watched is not None:
                self._unlisten(watched)
        elif self._everywhere:
            call = self.lookup(event.call_id)
            if isinstance(call, Call) and call.b is not None and call.state in ("answered", "confirmed"):
                self._start(call).everywhere = True

    def _start(self, call: Any) -> _Watched:
        """Watch ``call``'s seats (once)."""
        watched = self._watched.get(call.call_id)
        if watched is not None:
            return watched
        watched = self._watched[call.call_id] = _Watched(call)
        media: CallMedia = call.media
        for seat in SEATS:
            seen = SeatKeys(media, seat, self._to(watched, seat))
            watched._unlisten.append(media.session.listen(seat, seen.packet))
        return watched

    def _maybe_stop(self, watched: _Watched) -> None:
        if not watched.wanted and self._watched.get(watched.call.call_id) is watched:
            del self._watched[watched.call.call_id]
            self._unlisten(watched)

    @staticmethod
    def _unlisten(watched: _Watched) -> None:
        unlisten, watched._unlisten = watched._unlisten, []
        for remove in unlisten:
            remove()

    def _to(self, watched: _Watched, seat: str) -> Callable[[str], None]:
        return lambda key: self._deliver(watched, seat, key)

    def _deliver(self, watched: _Watched, seat: str, key: str) -> None:
        """Hand one key to the call's listeners and, if it is followed for them, everyone's."""
        listeners: list[Any] = list(watched.listeners)
        for listener in listeners:
            self._safely(listener, seat, key)
        if watched.everywhere:
            for every in list(self._everywhere):
                self._safely(every, watched.call, seat, key)

    def _safely(self, listener: Callable[..., None], *args: Any) -> None:
        try:
            listener(*args)
        except Exception:
            self.log.failure("key listener {listener!r} failed", listener=listener)
