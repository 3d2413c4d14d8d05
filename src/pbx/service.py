"""
The running PBX: one MultiService that owns the store and the switch, with a
named child service per listener (``sip.listen[0]``, ..., ``api.listen``) and
per feature.

Startup is asynchronous and happens in :meth:`PBXService.startService`:
the store opens and migrates, the switch is built by :mod:`pbx.switch` and
started, every listener binds, the features start; only then is anything
generated or stored for the configuration (extensions, administrators, the
server secret, the features' :meth:`~PBXService.before_ready` work such as
voicemail PINs), so a start that cannot bind its ports leaves the
credentials as they were.  Generated secrets are shown once, in one block,
just before the one ``pbx ready`` line.  A failure at any step logs one line
and is told to the :class:`~pbx.interfaces.IStartupReport` (which ends the
process with a non-zero status).
"""

from __future__ import annotations

import gc
import os
import secrets
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any

from zope.interface import implementer
from zope.interface.interface import InterfaceClass

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    ensureDeferred,
    maybeDeferred,
    succeed,
)
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger, LogPublisher, globalLogPublisher
from twisted.web.iweb import IRequest

from pbx.api.app import PBXApi
from pbx.api.groups import GroupsAPI
from pbx.api.groups import openapi_paths as groups_paths
from pbx.api.http import make_site
from pbx.api.limits import LimitedFactory
from pbx.api.park import ParkAPI
from pbx.api.park import openapi_paths as park_paths
from pbx.api.security import SecurityAPI
from pbx.api.security import openapi_paths as security_paths
from pbx.api.tokens import Session
from pbx.config import Config
from pbx.descriptors import ConnectionBudget, raise_descriptor_limit, share_descriptors
from pbx.emergency.api import EmergencyAPI, extension_paths
from pbx.emergency.api import openapi_paths as emergency_paths
from pbx.emergency.interfaces import IEmergencyEvents
from pbx.errors import ListenError, StartupError
from pbx.interfaces import IPBX, ICodec, IDialplanApplication, IStartupReport, IStore
from pbx.log_level import filter_observers, level_named
from pbx.permissions.api import PermissionsAPI
from pbx.permissions.api import openapi_paths as permissions_paths
from pbx.plugin_loader import ConfiguredFeature
from pbx.provisioning import drop_placeholders, sync_admins, sync_extension
from pbx.security.connections import ConnectionCaps
from pbx.security.lockout import Lockout
from pbx.security.passwords import hash_password, verify_password
from pbx.security.pending import PendingPINs
from pbx.store.url import open_store
from pbx.switch import Switch, build_switch, sip_listeners
from pbx.trunks.api import TrunksAPI
from pbx.trunks.api import openapi_paths as trunks_paths
from pbx.trunks.hooks import TrunkHooks
from pbx.trunks.routes_api import RoutesAPI
from pbx.trunks.routes_api import openapi_paths as routes_paths


