"""
The call controller: the transaction user for INVITE, ACK, BYE, CANCEL,
UPDATE, INFO and PRACK, and the switch's policy.

It authenticates callers, asks the dialplan where a call goes, builds the
call (legs plus media), and, when ringing returns an outcome, decides what
follows: a forward, a diversion to an application (voicemail), or a
failure.  In-dialog requests find their call through the dialog table
(RFC 3261 §12.2).  Every call's life goes out as call events; call detail
records are written by one subscriber.  Applications place calls of their
own with :meth:`CallController.originate` and :meth:`CallController.dial`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from attrs import define, evolve, field

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbx.calls.announce import Announcer
from pbx.calls.app_call import ApplicationCall
from pbx.calls.call import Call
from pbx.calls.cdr import CDRWriter
from pbx.calls.confirm import APPLICATION, Connect, Screen
from pbx.calls.dial import Dial, GroupDialling
from pbx.calls.dialplan import HangUp, ToApplication, ToExtension, ToGroup, ToTrunks
from pbx.calls.divert import Diverter
from pbx.calls.dnd_schedule import scheduled_dnd
from pbx.calls.early_refusal import APPLICATION as APPLICATION_REFUSED
from pbx.calls.early_refusal import EarlyRefusal, RefusalAnnouncement
from pbx.calls.endpoint_media import EndpointMedia, MediaServices
from pbx.calls.events import CallEvents
from pbx.calls.forks import BUSY, Outcome, Rung
from pbx.calls.groups import GroupDirectory, RingGroup
from pbx.calls.media import CallMedia
from pbx.calls.originated import Originated
from pbx.calls.outbound import OutboundCall, check_extra_headers, display_name
from pbx.calls.park import ParkingLot
from pbx.calls.pickup import Pickups
from pbx.calls.reach import Reach
from pbx.calls.replaces import Replacements
from pbx.calls.ringers import FollowMeRinger, GroupRinger, GroupRung
from pbx.calls.routing import Routing
from pbx.calls.signalling import LegServices, Location, SIPSender
from pbx.calls.tap import CallTap
from pbx.calls.transfer import OutsideTarget, Transfers
from pbx.config import Config
from pbx.emergency.numbers import is_emergency
from pbx.interfaces import IStore
from pbx.media.media_clock import MediaClock
from pbx.media.playout import HoldMusic
from pbx.records import Binding, ExtensionRecord
from pbx.sip.authn import RequestAuthenticator
from pbx.sip.core import SIPCore
from pbx.sip.dialog import LocalAddress
from pbx.sip.dialogs import DialogTable
from pbx.sip.ids import new_tag
from pbx.sip.message import Request, make_response
from pbx.sip.registrar import Registrar
from pbx.sip.transaction import Peer, ServerTransaction
from pbx.trunks.call import TrunkInboundCall
from pbx.trunks.follow_me import OutsideLegs
from pbx.trunks.hooks import InboundContext
from pbx.trunks.outbound import TrunkDialler
from pbx.trunks.registry import Trunks
from pbx.trunks.transfer import outside_party, outside_route
from pbx.trunks.trunk import Trunk

MEDIA_CHECK_INTERVAL = 5.0

LiveCall = Call | ApplicationCall | OutboundCall


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
    #: What terminated calls need: codecs, prompts, a WAV loader.
    media: MediaServices | None = None
    #: Music on hold (pbx answers holds itself); None passes holds on to the other phone.
    music: HoldMusic | None = None
    calls: dict[str, LiveCall] = field(factory=dict)
    #: Asked, in order, where a call nobody will answer goes (see IPBX.add_diverter).
    diverters: list[Diverter] = field(factory=list)
    #: Every call's life (CDR writing is one subscriber).
    events: CallEvents = field(factory=CallEvents)
    #: Writes call records and journals live calls (default: on ``store``, node "").
    cdr: CDRWriter | None = None
    #: The trunks calls go out through and come in from (default: ``config.trunks``).
    trunks: Trunks | None = None
    dialogs: DialogTable[LiveCall] = field(factory=DialogTable)
    #: The ring groups and who of their members is logged in (default: the config's groups).
    groups: GroupDirectory | None = None
    services: LegServices = field(init=False)
    routing: Routing = field(init=False)
    #: Blind and attended transfers (REFER) of relayed calls.
    transfers: Transfers = field(init=False)
    #: INVITEs with Replaces (RFC 3891) that take over a party's seat.
    replacements: Replacements = field(init=False)
    #: Call park (None without a ``park:`` section).
    parking: ParkingLot | None = field(init=False, default=None)
    #: Directed and group call pickup.
    pickups: Pickups = field(init=False)
    _checker: LoopingCall | None = None
    _media_clock: MediaClock | None = None
    log = Logger()

    def __attrs_post_init__(self) -> None:
        self.services = LegServices(
            sip=SIPSender(self.core), location=Location(self.registrar.contacts, self.local_address,
                                                      self.core.transports.connected, self.registrar.outbound),
            clock=self.core.clock, dialogs=self.dialogs, domain=self.config.sip.domain,
        )
        self.routing = Routing(lambda number: self.lookup(number), self.registrar.contacts, self.applications,
                               self.diverters, self._scheduled_dnd)
        if self.groups is None:
            self.groups = GroupDirectory(self.config.groups)
        if self.cdr is None:
            self.cdr = CDRWriter(self.store, self.core.clock)
        if self.trunks is None:
            self.trunks = Trunks(self.config.trunks, self.services, self.local_address)
        self.transfers = Transfers(self.services, self.routing, self.events,
                                   dialplan=lambda n: self.config.dialplan.resolve(n, authenticated=True),
                                   ring_timeout=self.config.calls.ring_timeout,
                                   recall_after=self.config.transfer.recall_after,
                                   blind_code=self.config.transfer.blind_code,
                                   outside=self._transfer_out,
                                   outside_keyed=self.config.transfer.outside_keyed,
                                   outside_party=outside_party)
        self.replacements = Replacements(self.services, self.events)
        if self.config.park is not None:
            self.parking = ParkingLot(self.services, self.routing, self.events, self.config.park,
                                      ring_timeout=self.config.calls.ring_timeout, music=lambda: self.music,
                                      media=lambda: self.media)
            self.transfers.parking = self.parking
        self.pickups = Pickups(self.services, lambda: self.calls.values(), self.config.pickup_groups)

    @property
    def clock(self) -> Any:
        """The injected clock."""
        return self.core.clock

    @property
    def media_clock(self) -> MediaClock:
        """The one 20 ms timer that ticks every terminated call's media."""
        if self._media_clock is None:
            self._media_clock = MediaClock(self.clock)
        return self._media_clock

    def install(self) -> None:
        """Take over call-related methods in the core, write CDRs, start the media watchdog."""
        for method in ("INVITE", "BYE", "CANCEL", "UPDATE", "INFO", "PRACK", "REFER"):
            self.core.handlers[method] = self._dispatch
        self.core.ack_handler = self.ack
        assert self.cdr is not None
        self.events.subscribe(self.cdr, kinds=CDRWriter.KINDS)
        self.cdr.start()
        self._checker = LoopingCall(self._check_media_safely)
        self._checker.clock = self.clock
        self._checker.start(MEDIA_CHECK_INTERVAL, now=False)

    def stop(self) -> None:
        """Hang up every call and stop the watchdog and the journal's touches."""
        if self._checker is not None and self._checker.running:
            self._checker.stop()
        if self.trunks is not None:
            self.trunks.stop()
        for call in list(self.calls.values()):
            if call.state in ("answered", "confirmed"):
                call.hang_up("pbx", "shutdown")
            elif isinstance(call, Call | OutboundCall):
                call.fail(503, "Service Unavailable")
        if self.cdr is not None:
            self.cdr.stop()

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
        """
        Handling a new INVITE raised: answer 500, and end the call it may
        have started, so no call stays listed holding its RTP ports.
        """
        self.log.failure("INVITE handling failed", failure)
        call = self.calls.get(transaction.request.call_id)
        if isinstance(call, Call) and call.invite is transaction and call.a.waiting:
            try:
                call.fail(500)  # answers the caller; the call then ends like any refused one
                return
            except Exception:
                self.log.failure("refusing the failed call {call_id} failed", call_id=call.call_id)
                self.call_ended(call)
        if transaction.state in ("trying", "proceeding"):
            transaction.respond(make_response(transaction.request, 500))

    def _cancel(self, transaction: ServerTransaction) -> None:
        """§9.2: a CANCEL matches a pending INVITE server transaction or gets 481."""
        invite = self.core.transactions.find_invite(transaction.request)
        call = self.calls.get(transaction.request.call_id)
        if invite is None or not isinstance(call, Call | ApplicationCall) or call.invite is not invite:
            transaction.respond(make_response(transaction.request, 481))
            return
        # §9.2: the 200 to CANCEL SHOULD carry the To tag of the INVITE's responses.
        transaction.respond(make_response(transaction.request, 200, to_tag=call.a_tag))
        call.cancelled()

    def _in_dialog(self, transaction: ServerTransaction) -> None:
        request = transaction.request
        entry = self.dialogs.match(request)
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
            if not (isinstance(call, Call) and self.transfers.leaving(call, leg)):
                call.hang_up(leg, "BYE")
        elif method in ("INVITE", "UPDATE"):
            dialog.update_target(request)
            call.reoffer(leg, transaction)
        elif method == "INFO":
            if isinstance(call, Call):
                self.transfers.info(call, leg, request)  # it only watches for feature codes
            call.info(leg, transaction)
        elif method == "REFER" and isinstance(call, Call):
            self.transfers.refer(call, leg, dialog, transaction)
        else:
            transaction.respond(make_response(request, 481 if method == "PRACK" else 501))

    def ack(self, request: Request, peer: Peer) -> None:
        """An ACK for a 2xx (outside transactions)."""
        entry = self.dialogs.match(request)
        if entry is not None:
            entry[0].acked(request)

    # -- new calls ---------------------------------------------------------

    async def _new_call(self, transaction: ServerTransaction) -> None:
        request = transaction.request
        if request.headers.get("Replaces") is not None:
            # RFC 3891 §3: a phone takes over a dialog of a call; only a known phone may.
            replacing = await self.authn.authenticate(transaction, proxy=True)
            if replacing is not None:
                self.replacements.invite(transaction, replacing.number,
                                         self.local_address(transaction.peer.transport))
            return
        trunk = self.trunks.identify(request, transaction.peer) if self.trunks else None
        if trunk is not None:
            await self._from_trunk(transaction, trunk)
            return
        number = request.uri.user or ""
        if self.parking is not None and self.parking.is_slot(number):
            retriever = await self.authn.authenticate(transaction, proxy=True)
            if retriever is not None:
                self.parking.retrieve(transaction, retriever.number, self.local_address(transaction.peer.transport))
            return
        if self.pickups.wanted(number):
            picker = await self.authn.authenticate(transaction, proxy=True)
            if picker is not None:
                self.pickups.pick(transaction, picker.number, self.local_address(transaction.peer.transport))
            return
        authenticated = bool(request.headers.get_all("Proxy-Authorization"))
        action = self.config.dialplan.resolve(number, authenticated=True)
        public = self.config.dialplan.resolve(number, authenticated=False)
        caller, display = "", ""
        record: ExtensionRecord | None = None
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
            action = self._group_action(number) or ToExtension(number)
        if isinstance(action, ToGroup):
            await self._ring_group(transaction, caller, display, action.name, expires)
            return
        if isinstance(action, HangUp):
            transaction.respond(make_response(request, action.status, action.reason or None, to_tag=new_tag()))
            return
        if isinstance(action, ToApplication):
            self._run_application(transaction, caller, number, action, display)
            return
        if record is not None and (emergency := self._emergency_route(number)) is not None:
            # Kari's Law: 911, with or without the outside-line prefix, goes out
            # on the emergency trunk order whatever the dialplan says.
            action = emergency
        if isinstance(action, ToTrunks):
            if record is None:
                # Outside lines cost money: only callers pbx authenticated use them.
                transaction.respond(make_response(request, 403, "Outside Lines Need Authentication",
                                                  to_tag=new_tag()))
                return
            await self._call_out(transaction, record, display, number, action, expires)
            return
        await self._ring_extension(transaction, caller, display, action.number, expires)

    # -- trunks ------------------------------------------------------------------

    async def _from_trunk(self, transaction: ServerTransaction, trunk: Trunk) -> None:
        """
        An INVITE from a trunk: not challenged (the trunk is who it is by
        its address); its DID says where it goes, an unknown DID gets 404.
        An inbound verifier may refuse it, or send it straight to an
        extension (a PSAP calling back an emergency caller).
        """
        assert self.trunks is not None
        request = transaction.request
        caller = request.from_.uri.user or "anonymous"
        display = display_name(request.from_.display_name or "")
        found = self.trunks.did(trunk, request)
        did = found[0] if found is not None else self.trunks.called(trunk, request)
        if trunk.full:
            self.log.warn("trunk {trunk}: call from {caller} to {did} refused: {n} calls already",
                          trunk=trunk.name, caller=caller, did=did, n=trunk.in_use)
            transaction.respond(make_response(request, 503, "Trunk Full", to_tag=new_tag()))
            return
        verdict = await self.trunks.hooks.verify(InboundContext(trunk.config, request, did, caller))
        if verdict.refuse:
            transaction.respond(make_response(request, verdict.refuse, verdict.reason or None, to_tag=new_tag()))
            return
        if found is None and not verdict.extension:
            self.log.warn("trunk {trunk}: call from {caller} to unknown DID {number}", trunk=trunk.name,
                          caller=caller, number=self.trunks.called_number(trunk, request))
            transaction.respond(make_response(request, 404, "Unknown DID", to_tag=new_tag()))
            return
        expires = self._session_expires(transaction)
        if expires is None:
            return
        self.log.info("trunk {trunk}: call from {caller} to DID {did}{notes}", trunk=trunk.name, caller=caller,
                      did=did, notes="".join(f" {k}={v}" for k, v in verdict.notes.items()))
        make_call = functools.partial(TrunkInboundCall, trunk=trunk, did=did,
                                      verstat=verdict.notes.get("verstat", ""))
        if verdict.extension:
            self._ring_directly(transaction, caller, display, verdict.extension, expires,
                                functools.partial(make_call, direct=True))
            return
        assert found is not None
        action = found[1]
        if isinstance(action, ToApplication):
            self._run_application(transaction, caller, did, action, display)
        elif isinstance(action, ToExtension):
            await self._ring_extension(transaction, caller, display, action.number, expires, make_call)
        else:
            transaction.respond(make_response(request, 404, "Unknown DID", to_tag=new_tag()))

    def _ring_directly(self, transaction: ServerTransaction, caller: str, display: str, number: str,
                       expires: int, make_call: Callable[..., Call]) -> None:
        """Ring ``number``'s phones past its DND, forwards, follow-me and voicemail."""
        bindings = self.registrar.contacts(number)
        if not bindings:
            transaction.respond(make_response(transaction.request, 480, "Not Registered", to_tag=new_tag()))
            return
        call = self._open_call(transaction, caller, display, number, expires, make_call)
        if call is None:
            return
        call.seen = {number}
        self.log.info("call {caller} -> {callee} rung directly ({n} phone(s))", caller=caller, callee=number,
                      n=len(bindings))
        self._ring(call, bindings)

    async def _call_out(self, transaction: ServerTransaction, record: ExtensionRecord, display: str,
                        dialled: str, action: ToTrunks, expires: int) -> None:
        """A phone dials a number a trunk route matches: the route's trunks are tried in turn."""
        assert self.trunks is not None
        codecs = self.media.codecs if self.media is not None else {}
        dialler = TrunkDialler(
            self.trunks, self.services, self.relay.open_session,
            lambda session: CallMedia(session, self.media_address, available=codecs),
            self.local_address, self.events, self._track, self.call_ended, self.config.calls.ring_timeout,
            announce_refusal=self._refuse_with_announcement,
        )
        refreshes = _caller_refreshes(transaction.request)
        await dialler.call_out(transaction, record, display, dialled, action, expires if refreshes else 0)

    async def _transfer_out(self, transferor: str, number: str, action: ToTrunks) -> OutsideTarget | tuple[int, str]:
        """Where a blind transfer to outside ``number`` rings (see :mod:`pbx.trunks.transfer`)."""
        if self.trunks is None:
            return 404, "No Trunks"
        return await outside_route(self.trunks, lambda n: self.lookup(n))(transferor, number, action)

    def _refuse_with_announcement(self, call: Call, status: int, reason: str, prompt: str) -> bool:
        """A refused outside call hears ``prompt`` as early media, then ``status`` (:mod:`pbx.calls.early_refusal`)."""
        if self.media is None or not call.invite.request.body or not call.a.waiting:
            return False
        self.log.info("call {caller} -> {callee} refused ({status}) after announcement {prompt}",
                      caller=call.caller, callee=call.callee, status=status, prompt=prompt)
        invite, tag = call.invite, call.a_tag
        call.diverted("refused", APPLICATION_REFUSED)
        refused = EarlyRefusal(
            self.services, invite, caller=call.caller, callee=call.callee,
            application=RefusalAnnouncement(prompt), args={}, address=self.local_address(invite.peer.transport),
            media=self._endpoint_media(call.caller, _unquote(call.caller_display), call.callee),
            events=self.events, on_end=self.call_ended, tag=tag, status=status, reason=reason,
        )
        self.calls[refused.call_id] = refused
        refused.start()
        return True

    def _emergency_route(self, number: str) -> ToTrunks | None:
        """The route of an emergency number out through ``emergency.trunk`` (those configured), or None."""
        section = self.config.emergency
        if section is None or self.trunks is None:
            return None
        names = tuple(name for name in section.trunks if self.trunks.get(name) is not None)
        called = is_emergency(number, section.dial, section.prefixes) if names else None
        if called is None or not number.endswith(called):
            return None
        return ToTrunks(names, strip=len(number) - len(called), emergency=True)

    def _track(self, call: LiveCall) -> None:
        """A call is in progress: in-dialog requests, the API and the shutdown find it."""
        self.calls[call.call_id] = call

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
            response = make_response(transaction.request, 422, to_tag=new_tag())
            response.headers.add("Min-SE", str(minimum))
            transaction.respond(response)
            return None
        return int(text)

    async def _ring_extension(self, transaction: ServerTransaction, caller: str, display: str,
                              target: str, expires: int, make_call: Callable[..., Call] = Call) -> None:
        request = transaction.request
        seen: set[str] = set()
        target, record, refuse = await self.routing.resolve_target(target, seen)
        if refuse:
            if refuse == 486 and self._divert_new(transaction, caller, display, target, "dnd"):
                return
            reason = {482: "Forwarding Loop", 486: "Do Not Disturb"}.get(refuse)
            transaction.respond(make_response(request, refuse, reason, to_tag=new_tag()))
            return
        assert record is not None
        bindings = self.registrar.contacts(target)
        # Follow-me rings the other numbers even when no phone of the extension is registered.
        followed = not bindings and target in self.config.follow_me
        why = "unavailable"
        if not bindings and not followed and record.forward_no_answer and record.forward_no_answer not in seen:
            number, forward, refuse = await self.routing.resolve_target(record.forward_no_answer, seen)
            if forward is not None:
                # A forward target that fails too: diverted as itself.
                target, record = number, forward
                bindings = self.registrar.contacts(target) if not refuse else []
                why = "dnd" if refuse == 486 else "unavailable"
        if not bindings and not followed:
            if not self._divert_new(transaction, caller, display, target, why):
                transaction.respond(make_response(request, 480, "Not Registered", to_tag=new_tag()))
            return
        call = self._open_call(transaction, caller, display, target, expires, make_call)
        if call is None:
            return
        call.forwards = {"busy": record.forward_busy, "no_answer": record.forward_no_answer}
        call.seen = seen
        self.log.info("call {caller} -> {callee} ({n} phone(s))", caller=caller, callee=target, n=len(bindings))
        self._ring_callee(call, bindings)

    def _open_call(self, transaction: ServerTransaction, caller: str, display: str, target: str,
                   expires: int, make_call: Callable[..., Call] = Call) -> Call | None:
        """A relayed call from the caller of ``transaction`` to ``target``; None (and 503) without media ports."""
        request = transaction.request
        try:
            session = self.relay.open_session()
        except Exception as e:
            self.log.warn("no media ports for a call: {e}", e=e)
            transaction.respond(make_response(request, 503, "No Media Ports", to_tag=new_tag()))
            return None
        call = make_call(
            self.services, transaction, caller=caller, callee=target, caller_display=display,
            media=CallMedia(session, self.media_address,
                            available=self.media.codecs if self.media is not None else {}),
            address=self.local_address(transaction.peer.transport),
            # RFC 4028 §9 table 2: a caller without "Supported: timer", or one
            # asking refresher=uas, makes the UAS the refresher.  pbx never
            # refreshes, so it runs no session timer for such a caller.
            session_expires=expires if _caller_refreshes(request) else 0,
            events=self.events, on_end=self.call_ended, music=self.music,
        )
        self.calls[call.call_id] = call
        return call

    def _ring(self, call: Call, bindings: list[Binding]) -> None:
        """Ring the callee; the policy takes the outcome (:meth:`_rung`)."""
        call.ring(bindings, self.config.calls.ring_timeout).addCallback(self._rung, call).addErrback(
            self._policy_failed, call)

    def _rung(self, rung: Rung, call: Call) -> None:
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
            if not self._divert_call(call, call.callee, reason):
                call.fail(status, "No Answer" if rung.outcome is Outcome.NO_ANSWER else None)
            return
        forwarded = Deferred.fromCoroutine(self._forward(call, forward, status, reason))
        forwarded.addCallback(lambda bindings: self._ring(call, bindings) if bindings else None)
        forwarded.addErrback(self._policy_failed, call)

    def _policy_failed(self, failure: Failure, call: Call) -> None:
        self.log.failure("routing the call {call_id} failed", failure, call_id=call.call_id)
        call.fail(500)

    async def _forward(self, call: Call, target: str, status: int, reason: str) -> list[Binding] | None:
        """Follow a busy or no-answer forward: the new callee's phones, or None when the call is settled."""
        if not self.routing.may_forward(target, call.seen):
            # A busy/no-answer forward back to an extension already rung.
            number, record, refuse = target, None, 482
        else:
            number, record, refuse = await self.routing.resolve_target(target, call.seen)
        if call.state not in ("routing", "ringing"):
            return None  # the caller cancelled meanwhile
        bindings = self.registrar.contacts(number) if not refuse else []
        if not bindings or record is None:
            # The forward target fails too: diverted as itself when it exists.
            if record is None:
                number = call.callee
            else:
                reason = "dnd" if refuse == 486 else "unavailable"
            if not self._divert_call(call, number, reason):
                call.fail(status)
            return None
        self.log.info("call {caller} -> {callee} forwarded to {target}",
                      caller=call.caller, callee=call.callee, target=number)
        call.forwards = {"busy": record.forward_busy, "no_answer": record.forward_no_answer}
        call.callee = number
        return bindings

    # -- ring groups, follow-me, DND by schedule -------------------------------------

    def _scheduled_dnd(self, number: str) -> bool:
        return scheduled_dnd(self.config.dnd_schedule, number, self.clock.seconds())

    def _reach(self) -> Reach:
        return Reach(lambda number: self.lookup(number), self.registrar.contacts, self._scheduled_dnd,
                     self._busy_numbers, lambda number: self.config.dialplan.resolve(number, authenticated=True))

    def _busy_numbers(self) -> Iterable[str]:
        """The extensions on an answered call now."""
        for call in self.calls.values():
            if call.state in ("answered", "confirmed"):
                yield from (call.caller, call.callee)
                if isinstance(call, Call) and call.b is not None:
                    yield call.b.binding.aor

    def _group_action(self, number: str) -> ToGroup | None:
        """A number no route matched that is a ring group's number."""
        assert self.groups is not None
        group = self.groups.by_number(number)
        return None if group is None else ToGroup(group.name)

    async def _ring_group(self, transaction: ServerTransaction, caller: str, display: str, name: str,
                          expires: int) -> None:
        """Ring a group's members by its strategy; the policy then takes the outcome (:meth:`_group_rung`)."""
        assert self.groups is not None
        group = self.groups.groups[name]
        call = self._open_call(transaction, caller, display, group.number, expires)
        if call is None:
            return
        self.log.info("call {caller} -> group {group} ({strategy})", caller=caller, group=name,
                      strategy=group.strategy)
        members = [m for m in self.groups.logged_in(group) if m != caller]  # a member calling its group
        ringer = GroupRinger(group, members, self._reach().member, call.ring,
                             lambda: call.state in ("routing", "ringing"), self.clock)
        Deferred.fromCoroutine(ringer.run()).addCallback(self._group_rung, call, group).addErrback(
            self._policy_failed, call)

    def _group_rung(self, ended: GroupRung, call: Call, group: RingGroup) -> None:
        """Nobody in the group answered: the group's final destination, else the caller hears the failure."""
        rung = ended.rung
        if rung.outcome in (Outcome.ANSWERED, Outcome.CANCELLED) or call.state == "ended":
            return
        if rung.outcome is Outcome.FAILED:
            call.fail(rung.status)
            return
        reason = {Outcome.BUSY: "busy", Outcome.NO_ANSWER: "no_answer"}.get(rung.outcome, "unavailable")
        status = rung.status if rung.status in BUSY else 480
        final = group.final_application
        if final is not None and final.name not in self.applications:
            self.log.warn("group {group}: final application {name!r} is not running", group=group.name,
                          name=final.name)
        if final is not None and final.name in self.applications:
            self._hand_over(call, group.number, final, reason)
        elif group.final_extension:
            self.log.info("group {group}: unanswered, to {number}", group=group.name, number=group.final_extension)
            forwarded = Deferred.fromCoroutine(self._forward(call, group.final_extension, status, reason))
            forwarded.addCallback(lambda bindings: self._ring(call, bindings) if bindings else None)
            forwarded.addErrback(self._policy_failed, call)
        else:
            call.fail(status, "No Answer" if rung.outcome is Outcome.NO_ANSWER else None)

    def _ring_callee(self, call: Call, bindings: list[Binding]) -> None:
        """Ring an extension's phones, and its follow-me numbers when it has a follow-me."""
        plan = self.config.follow_me.get(call.callee)
        if plan is None or (plan.confirm and self.media is None):
            # Without media services nobody could press 1: the other numbers stay silent.
            self._ring(call, bindings)
            return

        def waiting() -> bool:
            return call.state in ("routing", "ringing")

        timeout = plan.timeout or self.config.calls.ring_timeout
        screen = None
        outside = self._outside_numbers(plan.numbers)
        if plan.confirm or outside:
            screen = Screen(
                lambda number, phones: self._place(call.caller, _unquote(call.caller_display), number, phones,
                                                   timeout),
                lambda leg: self._take_screened(call, leg), waiting,
                place_outside=lambda number: Deferred.fromCoroutine(self._place_outside(call, plan.number, number,
                                                                                        timeout)),
                confirm=plan.confirm)
        ringer = FollowMeRinger(plan, bindings, self._reach().follow_me, call.ring, call.ring_more, waiting,
                                self.clock, self.config.calls.ring_timeout, screen, outside)
        Deferred.fromCoroutine(ringer.run()).addCallback(self._rung, call).addErrback(self._policy_failed, call)

    def _outside_numbers(self, numbers: Iterable[str]) -> tuple[str, ...]:
        """The follow-me numbers the dialplan sends out through a trunk (none without trunks or media)."""
        if self.trunks is None or self.media is None:
            return ()
        return tuple(n for n in numbers if self._emergency_route(n) is None
                     and isinstance(self.config.dialplan.resolve(n, authenticated=True), ToTrunks))

    async def _place_outside(self, call: Call, extension: str, number: str, timeout: float) -> OutboundCall | None:
        """A follow-me leg of ``extension``'s call to outside ``number``, through its trunk route."""
        assert self.trunks is not None
        action = self.config.dialplan.resolve(number, authenticated=True)
        record = await self.lookup(extension)
        if not isinstance(action, ToTrunks) or record is None or call.state not in ("routing", "ringing"):
            return None
        caller, name = call.caller, _unquote(call.caller_display)

        def make(*, services: Any, callee: str, identity: tuple[str, str], on_challenge: Any,
                 headers: Sequence[tuple[str, str]]) -> OutboundCall:
            return OutboundCall(services, caller=caller, callee=callee, caller_name=name,
                                media=self._endpoint_media(caller, name, callee), events=self.events,
                                on_end=self.call_ended, headers=headers, identity=identity,
                                on_challenge=on_challenge)

        leg = await OutsideLegs(self.trunks, make).place(extension, record.caller_id, number, action, timeout)
        if leg is not None and leg.state != "ended":
            self.calls[leg.call_id] = leg
        return leg

    def _take_screened(self, call: Call, leg: OutboundCall) -> bool:
        """A follow-me leg pressed 1: the caller is answered and bridged to it (see :mod:`pbx.calls.confirm`)."""
        if call.state not in ("routing", "ringing"):
            return False
        self._hand_over(call, call.callee, ToApplication(APPLICATION, {}), "follow_me", application=Connect(leg))
        return True

    def _endpoint_media(self, caller: str, caller_name: str, callee: str) -> Callable[[Callable[[str], None]], EndpointMedia]:
        """What makes a terminated call's media, given the call's hang-up callback."""
        assert self.media is not None
        services = evolve(self.media, reactor=self.clock, ports=self.relay.allocator,
                          media_clock=self.media_clock, interface=self.config.rtp.interface,
                          address=self.media_address)
        return lambda on_hangup: EndpointMedia(services, caller, caller_name, callee, on_hangup)

    def _run_application(self, transaction: ServerTransaction, caller: str, number: str,
                         action: ToApplication, display: str = "", a_tag: str | None = None,
                         early: tuple[bytes, Deferred[None]] | None = None, application: Any = None) -> None:
        """
        Answer the call ourselves and hand it to a dialplan application.

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
            media=self._endpoint_media(caller, _unquote(display), number),
            events=self.events, on_end=self.call_ended, tag=a_tag,
        )
        self.calls[call.call_id] = call
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

    # -- diversion -----------------------------------------------------------

    def _divertible(self, callee: str, reason: str) -> ToApplication | None:
        action = self.routing.divert(callee, reason)
        if action is not None and self.media is None:
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
        if isinstance(call, TrunkInboundCall) and call.direct:
            return False  # rung past voicemail on purpose
        action = self._divertible(callee, reason)
        if action is None:
            return False
        self._hand_over(call, callee, action, reason)
        return True

    def _hand_over(self, call: Call, callee: str, action: ToApplication, reason: str, application: Any = None) -> None:
        """End the ringing call and answer its caller with application ``action`` (see :meth:`_divert_call`)."""
        self.log.info("call {caller} -> {callee} ({reason}) diverted", caller=call.caller, callee=callee,
                      reason=reason)
        early = call.early_answer
        call.diverted(reason, action.name)
        self._run_application(
            call.invite, call.caller, callee, action, call.caller_display, a_tag=call.a_tag,
            early=None if early is None else (early, self.relay.close(call.media.session)),
            application=application,
        )

    # -- calls applications place -------------------------------------------------

    def _place(self, caller: str, caller_name: str, callee: str, bindings: list[Binding], timeout: float,
               on_ringing: Callable[[], None] | None = None,
               headers: Sequence[tuple[str, str]] = ()) -> OutboundCall:
        """Ring ``bindings`` of extension ``callee`` for an application; the call is tracked until it ends."""
        call = OutboundCall(self.services, caller=caller, callee=callee, caller_name=caller_name,
                            media=self._endpoint_media(caller, caller_name, callee),
                            events=self.events, on_end=self.call_ended, on_ringing=on_ringing,
                            headers=headers)
        call.start(bindings, timeout)
        if call.state != "ended":
            self.calls[call.call_id] = call
        return call

    def originate(self, number: str, *, caller: str, caller_name: str = "",
                  timeout: float | None = None, headers: Sequence[tuple[str, str]] = ()) -> Deferred[Originated]:
        """
        Ring extension ``number``'s phones (see :meth:`pbx.interfaces.IPBX.originate`).
        Cancelling the Deferred stops the ringing.

        :raises ValueError: if one of ``headers`` is not a header pbx may add.
        """
        extra = check_extra_headers(headers)
        ring_timeout = self.config.calls.ring_timeout if timeout is None else timeout
        placed: list[OutboundCall] = []

        def cancel(d: Deferred[Originated]) -> None:
            for call in placed:
                call.hang_up("a", "cancelled")

        async def ring() -> Originated:
            record = await self.lookup(number)
            if record is None or not record.enabled or self.media is None:
                return Originated("not_found" if self.media is not None else "failed")
            bindings = self.registrar.contacts(number)
            if not bindings:
                return Originated("unavailable")
            call = self._place(caller, caller_name, number, bindings, ring_timeout, headers=extra)
            placed.append(call)
            rung: Rung = await call.outcome
            if rung.outcome is not Outcome.ANSWERED:
                return Originated(rung.outcome.value)
            return Originated("answered", call.channel, call.ended,
                              lambda: call.hang_up("a", "hung up"), call.call_id)

        result: Deferred[Originated] = Deferred(cancel)
        Deferred.fromCoroutine(ring()).addCallbacks(result.callback, self._originate_failed, errbackArgs=(result,))
        return result

    def _originate_failed(self, failure: Failure, result: Deferred[Originated]) -> None:
        if not failure.check(CancelledError):
            self.log.failure("originate failed", failure)
        if not result.called:
            result.callback(Originated("failed"))

    def dial(self, channel: Any, number: str, *, caller: str | None = None, caller_name: str | None = None,
             timeout: float | None = None) -> Deferred[str]:
        """
        Connect the caller on ``channel`` to extension ``number`` (see
        :meth:`pbx.interfaces.IPBX.dial`); fails with
        :class:`~pbx.media.channel.HungUp` if the caller hangs up first.
        """
        shown = channel.caller if caller is None else caller
        name = channel.caller_name if caller_name is None else caller_name
        ring_timeout = self.config.calls.ring_timeout if timeout is None else timeout
        attempt = Dial(
            self.routing,
            lambda callee, bindings, on_ringing: self._place(shown, name, callee, bindings, ring_timeout,
                                                             on_ringing),
            channel, caller=shown, caller_name=name, timeout=ring_timeout,
            groups=GroupDialling(
                lambda number: self._group_to_dial(number, shown), self._reach().member,
                lambda callee, bindings, on_ringing, seconds: self._place(shown, name, callee, bindings, seconds,
                                                                          on_ringing),
                self.clock),
        )
        return Deferred.fromCoroutine(attempt.run(number))

    def _group_to_dial(self, number: str, caller: str) -> tuple[RingGroup, list[str]] | None:
        """The group an application dials as ``number``, with its members to ring (not the caller)."""
        assert self.groups is not None
        group = self.groups.by_number(number)
        if group is None:
            return None
        return group, [m for m in self.groups.logged_in(group) if m != caller]

    # -- endings -------------------------------------------------------------

    def call_ended(self, call: LiveCall) -> None:
        """A call is over: forget it and its dialogs, close its media."""
        self.calls.pop(call.call_id, None)
        self.dialogs.drop(call)
        try:
            if isinstance(call, Call):
                self.relay.close(call.media.session)
            else:
                call.release_media()
        except Exception:
            self.log.failure("closing the media of {call_id} failed", call_id=call.call_id)
        self.log.info("call {caller} -> {callee} ended: {disposition} ({side} {cause})",
                      caller=call.caller, callee=call.callee, disposition=call.disposition,
                      side=call.hangup_side, cause=call.hangup_cause)

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
            # Silence counts from the answer at the earliest: the relay
            # session exists since the INVITE.
            since_answer = now - (call.answered_at if call.answered_at is not None else now)
            if min(call.inactive_for(now), since_answer) >= limit:
                call.hang_up("pbx", "media timeout")

    def live_calls(self) -> list[dict[str, Any]]:
        """Every call in progress, for the API."""
        return [c.summary() for c in self.calls.values()]

    def tap_call(self, call_id: str) -> CallTap | None:
        """The media of answered relayed call ``call_id`` to listen to (see :meth:`pbx.interfaces.IPBX.tap_call`)."""
        call = self.calls.get(call_id)
        if not isinstance(call, Call) or call.b is None or call.state not in ("answered", "confirmed"):
            return None
        codecs = self.media.codecs if self.media is not None else {}
        announcer = (None if self.media is None
                     else Announcer(codecs, self.media.prompts, self.media.load, self.media_clock, self.clock))
        return CallTap(call.call_id, call.caller, call.callee, call.media, codecs, announcer)


def _caller_refreshes(request: Request) -> bool:
    """RFC 4028 §9: whether the caller can refresh: it supports timers and left refreshing to itself."""
    supported = [v.strip().lower() for v in request.headers.get_all("Supported")]
    params = (request.headers.get("Session-Expires") or "").split(";")[1:]
    asked = {k.strip().lower(): v.strip().lower() for k, _, v in (p.partition("=") for p in params)}
    return "timer" in supported and asked.get("refresher", "uac") == "uac"


def _unquote(display: str) -> str:
    """The name inside a display_name() result."""
    text = display.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text
