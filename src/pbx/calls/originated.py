"""What :meth:`pbx.interfaces.IPBX.originate` gives back: the answered leg's channel, or why there is none."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import frozen

from twisted.internet.defer import Deferred


def _nothing() -> None:
    """Hanging up a leg that was never answered does nothing."""


@frozen
class Originated:
    """
    The result of placing a leg.

    :ivar outcome: ``"answered"``, or why not: ``"busy"``, ``"no_answer"``,
        ``"unavailable"`` (no phone registered, or none reachable),
        ``"not_found"``, ``"cancelled"`` or ``"failed"``.
    :ivar channel: the answered leg's channel (an ``IChannel``), else None.
    :ivar ended: fires when the answered leg is over.
    :ivar hang_up: ends the answered leg (BYE).
    :ivar call_id: the leg's key in the live calls and its call events.
    """

    outcome: str
    channel: Any = None
    ended: Deferred[None] | None = None
    hang_up: Callable[[], None] = _nothing
    call_id: str = ""
