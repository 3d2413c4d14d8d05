"""
Test doubles that implement pbx's own interfaces.

:class:`MemoryStore` passes the same store suite as the real backends, so a
unit test that uses it exercises behaviour the real store has.
:class:`FakePBX` is the one :class:`~pbx.interfaces.IPBX` every feature's
tests run on.
:class:`FakeUDPReactor` adds ``listenUDP`` to Twisted's ``MemoryReactorClock``.
:class:`RecordingSecurityLog` keeps what would go to the security log.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from attrs import Factory, define, evolve, field

from zope.interface import implementer
from zope.interface.interface import InterfaceClass

from twisted.internet.defer import (
    Deferred,
    ensureDeferred,
    fail,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import IReactorUDP
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, MemoryReactorClock
from twisted.web.iweb import IRequest

from pbx.api.http import APIError
from pbx.api.tokens import Session
from pbx.calls.events import CallEvents
from pbx.calls.originated import Originated
from pbx.calls.outbound import check_extra_headers
from pbx.config import Config, parse_config
from pbx.interfaces import IPBX, IDialplanApplication, IStore
from pbx.records import (
    AdminRecord,
    AuditEvent,
    Binding,
    CallRecord,
    ExtensionRecord,
    LiveCallEntry,
)
from pbx.security.defence import Ban
from pbx.security.interfaces import ISecurityLog
from pbx.security.lockout import Lockout
from pbx.security.log_lines import Remote
from pbx.security.passwords import hash_password, verify_password
from pbx.security.pending import PendingPINs
from pbx.trunks.hooks import TrunkHooks


@implementer(IStore)
@define(eq=False, slots=False)
class MemoryStore:
    """An IStore that keeps everything in dictionaries; Deferreds fire at once."""

    extensions: dict[str, ExtensionRecord] = field(factory=dict)
    bindings: dict[tuple[str, str], Binding] = field(factory=dict)
    calls: list[CallRecord] = field(factory=list)
    audit: list[AuditEvent] = field(factory=list)
    live_calls: dict[tuple[str, str, str], LiveCallEntry] = field(factory=dict)
    admins: dict[str, AdminRecord] = field(factory=dict)
    settings: dict[str, str] = field(factory=dict)
    items: dict[tuple[str, str, str], str] = field(factory=dict)
    closed: bool = False

    def migrate(self) -> Deferred[int]:
        """Nothing to migrate; claims the newest schema."""
        from pbx.store.schema import LATEST_VERSION

        return succeed(LATEST_VERSION)

    def close(self) -> Deferred[None]:
        """Mark closed."""
        self.closed = True
        return succeed(None)

    def get_extension(self, number: str) -> Deferred[ExtensionRecord | None]:
        """See IStore."""
        return succeed(self.extensions.get(number))

    def list_extensions(self) -> Deferred[list[ExtensionRecord]]:
        """See IStore."""
        return succeed([self.extensions[k] for k in sorted(self.extensions)])

    def put_extension(self, record: ExtensionRecord) -> Deferred[None]:
        """See IStore."""
        self.extensions[record.number] = record
        return succeed(None)

    def delete_extension(self, number: str) -> Deferred[bool]:
        """See IStore."""
        existed = self.extensions.pop(number, None) is not None
        for key in [k for k in self.bindings if k[0] == number]:
            del self.bindings[key]
        return succeed(existed)

    def put_binding(self, binding: Binding) -> Deferred[None]:
        """See IStore."""
        self.bindings[(binding.aor, binding.contact)] = binding
        return succeed(None)

    def delete_binding(self, aor: str, contact: str) -> Deferred[bool]:
        """See IStore."""
        return succeed(self.bindings.pop((aor, contact), None) is not None)

    def write_bindings(self, puts: list[Binding], deletes: list[tuple[str, str]]) -> Deferred[None]:
        """See IStore."""
        for key in deletes:
            self.bindings.pop(key, None)
        for b in puts:
            self.bindings[(b.aor, b.contact)] = b
        return succeed(None)

    def delete_bindings(self, aor: str) -> Deferred[int]:
        """See IStore."""
        keys = [k for k in self.bindings if k[0] == aor]
        for k in keys:
            del self.bindings[k]
        return succeed(len(keys))

    def list_bindings(self, aor: str | None = None) -> Deferred[list[Binding]]:
        """See IStore."""
        return succeed([self.bindings[k] for k in sorted(self.bindings) if aor is None or k[0] == aor])

    def expire_bindings(self, now: float) -> Deferred[int]:
        """See IStore."""
        keys = [k for k, b in self.bindings.items() if b.expires_at <= now]
        for k in keys:
            del self.bindings[k]
        return succeed(len(keys))

    def add_call_record(self, record: CallRecord) -> Deferred[int]:
        """See IStore."""
        new_id = len(self.calls) + 1
        self.calls.append(evolve(record, id=new_id))
        return succeed(new_id)

    def list_call_records(
        self,
        offset: int = 0,
        limit: int = 100,
        caller: str | None = None,
        callee: str | None = None,
        since: float | None = None,
        until: float | None = None,
        linked_id: str | None = None,
    ) -> Deferred[tuple[int, list[CallRecord]]]:
        """See IStore."""
        if limit < 0 or offset < 0:
            return fail(ValueError("limit and offset must not be negative"))
        rows = [
            r for r in self.calls
            if (caller is None or r.caller == caller)
            and (callee is None or r.callee == callee)
            and (since is None or r.start >= since)
            and (until is None or r.start < until)
            and (linked_id is None or r.linked_id == linked_id)
        ]
        rows.sort(key=lambda r: (r.start, r.id or 0), reverse=True)
        return succeed((len(rows), rows[offset:offset + limit]))

    def journal_calls(self, entries: Sequence[LiveCallEntry]) -> Deferred[None]:
        """See IStore."""
        for e in entries:
            self.live_calls[(e.node, e.call, e.leg)] = e
        return succeed(None)

    def touch_calls(self, node: str, now: float) -> Deferred[int]:
        """See IStore."""
        keys = [k for k in self.live_calls if k[0] == node]
        for k in keys:
            self.live_calls[k] = evolve(self.live_calls[k], touched=now)
        return succeed(len(keys))

    def finish_call(
        self, node: str, call: str, records: Sequence[CallRecord], live: Sequence[LiveCallEntry] = ()
    ) -> Deferred[None]:
        """See IStore."""
        for record in records:
            self.add_call_record(record)
        for k in [k for k in self.live_calls if k[:2] == (node, call)]:
            del self.live_calls[k]
        return self.journal_calls(live)

    def recover_calls(self, node: str) -> Deferred[list[CallRecord]]:
        """See IStore."""
        entries = sorted((e for e in self.live_calls.values() if e.node == node),
                         key=lambda e: (e.start, e.call.encode(), e.leg.encode()))
        records = []
        for e in entries:
            record = e.interrupted()
            new_id = len(self.calls) + 1
            self.calls.append(evolve(record, id=new_id))
            records.append(evolve(record, id=new_id))
            del self.live_calls[(e.node, e.call, e.leg)]
        return succeed(records)

    def add_audit(self, event: AuditEvent) -> Deferred[int]:
        """See IStore."""
        new_id = len(self.audit) + 1
        self.audit.append(evolve(event, id=new_id))
        return succeed(new_id)

    def list_audit(self, limit: int = 100, kind: str | None = None) -> Deferred[list[AuditEvent]]:
        """See IStore."""
        rows = [e for e in self.audit if kind is None or e.kind == kind]
        rows.sort(key=lambda e: (e.time, e.id or 0), reverse=True)
        return succeed(rows[:limit])

    def get_admin(self, username: str) -> Deferred[AdminRecord | None]:
        """See IStore."""
        return succeed(self.admins.get(username))

    def put_admin(self, record: AdminRecord) -> Deferred[None]:
        """See IStore."""
        self.admins[record.username] = record
        return succeed(None)

    def get_setting(self, key: str) -> Deferred[str | None]:
        """See IStore."""
        return succeed(self.settings.get(key))

    def put_setting(self, key: str, value: str) -> Deferred[None]:
        """See IStore."""
        self.settings[key] = value
        return succeed(None)

    def put_item(self, kind: str, owner: str, key: str, data: dict[str, Any]) -> Deferred[None]:
        """See IStore (kept as JSON text, as the SQL backends keep it)."""
        self.items[(kind, owner, key)] = json.dumps(data, ensure_ascii=False, sort_keys=True)
        return succeed(None)

    def get_item(self, kind: str, owner: str, key: str) -> Deferred[dict[str, Any] | None]:
        """See IStore."""
        text = self.items.get((kind, owner, key))
        return succeed(None if text is None else dict(json.loads(text)))

    def list_items(self, kind: str, owner: str | None = None,
                   search: str | None = None) -> Deferred[list[tuple[str, str, dict[str, Any]]]]:
        """See IStore."""
        found = []
        for (k, o, key), text in sorted(self.items.items(), key=lambda kv: (kv[0][1].encode(), kv[0][2].encode())):
            if k != kind or (owner is not None and o != owner):
                continue
            if search and _ascii_lower(search) not in _ascii_lower(text):
                continue
            found.append((o, key, dict(json.loads(text))))
        return succeed(found)

    def delete_item(self, kind: str, owner: str, key: str) -> Deferred[bool]:
        """See IStore."""
        return succeed(self.items.pop((kind, owner, key), None) is not None)


#: The config a :class:`FakePBX` has unless given one.
MINIMAL_CONFIG = "sip: {domain: pbx.test}\n"


@implementer(ISecurityLog)
@define(eq=False)
class RecordingSecurityLog:
    """An ISecurityLog that keeps each failed login (its arguments) and each ban."""

    failures: list[tuple[str, str, Remote, bool, str]] = field(factory=list)
    bans: list[Ban] = field(factory=list)

    def failed_login(self, service: str, account: str, remote: Remote, known: bool, method: str = "") -> None:
        """Keep one failed login."""
        self.failures.append((service, account, remote, known, method))

    def banned(self, ban: Ban) -> None:
        """Keep one ban."""
        self.bans.append(ban)


def _lockout(pbx: FakePBX) -> Lockout:
    return Lockout.from_config(pbx.clock, pbx.config.security)


@implementer(IPBX)
@define(eq=False)
class FakePBX:
    """
    An :class:`~pbx.interfaces.IPBX` for tests: what features register is
    recorded, calls are scripted, and the work it is handed is done at once
    (threads run in the caller, hashing uses few PBKDF2 iterations).

    :ivar api: the :class:`~pbx.api.app.PBXApi` under test, if any:
        :meth:`authenticate` and :meth:`mount_api` go to it.
    :ivar outcome: what :meth:`dial` answers for a number without an
        entry in :attr:`outcomes`.
    :ivar talk: seconds on :attr:`clock` before :meth:`dial` answers;
        None answers at once.
    :ivar hang_up: whether the caller's channel closes ("remote") when a
        :meth:`dial` ends, as when they hang up while connected.
    :ivar dialer: when set, :meth:`dial` is passed on to it (a real call
        controller's ``dial``) instead of being scripted.
    """

    config: Config = Factory(lambda: parse_config(MINIMAL_CONFIG, "fake.yml", {}))
    store: Any = Factory(lambda: MemoryStore())
    clock: Any = Factory(Clock)
    tcp: Any = Factory(MemoryReactor)
    lockout: Lockout = Factory(_lockout, takes_self=True)
    applications: dict[str, IDialplanApplication] = Factory(dict)
    started_at: float = 0.0
    listeners: list[str] = Factory(list)
    features: list[str] = Factory(list)
    api: Any = None
    outcome: str = "answered"
    outcomes: dict[str, str] = Factory(dict)
    talk: float | None = None
    hang_up: bool = False
    dialer: Callable[..., Deferred[str]] | None = None
    calls: list[dict[str, Any]] = Factory(list)
    """What :meth:`live_calls` returns."""
    dialled: list[str] = Factory(list)
    diverters: list[Callable[[str, str], Any]] = Factory(list)
    packages: list[Any] = Factory(list)
    mounted: dict[str, tuple[Any, dict[str, Any]]] = Factory(dict)
    notified: list[tuple[str, str]] = Factory(list)
    changed: list[str] = Factory(list)
    trunk_hooks: TrunkHooks = Factory(TrunkHooks)
    deleted: list[str] = Factory(list)
    credentials: list[str] = Factory(list)
    pins: PendingPINs = field(
        default=Factory(
            lambda self: PendingPINs(self.store, self.clock, self.hash_secret, self.extension_changed),
            takes_self=True,
        ),
        repr=False,
    )
    """PINs held until their (quick) hash lands: :meth:`hold_pin`."""
    provided: dict[InterfaceClass, Any] = Factory(dict)
    originated: list[str] = Factory(list)
    """Numbers :meth:`originate` was asked to ring."""
    answerers: dict[str, Any] = Factory(dict)
    """The channel an answered :meth:`originate` of a number gives."""
    originate_headers: dict[str, list[tuple[str, str]]] = Factory(dict)
    """The extra INVITE headers the last :meth:`originate` of a number asked for."""
    events: CallEvents = Factory(CallEvents)
    """Call events: what :meth:`subscribe_calls` subscribes to."""
    startup_work: list[Deferred[Any]] = Factory(list)
    """What the work given to :meth:`before_ready` returned (it runs at once)."""
    secrets: list[tuple[str, str, str]] = Factory(list)
    """(kind, name, secret) for every :meth:`announce_secret`."""
    taps: dict[str, Any] = Factory(dict)
    """What :meth:`tap_call` gives for a call id (a test's stand-in for :class:`pbx.calls.tap.CallTap`)."""

    def before_ready(self, work: Callable[[], Any]) -> None:
        """Run ``work`` at once (a test's PBX is ready already); keep its Deferred."""
        self.startup_work.append(ensureDeferred(work()))

    def announce_secret(self, kind: str, name: str, secret: str) -> None:
        """Record."""
        self.secrets.append((kind, name, secret))

    def run_in_thread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        """Run ``f`` at once; its result or exception in a Deferred."""
        return maybeDeferred(f, *args, **kwargs)

    def hash_secret(self, secret: str) -> Deferred[str]:
        """PBKDF2 with few iterations, so tests stay quick."""
        return succeed(hash_password(secret, iterations=1000))

    def verify_secret(self, secret: str, encoded: str) -> Deferred[bool]:
        """Check at once (a held PIN's placeholder against the PIN)."""
        held = self.pins.verify(secret, encoded)
        return succeed(verify_password(secret, encoded) if held is None else held)

    def hold_pin(self, pin: str) -> str:
        """Hold in :attr:`pins`."""
        return self.pins.hold(pin)

    def hash_pin_later(self, number: str, placeholder: str) -> None:
        """Queue in :attr:`pins`: with the quick hash, it lands at once."""
        self.pins.hash_later(number, placeholder)

    def authenticate(self, request: IRequest) -> Session:
        """The session :attr:`api` finds; 401 without an API."""
        if self.api is None:
            raise APIError(401, "log in first")
        session: Session = self.api.authenticate(request)
        return session

    def provide(self, interface: InterfaceClass, provider: Any) -> None:
        """Record the provider; a second one, or one not providing ``interface``, is refused."""
        if not interface.providedBy(provider):
            raise TypeError(f"{provider!r} does not provide {interface.__name__}")
        if interface in self.provided:
            raise ValueError(f"{interface.__name__} is provided twice")
        self.provided[interface] = provider

    def lookup(self, interface: InterfaceClass) -> Any:
        """The provider recorded, or None."""
        return self.provided.get(interface)

    def live_calls(self) -> list[dict[str, Any]]:
        """:attr:`calls`."""
        return self.calls

    def extension_changed(self, number: str) -> None:
        """Record the change."""
        self.changed.append(number)

    def extension_deleted(self, number: str) -> None:
        """Record the deletion."""
        self.deleted.append(number)

    def credentials_changed(self, username: str) -> None:
        """Record it; end the sessions :attr:`api` holds for ``username``, if there is one."""
        self.credentials.append(username)
        if self.api is not None:
            self.api.revoke_sessions(username)

    def register_application(self, application: IDialplanApplication) -> None:
        """Register by name; twice is an error, as in the PBX."""
        if application.name in self.applications:
            raise ValueError(f"dialplan application {application.name!r} is registered twice")
        self.applications[application.name] = application

    def add_diverter(self, diverter: Callable[[str, str], Any]) -> None:
        """Record."""
        self.diverters.append(diverter)

    def dial(self, channel: Any, number: str, caller: str | None = None,
             caller_name: str | None = None, timeout: float | None = None) -> Deferred[str]:
        """Record ``number``; answer with its scripted outcome (see :attr:`talk`, :attr:`hang_up`)."""
        self.dialled.append(number)
        if self.dialer is not None:
            return self.dialer(channel, number, caller=caller, caller_name=caller_name, timeout=timeout)
        outcome = self.outcomes.get(number, self.outcome)
        d: Deferred[str] = Deferred()

        def over() -> None:
            if self.hang_up:
                channel.closed("remote")
            d.callback(outcome)

        if self.talk is None:
            over()
        else:
            self.clock.callLater(self.talk, over)
        return d

    def originate(self, number: str, caller: str, caller_name: str = "",
                  timeout: float | None = None, headers: Sequence[tuple[str, str]] = ()) -> Deferred[Originated]:
        """
        Record ``number`` (and its ``headers`` in :attr:`originate_headers`); fire
        with its scripted outcome, and :attr:`answerers`' channel when answered.

        :raises ValueError: for a header pbx would refuse, as the PBX's does.
        """
        self.originated.append(number)
        self.originate_headers[number] = check_extra_headers(headers)
        outcome = self.outcomes.get(number, self.outcome)
        if outcome != "answered":
            return succeed(Originated(outcome))
        channel = self.answerers.get(number)
        ended: Deferred[None] = channel.wait_for_hangup() if channel is not None else succeed(None)
        hang_up = (lambda: channel.closed("pbx")) if channel is not None else (lambda: None)
        return succeed(Originated("answered", channel, ended, hang_up, f"fake-{number}"))

    def subscribe_calls(self, subscriber: Callable[[Any], object],
                        kinds: Iterable[str] | None = None) -> Callable[[], None]:
        """Subscribe to :attr:`events`; tests publish there."""
        return self.events.subscribe(subscriber) if kinds is None else self.events.subscribe(subscriber, kinds)

    def tap_call(self, call_id: str) -> Any:
        """The entry of :attr:`taps` for ``call_id``, or None."""
        return self.taps.get(call_id)

    def register_event_package(self, package: Any) -> None:
        """Record."""
        self.packages.append(package)

    def notify(self, event: str, resource: str) -> None:
        """Record."""
        self.notified.append((event, resource))

    def mount_api(self, name: str, resource: Any, paths: dict[str, Any]) -> None:
        """Record, and mount on :attr:`api` when there is one."""
        self.mounted[name] = (resource, paths)
        if self.api is not None:
            self.api.mount(name, resource, paths)


@define(eq=False)
class FakeUDPPort:
    """What ``FakeUDPReactor.listenUDP`` returns: records writes, can be stopped."""

    port: int
    protocol: Any
    interface: str = ""
    written: list[tuple[bytes, tuple[str, int]]] = field(factory=list)
    listening: bool = True

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        """Record one datagram sent."""
        self.written.append((data, addr))

    def getHost(self) -> Any:  # noqa: N802 - twisted API
        """The bound address."""
        from twisted.internet.address import IPv4Address

        return IPv4Address("UDP", self.interface or "0.0.0.0", self.port)

    def stopListening(self) -> Deferred[None]:  # noqa: N802 - twisted API
        """Stop; the protocol's doStop runs."""
        self.listening = False
        self.protocol.doStop()
        return succeed(None)

    loseConnection = stopListening


@implementer(IReactorUDP)
class FakeUDPReactor(MemoryReactorClock):
    """A MemoryReactorClock that also pretends to listen on UDP."""

    def __init__(self) -> None:
        super().__init__()
        self.udpPorts: dict[int, FakeUDPPort] = {}
        self._next_port = 40000

    def listenUDP(  # type: ignore[override]  # noqa: N802
        self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192  # noqa: N803
    ) -> FakeUDPPort:
        """Bind a fake port and start the protocol on it."""
        if port == 0:
            self._next_port += 1
            port = self._next_port
        fake = FakeUDPPort(port, protocol, interface)
        self.udpPorts[port] = fake
        protocol.makeConnection(fake)
        return fake


def _ascii_lower(text: str) -> str:
    """Lower-case ASCII letters only, as SQLite's lower() does."""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)
