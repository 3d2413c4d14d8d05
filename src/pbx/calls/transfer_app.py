"""
Blind transfer to a dialplan application (voicemail, the auto attendant,
echo, a conference room...): pbx's own media takes the transferor's seat.

The transferee stays in its call, as in any blind transfer
(:mod:`pbx.calls.transfer`): its dialog, its relay port and its SDP are
untouched.  Instead of a phone, an
:class:`~pbx.calls.endpoint_media.EndpointMedia` of pbx answers the offer a
phone target would get (the transferee's SDP cut down to the codec in use,
at the transferor's relay port, :func:`~pbx.calls.seats.current_sdp`): the
relay sends the transferee's packets to that endpoint, and the endpoint's
to the transferee from the port it already talks to.  The application
drives the endpoint's channel exactly as for a call dialled to it: the
caller it sees is the transferee, the callee the number transferred to,
its args the dialplan's.

The transferor gets the final NOTIFY (200) and BYE once the application
has the call.  The application returning (or hanging up) ends the call:
the transferee gets BYE.  The transferee hanging up ends the application
(its channel hears the hang-up).  Keys come as RFC 4733 events through the
relay, or as SIP INFO from the transferee (:meth:`ApplicationSeats.in_dialog`);
a re-INVITE or UPDATE that keeps the codec in use is answered by pbx on the
relay port (a session refresh, RFC 4028), anything else gets 488, and a
REFER 403: the transferee talks to pbx only.

The application's leg is recorded as a call answered by that application
(``created``, ``answered`` and ``ended`` call events with its own key, the
``application`` column, the application's disposition such as
``VOICEMAIL``); the call's own records go on as for any blind transfer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define, field

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.calls.call import Call
from pbx.calls.dialplan import ToApplication
from pbx.calls.endpoint_media import EndpointMedia, MediaUnavailable, answer_dtmf_info
from pbx.calls.events import CallEvent, CallEvents
from pbx.calls.media import OTHER, MediaError
from pbx.calls.outbound import unquote_display
from pbx.calls.refer import ReferProgress
from pbx.calls.seats import (
    current_sdp,
    departing_record,
    party_number,
    resume_held,
    seat_dialog,
)
from pbx.calls.signalling import LegServices
from pbx.media.channel import HungUp
from pbx.media.offer_answer import offered_codecs
from pbx.records import CallRecord
from pbx.sip.ids import new_call_id
from pbx.sip.message import make_response
from pbx.sip.transaction import ServerTransaction

#: Makes a terminated leg's media for (caller, caller name, callee); None without media services.
EndpointMaker = Callable[[str, str, str], "Callable[[Callable[[str], None]], EndpointMedia] | None"]


@define(eq=False)
class _Seated:
    """An application holding a seat of a relayed call (the CDR row and call events are its own)."""

    call: Call
    leg: str
    name: str
    call_id: str
    caller: str
    callee: str
    started: float
    disposition: str = "ANSWERED"
    media: EndpointMedia | None = None
    hangup_side: str = ""
    hangup_cause: str = ""
    over: bool = False

    def record(self, end: float) -> CallRecord:
        """The application leg's call detail record."""
        return CallRecord(
            call_id=self.call_id, caller=self.caller, callee=self.callee, start=self.started, end=end,
            answer=self.started, disposition=self.disposition, hangup_side=self.hangup_side,
            hangup_cause=self.hangup_cause, codecs=self.media.codecs if self.media is not None else "",
            leg="a", application=self.name,
        )


def leave_seat(call: Call, leg: str, cause: str, progress: ReferProgress, services: LegServices) -> None:
    """
    The transferor in ``leg``'s seat leaves (if it is still there): final
    NOTIFY 200, then BYE once the NOTIFY is answered (RFC 3515 §2.4.5).
    """
    if seat_dialog(call, leg) is None:
        return
    dialog = call.vacate(leg, departing_record(call, leg, cause, services.clock.seconds()))
    if dialog is None:
        return
    sip = services.sip

    def bye(_: object = None) -> None:
        sip.in_dialog(dialog, "BYE")

    if not progress.report(200, on_response=bye):
        bye()


