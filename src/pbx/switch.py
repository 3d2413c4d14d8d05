"""
The switch a configuration describes, wired in this one place: the SIP core
with the source defence that screens what reaches it (its bans go to the
audit trail and the security log, and close the banned source's SIP
connections) and the overload guard that sheds new work when pbx falls
behind, the registrar,
extension cache and request authenticator, the media relay and
what terminated calls need (codecs, prompts, a WAV loader), the call
controller and the SUBSCRIBE event server.

:class:`pbx.service.PBXService` builds the switch once the store is open and
migrated, starts it, and only then opens the listeners :func:`sip_listeners`
makes, one named child service per ``sip.listen`` entry.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Mapping
from typing import Any

from attrs import define, evolve

from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.web.client import Agent

from pbx.calls.cdr import CDRWriter
from pbx.calls.controller import CallController
from pbx.calls.dialplan import Dialplan
from pbx.calls.endpoint_media import MediaServices
from pbx.config import Config, RTPConfig, SecurityConfig
from pbx.emergency.desk import EmergencyDesk, make_desk
from pbx.errors import StartupError
from pbx.interfaces import ICodec, IDialplanApplication, IStore
from pbx.media.channel import load_audio
from pbx.media.playout import HoldMusic
from pbx.media.ports import PortAllocator
from pbx.media.prompts import PromptLibrary
from pbx.media.relay import Relay
from pbx.permissions.guard import Guard
from pbx.permissions.options import PermissionsConfig
from pbx.records import AuditEvent
from pbx.security.defence import Ban, SourceDefence
from pbx.security.lockout import Lockout
from pbx.security.log_file import AppendingFile, NoSecurityLog, SecurityLog
from pbx.sip.auth import DigestAuthenticator
from pbx.sip.authn import RequestAuthenticator
from pbx.sip.connections import StreamGuard, StreamLimits
from pbx.sip.core import SIPCore
from pbx.sip.events import EventServer
from pbx.sip.location import peer_for
from pbx.sip.overload import OverloadGuard
from pbx.sip.registrar import Registrar
from pbx.sip.sockets import (
    LocalAddresses,
    ServerTLS,
    SIPListener,
    StreamConnector,
    host_address,
)
from pbx.sip.transport import Transports
from pbx.stir.service import build_stir_shaken
from pbx.store.binding_writer import BindingWriter
from pbx.store.cache import ExtensionCache
from pbx.trunks.joins import (
    ask_guard,
    psap_callback,
    sign_calls,
    tell_desk,
    verify_calls,
)
from pbx.trunks.stored import load_routes, load_trunks
from pbx.trunks.tls import carrier_tls

__all__ = [
    "Switch", "build_switch", "drop_banned", "make_call_controller", "make_security_log", "media_address",
    "node_name", "sip_listeners",
]


@define(eq=False)
class Switch:
    """
    The parts of a running switch, built by :func:`build_switch`.

    :ivar addresses: our Via/Contact address per transport, filled in as the
        SIP listeners open.
    """

    core: SIPCore
    registrar: Registrar
    extensions: ExtensionCache
    authn: RequestAuthenticator
    relay: Relay
    calls: CallController
    events: EventServer
    addresses: LocalAddresses
    defence: SourceDefence
    security_log: SecurityLog | NoSecurityLog
    #: E911: locations, alerts, the PIDF-LO for trunks, PSAP callbacks.
    emergency: EmergencyDesk | None = None
    #: Calling permissions and the toll-fraud guard outbound routing asks.
    permissions: Guard | None = None
    log = Logger()

    async def start(self) -> None:
        """
        Open the security log, restore registrations, write the records of
        calls the last run left up, start the registrar's sweep and take
        calls; before any listener opens.

        :raises StartupError: the security log cannot be opened.
        """
        try:
            self.security_log.open()
        except OSError as e:
            raise StartupError(f"security.log {e.filename}: {e.strerror or e}") from e
        count = await self.registrar.load()
        self.log.info("registrations restored: {count}", count=count)
        assert self.calls.cdr is not None
        await self.calls.cdr.recover()
        assert self.calls.groups is not None
        await self.calls.groups.load(self.calls.store)
        self.registrar.start()
        if self.emergency is not None:
            await self.emergency.callbacks.load()
        assert self.calls.trunks is not None
        stored = await load_trunks(self.calls.store, self.calls.trunks)
        if stored:
            self.log.info("trunks from the API: {count}", count=stored)
        self.use_dialplan(
            await load_routes(self.calls.store, self.calls.config.dialplan, set(self.calls.trunks.trunks))
        )
        if self.permissions is not None:
            held = await self.permissions.load()
            if held:
                self.log.warn("outside calls of {count} extension(s) held after toll-fraud alerts", count=held)
        self.defence.start()
        if self.core.overload is not None:
            self.core.overload.start()
        self.calls.install()

    def use_dialplan(self, dialplan: Dialplan) -> None:
        """Route calls by ``dialplan`` from the next call on (trunk routes changed through the API)."""
        if dialplan is not self.calls.config.dialplan:
            self.calls.config = evolve(self.calls.config, dialplan=dialplan)

    def start_trunks(self) -> None:
        """Register with the carriers and start their keep-alives: once the SIP listeners name our address."""
        assert self.calls.trunks is not None
        self.calls.trunks.start()

    async def stop(self) -> None:
        """Hang up calls, end subscriptions, close relay sessions and stop the registrar's timers."""
        self.calls.stop()
        self.events.stop()
        await self.relay.close_all()
        self.registrar.stop()
        self.defence.stop()
        if self.core.overload is not None:
            self.core.overload.stop()

    async def flush(self) -> None:
        """Write pending binding changes, call records and the security log's lines (once the listeners are closed)."""
        if self.registrar.writer is not None:
            await self.registrar.writer.flush()
        if self.calls.cdr is not None:
            await self.calls.cdr.flush()
        await self.security_log.close()


