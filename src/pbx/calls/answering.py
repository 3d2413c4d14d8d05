"""
Calls pbx answers itself: a dialplan application run on an INVITE, and a
call nobody will answer diverted to the application a diverter names
(voicemail), under the caller's dialog; and a refused call out that hears
an announcement as early media before its refusal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.calls.app_call import ApplicationCall
from pbx.calls.call import Call
from pbx.calls.dialplan import ToApplication
from pbx.calls.early_refusal import APPLICATION as APPLICATION_REFUSED
from pbx.calls.early_refusal import EarlyRefusal, RefusalAnnouncement
from pbx.calls.endpoint_media import EndpointMedia, MediaServices
from pbx.calls.events import CallEvents
from pbx.calls.outbound import unquote_display
from pbx.calls.routing import Routing
from pbx.calls.signalling import LegServices
from pbx.media.srtp_policy import SrtpPolicy
from pbx.sip.dialog import LocalAddress
from pbx.sip.ids import new_tag
from pbx.sip.message import make_response
from pbx.sip.transaction import ServerTransaction
from pbx.trunks.call import TrunkInboundCall


@define(eq=False)
class Answering:
    """
    Answers calls with dialplan applications (and announces refusals).

    :ivar applications: the running dialplan applications by name.
    :ivar media: media services; None when no application can run.
    :ivar relay: closes a diverted call's relay session (``close(session)``).
    :ivar routing: names the application a diverter sends a call to.
    :ivar endpoint_media: makes a terminated call's media (caller, caller name, callee).
    :ivar track: lists a call in progress.
    :ivar call_ended: told when a call is over.
    """

    services: LegServices
    events: CallEvents
    applications: dict[str, Any]
    media: MediaServices | None
    relay: Any
    routing: Routing
    local_address: Callable[[str], LocalAddress]
    endpoint_media: Callable[[str, str, str], Callable[[Callable[[str], None]], EndpointMedia]]
    track: Callable[[Any], None]
    call_ended: Callable[[Any], None]
    log = Logger()

    def run_application(self, transaction: ServerTransaction, caller: str, number: str,
                        action: ToApplication, display: str = "", a_tag: str | None = None,
                        early: tuple[bytes, Deferred[None]] | None = None, application: Any = None,
                        srtp: str = SrtpPolicy.OFFERED) -> None:
        """
        Answer the call ourselves and hand it to a dialplan application.
        ``srtp`` is the SRTP policy of the caller's extension or trunk.

        :param early: for a diverted call whose caller got early media: the
            SDP answer of that 183 and when its relay ports are free.  The
            application then answers once they are, with that same SDP on
            the same port where it can.
        """
        request = transaction.request
        if application is None:  # else one of the call layer's own (follow-me's Connect)
            application = self.applications.get(action.name)
        if application is None or self.media is None:
            self.log.warn("dialplan application {name!r} is not running", name=action.name)
            transaction.respond(make_response(request, 404, f"No application {action.name}", to_tag=new_tag()))
            return
        call = ApplicationCall(
            self.services, transaction, caller=caller, callee=number, application=application,
            args=action.args, address=self.local_address(transaction.peer.transport),
            media=self.endpoint_media(caller, unquote_display(display), number),
            events=self.events, on_end=self.call_ended, tag=a_tag, srtp=srtp,
        )
        self.track(call)
        self.log.info("call {caller} -> {number}: application {name}", caller=caller, number=number,
                      name=action.name)
        if early is None:
            call.start()
            return
        answer, released = early

        def start(_: object) -> None:
            if call.state == "routing":  # not cancelled meanwhile
                call.start(early_answer=answer)

        released.addCallback(start).addErrback(
            lambda f: self.log.failure("starting application {name} failed", f, name=action.name))

    def _divertible(self, callee: str, reason: str) -> ToApplication | None:
        action = self.routing.divert(callee, reason)
        if action is not None and self.media is None:
            self.log.warn("diverter named application {name!r}, which is not running", name=action.name)
            return None
        return action

    def divert_new(self, transaction: ServerTransaction, caller: str, display: str, callee: str,
                   reason: str, srtp: str = SrtpPolicy.OFFERED) -> bool:
        """Before anything rang: hand the caller (whose line has SRTP policy ``srtp``) to the application a diverter names, if any."""
        action = self._divertible(callee, reason)
        if action is None:
            return False
        self.log.info("call {caller} -> {callee} ({reason}) diverted", caller=caller, callee=callee, reason=reason)
        self.run_application(transaction, caller, callee, action, display, srtp=srtp)
        return True

    def divert_call(self, call: Call, callee: str, reason: str) -> bool:
        """
        A ringing call nobody will answer: end it (forks cancelled, relay
        closed, its CDR written) and answer the same INVITE transaction with
        the application a diverter names, under the same To tag, so the 18x
        the caller saw and the 2xx belong to one dialog (RFC 3261 §12.1).
        """
        if isinstance(call, TrunkInboundCall) and call.direct:
            return False  # rung past voicemail on purpose
        action = self._divertible(callee, reason)
        if action is None:
            return False
        self.hand_over(call, callee, action, reason)
        return True

    def hand_over(self, call: Call, callee: str, action: ToApplication, reason: str, application: Any = None) -> None:
        """End the ringing call and answer its caller with application ``action`` (see :meth:`divert_call`)."""
        self.log.info("call {caller} -> {callee} ({reason}) diverted", caller=call.caller, callee=callee,
                      reason=reason)
        early = call.early_answer
        call.diverted(reason, action.name)
        self.run_application(
            call.invite, call.caller, callee, action, call.caller_display, a_tag=call.a_tag,
            early=None if early is None else (early, self.relay.close(call.media.session)),
            application=application, srtp=call.media.srtp["a"].policy,
        )

    def refuse_with_announcement(self, call: Call, status: int, reason: str, prompt: str) -> bool:
        """
        A refused outside call hears ``prompt`` as early media, then
        ``status`` (:mod:`pbx.calls.early_refusal`); False when it cannot
        (no media services, no SDP offer, or the caller is answered).
        """
        if self.media is None or not call.invite.request.body or not call.a.waiting:
            return False
        self.log.info("call {caller} -> {callee} refused ({status}) after announcement {prompt}",
                      caller=call.caller, callee=call.callee, status=status, prompt=prompt)
        invite, tag = call.invite, call.a_tag
        call.diverted("refused", APPLICATION_REFUSED)
        refused = EarlyRefusal(
            self.services, invite, caller=call.caller, callee=call.callee,
            application=RefusalAnnouncement(prompt), args={}, address=self.local_address(invite.peer.transport),
            media=self.endpoint_media(call.caller, unquote_display(call.caller_display), call.callee),
            events=self.events, on_end=self.call_ended, tag=tag, status=status, reason=reason,
        )
        self.track(refused)
        refused.start()
        return True
