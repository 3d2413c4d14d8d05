"""
One trunk while pbx runs: its registration, its keep-alive, the calls it
carries now, and where its requests go.

A carrier named by a host name is resolved to an address (its A record:
RFC 3263 §4.2's last step; NAPTR and SRV are not looked up) when the trunk
starts, tried again every 30 s after a failure; until then the trunk is
down and nothing is sent to it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from attrs import define, evolve

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbx.calls.forks import Fork
from pbx.calls.signalling import LegServices, Location
from pbx.records import Binding
from pbx.sip.dialog import LocalAddress
from pbx.sip.digest_client import authorized_retry
from pbx.sip.message import Request, Response
from pbx.sip.transaction import Peer
from pbx.trunks.config import TrunkConfig
from pbx.trunks.keepalive import KeepAlive
from pbx.trunks.registration import Registration

__all__ = ["RESOLVE_RETRY", "Trunk", "TrunkLocation"]

#: Seconds before a carrier's name that did not resolve is tried again.
RESOLVE_RETRY = 30.0


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@define(eq=False)
class TrunkLocation(Location):
    """Where a trunk's requests go: its next hop, whatever the Request-URI says."""

    peer: Peer | None = None

    def peer_for(self, binding: Binding) -> Peer:
        """The trunk's next hop (the carrier, or its outbound proxy)."""
        assert self.peer is not None
        return self.peer


class Trunk:
    """
    A configured trunk, running.

    :param services: the switch's leg services; the trunk's own copy sends to its next hop.
    :ivar in_use: calls out through the trunk now (ringing or up).
    """

    log = Logger()

    def __init__(self, config: TrunkConfig, services: LegServices, local_address: Callable[[str], LocalAddress]) -> None:
        self.config = config
        host, port = config.next_hop
        self.peer = Peer(config.transport, host, port)
        self._location = TrunkLocation(services.location.contacts, local_address, services.location.connected,
                                       services.location.outbound, peer=self.peer)
        self.services = evolve(services, location=self._location)
        self._clock = services.clock
        send = services.sip.request
        self.registration = (Registration(config, send, local_address, self.peer, services.clock)
                             if config.register else None)
        self.keepalive = KeepAlive(config, send, local_address, self.peer, services.clock)
        self.in_use = 0
        self.calls_total = 0
        self._retry: Any = None

    @property
    def name(self) -> str:
        """The trunk's name."""
        return self.config.name

    @property
    def up(self) -> bool:
        """Whether calls may be sent: its address is known and OPTIONS says it is up (or no keep-alive runs)."""
        return _is_address(self.peer.host) and self.keepalive.up

    @property
    def full(self) -> bool:
        """Whether it carries ``max_calls`` calls already."""
        return bool(self.config.max_calls) and self.in_use >= self.config.max_calls

    def start(self, resolve: Callable[[str], Deferred[str]] | None = None,
              tls: dict[tuple[str, int], Any] | None = None) -> None:
        """
        Register and start pinging; first resolve the next hop's name, if it is one.

        :param resolve: a host name to an address (``IReactorCore.resolve``).
        :param tls: the verifying TLS creators by ``(host, port)``: the
            resolved address gets the creator of the name.
        """
        host = self.peer.host
        if resolve is None or _is_address(host):
            self._started()
            return
        d = resolve(host)
        d.addCallbacks(self._resolved, self._unresolved, callbackArgs=(host, tls), errbackArgs=(resolve, tls))

    def _resolved(self, address: str, name: str, tls: dict[tuple[str, int], Any] | None) -> None:
        self.log.info("trunk {trunk}: {name} is {address}", trunk=self.name, name=name, address=address)
        if tls is not None and (name, self.peer.port) in tls:
            tls[(address, self.peer.port)] = tls[(name, self.peer.port)]
        self._use(Peer(self.peer.transport, address, self.peer.port))
        self._started()

    def _unresolved(self, failure: Failure, resolve: Callable[[str], Deferred[str]],
                    tls: dict[tuple[str, int], Any] | None) -> None:
        self.log.warn("trunk {trunk}: cannot resolve {name}: {why}; trying again in {delay}s", trunk=self.name,
                      name=self.peer.host, why=failure.getErrorMessage(), delay=RESOLVE_RETRY)
        self._retry = self._clock.callLater(RESOLVE_RETRY, self.start, resolve, tls)

    def _use(self, peer: Peer) -> None:
        """Send everything to ``peer`` from now on."""
        self.peer = peer
        self._location.peer = peer
        self.keepalive.peer = peer
        if self.registration is not None:
            self.registration.peer = peer

    def _started(self) -> None:
        if self.registration is not None:
            self.registration.start()
        self.keepalive.start()

    def stop(self) -> None:
        """Unregister, stop pinging."""
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self.registration is not None:
            self.registration.stop()
        self.keepalive.stop()

    def take(self) -> None:
        """A call starts on the trunk."""
        self.in_use += 1
        self.calls_total += 1

    def release(self) -> None:
        """A call on the trunk is over."""
        self.in_use = max(0, self.in_use - 1)

    def binding(self, number: str) -> Binding:
        """The target an INVITE for ``number`` goes to: ``sip:number@carrier``."""
        uri = self.config.uri
        scheme = "sips" if uri.scheme == "sips" else "sip"
        port = f":{uri.port}" if uri.port else ""
        suffix = "" if self.config.transport == "udp" else f";transport={self.config.transport}"
        host = f"[{uri.host_address}]" if ":" in uri.host_address else uri.host_address
        return Binding(aor=self.name, contact=f"{scheme}:{number}@{host}{port}{suffix}", expires_at=0.0,
                       transport=self.config.transport)

    def answer_challenge(self, fork: Fork, response: Response) -> Request | None:
        """``fork``'s INVITE again with this trunk's credentials (RFC 3261 §22.2), or None without any."""
        if not self.config.password:
            return None
        return authorized_retry(
            fork.invite, response, self.config.digest_user, self.config.password, self.config.digest_algorithms
        )

    def summary(self) -> dict[str, Any]:
        """The trunk's live state and settings (no password), for the API."""
        state: dict[str, Any] = {
            **self.config.public(), "up": self.up, "keepalive_state": self.keepalive.state,
            "calls_in_use": self.in_use, "calls_total": self.calls_total,
        }
        state["registration"] = self.registration.summary() if self.registration is not None else None
        return state
