"""
In-call feature codes for phones without a transfer key: the blind
transfer code (``transfer.blind_code``, e.g. ``##``) followed by the
number, ended by ``#`` or a pause of :data:`DIGIT_TIMEOUT` seconds.

Keys are read from SIP INFO (``application/dtmf-relay`` or
``application/dtmf``), which pbx relays to the other party as before: the
collector only watches.  Keys sent as RFC 4733 events inside the RTP are
not seen: the relay passes packets without parsing them, and reading each
one for events would put a parser on the hot path of every call.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: Seconds of silence after the last key that end a number.
DIGIT_TIMEOUT = 4.0
#: The longest number collected.
MAX_DIGITS = 32
#: The keys a code may be made of.
KEYS = frozenset("0123456789*#")


def code_problem(code: str) -> str | None:
    """Why ``code`` cannot be a feature code (None: it can; "" turns the feature off)."""
    if code and (len(code) > 4 or not set(code) <= KEYS):
        return "must be 1 to 4 of the keys 0-9, * and #"
    return None


class DigitCollector:
    """
    Watches one party's keys for ``code`` + number.

    :param code: the feature code.
    :param clock: for the inter-digit timeout.
    :param on_number: called with the number once it is complete.
    """

    def __init__(
        self, code: str, clock: IReactorTime, on_number: Callable[[str], None]
    ) -> None:
        self._code = code
        self._clock = clock
        self._on_number = on_number
        self._recent = ""
        #: The number being collected, or None while waiting for the code.
        self.number: str | None = None
        self._timer: IDelayedCall | None = None

    def key(self, key: str) -> None:
        """One key the party pressed."""
        if self.number is None:
            self._recent = (self._recent + key)[-len(self._code) :]
            if self._recent == self._code:
                self._recent, self.number = "", ""
                self._restart()
            return
        if key == "#":
            self._finish()
            return
        if len(self.number) < MAX_DIGITS:
            self.number += key
        self._restart()

    def stop(self) -> None:
        """Forget everything (the call ended); no timer is left."""
        self.number = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _restart(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self._clock.callLater(DIGIT_TIMEOUT, self._finish)

    def _finish(self) -> None:
        number = self.number
        self.stop()
        if number:
            self._on_number(number)
