"""
One call through the B2BUA: the caller's leg (``a``, where pbx is the UAS)
and the callee's leg (``b``, where pbx is the UAC), each its own dialog.

The callee may have several registered phones: each gets its own INVITE
(parallel forking); the first 2xx wins and the others are cancelled.
A caller's INVITE without SDP makes a subclass of :class:`Call` (see
:mod:`pbx.calls.delayed_offer`): the callee offers, the caller answers.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attrs import Factory, define, field

from twisted.logger import Logger

from pbx.calls.media import CallMedia, MediaError
from pbx.calls.named_timers import NamedTimers
from pbx.records import Binding, CallRecord
from pbx.sip import timers
from pbx.sip.dialog import Dialog, LocalAddress, ack_for_2xx, cancel_for, new_invite
from pbx.sip.message import Request, Response, SIPParseError, make_response
from pbx.sip.transaction import ClientTransaction, Peer, ServerTransaction
from pbx.sip.uri import parse_uri

if TYPE_CHECKING:
    from pbx.calls.controller import CallController

def _ignore(response: Response) -> None:
    """Responses nobody waits for (to CANCEL, PRACK, BYE of a dying call)."""


#: RFC 3261 §16.7 step 6: which final response to pass on when every fork failed.
_PREFERENCE = {486: 0, 600: 0, 603: 1, 480: 2, 408: 3, 487: 4}
#: Final responses that mean the callee is busy (or declined): forward_busy applies.
BUSY = (486, 600, 603)


@define(eq=False)
class Fork:
    """One outgoing INVITE to one registered phone of the callee."""

    binding: Binding
    invite: Request
    peer: Peer
    address: LocalAddress
    transaction: ClientTransaction | None = None
    dialog: Dialog | None = None
    status: int = 0  # highest status seen
    rseq: int = 0
    started: float = 0.0
    #: Fix: CANCEL is sent once per fork (a second one reused the branch of
    #: the first); ``cancel_pending`` holds it until a provisional response.
    cancelled: bool = False
    cancel_pending: bool = False


def cancel_fork(controller: CallController, fork: Fork) -> None:
    """Stop one pending fork: CANCEL it, or mark it to be cancelled at its first provisional response."""
    if fork.status >= 200 or fork.transaction is None or fork.cancelled:
        return
    fork.cancelled = True
    # §9.1: CANCEL only after a provisional response; before it, wait for
    # one (Timer B ends the fork if none comes).
    if fork.status >= 100 or fork.transaction.state == "proceeding":
        send_cancel(controller, fork)
    else:
        fork.cancel_pending = True
    fork.status = fork.status or 487


def send_cancel(controller: CallController, fork: Fork) -> None:
    """§9.1: send the CANCEL of a fork's INVITE."""
    controller.send_request(cancel_for(fork.invite), fork.peer, _ignore)
    if fork.transaction is not None:
        fork.transaction.cancel_sent()


def best_failure(forks: list[Fork]) -> int:
    """§16.7 step 6: the most telling final status of forks that all failed."""
    best = min(forks, key=lambda f: (_PREFERENCE.get(f.status, 5), f.status))
    return best.status


