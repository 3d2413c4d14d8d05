"""
Call park: a party of a relayed call waits in a numbered slot until
someone dials the slot, or until the parker is rung back.

Parking.  A phone transfers its call to the park code (a REFER, or the
blind transfer feature code and the park code keyed by SIP INFO; both
reach :meth:`ParkingLot.park` through :mod:`pbx.calls.transfer`).  The
*parked* party stays in its call, its dialog and relay port untouched;
the parker's seat is vacated (:meth:`Call.vacate
<pbx.calls.call.Call.vacate>`), the parker hears the slot's digits
(:mod:`pbx.calls.park_announce`, when prompts are there and it uses
G.711), then the final NOTIFY says ``200 Parked at 71`` (RFC 3515 §2.4.5:
the reason phrase is ours to choose) and the parker gets BYE once it
answers that NOTIFY.  The parked party hears the parker's
music-on-hold class, fed into its relay leg as a hold answered by pbx
feeds it (:mod:`pbx.calls.hold`), until it leaves the slot.

Retrieval.  An INVITE to a slot number from an authenticated extension
takes the parked call's vacant seat, as an INVITE with Replaces
(:mod:`pbx.calls.replaces`) takes an occupied one: the retriever's offer
goes to the parked party in a re-INVITE on the vacant seat's side, the
answer comes back to the retriever from the vacant seat's relay port, and
the retriever is seated there (:meth:`Call.seat <pbx.calls.call.Call.seat>`).
An empty slot: 404.

Recall.  A call nobody retrieves within ``park.timeout`` seconds rings
the parker's phones (its seat, the parked party's SDP), then the
operator's; when nobody answers, the parked party is hung up.

Every change is a call event: ``parked`` (detail ``slot``, ``parker``) and
``unparked`` (``slot``, ``how``: ``retrieved``, ``recalled`` or
``ended``, and ``by``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define, field

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from pbx.calls.call import Call
from pbx.calls.endpoint_media import MediaServices
from pbx.calls.events import CallEvent, CallEvents
from pbx.calls.forks import Forks, Outcome, Rung, Verdict
from pbx.calls.media import OTHER, MediaError
from pbx.calls.park_announce import OneShot, slot_frames
from pbx.calls.park_options import ParkConfig
from pbx.calls.refer import ReferProgress
from pbx.calls.routing import Routing
from pbx.calls.seats import (
    adopted_fork,
    current_sdp,
    departing_record,
    party_number,
    records_detail,
    reinvite,
    resume_held,
    seat_dialog,
)
from pbx.calls.signalling import LegServices
from pbx.media.playout import HoldMusic
from pbx.records import Binding
from pbx.sip.dialog import Dialog, LocalAddress, new_invite
from pbx.sip.ids import new_tag
from pbx.sip.message import Request, Response, make_response
from pbx.sip.named_timers import NamedTimers
from pbx.sip.transaction import ServerTransaction
from pbx.sip.uri import parse_uri

__all__ = ["ParkingLot", "feed_music"]

#: What stops the music a parked party hears.
StopMusic = Callable[[], None]


def _silence() -> None:
    """Nothing to stop."""


def feed_music(music: HoldMusic | None, call: Call, leg: str, holder: str) -> StopMusic:
    """
    The party in ``leg``'s seat of ``call`` hears the music-on-hold class
    of the call's outside line, else of extension ``holder`` (the parker)
    (:meth:`HoldMusic.class_for <pbx.media.playout.HoldMusic.class_for>`), in the codec it uses, from its
    own relay port (:meth:`RelaySession.feed <pbx.media.relay.RelaySession.feed>`);
    silence without music on hold or a playout in that codec.

    :returns: what stops the music.
    """
    codec = next(
        (c for c in call.media.agreed.get(leg) or [] if not c.is_auxiliary), None
    )
    if music is None or codec is None or codec.payload_type is None:
        return _silence
    playout = music.playout(music.class_for(holder, call.line_class()), codec.encoding)
    if playout is None:
        return _silence
    session = call.media.session
    session.feed(leg, playout, codec.payload_type)

    def stop() -> None:
        if session.feeding(leg) is not None:
            session.unfeed(leg)

    return stop


@define(eq=False)
class _Parked:
    """One parked call."""

    call: Call
    slot: str
    #: The seat the parker left (the retriever or the recalled phone takes it).
    seat: str
    parker: str
    since: float
    stop_music: StopMusic = _silence
    timer: IDelayedCall | None = None
    forks: Forks | None = None
    #: Who the recall rings now ("" before the recall).
    ringing: str = ""
    #: A retriever's re-INVITE of the parked party is under way.
    retrieving: bool = False
    over: bool = False

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view for the API."""
        return {
            "slot": self.slot,
            "call_id": self.call.call_id,
            "parked": party_number(self.call, OTHER[self.seat]),
            "parker": self.parker,
            "since": self.since,
            "recalling": self.ringing,
        }


