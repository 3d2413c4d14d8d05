"""
The SIP side of a running PBX: the core, the registrar and the listeners
named in ``sip.listen``.
"""

from __future__ import annotations

import socket
from typing import Any

from attrs import define, field

from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import ClientFactory, Factory
from twisted.logger import Logger

from pbx.calls.controller import CallController, MediaServices
from pbx.config import Config
from pbx.errors import ListenError
from pbx.interfaces import IStore
from pbx.media.channel import load_audio
from pbx.media.codecs import available_codecs
from pbx.media.ports import PortAllocator
from pbx.media.prompts import PromptLibrary
from pbx.media.relay import Relay
from pbx.security.lockout import Lockout
from pbx.sip.auth import DigestAuthenticator
from pbx.sip.authn import RequestAuthenticator
from pbx.sip.core import SIPCore
from pbx.sip.dialog import LocalAddress
from pbx.sip.events import EventServer
from pbx.sip.registrar import Registrar
from pbx.sip.tls import server_context
from pbx.sip.transaction import Peer
from pbx.sip.transport import SIPDatagramProtocol, SIPStreamFactory
from pbx.store.cache import ExtensionCache
from pbx.store.writebehind import BindingWriter


def host_address() -> str:
    """This host's address as its name resolves (no packet is sent)."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


#: UDP receive buffer asked for (the kernel caps it at net.core.rmem_max):
#: room for a burst of requests while the reactor is busy.
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024


def _grow_receive_buffer(port: Any) -> None:
    sock = getattr(port, "socket", None)
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
    except OSError:
        pass


@define(eq=False)
class SIPService:
    """
    Owns the SIP core and its sockets.

    :ivar reactor: provides TCP, UDP, SSL and time.
    """

    config: Config
    store: IStore
    reactor: Any
    secret: bytes
    #: The PBX's registry of dialplan applications (features fill it).
    applications: dict[str, Any] = field(factory=dict)
    core: SIPCore = field(init=False)
    registrar: Registrar = field(init=False)
    extensions: ExtensionCache = field(init=False)
    authn: RequestAuthenticator = field(init=False)
    relay: Relay = field(init=False)
    calls: CallController = field(init=False)
    events: EventServer = field(init=False)
    listeners: list[str] = field(factory=list)
    _ports: list[IListeningPort] = field(factory=list)
    _addresses: dict[str, LocalAddress] = field(factory=dict)
    log = Logger()

    def __attrs_post_init__(self) -> None:
        sip, sec = self.config.sip, self.config.security
        self.core = SIPCore(self.reactor, user_agent=sip.user_agent)
        auth = DigestAuthenticator(
            realm=sip.domain, clock=self.reactor, secret=self.secret, nonce_lifetime=sec.nonce_lifetime,
            algorithms=sip.digest_algorithms,
        )
        lockout = Lockout(
            self.reactor,
            max_failures=sec.lockout_failures,
            window=sec.lockout_window,
            base_delay=sec.lockout_delay,
            max_delay=sec.lockout_max_delay,
        )
        self.extensions = ExtensionCache(self.store, self.reactor)
        self.authn = RequestAuthenticator(self.store, self.reactor, auth, lockout, self.extensions.get)
        self.registrar = Registrar(
            self.store, self.reactor, self.authn, sip.registrar,
            writer=BindingWriter(self.store, self.reactor),
        )
        self.core.handlers["REGISTER"] = self.registrar
        self.core.transports.connect = self._connect
        rtp = self.config.rtp
        self.relay = Relay(self.reactor, PortAllocator(rtp.port_min, rtp.port_max), rtp.interface)
        media_address = rtp.advertise or (
            rtp.interface if rtp.interface not in ("0.0.0.0", "::") else host_address())
        self.calls = CallController(
            self.core, self.registrar, self.authn, self.store, self.config, self.relay,
            self.local_address, media_address, self.extensions.get,
            applications=self.applications,
            media=MediaServices(available_codecs(), PromptLibrary(), load_audio(self.reactor)),
        )
        self.events = EventServer(
            self.core, self.reactor, self.authn, sip.domain, self.local_address,
            self.registrar.contacts, self.calls.peer_for,
        )
        self.core.handlers["SUBSCRIBE"] = self.events

    async def start(self) -> None:
        """Load bindings, start the sweep, open every listener."""
        count = await self.registrar.load()
        self.log.info("registrations restored: {count}", count=count)
        self.registrar.start()
        self.calls.install()
        tls_context = None
        for spec in self.config.sip.listen:
            try:
                if spec.transport == "udp":
                    port = self.reactor.listenUDP(
                        spec.port, SIPDatagramProtocol(self.core.receive), interface=spec.interface
                    )
                    _grow_receive_buffer(port)
                    if self.core.transports.udp is None:
                        self.core.transports.udp = port
                elif spec.transport == "tcp":
                    port = self.reactor.listenTCP(
                        spec.port, SIPStreamFactory(self.core.transports, "tcp"), interface=spec.interface
                    )
                else:
                    if tls_context is None:
                        tls_context, print_, generated = server_context(
                            self.config.sip.tls, self.config.state_dir, self.config.sip.domain
                        )
                        self.log.info(
                            "TLS certificate {how}, SHA-256 fingerprint {fp}",
                            how="generated (self-signed)" if generated else "loaded", fp=print_,
                        )
                    port = self.reactor.listenSSL(
                        spec.port, SIPStreamFactory(self.core.transports, "tls"), tls_context,
                        interface=spec.interface,
                    )
            except Exception as e:
                raise ListenError(f"sip.listen {spec}: {e}") from e
            self._ports.append(port)
            host = port.getHost()
            self.listeners.append(f"sip:{spec.transport}:{host.host}:{host.port}")
            self._addresses.setdefault(spec.transport, LocalAddress(
                spec.transport, self._advertised(host.host), host.port))

    def _advertised(self, bound: str) -> str:
        """The address to name in Via/Contact for a socket bound to ``bound``."""
        if self.config.sip.advertise:
            return self.config.sip.advertise
        if bound not in ("", "0.0.0.0", "::"):
            return bound
        return host_address()

    def local_address(self, transport: str) -> LocalAddress:
        """Our Via/Contact address on ``transport`` (another transport's if we lack it)."""
        address = self._addresses.get(transport)
        if address is None:
            address = next(iter(self._addresses.values()))
        return address

    def _connect(self, peer: Peer, factory: Factory) -> None:
        """Open an outgoing TCP or TLS connection for a request."""
        if peer.transport == "tls":
            from twisted.internet.ssl import CertificateOptions

            # Phones present self-signed certificates; the connection is
            # encrypted but the phone is identified by its registration.
            self.reactor.connectSSL(peer.host, peer.port, _Failing(factory, self, peer), CertificateOptions())
        else:
            self.reactor.connectTCP(peer.host, peer.port, _Failing(factory, self, peer))

    async def stop(self) -> None:
        """Hang up calls, close listeners and stop timers."""
        self.calls.stop()
        self.events.stop()
        await self.relay.close_all()
        self.registrar.stop()
        for port in self._ports:
            await maybeDeferred(port.stopListening)
        self._ports.clear()
        if self.registrar.writer is not None:
            await self.registrar.writer.flush()


class _Failing(ClientFactory):
    """A client factory that reports a failed connection to the transports."""

    noisy = False

    def __init__(self, inner: Factory, service: SIPService, peer: Peer) -> None:
        self._inner = inner
        self._service = service
        self._peer = peer

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802 - twisted API
        return self._inner.buildProtocol(addr)

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:  # noqa: N802 - twisted API
        self._service.core.transports.connect_failed(self._peer)
