"""
The call controller: the transaction user for INVITE, ACK, BYE, CANCEL,
UPDATE, INFO and PRACK, and the switch's policy.

It authenticates callers, asks the dialplan where a call goes, builds the
call (legs plus media), and, when ringing returns an outcome, decides what
follows: a forward, a diversion to an application (voicemail), or a
failure.  Requests within calls, and CANCEL, go to :mod:`pbx.calls.in_dialog`.
Every call's life goes out as call events; call detail
records are written by one subscriber.  Applications place calls of their
own with :meth:`CallController.originate` and :meth:`CallController.dial`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from attrs import define, field

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbx.calls.announce import Announcer
from pbx.calls.answering import Answering
from pbx.calls.call import Call
from pbx.calls.cdr import CDRWriter
from pbx.calls.consult import Consults, InCallMedia
from pbx.calls.dialplan import HangUp, ToApplication, ToExtension, ToGroup, ToTrunks
from pbx.calls.divert import Diverter
from pbx.calls.dnd_schedule import scheduled_dnd
from pbx.calls.endpoint_media import EndpointMedia, MediaServices
from pbx.calls.events import CallEvents
from pbx.calls.forks import Rung
from pbx.calls.group_policy import GroupPolicy
from pbx.calls.groups import GroupDirectory, RingGroup
from pbx.calls.in_dialog import InDialog, LiveCall
from pbx.calls.keys import CallKeys
from pbx.calls.media import CallMedia
from pbx.calls.media_watchdog import MediaWatchdog
from pbx.calls.originated import Originated
from pbx.calls.outbound import OutboundCall, display_name
from pbx.calls.park import ParkingLot
from pbx.calls.pickup import Pickups
from pbx.calls.placing import Placing
from pbx.calls.reach import Reach
from pbx.calls.replaces import Replacements
from pbx.calls.ring_outcome import RingOutcome
from pbx.calls.routing import Routing
from pbx.calls.session_timer import caller_refreshes, session_expires
from pbx.calls.signalling import LegServices, Location, SIPSender
from pbx.calls.tap import CallTap
from pbx.calls.transfer import OutsideTarget, Transfers
from pbx.calls.transfer_app import ApplicationSeats
from pbx.calls.transfer_group import TransferGroups
from pbx.calls.trunk_entry import TrunkEntry
from pbx.config import Config
from pbx.interfaces import IStore
from pbx.media.media_clock import MediaClock
from pbx.media.playout import HoldMusic
from pbx.media.srtp_policy import SrtpPolicy
from pbx.records import Binding, ExtensionRecord
from pbx.sip.authn import RequestAuthenticator
from pbx.sip.core import SIPCore
from pbx.sip.dialog import LocalAddress
from pbx.sip.dialogs import DialogTable
from pbx.sip.ids import new_tag
from pbx.sip.message import Request, make_response
from pbx.sip.registrar import Registrar
from pbx.sip.transaction import Peer, ServerTransaction
from pbx.trunks.registry import Trunks
from pbx.trunks.transfer import outside_party, outside_route
from pbx.trunks.trunk import Trunk


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
    #: Applications that blind transfers handed calls to.
    app_seats: ApplicationSeats = field(init=False)
    keys: CallKeys = field(init=False)  # what parties press in relayed calls
    #: INVITEs with Replaces (RFC 3891) that take over a party's seat.
    replacements: Replacements = field(init=False)
    #: Call park (None without a ``park:`` section).
    parking: ParkingLot | None = field(init=False, default=None)
    #: Directed and group call pickup.
    pickups: Pickups = field(init=False)
    _in_dialog: InDialog = field(init=False)
    _watchdog: MediaWatchdog = field(init=False)
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
        media = InCallMedia(lambda: self.media.codecs if self.media else {}, lambda: self.media_clock, lambda: self.music)
        self.transfers.consults = Consults(self.services, self.routing, self.events, self.relay, self.media_address,
                                           media, self.config.transfer, self.transfers.dialplan,
                                           self.config.calls.ring_timeout, self._transfer_out, outside_party)
        self.transfers.applications = self.app_seats = ApplicationSeats(
            self.services, self.events, self.applications, lambda *who: None if self.media is None else self._endpoint_media(*who))
        self.transfers.groups = TransferGroups(self.groups, lambda n: self._reach().member(n), self.routing, self.clock,
                                               self.config.transfer.recall_after)
        self.keys = CallKeys(self.events, self.calls.get)
        t = self.config.transfer
        if t.blind_code or t.attended_code or t.three_way_code:
            self.keys.subscribe(self.transfers.key)
        self.replacements = Replacements(self.services, self.events)
        if self.config.park is not None:
            self.parking = ParkingLot(self.services, self.routing, self.events, self.config.park,
                                      ring_timeout=self.config.calls.ring_timeout, music=lambda: self.music,
                                      media=lambda: self.media)
            self.transfers.parking = self.parking
        self.pickups = Pickups(self.services, lambda: self.calls.values(), self.config.pickup_groups)
        self._watchdog = MediaWatchdog(self.clock, lambda: self.calls.values(), lambda: self.config.calls.media_timeout)
        self._in_dialog = InDialog(self.core.transactions.find_invite, self.calls.get, self.dialogs,
                                   self.app_seats, self.transfers, self.keys)

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
        self._watchdog.start()

    def stop(self) -> None:
        """Hang up every call and stop the watchdog and the journal's touches."""
        self._watchdog.stop()
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
            self._in_dialog.cancel(transaction)
            return
        if request.to.tag:
            self._in_dialog.request(transaction)
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

    def ack(self, request: Request, peer: Peer) -> None:
        """An ACK for a 2xx (outside transactions): the call of its dialog takes it."""
        self._in_dialog.ack(request, peer)

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
            record = await self.authn.authenticate(transaction, proxy=True,
                                                   emergency=self._emergency_route(number) is not None)
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
            self._run_application(transaction, caller, number, action, display,
                                  srtp=record.srtp if record is not None else SrtpPolicy.OFFERED)
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

    def _trunk_entry(self) -> TrunkEntry:
        """Who routes calls from and to trunks, given the controller's current services."""
        return TrunkEntry(self.trunks, self.services, self.relay, self.media, self.media_address, self.local_address,
                          self.events, self.config, self.registrar.contacts, self._session_expires,
                          self._run_application, self._ring_extension, self._open_call, self._ring, self._track,
                          self.call_ended, self._refuse_with_announcement, self.music)

    async def _from_trunk(self, transaction: ServerTransaction, trunk: Trunk) -> None:
        """An INVITE from a trunk (see :meth:`TrunkEntry.from_trunk`)."""
        await self._trunk_entry().from_trunk(transaction, trunk)

    async def _call_out(self, transaction: ServerTransaction, record: ExtensionRecord, display: str,
                        dialled: str, action: ToTrunks, expires: int) -> None:
        """A phone dials a number a trunk route matches (see :meth:`TrunkEntry.call_out`)."""
        await self._trunk_entry().call_out(transaction, record, display, dialled, action, expires)

    async def _transfer_out(self, transferor: str, number: str, action: ToTrunks) -> OutsideTarget | tuple[int, str]:
        """Where a blind transfer to outside ``number`` rings (see :mod:`pbx.trunks.transfer`)."""
        if self.trunks is None:
            return 404, "No Trunks"
        return await outside_route(self.trunks, lambda n: self.lookup(n))(transferor, number, action)

    def _refuse_with_announcement(self, call: Call, status: int, reason: str, prompt: str) -> bool:
        """A refused outside call hears ``prompt`` first (see :meth:`Answering.refuse_with_announcement`)."""
        return self._answering().refuse_with_announcement(call, status, reason, prompt)

    def _emergency_route(self, number: str) -> ToTrunks | None:
        """The route of an emergency number out through ``emergency.trunk`` (those configured), or None."""
        return self._trunk_entry().emergency_route(number)

    # -- extensions ----------------------------------------------------------------

    def _track(self, call: LiveCall) -> None:
        """A call is in progress: in-dialog requests, the API and the shutdown find it."""
        self.calls[call.call_id] = call

    def _session_expires(self, transaction: ServerTransaction) -> int | None:
        """RFC 4028 §8.1: refuse a session interval below Min-SE with 422 (see :func:`session_expires`)."""
        return session_expires(transaction, self.config.calls.min_session_expires)

    async def _ring_extension(self, transaction: ServerTransaction, caller: str, display: str,
                              target: str, expires: int, make_call: Callable[..., Call] = Call) -> None:
        request = transaction.request
        seen: set[str] = set()
        target, record, refuse = await self.routing.resolve_target(target, seen)
        calling = await self.routing.lookup(caller)
        caller_srtp = calling.srtp if calling is not None else SrtpPolicy.OFFERED
        if refuse:
            if refuse == 486 and self._divert_new(transaction, caller, display, target, "dnd", caller_srtp):
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
            if not self._divert_new(transaction, caller, display, target, why, caller_srtp):
                transaction.respond(make_response(request, 480, "Not Registered", to_tag=new_tag()))
            return
        call = self._open_call(transaction, caller, display, target, expires, make_call, caller_srtp=caller_srtp)
        if call is None:
            return
        call.callee_srtp = record.srtp
        call.forwards = {"busy": record.forward_busy, "no_answer": record.forward_no_answer}
        call.seen = seen
        self.log.info("call {caller} -> {callee} ({n} phone(s))", caller=caller, callee=target, n=len(bindings))
        self._ring_callee(call, bindings)

    def _open_call(self, transaction: ServerTransaction, caller: str, display: str, target: str,
                   expires: int, make_call: Callable[..., Call] = Call, *, caller_srtp: str = "offered") -> Call | None:
        """A relayed call from the caller of ``transaction`` to ``target``; None (and 503) without media ports."""
        request = transaction.request
        try:
            session = self.relay.open_session()
        except Exception as e:
            self.log.warn("no media ports for a call: {e}", e=e)
            transaction.respond(make_response(request, 503, "No Media Ports", to_tag=new_tag()))
            return None
        media = CallMedia(session, self.media_address, available=self.media.codecs if self.media is not None else {})
        media.secure("a", transaction.peer.transport, caller_srtp)  # a trunk's call then takes the trunk's
        call = make_call(
            self.services, transaction, caller=caller, callee=target, caller_display=display,
            media=media,
            address=self.local_address(transaction.peer.transport),
            # RFC 4028 §9 table 2: a caller without "Supported: timer", or one
            # asking refresher=uas, makes the UAS the refresher.  pbx never
            # refreshes, so it runs no session timer for such a caller.
            session_expires=expires if caller_refreshes(request) else 0,
            events=self.events, on_end=self.call_ended, music=self.music,
        )
        self.calls[call.call_id] = call
        return call

    def _ring_outcome(self) -> RingOutcome:
        """Who rings a callee and settles the outcome, given the controller's current services."""
        return RingOutcome(self.routing, self.registrar.contacts, self.config.calls.ring_timeout, self._divert_call)

    def _ring(self, call: Call, bindings: list[Binding]) -> None:
        """Ring the callee; the policy takes the outcome (see :meth:`RingOutcome.ring`)."""
        self._ring_outcome().ring(call, bindings)

    def _rung(self, rung: Rung, call: Call) -> None:
        """Ringing is over: nothing more when answered; else forward, divert or fail."""
        self._ring_outcome().rung(rung, call)

    def _policy_failed(self, failure: Failure, call: Call) -> None:
        """Settling the call raised: the caller hears 500."""
        self._ring_outcome().policy_failed(failure, call)

    async def _forward(self, call: Call, target: str, status: int, reason: str) -> list[Binding] | None:
        """Follow a busy or no-answer forward (see :meth:`RingOutcome.forward`)."""
        return await self._ring_outcome().forward(call, target, status, reason)

    # -- ring groups, follow-me, DND by schedule -------------------------------------

    def _scheduled_dnd(self, number: str) -> bool:
        return scheduled_dnd(self.config.dnd_schedule, number, self.clock.seconds())

    def _group_policy(self) -> GroupPolicy:
        """Who rings ring groups and follow-me numbers, given the controller's current services."""
        assert self.groups is not None
        return GroupPolicy(self.config, self.groups, self.applications, self.media, self.clock,
                           lambda number: self.lookup(number), self.registrar.contacts, self._scheduled_dnd,
                           lambda: self.calls.values(), self._open_call, self._ring, self._rung, self._forward,
                           self._hand_over, self._policy_failed, self._place, self.trunks, self._emergency_route,
                           self._endpoint_media, self.events, self._track, self.call_ended)

    def _reach(self) -> Reach:
        """Who of a group or a follow-me can be rung now (see :meth:`GroupPolicy.reach`)."""
        return self._group_policy().reach()

    def _group_action(self, number: str) -> ToGroup | None:
        """A number no route matched that is a ring group's number."""
        return self._group_policy().group_action(number)

    async def _ring_group(self, transaction: ServerTransaction, caller: str, display: str, name: str,
                          expires: int) -> None:
        """Ring a group's members by its strategy (see :meth:`GroupPolicy.ring_group`)."""
        await self._group_policy().ring_group(transaction, caller, display, name, expires)

    def _ring_callee(self, call: Call, bindings: list[Binding]) -> None:
        """Ring an extension's phones, and its follow-me numbers when it has a follow-me."""
        self._group_policy().ring_callee(call, bindings)

    def _group_to_dial(self, number: str, caller: str) -> tuple[RingGroup, list[str]] | None:
        """The group an application dials as ``number``, with its members to ring (not the caller)."""
        return self._group_policy().group_to_dial(number, caller)

    def _endpoint_media(self, caller: str, caller_name: str, callee: str) -> Callable[[Callable[[str], None]], EndpointMedia]:
        """What makes a terminated call's media, given the call's hang-up callback."""
        return self._placing().endpoint_media(caller, caller_name, callee)

    def _answering(self) -> Answering:
        """Who answers calls with dialplan applications, given the controller's current services."""
        return Answering(self.services, self.events, self.applications, self.media, self.relay, self.routing,
                         self.local_address, self._endpoint_media, self._track, self.call_ended)

    def _run_application(self, transaction: ServerTransaction, caller: str, number: str,
                         action: ToApplication, display: str = "", a_tag: str | None = None,
                         early: tuple[bytes, Deferred[None]] | None = None, application: Any = None,
                         srtp: str = SrtpPolicy.OFFERED) -> None:
        """Answer the call ourselves and hand it to a dialplan application (see :meth:`Answering.run_application`)."""
        self._answering().run_application(transaction, caller, number, action, display, a_tag, early, application,
                                          srtp=srtp)

    def _divert_new(self, transaction: ServerTransaction, caller: str, display: str, callee: str,
                    reason: str, srtp: str = SrtpPolicy.OFFERED) -> bool:
        """Before anything rang: hand the caller to the application a diverter names, if any."""
        return self._answering().divert_new(transaction, caller, display, callee, reason, srtp)

    def _divert_call(self, call: Call, callee: str, reason: str) -> bool:
        """A ringing call nobody will answer: diverted when a diverter names an application (see :meth:`Answering.divert_call`)."""
        return self._answering().divert_call(call, callee, reason)

    def _hand_over(self, call: Call, callee: str, action: ToApplication, reason: str, application: Any = None) -> None:
        """End the ringing call and answer its caller with application ``action`` (see :meth:`Answering.hand_over`)."""
        self._answering().hand_over(call, callee, action, reason, application)

    # -- calls applications place -------------------------------------------------

    def _placing(self) -> Placing:
        """Who places calls for applications, given the controller's current services."""
        return Placing(self.services, self.events, self.relay, self.media, lambda: self.media_clock, self.clock,
                       self.config, self.media_address, lambda number: self.lookup(number),
                       self.registrar.contacts, self.routing, self._track, self.call_ended,
                       self._group_to_dial, self._reach)

    def _place(self, caller: str, caller_name: str, callee: str, bindings: list[Binding], timeout: float,
               on_ringing: Callable[[], None] | None = None,
               headers: Sequence[tuple[str, str]] = ()) -> OutboundCall:
        """Ring ``bindings`` of extension ``callee`` for an application; the call is tracked until it ends."""
        return self._placing().place(caller, caller_name, callee, bindings, timeout, on_ringing, headers)

    def originate(self, number: str, *, caller: str, caller_name: str = "",
                  timeout: float | None = None, headers: Sequence[tuple[str, str]] = ()) -> Deferred[Originated]:
        """
        Ring extension ``number``'s phones (see :meth:`pbx.interfaces.IPBX.originate`).
        Cancelling the Deferred stops the ringing.

        :raises ValueError: if one of ``headers`` is not a header pbx may add.
        """
        return self._placing().originate(number, caller=caller, caller_name=caller_name, timeout=timeout,
                                         headers=headers)

    def dial(self, channel: Any, number: str, *, caller: str | None = None, caller_name: str | None = None,
             timeout: float | None = None) -> Deferred[str]:
        """
        Connect the caller on ``channel`` to extension ``number`` (see
        :meth:`pbx.interfaces.IPBX.dial`); fails with
        :class:`~pbx.media.channel.HungUp` if the caller hangs up first.
        """
        return self._placing().dial(channel, number, caller=caller, caller_name=caller_name, timeout=timeout)

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
        return CallTap(call.call_id, call.caller, call.callee, call.media, codecs, announcer,
                       lambda listener: self.keys.watch(call, listener))
