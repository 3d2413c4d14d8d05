"""
What the recording feature attaches to one live call: the relay taps of
both legs, the :class:`~pbx.features.recording.recorder.CallRecorder` while
the call is recorded, and the watch for the toggle keys.

A call that is neither recorded nor watched for keys is not tapped at all,
so the relay's hot path is untouched for it.  The toggle is seen in the
telephone-event packets (RFC 4733) either phone sends through the relay;
only the payload type octet of other packets is looked at.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define, field

from twisted.logger import Logger

from pbx.features.recording.recorder import CallRecorder
from pbx.media.dtmf import RFC4733Receiver
from pbx.media.rtp import parse_rtp

__all__ = ["CallWatch", "ToggleKeys"]

LEGS = ("a", "b")


@define(eq=False)
class ToggleKeys:
    """
    Matches the toggle sequence (``*1``) in one leg's key presses.

    :param keys: the sequence.
    :param on_match: called once per complete sequence.
    """

    keys: str
    on_match: Callable[[], None]
    _typed: str = ""

    def digit(self, digit: str) -> None:
        """One key pressed."""
        self._typed = (self._typed + digit)[-len(self.keys) :]
        if self._typed == self.keys:
            self._typed = ""
            self.on_match()


@define(eq=False)
class CallWatch:
    """
    The recording feature's hold on one live call.

    :param tap: the call's :class:`pbx.calls.tap.CallTap`.
    :param toggle: the toggle keys, or "" for no key watch.
    :param on_toggle: ``on_toggle(leg)`` when a leg's phone presses them.
    :ivar recorder: the recording running now, or None.
    :ivar meta: its metadata while it runs.
    """

    log = Logger()

    tap: Any
    toggle: str
    on_toggle: Callable[[str], None]
    recorder: CallRecorder | None = None
    meta: dict[str, Any] | None = None
    _events: dict[str, tuple[frozenset[int], RFC4733Receiver, ToggleKeys]] = field(
        factory=dict
    )
    _tapped: bool = False

    @property
    def call_id(self) -> str:
        """The call's key."""
        return str(self.tap.call_id)

    @property
    def parties(self) -> tuple[str, str]:
        """Caller and callee."""
        return str(self.tap.caller), str(self.tap.callee)

    def start(self) -> None:
        """Tap the legs if a recording runs or keys are watched."""
        if self.toggle:
            for leg in LEGS:
                types = frozenset(
                    pt
                    for pt, (name, _) in self.tap.payload_types(leg).items()
                    if name == "telephone-event"
                )
                if types:
                    self._events[leg] = (
                        types,
                        RFC4733Receiver(),
                        ToggleKeys(self.toggle, self._toggled(leg)),
                    )
        self._update_taps()

    def _toggled(self, leg: str) -> Callable[[], None]:
        return lambda: self.on_toggle(leg)

    def record(self, recorder: CallRecorder, meta: dict[str, Any]) -> None:
        """Send both legs' packets to ``recorder`` from now on."""
        self.recorder, self.meta = recorder, meta
        self._update_taps()

    def unrecord(self) -> tuple[CallRecorder | None, dict[str, Any] | None]:
        """Stop feeding the recorder; what was running."""
        running = self.recorder, self.meta
        self.recorder, self.meta = None, None
        self._update_taps()
        return running

    def stop(self) -> None:
        """The call ended or the feature stops: untap."""
        self._events.clear()
        self.recorder = None
        self._update_taps()

    def _update_taps(self) -> None:
        wanted = self.recorder is not None or bool(self._events)
        if wanted and not self._tapped:
            for leg in LEGS:
                self.tap.tap(leg, self._listener(leg))
        elif not wanted and self._tapped:
            for leg in LEGS:
                self.tap.untap(leg)
        self._tapped = wanted

    def _listener(self, leg: str) -> Callable[[bytes], None]:
        return lambda data: self.packet(leg, data)

    def packet(self, leg: str, data: bytes) -> None:
        """One packet ``leg`` sent: to the recorder, and to the key watch if it is an event."""
        recorder = self.recorder
        if recorder is not None:
            recorder.packet(leg, data)
        events = self._events.get(leg)
        if events is not None and len(data) > 1 and (data[1] & 0x7F) in events[0]:
            try:
                packet = parse_rtp(data)
                presses = events[1].feed(
                    packet.timestamp, packet.marker, packet.payload
                )
            except ValueError:
                return
            for press in presses:
                events[2].digit(press.digit)
