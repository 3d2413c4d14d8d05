"""
Transfer of relayed two-party calls from a phone's transfer key: blind
transfer (REFER, RFC 3515) and attended transfer (REFER whose Refer-To
carries Replaces, RFC 3891 §7.1).

Who is where.  A :class:`~pbx.calls.call.Call` has two seats, ``"a"`` (the
caller's) and ``"b"`` (the callee's), each with one side of one relay
session.  Either party may transfer: the *transferor* is the seat the REFER
came in, the *transferee* the other seat, which is never touched: its
dialog, its relay port and its SDP stay as they are.  The transferor's
seat is emptied (:meth:`Call.vacate <pbx.calls.call.Call.vacate>`) and the
target is seated there (:meth:`Call.seat <pbx.calls.call.Call.seat>`) on
the transferor's relay port, so after a transfer the call is still one
call with one relay session, whichever party moved.  The caller's seat
normally holds an :class:`~pbx.calls.inbound.InboundLeg`; a target seated
there is a :class:`~pbx.calls.party.Party` (a confirmed dialog, whoever
formed it), so the call's own code (BYE, re-INVITE, INFO, records) goes on
unchanged.

Media.  The target gets an offer made from the transferee's SDP cut down
to the codec in use (and telephone-event), sendrecv, pointing at the
transferor's relay port (:meth:`CallMedia.offer_from
<pbx.calls.media.CallMedia.offer_from>` on the transferee's side): a target
that takes it talks to the transferee with no re-INVITE of the transferee;
one that picks another of our codecs is transcoded by the relay.

Blind transfer.  202, NOTIFY "100 Trying", the target is resolved as a
direct call is (unconditional forwarding, DND) and its phones ring.  A
target that fails before ringing is reported in the final NOTIFY and the
transferor keeps the call.  Once a phone of the target rings, the final
NOTIFY says 200 and the transferor is hung up (after the NOTIFY's answer;
it may hang up itself first).  The target answering takes the seat; a
target that does not answer within ``transfer.recall_after`` seconds (or
fails) rings the transferor's phones back, and the transferee is hung up
if they do not answer either.

Attended transfer.  The Replaces names the transferor's other call through
pbx.  Its remaining party (the target) is re-INVITEd onto the
transferor's relay port in this call, that other call ends (BYE to the
transferor there, nothing to the target) and the target takes the
transferor's seat here; the transferor is hung up after the final NOTIFY.

Every transfer is published as a ``transferred`` call event; the
transferor's call record stays with the call's (hang-up cause
``transferred to <number>``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define, evolve, field

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.calls.call import Call
from pbx.calls.events import CallEvent, CallEvents
from pbx.calls.forks import Fork, Forks, Outcome, Rung, Verdict
from pbx.calls.media import OTHER, CallMedia, MediaError
from pbx.calls.refer import (
    ReferError,
    ReferProgress,
    Replaces,
    parse_refer_to,
    wants_subscription,
)
from pbx.calls.ringback import Ringback, ringback_frames
from pbx.calls.routing import Routing
from pbx.calls.signalling import LegServices
from pbx.media.offer_answer import offered_codecs
from pbx.media.sdp import SessionDescription, direction
from pbx.records import Binding, CallRecord
from pbx.sip.dialog import Dialog, LocalAddress, ack_for_2xx, new_invite
from pbx.sip.message import Request, Response, make_response
from pbx.sip.named_timers import NamedTimers
from pbx.sip.transaction import ServerTransaction
from pbx.sip.uri import parse_uri

#: SDP attributes that set a stream's direction (RFC 3264 §5.1).
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


def party_number(call: Call, leg: str) -> str:
    """The extension in ``leg``'s seat (the caller or the callee)."""
    return call.caller if leg == "a" else call.callee


