"""
The callee's legs of a call: pbx is the UAC of one INVITE per registered
phone of the callee (parallel forking, RFC 3261 §16.7 as a B2BUA does it).

The first 2xx that the call accepts wins; the other phones are cancelled
(§9.1: a CANCEL waits for a provisional response), and a 2xx that comes
too late is ACKed and hung up (§13.2.2.4).  Ringing ends with one
:class:`Rung` outcome: answered, busy, no answer, unavailable, cancelled or
failed.  What follows is the caller's policy, not the forks'.

In *delayed* mode (the caller's INVITE had no offer, so neither have ours)
the winner's 2xx carries the offer and its ACK must carry the caller's
answer: it is sent later with :meth:`Forks.ack`.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from typing import Any, Protocol

from attrs import frozen

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.calls.machine import IGNORED, build
from pbx.calls.media import MediaError
from pbx.calls.signalling import LegServices, ignore
from pbx.records import Binding
from pbx.sip.dialog import Dialog, LocalAddress, ack_for_2xx, cancel_for
from pbx.sip.message import Request, Response, SIPParseError
from pbx.sip.named_timers import NamedTimers
from pbx.sip.transaction import ClientTransaction, Peer

#: §16.7 step 6: which final response to pass on when every fork failed.
_PREFERENCE = {486: 0, 600: 0, 603: 1, 480: 2, 408: 3, 487: 4}
#: Final responses that mean the callee is busy (or declined).
BUSY = (486, 600, 603)


class Outcome(enum.Enum):
    """How ringing ended."""

    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    UNAVAILABLE = "unavailable"
    CANCELLED = "cancelled"
    FAILED = "failed"


@frozen
class Rung:
    """
    The outcome of ringing.

    :ivar status: the final status behind it (the best of the phones'
        failures, §16.7; 480 for no answer; 200 when answered).
    :ivar fork: the phone that answered, if one did.
    """

    outcome: Outcome
    status: int
    fork: Fork | None = None


class Verdict(enum.Enum):
    """What the call says of a 2xx: take it, turn this phone down, or give the call up."""

    ACCEPT = "accept"
    DECLINE = "decline"
    ABORT = "abort"


def _no_provisional(fork: Fork, response: Response) -> None:
    """A provisional response after the call ended: nobody hears of it."""


def _decline(fork: Fork, response: Response) -> Verdict:
    """A 2xx after the call ended is turned down."""
    return Verdict.DECLINE


def best_failure(forks: list[Fork]) -> int:
    """
    §16.7 step 6: the most telling final status of forks that all failed.

    A 503 is not passed on (§16.7 step 6: it would say pbx itself is out of
    service); it comes from a phone that could not be reached, such as one
    whose connection is gone, and the caller hears 480 as for a phone that
    is not registered.
    """
    best = min(forks, key=lambda f: (_PREFERENCE.get(f.status, 5), f.status))
    return 480 if best.status == 503 else best.status


class _ForkInputs(Protocol):
    """What happens to one fork."""

    def provisional(self) -> None:
        """A 1xx came."""

    def final(self) -> None:
        """A final response came."""

    def cancel(self) -> None:
        """Stop this phone ringing."""


#: One fork, whole: (from, input, to, actions).  The usual path first.
FORK_TABLE = [
    (["calling"], "provisional", "proceeding", []),
    (["proceeding"], "provisional", "proceeding", []),
    (["calling", "proceeding"], "final", "completed", ["_finish"]),
    (["proceeding"], "cancel", "cancelling", ["_mark_cancelled", "_send_cancel"]),
    (["calling"], "cancel", "cancel-pending", ["_mark_cancelled"]),
    # §9.1: a CANCEL waits for a provisional response.
    (["cancel-pending"], "provisional", "cancelling", ["_send_cancel"]),
    (["cancel-pending"], "cancel", "cancel-pending", []),
    (["cancelling"], "provisional", "cancelling", []),
    (["cancelling"], "cancel", "cancelling", []),
    (["cancel-pending", "cancelling"], "final", "completed", ["_finish"]),
    (["completed"], "provisional", "completed", []),
    (["completed"], "final", "completed", []),
    (["completed"], "cancel", "completed", []),
]


class Fork:
    """
    One INVITE to one registered phone; its CANCEL rules (§9.1) in :data:`FORK_TABLE`.

    :ivar state: ``calling``, ``proceeding``, ``cancel-pending``,
        ``cancelling`` or ``completed``.
    :ivar status: the highest status seen (487 once cancelled without one).
    """

    def __init__(self, binding: Binding, invite: Request, peer: Peer, address: LocalAddress,
                 started: float, sip: Any) -> None:
        self.binding = binding
        self.invite = invite
        self.peer = peer
        self.address = address
        self.started = started
        self.transaction: ClientTransaction | None = None
        self.dialog: Dialog | None = None
        self.status = 0
        self.rseq = 0
        self.ack: Request | None = None
        self.state = "calling"
        self._sip = sip
        self._inputs = _FORK_MACHINE(self)

    def provisional(self) -> None:
        """A 1xx came."""
        self._inputs.provisional()

    def final(self) -> None:
        """A final response came."""
        self._inputs.final()

    def cancel(self) -> None:
        """Stop this phone ringing: CANCEL now, or at its first provisional response."""
        self._inputs.cancel()

    def _finish(self) -> None:
        self._inputs = IGNORED  # a completed fork ignores every input (FORK_TABLE)

    def _mark_cancelled(self) -> None:
        self.status = self.status or 487

    def _send_cancel(self) -> None:
        self._sip.request(cancel_for(self.invite), self.peer, ignore)
        if self.transaction is not None:
            self.transaction.cancel_sent()

    @property
    def cancelled(self) -> bool:
        """Whether a CANCEL went or waits."""
        return self.state in ("cancel-pending", "cancelling")


_FORK_MACHINE = build(_ForkInputs, Fork, ["calling", "proceeding", "cancel-pending", "cancelling", "completed"],
                      FORK_TABLE)


class _GroupInputs(Protocol):
    """What happens to the group of forks."""

    def accept(self, fork: Fork) -> None:
        """The call took ``fork``'s 2xx."""

    def give_up(self, outcome: Outcome, status: int) -> None:
        """Stop ringing with ``outcome``."""

    def failed(self, outcome: Outcome, status: int) -> None:
        """Every phone gave a final failure."""


