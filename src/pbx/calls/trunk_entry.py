"""
Calls that come in from trunks and go out to trunks: an INVITE from a trunk
rung by its DID (or straight to an extension an inbound verifier names), a
phone's call out through a trunk route, and the emergency route that
overrides the dialplan for emergency numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from attrs import define

from twisted.logger import Logger

from pbx.calls.call import Call
from pbx.calls.dialplan import ToApplication, ToExtension, ToTrunks
from pbx.calls.endpoint_media import MediaServices
from pbx.calls.events import CallEvents
from pbx.calls.media import CallMedia
from pbx.calls.outbound import display_name
from pbx.calls.session_timer import caller_refreshes
from pbx.calls.signalling import LegServices
from pbx.config import Config
from pbx.emergency.numbers import is_emergency
from pbx.media.playout import HoldMusic
from pbx.records import Binding, ExtensionRecord
from pbx.sip.dialog import LocalAddress
from pbx.sip.ids import new_tag
from pbx.sip.message import make_response
from pbx.sip.transaction import ServerTransaction
from pbx.trunks.call import TrunkInboundCall
from pbx.trunks.hooks import InboundContext
from pbx.trunks.outbound import TrunkDialler
from pbx.trunks.registry import Trunks
from pbx.trunks.trunk import Trunk


@define(eq=False)
class TrunkEntry:
    """
    Routes calls from and to trunks.

    :ivar relay: opens relay sessions for calls out (``open_session()``).
    :ivar media: the codecs calls may use; None when no media services run.
    :ivar contacts: an extension's registered phones.
    :ivar session_expires: the INVITE's session interval, or None once refused (RFC 4028 §8.1).
    :ivar run_application: answers a call and hands it to a dialplan application.
    :ivar ring_extension: rings an extension with its DND, forwards, follow-me and voicemail.
    :ivar open_call: a relayed call for an INVITE, or None once refused.
    :ivar ring: rings a call's callee, the policy taking the outcome.
    :ivar track: lists a call in progress.
    :ivar call_ended: told when a call is over.
    :ivar announce_refusal: plays a refused call out an announcement before its refusal
        (call, status, reason, prompt); False when it cannot (:mod:`pbx.calls.early_refusal`).
    """

    trunks: Trunks | None
    services: LegServices
    relay: Any
    media: MediaServices | None
    media_address: str
    local_address: Callable[[str], LocalAddress]
    events: CallEvents
    config: Config
    contacts: Callable[[str], list[Binding]]
    session_expires: Callable[[ServerTransaction], int | None]
    run_application: Callable[..., None]
    ring_extension: Callable[..., Awaitable[None]]
    open_call: Callable[..., Call | None]
    ring: Callable[[Call, list[Binding]], None]
    track: Callable[[Any], None]
    call_ended: Callable[[Any], None]
    announce_refusal: Callable[[Call, int, str, str], bool]
    #: Music on hold for calls out (calls in get it from ``open_call``); None passes holds on.
    music: HoldMusic | None = None
    log = Logger()

    async def from_trunk(self, transaction: ServerTransaction, trunk: Trunk) -> None:
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
        expires = self.session_expires(transaction)
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
            self.run_application(transaction, caller, did, action, display, srtp=trunk.config.srtp)
        elif isinstance(action, ToExtension):
            await self.ring_extension(transaction, caller, display, action.number, expires, make_call)
        else:
            transaction.respond(make_response(request, 404, "Unknown DID", to_tag=new_tag()))

    def _ring_directly(self, transaction: ServerTransaction, caller: str, display: str, number: str,
                       expires: int, make_call: Callable[..., Call]) -> None:
        """Ring ``number``'s phones past its DND, forwards, follow-me and voicemail."""
        bindings = self.contacts(number)
        if not bindings:
            transaction.respond(make_response(transaction.request, 480, "Not Registered", to_tag=new_tag()))
            return
        call = self.open_call(transaction, caller, display, number, expires, make_call)
        if call is None:
            return
        call.seen = {number}
        self.log.info("call {caller} -> {callee} rung directly ({n} phone(s))", caller=caller, callee=number,
                      n=len(bindings))
        self.ring(call, bindings)

    async def call_out(self, transaction: ServerTransaction, record: ExtensionRecord, display: str,
                       dialled: str, action: ToTrunks, expires: int) -> None:
        """A phone dials a number a trunk route matches: the route's trunks are tried in turn."""
        assert self.trunks is not None
        codecs = self.media.codecs if self.media is not None else {}
        dialler = TrunkDialler(
            self.trunks, self.services, self.relay.open_session,
            lambda session: CallMedia(session, self.media_address, available=codecs),
            self.local_address, self.events, self.track, self.call_ended, self.config.calls.ring_timeout,
            announce_refusal=self.announce_refusal, music=self.music,
        )
        refreshes = caller_refreshes(transaction.request)
        await dialler.call_out(transaction, record, display, dialled, action, expires if refreshes else 0)

    def emergency_route(self, number: str) -> ToTrunks | None:
        """The route of an emergency number out through ``emergency.trunk`` (those configured), or None."""
        section = self.config.emergency
        if section is None or self.trunks is None:
            return None
        names = tuple(name for name in section.trunks if self.trunks.get(name) is not None)
        called = is_emergency(number, section.dial, section.prefixes) if names else None
        if called is None or not number.endswith(called):
            return None
        return ToTrunks(names, strip=len(number) - len(called), emergency=True)