@define(eq=False)
class ApplicationSeats:
    """
    Seats dialplan applications in relayed calls a blind transfer sends to them.

    :ivar services: SIP sender and clock.
    :ivar events: where the application legs' events go; ``ended`` is watched.
    :ivar applications: the running dialplan applications by name.
    :ivar endpoint_media: makes an application leg's media.
    """

    services: LegServices
    events: CallEvents
    applications: dict[str, Any]
    endpoint_media: EndpointMaker
    _seated: dict[str, _Seated] = field(factory=dict)
    log = Logger()

    def __attrs_post_init__(self) -> None:
        self.events.subscribe(self._ended, kinds=("ended",))

    def take(self, call: Call, leg: str, number: str, action: ToApplication, progress: ReferProgress) -> int:
        """
        Hand the party opposite ``leg`` to ``action``'s application in
        ``leg``'s seat (its occupant, if still there, leaves with the final
        NOTIFY and BYE).

        :returns: 0 once the application has the call, else the status for
            the final NOTIFY (nothing changed).
        """
        application = self.applications.get(action.name)
        other = OTHER[leg]
        transferee, transferor = party_number(call, other), party_number(call, leg)
        name = unquote_display(call.caller_display) if other == "a" else ""
        make = self.endpoint_media(transferee, name, number)
        if application is None or make is None:
            self.log.warn("transfer to application {name!r}, which is not running", name=action.name)
            return 404
        if call.state != "confirmed" or call.call_id in self._seated:
            return 487
        now = self.services.clock.seconds()
        seated = _Seated(call, leg, action.name, new_call_id(self.services.domain), transferee, number, now,
                         # An application may name its own (IDialplanApplication), as voicemail does.
                         disposition=getattr(application, "disposition", "ANSWERED"))
        media = seated.media = make(lambda cause: self._finish(seated, cause))
        try:
            offer = call.media.offer_from(other, current_sdp(call.media, other).to_bytes())
            answer = media.answer(offer)
        except MediaError as e:
            media.close("")
            self.log.info("call {call_id}: no media for application {name}: {e}", call_id=call.call_id,
                          name=action.name, e=e)
            return 488
        except MediaUnavailable as e:
            return e.status
        leave_seat(call, leg, f"transferred to {number}", progress, self.services)
        try:
            call.media.answer_from(leg, answer)
        except MediaError as e:  # our own answer: not expected
            media.close("")
            self.log.warn("call {call_id}: application answer refused: {e}", call_id=call.call_id, e=e)
            call.hang_up("pbx", "transfer to application failed")
            return 0
        call.media.session.unhold(leg)
        if media.endpoint is not None and media.endpoint.port is not None:
            call.media.session.pin(leg, media.services.address, media.endpoint.port)
        resume_held(call, other, self.services.sip)
        if leg == "a":
            call.caller = number
        else:
            call.callee = number
        self._seated[call.call_id] = seated
        self.log.info("call {call_id}: {who} handed to application {name} ({number})", call_id=call.call_id,
                      who=transferee, name=action.name, number=number)
        self.events.announce("transferred", call, now, leg, how="application", call_id=call.call_id,
                             transferor=transferor, target=number, application=action.name)
        # As for a call dialled to the application: its caller is leg "a".
        self.events.announce("created", seated, now, "a", application=action.name, transferred_call=call.call_id)
        self.events.announce("answered", seated, now, "a", application=action.name, records=[seated.record(now)])
        d = Deferred.fromCoroutine(self._run(seated, application, action.args))
        d.addErrback(lambda f: self.log.failure("application {name} failed", f, name=action.name))
        return 0

    async def _run(self, seated: _Seated, application: Any, args: Any) -> None:
        assert seated.media is not None and seated.media.channel is not None
        try:
            await application.run(seated.media.channel, args)
        except HungUp:
            return
        except Exception:
            # A failed application ends its call; the transferee is not left with silence.
            self.log.failure("application {name} failed", name=seated.name)
            self._finish(seated, "application failed")
            return
        self._finish(seated, "application finished")

    def _finish(self, seated: _Seated, cause: str) -> None:
        """The application is done (or hung up): the transferee gets BYE and the call ends."""
        if seated.over or seated.hangup_cause:
            return
        seated.hangup_side, seated.hangup_cause = "pbx", cause
        seated.call.hang_up("pbx", cause)

    def _ended(self, event: CallEvent) -> None:
        """A call with an application seat ended: the channel hears it, the endpoint closes, the leg is recorded."""
        seated = self._seated.pop(event.call_id, None)
        if seated is None or seated.over:
            return
        seated.over = True
        call = seated.call
        if not seated.hangup_cause:
            # The transferee hung up: the caller's side, as in the record of a dialled application call.
            seated.hangup_side = "a" if call.hangup_side in OTHER else call.hangup_side
            seated.hangup_cause = call.hangup_cause
        if seated.media is not None:
            seated.media.close(seated.hangup_cause)
        now = self.services.clock.seconds()
        self.events.announce("ended", seated, now, "a", records=[seated.record(now)],
                             disposition=seated.disposition, application=seated.name)

    def in_dialog(self, call: Call, leg: str, transaction: ServerTransaction) -> bool:
        """
        A request from the transferee of a call an application holds: INFO
        (a key) goes to the channel; a re-INVITE or UPDATE is answered here;
        REFER gets 403.  False: not such a call, or a request handled as
        ever (BYE).
        """
        seated = self._seated.get(call.call_id)
        request = transaction.request
        method = request.method
        if seated is None or leg == seated.leg or method not in ("INFO", "INVITE", "UPDATE", "REFER"):
            return False
        if method == "INFO":
            answer_dtmf_info(transaction, seated.media.channel if seated.media is not None else None)
        elif method == "REFER":
            transaction.respond(make_response(request, 403, "Talking To An Application"))
        else:
            dialog = seat_dialog(call, leg)
            if dialog is not None and method == "INVITE":
                dialog.update_target(request)  # RFC 3261 §12.2.2
            self._reanswer(call, leg, transaction)
        return True

    def _reanswer(self, call: Call, leg: str, transaction: ServerTransaction) -> None:
        """An in-dialog offer that keeps the codec in use is answered on the relay port (RFC 3264 §8); else 488."""
        request = transaction.request
        media = call.media
        if not request.body and request.method == "UPDATE":
            # RFC 4028 §10: a session refresh by UPDATE without an offer.
            call.answer_in_dialog(transaction, make_response(request, 200))
            return
        in_use = [c for c in media.agreed.get(leg) or [] if not c.is_auxiliary][:1]
        try:
            offer = media.parse(request.body)
            audio = next(m for m in offer.media if m.media == "audio" and m.port)
            offered = {c.key for c in offered_codecs(audio)}
            if not in_use or in_use[0].key not in offered:
                raise MediaError("the codec in use is not offered")
            events = [c for c in media.agreed.get(leg) or [] if c.is_auxiliary and c.key in offered]
            ours = media.answer_here(leg, offer, in_use + events)
        except (MediaError, StopIteration):
            transaction.respond(make_response(request, 488))
            return
        ok = make_response(request, 200)
        dialog = seat_dialog(call, leg)
        if dialog is not None:
            ok.headers.add("Contact", dialog.contact("pbx"))
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = ours
        call.answer_in_dialog(transaction, ok)