#: The group, whole: (from, input, to, actions).
FORKS_TABLE = [
    (["ringing"], "accept", "answered", ["_take"]),
    (["ringing"], "give_up", "over", ["_cancel_all", "_decide"]),
    (["ringing"], "failed", "over", ["_decide"]),
    (["answered"], "give_up", "answered", []),
    (["answered"], "accept", "answered", []),
    (["answered"], "failed", "answered", []),
    (["over"], "give_up", "over", ["_cancel_all"]),
    (["over"], "accept", "over", []),
    (["over"], "failed", "over", []),
]


class Forks:
    """
    Ring every phone of a callee at once.

    :param services: SIP sender, clock, dialog table.
    :param on_provisional: ``(fork, response)`` for each 18x while ringing.
    :param on_answer: ``(fork, response) -> Verdict`` for the first usable 2xx.
    :param refusal: in delayed mode, makes the body of the ACK that turns
        down a 2xx's offer (RFC 3264 §6: every stream refused); None in
        the ordinary mode, where every 2xx is ACKed at once, without a body.
    :param contact_user: the user part of our Contact in the dialogs formed.
    :param timers: the call's timers, where the group keeps ``ring``.
    :param on_challenge: ``(fork, 401/407 response) -> request or None``:
        the INVITE again with credentials (RFC 3261 §22.2), sent in place of
        the fork's; None (or no callback) takes the challenge as a failure.
    :ivar state: ``ringing``, ``answered`` or ``over`` (:data:`FORKS_TABLE`).
    """

    log = Logger()

    def __init__(
        self,
        services: LegServices,
        *,
        on_provisional: Callable[[Fork, Response], None],
        on_answer: Callable[[Fork, Response], Verdict],
        refusal: Callable[[bytes], bytes] | None = None,
        contact_user: str = "pbx",
        timers: NamedTimers | None = None,
        on_challenge: Callable[[Fork, Response], Request | None] | None = None,
    ) -> None:
        self.forks: list[Fork] = []
        self.winner: Fork | None = None
        self.outcome: Deferred[Rung] = Deferred()
        self.state = "ringing"
        self._services = services
        self._on_provisional = on_provisional
        self._on_answer = on_answer
        self._refusal = refusal
        self._contact_user = contact_user
        self._timers = NamedTimers(services.clock) if timers is None else timers
        self._make_invite: Callable[[Binding, LocalAddress], Request] | None = None
        self._on_challenge = on_challenge
        self._inputs = _FORKS_MACHINE(self)

    @property
    def ringing(self) -> bool:
        """Whether no outcome is decided yet."""
        return self.state == "ringing"

    def _take(self, fork: Fork) -> None:
        self.winner = fork
        self._timers.stop("ring")
        for other in self.forks:
            if other is not fork:
                other.cancel()
        self.outcome.callback(Rung(Outcome.ANSWERED, 200, fork))
        self._settle()

    def _cancel_all(self, *_: object) -> None:
        self._timers.stop("ring")
        for fork in self.forks:
            fork.cancel()

    def _decide(self, outcome: Outcome, status: int) -> None:
        self._timers.stop("ring")
        self.outcome.callback(Rung(outcome, status))
        self._settle()

    # -- ringing ---------------------------------------------------------------------

    def ring(self, bindings: list[Binding], make_invite: Callable[[Binding, LocalAddress], Request],
             timeout: float) -> Deferred[Rung]:
        """
        Send one INVITE (made by ``make_invite(binding, our address)``) to
        each phone; after ``timeout`` seconds unanswered, cancel them all.

        :returns: :attr:`outcome`.
        """
        self._make_invite = make_invite
        self._start(bindings)
        self._timers.start("ring", timeout, lambda: self._inputs.give_up(Outcome.NO_ANSWER, 480))
        return self.outcome

    def add(self, bindings: list[Binding]) -> None:
        """While ringing, ring ``bindings`` too (follow-me), with the INVITEs :meth:`ring` makes."""
        if self.ringing and self._make_invite is not None:
            self._start(bindings)

    def _start(self, bindings: list[Binding]) -> None:
        services = self._services
        assert self._make_invite is not None
        started = []
        for binding in bindings:
            peer = services.location.peer_for(binding)
            address = services.location.local_address(peer.transport)
            invite = self._make_invite(binding, address)
            started.append(Fork(binding, invite, peer, address, services.clock.seconds(), services.sip))
        self.forks.extend(started)
        for fork in started:
            fork.transaction = services.sip.request(fork.invite, fork.peer, functools.partial(self._response, fork))

    def cancel(self, outcome: Outcome = Outcome.CANCELLED, status: int = 487) -> None:
        """Stop every phone that still rings; the outcome, if none yet, is ``outcome``."""
        self._inputs.give_up(outcome, status)

    @property
    def call_id(self) -> str:
        """The Call-ID of the first INVITE."""
        return self.forks[0].invite.call_id if self.forks else ""

    # -- responses -----------------------------------------------------------------

    def _response(self, fork: Fork, response: Response) -> None:
        try:
            self._handle(fork, response)
        except (SIPParseError, MediaError) as e:
            self.log.info("bad response from {peer}: {e}", peer=str(fork.peer), e=e)
            if response.status >= 200 and fork is not self.winner:
                fork.status = max(fork.status, 500)
                self._check_all_failed()

    def _handle(self, fork: Fork, response: Response) -> None:
        status = response.status
        if status < 200:
            pending = fork.state == "cancel-pending"
            if fork.state != "proceeding":  # a further 1xx changes nothing there
                fork.provisional()
            if pending or status == 100 or not self.ringing:
                return
            fork.status = max(fork.status, status)
            if response.to.tag and fork.dialog is None:
                fork.dialog = self._dialog(fork, response)
            self._prack(fork, response)
            self._on_provisional(fork, response)
            return
        if status in (401, 407) and self._retried(fork, response):
            return
        fork.final()
        if status >= 300:
            fork.status = status
            if fork is not self.winner:
                self._check_all_failed()
            return
        if fork.dialog is None:
            fork.dialog = self._dialog(fork, response)
        else:
            fork.dialog.remote = response.to
            fork.dialog.update_target(response)
        if self._refusal is None:
            # §13.2.2.4: every 2xx is ACKed, a retransmitted one again.
            self._services.sip.send(ack_for_2xx(fork.dialog, fork.invite.cseq.number), fork.peer)
        elif fork.ack is not None:
            self._services.sip.send(fork.ack, fork.peer)
            return
        if fork is self.winner:
            # A retransmission: ACKed above, or (delayed mode) the ACK waits
            # for the caller's answer (§13.2.2.4).
            return
        if self.winner is not None or not self.ringing:
            # A second phone answered in the race, or one answered after the
            # call failed, was cancelled or diverted: hang it up.
            self.turn_down(fork, response.body)
            return
        verdict = self._on_answer(fork, response)
        if verdict is Verdict.ACCEPT:
            self._inputs.accept(fork)
        elif verdict is Verdict.DECLINE:
            self.turn_down(fork, response.body)
            fork.status = 488
            self._check_all_failed()
        else:
            self.turn_down(fork, response.body)
            self._inputs.give_up(Outcome.FAILED, 488)

    def _retried(self, fork: Fork, response: Response) -> bool:
        """
        §22.2: a challenged INVITE goes again with credentials, as a new fork
        in the old one's place (same binding, a new transaction); the old
        transaction ACKs the challenge itself (§17.1.1.3).
        """
        if self._on_challenge is None or not self.ringing or fork.cancelled or fork not in self.forks:
            return False
        retry = self._on_challenge(fork, response)
        if retry is None:
            return False
        fork.final()
        again = Fork(fork.binding, retry, fork.peer, fork.address, fork.started, self._services.sip)
        self.forks[self.forks.index(fork)] = again
        again.transaction = self._services.sip.request(retry, again.peer, functools.partial(self._response, again))
        return True

    def _dialog(self, fork: Fork, response: Response) -> Dialog:
        dialog = Dialog.as_uac(fork.invite, response, fork.peer, fork.address)
        dialog.contact_user = self._contact_user
        return dialog

    def _prack(self, fork: Fork, response: Response) -> None:
        """RFC 3262 §4: acknowledge a reliable provisional response."""
        if "100rel" not in [v.strip().lower() for v in response.headers.get_all("Require")]:
            return
        rseq = response.headers.get("RSeq")
        if fork.dialog is None or not rseq or not rseq.strip().isdigit() or int(rseq) <= fork.rseq:
            return
        fork.rseq = int(rseq)
        cseq = response.cseq
        prack = fork.dialog.request("PRACK")
        prack.headers.add("RAck", f"{fork.rseq} {cseq.number} {cseq.method}")
        self._services.sip.request(prack, fork.peer, ignore)

    def _check_all_failed(self) -> None:
        if not self.ringing or any(f.status < 300 for f in self.forks):
            return
        status = best_failure(self.forks)
        self._inputs.failed(Outcome.BUSY if status in BUSY else Outcome.UNAVAILABLE, status)

    # -- after the answer ------------------------------------------------------------

    def ack(self, fork: Fork, body: bytes = b"") -> None:
        """Delayed mode: ACK ``fork``'s 2xx with ``body`` (the answer), once (§13.2.2.4)."""
        if fork.ack is not None or fork.dialog is None:
            return
        fork.ack = ack_for_2xx(fork.dialog, fork.invite.cseq.number, body)
        self._services.sip.send(fork.ack, fork.peer)

    def turn_down(self, fork: Fork, offer: bytes = b"") -> None:
        """Hang up a 2xx we do not take; in delayed mode ACK it first, refusing its ``offer``."""
        if self._refusal is not None:
            self.ack(fork, self._refusal(offer) if offer else b"")
        assert fork.dialog is not None
        self._services.sip.in_dialog(fork.dialog, "BYE")

    def stop(self) -> None:
        """
        The call ended: stop the ring timer; a late response is still ACKed
        and hung up, nothing more (and the call's callbacks are let go of).
        """
        self._timers.stop("ring")
        self._on_provisional = _no_provisional
        self._on_answer = _decline

    def _settle(self) -> None:
        """
        Ringing is decided: let go of what refers back to the call or to
        the group itself.  The machine has nothing left to do
        (:data:`FORKS_TABLE`: ``answered`` ignores every input, ``over`` at
        most cancels again forks that were cancelled or have failed), and
        no fork is added, retried or offered to the call (:meth:`_handle`
        asks it only while ringing).  A finished call's group is then freed
        by reference counting, not left in cycles for the garbage collector,
        whose pauses stall the reactor.
        """
        self._inputs = IGNORED
        self._make_invite = self._on_challenge = None
        self._on_provisional = _no_provisional
        self._on_answer = _decline


_FORKS_MACHINE = build(_GroupInputs, Forks, ["ringing", "answered", "over"], FORKS_TABLE)