@define(eq=False)
class Call:
    """The state of one call; driven by :class:`CallController`."""

    controller: CallController
    invite: ServerTransaction
    caller: str
    callee: str
    media: CallMedia
    a_address: LocalAddress
    started: float
    caller_display: str = ""
    a_tag: str = field(factory=lambda: secrets.token_hex(6))
    forwards: dict[str, str] = field(factory=dict)
    seen: set[str] = field(factory=set)
    state: str = "routing"  # routing, ringing, answered, confirmed, ended
    forks: list[Fork] = field(factory=list)
    b: Fork | None = None
    a_dialog: Dialog | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    hangup_side: str = ""
    hangup_cause: str = ""
    disposition: str = ""
    _timers: NamedTimers = field(init=False, default=Factory(lambda self: NamedTimers(self.controller.clock), takes_self=True))
    _ok_to_a: Response | None = None
    #: The SDP answer the caller got in a 183 (early media), if any: a
    #: diverted call answers with the same (RFC 3261 §13.2.1).
    early_answer: bytes | None = None
    _pending_reinvite: dict[str, Any] = field(factory=dict)
    #: (Call-ID, CSeq) of the re-INVITE whose 2xx awaits its ACK.
    _reoffer_ok: tuple[str, int] | None = None
    session_expires: int = 0
    on_end: Callable[[Call], None] | None = None
    log = Logger()

    # -- helpers -----------------------------------------------------------

    @property
    def call_id(self) -> str:
        """The caller's Call-ID."""
        return self.invite.request.call_id

    @property
    def clock(self) -> Any:
        """The injected clock."""
        return self.controller.clock

    def _timer(self, name: str, delay: float, f: Callable[[], None]) -> None:
        self._timers.start(name, delay, f)

    def _cancel(self, name: str) -> None:
        self._timers.stop(name)

    def _respond_a(self, status: int, reason: str | None = None, body: bytes = b"",
                   extra: list[tuple[str, str]] | None = None) -> Response:
        request = self.invite.request
        response = make_response(request, status, reason, to_tag=self.a_tag)
        if 100 < status < 300:
            response.headers.add("Contact", self.a_address.contact())
        for name, value in extra or []:
            response.headers.add(name, value)
        if body:
            response.headers.add("Content-Type", "application/sdp")
            response.body = body
        if status < 300 or status >= 300:
            self.invite.respond(response)
        return response

    # -- setup ---------------------------------------------------------------

    def ring(self, bindings: list[Binding], offer: bytes) -> None:
        """Send one INVITE per registered phone of the callee."""
        try:
            b_offer = self.media.offer_from("a", offer) if offer else b""
        except MediaError as e:
            self.fail(488, str(e)[:80])
            return
        request = self.invite.request
        max_forwards = max(0, (request.max_forwards or 70) - 1)
        display = self.caller_display
        domain = self.controller.domain
        for binding in bindings:
            peer = self.controller.peer_for(binding)
            address = self.controller.local_address(peer.transport)
            invite = new_invite(
                target=parse_uri(binding.contact),
                to=f"<sip:{self.callee}@{domain}>",
                from_=f"{display}<sip:{self.caller}@{domain}>",
                address=address,
                body=b_offer,
                max_forwards=max_forwards,
                contact_user=self.caller,
                extra=[("P-Asserted-Identity", f"{display}<sip:{self.caller}@{domain}>")],
            )
            fork = Fork(binding, invite, peer, address, started=self.clock.seconds())
            self.forks.append(fork)
            fork.transaction = self.controller.send_request(invite, peer, functools.partial(self._fork_response, fork))
        self._timer("ring", self.controller.config.calls.ring_timeout, self._ring_timeout)

    def _fork_response(self, fork: Fork, response: Response) -> None:
        try:
            self._handle_fork_response(fork, response)
        except (SIPParseError, MediaError) as e:
            self.log.info("bad response from {peer}: {e}", peer=str(fork.peer), e=e)
            if response.status >= 200 and fork is not self.b:
                fork.status = max(fork.status, 500)
                self._check_all_failed()

    def _handle_fork_response(self, fork: Fork, response: Response) -> None:
        status = response.status
        if status < 200 and fork.cancel_pending:
            # Fix: RFC 3261 §9.1: the CANCEL waited for this provisional
            # response; without it the phone rang on after another answered.
            fork.cancel_pending = False
            self._send_cancel(fork)
            return
        if status < 200:
            if status == 100 or self.state not in ("routing", "ringing"):
                return
            fork.status = max(fork.status, status)
            if response.to.tag and fork.dialog is None:
                fork.dialog = Dialog.as_uac(fork.invite, response, fork.peer, fork.address)
            self._prack(fork, response)
            body = b""
            if (response.body and self.early_answer is None and "a" in self.media.offers
                    and self.media.answers.get("b") is None):
                # 183 with SDP: early media (RFC 3960) from this fork.  To an
                # INVITE without an offer such SDP is no answer (RFC 6337
                # §3.1): the caller gets the offer in our 2xx.
                body = self.media.answer_from("b", response.body)
                self.early_answer = body
            self.state = "ringing"
            self._respond_a(183 if body else 180, body=body)
            return
        if status < 300:
            if fork.dialog is None:
                fork.dialog = Dialog.as_uac(fork.invite, response, fork.peer, fork.address)
            else:
                fork.dialog.remote = response.to
                fork.dialog.update_target(response)
            ack = ack_for_2xx(fork.dialog, fork.invite.cseq.number)
            self.controller.send(ack, fork.peer)
            if (self.b is not None and self.b is not fork) or (self.b is None and self.state == "ended"):
                # A second phone answered in the race, or one answered after
                # the call failed, was cancelled or diverted: hang it up.
                self.controller.send_in_dialog(fork.dialog, "BYE", lambda r: None)
                return
            if self.b is fork:
                return  # a retransmitted 2xx; the ACK above was resent
            self._answered(fork, response)
            return
        fork.status = status
        if fork is self.b:
            return
        self._check_all_failed(response)

    def _prack(self, fork: Fork, response: Response) -> None:
        """RFC 3262 §4: acknowledge a reliable provisional response."""
        if "100rel" not in [v.strip().lower() for v in response.headers.get_all("Require")]:
            return
        rseq = response.headers.get("RSeq")
        if fork.dialog is None or not rseq or not rseq.strip().isdigit():
            return
        if int(rseq) <= fork.rseq:
            return
        fork.rseq = int(rseq)
        cseq = response.cseq
        prack = fork.dialog.request("PRACK")
        prack.headers.add("RAck", f"{fork.rseq} {cseq.number} {cseq.method}")
        self.controller.send_request(prack, fork.peer, lambda r: None)

    def _answered(self, fork: Fork, response: Response) -> None:
        self.b = fork
        self._cancel("ring")
        for other in self.forks:
            if other is not fork:
                self._cancel_fork(other)
        try:
            body = self.media.answer_from("b", response.body) if response.body else b""
        except MediaError as e:
            self.log.info("callee's answer unusable: {e}", e=e)
            if fork.dialog is not None:
                self.controller.send_in_dialog(fork.dialog, "BYE", _ignore)
            self.fail(488, "Not Acceptable Here")
            return
        self._answer_caller(fork, body)

    def _answer_caller(self, fork: Fork, body: bytes) -> None:
        """Send the caller our 2xx (``body``: its SDP) and resend it until the ACK."""
        self.state = "answered"
        self.answered_at = self.clock.seconds()
        extra = self._session_timer_headers()
        self._ok_to_a = self._respond_a(200, body=body, extra=extra)
        self.a_dialog = Dialog.as_uas(self.invite.request, self.invite.peer, self.a_address, self.a_tag)
        self.controller.dialog_started(self, "a", self.a_dialog)
        assert fork.dialog is not None
        self.controller.dialog_started(self, "b", fork.dialog)
        if not self.invite.peer.reliable:
            self._timers.repeat("ok", self._retransmit_ok, timers.T1, timers.T2)
        self._timer("ack", timers.TIMER_H, self._no_ack)

    def _session_timer_headers(self) -> list[tuple[str, str]]:
        """RFC 4028 §9: echo the caller's session interval; it refreshes."""
        if not self.session_expires:
            return []
        extra = [("Session-Expires", f"{self.session_expires};refresher=uac")]
        supported = [v.strip().lower() for v in self.invite.request.headers.get_all("Supported")]
        if "timer" in supported:
            extra.append(("Require", "timer"))
        return extra

    def _retransmit_ok(self) -> None:
        """RFC 3261 §13.3.1.4: resend the 2xx until the ACK comes."""
        if self.state != "answered" or self._ok_to_a is None:
            self._cancel("ok")
            return
        self.controller.send(self._ok_to_a, self.invite.peer)

    def _no_ack(self) -> None:
        """§13.3.1.4: no ACK in 64*T1: the caller's dialog is gone; end the call."""
        if self.state == "answered":
            self.hang_up("a", "no ACK")

    def acked(self, request: Request) -> None:
        """An ACK for our 2xx: the caller's for its INVITE, or either phone's for a re-INVITE."""
        if self._reoffer_ok == (request.call_id, request.cseq.number):
            self._reoffer_acked()
            return
        if self.state != "answered":
            return
        self._cancel("ok")
        self._cancel("ack")
        self.state = "confirmed"
        if self.session_expires:
            self._timer("session", self.session_expires, self._session_expired)

    def _session_expired(self) -> None:
        """RFC 4028 §10: no refresh within the interval: end the session."""
        self.hang_up("a", "session timer expired")

    def _ring_timeout(self) -> None:
        if self.state in ("routing", "ringing"):
            for fork in self.forks:
                self._cancel_fork(fork)
            self.controller.no_answer(self)

    def _cancel_fork(self, fork: Fork) -> None:
        cancel_fork(self.controller, fork)

    def _send_cancel(self, fork: Fork) -> None:
        send_cancel(self.controller, fork)

    def _check_all_failed(self, response: Response | None = None) -> None:
        if self.state not in ("routing", "ringing"):
            return
        if any(f.status < 300 for f in self.forks):
            return
        self.controller.forks_failed(self, best_failure(self.forks))

    # -- endings -------------------------------------------------------------

    def fail(self, status: int, reason: str | None = None) -> None:
        """Refuse the caller's INVITE (before answer)."""
        if self.state in ("answered", "confirmed", "ended"):
            return
        for fork in self.forks:
            self._cancel_fork(fork)
        self._respond_a(status, reason)
        self.disposition = {486: "BUSY", 600: "BUSY", 603: "BUSY", 480: "NO ANSWER", 408: "NO ANSWER",
                            487: "CANCELLED"}.get(status, "FAILED")
        self.hangup_side = "b" if status in (486, 600, 603) else "pbx"
        self.hangup_cause = f"{status} {reason or ''}".strip()
        self._end()

    def diverted(self, reason: str) -> None:
        """
        Nobody will answer and the caller goes to an application instead:
        stop ringing and end this call without answering the caller (the
        controller hands the same INVITE transaction to the application).

        :param reason: ``"busy"``, ``"no_answer"``, ``"dnd"`` or ``"unavailable"``.
        """
        if self.state not in ("routing", "ringing"):
            return
        for fork in self.forks:
            self._cancel_fork(fork)
        self.disposition = "BUSY" if reason in ("busy", "dnd") else "NO ANSWER"
        self.hangup_side = "b" if reason == "busy" else "pbx"
        self.hangup_cause = f"diverted: {reason}"
        self._end()

    def cancelled(self) -> None:
        """The caller sent CANCEL before the call was answered (§9.2)."""
        if self.state not in ("routing", "ringing"):
            return
        for fork in self.forks:
            self._cancel_fork(fork)
        self._respond_a(487)
        self.disposition = "CANCELLED"
        self.hangup_side = "a"
        self.hangup_cause = "CANCEL"
        self._end()

    def hang_up(self, side: str, cause: str) -> None:
        """End an answered call: BYE whichever side did not hang up."""
        if self.state == "ended":
            return
        self.hangup_side = side
        self.hangup_cause = cause
        self.disposition = "ANSWERED"
        if side != "a" or cause != "BYE":
            if self.a_dialog is not None:
                self.controller.send_in_dialog(self.a_dialog, "BYE", lambda r: None)
        if side != "b" or cause != "BYE":
            if self.b is not None and self.b.dialog is not None:
                self.controller.send_in_dialog(self.b.dialog, "BYE", lambda r: None)
        self._end()

    def _end(self) -> None:
        if self.state == "ended":
            return
        self.state = "ended"
        self.ended_at = self.clock.seconds()
        self._timers.stop_all()
        if self.on_end is not None:
            self.on_end(self)

    # -- in-dialog ---------------------------------------------------------

    def leg_of(self, dialog: Dialog) -> str:
        """Which leg a dialog belongs to."""
        return "a" if dialog is self.a_dialog else "b"

    def reoffer(self, leg: str, transaction: ServerTransaction) -> None:
        """
        A re-INVITE or UPDATE (hold, unhold, codec change) from ``leg``:
        offer the change to the other leg, and answer with what it says.
        """
        request = transaction.request
        if self._pending_reinvite:
            # RFC 3261 §14.2: one offer at a time.
            transaction.respond(make_response(request, 491))
            return
        other = "b" if leg == "a" else "a"
        other_dialog = self.b.dialog if other == "b" and self.b else self.a_dialog
        if other_dialog is None:
            transaction.respond(make_response(request, 500))
            return
        if self.session_expires and leg == "a":
            self._timer("session", self.session_expires, self._session_expired)
        try:
            body = self.media.offer_from(leg, request.body) if request.body else b""
        except MediaError:
            transaction.respond(make_response(request, 488))
            return
        self._pending_reinvite = {"leg": leg, "transaction": transaction}
        method = request.method
        outgoing = other_dialog.request(method, body=body, content_type="application/sdp" if body else None)
        peer = other_dialog.peer
        invite_cseq = outgoing.cseq.number
        done = False

        def answered(response: Response) -> None:
            nonlocal done
            if response.status < 200:
                return
            if done:
                # Fix: a retransmitted 2xx (our ACK was lost) is ACKed again,
                # not answered a second time (§13.2.2.4).
                if method == "INVITE" and response.status < 300:
                    self.controller.send(ack_for_2xx(other_dialog, invite_cseq), peer)
                return
            done = True
            self._pending_reinvite = {}
            if response.status >= 300:
                transaction.respond(make_response(request, response.status, response.reason))
                return
            if method == "INVITE":
                self.controller.send(ack_for_2xx(other_dialog, invite_cseq), peer)
            try:
                ours = self.media.answer_from(other, response.body) if response.body else b""
            except MediaError:
                transaction.respond(make_response(request, 488))
                return
            ok = make_response(request, 200)
            ok.headers.add("Contact", (self.a_dialog or other_dialog).address.contact())
            if self.session_expires and leg == "a":
                for name, value in self._session_timer_headers():
                    ok.headers.add(name, value)
            if ours:
                ok.headers.add("Content-Type", "application/sdp")
                ok.body = ours
            transaction.respond(ok)
            if method == "INVITE" and not transaction.peer.reliable:
                # Fix: §13.3.1.4 holds for a re-INVITE too: resend its 2xx
                # until the ACK (a lost 200 left the phone waiting forever).
                self._reoffer_ok = (request.call_id, request.cseq.number)
                asker = transaction.peer
                self._timers.repeat("reoffer-ok", lambda: self.controller.send(ok, asker), timers.T1, timers.T2)
                self._timer("reoffer-ack", timers.TIMER_H, self._reoffer_acked)

        self.controller.send_request(outgoing, peer, answered)

    def _reoffer_acked(self) -> None:
        """The re-INVITE's 2xx was ACKed (or 64*T1 passed): stop resending it."""
        self._reoffer_ok = None
        self._cancel("reoffer-ok")
        self._cancel("reoffer-ack")

    def release_media(self) -> None:
        """Close the relay session (its ports go back to the allocator)."""
        self.controller.relay.close(self.media.session)

    def inactive_for(self, now: float) -> float:
        """Seconds since RTP last flowed either way through the relay."""
        return float(self.media.session.inactive_for(now))

    def record(self) -> list[CallRecord]:
        """The call detail records: one for the call (leg a), one per answered callee leg."""
        end = self.ended_at or self.clock.seconds()
        rows = [CallRecord(
            call_id=self.call_id, caller=self.caller, callee=self.callee, start=self.started,
            end=end, answer=self.answered_at, disposition=self.disposition or "FAILED",
            hangup_side=self.hangup_side, hangup_cause=self.hangup_cause, codecs=self.media.codecs, leg="a",
        )]
        if self.b is not None:
            rows.append(CallRecord(
                call_id=self.b.invite.call_id, caller=self.caller, callee=self.callee, start=self.b.started,
                end=end, answer=self.answered_at, disposition=self.disposition or "FAILED",
                hangup_side=self.hangup_side, hangup_cause=self.hangup_cause, codecs=self.media.codecs, leg="b",
            ))
        return rows

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view for the API."""
        now = self.clock.seconds()
        return {
            "call_id": self.call_id,
            "caller": self.caller,
            "callee": self.callee,
            "state": self.state,
            "started": self.started,
            "answered": self.answered_at,
            "duration": round(now - self.started, 3),
            "codecs": self.media.codecs,
            "media": self.media.session.stats() if hasattr(self.media.session, "stats") else {},
        }
