"""
What the recording feature attaches to one live call: the relay taps of
both legs while the call is recorded (for the
:class:`~pbx.features.recording.recorder.CallRecorder`), and the call's
key stream for the toggle keys.

A call that is not recorded is not tapped, so the relay's hot path is
untouched for it.  The toggle is seen in the call's key stream
(:meth:`pbx.calls.tap.CallTap.keys`, :mod:`pbx.calls.keys`): RFC 4733
events either phone sends through the relay, or SIP INFO.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define, field

from twisted.logger import Logger

from pbx.features.recording.recorder import CallRecorder

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
    _toggles: dict[str, ToggleKeys] = field(factory=dict)
    _unwatch: Callable[[], None] | None = None
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
        """Watch the call's keys if there is a toggle; tap the legs while a recording runs."""
        if self.toggle:
            self._toggles = {leg: ToggleKeys(self.toggle, self._toggled(leg)) for leg in LEGS}
            self._unwatch = self.tap.keys(self._key)
        self._update_taps()

    def _key(self, leg: str, key: str) -> None:
        toggle = self._toggles.get(leg)
        if toggle is not None:
            toggle.digit(key)

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
        """The call ended or the feature stops: untap, stop watching keys."""
        self._toggles.clear()
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        self.recorder = None
        self._update_taps()

    def _update_taps(self) -> None:
        wanted = self.recorder is not None
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
        """One packet ``leg`` sent: to the recorder."""
        recorder = self.recorder
        if recorder is not None:
            recorder.packet(leg, data)