@implementer(IPBX)
class PBXService(MultiService):
    """
    The PBX.

    :param config: the validated configuration.
    :param reactor: the reactor everything runs on (listening, threads, time).
    :param features: the enabled feature plugins with their options.
    :param report: told how the start ended (the daemon's
        :class:`~pbx.startup_report.TwistdStartupReport` stops the reactor
        and exits non-zero on failure); None: only logged.
    :param codecs: the codec plugins found with the features
        (:func:`pbx.plugin_loader.discover_codecs`).
    :param log_publisher: whose observers ``log.level`` filters while the
        PBX runs (default: the global one, which holds twistd's log).
    """

    log = Logger()

    def __init__(
        self,
        config: Config,
        reactor: Any,
        features: list[ConfiguredFeature] = [],  # noqa: B006 - never mutated
        report: IStartupReport | None = None,
        *,
        codecs: Mapping[str, ICodec],
        log_publisher: LogPublisher | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.clock = reactor
        self.store: IStore | None = None
        self.applications: dict[str, IDialplanApplication] = {}
        self.listeners: list[str] = []
        self.features = [f.plugin.name for f in features]
        self.started_at = 0.0
        self.tcp = reactor
        self.lockout = Lockout.from_config(reactor, config.security)
        self._provided: dict[InterfaceClass, Any] = {}
        self.api: PBXApi | None = None
        #: The switch (SIP core, registrar, calls, events), built once the store is open.
        self.sip: Switch | None = None
        self.ready: Deferred[None] = Deferred()
        self._configured = features
        self._codecs = codecs
        self._listener_services: list[IService] = []
        self._report = report
        self._log_publisher = globalLogPublisher if log_publisher is None else log_publisher
        self._unfilter_log: Callable[[], None] = lambda: None
        self._before_ready: list[Callable[[], Deferred[Any] | Coroutine[Any, Any, Any]]] = []
        self._secrets: list[tuple[str, str, str]] = []
        #: PINs stored as placeholders while their hash is made (after the store opens).
        self.pins: PendingPINs | None = None
        #: What features add to calls through trunks (the switch's trunks use these).
        self.trunk_hooks = TrunkHooks()

    # -- IPBX --------------------------------------------------------------

    def register_application(self, application: IDialplanApplication) -> None:
        """Make a dialplan application reachable by its name."""
        if application.name in self.applications:
            raise ValueError(f"dialplan application {application.name!r} is registered twice")
        self.applications[application.name] = application

    def add_diverter(self, diverter: Callable[[str, str], Any]) -> None:
        """Offer calls nobody will answer to ``diverter`` (see IPBX)."""
        self._sip().calls.diverters.append(diverter)

    def dial(self, channel: Any, number: str, caller: str | None = None, caller_name: str | None = None,
             timeout: float | None = None) -> Deferred[str]:
        """Connect the caller on ``channel`` to extension ``number`` (see IPBX)."""
        return self._sip().calls.dial(channel, number, caller=caller, caller_name=caller_name, timeout=timeout)

    def originate(self, number: str, caller: str, caller_name: str = "",
                  timeout: float | None = None, headers: Sequence[tuple[str, str]] = ()) -> Deferred[Any]:
        """Ring extension ``number``'s phones; the answered leg's channel or the outcome (see IPBX)."""
        return self._sip().calls.originate(number, caller=caller, caller_name=caller_name, timeout=timeout,
                                           headers=headers)

    def subscribe_calls(self, subscriber: Callable[[Any], object],
                        kinds: Iterable[str] | None = None) -> Callable[[], None]:
        """Hand ``subscriber`` every call event, or those of ``kinds`` (see IPBX)."""
        events = self._sip().calls.events
        return events.subscribe(subscriber) if kinds is None else events.subscribe(subscriber, kinds)

    def tap_call(self, call_id: str) -> Any:
        """The media of answered relayed call ``call_id`` to listen to, or None (see IPBX)."""
        return self.sip.calls.tap_call(call_id) if self.sip is not None else None

    def register_event_package(self, package: Any) -> None:
        """Accept SUBSCRIBE for ``package`` (see IPBX)."""
        self._sip().events.register(package)

    def notify(self, event: str, resource: str) -> None:
        """Tell subscribers of ``resource`` that its ``event`` state changed."""
        if self.sip is not None:
            self.sip.events.notify(event, resource)

    def mount_api(self, name: str, resource: Any, paths: dict[str, Any]) -> None:
        """Serve a feature's API under ``/api/v1/<name>/`` (see IPBX)."""
        if self.api is None:
            raise RuntimeError("the API is not running yet")
        self.api.mount(name, resource, paths)

    def before_ready(self, work: Callable[[], Deferred[Any] | Coroutine[Any, Any, Any]]) -> None:
        """Run ``work`` after the config is in the store, before ``pbx ready`` (see IPBX)."""
        self._before_ready.append(work)

    def announce_secret(self, kind: str, name: str, secret: str) -> None:
        """Show a generated secret once, in the block before ``pbx ready`` (see IPBX)."""
        self._secrets.append((kind, name, secret))

    def run_in_thread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        """Run blocking ``f`` in the reactor's thread pool (see IPBX)."""
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), f, *args, **kwargs)

    def authenticate(self, request: IRequest) -> Session:
        """The session of an API request (see IPBX)."""
        if self.api is None:
            raise RuntimeError("the API is not running yet")
        return self.api.authenticate(request)

    def provide(self, interface: InterfaceClass, provider: Any) -> None:
        """Offer ``provider`` to other features as the provider of ``interface`` (see IPBX)."""
        if not interface.providedBy(provider):
            raise TypeError(f"{provider!r} does not provide {interface.__name__}")
        if interface in self._provided:
            raise ValueError(f"{interface.__name__} is provided twice")
        self._provided[interface] = provider

    def lookup(self, interface: InterfaceClass) -> Any:
        """The provider of ``interface``, or None (see IPBX)."""
        return self._provided.get(interface)

    def _sip(self) -> Switch:
        if self.sip is None:
            raise RuntimeError("SIP is not running yet")
        return self.sip

    def extension_changed(self, number: str) -> None:
        """An extension was changed through the API: drop cached copies."""
        if self.sip is not None:
            self.sip.extensions.invalidate(number)

    def extension_deleted(self, number: str) -> None:
        """Forget the registrations of a deleted extension."""
        if self.sip is not None:
            self.sip.extensions.invalidate(number)
            self.sip.registrar.forget(number)

    def credentials_changed(self, username: str) -> None:
        """End every API session of ``username`` (see IPBX)."""
        if self.api is not None:
            self.api.revoke_sessions(username)

    def live_calls(self) -> list[dict[str, Any]]:
        """Calls in progress."""
        return self.sip.calls.live_calls() if self.sip is not None else []

    # -- off-thread password work -----------------------------------------

    def hash_secret(self, secret: str) -> Deferred[str]:
        """PBKDF2 hash ``secret`` in the reactor's thread pool."""
        return self.run_in_thread(hash_password, secret)

    def verify_secret(self, secret: str, encoded: str) -> Deferred[bool]:
        """
        Check ``secret`` against a PBKDF2 encoding in the reactor's thread
        pool, or against the PIN held in memory for a placeholder.
        """
        held = self.pins.verify(secret, encoded) if self.pins is not None else None
        if held is not None:
            return succeed(held)
        return self.run_in_thread(verify_password, secret, encoded)

    def hold_pin(self, pin: str) -> str:
        """A placeholder to store as a PIN's encoding until its hash is made (see IPBX)."""
        return self._pins().hold(pin)

    def hash_pin_later(self, number: str, placeholder: str) -> None:
        """Hash the PIN held under ``placeholder`` off the startup path (see IPBX)."""
        self._pins().hash_later(number, placeholder)

    def _pins(self) -> PendingPINs:
        if self.pins is None:
            raise RuntimeError("the store is not open yet")
        return self.pins

    # -- lifecycle ---------------------------------------------------------

    def startService(self) -> None:  # noqa: N802 - twisted API
        """Start asynchronously; see the module docstring."""
        rtp = self.config.rtp
        self._unfilter_log = filter_observers(
            self._log_publisher, level_named(self.config.log.level), (rtp.port_min, rtp.port_max)
        )
        self.running = 1
        self.started_at = self.clock.seconds()
        if self._report is not None:
            self._report.starting()
        d = Deferred.fromCoroutine(self._start())
        d.addCallbacks(self._started, self._failed)

    def _started(self, _: None) -> None:
        if self._report is not None:
            self._report.started()
        self.ready.callback(None)

    def _failed(self, failure: Any) -> None:
        # Secrets already stored are shown even now: they are never lost.
        self._show_secrets()
        if failure.check(StartupError):
            problem = str(failure.value)
            self.log.critical("pbx: startup failed: {problem}", problem=problem)
        else:
            problem = f"unexpected error: {failure.getErrorMessage()} (see the log)"
            self.log.failure("pbx: startup failed", failure)
        self.ready.errback(failure)
        self.ready.addErrback(lambda _: None)
        if self._report is not None:
            self._report.failed(problem)

    async def _start(self) -> None:
        await self._open_store()
        assert self.store is not None
        self.pins = PendingPINs(self.store, self.clock, self.hash_secret, self.extension_changed)
        stored = await self.store.get_setting("server.secret")
        key = bytes.fromhex(stored) if stored else secrets.token_bytes(32)
        budget = self._share_descriptors()
        self.sip = build_switch(
            self.config, self.store, self.reactor, key, self.applications, self._codecs, streams=budget.sip
        )
        assert self.sip.calls.trunks is not None
        # The switch's own hooks (permissions ...) first, then what features add.
        own = self.sip.calls.trunks.hooks
        self.trunk_hooks.outbound[:0] = own.outbound
        self.trunk_hooks.inbound[:0] = own.inbound
        self.sip.calls.trunks.hooks = self.trunk_hooks
        await self.sip.start()
        self._listen_sip()
        self.sip.start_trunks()
        await self._listen_api(budget)
        self._start_features()
        self._check_applications()
        # Every listener is bound and the features accepted the config: only
        # now is anything generated or stored for it.
        if stored is None:
            await self.store.put_setting("server.secret", key.hex())
        await self._provision(key)
        for work in self._before_ready:
            await ensureDeferred(work())
        self._show_secrets()
        tune_garbage_collector()
        self.log.info("pbx ready listeners={listeners}", listeners=" ".join(self.listeners), always_shown=True)

    def _share_descriptors(self) -> ConnectionBudget:
        """Raise the descriptor limit as far as allowed and share it out; log both."""
        before, now, hard = raise_descriptor_limit()
        rtp = self.config.rtp
        budget = share_descriptors(
            now, rtp.port_max - rtp.port_min + 1, self.config.sip.connections, self.config.api.connections
        )
        self.log.info(
            "open files limit {now} (was {before}, hard limit {hard}); {budget}",
            now=now, before=before, hard=hard, budget=budget.describe(),
        )
        return budget

    async def _open_store(self) -> None:
        state_dir = self.config.state_dir
        try:
            os.makedirs(state_dir, mode=0o700, exist_ok=True)
        except OSError as e:
            raise StartupError(f"state_dir {state_dir}: {e.strerror or e}") from e
        self.log.info("state directory {state_dir}", state_dir=state_dir)
        try:
            self.store = open_store(self.config.database, self.reactor)
            version = await self.store.migrate()
        except Exception as e:
            raise StartupError(f"database {_redact(self.config.database)}: {e}") from e
        self.log.info("store {url} at schema version {version}", url=_redact(self.config.database), version=version)

    def _listen_sip(self) -> None:
        assert self.sip is not None
        for i, listener in enumerate(sip_listeners(self.config, self.reactor, self.sip)):
            try:
                self._add_listener(f"sip.listen[{i}]", listener)
            except ListenError as e:
                raise StartupError(str(e)) from e
            self.listeners.append(listener.address)

    def _start_features(self) -> None:
        for configured in self._configured:
            service = configured.plugin.make_service(self, configured.options)
            service.setName(configured.plugin.name)
            service.setServiceParent(self)

    def _show_secrets(self) -> None:
        """Print the secrets generated during this start, once, in one block."""
        shown, self._secrets = self._secrets, []
        if not shown:
            return
        lines = "\n".join(f"{kind} for {name}: {secret}" for kind, name, secret in shown)
        # Shown once, at the start that created them; only hashes are kept.
        self.log.warn(
            "generated secrets, shown once (only their hashes are kept; to replace a lost one:"
            " twistd pbx -c FILE --reset-password NAME, or --reset-pin NUMBER):\n{secrets}",
            secrets=lines, always_shown=True,
        )

    def _check_applications(self) -> None:
        """Every application the dialplan names must be registered by a feature."""
        for i, route in enumerate(self.config.dialplan.routes):
            name = getattr(route.action, "name", None)
            if name is not None and name not in self.applications:
                raise StartupError(
                    f"dialplan[{i}].app: no application {name!r} (enable the feature that provides it)"
                )

    async def _provision(self, key: bytes) -> None:
        """Write the configured extensions and administrators into the store."""
        assert self.store is not None and self.sip is not None

        def announce(kind: str) -> Callable[[str, str], None]:
            return lambda name, secret: self.announce_secret(kind, name, secret)

        assert self.pins is not None
        dropped = await drop_placeholders(self.store)
        if dropped:
            self.log.warn("PINs of {count} extension(s) were never hashed (the last run stopped first):"
                          " set again", count=len(dropped))
        changed = 0
        for ext in self.config.extensions:
            if await sync_extension(
                self.store, ext, self.config.sip.domain, announce("SIP password"), key, self.hash_secret,
                self.pins,
            ):
                changed += 1
                # A request that came in since the listeners opened may have cached the old record.
                self.sip.extensions.invalidate(ext.number)
        self.log.info("extensions from config: {total} ({changed} updated)",
                      total=len(self.config.extensions), changed=changed)
        await sync_admins(self.store, self.config, announce("API admin password"), self.hash_secret)

    async def _listen_api(self, budget: ConnectionBudget) -> None:
        assert self.sip is not None and self.store is not None
        self.api = PBXApi(self, self.verify_secret, self.hash_secret, security_log=self.sip.security_log)
        security = SecurityAPI(self.sip.defence, self.api.authenticate, self.store.add_audit, self.reactor)
        self.api.mount("security", security.resource(), security_paths())
        assert self.sip.calls.trunks is not None
        trunks_api = TrunksAPI(self.sip.calls.trunks, self.api.authenticate, self.store, self.reactor,
                               routes=lambda: self.sip.calls.config.dialplan if self.sip is not None else None)
        self.api.mount("trunks", trunks_api.resource(), trunks_paths())
        calls, trunks = self.sip.calls, self.sip.calls.trunks
        routes = RoutesAPI(lambda: calls.config.dialplan, self.api.authenticate, file_dialplan=self.config.dialplan,
                           trunk_names=lambda: set(trunks.trunks), use=self.sip.use_dialplan, store=self.store,
                           clock=self.reactor)
        self.api.mount("routes", routes.resource(), routes_paths())
        if self.sip.emergency is not None:
            emergency = EmergencyAPI(self.sip.emergency, self.store, self.api.authenticate, self.reactor)
            self.api.mount("emergency", emergency.resource(), emergency_paths())
            self.api.mount_extension("location", emergency.extension_location, extension_paths())
            self.provide(IEmergencyEvents, self.sip.emergency)
        assert self.sip.calls.groups is not None
        groups = GroupsAPI(self.sip.calls.groups, self.api.authenticate, self.store, self.reactor)
        self.api.mount("groups", groups.resource(), groups_paths())
        if self.sip.permissions is not None:
            permissions = PermissionsAPI(self.sip.permissions, self.store, self.api.authenticate, self.reactor)
            self.api.mount("permissions", permissions.resource(), permissions_paths())
        if self.sip.calls.parking is not None:
            lot = self.sip.calls.parking
            park = ParkAPI(lot.occupied, lot.config.slots, self.api.authenticate)
            self.api.mount("park", park.resource(), park_paths())
        api = self.config.api
        site = make_site(
            self.api.resource(), api.max_body, reactor=self.reactor,
            idle_timeout=api.connections.idle_timeout, header_timeout=api.connections.header_timeout,
        )
        limited = LimitedFactory(site, ConnectionCaps(budget.api_total, budget.api_per_source), self.reactor)
        listener = APIListener(serverFromString(self.reactor, api.listen), limited, api.listen)
        self._add_listener("api.listen", listener)
        self.listeners.append(await listener.listening())

    def _add_listener(self, name: str, listener: IService) -> None:
        """Start ``listener`` as the named child ``name``."""
        listener.setName(name)
        self._listener_services.append(listener)
        listener.setServiceParent(self)

    def stopService(self) -> Deferred[None]:  # noqa: N802 - twisted API
        """Stop features, hang up calls, close listeners and the store."""
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        Service.stopService(self)
        # Features stop while calls and the store still work; calls are hung
        # up while SIP can still send; the listeners close last.
        await _stop_all(service for service in self if service not in self._listener_services)
        if self.sip is not None:
            await self.sip.stop()
        await _stop_all(self._listener_services)
        if self.sip is not None:
            await self.sip.flush()
        if self.pins is not None:
            self.pins.stop()
        if self.store is not None:
            await self.store.close()
        self._unfilter_log()


