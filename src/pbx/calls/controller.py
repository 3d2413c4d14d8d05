"""
The call controller: the transaction user for INVITE, ACK, BYE, CANCEL,
UPDATE, INFO and PRACK.  It authenticates callers, asks the dialplan where
a call goes, starts :class:`~pbx.calls.call.Call` objects, finds the call of
every in-dialog request, ends dead calls, and writes call detail records.

Calls nobody will answer are offered to the diverters (voicemail) before
they fail; applications place calls of their own with :meth:`CallController.dial`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define, field

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbx.calls.app_call import ApplicationCall
from pbx.calls.call import BUSY, Call
from pbx.calls.delayed_offer import DelayedOfferApplicationCall, DelayedOfferCall
from pbx.calls.dial import Dial
from pbx.calls.dialplan import HangUp, ToApplication, ToExtension
from pbx.calls.divert import Diverter, ask_diverters
from pbx.calls.live import LiveCall
from pbx.calls.media import CallMedia, MediaError
from pbx.calls.outbound import OutboundCall
from pbx.config import Config
from pbx.interfaces import IStore
from pbx.media.media_clock import MediaClock
from pbx.records import Binding, ExtensionRecord
from pbx.sip.authn import RequestAuthenticator
from pbx.sip.core import SIPCore
from pbx.sip.dialog import Dialog, LocalAddress
from pbx.sip.message import Request, Response, SIPParseError, make_response
from pbx.sip.registrar import Registrar
from pbx.sip.transaction import ClientTransaction, Peer, ServerTransaction

#: RFC 3261 §8.2.2.2-style guard: how many forwards one call may follow.
MAX_FORWARDS_FOLLOWED = 5
MEDIA_CHECK_INTERVAL = 5.0


@define(eq=False)
class MediaServices:
    """What a call answered by pbx itself needs."""

    codecs: dict[str, Any]
    prompts: Any
    load: Callable[[str], Deferred[Any]]


@define(eq=False)
class CallController:
    """
    Handles calls for one PBX.

    :ivar relay: opens relay sessions (``open_session()``/``close(session)``).
    :ivar local_address: our address on a transport (Via, Contact).
    :ivar media_address: the address phones send RTP to.
    """

    core: SIPCore
    registrar: Registrar
    authn: RequestAuthenticator
    store: IStore
    config: Config
    relay: Any
    local_address: Callable[[str], LocalAddress]
    media_address: str
    lookup: Callable[[str], Deferred[ExtensionRecord | None]]
    #: Registered dialplan applications by name (the PBX's registry).
    applications: dict[str, Any] = field(factory=dict)
    #: What terminated calls need: codecs, prompts, a WAV loader, the reactor.
    media: MediaServices | None = None
    calls: dict[str, LiveCall] = field(factory=dict)
    #: Asked, in order, where a call nobody will answer goes (see IPBX.add_diverter).
    diverters: list[Diverter] = field(factory=list)
    _dialogs: dict[tuple[str, str], tuple[LiveCall, Dialog]] = field(factory=dict)
    _keys: dict[int, list[tuple[str, str]]] = field(factory=dict)  # dialog keys per call
    _checker: LoopingCall | None = None
    _media_clock: MediaClock | None = None
    log = Logger()

    @property
    def clock(self) -> Any:
        """The injected clock."""
        return self.core.clock

    @property
    def reactor(self) -> Any:
        """The reactor (UDP for RTP endpoints, time)."""
        return self.core.clock

    @property
    def media_clock(self) -> MediaClock:
        """The one 20 ms timer that ticks every terminated call's media."""
        if self._media_clock is None:
            self._media_clock = MediaClock(self.clock)
        return self._media_clock

    @property
    def media_ports(self) -> Any:
        """The RTP port allocator shared with the relay."""
        return self.relay.allocator

    @property
    def domain(self) -> str:
        """The SIP domain (realm)."""
        return self.config.sip.domain

    def install(self) -> None:
        """Take over call-related methods in the core and start the media watchdog."""
        for method in ("INVITE", "BYE", "CANCEL", "UPDATE", "INFO", "PRACK"):
            self.core.handlers[method] = self._dispatch
        self.core.ack_handler = self.ack
        self._checker = LoopingCall(self._check_media_safely)
        self._checker.clock = self.clock
        self._checker.start(MEDIA_CHECK_INTERVAL, now=False)

    def stop(self) -> None:
        """Hang up every call and stop the watchdog."""
        if self._checker is not None and self._checker.running:
            self._checker.stop()
        for call in list(self.calls.values()):
            if call.state in ("answered", "confirmed"):
                call.hang_up("pbx", "shutdown")
            elif isinstance(call, Call | OutboundCall):
                call.fail(503, "Service Unavailable")

    # -- plumbing used by Call ---------------------------------------------

    def send(self, message: Request | Response, peer: Peer) -> None:
        """Send outside any transaction (ACK of a 2xx, 2xx retransmissions)."""
        self.core.transports.send(message, peer)

    def send_request(self, request: Request, peer: Peer, on_response: Callable[[Response], None]) -> ClientTransaction:
        """Send a request in a new client transaction."""
        return self.core.transactions.start_client(request, peer, on_response)

    def send_in_dialog(self, dialog: Dialog, method: str, on_response: Callable[[Response], None]) -> None:
        """Send a body-less request (BYE, ...) within ``dialog``."""
        self.send_request(dialog.request(method), dialog.peer, on_response)

    def peer_for(self, binding: Binding) -> Peer:
        """Where a registered phone is reached: the address its REGISTER came from."""
        host, _, port = binding.source.rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit():
            contact = self._contact_uri(binding)
            return Peer(binding.transport, contact.host_address, contact.port or 5060)
        return Peer(binding.transport, host, int(port))

    @staticmethod
    def _contact_uri(binding: Binding) -> Any:
        from pbx.sip.uri import parse_uri

        return parse_uri(binding.contact)

    def dialog_started(self, call: LiveCall, leg: str, dialog: Dialog) -> None:
        """Route future in-dialog requests of ``dialog`` to ``call``."""
        key = (dialog.call_id, dialog.local_tag)
        self._dialogs[key] = (call, dialog)
        self._keys.setdefault(id(call), []).append(key)

    # -- dispatch ----------------------------------------------------------

    def _dispatch(self, transaction: ServerTransaction) -> None:
        request = transaction.request
        method = request.method
        if method == "CANCEL":
            self._cancel(transaction)
            return
        if request.to.tag:
            self._in_dialog(transaction)
            return
        if method == "INVITE":
            d = Deferred.fromCoroutine(self._new_call(transaction))
            d.addErrback(self._failed, transaction)
            return
        # §12.2.2: an in-dialog method without a dialog.
        transaction.respond(make_response(request, 481))

    def _failed(self, failure: Any, transaction: ServerTransaction) -> None:
        self.log.failure("INVITE handling failed", failure)
        transaction.respond(make_response(transaction.request, 500))

    def _cancel(self, transaction: ServerTransaction) -> None:
        """§9.2: a CANCEL matches a pending INVITE server transaction or gets 481."""
        invite = self.core.transactions.find_invite(transaction.request)
        call = self.calls.get(transaction.request.call_id)
        if invite is None or not isinstance(call, Call | ApplicationCall) or call.invite is not invite:
            transaction.respond(make_response(transaction.request, 481))
            return
        # Fix: §9.2: the 200 to CANCEL SHOULD carry the To tag of the
        # INVITE's responses (it had none).
        transaction.respond(make_response(transaction.request, 200, to_tag=call.a_tag))
        call.cancelled()

    def _dialog_of(self, request: Request) -> tuple[LiveCall, Dialog] | None:
        """The call and dialog of an in-dialog request, or None."""
        entry = self._dialogs.get((request.call_id, request.to.tag or ""))
        # Fix: §12.2.2: the dialog ID includes the remote tag; a request
        # with our To tag but another From tag is in no dialog (481).
        if entry is not None and entry[1].remote_tag != (request.from_.tag or ""):
            return None
        return entry

    def _in_dialog(self, transaction: ServerTransaction) -> None:
        request = transaction.request
        entry = self._dialog_of(request)
        if entry is None:
            transaction.respond(make_response(request, 481))
            return
        call, dialog = entry
        if not dialog.check_remote_seq(request):
            transaction.respond(make_response(request, 500, "CSeq Out of Order"))
            return
        leg = call.leg_of(dialog)
        method = request.method
        if method == "BYE":
            transaction.respond(make_response(request, 200))
            call.hang_up(leg, "BYE")
        elif method in ("INVITE", "UPDATE"):
            dialog.update_target(request)
            call.reoffer(leg, transaction)
        elif method == "INFO":
            if isinstance(call, Call):
                self._relay_info(call, leg, transaction)
            elif isinstance(call, ApplicationCall | OutboundCall):
                call.info(transaction)
        else:
            transaction.respond(make_response(request, 481 if method == "PRACK" else 501))

    def _relay_info(self, call: Call, leg: str, transaction: ServerTransaction) -> None:
        """Pass INFO (e.g. application/dtmf-relay) to the other leg."""
        request = transaction.request
        other = call.b.dialog if leg == "a" and call.b is not None else call.a_dialog
        if other is None:
            transaction.respond(make_response(request, 481))
            return
        info = other.request("INFO", body=request.body, content_type=request.headers.get("Content-Type"))
        self.send_request(info, other.peer,
                          lambda r: transaction.respond(make_response(request, r.status)) if r.status >= 200 else None)

    def ack(self, request: Request, peer: Peer) -> None:
        """An ACK for a 2xx (outside transactions)."""
        entry = self._dialog_of(request)
        if entry is not None:
            entry[0].acked(request)

    # -- new calls ---------------------------------------------------------

    async def _new_call(self, transaction: ServerTransaction) -> None:
        request = transaction.request
        number = request.uri.user or ""
        authenticated = bool(request.headers.get_all("Proxy-Authorization"))
        action = self.config.dialplan.resolve(number, authenticated=True)
        public = self.config.dialplan.resolve(number, authenticated=False)
        caller, display = "", ""
        if public is None or authenticated:
            record = await self.authn.authenticate(transaction, proxy=True)
            if record is None:
                return
            # The caller is who authenticated, whatever From claims.
            caller, display = record.number, display_name(record.caller_id or record.name)
        else:
            action = public
            caller = request.from_.uri.user or "anonymous"
        expires = self._session_expires(transaction)
        if expires is None:
            return
        if action is None:
            action = ToExtension(number)
        if isinstance(action, HangUp):
            transaction.respond(make_response(request, action.status, action.reason or None, to_tag=_tag()))
            return
        if isinstance(action, ToApplication):
            self._run_application(transaction, caller, number, action, display)
            return
        await self._ring_extension(transaction, caller, display, action.number, expires)

    def _session_expires(self, transaction: ServerTransaction) -> int | None:
        """RFC 4028 §8.1: refuse a session interval below Min-SE with 422."""
        value = transaction.request.headers.get("Session-Expires")
        if value is None:
            return 0
        text = value.split(";", 1)[0].strip()
        minimum = self.config.calls.min_session_expires
        if not text.isdigit():
            transaction.respond(make_response(transaction.request, 400, "Bad Session-Expires"))
            return None
        if int(text) < minimum:
            response = make_response(transaction.request, 422, to_tag=_tag())
            response.headers.add("Min-SE", str(minimum))
            transaction.respond(response)
            return None
        return int(text)

    async def resolve_target(self, target: str, seen: set[str]) -> tuple[str, ExtensionRecord | None, int]:
        """
        Follow unconditional forwarding from ``target``.

        :returns: (final number, its record or None, a status to refuse
            with, or 0): 404 unknown, 482 forwarding loop, 486 DND.
        """
        record = await self.lookup(target)
        seen.add(target)
        while record is not None and record.enabled and record.forward_always:
            nxt = record.forward_always
            if nxt in seen or len(seen) > MAX_FORWARDS_FOLLOWED:
                return target, record, 482
            seen.add(nxt)
            target, record = nxt, await self.lookup(nxt)
        if record is None or not record.enabled:
            return target, None, 404
        if record.dnd:
            return target, record, 486
        return target, record, 0

    async def _ring_extension(self, transaction: ServerTransaction, caller: str, display: str,
                              target: str, expires: int) -> None:
        request = transaction.request
        seen: set[str] = set()
        target, record, refuse = await self.resolve_target(target, seen)
        if refuse:
            if refuse == 486 and self._divert_new(transaction, caller, display, target, "dnd"):
                return
            reason = {482: "Forwarding Loop", 486: "Do Not Disturb"}.get(refuse)
            transaction.respond(make_response(request, refuse, reason, to_tag=_tag()))
            return
        assert record is not None
        bindings = self.registrar.contacts(target)
        why = "unavailable"
        if not bindings and record.forward_no_answer and record.forward_no_answer not in seen:
            number, forward, refuse = await self.resolve_target(record.forward_no_answer, seen)
            if forward is not None:
                # A forward target that fails too: diverted as itself.
                target, record = number, forward
                bindings = self.registrar.contacts(target) if not refuse else []
                why = "dnd" if refuse == 486 else "unavailable"
        if not bindings:
            if not self._divert_new(transaction, caller, display, target, why):
                transaction.respond(make_response(request, 480, "Not Registered", to_tag=_tag()))
            return
        try:
            session = self.relay.open_session()
        except Exception as e:
            self.log.warn("no media ports for a call: {e}", e=e)
            transaction.respond(make_response(request, 503, "No Media Ports", to_tag=_tag()))
            return
        # RFC 3261 §13.2.1: an INVITE without a body leaves the offer to the callee's 2xx.
        call = (Call if request.body else DelayedOfferCall)(
            controller=self, invite=transaction, caller=caller, callee=target, caller_display=display,
            media=CallMedia(session, self.media_address,
                            available=self.media.codecs if self.media is not None else {}),
            a_address=self.local_address(transaction.peer.transport), started=self.clock.seconds(),
        )
        # Fix: RFC 4028 §9 table 2: a caller without "Supported: timer", or
        # one asking refresher=uas, makes the UAS the refresher.  pbx never
        # refreshes, so it runs no session timer for such a caller (and says
        # none in its 2xx) instead of cutting a live call at expiry.
        call.session_expires = expires if _caller_refreshes(request) else 0
        call.on_end = self.call_ended
        call.forwards = {"busy": record.forward_busy, "no_answer": record.forward_no_answer}
        call.seen = seen
        self.calls[call.call_id] = call
        self.log.info("call {caller} -> {callee} ({n} phone(s))", caller=caller, callee=target, n=len(bindings))
        try:
            call.ring(bindings, request.body)
        except (SIPParseError, MediaError) as e:
            call.fail(488, str(e)[:80])

    def _run_application(self, transaction: ServerTransaction, caller: str, number: str,
                         action: ToApplication, display: str = "", a_tag: str | None = None,
                         early: tuple[bytes, Deferred[None]] | None = None) -> None:
        """
        Answer the call ourselves and hand it to a dialplan application.

        :param early: for a diverted call whose caller got early media: the
            SDP answer of that 183 and when its relay ports are free.  The
            application then answers once they are, with that same SDP on
            the same port where it can.
        """
        request = transaction.request
        application = self.applications.get(action.name)
        if application is None or self.media is None:
            self.log.warn("dialplan application {name!r} is not running", name=action.name)
            transaction.respond(make_response(request, 404, f"No application {action.name}", to_tag=_tag()))
            return
        call = (ApplicationCall if request.body else DelayedOfferApplicationCall)(
            controller=self, invite=transaction, caller=caller, callee=number,
            application=application, args=action.args, caller_name=_unquote(display),
            address=self.local_address(transaction.peer.transport), started=self.clock.seconds(),
        )
        if a_tag is not None:
            call.a_tag = a_tag
        call.on_end = self.call_ended
        self.calls[call.call_id] = call
        self.log.info("call {caller} -> {number}: application {name}", caller=caller, number=number,
                      name=action.name)
        media = self.media
        if early is None:
            call.start(media.codecs, media.prompts, media.load)
            return
        answer, released = early

        def start(_: object) -> None:
            if call.state == "routing":  # not cancelled meanwhile
                call.start(media.codecs, media.prompts, media.load, early_answer=answer)

        released.addCallback(start).addErrback(
            lambda f: self.log.failure("starting application {name} failed", f, name=action.name))

    def forks_failed(self, call: Call, status: int) -> None:
        """Every phone of the callee refused: forward on busy, divert, or fail."""
        reason = "busy" if status in BUSY else "unavailable"
        if status in BUSY and call.forwards.get("busy"):
            self._forward(call, call.forwards.pop("busy"), status, reason)
        elif not self._divert_call(call, call.callee, reason):
            call.fail(status)

    def no_answer(self, call: Call) -> None:
        """The ring timeout passed: forward on no answer, divert, or fail."""
        if call.forwards.get("no_answer"):
            self._forward(call, call.forwards.pop("no_answer"), 480, "no_answer")
        elif not self._divert_call(call, call.callee, "no_answer"):
            call.fail(480, "No Answer")

    def _forward(self, call: Call, target: str, status: int, reason: str) -> None:
        def failed(failure: Failure) -> None:
            self.log.failure("forwarding failed", failure)
            call.fail(500)

        Deferred.fromCoroutine(self._forward_to(call, target, status, reason)).addErrback(failed)

    async def _forward_to(self, call: Call, target: str, status: int, reason: str) -> None:
        if target in call.seen or len(call.seen) > MAX_FORWARDS_FOLLOWED:
            # A busy/no-answer forward back to an extension already rung.
            number, record, refuse = target, None, 482
        else:
            number, record, refuse = await self.resolve_target(target, call.seen)
        if call.state not in ("routing", "ringing"):
            return  # the caller cancelled meanwhile
        bindings = self.registrar.contacts(number) if not refuse else []
        if not bindings or record is None:
            # The forward target fails too: diverted as itself when it exists.
            if record is None:
                number = call.callee
            else:
                reason = "dnd" if refuse == 486 else "unavailable"
            if not self._divert_call(call, number, reason):
                call.fail(status)
            return
        self.log.info("call {caller} -> {callee} forwarded to {target}",
                      caller=call.caller, callee=call.callee, target=number)
        call.forwards = {"busy": record.forward_busy, "no_answer": record.forward_no_answer}
        call.callee = number
        call.forks = []
        offer = call.invite.request.body
        call.ring(bindings, offer)

    # -- diversion and dialling --------------------------------------------

    def divert(self, callee: str, reason: str) -> ToApplication | None:
        """Where a call to ``callee`` that fails for ``reason`` goes instead, by the diverters; or None."""
        return ask_diverters(self.diverters, callee, reason)

    def _divertible(self, callee: str, reason: str) -> ToApplication | None:
        action = self.divert(callee, reason)
        if action is not None and (action.name not in self.applications or self.media is None):
            self.log.warn("diverter named application {name!r}, which is not running", name=action.name)
            return None
        return action

    def _divert_new(self, transaction: ServerTransaction, caller: str, display: str, callee: str,
                    reason: str) -> bool:
        """Before anything rang: hand the caller to the application a diverter names, if any."""
        action = self._divertible(callee, reason)
        if action is None:
            return False
        self.log.info("call {caller} -> {callee} ({reason}) diverted", caller=caller, callee=callee, reason=reason)
        self._run_application(transaction, caller, callee, action, display)
        return True

    def _divert_call(self, call: Call, callee: str, reason: str) -> bool:
        """
        A ringing call nobody will answer: end it (forks cancelled, relay
        closed, its CDR written) and answer the same INVITE transaction with
        the application a diverter names, under the same To tag, so the 18x
        the caller saw and the 2xx belong to one dialog (RFC 3261 §12.1).
        """
        action = self._divertible(callee, reason)
        if action is None:
            return False
        self.log.info("call {caller} -> {callee} ({reason}) diverted", caller=call.caller, callee=callee,
                      reason=reason)
        early = call.early_answer
        call.diverted(reason)
        self._run_application(
            call.invite, call.caller, callee, action, call.caller_display, a_tag=call.a_tag,
            early=None if early is None else (early, self.relay.close(call.media.session)),
        )
        return True

    def dial(self, channel: Any, number: str, *, caller: str | None = None, caller_name: str | None = None,
             timeout: float | None = None) -> Deferred[str]:
        """
        Connect the caller on ``channel`` to extension ``number`` (see
        :meth:`pbx.interfaces.IPBX.dial`); fails with
        :class:`~pbx.media.channel.HungUp` if the caller hangs up first.
        """
        attempt = Dial(
            self, channel, caller=channel.caller if caller is None else caller,
            caller_name=channel.caller_name if caller_name is None else caller_name,
            timeout=self.config.calls.ring_timeout if timeout is None else timeout,
        )
        return Deferred.fromCoroutine(attempt.run(number))

    # -- endings -------------------------------------------------------------

    def call_ended(self, call: LiveCall) -> None:
        """A call is over: forget it and its dialogs, close its media, write its records."""
        self.calls.pop(call.call_id, None)
        for key in self._keys.pop(id(call), []):
            self._dialogs.pop(key, None)
        try:
            call.release_media()
        except Exception:
            self.log.failure("closing the media of {call_id} failed", call_id=call.call_id)
        self.log.info("call {caller} -> {callee} ended: {disposition} ({side} {cause})",
                      caller=call.caller, callee=call.callee, disposition=call.disposition,
                      side=call.hangup_side, cause=call.hangup_cause)
        for record in call.record():
            d = self.store.add_call_record(record)
            d.addErrback(lambda f: self.log.failure("writing a CDR failed", f))

    def _check_media_safely(self) -> None:
        try:
            self.check_media()
        except Exception:
            self.log.failure("media check failed")

    def check_media(self) -> None:
        """End answered calls whose media has stopped in both directions (a phone died)."""
        now = self.clock.seconds()
        limit = self.config.calls.media_timeout
        for call in list(self.calls.values()):
            if call.state != "confirmed":
                continue
            # Fix: silence counts from the answer at the earliest; the
            # session exists since the INVITE, so a call that rang longer
            # than media_timeout was ended before its media could start.
            since_answer = now - (call.answered_at if call.answered_at is not None else now)
            if min(call.inactive_for(now), since_answer) >= limit:
                call.hang_up("pbx", "media timeout")

    def live_calls(self) -> list[dict[str, Any]]:
        """Every call in progress, for the API."""
        return [c.summary() for c in self.calls.values()]


def _caller_refreshes(request: Request) -> bool:
    """RFC 4028 §9: whether the caller can refresh: it supports timers and left refreshing to itself."""
    supported = [v.strip().lower() for v in request.headers.get_all("Supported")]
    params = (request.headers.get("Session-Expires") or "").split(";")[1:]
    asked = {k.strip().lower(): v.strip().lower() for k, _, v in (p.partition("=") for p in params)}
    return "timer" in supported and asked.get("refresher", "uac") == "uac"


def display_name(name: str) -> str:
    """A quoted display name followed by a space, or '' (RFC 3261 §25.1 quoted-string)."""
    if not name:
        return ""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}" '


def _unquote(display: str) -> str:
    """The name inside a display_name() result."""
    text = display.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text


def _tag() -> str:
    import secrets

    return secrets.token_hex(6)