def current_sdp(media: CallMedia, leg: str) -> SessionDescription:
    """
    ``leg``'s SDP for a new peer: its last answer or offer, cut down to the
    codec in use and telephone-event, sendrecv (RFC 3264 §5.1).

    :raises MediaError: no SDP of that leg, no codec agreed, or the relay transcodes.
    """
    sdp = media.answers.get(leg) or media.offers.get(leg)
    if sdp is None or not media.codecs:
        raise MediaError("no agreed media to hand over")
    if media.transcoding:
        raise MediaError("a transcoded call is not transferred")
    keep = {media.codecs.lower(), "telephone-event"}
    streams = []
    used = False
    for m in sdp.media:
        if m.media != "audio" or not m.port or used:
            streams.append(evolve(m, port=0) if m.port else m)
            continue
        used = True
        formats = [
            str(c.payload_type) for c in offered_codecs(m) if c.encoding.lower() in keep
        ]
        if not formats:
            raise MediaError("the codec in use is not in the SDP")
        kept = set(formats)
        attributes = [
            (name, value)
            for name, value in m.attributes
            if name not in _DIRECTIONS
            and not (
                name in ("rtpmap", "fmtp")
                and (value or "").split(" ", 1)[0] not in kept
            )
        ]
        streams.append(evolve(m, formats=formats, attributes=attributes))
    if not used:
        raise MediaError("no audio stream to hand over")
    return evolve(
        sdp,
        media=streams,
        attributes=[a for a in sdp.attributes if a[0] not in _DIRECTIONS],
    )


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
    local_address: Callable[[str], LocalAddress]
    ring_timeout: float = 30.0
    recall_after: float = 30.0
    _blind: dict[str, _Blind] = field(factory=dict)
    log = Logger()

    def __attrs_post_init__(self) -> None:
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
            self._attended(call, leg, progress, target.replaces, target.number)
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

    # -- blind ---------------------------------------------------------------------

    async def _start_blind(
        self, call: Call, leg: str, progress: ReferProgress, number: str
    ) -> None:
        transferor = party_number(call, leg)
        number, record, refuse = await self.routing.resolve_target(number, {transferor})
        if record is None or refuse:
            progress.report(refuse or 404)
            return
        bindings = self.routing.contacts(number)
        if not bindings:
            progress.report(480)
            return
        if call.state != "confirmed" or call.call_id in self._blind:
            progress.report(487)
            return
        other = OTHER[leg]
        try:
            sdp = current_sdp(call.media, other)
            offer = call.media.offer_from(other, sdp.to_bytes())
        except MediaError as e:
            self.log.info(
                "call {call_id} cannot be transferred: {e}", call_id=call.call_id, e=e
            )
            progress.report(488)
            return
        transfer = _Blind(
            call, leg, number, transferor, progress, offer, _first_format(sdp)
        )
        self._blind[call.call_id] = transfer
        self._ring(transfer, number, bindings, self.recall_after)

    def _ring(
        self, transfer: _Blind, number: str, bindings: list[Binding], timeout: float
    ) -> None:
        """Ring ``number``'s phones with the transfer's offer, from the transferee."""
        call, other = transfer.call, OTHER[transfer.leg]
        shown, domain = party_number(call, other), self.services.domain
        referred_by = f"<sip:{transfer.transferor}@{domain}>"

        def invite(binding: Binding, address: LocalAddress) -> Request:
            return new_invite(
                target=parse_uri(binding.contact),
                to=f"<sip:{number}@{domain}>",
                from_=f"<sip:{shown}@{domain}>",
                address=address,
                body=transfer.offer,
                contact_user=shown,
                extra=[
                    ("P-Asserted-Identity", f"<sip:{shown}@{domain}>"),
                    ("Referred-By", referred_by),
                ],
            )

        forks = Forks(
            self.services,
            on_provisional=lambda fork, response: self._ringing(transfer),
            on_answer=lambda fork, response: self._answer(transfer, response),
            contact_user=shown,
            timers=NamedTimers(self.services.clock),
        )
        transfer.forks = forks
        forks.ring(bindings, invite, timeout).addCallback(
            self._rung, transfer
        ).addErrback(
            lambda f: self.log.failure("transfer of {call_id}", f, call_id=call.call_id)
        )

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
        record = self._departing_record(call, leg, transfer.target, now)
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
        transfer = self._blind.get(call.call_id)
        if transfer is None or transfer.leg != leg or transfer.released:
            return False
        transfer.released = True
        self._ring_back(transfer)
        call.vacate(
            leg,
            self._departing_record(
                call, leg, transfer.target, self.services.clock.seconds()
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
        if transfer.over:
            return
        if rung.outcome is Outcome.ANSWERED and rung.fork is not None:
            self._release_transferor(transfer)
            self._done(transfer)
            self._take_seat(call, transfer.leg, rung.fork)
            self.resume(call, OTHER[transfer.leg])
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
        """A call with a transfer in progress ended: its target stops ringing."""
        transfer = self._blind.get(event.call_id)
        if transfer is None:
            return
        self._done(transfer)
        if transfer.forks is not None:
            transfer.forks.cancel()

    # -- attended ----------------------------------------------------------------

    def find(self, replaces: Replaces) -> tuple[Call, Dialog] | None:
        """The relayed call and dialog a Replaces header names (RFC 3891 §3), or None."""
        for key in replaces.keys():
            entry = self.services.dialogs.find(*key)
            if entry is not None and isinstance(entry[0], Call):
                return entry[0], entry[1]
        return None

    def _attended(
        self,
        call: Call,
        leg: str,
        progress: ReferProgress,
        replaces: Replaces,
        number: str,
    ) -> None:
        """
        Join the transferee of ``call`` with the other party of the call
        ``replaces`` names (the target), where the transferor is too.
        """
        found = self.find(replaces)
        if found is None or found[0] is call or found[0].state != "confirmed":
            progress.report(481)
            return
        other_call, dialog = found
        their_leg = other_call.leg_of(dialog)
        target_leg = OTHER[their_leg]
        target_dialog, target_fork = _seat_of(other_call, target_leg)
        if target_dialog is None:
            progress.report(481)
            return
        if leg == "b" and target_fork is None:
            # The target called in: its dialog takes the callee's seat as a fork.
            target_fork = adopted_fork(
                other_call.caller,
                other_call.invite.request,
                other_call.started,
                target_dialog,
                self.services,
            )
        transferee = OTHER[leg]
        try:
            offer = call.media.offer_from(
                transferee, current_sdp(call.media, transferee).to_bytes()
            )
        except MediaError as e:
            self.log.info(
                "call {call_id} cannot be joined: {e}", call_id=call.call_id, e=e
            )
            progress.report(488)
            return
        reinvite = target_dialog.request(
            "INVITE", body=offer, content_type="application/sdp"
        )
        cseq = reinvite.cseq.number
        sip = self.services.sip
        done = False

        def answered(response: Response) -> None:
            nonlocal done
            if response.status < 200:
                return
            if response.status < 300:
                # §13.2.2.4: every 2xx is ACKed, a retransmitted one again.
                sip.send(ack_for_2xx(target_dialog, cseq), target_dialog.peer)
            if done:
                return
            done = True
            if response.status >= 300:
                progress.report(response.status)
                return
            try:
                call.media.answer_from(leg, response.body)
            except MediaError as e:
                self.log.info(
                    "attended transfer: the target's answer is unusable: {e}", e=e
                )
                progress.report(488)
                return
            if call.state != "confirmed" or other_call.state != "confirmed":
                progress.report(487)
                return
            self._join(
                call, leg, other_call, target_leg, target_dialog, target_fork, progress
            )

        sip.request(reinvite, target_dialog.peer, answered)

    def _join(
        self,
        call: Call,
        leg: str,
        other_call: Call,
        target_leg: str,
        target_dialog: Dialog,
        target_fork: Fork | None,
        progress: ReferProgress,
    ) -> None:
        transferor = party_number(call, leg)
        target = party_number(other_call, target_leg)
        other_call.hand_over(target_leg, f"transferred: {target} joined {call.call_id}")
        now = self.services.clock.seconds()
        dialog = call.vacate(leg, self._departing_record(call, leg, target, now))
        call.seat(leg, target_dialog, target_fork)
        self.resume(call, OTHER[leg])
        if leg == "a":
            call.caller = target
        else:
            call.callee = target
        sip = self.services.sip

        def bye(_: object = None) -> None:
            if dialog is not None:
                sip.in_dialog(dialog, "BYE")

        if not progress.report(200, on_response=bye):
            bye()
        self._publish(
            call,
            leg,
            "attended",
            transferor=transferor,
            target=target,
            target_call_id=other_call.call_id,
        )

    # -- the transferee's direction -------------------------------------------------

    def resume(self, call: Call, leg: str) -> None:
        """
        The party in ``leg``'s seat (the transferee) last agreed to a
        one-way or inactive stream (the transferor held it before
        transferring, as phones do for an attended transfer): re-INVITE it
        with the new party's SDP, sendrecv (RFC 3264 §8.4), so media flows
        both ways.  Its answer is taken; nothing goes to the new party.
        """
        media, other = call.media, OTHER[leg]
        sdp = media.answers.get(leg) or media.offers.get(leg)
        audio = (
            None
            if sdp is None
            else next((m for m in sdp.media if m.media == "audio" and m.port), None)
        )
        dialog = seat_dialog(call, leg)
        if (
            sdp is None
            or audio is None
            or direction(sdp, audio) == "sendrecv"
            or dialog is None
        ):
            return
        try:
            offer = media.offer_from(other, current_sdp(media, other).to_bytes())
        except MediaError as e:
            self.log.info(
                "call {call_id}: no resuming offer: {e}", call_id=call.call_id, e=e
            )
            return
        reinvite = dialog.request("INVITE", body=offer, content_type="application/sdp")
        cseq, sip = reinvite.cseq.number, self.services.sip
        done = False

        def answered(response: Response) -> None:
            nonlocal done
            if response.status < 200:
                return
            if response.status < 300:
                sip.send(ack_for_2xx(dialog, cseq), dialog.peer)
            if done or response.status >= 300:
                done = True
                return
            done = True
            try:
                media.answer_from(leg, response.body)
            except MediaError as e:
                self.log.info(
                    "call {call_id}: resuming answer unusable: {e}",
                    call_id=call.call_id,
                    e=e,
                )

        self.log.info(
            "call {call_id}: resuming the held transferee", call_id=call.call_id
        )
        sip.request(reinvite, dialog.peer, answered)

    # -- records -----------------------------------------------------------------

    @staticmethod
    def _departing_record(call: Call, leg: str, target: str, now: float) -> CallRecord:
        """The transferor's record: answered, hung up by the transfer, naming the target."""
        if leg == "b" and call.b is not None:
            call_id, start = call.b.invite.call_id, call.b.started
        else:
            call_id, start = call.call_id, call.started
        return CallRecord(
            call_id=call_id,
            caller=call.caller,
            callee=call.callee,
            start=start,
            end=now,
            answer=call.answered_at,
            disposition="ANSWERED",
            hangup_side=leg,
            hangup_cause=f"transferred to {target}",
            codecs=call.media.codecs,
            leg=leg,
        )

    def _publish(self, call: Call, leg: str, kind: str, **detail: Any) -> None:
        self.events.announce(
            "transferred",
            call,
            self.services.clock.seconds(),
            leg,
            how=kind,
            call_id=call.call_id,
            **detail,
        )


def adopted_fork(
    number: str, invite: Request, started: float, dialog: Dialog, services: LegServices
) -> Fork:
    """
    A dialog pbx answered (its ``invite`` came from extension ``number``)
    as the answered fork a callee's seat holds: a party pbx did not dial,
    moving there by a transfer.  Nothing drives it but the dialog; its
    INVITE names its Call-ID and ``started`` its start in the call records.
    """
    binding = Binding(aor=number, contact=str(dialog.remote_target), expires_at=0.0)
    fork = Fork(binding, invite, dialog.peer, dialog.address, started, services.sip)
    fork.dialog = dialog
    fork.final()  # answered: it takes no more responses
    return fork


def _first_format(sdp: SessionDescription) -> int:
    """The payload type of the first format of the first live audio stream."""
    audio = next(m for m in sdp.media if m.media == "audio" and m.port)
    return int(audio.formats[0])


def seat_dialog(call: Call, leg: str) -> Dialog | None:
    """The dialog in ``leg``'s seat, if any."""
    return _seat_of(call, leg)[0]


def _seat_of(call: Call, leg: str) -> tuple[Dialog | None, Fork | None]:
    """The dialog in ``leg``'s seat and, for the callee's seat, its fork."""
    if leg == "a":
        return call.a.dialog, None
    if call.b is None:
        return None, None
    return call.b.dialog, call.b
