"""
PSAP callback: for ``callback_minutes`` after an emergency call, a call
from the emergency trunk to the callback number that call presented
reaches the extension that dialled, bypassing DND, forwarding and
voicemail.

The registry lives in memory (the inbound call path asks it without
waiting) and is written through to the store as ``emergency.callback``
items, so a restart inside the window keeps it.  Numbers are compared by
their digits, and by their last ten digits when both have at least ten:
a carrier may present ``+15551230000`` as ``5551230000``.  When several
extensions presented the same number (a site's main DID), the one that
called last is reached.
"""

from __future__ import annotations

from attrs import define, field

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pbx.interfaces import IStore

__all__ = ["CALLBACK_KIND", "CallbackRegistry", "number_key"]

#: Store kind of the open callback windows (owner "", key: the number's digits).
CALLBACK_KIND = "emergency.callback"


def number_key(number: str) -> str:
    """The digits that identify ``number`` for a callback: its last ten, or all when fewer."""
    digits = "".join(c for c in number if c.isdigit())
    return digits[-10:]


@define(eq=False)
class CallbackRegistry:
    """
    Which extension a PSAP's callback to a number reaches, and until when.

    :param clock: the injected clock.
    :param minutes: how long a window stays open (``emergency.callback_minutes``).
    :param store: keeps the windows across a restart; None: memory only.
    """

    clock: IReactorTime
    minutes: int
    store: IStore | None = None
    _windows: dict[str, tuple[str, float]] = field(factory=dict)
    log = Logger()

    def record_emergency(
        self, extension: str, callback_number: str, now: float | None = None
    ) -> None:
        """Open (or reopen) the window in which a call to ``callback_number`` reaches ``extension``."""
        key = number_key(callback_number)
        if not key:
            return
        now = self.clock.seconds() if now is None else now
        until = now + self.minutes * 60
        self._prune(now)
        self._windows[key] = (extension, until)
        if self.store is not None:
            d = self.store.put_item(
                CALLBACK_KIND, "", key, {"extension": extension, "until": until}
            )
            d.addErrback(
                lambda f: self.log.failure(
                    "storing the callback window of {extension} failed",
                    f,
                    extension=extension,
                )
            )

    def callback_target(self, number: str, now: float | None = None) -> str | None:
        """The extension a call to ``number`` reaches now as a PSAP callback, or None."""
        now = self.clock.seconds() if now is None else now
        window = self._windows.get(number_key(number))
        if window is None or window[1] <= now:
            return None
        return window[0]

    def open_windows(self, now: float | None = None) -> list[tuple[str, str, float]]:
        """The open windows as ``(number digits, extension, until)``, soonest end first."""
        now = self.clock.seconds() if now is None else now
        return sorted(
            ((k, e, u) for k, (e, u) in self._windows.items() if u > now),
            key=lambda w: w[2],
        )

    async def load(self) -> int:
        """Take the windows still open from the store (at start); drop the closed ones. Returns the count."""
        if self.store is None:
            return 0
        now = self.clock.seconds()
        count = 0
        for _, key, data in await self.store.list_items(CALLBACK_KIND, ""):
            until, extension = data.get("until"), data.get("extension")
            if (
                isinstance(until, int | float)
                and isinstance(extension, str)
                and until > now
            ):
                if key not in self._windows or self._windows[key][1] < until:
                    self._windows[key] = (extension, float(until))
                    count += 1
            else:
                await self.store.delete_item(CALLBACK_KIND, "", key)
        return count

    def _prune(self, now: float) -> None:
        for key in [k for k, (_, until) in self._windows.items() if until <= now]:
            del self._windows[key]
            if self.store is not None:
                self.store.delete_item(CALLBACK_KIND, "", key).addErrback(
                    lambda f: self.log.failure(
                        "dropping a closed callback window failed", f
                    )
                )
