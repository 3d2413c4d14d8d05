"""
The 2xx pbx sends to a re-INVITE, resent until its ACK (RFC 3261
§13.3.1.4 holds for a re-INVITE as for the first INVITE): one helper for
every kind of call.
"""

from __future__ import annotations

from attrs import define, field

from pbx.calls.signalling import SIPSender
from pbx.sip import timers
from pbx.sip.message import Request, Response
from pbx.sip.named_timers import NamedTimers
from pbx.sip.transaction import ServerTransaction


@define(eq=False)
class ReinviteAnswers:
    """Answers in-dialog offers; resends the 2xx of a re-INVITE over UDP until the ACK or Timer H."""

    sip: SIPSender
    timers: NamedTimers
    _awaiting: tuple[str, int] | None = field(default=None)

    def respond(self, transaction: ServerTransaction, response: Response) -> None:
        """Send ``response``; a 2xx to a re-INVITE over an unreliable transport is resent until its ACK."""
        transaction.respond(response)
        request = transaction.request
        if request.method != "INVITE" or response.status >= 300 or transaction.peer.reliable:
            return
        self._awaiting = (request.call_id, request.cseq.number)
        peer, sip = transaction.peer, self.sip
        self.timers.repeat("reinvite-ok", lambda: sip.send(response, peer), timers.T1, timers.T2)
        self.timers.start("reinvite-ack", timers.TIMER_H, self._done)

    def acked(self, ack: Request) -> bool:
        """Whether ``ack`` is the ACK of our re-INVITE 2xx (it stops the resending)."""
        if self._awaiting != (ack.call_id, ack.cseq.number):
            return False
        self._done()
        return True

    def _done(self) -> None:
        self._awaiting = None
        self.timers.stop("reinvite-ok")
        self.timers.stop("reinvite-ack")
