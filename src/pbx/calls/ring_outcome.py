"""
What follows when an extension's phones stop ringing: nothing when
answered, else its busy or no-answer forward, a diversion to the
application a diverter names, or the failure the caller hears.
"""

from __future__ import annotations

from collections.abc import Callable

from attrs import define

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbx.calls.call import Call
from pbx.calls.forks import Outcome, Rung
from pbx.calls.routing import Routing
from pbx.records import Binding


@define(eq=False)
class RingOutcome:
    """
    Rings a call's callee and settles the outcome.

    :ivar routing: resolves forward targets (DND, loops, records).
    :ivar contacts: an extension's registered phones.
    :ivar ring_timeout: seconds the phones ring before the no-answer rules apply.
    :ivar divert_call: diverts a ringing call to an application; False when none takes it.
    """

    routing: Routing
    contacts: Callable[[str], list[Binding]]
    ring_timeout: float
    divert_call: Callable[[Call, str, str], bool]
    log = Logger()

    def ring(self, call: Call, bindings: list[Binding]) -> None:
        """Ring the callee; the policy takes the outcome (:meth:`rung`)."""
        call.ring(bindings, self.ring_timeout).addCallback(self.rung, call).addErrback(
            self.policy_failed, call)

    def rung(self, rung: Rung, call: Call) -> None:
        """Ringing is over: nothing more when answered; else forward, divert or fail."""
        if rung.outcome in (Outcome.ANSWERED, Outcome.CANCELLED) or call.state == "ended":
            return
        if rung.outcome is Outcome.FAILED:
            call.fail(rung.status)
            return
        if rung.outcome is Outcome.NO_ANSWER:
            status, reason, forward = 480, "no_answer", call.forwards.pop("no_answer", "")
        elif rung.outcome is Outcome.BUSY:
            status, reason, forward = rung.status, "busy", call.forwards.pop("busy", "")
        else:
            status, reason, forward = rung.status, "unavailable", ""
        if not forward:
            if not self.divert_call(call, call.callee, reason):
                call.fail(status, "No Answer" if rung.outcome is Outcome.NO_ANSWER else None)
            return
        forwarded = Deferred.fromCoroutine(self.forward(call, forward, status, reason))
        forwarded.addCallback(lambda bindings: self.ring(call, bindings) if bindings else None)
        forwarded.addErrback(self.policy_failed, call)

    def policy_failed(self, failure: Failure, call: Call) -> None:
        """Settling the call raised: the caller hears 500."""
        self.log.failure("routing the call {call_id} failed", failure, call_id=call.call_id)
        call.fail(500)

    async def forward(self, call: Call, target: str, status: int, reason: str) -> list[Binding] | None:
        """Follow a busy or no-answer forward: the new callee's phones, or None when the call is settled."""
        if not self.routing.may_forward(target, call.seen):
            # A busy/no-answer forward back to an extension already rung.
            number, record, refuse = target, None, 482
        else:
            number, record, refuse = await self.routing.resolve_target(target, call.seen)
        if call.state not in ("routing", "ringing"):
            return None  # the caller cancelled meanwhile
        bindings = self.contacts(number) if not refuse else []
        if not bindings or record is None:
            # The forward target fails too: diverted as itself when it exists.
            if record is None:
                number = call.callee
            else:
                reason = "dnd" if refuse == 486 else "unavailable"
            if not self.divert_call(call, number, reason):
                call.fail(status)
            return None
        self.log.info("call {caller} -> {callee} forwarded to {target}",
                      caller=call.caller, callee=call.callee, target=number)
        call.forwards = {"busy": record.forward_busy, "no_answer": record.forward_no_answer}
        call.callee = number
        return bindings
