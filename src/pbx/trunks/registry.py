"""
Every trunk of a switch, and which trunk an inbound INVITE belongs to.

An INVITE belongs to a trunk when its source is in the trunk's
``allow_from`` networks or addresses (IP authentication), or, for a trunk that
registers, when it comes from the carrier's address, or from the carrier's
host to our registered Contact (its user is the account) or to one of the
trunk's DIDs.  Anything else is an ordinary request (a phone, or a stranger
who reaches only the public routes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import evolve

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.calls.dialplan import Action
from pbx.calls.signalling import LegServices
from pbx.sip.dialog import LocalAddress
from pbx.sip.message import Request, SIPParseError
from pbx.sip.transaction import Peer
from pbx.trunks.config import RateTable, TrunkConfig, TrunksConfig
from pbx.trunks.hooks import TrunkHooks
from pbx.trunks.numbers import normalise
from pbx.trunks.tls import carrier_tls
from pbx.trunks.trunk import Trunk

__all__ = ["Trunks"]


class Trunks:
    """
    The running trunks.

    :ivar trunks: by name, in the configured order.
    :ivar rates: the rate table of least-cost routing.
    :ivar hooks: outbound decorators and inbound verifiers (see :mod:`pbx.trunks`).
    """

    log = Logger()

    def __init__(self, config: TrunksConfig, services: LegServices, local_address: Callable[[str], LocalAddress],
                 hooks: TrunkHooks | None = None) -> None:
        self.trunks = {t.name: Trunk(t, services, local_address) for t in config.trunks}
        #: FIPS mode: trunks added later (API, store) keep to approved algorithms too.
        self.approved_only = config.approved_only
        #: The trunks as the configuration file defines them.
        self.configured = {t.name: t for t in config.trunks}
        self._services = services
        self._local_address = local_address
        self._running = False
        self.rates: RateTable = config.rates
        self.hooks = hooks if hooks is not None else TrunkHooks()
        #: Resolves a carrier's host name (``IReactorCore.resolve``); None: names are not resolved.
        self.resolve: Callable[[str], Deferred[str]] | None = None
        #: The verifying TLS creators of the SIP connector, by ``(host, port)``.
        self.tls: dict[tuple[str, int], Any] | None = None

    def __bool__(self) -> bool:
        return bool(self.trunks)

    def start(self) -> None:
        """Register the registration trunks and start the keep-alives."""
        self._running = True
        for trunk in self.trunks.values():
            trunk.start(self.resolve, self.tls)

    def stop(self) -> None:
        """Unregister and stop every timer."""
        self._running = False
        for trunk in self.trunks.values():
            trunk.stop()

    def put(self, config: TrunkConfig) -> Trunk:
        """
        Run ``config`` as its trunk from now on: a trunk of that name is
        stopped (unregistered, its keep-alive ended) and the new one started.
        Calls in progress keep the trunk they went out on and end normally;
        new calls use the new one.  A ``tls`` trunk that verifies gets its
        verifying connection creator, as the file's trunks do at start.

        :raises StartupError: the trunk's ``ca`` cannot be read (nothing changed).
        """
        if self.approved_only:
            config = evolve(config, approved_only=True)
        if self.tls is not None and config.transport == "tls":
            self.tls.update(carrier_tls(TrunksConfig((config,))))
        old = self.trunks.get(config.name)
        if old is not None:
            old.stop()
        trunk = Trunk(config, self._services, self._local_address)
        if old is not None:
            # Calls up now release the trunk object they hold, not this one.
            trunk.calls_total = old.calls_total
        self.trunks[config.name] = trunk
        if self._running:
            trunk.start(self.resolve, self.tls)
        self.log.info("trunk {trunk} {what}", trunk=config.name, what="changed" if old is not None else "added")
        return trunk

    def remove(self, name: str) -> None:
        """Stop the trunk ``name`` (unregister, end its keep-alive) and forget it; calls in progress go on."""
        trunk = self.trunks.pop(name, None)
        if trunk is not None:
            trunk.stop()
            self.log.info("trunk {trunk} removed", trunk=name)

    def did_owner(self, number: str, but: str = "") -> str | None:
        """The trunk (other than ``but``) that has the DID ``number``, or None."""
        return next((t.name for t in self.trunks.values() if t.name != but and number in t.config.dids), None)

    def get(self, name: str) -> Trunk | None:
        """The trunk called ``name``."""
        return self.trunks.get(name)

    def identify(self, request: Request, peer: Peer) -> Trunk | None:
        """The trunk an INVITE from ``peer`` comes from, or None."""
        for trunk in self.trunks.values():
            config = trunk.config
            if any(source.matches(peer.host, peer.port) for source in config.allow_from):
                return trunk
            if not config.register:
                continue
            if (peer.host, peer.port) == (trunk.peer.host, trunk.peer.port):
                return trunk
            if peer.host == trunk.peer.host and (
                    request.uri.user == config.username or self.did(trunk, request) is not None):
                return trunk
        return None

    def did(self, trunk: Trunk, request: Request) -> tuple[str, Action] | None:
        """
        The DID an INVITE from ``trunk`` calls (the Request-URI's number,
        else To's, as E.164) and where it goes; None if it is none of the trunk's.
        """
        candidates = [request.uri.user or ""]
        try:
            candidates.append(request.to.uri.user or "")
        except SIPParseError:
            pass
        for text in candidates:
            number = normalise(text, trunk.config.country_code) if text else None
            if number is not None and number in trunk.config.dids:
                return number, trunk.config.dids[number]
        return None

    def called(self, trunk: Trunk, request: Request) -> str:
        """The E.164 number an INVITE from ``trunk`` calls (the Request-URI's, else To's), or ""."""
        candidates = [request.uri.user or ""]
        try:
            candidates.append(request.to.uri.user or "")
        except SIPParseError:
            pass
        for text in candidates:
            number = normalise(text, trunk.config.country_code) if text else None
            if number is not None:
                return number
        return ""

    def called_number(self, trunk: Trunk, request: Request) -> str:
        """The number an INVITE from ``trunk`` asked for, for the log (To's user, else the Request-URI's)."""
        try:
            return request.to.uri.user or request.uri.user or ""
        except SIPParseError:
            return request.uri.user or ""

    def summary(self) -> list[dict[str, Any]]:
        """Every trunk's state and settings, for the API."""
        return [trunk.summary() for trunk in self.trunks.values()]
