"""
A call pbx places itself (``originate``): :class:`Forks` to every
registered phone of the callee, carrying our own offer (RFC 3264 §5), and
the :class:`EndpointMedia` whose channel the application gets once a phone
answers.  pbx ACKs the 2xx itself (RFC 3261 §13.2.2.4).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.calls.endpoint_media import EndpointMedia, MediaUnavailable, answer_dtmf_info
from pbx.calls.events import CallEvents
from pbx.calls.forks import Fork, Forks, Outcome, Rung, Verdict
from pbx.calls.media import MediaError
from pbx.calls.reinvite import ReinviteAnswers
from pbx.calls.signalling import LegServices
from pbx.media.channel import Channel
from pbx.records import Binding, CallRecord
from pbx.sip.dialog import Dialog, LocalAddress, new_invite
from pbx.sip.headers import TOKEN, header_key
from pbx.sip.message import Request, Response, make_response
from pbx.sip.named_timers import NamedTimers
from pbx.sip.transaction import ServerTransaction
from pbx.sip.uri import parse_uri
from pbx.validation import printable

#: How each outcome of unanswered ringing is recorded: (disposition, side, cause or None for the status).
_UNANSWERED = {
    Outcome.NO_ANSWER: ("NO ANSWER", "pbx", "ring timeout"),
    Outcome.BUSY: ("BUSY", "b", None),
    Outcome.UNAVAILABLE: ("FAILED", "b", None),
    Outcome.FAILED: ("FAILED", "pbx", None),
    Outcome.CANCELLED: ("CANCELLED", "pbx", "cancelled"),
}


def display_name(name: str) -> str:
    """A quoted display name followed by a space, or '' (RFC 3261 §25.1 quoted-string)."""
    # A quoted-string holds no CR or LF (RFC 3261 §25.1): a name stored
    # before the API checked it must not split the header.
    name = printable(name).strip()
    if not name:
        return ""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}" '


def unquote_display(display: str) -> str:
    """The name inside a :func:`display_name` result."""
    text = display.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text


#: Headers pbx writes itself in the INVITE it sends: an extra one may not replace or repeat them.
_OWN_HEADERS = frozenset({
    "via", "max-forwards", "from", "to", "call-id", "cseq", "contact", "content-type",
    "content-length", "p-asserted-identity", "supported", "allow",
})


def check_extra_headers(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """
    The extra headers an application asked for, checked: each name a token
    (RFC 3261 §25.1) that pbx does not write itself, each value one line.

    :raises ValueError: naming the first bad header.
    """
    checked = []
    for name, value in headers:
        if not isinstance(name, str) or not TOKEN.fullmatch(name):
            raise ValueError(f"header name {name!r} is not a token")
        if header_key(name)[0] in _OWN_HEADERS:
            raise ValueError(f"header {name} is written by pbx itself")
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise ValueError(f"header {name}: the value must be one line of text")
        checked.append((name, value.strip()))
    return checked


class OutboundCall:
    """
    One call pbx places to one extension's phones.

    :ivar outcome: fires once ringing is over, with a :class:`Rung`.
    :ivar ended: fires when the call is over (answered or not).
    """

    log = Logger()

    def __init__(
        self,
        services: LegServices,
        *,
        caller: str,
        callee: str,
        caller_name: str = "",
        media: Callable[[Callable[[str], None]], EndpointMedia],
        events: CallEvents,
        on_end: Callable[[OutboundCall], None],
        on_ringing: Callable[[], None] | None = None,
        headers: Sequence[tuple[str, str]] = (),
        identity: tuple[str, str] | None = None,
        on_challenge: Callable[[Fork, Response], Request | None] | None = None,
    ) -> None:
        """
        :param identity: (From, To) of the INVITE when it is not an extension's
            call in our domain (a call out through a trunk).
        :param on_challenge: answers a 401/407 (a trunk's credentials).
        """
        self.services = services
        self.identity = identity
        #: Extra headers of every INVITE (already checked: :func:`check_extra_headers`).
        self.headers = list(headers)
        self.caller = caller
        self.callee = callee
        self.caller_name = caller_name
        self.media = media(self._channel_hung_up)
        self.on_ringing = on_ringing
        self.started = services.clock.seconds()
        timers = NamedTimers(services.clock)
        self.forks = Forks(services, on_provisional=self._provisional, on_answer=self._answer,
                           contact_user=caller, timers=timers, on_challenge=on_challenge)
        self.b: Fork | None = None
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.hangup_side = ""
        self.hangup_cause = ""
        self.disposition = ""
        self.outcome: Deferred[Rung] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self._events = events
        self._on_end = on_end
        self._over = False
        self._rang = False
        self._reinvites = ReinviteAnswers(services.sip, timers)

    @property
    def call_id(self) -> str:
        """The Call-ID of the first INVITE: the key of this call in the controller."""
        return self.forks.call_id

    @property
    def invite(self) -> ServerTransaction | None:
        """No INVITE of a caller is pending here: a CANCEL never matches this call."""
        return None

    @property
    def state(self) -> str:
        """``routing``, ``ringing``, ``confirmed`` or ``ended``."""
        if self._over:
            return "ended"
        if self.b is not None:
            return "confirmed"
        return "ringing" if self._rang else "routing"

    @property
    def channel(self) -> Channel | None:
        """The callee's channel, once answered."""
        return self.media.channel if self.b is not None else None

    @property
    def codecs(self) -> str:
        """The codec in use."""
        return self.media.codecs

    def _event(self, kind: str, leg: str = "", **detail: Any) -> None:
        self._events.announce(kind, self, self.services.clock.seconds(), leg, **detail)

    # -- ringing --------------------------------------------------------------------------

    def start(self, bindings: list[Binding], timeout: float) -> Deferred[Rung]:
        """
        Bind the endpoint and send one INVITE with our offer to each of
        ``bindings``; after ``timeout`` seconds unanswered, cancel them.
        A failure to bind ends the attempt at once (503).
        """
        try:
            body = self.media.offer()
        except MediaUnavailable as e:
            self._finish(Rung(Outcome.FAILED, e.status), "FAILED", "pbx", e.reason.lower())
            return self.outcome
        identity = f"{display_name(self.caller_name)}<sip:{self.caller}@{self.services.domain}>"
        to = f"<sip:{self.callee}@{self.services.domain}>"
        if self.identity is not None:
            identity, to = self.identity

        def invite(binding: Binding, address: LocalAddress) -> Request:
            request = new_invite(target=parse_uri(binding.contact), to=to, from_=identity, address=address,
                                 body=body, contact_user=self.caller,
                                 extra=[("P-Asserted-Identity", identity), *self.headers])
            # RFC 4028 §9: pbx never refreshes a session; without "Supported:
            # timer" a callee that wants a session timer refreshes it itself.
            request.headers.remove("Supported")
            return request

        self.forks.ring(bindings, invite, timeout).addCallback(self._rung)
        self._event("created", "b")
        return self.outcome

    def _provisional(self, fork: Fork, response: Response) -> None:
        self._rang = True
        if self.on_ringing is not None:
            self.on_ringing()

    def _answer(self, fork: Fork, response: Response) -> Verdict:
        try:
            self.media.accept(response.body)
        except MediaError as e:
            self.log.info("the answer of {callee} is unusable: {e}", callee=self.callee, e=e)
            return Verdict.DECLINE
        self.b = fork
        self.answered_at = self.services.clock.seconds()
        assert fork.dialog is not None
        self.services.dialogs.add(self, fork.dialog)
        self._event("answered", "b", records=self.record())
        return Verdict.ACCEPT

    def _rung(self, rung: Rung) -> Rung:
        if rung.outcome is not Outcome.ANSWERED:
            disposition, side, cause = _UNANSWERED[rung.outcome]
            self._finish(rung, disposition, side, cause or str(rung.status))
        elif not self.outcome.called:
            self.outcome.callback(rung)
        return rung

    def _finish(self, rung: Rung, disposition: str, side: str, cause: str) -> None:
        """Ringing is over without an answer."""
        if not self.hangup_cause:
            self.disposition, self.hangup_side, self.hangup_cause = disposition, side, cause
        self._end()
        if not self.outcome.called:
            self.outcome.callback(rung)

    def _channel_hung_up(self, cause: str) -> None:
        self.hang_up("pbx", cause)

    # -- what the controller calls -------------------------------------------------------

    def leg_of(self, dialog: Dialog) -> str:
        """Our only dialog is the callee's leg."""
        return "b"

    def fail(self, status: int, reason: str | None = None) -> None:
        """Stop ringing (pbx is shutting down)."""
        if self.b is None and not self._over:
            self.disposition, self.hangup_side = "FAILED", "pbx"
            self.hangup_cause = f"{status} {reason or ''}".strip()
            self.forks.cancel()

    def hang_up(self, side: str, cause: str) -> None:
        """
        End the call: cancel the phones while ringing, BYE the callee once
        answered (unless its own BYE ended it).

        :param side: ``"a"`` (the dialling side), ``"b"`` (the callee) or ``"pbx"``.
        """
        if self._over:
            return
        if self.b is None:
            if not self.hangup_cause:
                self.disposition, self.hangup_side, self.hangup_cause = "CANCELLED", side, cause
            self.forks.cancel()
            return
        self.disposition, self.hangup_side, self.hangup_cause = "ANSWERED", side, cause
        if (side != "b" or cause != "BYE") and self.b.dialog is not None:
            self.services.sip.in_dialog(self.b.dialog, "BYE")
        self._end()

    def reoffer(self, leg: str, transaction: ServerTransaction) -> None:
        """
        A re-INVITE or UPDATE from the callee (hold, a new address): keep our
        codec and port, follow its address, and answer.  Without an offer
        (RFC 3261 §14.2) the 2xx carries our offer again.
        """
        request = transaction.request
        if self.channel is None or self.b is None or self.b.dialog is None:
            transaction.respond(make_response(request, 500))
            return
        try:
            body = self.media.reanswer(request.body)
        except MediaError:
            transaction.respond(make_response(request, 488))
            return
        ok = make_response(request, 200)
        ok.headers.add("Contact", self.b.dialog.contact(self.caller))
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = body
        self._reinvites.respond(transaction, ok)

    def acked(self, ack: Request) -> None:
        """The callee's ACK for the 2xx of its re-INVITE."""
        self._reinvites.acked(ack)

    def info(self, leg: str, transaction: ServerTransaction) -> None:
        """SIP INFO from the callee: a DTMF digit (application/dtmf-relay) for its channel."""
        answer_dtmf_info(transaction, self.channel)

    def inactive_for(self, now: float) -> float:
        """Seconds since the callee's media last arrived."""
        return self.media.inactive_for(now, self.answered_at or self.started)

    def release_media(self) -> None:
        """Close the endpoint (its ports go back to the allocator)."""
        self.media.close(self.hangup_cause)

    def _end(self) -> None:
        if self._over:
            return
        self._over = True
        self.ended_at = self.services.clock.seconds()
        self._reinvites.timers.stop_all()
        self.forks.stop()
        # Nothing rings any more: the placer's callback (which often holds
        # this call) is let go of, leaving no reference cycle to the collector.
        self.on_ringing = None
        if self.media.channel is not None:
            self.media.channel.closed(self.hangup_cause)
        self._on_end(self)
        self._event("ended", "b", records=self.record(), disposition=self.disposition)
        self.ended.callback(None)

    def record(self) -> list[CallRecord]:
        """One call detail record, for the callee's leg (``b``), answered or not."""
        return [CallRecord(
            call_id=self.b.invite.call_id if self.b is not None else self.call_id, caller=self.caller,
            callee=self.callee, start=self.started, end=self.ended_at or self.services.clock.seconds(),
            answer=self.answered_at, disposition=self.disposition or "FAILED", hangup_side=self.hangup_side,
            hangup_cause=self.hangup_cause, codecs=self.codecs, leg="b", linked_id=self.call_id,
        )]

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view for the API."""
        return {
            "call_id": self.call_id, "caller": self.caller, "callee": self.callee,
            "state": self.state, "started": self.started, "answered": self.answered_at,
            "duration": round(self.services.clock.seconds() - self.started, 3), "codecs": self.codecs,
            "direction": "outbound",
        }
