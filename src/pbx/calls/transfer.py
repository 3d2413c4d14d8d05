"""
Transfer of relayed two-party calls from a phone's transfer key: the REFER
(RFC 3515) in either party's dialog, and blind transfer with recall.
Attended transfer (Refer-To with Replaces) is :mod:`pbx.calls.attended`'s;
the seats both move parties between are :mod:`pbx.calls.seats`.

Who is where.  A :class:`~pbx.calls.call.Call` has two seats, ``"a"`` (the
caller's) and ``"b"`` (the callee's), each with one side of one relay
session.  Either party may transfer: the *transferor* is the seat the REFER
came in, the *transferee* the other seat, whose dialog, relay port and SDP
stay as they are.  The transferor's seat is emptied (:meth:`Call.vacate
<pbx.calls.call.Call.vacate>`) and the target is seated there
(:meth:`Call.seat <pbx.calls.call.Call.seat>`) on the transferor's relay
port, so after a transfer the call is still one call with one relay
session, whichever party moved.  The caller's seat normally holds an
:class:`~pbx.calls.inbound.InboundLeg`; a target seated there is a
:class:`~pbx.calls.party.Party` (a confirmed dialog, whoever formed it),
so the call's own code (BYE, re-INVITE, INFO, records) goes on unchanged
and the asymmetry of the call's set-up does not matter once it is up.

Media.  The target gets an offer made from the transferee's SDP cut down
to the codec in use (and telephone-event), sendrecv, at the transferor's
relay port: a target that takes it talks to the transferee with no
re-INVITE of the transferee; one that picks another of pbx's codecs is
transcoded by the relay.  A transferee the transferor had held is
re-INVITEd sendrecv once the target is seated.

Blind transfer.  202, NOTIFY "100 Trying" (none with ``Refer-Sub: false``,
RFC 4488), the target is resolved as a direct call is (unconditional
forwarding, DND) and its phones ring from the transferee's number, with
Referred-By (RFC 3892).  A target that fails before ringing is reported in
the final NOTIFY and the transferor keeps the call.  Once a phone of the
target rings, the final NOTIFY says 200, the transferor is hung up (after
the NOTIFY's answer; a transferor that hangs up first just leaves) and the
transferee hears ringback (:mod:`pbx.calls.ringback`).  The target
answering takes the seat; a target that does not answer within
``transfer.recall_after`` seconds, or fails, rings the transferor's phones
back, and the transferee is hung up if nobody answers that either.

Outside numbers.  A target the dialplan sends to a trunk route rings out
through one trunk, with the transferor's calling permissions
(:mod:`pbx.calls.transfer_outside`).

Applications and ring groups.  A target the dialplan gives to an
application is handed to it in the transferor's seat
(:mod:`pbx.calls.transfer_app`); a ring group's members ring by its
strategy, then its final destination (:mod:`pbx.calls.transfer_group`).

Every transfer is published as a ``transferred`` call event naming both
calls; the transferor's call record stays with the call's (hang-up cause
``transferred to <number>``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define, field

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.calls.attended import AttendedTransfers
from pbx.calls.call import Call
from pbx.calls.dialplan import (
    Action,
    HangUp,
    ToApplication,
    ToExtension,
    ToGroup,
    ToTrunks,
)
from pbx.calls.events import CallEvent, CallEvents
from pbx.calls.feature_codes import DigitCollector, InCallCodes
from pbx.calls.forks import Fork, Forks, Outcome, Rung, Verdict
from pbx.calls.groups import RingGroup
from pbx.calls.media import OTHER, MediaError
from pbx.calls.park import ParkingLot
from pbx.calls.refer import (
    ReferError,
    ReferProgress,
    parse_refer_to,
    wants_subscription,
)
from pbx.calls.ringback import Ringback, ringback_frames
from pbx.calls.routing import Routing
from pbx.calls.seats import (
    current_sdp,
    departing_record,
    first_format,
    party_number,
    records_detail,
    resume_held,
    seat_dialog,
)
from pbx.calls.signalling import LegServices
from pbx.calls.transfer_app import ApplicationSeats
from pbx.calls.transfer_group import TransferGroups
from pbx.calls.transfer_outside import OutsideRoute, OutsideTarget, outside_target
from pbx.records import Binding
from pbx.sip.dialog import Dialog, LocalAddress, new_invite
from pbx.sip.message import Request, Response, make_response
from pbx.sip.named_timers import NamedTimers
from pbx.sip.transaction import ServerTransaction
from pbx.sip.uri import parse_uri


@define(eq=False)
class _Blind:
    """One blind transfer in progress."""

    call: Call
    leg: str  # the transferor's seat
    target: str
    transferor: str
    progress: ReferProgress
    offer: bytes
    #: The transferee's payload type of the codec in use (its ringback's).
    payload_type: int = 0
    forks: Forks | None = None
    ringback: Ringback | None = None
    released: bool = False
    recalling: bool = False
    over: bool = False
    #: The trunk the target rings through (an outside number), until it answers or fails.
    out: OutsideTarget | None = None
    #: The application a ring group's transfer goes to when nobody in the group answers.
    final: ToApplication | None = None


@define(eq=False)
class Transfers:
    """
    Carries out the transfers phones ask for in their calls.

    :ivar services: SIP sender, clock, dialog table, domain.
    :ivar routing: extensions, forwarding and registered phones.
    :ivar events: where ``transferred`` is published; ``ended`` is watched
        to stop a transfer whose call ended.
    :ivar ring_timeout: seconds a recalled transferor's phones ring.
    :ivar recall_after: seconds a blind transfer's target rings before the
        transferor is rung back.
    """

    services: LegServices
    routing: Routing
    events: CallEvents
    #: The dialplan's action for a number (an authenticated caller's view).
    dialplan: Callable[[str], Action | None] = lambda number: None
    #: The in-call key code for a blind transfer ("" for none), see :mod:`pbx.calls.feature_codes`.
    blind_code: str = ""
    ring_timeout: float = 30.0
    recall_after: float = 30.0
    #: Places a blind transfer's outside target (None: outside numbers get 404).
    outside: OutsideRoute | None = None
    #: Whether a party on an outside line (``outside_party``) may transfer to an outside number.
    outside_keyed: bool = False
    #: Whether the party in a seat came over a trunk (an outside caller or callee).
    outside_party: Callable[[Call, str], bool] = lambda call, leg: False
    #: Releases the trunk of a seated outside target, by call id, when its call ends.
    _trunk_seats: dict[str, Callable[[], None]] = field(factory=dict)
    #: Call park: a transfer to its code parks the call (None: no park).
    parking: ParkingLot | None = None
    #: Consultation and three-way calls by keys (:mod:`pbx.calls.consult`), None for none.
    consults: InCallCodes | None = None
    #: Applications and ring groups as targets (:mod:`pbx.calls.transfer_app`, ``transfer_group``).
    applications: ApplicationSeats | None = None
    groups: TransferGroups | None = None
    #: Attended transfers (REFER with Replaces).
    attended: AttendedTransfers = field(init=False)
    _blind: dict[str, _Blind] = field(factory=dict)
    _collectors: dict[tuple[str, str], DigitCollector] = field(factory=dict)
    log = Logger()

    def __attrs_post_init__(self) -> None:
        self.attended = AttendedTransfers(self.services, self.events)
        self.events.subscribe(self._ended, kinds=("ended",))

    @property
    def active(self) -> int:
        """How many blind transfers are in progress."""
        return len(self._blind)

    # -- REFER -------------------------------------------------------------------

    def refer(
        self, call: Call, leg: str, dialog: Dialog, transaction: ServerTransaction
    ) -> None:
        """A REFER from the party in ``leg``'s seat of ``call``, in ``dialog``."""
        request = transaction.request
        try:
            target = parse_refer_to(request.headers.get("Refer-To"))
        except ReferError as e:
            self.log.info("REFER in {call_id} refused: {e}", call_id=call.call_id, e=e)
            transaction.respond(make_response(request, 400, str(e)[:80]))
            return
        if call.state != "confirmed":
            transaction.respond(make_response(request, 403, "Call Not Established"))
            return
        if call.call_id in self._blind:
            # RFC 3261 §14.2 in spirit: one transfer of a call at a time.
            transaction.respond(make_response(request, 491))
            return
        subscribe = wants_subscription(request)
        accepted = make_response(request, 202)
        accepted.headers.add("Contact", dialog.contact())
        if not subscribe:
            accepted.headers.add("Refer-Sub", "false")  # RFC 4488 §4
        transaction.respond(accepted)
        progress = ReferProgress(self.services.sip, dialog, enabled=subscribe)
        progress.report(100)
        self.log.info(
            "call {call_id}: {who} transfers to {target}{how}",
            call_id=call.call_id,
            who=party_number(call, leg),
            target=target.number,
            how=" (attended)" if target.replaces else "",
        )
        if target.replaces is not None:
            self.attended.transfer(call, leg, progress, target.replaces)
            return
        d = Deferred.fromCoroutine(
            self._start_blind(call, leg, progress, target.number)
        )
        d.addErrback(self._failed, call, progress)

    def _failed(self, failure: Any, call: Call, progress: ReferProgress) -> None:
        self.log.failure(
            "transferring call {call_id} failed", failure, call_id=call.call_id
        )
        self._blind.pop(call.call_id, None)
        progress.report(500)

    # -- feature codes -------------------------------------------------------------

    def key(self, call: Call, leg: str, digit: str) -> None:
        """
        A key pressed in ``leg``'s seat (:meth:`pbx.calls.keys.CallKeys.subscribe`):
        maybe part of the blind transfer code and a number.
        """
        if call.state != "confirmed":
            return
        if self.consults is not None and self.consults.key(call, leg, digit):
            return
        key = (call.call_id, leg)
        collector = self._collectors.get(key)
        if collector is None:
            codes = {self.blind_code: lambda number: self._keyed(call, leg, number)}
            if self.consults is not None:
                codes.update(self.consults.codes(call, leg))
            collector = DigitCollector(codes, self.services.clock)
            self._collectors[key] = collector
        collector.key(digit)

    def _keyed(self, call: Call, leg: str, number: str) -> None:
        """The blind transfer code and ``number`` were keyed in ``leg``'s seat: transfer, no NOTIFY."""
        dialog = seat_dialog(call, leg)
        if dialog is None or call.state != "confirmed" or call.call_id in self._blind:
            return
        self.log.info(
            "call {call_id}: {who} keyed a transfer to {number}",
            call_id=call.call_id,
            who=party_number(call, leg),
            number=number,
        )
        progress = ReferProgress(self.services.sip, dialog, enabled=False)
        d = Deferred.fromCoroutine(self._start_blind(call, leg, progress, number, keyed=True))
        d.addErrback(self._failed, call, progress)

    # -- blind ---------------------------------------------------------------------

    async def _start_blind(
        self, call: Call, leg: str, progress: ReferProgress, number: str, keyed: bool = False
    ) -> None:
        if self.parking is not None and self.parking.is_code(number):
            self.parking.park(call, leg, progress)
            return
        transferor = party_number(call, leg)
        # The dialplan first, as for a call dialled from the transferor's phone.
        action = self.dialplan(number)
        if isinstance(action, HangUp):
            progress.report(action.status, action.reason or None)
            return
        if isinstance(action, ToTrunks):
            await self._start_outside(call, leg, progress, number, action, keyed)
            return
        if isinstance(action, ToApplication):
            self._to_application(call, leg, progress, number, action)
            return
        group = self.groups.find(number, action) if self.groups is not None else None
        if self.groups is not None and group is not None:
            # A ring group (pbx.calls.transfer_group): its members by its strategy, then its final destination.
            transfer = self._begin(call, leg, progress, group.number, transferor)
            if transfer is not None:
                self._ring_group(transfer, self.groups, group)
            return
        if isinstance(action, ToGroup):
            progress.report(404)  # a route to a group that is not configured
            return
        if isinstance(action, ToExtension):
            number = action.number
        number, record, refuse = await self.routing.resolve_target(number, {transferor})
        if record is None or refuse:
            progress.report(refuse or 404)
            return
        bindings = self.routing.contacts(number)
        if not bindings:
            progress.report(480)
            return
        transfer = self._begin(call, leg, progress, number, transferor)
        if transfer is not None:
            self._ring(transfer, number, bindings, self.recall_after)

    def _begin(
        self, call: Call, leg: str, progress: ReferProgress, number: str, transferor: str
    ) -> _Blind | None:
        """A blind transfer to ``number`` whose phones are about to ring; None (and a final NOTIFY) when it cannot be."""
        if call.state != "confirmed" or call.call_id in self._blind:
            progress.report(487)
            return None
        other = OTHER[leg]
        try:
            sdp = current_sdp(call.media, other)
            offer = call.media.offer_from(other, sdp.to_bytes())
        except MediaError as e:
            self.log.info("call {call_id} cannot be transferred: {e}", call_id=call.call_id, e=e)
            progress.report(488)
            return None
        transfer = self._blind[call.call_id] = _Blind(call, leg, number, transferor, progress, offer, first_format(sdp))
        return transfer

    def _to_application(self, call: Call, leg: str, progress: ReferProgress, number: str, action: ToApplication) -> bool:
        """The transferee is handed to an application in ``leg``'s seat (:mod:`pbx.calls.transfer_app`)."""
        seats = self.applications
        status = seats.take(call, leg, number, action, progress) if seats is not None else 501
        if status:
            progress.report(status)
        return not status

    def _ring_group(self, transfer: _Blind, groups: TransferGroups, group: RingGroup) -> None:
        transfer.final, skip = group.final_application, {transfer.transferor, party_number(transfer.call, OTHER[transfer.leg])}
        ring = groups.ring(group, skip, lambda b, t: self._rings(transfer, group.number, b, t), lambda: not transfer.over)
        self._follow(transfer, ring)

    async def _start_outside(
        self, call: Call, leg: str, progress: ReferProgress, number: str, action: ToTrunks, keyed: bool
    ) -> None:
        """A blind transfer to a number a trunk route sends out (see :func:`outside_target`)."""
        transferor = party_number(call, leg)
        barred = self.outside_party(call, leg) and not self.outside_keyed
        target = await outside_target(self.outside, barred, call.call_id, transferor, number, action, progress, keyed)
        if target is None:
            return
        transfer = self._begin(call, leg, progress, number, transferor)
        if transfer is None:
            target.release()
            return
        transfer.out = target
        self._ring(transfer, target.binding.aor, [target.binding], self.recall_after)

    def _ring(self, transfer: _Blind, number: str, bindings: list[Binding], timeout: float) -> None:
        """Ring ``number``'s phones (or its trunk); the outcome settles the transfer."""
        self._follow(transfer, self._rings(transfer, number, bindings, timeout))

    def _follow(self, transfer: _Blind, ringing: Deferred[Rung]) -> None:
        ringing.addCallback(self._rung, transfer).addErrback(
            lambda f: self.log.failure("transfer of {call_id}", f, call_id=transfer.call.call_id)
        )

    def _rings(
        self, transfer: _Blind, number: str, bindings: list[Binding], timeout: float
    ) -> Deferred[Rung]:
        """Ring ``number``'s phones (or its trunk) with the transfer's offer, from the transferee."""
        call, other = transfer.call, OTHER[transfer.leg]
        shown, domain = party_number(call, other), self.services.domain
        referred_by = f"<sip:{transfer.transferor}@{domain}>"
        out = None if transfer.recalling else transfer.out
        body, content_type = out.body(transfer.offer) if out is not None else (transfer.offer, "application/sdp")
        identity = out.from_ if out is not None else f"<sip:{shown}@{domain}>"

        def invite(binding: Binding, address: LocalAddress) -> Request:
            made = new_invite(
                target=parse_uri(binding.contact),
                to=out.to if out is not None else f"<sip:{number}@{domain}>",
                from_=identity,
                address=address,
                body=body,
                contact_user=shown,
                extra=[
                    ("P-Asserted-Identity", identity),
                    ("Referred-By", referred_by),
                    *(out.headers if out is not None else ()),
                ],
            )
            if body and content_type != "application/sdp":
                made.headers.set("Content-Type", content_type)
            return made

        services = out.services if out is not None else self.services
        forks = Forks(
            services,
            on_provisional=lambda fork, response: self._ringing(transfer),
            on_answer=lambda fork, response: self._answer(transfer, response),
            contact_user=shown,
            timers=NamedTimers(self.services.clock),
            on_challenge=out.on_challenge if out is not None else None,
        )
        transfer.forks = forks
        return forks.ring(bindings, invite, timeout)

    def _ringing(self, transfer: _Blind) -> None:
        """The target rings: the transfer is accepted; the transferor leaves."""
        if not transfer.recalling:
            self._release_transferor(transfer)

    def _release_transferor(self, transfer: _Blind) -> None:
        """Final NOTIFY 200, then BYE the transferor (RFC 3515 §2.4.5)."""
        if transfer.released:
            return
        transfer.released = True
        self._ring_back(transfer)
        call, leg = transfer.call, transfer.leg
        now = self.services.clock.seconds()
        record = departing_record(call, leg, f"transferred to {transfer.target}", now)
        dialog = call.vacate(leg, record)
        if dialog is None:
            return
        sip = self.services.sip

        def bye(_: object = None) -> None:
            sip.in_dialog(dialog, "BYE")

        if not transfer.progress.report(200, on_response=bye):
            bye()

    def leaving(self, call: Call, leg: str) -> bool:
        """
        The party in ``leg``'s seat sent BYE: a transferor whose blind
        transfer is under way leaves, and the call goes on (True; the BYE
        is answered by the caller).  False: an ordinary hang-up.
        """
        if self.consults is not None and self.consults.leaving(call, leg):
            return True
        transfer = self._blind.get(call.call_id)
        if transfer is None or transfer.leg != leg or transfer.released:
            return False
        transfer.released = True
        self._ring_back(transfer)
        call.vacate(
            leg,
            departing_record(
                call,
                leg,
                f"transferred to {transfer.target}",
                self.services.clock.seconds(),
            ),
        )
        return True

    def _answer(self, transfer: _Blind, response: Response) -> Verdict:
        """A phone of the target (or, on recall, of the transferor) answered: take its SDP on the seat."""
        if transfer.call.state != "confirmed" or transfer.over:
            return Verdict.DECLINE
        try:
            transfer.call.media.answer_from(transfer.leg, response.body)
        except MediaError as e:
            self.log.info("transfer target's answer unusable: {e}", e=e)
            return Verdict.DECLINE
        return Verdict.ACCEPT

    def _rung(self, rung: Rung, transfer: _Blind) -> None:
        call = transfer.call
        out, transfer.out = transfer.out, None
        answered = rung.outcome is Outcome.ANSWERED and rung.fork is not None
        if out is not None and (not answered or transfer.over):
            out.release()  # the trunk's attempt is over
        if transfer.over:
            return
        if rung.outcome is Outcome.ANSWERED and rung.fork is not None:
            if out is not None:
                self._trunk_seats[call.call_id] = out.release
            self._release_transferor(transfer)
            self._done(transfer)
            self._take_seat(call, transfer.leg, rung.fork)
            resume_held(call, OTHER[transfer.leg], self.services.sip)
            who = transfer.transferor if transfer.recalling else transfer.target
            self._publish(
                call,
                transfer.leg,
                "recalled" if transfer.recalling else "blind",
                transferor=transfer.transferor,
                target=who,
                target_call_id=rung.fork.invite.call_id,
            )
            return
        if call.state == "ended":
            self._done(transfer)
            return
        if transfer.final is not None and not transfer.recalling:
            # Nobody in the group answered: its final application takes the transferee.
            destination, transfer.final = transfer.final, None
            if transfer.ringback is not None:
                transfer.ringback.stop()
            if self._to_application(call, transfer.leg, transfer.progress, transfer.target, destination):
                self._done(transfer)
                return
        if not transfer.released:
            # Nothing rang: the transferor keeps the call and hears why.
            self._done(transfer)
            transfer.progress.report(rung.status)
            return
        if transfer.recalling:
            self._done(transfer)
            call.hang_up("pbx", "transfer recall unanswered")
            return
        self._recall(transfer)

    def _recall(self, transfer: _Blind) -> None:
        """The target did not answer: ring the transferor's phones back."""
        transfer.recalling = True
        bindings = self.routing.contacts(transfer.transferor)
        self.log.info(
            "call {call_id}: transfer to {target} unanswered, recalling {who}",
            call_id=transfer.call.call_id,
            target=transfer.target,
            who=transfer.transferor,
        )
        if not bindings:
            self._done(transfer)
            transfer.call.hang_up("pbx", "transfer recall unavailable")
            return
        self._ring(transfer, transfer.transferor, bindings, self.ring_timeout)

    def _take_seat(self, call: Call, leg: str, fork: Fork) -> None:
        assert fork.dialog is not None
        call.seat(leg, fork.dialog, fork)
        number = fork.binding.aor
        if leg == "a":
            call.caller = number
        else:
            call.callee = number

    def _ring_back(self, transfer: _Blind) -> None:
        """The transferee hears ringback (G.711 only) until the target or the recalled transferor answers."""
        media = transfer.call.media
        frames = None if media.transcoding else ringback_frames(media.codecs)
        if frames is None:
            return
        endpoint = media.session.leg(OTHER[transfer.leg]).rtp
        transfer.ringback = Ringback(
            self.services.clock, endpoint, frames, transfer.payload_type
        )
        transfer.ringback.start()

    def _done(self, transfer: _Blind) -> None:
        transfer.over = True
        if transfer.ringback is not None:
            transfer.ringback.stop()
        if self._blind.get(transfer.call.call_id) is transfer:
            del self._blind[transfer.call.call_id]

    def _ended(self, event: CallEvent) -> None:
        """A call ended: its key collectors stop; a transfer in progress stops its target ringing."""
        release = self._trunk_seats.pop(event.call_id, None)
        if release is not None:
            release()
        for leg in ("a", "b"):
            collector = self._collectors.pop((event.call_id, leg), None)
            if collector is not None:
                collector.stop()
        transfer = self._blind.get(event.call_id)
        if transfer is None:
            return
        self._done(transfer)
        if transfer.forks is not None:
            transfer.forks.cancel()

    def _publish(self, call: Call, leg: str, kind: str, **detail: Any) -> None:
        self.events.announce(
            "transferred",
            call,
            self.services.clock.seconds(),
            leg,
            how=kind,
            call_id=call.call_id,
            **detail,
            **records_detail(call),
        )
