"""
A party that joined an answered call from elsewhere: the transfer target
pbx dialled, or the other end of a call a transfer merged into this one.

A :class:`~pbx.calls.call.Call` is asymmetric while it is set up: its
caller's side is an :class:`~pbx.calls.inbound.InboundLeg` (pbx the UAS,
with the INVITE's 2xx and ACK to look after) and its callee's side a
:class:`~pbx.calls.forks.Fork` (pbx the UAC).  Once a call is confirmed
both sides are just a dialog each: BYE goes out in it, BYE comes in on it.
:class:`Party` is that, whichever side formed the dialog, and it answers
the caller's-side inputs of :class:`~pbx.calls.inbound.InboundLeg` so the
call can put it where its caller was.  A party with no dialog is a seat
kept while a transfer target rings: hanging it up sends nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pbx.sip.dialog import Dialog


class Party:
    """
    One confirmed dialog of a call, whoever formed it.

    :param sip: sends the BYE (:class:`~pbx.calls.signalling.SIPSender`).
    :param dialog: the dialog, or None for a seat kept while a target rings.
    :param on_ended: called once, when the party has left (hung up either way).
    """

    def __init__(
        self, sip: Any, dialog: Dialog | None, on_ended: Callable[[], None]
    ) -> None:
        self.dialog = dialog
        #: ``confirmed`` while the party is in the call, then ``ended``.
        self.state = "confirmed"
        self._sip = sip
        self._on_ended: Callable[[], None] | None = on_ended

    @property
    def tag(self) -> str:
        """Our tag in the dialog."""
        return self.dialog.local_tag if self.dialog is not None else ""

    @property
    def waiting(self) -> bool:
        """A party is answered already: never waiting for a final response."""
        return False

    def provisional(self, status: int, body: bytes = b"") -> None:
        """Nothing to tell an answered party of ringing."""

    def answer(self, body: bytes, extra: list[tuple[str, str]] | None = None) -> None:
        """An answered party is not answered again."""

    def refuse(self, status: int, reason: str | None = None) -> None:
        """An answered party cannot be refused."""

    def acked(self, ack: Any) -> None:
        """An ACK (of a re-INVITE's 2xx) has nothing more to confirm here."""

    def hang_up(self) -> None:
        """pbx ends the party's dialog: BYE."""
        self.bye_now()

    def bye_now(self) -> None:
        """pbx ends the party's dialog: BYE at once (nothing for a kept seat)."""
        if self.state == "ended":
            return
        if self.dialog is not None:
            self._sip.in_dialog(self.dialog, "BYE")
        self._ended()

    def remote_bye(self) -> None:
        """The party sent BYE (already answered)."""
        self._ended()

    def release(self) -> None:
        """Leave without a message."""
        self._ended()

    def _ended(self) -> None:
        if self.state == "ended":
            return
        self.state = "ended"
        on_ended, self._on_ended = self._on_ended, None
        if on_ended is not None:
            on_ended()