def build_switch(
    config: Config,
    store: IStore,
    reactor: Any,
    secret: bytes,
    applications: dict[str, IDialplanApplication],
    codecs: Mapping[str, ICodec],
    streams: StreamLimits | None = None,
) -> Switch:
    """
    Wire the switch ``config`` describes; nothing listens or runs yet.

    :param store: the open, migrated store.
    :param reactor: provides TCP, UDP, SSL, threads and time.
    :param secret: the server secret (digest nonces).
    :param applications: the PBX's registry of dialplan applications, which
        features fill later.
    :param codecs: the codec plugins found at configuration time.
    :param streams: the limits on SIP connections phones open (derived
        from the descriptor limit, :mod:`pbx.descriptors`); None: defaults.
    """
    sip, sec = config.sip, config.security
    core = SIPCore(reactor, user_agent=sip.user_agent)
    auth = DigestAuthenticator(
        realm=sip.domain, clock=reactor, secret=secret, nonce_lifetime=sec.nonce_lifetime,
        algorithms=sip.digest_algorithms,
    )
    lockout = Lockout.from_config(reactor, sec)
    defence = SourceDefence.from_config(reactor, sec)
    core.defence = defence
    if sip.overload.lag_ms > 0 or sip.overload.queue_ms > 0:
        core.overload = OverloadGuard(reactor, sip.overload)
    security_log = make_security_log(sec, reactor)
    defence.add_ban_listener(security_log.banned)
    defence.add_ban_listener(functools.partial(audit_ban, store))
    defence.add_ban_listener(functools.partial(drop_banned, core.transports))
    extensions = ExtensionCache(store, reactor)
    authn = RequestAuthenticator(store, reactor, auth, lockout, extensions.get, defence, security_log)
    registrar = Registrar(store, reactor, authn, sip.registrar, writer=BindingWriter(store, reactor))
    core.handlers["REGISTER"] = registrar
    connector = StreamConnector(
        reactor, core.transports, verified=carrier_tls(config.trunks), approved_only=sip.tls.approved_only
    )
    core.transports.connect = connector.connect
    core.transports.guard = StreamGuard(reactor, streams or StreamLimits(), banned=defence.banned)
    rtp = config.rtp
    relay = Relay(reactor, PortAllocator(rtp.port_min, rtp.port_max), rtp.interface)
    addresses = LocalAddresses(sip.advertise)
    calls = make_call_controller(
        config, store, reactor, core, registrar, authn, extensions, relay, addresses, applications, codecs
    )
    assert calls.trunks is not None
    calls.trunks.resolve = reactor.resolve
    calls.trunks.tls = connector.verified
    events = EventServer(
        core, reactor, authn, sip.domain, addresses.local_address, registrar.contacts,
        functools.partial(peer_for, connected=core.transports.connected, outbound=registrar.outbound),
    )
    core.handlers["SUBSCRIBE"] = events
    emergency = make_desk(config.emergency, store, reactor, registrar.contacts)
    calls.events.subscribe(emergency.on_call_event, kinds=["created"])
    permissions = Guard(config.permissions or PermissionsConfig(), reactor, store, emergency=emergency.is_emergency)
    calls.events.subscribe(permissions.on_call_event, kinds=["ended"])
    calls.trunks.hooks.outbound += [ask_guard(permissions), tell_desk(emergency, config.sip.domain)]
    if config.emergency is not None:
        calls.trunks.hooks.inbound.append(psap_callback(emergency, tuple(config.emergency.trunks)))
    if config.stir_shaken is not None:
        stir = build_stir_shaken(config.stir_shaken, reactor, Agent(reactor), config.stir_credentials)
        if config.stir_shaken.signs:
            calls.trunks.hooks.outbound.append(sign_calls(stir))
        if config.stir_shaken.verifies:
            calls.trunks.hooks.inbound.append(verify_calls(stir, reactor))
    return Switch(core, registrar, extensions, authn, relay, calls, events, addresses, defence, security_log,
                  emergency=emergency, permissions=permissions)


