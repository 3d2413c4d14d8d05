"""
One call through the B2BUA: the caller's leg (an :class:`InboundLeg`, pbx
the UAS), the callee's legs (:class:`Forks`, pbx the UAC of one INVITE per
registered phone) and the relay carrying their media (:class:`CallMedia`).

:meth:`Call.ring` returns how ringing ended; what follows (a forward, a
diversion to an application, a failure) is the controller's policy.  A
caller's INVITE without SDP puts the call in *delayed* mode (RFC 3261
§13.2.1): the callees get INVITEs without SDP, the offer in the answering
callee's 2xx goes to the caller in our 2xx, and that callee's ACK waits
for the caller's, which carries the answer (§13.2.2.4).
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from pbx.calls.events import CallEvents
from pbx.calls.forks import BUSY, Fork, Forks, Outcome, Rung, Verdict
from pbx.calls.hold import LocalHold
from pbx.calls.inbound import InboundLeg
from pbx.calls.media import CallMedia, MediaError
from pbx.calls.party import Party
from pbx.calls.reinvite import ReinviteAnswers
from pbx.calls.reoffer import Reoffers
from pbx.calls.seating import Occupant, Seating
from pbx.calls.signalling import LegServices
from pbx.media.playout import HoldMusic
from pbx.media.sdp import Connection, MediaDescription, Origin, SessionDescription
from pbx.records import Binding, CallRecord
from pbx.sip.dialog import Dialog, LocalAddress, new_invite
from pbx.sip.message import Request, Response, make_response
from pbx.sip.named_timers import NamedTimers
from pbx.sip.transaction import ServerTransaction
from pbx.sip.uri import parse_uri

#: Why a call ends when the caller's ACK does not answer our offer.
NO_ANSWER_IN_ACK = "no answer in ACK"
#: Dispositions of calls that failed with a final status.
_DISPOSITIONS = {486: "BUSY", 600: "BUSY", 603: "BUSY", 480: "NO ANSWER", 408: "NO ANSWER", 487: "CANCELLED"}


def _refusal_of(media: CallMedia, offer: bytes) -> bytes:
    """The ACK body turning down the offer of a 2xx that came too late or in a race (:func:`refusal`)."""
    try:
        return refusal(CallMedia.parse(offer), media.address)
    except MediaError:
        return b""


def refusal(offer: SessionDescription, address: str) -> bytes:
    """
    A valid answer that refuses every stream of ``offer`` (RFC 3264 §6:
    port 0, the offered formats): what the ACK of a 2xx whose offer we do
    not take carries before the BYE (RFC 3261 §13.2.2.4).
    """
    connection = Connection.for_address(address)
    origin = Origin("-", str(secrets.randbelow(2**31)), 1, "IN", connection.addrtype, address)
    streams = [MediaDescription(m.media, 0, m.proto, m.formats) for m in offer.media]
    return SessionDescription(origin=origin, connection=connection, media=streams).to_bytes()


class Call:
    """
    The state of one relayed call.

    :param events: where the call's events go (none is made that nobody takes).
    :param on_end: called once when the call is over (the controller
        forgets it, closes its relay session and its records are published).
    :param music: music on hold: pbx answers holds itself and the held party
        hears music (:mod:`pbx.calls.hold`); None passes holds on.
    """

    log = Logger()
    #: The caller's side: its leg, or, once a transfer put someone else
    #: there, that party (:mod:`pbx.calls.transfer`).
    a: InboundLeg | Party
    #: Records of the parties that left by a transfer (:meth:`vacate`).
    departed: tuple[CallRecord, ...] = ()

    def __init__(
        self,
        services: LegServices,
        invite: ServerTransaction,
        *,
        caller: str,
        callee: str,
        media: CallMedia,
        address: LocalAddress,
        caller_display: str = "",
        session_expires: int = 0,
        events: CallEvents,
        on_end: Callable[[Call], None],
        music: HoldMusic | None = None,
    ) -> None:
        self.services = services
        self.invite = invite
        self.caller = caller
        self.callee = callee
        self.caller_display = caller_display
        self.media = media
        self.session_expires = session_expires
        self.started = services.clock.seconds()
        self.delayed = not invite.request.body
        self._timers = NamedTimers(services.clock)
        self.a = InboundLeg(services, invite, address, self, on_acked=self._acked,
                            on_no_ack=self._no_ack, on_ended=self._end, timers=self._timers)
        self.forks: Forks | None = None
        self.b: Fork | None = None
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.hangup_side = ""
        self.hangup_cause = ""
        self.disposition = ""
        #: The application a call nobody answered was diverted to (its CDR names it).
        self.diverted_to = ""
        #: The SDP answer the caller got in a 183 (early media), if any: a
        #: diverted call answers with the same (RFC 3261 §13.2.1).
        self.early_answer: bytes | None = None
        #: Where forwarding has been: the controller's loop guard.
        self.seen: set[str] = set()
        #: The forwards of the extension ringing now (``busy``, ``no_answer``).
        self.forwards: dict[str, str] = {}
        self._events = events
        self._on_end = on_end
        self._over = False
        self._reinvites = ReinviteAnswers(services.sip, self._timers)
        self._published_ringing = False
        self._hold = None if music is None else LocalHold(media, music, self._extension, self.line_class)
        self._reoffers: Reoffers | None = Reoffers(services.sip, media, self._reinvites, self._hold, self._dialog,
                                  self._refreshed, self._refresh_headers, self._event)
        #: Who sits where, for the records, and the conversation's linked id.
        self.seating = Seating(self.call_id, self.started)
        #: The callee's SRTP policy (:mod:`pbx.media.sdes`): what its phones are offered.
        self.callee_srtp = "offered"
        self._event("created")

    # -- what the controller reads -------------------------------------------------

    @property
    def call_id(self) -> str:
        """The caller's Call-ID."""
        return self.invite.request.call_id

    @property
    def a_tag(self) -> str:
        """Our To tag towards the caller."""
        return self.a.tag

    @property
    def a_dialog(self) -> Dialog | None:
        """The caller's dialog, once answered."""
        return self.a.dialog

    @property
    def state(self) -> str:
        """``routing``, ``ringing``, ``answered``, ``confirmed`` or ``ended``."""
        if self._over:
            return "ended"
        return "answered" if self.a.state == "closing" else self.a.state

    def _event(self, kind: str, leg: str = "", **detail: Any) -> None:
        self._events.announce(kind, self, self.services.clock.seconds(), leg, **self.line(), **detail)

    def line(self) -> dict[str, str]:
        """The outside line the call runs over, as its events name it (``trunk``...): none between phones."""
        return {}

    def line_class(self) -> str:
        """The music-on-hold class of the call's outside line (:mod:`pbx.trunks.moh`); "" for none."""
        return ""

    # -- ringing ---------------------------------------------------------------------

    def ring(self, bindings: list[Binding], ring_timeout: float) -> Deferred[Rung]:
        """Send one INVITE per registered phone of the callee; fires with how ringing ended."""
        offer = self.invite.request.body
        # Keys for the callee's TLS phones; the others get the offer without them.
        self.media.secure("b", "tls", self.callee_srtp)
        try:
            b_offer = self.media.offer_from("a", offer) if offer else b""
        except MediaError as e:
            self.fail(488, str(e)[:80])
            return succeed(Rung(Outcome.FAILED, 488))
        request = self.invite.request
        max_forwards = max(0, (request.max_forwards or 70) - 1)
        display, domain, callee, caller = self.caller_display, self.services.domain, self.callee, self.caller
        caller_uri = self.caller_uri(domain)

        def invite(binding: Binding, address: LocalAddress) -> Request:
            return new_invite(
                target=parse_uri(binding.contact), to=f"<sip:{callee}@{domain}>",
                from_=f"{display}<{caller_uri}>", address=address,
                body=self.media.offer_for("b", b_offer, binding.transport),
                max_forwards=max_forwards, contact_user=caller,
                extra=[("P-Asserted-Identity", f"{display}<{caller_uri}>")],
            )

        self.forks = Forks(self.services, on_provisional=self._provisional, on_answer=self._answer,
                           refusal=self._forks_refusal(), timers=self._timers)
        return self.forks.ring(bindings, invite, ring_timeout)

    def caller_uri(self, domain: str) -> str:
        """The caller's URI the callee's phones are shown (From, P-Asserted-Identity)."""
        return f"sip:{self.caller}@{domain}"

    def _forks_refusal(self) -> Callable[[bytes], bytes] | None:
        """
        In delayed mode, how the forks turn down the offer of a 2xx they do
        not take; None otherwise.  It outlives the call (a late 2xx), so it
        holds the media, not the call (no reference cycle, :meth:`_release`).
        """
        return functools.partial(_refusal_of, self.media) if self.delayed else None

    def ring_more(self, bindings: list[Binding]) -> None:
        """While ringing, ring ``bindings`` too (follow-me's other numbers)."""
        if self.forks is not None:
            self.forks.add(bindings)

    def _provisional(self, fork: Fork, response: Response) -> None:
        body = b""
        if (response.body and self.early_answer is None and "a" in self.media.offers
                and self.media.answers.get("b") is None):
            # 183 with SDP: early media (RFC 3960) from this fork.  To an
            # INVITE without an offer such SDP is no answer (RFC 6337 §3.1):
            # the caller gets the offer in our 2xx.
            self.media.srtp["b"].secure = fork.binding.transport == "tls"
            body = self.media.answer_from("b", response.body)
            self.early_answer = body
        self.a.provisional(183 if body else 180, body)
        if not self._published_ringing:
            self._published_ringing = True
            self._event("ringing", "b")

    def _answer(self, fork: Fork, response: Response) -> Verdict:
        """A phone answered first: answer the caller with what it says."""
        self.media.srtp["b"].secure = fork.binding.transport == "tls"
        if self.delayed:
            try:
                # §13.2.1: the 2xx to an INVITE without an offer carries one.
                body = self.media.offer_from("b", response.body) if response.body else b""
            except MediaError as e:
                self.log.info("the offer of {peer} is unusable: {e}", peer=str(fork.peer), e=e)
                body = b""
            if not body:
                return Verdict.DECLINE
        else:
            try:
                body = self.media.answer_from("b", response.body) if response.body else b""
            except MediaError as e:
                self.log.info("callee's answer unusable: {e}", e=e)
                return Verdict.ABORT
        self.b = fork
        self.answered_at = self.services.clock.seconds()
        self.a.answer(body, self._session_timer_headers())
        assert fork.dialog is not None
        self.services.dialogs.add(self, fork.dialog)
        self._event("answered", "b", records=self.record())
        self._event("bridged")
        return Verdict.ACCEPT

    def _session_timer_headers(self) -> list[tuple[str, str]]:
        """RFC 4028 §9: echo the caller's session interval; it refreshes."""
        if not self.session_expires:
            return []
        extra = [("Session-Expires", f"{self.session_expires};refresher=uac")]
        supported = [v.strip().lower() for v in self.invite.request.headers.get_all("Supported")]
        if "timer" in supported:
            extra.append(("Require", "timer"))
        return extra

    # -- the caller's ACK ------------------------------------------------------------

    def acked(self, ack: Request) -> None:
        """An ACK for our 2xx: the caller's for its INVITE, or either phone's for a re-INVITE."""
        if not self._reinvites.acked(ack):
            self.a.acked(ack)

    def _acked(self, ack: Request) -> None:
        """The caller confirmed our 2xx; in delayed mode its answer goes to the callee in the callee's ACK."""
        if self.delayed and self.b is not None and self.forks is not None:
            try:
                if not ack.body:
                    raise MediaError("no answer")
                answer = self.media.answer_from("a", ack.body)
            except MediaError as e:
                self.log.info("the ACK of {caller} has no usable answer: {e}", caller=self.caller, e=e)
                self._refuse_callee()
                self.hang_up("a", NO_ANSWER_IN_ACK)
                return
            self.forks.ack(self.b, answer)
        if self.session_expires:
            self._timers.start("session", self.session_expires, self._session_expired)

    def _refuse_callee(self) -> None:
        """Delayed mode: the answering callee, not ACKed yet, gets an ACK refusing its offer (a BYE follows)."""
        offer = self.media.offers.get("b")
        if self.b is not None and self.forks is not None:
            self.forks.ack(self.b, refusal(offer, self.media.address) if offer is not None else b"")

    def _no_ack(self) -> None:
        """§13.3.1.4: no ACK in 64*T1 (the leg has sent BYE): end the call."""
        if self.hangup_cause:
            # A hang-up that waited for this ACK: the call ends as the caller's.
            self.hangup_side, self.hangup_cause = "a", "no ACK"
        else:
            self.hang_up("a", "no ACK")

    def _session_expired(self) -> None:
        """RFC 4028 §10: no refresh within the interval: end the session."""
        self.hang_up("a", "session timer expired")

    # -- endings ---------------------------------------------------------------------

    def fail(self, status: int, reason: str | None = None) -> None:
        """Refuse the caller's INVITE (before answer)."""
        if self._over or not self.a.waiting:
            return
        self.disposition = _DISPOSITIONS.get(status, "FAILED")
        self.hangup_side = "b" if status in BUSY else "pbx"
        self.hangup_cause = f"{status} {reason or ''}".strip()
        if self.forks is not None:
            self.forks.cancel()
        self.a.refuse(status, reason)

    def diverted(self, reason: str, application: str) -> None:
        """
        Nobody will answer and the caller goes to an application instead:
        stop ringing and end this call without answering the caller (the
        controller hands the same INVITE transaction to the application).

        :param reason: ``"busy"``, ``"no_answer"``, ``"dnd"`` or ``"unavailable"``.
        :param application: the name of the application the caller goes to.
        """
        if self._over or not self.a.waiting:
            return
        self.diverted_to = application
        self.disposition = "BUSY" if reason in ("busy", "dnd") else "NO ANSWER"
        self.hangup_side = "b" if reason == "busy" else "pbx"
        self.hangup_cause = f"diverted: {reason}"
        if self.forks is not None:
            self.forks.cancel()
        self.a.release()

    def cancelled(self) -> None:
        """The caller sent CANCEL before the call was answered (§9.2)."""
        if self._over or not self.a.waiting:
            return
        self.disposition = "CANCELLED"
        self.hangup_side = "a"
        self.hangup_cause = "CANCEL"
        if self.forks is not None:
            self.forks.cancel()
        self.a.refuse(487)

    def hang_up(self, side: str, cause: str) -> None:
        """End an answered call: BYE whichever side did not hang up (the caller's once it ACKed, §15)."""
        if self._over or self.hangup_cause:
            return
        self.hangup_side = side
        self.hangup_cause = cause
        self.disposition = "ANSWERED"
        if side != "b" or cause != "BYE":
            if self.delayed:
                self._refuse_callee()
            if self.b is not None and self.b.dialog is not None:
                self.services.sip.in_dialog(self.b.dialog, "BYE")
        if side == "a" and cause == "BYE":
            self.a.remote_bye()
        else:
            # The B2BUA passes a hang-up on at once, before the caller's ACK too.
            self.a.bye_now()

    def _end(self) -> None:
        if self._over:
            return
        self._over = True
        self.ended_at = self.services.clock.seconds()
        self._timers.stop_all()
        if self.forks is not None:
            self.forks.stop()
        if self._hold is not None:
            self._hold.stop()
        self._on_end(self)
        self._event("ended", records=self.record(), disposition=self.disposition)
        self._release()

    def _release(self) -> None:
        """
        An ended call lets go of the helpers that call back into it (bound
        methods of the call): with no reference cycle left, the call and
        everything it holds is freed by reference counting when its last
        transaction ends, instead of piling up for the garbage collector,
        whose pauses stall the reactor on a busy pbx.  Its dialogs have left
        the dialog table, so no offer or INFO reaches it any more.
        """
        self._reoffers = None
        self._hold = None

    # -- in-dialog ---------------------------------------------------------------------

    def leg_of(self, dialog: Dialog) -> str:
        """Which leg a dialog belongs to."""
        return "a" if dialog is self.a.dialog else "b"

    def _dialog(self, leg: str) -> Dialog | None:
        """The dialog of the party in ``leg``'s seat; None for an empty seat."""
        if leg == "a":
            return self.a.dialog
        return self.b.dialog if self.b is not None else None

    def _refreshed(self, leg: str) -> None:
        """RFC 4028: an offer from the caller refreshes the session."""
        if self.session_expires and leg == "a":
            self._timers.start("session", self.session_expires, self._session_expired)

    def _refresh_headers(self, leg: str) -> list[tuple[str, str]]:
        """The session timer headers of a 200 to ``leg``'s offer: the caller's only."""
        return self._session_timer_headers() if self.session_expires and leg == "a" else []

    def reoffer(self, leg: str, transaction: ServerTransaction) -> None:
        """
        A re-INVITE or UPDATE (hold, unhold, codec change) from ``leg``:
        offer the change to the other leg, and answer with what it says
        (:class:`~pbx.calls.reoffer.Reoffers`).
        """
        if self._reoffers is None:
            transaction.respond(make_response(transaction.request, 481))  # RFC 3261 §12.2.2: the call is over
            return
        self._reoffers.reoffer(leg, transaction)

    def _extension(self, leg: str) -> str:
        """The extension on ``leg``: the caller's on ``a``, the callee's on ``b``."""
        return self.caller if leg == "a" else self.callee

    def info(self, leg: str, transaction: ServerTransaction) -> None:
        """Pass INFO (e.g. application/dtmf-relay) to the other leg; answer with what it answers."""
        if self._reoffers is None:
            transaction.respond(make_response(transaction.request, 481))  # RFC 3261 §12.2.2: the call is over
            return
        self._reoffers.info(leg, transaction)

    # -- transfer (pbx.calls.transfer) ------------------------------------------------

    def vacate(self, leg: str, record: CallRecord | None = None) -> Dialog | None:
        """
        The party on ``leg`` leaves without ending the call (it transferred
        it): its dialog leaves the call and the relay stops sending to its
        side; the seat waits, empty, for :meth:`seat`.  Hanging up the call
        meanwhile sends BYE to the other party only.

        :param record: the departing party's call record, kept with the call's.
        :returns: the departing party's dialog (the caller sends it BYE).
        """
        if leg == "a":
            dialog = self.a.dialog
            self.a = Party(self.services.sip, None, self._end)
            # RFC 4028: the caller refreshed the session; the new party does not.
            self.session_expires = 0
            self._timers.stop("session")
        else:
            dialog = self.b.dialog if self.b is not None else None
            self.b = None
        if dialog is not None:
            self.services.dialogs.discard(dialog)
        if record is not None:
            self.departed = (*self.departed, record)
        self.seating.vacate(leg)
        if self._hold is not None:  # the leaving party's hold is over; the next one does not inherit it
            self._hold.release(leg)
        self.media.session.hold(leg)
        return dialog

    def seat(self, leg: str, dialog: Dialog, fork: Fork | None = None) -> None:
        """
        Put a confirmed party in ``leg``'s empty seat: the transfer target
        (``fork``, dialled by pbx) or a party from another call.  Its media
        is already pointed at (the transfer answered its SDP on ``leg``).

        :raises ValueError: a callee's seat gets no :class:`Fork`.
        """
        if leg == "a":
            self.a = Party(self.services.sip, dialog, self._end)
        elif fork is None:
            raise ValueError("the callee's seat takes a fork")
        else:
            self.b = fork
        self.delayed = False  # whatever the caller's INVITE was, the new party's offer/answer is done
        self.seating.seat(leg, Occupant.joining(dialog, fork, self.services.clock.seconds()))
        self.services.dialogs.add(self, dialog)
        self.media.session.unhold(leg)

    def picked_up(self, fork: Fork, body: bytes) -> None:
        """
        A phone pbx did not ring answers the ringing call (call pickup,
        :mod:`pbx.calls.pickup`): ``fork`` is its adopted dialog, ``body``
        the answer for the caller; the phones still ringing get CANCEL.
        """
        if self.forks is not None:
            self.forks.cancel()
        assert fork.dialog is not None
        self.b = fork
        self.answered_at = self.services.clock.seconds()
        self.a.answer(body, self._session_timer_headers())
        self.services.dialogs.add(self, fork.dialog)
        self._event("answered", "b", records=self.record(), picked_up_by=fork.binding.aor)
        self._event("bridged")

    def answer_in_dialog(self, transaction: ServerTransaction, response: Response) -> None:
        """Answer an INVITE that joins this call; a 2xx is resent until its ACK reaches the call."""
        self._reinvites.respond(transaction, response)

    def hand_over(self, leg: str, cause: str) -> None:
        """
        The party on ``leg`` moves to another call (an attended transfer
        joined it there): end this call, BYE the other party only.
        """
        if self._over or self.hangup_cause:
            return
        self.hangup_side, self.hangup_cause, self.disposition = "pbx", cause, "ANSWERED"
        if leg == "b":
            self.a.bye_now()
        else:
            if self.b is not None and self.b.dialog is not None:
                self.services.sip.in_dialog(self.b.dialog, "BYE")
            self.a.release()

    def inactive_for(self, now: float) -> float:
        """Seconds since RTP last flowed either way through the relay."""
        return float(self.media.session.inactive_for(now))

    def occupant(self, leg: str) -> Occupant | None:
        """Who sits in ``leg``'s seat, as its record names it; None for an empty seat."""
        if leg == "a":
            return self.seating.occupant(leg, Occupant(self.call_id, self.started, self.answered_at))
        b = self.b
        return None if b is None else self.seating.occupant(leg, Occupant(b.invite.call_id, b.started, self.answered_at))

    def record(self) -> list[CallRecord]:
        """The call detail records: one per seated party (the caller's leg a), then the departed's."""
        end = self.ended_at or self.services.clock.seconds()
        rows = []
        for leg in ("a", "b"):
            if (who := self.occupant(leg)) is None:
                continue
            # On b, the extension whose phone answered (a group's member, a follow-me number).
            callee = self.b.binding.aor or self.callee if leg == "b" and self.b is not None else self.callee
            rows.append(CallRecord(
                call_id=who.call_id, caller=self.caller, callee=callee, start=who.start, end=end,
                answer=who.answer, disposition=self.disposition or "FAILED", hangup_side=self.hangup_side,
                hangup_cause=self.hangup_cause, codecs=self.media.codecs, leg=leg,
                application=self.diverted_to if leg == "a" else "", linked_id=self.seating.linked_id,
                srtp=self.media.srtp[leg].suite,
            ))
        rows.extend(self.departed)
        return rows

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view for the API."""
        now = self.services.clock.seconds()
        return {
            "call_id": self.call_id,
            "caller": self.caller,
            "callee": self.callee,
            "state": self.state,
            "started": self.started,
            "answered": self.answered_at,
            "duration": round(now - self.started, 3),
            "codecs": self.media.codecs,
            "srtp": self.media.encrypted(),
            "media": self.media.session.stats(),
        }