class APIListener(Service):
    """
    The HTTP API's port (``api.listen``): it opens when the service starts
    and closes when it stops.

    :param endpoint: where to listen.
    :param site: what to serve (the Site, wrapped in its connection limits).
    :param description: the ``api.listen`` setting, for the error message.
    """

    def __init__(self, endpoint: IStreamServerEndpoint, site: IProtocolFactory, description: str) -> None:
        self._endpoint = endpoint
        self._site = site
        self._description = description
        self._opening: Deferred[str] | None = None
        self._port: IListeningPort | None = None

    def startService(self) -> None:  # noqa: N802 - twisted API
        """Start listening; :meth:`listening` tells how it went."""
        super().startService()
        self._opening = Deferred.fromCoroutine(self._listen())

    def listening(self) -> Deferred[str]:
        """
        Fires with ``http:<host>:<port>`` once listening.

        :raises StartupError: naming ``api.listen`` if the port cannot open.
        """
        assert self._opening is not None, "the API listener has not started"
        return self._opening

    async def _listen(self) -> str:
        try:
            port = await self._endpoint.listen(self._site)
        except Exception as e:
            raise StartupError(f"api.listen {self._description}: {e}") from e
        if not self.running:
            await maybeDeferred(port.stopListening)
        else:
            self._port = port
        return f"http:{_where(port)}"

    def stopService(self) -> Deferred[None]:  # noqa: N802 - twisted API
        """Close the port (if it opened)."""
        super().stopService()
        port, self._port = self._port, None
        if port is None:
            return succeed(None)
        stopped = maybeDeferred(port.stopListening)
        return stopped.addCallback(lambda _: None)


async def _stop_all(services: Iterable[IService]) -> None:
    """Stop ``services`` last-started first, as MultiService does, and wait for all of them."""
    await DeferredList([maybeDeferred(service.stopService) for service in reversed(list(services))])


def tune_garbage_collector() -> None:
    """
    Make full collections rare: a busy PBX holds many short-lived objects
    (transactions, dialogs), and a full collection over all of them pauses
    the reactor long enough for UDP receive buffers to overflow.  What
    startup built is frozen out of collection altogether.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)


def _where(port: Any) -> str:
    address = port.getHost()
    return f"{getattr(address, 'host', '?')}:{getattr(address, 'port', '?')}"


def _redact(url: str) -> str:
    """A database URL without its password."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if at and ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}{sep}{creds}{at}{host}"
