"""
The caller's leg of a call: pbx is the UAS of the caller's INVITE.

One leg serves every call pbx answers or relays: it sends the provisional
and final responses, forms the dialog (RFC 3261 §12.1.1), resends the 2xx
until the ACK (§13.3.1.4), gives up after Timer H, and sends BYE, never
before the ACK of its 2xx (§15).  What the responses carry (SDP) is the
call's business; the leg only says when the ACK came and when it is done.

States (the whole table is :data:`TABLE`)::

    routing --provisional--> ringing --answer--> answered --acked--> confirmed
       |                        |                   |                  |
       +------refuse------------+---> ended <--- no_ack           hang_up / remote_bye
                                                    |                  v
                                         hang_up -> closing --acked--> ended (BYE)
                                      bye_now (a relayed hang-up) ----------> ended (BYE)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pbx.calls.machine import IGNORED, build
from pbx.calls.signalling import LegServices
from pbx.sip import timers
from pbx.sip.dialog import Dialog, LocalAddress, sips_requested
from pbx.sip.ids import new_tag
from pbx.sip.message import Response, make_response
from pbx.sip.named_timers import NamedTimers
from pbx.sip.transaction import ServerTransaction


class _Inputs(Protocol):
    """What happens to the caller's leg."""

    def provisional(self, status: int, body: bytes) -> None:
        """Tell the caller the call progresses: 180, or 183 with early media SDP."""

    def answer(self, body: bytes, extra: list[tuple[str, str]] | None) -> None:
        """Answer with 200 carrying ``body`` (SDP) and ``extra`` headers."""

    def refuse(self, status: int, reason: str | None) -> None:
        """Refuse the INVITE with a final response >= 300."""

    def acked(self, ack: Any) -> None:
        """The caller's ACK of our 2xx."""

    def no_ack(self) -> None:
        """Timer H: no ACK in 64*T1."""

    def hang_up(self) -> None:
        """pbx ends the dialog: BYE now, or once the ACK has come (§15)."""

    def bye_now(self) -> None:
        """pbx ends the dialog with BYE at once, even before the ACK (a relayed hang-up)."""

    def remote_bye(self) -> None:
        """The caller sent BYE (the controller has answered it)."""

    def release(self) -> None:
        """Stop without another message: the INVITE goes on in another call (a diversion)."""


WAITING = ("routing", "ringing")
ANSWERED = ("answered", "closing", "confirmed")
EVERY = (*WAITING, *ANSWERED, "ended")