def make_security_log(security: SecurityConfig, reactor: Any) -> SecurityLog | NoSecurityLog:
    """The security log ``security.log`` names, written in the reactor's thread pool; none if unset."""
    if not security.log:
        return NoSecurityLog()

    def in_thread(function: Any, *args: Any) -> Any:
        return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)

    return SecurityLog(AppendingFile(security.log), reactor, in_thread)


def drop_banned(transports: Transports, ban: Ban) -> None:
    """Close the banned source's SIP connections: nothing it sends is read any more."""
    closed = transports.drop_source(ban.host)
    if closed:
        Switch.log.info("closed {count} SIP connection(s) of banned {host}", count=closed, host=ban.host)


def audit_ban(store: IStore, ban: Ban) -> None:
    """Write a ban to the audit trail (``sip.ban``: the source, why and until when)."""
    detail = f"{ban.reason}; {ban.until - ban.since:.0f}s (ban {ban.strikes})"
    event = AuditEvent(ban.since, "sip.ban", "", ban.host, detail)
    d = store.add_audit(event)
    d.addErrback(lambda f: Switch.log.failure("audit of the ban of {host} failed", f, host=ban.host))


def make_call_controller(
    config: Config,
    store: IStore,
    reactor: Any,
    core: SIPCore,
    registrar: Registrar,
    authn: RequestAuthenticator,
    extensions: ExtensionCache,
    relay: Relay,
    addresses: LocalAddresses,
    applications: dict[str, IDialplanApplication],
    codecs: Mapping[str, ICodec],
) -> CallController:
    """The call controller, with what it is given to route and carry calls."""
    controller = CallController(
        core, registrar, authn, store, config, relay,
        addresses.local_address, media_address(config.rtp), extensions.get,
        applications=applications,
        media=MediaServices(dict(codecs), PromptLibrary(), load_audio(reactor)),
        cdr=CDRWriter(store, reactor, node_name(config)),
    )
    moh = config.moh
    if moh is not None and moh.enabled:
        controller.music = HoldMusic(moh.classes, moh.extensions, dict(codecs), controller.media_clock)
    return controller


def node_name(config: Config) -> str:
    """
    This pbx's name in the journal of live calls: its host and state
    directory, the same at every start of one installation and different
    for two that share a database.
    """
    return f"{socket.gethostname()}:{config.state_dir}"


def media_address(rtp: RTPConfig) -> str:
    """The address phones send RTP to: ``rtp.advertise``, else the bound interface, else this host's."""
    if rtp.advertise:
        return rtp.advertise
    return rtp.interface if rtp.interface not in ("0.0.0.0", "::") else host_address()


def sip_listeners(config: Config, reactor: Any, switch: Switch) -> list[SIPListener]:
    """One listener service per ``sip.listen`` entry, in order, feeding the switch's core."""
    tls = ServerTLS(config.sip.tls, config.state_dir, config.sip.domain)
    return [
        SIPListener(spec, reactor, switch.core.transports, switch.addresses, tls) for spec in config.sip.listen
    ]
