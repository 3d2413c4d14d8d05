"""
A call answered by pbx itself and handed to a dialplan application (echo
test, voicemail, auto attendant...): the caller's :class:`InboundLeg` and
the :class:`EndpointMedia` whose channel the application drives.

pbx answers the caller's offer, or, for an INVITE without SDP (RFC 3261
§13.2.1, delayed mode), offers in its 2xx and takes the answer from the
ACK; the application runs once the channel is ready, and the call ends
with a BYE when the application returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.calls.endpoint_media import EndpointMedia, MediaUnavailable, answer_dtmf_info
from pbx.calls.events import CallEvents
from pbx.calls.inbound import InboundLeg
from pbx.calls.media import MediaError
from pbx.calls.reinvite import ReinviteAnswers
from pbx.calls.signalling import LegServices
from pbx.interfaces import IDialplanApplication
from pbx.media.channel import Channel, HungUp
from pbx.media.srtp_policy import SrtpPolicy
from pbx.records import CallRecord
from pbx.sip.dialog import Dialog, LocalAddress
from pbx.sip.message import Request, make_response
from pbx.sip.named_timers import NamedTimers
from pbx.sip.transaction import ServerTransaction

#: Why a call ends when the caller's ACK does not answer our offer.
NO_ANSWER_IN_ACK = "no answer in ACK"


class ApplicationCall:
    """
    The state of one call handled by an application.

    :param media: the call's endpoint media (its ``on_hangup`` is this call's).
    :param tag: our To tag, when the caller already saw one (a diverted call).
    """

    log = Logger()

    def __init__(
        self,
        services: LegServices,
        invite: ServerTransaction,
        *,
        caller: str,
        callee: str,
        application: IDialplanApplication,
        args: Any,
        address: LocalAddress,
        media: Callable[[Callable[[str], None]], EndpointMedia],
        events: CallEvents,
        on_end: Callable[[ApplicationCall], None],
        tag: str | None = None,
        srtp: str = SrtpPolicy.OFFERED,
    ) -> None:
        self.services = services
        self.invite = invite
        self.caller = caller
        self.callee = callee
        self.application = application
        self.args = args
        self.address = address
        self.media = media(self._app_hung_up)
        # SDES keys only over TLS (RFC 4568 §8.3); the caller's line's policy.
        self.media.secure(invite.peer.transport, srtp)
        self.started = services.clock.seconds()
        self.delayed = not invite.request.body
        timers = NamedTimers(services.clock)
        self.a = InboundLeg(services, invite, address, self, on_acked=self._acked, on_no_ack=self._no_ack,
                            on_ended=self._end, tag=tag, timers=timers)
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.hangup_side = ""
        self.hangup_cause = ""
        self.disposition = ""
        self._events = events
        self._on_end = on_end
        self._over = False
        self._reinvites = ReinviteAnswers(services.sip, timers)
        self._event("created", application=application.name)

    @property
    def call_id(self) -> str:
        """The caller's Call-ID."""
        return self.invite.request.call_id

    @property
    def a_tag(self) -> str:
        """Our To tag towards the caller."""
        return self.a.tag

    @property
    def state(self) -> str:
        """``routing``, ``answered``, ``confirmed`` or ``ended``."""
        if self._over:
            return "ended"
        return "answered" if self.a.state == "closing" else self.a.state

    @property
    def channel(self) -> Channel | None:
        """The channel the application drives, once the codec is settled."""
        return self.media.channel

    @property
    def endpoint(self) -> Any:
        """The RTP endpoint, once bound."""
        return self.media.endpoint

    @property
    def codecs(self) -> str:
        """The codec in use."""
        return self.media.codecs

    def _event(self, kind: str, leg: str = "", **detail: Any) -> None:
        self._events.announce(kind, self, self.services.clock.seconds(), leg, **detail)

    # -- answering -----------------------------------------------------------------

    def start(self, early_answer: bytes | None = None) -> None:
        """
        Answer the caller and run the application (in delayed mode, once the ACK answered our offer).

        :param early_answer: the SDP answer the caller already got in a 183
            (a call diverted after early media): the 2xx carries it again
            (RFC 3261 §13.2.1).
        """
        try:
            body = self.media.offer() if self.delayed else self.media.answer(self.invite.request.body, early_answer)
        except MediaError as e:
            self._refuse(488, str(e)[:80])
            return
        except MediaUnavailable as e:
            self._refuse(e.status, e.reason)
            return
        self.answered_at = self.services.clock.seconds()
        self.a.answer(body)
        self._event("answered", "a", application=self.application.name, records=self.record())
        if not self.delayed:
            self._start_application()

    def _acked(self, ack: Request) -> None:
        """The caller's ACK: in delayed mode it carries the answer to our offer."""
        if not self.delayed or self.hangup_cause:
            return
        try:
            self.media.accept(ack.body)
        except MediaError as e:
            self.log.info("the ACK of {caller} has no usable answer: {e}", caller=self.caller, e=e)
            self.hang_up("a", NO_ANSWER_IN_ACK)
            return
        self._start_application()

    def _start_application(self) -> None:
        d = Deferred.fromCoroutine(self._run())
        d.addErrback(lambda f: self.log.failure("application {name} failed", f, name=self.application.name))

    async def _run(self) -> None:
        assert self.channel is not None
        try:
            await self.application.run(self.channel, self.args)
        except HungUp as e:
            # It came up through Twisted's coroutine plumbing: its traceback
            # holds the frame that threw it into a coroutine, which holds the
            # Failure that holds it.  Without the traceback, that cycle (and
            # every frame it keeps) is freed at once, not by the collector.
            e.__traceback__ = None
            return
        except Exception:
            # A failed application ends its call; the caller is not left
            # connected to silence.
            self.log.failure("application {name} failed", name=self.application.name)
            self.hang_up("pbx", "application failed")
            return
        self.hang_up("pbx", "application finished")

    def _app_hung_up(self, cause: str) -> None:
        self.hang_up("pbx", cause)

    def _no_ack(self) -> None:
        """No ACK within Timer H (the leg has sent BYE): the call ends, recorded as the caller's."""
        if self.hangup_cause:
            self.hangup_side, self.hangup_cause = "a", "no ACK"
        else:
            self.hang_up("a", "no ACK")

    def _refuse(self, status: int, reason: str) -> None:
        self.disposition, self.hangup_side, self.hangup_cause = "FAILED", "pbx", f"{status} {reason}"
        self.a.refuse(status, reason)

    # -- what the controller calls ------------------------------------------------------

    def leg_of(self, dialog: Dialog) -> str:
        """There is only the caller's leg."""
        return "a"

    def acked(self, ack: Request) -> None:
        """An ACK of ours: for the INVITE's 2xx, or a re-INVITE's."""
        if not self._reinvites.acked(ack):
            self.a.acked(ack)

    def hang_up(self, side: str, cause: str) -> None:
        """End the call; BYE the caller unless they hung up (once they ACKed, §15)."""
        if self._over or self.hangup_cause:
            return
        self.hangup_side, self.hangup_cause = side, cause
        if self.answered_at is None:
            self.disposition = "FAILED"
        else:
            # An application may name its own (IDialplanApplication).
            self.disposition = getattr(self.application, "disposition", "ANSWERED")
        if self.channel is not None:
            self.channel.closed(cause)
        if side == "a" and cause == "BYE":
            self.a.remote_bye()
        else:
            self.a.hang_up()

    def cancelled(self) -> None:
        """CANCEL before we answered (a diverted call waiting for its early-media port)."""
        if self.a.state == "routing":
            self._refuse(487, "Request Terminated")

    def reoffer(self, leg: str, transaction: ServerTransaction) -> None:
        """A re-INVITE or UPDATE: follow the caller's new address, keep our codec."""
        request = transaction.request
        try:
            if not request.body:
                raise MediaError("no offer")
            body = self.media.reanswer(request.body)
        except MediaError:
            transaction.respond(make_response(request, 488))
            return
        ok = make_response(request, 200)
        dialog = self.a.dialog
        ok.headers.add("Contact", dialog.contact("pbx") if dialog is not None else self.address.contact())
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = body
        self._reinvites.respond(transaction, ok)

    def info(self, leg: str, transaction: ServerTransaction) -> None:
        """SIP INFO: a DTMF digit (application/dtmf-relay) for the application."""
        answer_dtmf_info(transaction, self.channel)

    def inactive_for(self, now: float) -> float:
        """Seconds since media last arrived (for the dead-call watchdog)."""
        return self.media.inactive_for(now, self.answered_at or self.started)

    def release_media(self) -> None:
        """Close the endpoint (ports back to the allocator)."""
        self.media.close(self.hangup_cause)

    def _end(self) -> None:
        if self._over:
            return
        self._over = True
        self.ended_at = self.services.clock.seconds()
        self._reinvites.timers.stop_all()
        if self.channel is not None:
            self.channel.closed(self.hangup_cause)
        self._on_end(self)
        self._event("ended", records=self.record(), disposition=self.disposition,
                    application=self.application.name)

    def record(self) -> list[CallRecord]:
        """One call detail record."""
        return [CallRecord(
            call_id=self.call_id, caller=self.caller, callee=self.callee, start=self.started,
            end=self.ended_at or self.services.clock.seconds(), answer=self.answered_at,
            disposition=self.disposition or "FAILED", hangup_side=self.hangup_side,
            hangup_cause=self.hangup_cause, codecs=self.codecs, leg="a",
            application=self.application.name, srtp=self.media.srtp.suite,
        )]

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view for the API."""
        return {
            "call_id": self.call_id, "caller": self.caller, "callee": self.callee,
            "state": self.state, "started": self.started, "answered": self.answered_at,
            "duration": round(self.services.clock.seconds() - self.started, 3), "codecs": self.codecs,
            "application": self.application.name, "srtp": {"a": self.media.srtp.suite},
        }
