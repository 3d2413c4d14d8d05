"""
In-call feature codes for phones without a transfer key: a code followed
by a number, ended by ``#`` or a pause of :data:`DIGIT_TIMEOUT` seconds.
One :class:`DigitCollector` per party watches for every code at once: the
blind transfer code (``transfer.blind_code``, ``##``), the attended transfer
and three-way codes (``transfer.attended_code``, ``*2``;
``transfer.three_way_code``, ``*3``: :mod:`pbx.calls.consult`).  A code
that needs no number (``transfer.cancel_code``, ``*``, while consulting)
is watched by a :class:`CodeWatch`.

Keys are read from SIP INFO (``application/dtmf-relay`` or
``application/dtmf``), which pbx relays to the other party as before: the
collector only watches.  Keys sent as RFC 4733 events inside the RTP are
not seen: the relay passes packets without parsing them, and reading each
one for events would put a parser on the hot path of every call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

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


class InCallCodes(Protocol):
    """More in-call codes, beside blind transfer's (:class:`pbx.calls.consult.Consults`)."""

    def codes(self, call: Any, leg: str) -> dict[str, Callable[[str], None]]:
        """The codes ``leg``'s party of ``call`` may key, each with what its number starts."""

    def key(self, call: Any, leg: str, key: str) -> bool:
        """Whether a feature under way takes ``leg``'s key (then no code is watched)."""

    def leaving(self, call: Any, leg: str) -> bool:
        """Whether ``leg``'s hang-up is a feature's (the call goes on)."""


def clash(codes: Mapping[str, str]) -> tuple[str, str] | None:
    """
    The key and why in-call ``codes`` (``{config key: code}``, "" for off)
    cannot be watched together, or None: a code that ends another (or is
    equal to it) would always be recognised first.
    """
    named = [(k, c) for k, c in codes.items() if c]
    for key, code in named:
        for other_key, other in named:
            if key != other_key and other.endswith(code):
                return key, f"{code!r} would hide {other_key} {other!r}"
    return None


class CodeWatch:
    """
    Watches keys for one or more codes that take no number.

    :param codes: each code and what it does, called the moment its last key
        comes (None: nothing, :meth:`key` names the code to the caller).
    """

    def __init__(self, codes: Mapping[str, Callable[[], None] | None]) -> None:
        self._codes = {code: act for code, act in codes.items() if code}
        self._width = max((len(code) for code in self._codes), default=0)
        self._recent = ""

    def key(self, key: str) -> str | None:
        """One key; returns the code it completed (its action has run), or None."""
        if not self._width:
            return None
        self._recent = (self._recent + key)[-self._width :]
        # The longest code first: a shorter one that ends it cannot steal it.
        for code in sorted(self._codes, key=len, reverse=True):
            if self._recent.endswith(code):
                self._recent = ""
                act = self._codes[code]
                if act is not None:
                    act()
                return code
        return None


class DigitCollector:
    """
    Watches one party's keys for one of several codes, then a number.

    :param codes: a code, or several, each with what to call with its number
        ("" codes are off).
    :param clock: for the inter-digit timeout.
    :param on_number: with a single ``codes`` string, called with the number once it is complete.
    """

    def __init__(
        self,
        codes: str | Mapping[str, Callable[[str], None]],
        clock: IReactorTime,
        on_number: Callable[[str], None] | None = None,
    ) -> None:
        if isinstance(codes, str):
            assert on_number is not None
            codes = {codes: on_number}
        self._clock = clock
        self._on_number: Callable[[str], None] | None = None
        # The watch only names the code keyed; what it starts is looked up
        # here, so that the watch holds nothing that leads back to us (a
        # reference cycle would leave the collector to the garbage collector).
        self._acts = {code: act for code, act in codes.items() if code}
        self._watch = CodeWatch(dict.fromkeys(self._acts))
        #: The number being collected, or None while waiting for a code.
        self.number: str | None = None
        self._timer: IDelayedCall | None = None

    def key(self, key: str) -> None:
        """One key the party pressed."""
        if self.number is None:
            code = self._watch.key(key)
            if code is not None:
                self._on_number, self.number = self._acts[code], ""
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
        number, act = self.number, self._on_number
        self.stop()
        if number and act is not None:
            act(number)
