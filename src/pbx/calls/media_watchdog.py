"""
The media watchdog: every :data:`MEDIA_CHECK_INTERVAL` seconds, answered
calls whose media has stopped in both directions for ``calls.media_timeout``
seconds (a phone died, or lost its network) are hung up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from attrs import define

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

MEDIA_CHECK_INTERVAL = 5.0


class Watched(Protocol):
    """What the watchdog reads of a call, and how it ends one."""

    @property
    def state(self) -> str:
        """Only ``confirmed`` calls are watched."""

    @property
    def answered_at(self) -> float | None:
        """Clock time of the answer."""

    def inactive_for(self, now: float) -> float:
        """Seconds without media either way."""

    def hang_up(self, side: str, cause: str) -> None:
        """End the call."""


@define(eq=False)
class MediaWatchdog:
    """
    Hangs up answered calls whose media has stopped.

    :ivar clock: runs the check.
    :ivar calls: the calls in progress.
    :ivar media_timeout: seconds of silence that end a call (read at each check).
    """

    clock: IReactorTime
    calls: Callable[[], Iterable[Watched]]
    media_timeout: Callable[[], float]
    _checker: LoopingCall | None = None
    log = Logger()

    def start(self) -> None:
        """Check every :data:`MEDIA_CHECK_INTERVAL` seconds, the first time one interval from now."""
        self._checker = LoopingCall(self._check_safely)
        self._checker.clock = self.clock
        self._checker.start(MEDIA_CHECK_INTERVAL, now=False)

    def stop(self) -> None:
        """Check no more."""
        if self._checker is not None and self._checker.running:
            self._checker.stop()

    def _check_safely(self) -> None:
        try:
            self.check()
        except Exception:
            self.log.failure("media check failed")

    def check(self) -> None:
        """End answered calls whose media has stopped in both directions (a phone died)."""
        now = self.clock.seconds()
        limit = self.media_timeout()
        for call in list(self.calls()):
            if call.state != "confirmed":
                continue
            # Silence counts from the answer at the earliest: the relay
            # session exists since the INVITE.
            since_answer = now - (call.answered_at if call.answered_at is not None else now)
            if min(call.inactive_for(now), since_answer) >= limit:
                call.hang_up("pbx", "media timeout")
