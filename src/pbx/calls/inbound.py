"""
The caller's leg of a call: pbx is the UAS of the caller's INVITE.

One leg serves every call pbx answers or relays: it sends the provisional
and final responses, forms the dialog (RFC 3261 §12.1.1), resends the 2xx
until the ACK (§13.3.1.4), gives up after Timer H, and sends BYE, never
before the ACK of its 2xx (§15).  What the responses carry (SDP) is the
call's business; the leg only says when the ACK came and when it is done.

States (the serialized names are what the API and tests see)::

    routing --provisional--> ringing --answer--> answered --acked--> confirmed
       |                        |                   |                  |
       +------refuse------------+---> ended <--- no_ack           hang_up / remote_bye
                                                    |                  v
                                         hang_up -> closing --acked--> ended (BYE)
                                      bye_now (a relayed hang-up) ----------> ended (BYE)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from automat import MethodicalMachine

from pbx.calls.signalling import LegServices
from pbx.sip import timers
from pbx.sip.dialog import Dialog, LocalAddress
from pbx.sip.ids import new_tag
from pbx.sip.message import Response, make_response
from pbx.sip.named_timers import NamedTimers
from pbx.sip.transaction import ServerTransaction


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
    :param on_closed: called when a hang-up that waited for the ACK has sent its BYE.
    :param tag: our To tag; a diverted call keeps the one the caller already saw.
    """

    _machine = MethodicalMachine()

    def __init__(
        self,
        services: LegServices,
        invite: ServerTransaction,
        address: LocalAddress,
        owner: Any,
        *,
        on_acked: Callable[[Any], None] | None = None,
        on_no_ack: Callable[[], None] | None = None,
        on_closed: Callable[[], None] | None = None,
        tag: str | None = None,
    ) -> None:
        self.invite = invite
        self.address = address
        self.tag = tag or new_tag()
        self.dialog: Dialog | None = None
        self._services = services
        self._owner = owner
        self._timers = NamedTimers(services.clock)
        self._ok: Response | None = None
        self._on_acked = on_acked
        self._on_no_ack = on_no_ack
        self._on_closed = on_closed

    # -- states ---------------------------------------------------------------

    @_machine.state(initial=True, serialized="routing")
    def _routing(self) -> None:
        """No response but 100 Trying yet."""

    @_machine.state(serialized="ringing")
    def _ringing(self) -> None:
        """A provisional response (180, 183) went to the caller."""

    @_machine.state(serialized="answered")
    def _answered(self) -> None:
        """Our 2xx went; its ACK has not come."""

    @_machine.state(serialized="answered")
    def _closing(self) -> None:
        """Hung up before the ACK: the BYE waits for it (§15)."""

    @_machine.state(serialized="confirmed")
    def _confirmed(self) -> None:
        """The caller ACKed our 2xx: the dialog is confirmed."""

    @_machine.state(serialized="ended")
    def _ended(self) -> None:
        """Refused, hung up, or handed to another call."""

    @_machine.serializer()
    def _state(self, state: str) -> str:
        return state

    @property
    def state(self) -> str:
        """``routing``, ``ringing``, ``answered``, ``confirmed`` or ``ended``."""
        return self._state()  # type: ignore[no-any-return]

    # -- inputs ---------------------------------------------------------------

    @_machine.input()
    def provisional(self, status: int, body: bytes = b"") -> None:
        """Tell the caller the call progresses: 180, or 183 with early media SDP."""

    @_machine.input()
    def answer(self, body: bytes, extra: list[tuple[str, str]] | None = None) -> None:
        """Answer with 200 carrying ``body`` (SDP) and ``extra`` headers."""

    @_machine.input()
    def refuse(self, status: int, reason: str | None = None) -> None:
        """Refuse the INVITE with a final response ≥ 300."""

    @_machine.input()
    def acked(self, ack: Any) -> None:
        """The caller's ACK of our 2xx."""

    @_machine.input()
    def _no_ack(self) -> None:
        """Timer H: no ACK in 64*T1."""

    @_machine.input()
    def hang_up(self) -> None:
        """pbx ends the dialog: BYE now, or once the ACK has come."""

    @_machine.input()
    def bye_now(self) -> None:
        """pbx ends the dialog with BYE at once, even before the ACK (a relayed hang-up passes straight on)."""

    @_machine.input()
    def remote_bye(self) -> None:
        """The caller sent BYE (the controller has answered it)."""

    @_machine.input()
    def release(self) -> None:
        """Stop without another message: the INVITE goes on in another call (a diversion)."""

    # -- outputs --------------------------------------------------------------

    @_machine.output()
    def _send_provisional(self, status: int, body: bytes = b"") -> None:
        self.respond(status, body=body)

    @_machine.output()
    def _send_ok(self, body: bytes, extra: list[tuple[str, str]] | None = None) -> None:
        self._ok = self.respond(200, body=body, extra=extra)
        self.dialog = Dialog.as_uas(self.invite.request, self.invite.peer, self.address, self.tag)
        self._services.dialogs.add(self._owner, self.dialog)
        if not self.invite.peer.reliable:
            # §13.3.1.4: resend the 2xx at T1, doubling up to T2, until the ACK.
            ok, peer, sip = self._ok, self.invite.peer, self._services.sip
            self._timers.repeat("ok", lambda: sip.send(ok, peer), timers.T1, timers.T2)
        self._timers.start("ack", timers.TIMER_H, self._no_ack)

    @_machine.output()
    def _send_final(self, status: int, reason: str | None = None) -> None:
        self.respond(status, reason)

    @_machine.output()
    def _stop_timers(self) -> None:
        self._timers.stop_all()

    @_machine.output()
    def _report_ack(self, ack: Any) -> None:
        if self._on_acked is not None:
            self._on_acked(ack)

    @_machine.output()
    def _send_bye(self) -> None:
        assert self.dialog is not None
        self._services.sip.in_dialog(self.dialog, "BYE")

    @_machine.output()
    def _report_no_ack(self) -> None:
        if self._on_no_ack is not None:
            self._on_no_ack()

    @_machine.output()
    def _report_closed(self) -> None:
        if self._on_closed is not None:
            self._on_closed()

    # -- transitions ------------------------------------------------------------

    _routing.upon(provisional, enter=_ringing, outputs=[_send_provisional])
    _ringing.upon(provisional, enter=_ringing, outputs=[_send_provisional])
    for _waiting in (_routing, _ringing):
        _waiting.upon(answer, enter=_answered, outputs=[_send_ok])
        _waiting.upon(refuse, enter=_ended, outputs=[_send_final])
        _waiting.upon(release, enter=_ended, outputs=[])
        _waiting.upon(hang_up, enter=_ended, outputs=[])
        _waiting.upon(bye_now, enter=_ended, outputs=[])
        _waiting.upon(remote_bye, enter=_ended, outputs=[])
        _waiting.upon(acked, enter=_waiting, outputs=[])
    _answered.upon(acked, enter=_confirmed, outputs=[_stop_timers, _report_ack])
    _answered.upon(_no_ack, enter=_ended, outputs=[_stop_timers, _send_bye, _report_no_ack])
    _answered.upon(hang_up, enter=_closing, outputs=[])
    _answered.upon(remote_bye, enter=_ended, outputs=[_stop_timers])
    _answered.upon(release, enter=_ended, outputs=[_stop_timers])
    _closing.upon(acked, enter=_ended, outputs=[_stop_timers, _send_bye, _report_closed])
    _closing.upon(_no_ack, enter=_ended, outputs=[_stop_timers, _send_bye, _report_no_ack])
    _closing.upon(remote_bye, enter=_ended, outputs=[_stop_timers, _report_closed])
    _closing.upon(release, enter=_ended, outputs=[_stop_timers])
    _closing.upon(hang_up, enter=_closing, outputs=[])
    _closing.upon(bye_now, enter=_ended, outputs=[_stop_timers, _send_bye, _report_closed])
    _answered.upon(bye_now, enter=_ended, outputs=[_stop_timers, _send_bye])
    _confirmed.upon(bye_now, enter=_ended, outputs=[_send_bye])
    _confirmed.upon(acked, enter=_confirmed, outputs=[])
    _confirmed.upon(hang_up, enter=_ended, outputs=[_send_bye])
    _confirmed.upon(remote_bye, enter=_ended, outputs=[])
    _confirmed.upon(release, enter=_ended, outputs=[])
    for _input in (provisional, answer, refuse):
        for _late in (_answered, _closing, _confirmed):
            _late.upon(_input, enter=_late, outputs=[])
    for _input in (provisional, answer, refuse, acked, _no_ack, hang_up, bye_now, remote_bye, release):
        _ended.upon(_input, enter=_ended, outputs=[_stop_timers])
    del _waiting, _input, _late

    # -- messages -----------------------------------------------------------------

    def respond(self, status: int, reason: str | None = None, body: bytes = b"",
                extra: list[tuple[str, str]] | None = None) -> Response:
        """Answer the INVITE (or resend an answer) with our To tag, Contact on 101-299 (§12.1.1)."""
        response = make_response(self.invite.request, status, reason, to_tag=self.tag)
        if 100 < status < 300:
            response.headers.add("Contact", self.address.contact())
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
        return self.state in ("routing", "ringing")

    @property
    def timers(self) -> int:
        """How many of the leg's timers run."""
        return len(self._timers)