@define(eq=False)
class ParkingLot:
    """
    The park slots of one switch.

    :ivar services: SIP sender, clock, dialog table, domain.
    :ivar routing: registered phones (of the parker and the operator).
    :ivar events: where ``parked``/``unparked`` go; ``ended`` is watched.
    :ivar config: the code, the slots, the timeout, the operator.
    :ivar ring_timeout: seconds each recalled phone rings.
    :ivar music: music on hold, when it is configured (read at each park:
        the switch sets it after the controller is built).
    """

    services: LegServices
    routing: Routing
    events: CallEvents
    config: ParkConfig
    ring_timeout: float = 30.0
    music: Callable[[], HoldMusic | None] = lambda: None
    #: Prompts and the WAV loader, for saying the slot (None: not said).
    media: Callable[[], MediaServices | None] = lambda: None
    _said: dict[tuple[str, str], list[bytes] | None] = field(factory=dict)
    _slots: dict[str, _Parked] = field(factory=dict)
    log = Logger()

    def __attrs_post_init__(self) -> None:
        self.events.subscribe(self._ended, kinds=("ended",))

    # -- what others ask -------------------------------------------------------------

    def is_code(self, number: str) -> bool:
        """Whether a transfer to ``number`` parks the call."""
        return number == self.config.code

    def is_slot(self, number: str) -> bool:
        """Whether dialling ``number`` retrieves a parked call."""
        return number in self.config.slots

    def occupied(self) -> list[dict[str, Any]]:
        """The occupied slots, in slot order."""
        return [self._slots[s].summary() for s in self.config.slots if s in self._slots]

    # -- parking ---------------------------------------------------------------------

    def park(self, call: Call, leg: str, progress: ReferProgress) -> None:
        """
        The party in ``leg``'s seat of ``call`` parks the other party; the
        final NOTIFY (``progress``) tells it the slot, then it gets BYE.
        """
        if call.state != "confirmed" or self._parked(call) is not None:
            progress.report(487)
            return
        slot = next((s for s in self.config.slots if s not in self._slots), None)
        if slot is None:
            self.log.info("call {call_id}: no free park slot", call_id=call.call_id)
            progress.report(486, "All Park Slots Busy")
            return
        clock = self.services.clock
        now = clock.seconds()
        parker = party_number(call, leg)
        dialog = call.vacate(leg, departing_record(call, leg, f"parked at {slot}", now))
        parked = _Parked(call, slot, leg, parker, now)
        self._slots[slot] = parked
        try:
            parked.stop_music = feed_music(self.music(), call, OTHER[leg], parker)
        except Exception:
            # Parked in silence rather than not parked.
            self.log.failure("music for parked {call_id}", call_id=call.call_id)
        parked.timer = clock.callLater(self.config.timeout, self._recall, parked)
        self.log.info(
            "call {call_id}: {parker} parked {who} at {slot}",
            call_id=call.call_id,
            parker=parker,
            who=party_number(call, OTHER[leg]),
            slot=slot,
        )
        self.events.announce(
            "parked", call, now, OTHER[leg], slot=slot, parker=parker, **records_detail(call)
        )
        if dialog is None:
            return
        sip = self.services.sip

        def bye(_: object = None) -> None:
            sip.in_dialog(dialog, "BYE")

        def leave(_: object = None) -> None:
            # RFC 3515 §2.4.5: the reason phrase of the final sipfrag is ours.
            reason = f"Parked at {slot}" if self.config.announce else None
            if not progress.report(200, reason, on_response=bye):
                bye()

        if not self.config.announce:
            leave()
            return
        d = Deferred.fromCoroutine(self._say_slot(call, leg, slot))
        d.addErrback(
            lambda f: self.log.failure("saying slot {slot} failed", f, slot=slot)
        )
        d.addBoth(leave)

    async def _say_slot(self, call: Call, leg: str, slot: str) -> None:
        """The parker (in ``leg``'s vacated seat) hears the slot's digits; returns once they are said."""
        media = self.media()
        codec = next(
            (c for c in call.media.agreed.get(leg) or [] if not c.is_auxiliary), None
        )
        if media is None or codec is None or codec.payload_type is None:
            return
        key = (slot, codec.encoding.lower())
        if key not in self._said:
            self._said[key] = await slot_frames(
                media.prompts, media.load, slot, codec.encoding
            )
        frames = self._said[key]
        if not frames or call.state == "ended":
            return
        said: Deferred[None] = Deferred()
        session = call.media.session
        session.feed(
            leg,
            OneShot(self.services.clock, frames, lambda: said.callback(None)),
            codec.payload_type,
        )
        try:
            await said
        finally:
            if session.feeding(leg) is not None:
                session.unfeed(leg)

    def _parked(self, call: Call) -> _Parked | None:
        return next((p for p in self._slots.values() if p.call is call), None)

    # -- retrieval -------------------------------------------------------------------

    def retrieve(
        self, transaction: ServerTransaction, caller: str, address: LocalAddress
    ) -> None:
        """The authenticated extension ``caller`` dialled a slot: seat it in the parked call."""
        request = transaction.request
        slot = request.uri.user or ""
        parked = self._slots.get(slot)
        if parked is None or parked.retrieving or parked.call.state != "confirmed":
            transaction.respond(
                make_response(request, 404, "Nothing Parked Here", to_tag=new_tag())
            )
            return
        call, seat = parked.call, parked.seat
        remaining = OTHER[seat]
        if caller == party_number(call, remaining):
            # The parked phone's other line: it cannot talk to itself.
            transaction.respond(
                make_response(request, 403, "Parked Here", to_tag=new_tag())
            )
            return
        other_dialog = seat_dialog(call, remaining)
        if not request.body or other_dialog is None:
            # pbx needs the retriever's offer to re-INVITE the parked party with.
            transaction.respond(make_response(request, 488, to_tag=new_tag()))
            return
        try:
            offer = call.media.offer_from(seat, request.body)
        except MediaError:
            transaction.respond(make_response(request, 488, to_tag=new_tag()))
            return
        parked.retrieving = True
        self.log.info(
            "call {call_id}: {caller} retrieves slot {slot}",
            call_id=call.call_id,
            caller=caller,
            slot=slot,
        )

        def answered(response: Response) -> None:
            parked.retrieving = False
            if parked.over or call.state != "confirmed":
                transaction.respond(make_response(request, 481, to_tag=new_tag()))
                return
            if response.status >= 300:
                transaction.respond(
                    make_response(request, response.status, to_tag=new_tag())
                )
                return
            try:
                answer = call.media.answer_from(remaining, response.body)
            except MediaError:
                transaction.respond(make_response(request, 488, to_tag=new_tag()))
                return
            self._join(parked, transaction, caller, address, answer)

        reinvite(self.services.sip, other_dialog, offer, answered)

    def _join(
        self,
        parked: _Parked,
        transaction: ServerTransaction,
        caller: str,
        address: LocalAddress,
        answer: bytes,
    ) -> None:
        """Answer the retriever and seat it where the parker was."""
        request = transaction.request
        call, seat = parked.call, parked.seat
        now = self.services.clock.seconds()
        tag = new_tag()
        dialog = Dialog.as_uas(request, transaction.peer, address, tag)
        ok = make_response(request, 200, to_tag=tag)
        ok.headers.add("Contact", dialog.contact())
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = answer
        if seat == "b":
            fork = adopted_fork(caller, request, now, dialog, self.services)
            call.callee = caller
            call.seat(seat, dialog, fork)
        else:
            call.caller = caller
            call.seat(seat, dialog)
        # Published once the retriever is seated: the event's records name it.
        self._unpark(parked, "retrieved", caller, target_call_id=request.call_id)
        call.answer_in_dialog(transaction, ok)

    # -- recall ----------------------------------------------------------------------

    def _recall(self, parked: _Parked) -> None:
        """Nobody retrieved the call in time: ring the parker back."""
        parked.timer = None
        if parked.over:
            return
        if parked.retrieving:
            # A retriever is being connected; look again in a moment.
            parked.timer = self.services.clock.callLater(1.0, self._recall, parked)
            return
        self.log.info(
            "call {call_id}: slot {slot} unretrieved, recalling {who}",
            call_id=parked.call.call_id,
            slot=parked.slot,
            who=parked.parker,
        )
        self._ring(parked, parked.parker)

    def _next(self, parked: _Parked) -> None:
        """The phones rung did not answer: the operator next, or hang up."""
        operator = self.config.operator
        if parked.ringing == parked.parker and operator and operator != parked.parker:
            self._ring(parked, operator)
            return
        self._unpark(parked, "ended", "")
        parked.call.hang_up("pbx", "park recall unanswered")

    def _ring(self, parked: _Parked, number: str) -> None:
        """Ring ``number``'s phones with the parked party's SDP, from the parked party."""
        parked.ringing = number
        bindings = self.routing.contacts(number)
        if not bindings:
            self._next(parked)
            return
        call, remaining = parked.call, OTHER[parked.seat]
        try:
            offer = call.media.offer_from(
                remaining, current_sdp(call.media, remaining).to_bytes()
            )
        except MediaError as e:
            self.log.info(
                "call {call_id}: no offer to recall with: {e}",
                call_id=call.call_id,
                e=e,
            )
            self._unpark(parked, "ended", "")
            call.hang_up("pbx", "park recall impossible")
            return
        shown, domain = party_number(call, remaining), self.services.domain

        def invite(binding: Binding, address: LocalAddress) -> Request:
            return new_invite(
                target=parse_uri(binding.contact),
                to=f"<sip:{number}@{domain}>",
                from_=f"<sip:{shown}@{domain}>",
                address=address,
                body=offer,
                contact_user=shown,
                extra=[("P-Asserted-Identity", f"<sip:{shown}@{domain}>")],
            )

        forks = Forks(
            self.services,
            on_provisional=lambda fork, response: None,
            on_answer=lambda fork, response: self._answer(parked, response),
            contact_user=shown,
            timers=NamedTimers(self.services.clock),
        )
        parked.forks = forks
        forks.ring(bindings, invite, self.ring_timeout).addCallback(
            self._rung, parked
        ).addErrback(
            lambda f: self.log.failure(
                "park recall of {call_id}", f, call_id=call.call_id
            )
        )

    def _answer(self, parked: _Parked, response: Response) -> Verdict:
        """A recalled phone answered: take its SDP on the vacant seat."""
        if parked.over or parked.call.state != "confirmed":
            return Verdict.DECLINE
        try:
            parked.call.media.answer_from(parked.seat, response.body)
        except MediaError as e:
            self.log.info("recalled phone's answer unusable: {e}", e=e)
            return Verdict.DECLINE
        return Verdict.ACCEPT

    def _rung(self, rung: Rung, parked: _Parked) -> None:
        parked.forks = None
        if parked.over:
            return
        call, seat = parked.call, parked.seat
        if rung.outcome is Outcome.ANSWERED and rung.fork is not None:
            fork = rung.fork
            assert fork.dialog is not None
            call.seat(seat, fork.dialog, fork)
            if seat == "a":
                call.caller = fork.binding.aor
            else:
                call.callee = fork.binding.aor
            self._unpark(parked, "recalled", parked.ringing)
            resume_held(call, OTHER[seat], self.services.sip)
            return
        if call.state == "ended":
            self._unpark(parked, "ended", "")
            return
        self._next(parked)

    # -- endings ---------------------------------------------------------------------

    def _unpark(self, parked: _Parked, how: str, by: str, **detail: Any) -> None:
        """The slot is free again: no timer, no ringing, no music; ``unparked`` is published."""
        if parked.over:
            return
        parked.over = True
        if self._slots.get(parked.slot) is parked:
            del self._slots[parked.slot]
        if parked.timer is not None and parked.timer.active():
            parked.timer.cancel()
        parked.timer = None
        if parked.forks is not None:
            forks, parked.forks = parked.forks, None
            forks.cancel()
        parked.stop_music()
        self.events.announce(
            "unparked",
            parked.call,
            self.services.clock.seconds(),
            OTHER[parked.seat],
            slot=parked.slot,
            how=how,
            by=by,
            **detail,
            **records_detail(parked.call),
        )

    def _ended(self, event: CallEvent) -> None:
        """A parked call ended (the parked party hung up): its slot is free."""
        for parked in list(self._slots.values()):
            if parked.call.call_id == event.call_id:
                self._unpark(parked, "ended", "")