#: The caller's leg, whole: (from, input, to, actions).  The usual path first.
TABLE = [
    (WAITING, "provisional", "ringing", ["_send_provisional"]),
    (WAITING, "answer", "answered", ["_send_ok"]),
    (["answered"], "acked", "confirmed", ["_stop_timers", "_report_ack"]),
    (["confirmed"], "remote_bye", "ended", ["_report_ended"]),
    (["confirmed"], "bye_now", "ended", ["_send_bye", "_report_ended"]),
    (["confirmed"], "hang_up", "ended", ["_send_bye", "_report_ended"]),
    (WAITING, "refuse", "ended", ["_send_final", "_report_ended"]),
    (WAITING, "release", "ended", ["_report_ended"]),
    (WAITING, "hang_up", "ended", ["_report_ended"]),
    (WAITING, "bye_now", "ended", ["_report_ended"]),
    (WAITING, "remote_bye", "ended", ["_report_ended"]),
    (WAITING, "acked", "ringing", []),
    (["answered"], "no_ack", "ended", ["_stop_timers", "_send_bye", "_report_no_ack", "_report_ended"]),
    (["answered"], "hang_up", "closing", []),
    (["answered"], "bye_now", "ended", ["_stop_timers", "_send_bye", "_report_ended"]),
    (["answered"], "remote_bye", "ended", ["_stop_timers", "_report_ended"]),
    (["answered"], "release", "ended", ["_stop_timers", "_report_ended"]),
    (["closing"], "acked", "ended", ["_stop_timers", "_send_bye", "_report_ended"]),
    (["closing"], "no_ack", "ended", ["_stop_timers", "_send_bye", "_report_no_ack", "_report_ended"]),
    (["closing"], "bye_now", "ended", ["_stop_timers", "_send_bye", "_report_ended"]),
    (["closing"], "remote_bye", "ended", ["_stop_timers", "_report_ended"]),
    (["closing"], "release", "ended", ["_stop_timers", "_report_ended"]),
    (["closing"], "hang_up", "closing", []),
    (["confirmed"], "acked", "confirmed", []),
    (["confirmed"], "release", "ended", ["_report_ended"]),
    (["answered"], "provisional", "answered", []),
    (["answered"], "answer", "answered", []),
    (["answered"], "refuse", "answered", []),
    (["closing"], "provisional", "closing", []),
    (["closing"], "answer", "closing", []),
    (["closing"], "refuse", "closing", []),
    (["confirmed"], "provisional", "confirmed", []),
    (["confirmed"], "answer", "confirmed", []),
    (["confirmed"], "refuse", "confirmed", []),
    (["confirmed"], "no_ack", "confirmed", []),
    (WAITING, "no_ack", "ended", ["_report_ended"]),
    (["ended"], "provisional", "ended", []),
    (["ended"], "answer", "ended", []),
    (["ended"], "refuse", "ended", []),
    (["ended"], "acked", "ended", []),
    (["ended"], "no_ack", "ended", []),
    (["ended"], "hang_up", "ended", []),
    (["ended"], "bye_now", "ended", []),
    (["ended"], "remote_bye", "ended", []),
    (["ended"], "release", "ended", []),
]


