"""
Calls from phones out through trunks: the policy of one call.

The attempts of the route (:func:`pbx.trunks.routes.plan`) are tried in
turn: a trunk that is down (OPTIONS) or full (``max_calls``) is skipped;
the outbound hooks decorate or refuse each INVITE; a trunk that answers
408 or 5xx, or does not answer in its ``setup_timeout``, passes the call to
the next (RFC 3261 §21: those say the server failed, not the callee), as
does one that refuses the trunk's credentials (401/407 again); any other
failure (404, 486, 603 ...) reaches the caller.  With every trunk tried,
the caller hears 503 (a 401/407 of a carrier is never passed on: the
phone would take it for pbx's own challenge).  A trunk counts the
call from its INVITE to the end of the call, or of the attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbx.calls.call import Call
from pbx.calls.dialplan import ToTrunks
from pbx.calls.events import CallEvents
from pbx.calls.forks import Outcome, Rung
from pbx.calls.media import CallMedia
from pbx.calls.signalling import LegServices
from pbx.media.playout import HoldMusic
from pbx.records import ExtensionRecord
from pbx.sip.dialog import LocalAddress
from pbx.sip.ids import new_tag
from pbx.sip.message import make_response
from pbx.sip.transaction import ServerTransaction
from pbx.trunks.call import TrunkCall
from pbx.trunks.hooks import OutboundContext
from pbx.trunks.registry import Trunks
from pbx.trunks.routes import Attempt, fails_over, plan

__all__ = ["TrunkDialler"]


@define(eq=False)
class TrunkDialler:
    """
    Places one caller's call out through a route's trunks.

    :ivar open_session: opens a relay session for the call's media.
    :ivar media: the call's SDP state on that session.
    :ivar track: the controller keeps the call (dialogs, API, shutdown).
    :ivar ended: the controller forgets an ended call and closes its media.
    """

    trunks: Trunks
    services: LegServices
    open_session: Callable[[], Any]
    media: Callable[[Any], CallMedia]
    local_address: Callable[[str], LocalAddress]
    events: CallEvents
    track: Callable[[Any], None]
    ended: Callable[[Any], None]
    ring_timeout: float
    #: An emergency call: a trunk's ``max_calls`` does not hold it back (Kari's Law).
    emergency: bool = False
    #: Plays a refused call its announcement as early media, then refuses it (False: not possible).
    announce_refusal: Callable[[TrunkCall, int, str, str], bool] | None = None
    #: Music on hold: pbx answers holds itself (:mod:`pbx.calls.hold`); None passes them on to the carrier.
    music: HoldMusic | None = None
    log = Logger()

    async def call_out(self, transaction: ServerTransaction, record: ExtensionRecord, display: str,
                       dialled: str, action: ToTrunks, session_expires: int) -> None:
        """``record``'s extension dialled ``dialled``, which ``action`` sends out."""
        request = transaction.request
        attempts = plan(action, dialled, self.trunks.trunks, self.trunks.rates,
                        extension_caller_id=record.caller_id)
        self.emergency = action.emergency
        try:
            session = self.open_session()
        except Exception as e:
            self.log.warn("no media ports for a call: {e}", e=e)
            transaction.respond(make_response(request, 503, "No Media Ports", to_tag=new_tag()))
            return
        call = TrunkCall(
            self.services, transaction, caller=record.number, callee=attempts[0].sent, caller_display=display,
            media=self.media(session), address=self.local_address(transaction.peer.transport),
            session_expires=session_expires, events=self.events, on_end=self._ended, dialled=dialled,
            route=action, music=self.music, caller_srtp=record.srtp,
        )
        self.track(call)
        self.log.info("call {caller} -> {dialled} out through {trunks}", caller=record.number, dialled=dialled,
                      trunks=",".join(a.trunk.name for a in attempts))
        await self._next(call, attempts)

    async def _next(self, call: TrunkCall, attempts: list[Attempt]) -> None:
        """Ring the next trunk that is up and has room; with none left, refuse the caller."""
        while attempts and call.state in ("routing", "ringing"):
            attempt = attempts.pop(0)
            trunk = attempt.trunk
            if not trunk.up or (trunk.full and not self.emergency):
                self.log.info("call {caller} -> {dialled}: trunk {trunk} skipped ({why})", caller=call.caller,
                              dialled=call.dialled, trunk=trunk.name, why="down" if not trunk.up else "full")
                continue
            context = OutboundContext(call.caller, True, trunk.config, attempt.dialled, attempt.sent,
                                      attempt.caller_id, call.call_id)
            change = await self.trunks.hooks.decorate(context)
            if call.state not in ("routing", "ringing"):
                return  # the caller cancelled meanwhile
            if change.refuse:
                if not (change.announcement and self.announce_refusal is not None
                        and self.announce_refusal(call, change.refuse, change.reason, change.announcement)):
                    call.fail(change.refuse, change.reason or None)
                return
            trunk.take()
            ringing = call.ring_trunk(attempt, change, self.ring_timeout)
            ringing.addCallback(self._rung, call, attempts).addErrback(self._failed, call)
            return
        if call.state in ("routing", "ringing"):
            status = call.last_status
            if not status or fails_over(status):
                call.fail(503, "No Trunk Available")
            else:
                call.fail(status)

    def _rung(self, rung: Rung, call: TrunkCall, attempts: list[Attempt]) -> None:
        """One trunk's ringing is over: done if answered, the next trunk on 408/5xx, else the caller hears why."""
        if rung.outcome is not Outcome.ANSWERED and call.attempt is not None:
            call.attempt.trunk.release()
        if rung.outcome in (Outcome.ANSWERED, Outcome.CANCELLED) or call.state == "ended":
            return
        if rung.outcome is Outcome.NO_ANSWER:
            call.fail(480, "No Answer")
            return
        if rung.outcome is Outcome.FAILED:
            call.fail(rung.status)  # the carrier's answer was unusable (488)
            return
        status = call.last_status
        if fails_over(status) and attempts:
            self.log.info("call {caller} -> {dialled}: trunk {trunk} answered {status}, trying the next",
                          caller=call.caller, dialled=call.dialled, status=status,
                          trunk=call.attempt.trunk.name if call.attempt is not None else "")
            Deferred.fromCoroutine(self._next(call, attempts)).addErrback(self._failed, call)
            return
        if fails_over(status):
            call.fail(503, "No Trunk Available")  # §16.7 step 6: not the carrier's 5xx itself
        else:
            call.fail(status)

    def _failed(self, failure: Failure, call: TrunkCall) -> None:
        self.log.failure("routing the call {call_id} out failed", failure, call_id=call.call_id)
        call.fail(500)

    def _ended(self, call: Call) -> None:
        """The call is over: the trunk has room again if it was answered."""
        if isinstance(call, TrunkCall) and call.b is not None and call.attempt is not None:
            call.attempt.trunk.release()
        self.ended(call)