class InboundLeg:
    """
    The caller's side of one call.

    :param services: how to send SIP, the clock and the dialog table.
    :param invite: the caller's INVITE server transaction.
    :param address: our address on the caller's transport (Contact).
    :param owner: the call the leg's dialog belongs to in the dialog table.
    :param on_acked: called with the ACK request when the caller confirms our 2xx.
    :param on_no_ack: called when no ACK came within Timer H (the leg has
        sent BYE), also when a hang-up was waiting for that ACK.
    :param on_ended: called once, when the leg has ended (refused, hung up
        by either side, released); the call's end follows from it.
    :param tag: our To tag; a diverted call keeps the one the caller already saw.
    :param timers: the call's timers, where the leg keeps ``ok`` and ``ack``.
    """

    def __init__(
        self,
        services: LegServices,
        invite: ServerTransaction,
        address: LocalAddress,
        owner: Any,
        *,
        on_acked: Callable[[Any], None] | None = None,
        on_no_ack: Callable[[], None] | None = None,
        on_ended: Callable[[], None] | None = None,
        tag: str | None = None,
        timers: NamedTimers | None = None,
    ) -> None:
        self.invite = invite
        self.address = address
        self.tag = tag or new_tag()
        self.dialog: Dialog | None = None
        #: ``routing``, ``ringing``, ``answered``, ``closing`` (hung up,
        #: waiting for the ACK to send BYE), ``confirmed`` or ``ended``.
        self.state = "routing"
        self._services = services
        self._owner = owner
        self._timers = NamedTimers(services.clock) if timers is None else timers
        self._ok: Response | None = None
        self._on_acked = on_acked
        self._on_no_ack = on_no_ack
        self._on_ended = on_ended
        self._inputs = _MACHINE(self)

    # -- inputs ---------------------------------------------------------------

    def provisional(self, status: int, body: bytes = b"") -> None:
        """Tell the caller the call progresses: 180, or 183 with early media SDP."""
        self._inputs.provisional(status, body)

    def answer(self, body: bytes, extra: list[tuple[str, str]] | None = None) -> None:
        """Answer with 200 carrying ``body`` (SDP) and ``extra`` headers; resend it until the ACK."""
        self._inputs.answer(body, extra)

    def refuse(self, status: int, reason: str | None = None) -> None:
        """Refuse the INVITE with a final response >= 300."""
        self._inputs.refuse(status, reason)

    def acked(self, ack: Any) -> None:
        """The caller's ACK of our 2xx."""
        self._inputs.acked(ack)

    def hang_up(self) -> None:
        """pbx ends the dialog: BYE now, or once the ACK has come (RFC 3261 §15)."""
        self._inputs.hang_up()

    def bye_now(self) -> None:
        """pbx ends the dialog with BYE at once, even before the ACK (a relayed hang-up passes straight on)."""
        self._inputs.bye_now()

    def remote_bye(self) -> None:
        """The caller sent BYE (the controller has answered it)."""
        self._inputs.remote_bye()

    def release(self) -> None:
        """Stop without another message: the INVITE goes on in another call (a diversion)."""
        self._inputs.release()

    # -- actions ----------------------------------------------------------------

    def _send_provisional(self, status: int, body: bytes) -> None:
        self.respond(status, body=body)

    def _send_ok(self, body: bytes, extra: list[tuple[str, str]] | None) -> None:
        self._ok = self.respond(200, body=body, extra=extra)
        self.dialog = Dialog.as_uas(self.invite.request, self.invite.peer, self.address, self.tag)
        self._services.dialogs.add(self._owner, self.dialog)
        if not self.invite.peer.reliable:
            # §13.3.1.4: resend the 2xx at T1, doubling up to T2, until the ACK.
            ok, peer, sip = self._ok, self.invite.peer, self._services.sip
            self._timers.repeat("ok", lambda: sip.send(ok, peer), timers.T1, timers.T2)
        self._timers.start("ack", timers.TIMER_H, self._inputs.no_ack)

    def _send_final(self, status: int, reason: str | None) -> None:
        self.respond(status, reason)

    def _stop_timers(self, *_: object) -> None:
        self._timers.stop("ok")
        self._timers.stop("ack")

    def _report_ack(self, ack: Any) -> None:
        if self._on_acked is not None:
            self._on_acked(ack)

    def _send_bye(self, *_: object) -> None:
        assert self.dialog is not None
        self._services.sip.in_dialog(self.dialog, "BYE")

    def _report_no_ack(self) -> None:
        if self._on_no_ack is not None:
            self._on_no_ack()

    def _report_ended(self, *_: object) -> None:
        self._stop_timers()
        self._inputs = IGNORED  # an ended leg ignores every input (TABLE)
        on_ended = self._on_ended
        # Nothing more is reported: the owner and the leg let go of each
        # other, so that a finished call is freed by reference counting and
        # does not wait for (and lengthen) a pause of the garbage collector.
        self._on_acked = self._on_no_ack = self._on_ended = None
        self._owner = None
        if on_ended is not None:
            on_ended()

    # -- messages -----------------------------------------------------------------

    def respond(self, status: int, reason: str | None = None, body: bytes = b"",
                extra: list[tuple[str, str]] | None = None) -> Response:
        """Answer the INVITE (or resend an answer) with our To tag, Contact on 101-299 (§12.1.1)."""
        response = make_response(self.invite.request, status, reason, to_tag=self.tag)
        if 100 < status < 300:
            response.headers.add("Contact", self.address.contact(sips=sips_requested(self.invite.request)))
        for name, value in extra or []:
            response.headers.add(name, value)
        if body:
            response.headers.add("Content-Type", "application/sdp")
            response.body = body
        self.invite.respond(response)
        return response

    @property
    def waiting(self) -> bool:
        """Whether the INVITE has no final response yet (it can still be answered or refused)."""
        return self.state in WAITING

    @property
    def timers(self) -> int:
        """How many of the leg's timers run."""
        return ("ok" in self._timers) + ("ack" in self._timers)


_MACHINE = build(_Inputs, InboundLeg, EVERY, TABLE)
