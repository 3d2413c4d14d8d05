"""
The registrar and location service (RFC 3261 §10.3).

REGISTER requests are authenticated with Digest (:mod:`pbx.sip.auth`),
brute force is locked out per user and per source address, and bindings
live in the store so a restart keeps every phone reachable.  An in-memory
copy answers lookups; every change is committed to the store before the
``200`` that acknowledges it is sent (REGISTERs that arrive together share
one transaction, see :mod:`pbx.store.binding_writer`), so a crash loses no
registration a phone was told about.
"""

from __future__ import annotations

import email.utils
from typing import Any

from attrs import define, field

from twisted.internet.defer import Deferred, FirstError, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from pbx.config import RegistrarConfig
from pbx.interfaces import IStore
from pbx.records import Binding, ExtensionRecord
from pbx.sip.authn import RequestAuthenticator
from pbx.sip.headers import NameAddr
from pbx.sip.ids import new_tag
from pbx.sip.location import has_ob
from pbx.sip.message import Request, Response, SIPParseError, make_response
from pbx.sip.transaction import ServerTransaction
from pbx.store.binding_writer import BindingWriter

SWEEP_INTERVAL = 30.0
#: Seconds a phone is asked to wait when its registration could not be stored.
RETRY_AFTER = 5


class StoreUnavailable(Exception):
    """A binding change could not be committed, so it must not be acknowledged."""


def contact_key(contact: NameAddr) -> str:
    """The identity of a binding: its contact URI as text (§10.3 step 6)."""
    return str(contact.uri)


@define(eq=False)
class Registrar:
    """
    Handles REGISTER.

    :ivar authn: challenges and verifies REGISTER requests (401).
    """

    store: IStore
    clock: IReactorTime
    authn: RequestAuthenticator
    limits: RegistrarConfig
    #: Commits binding changes in shared transactions; None commits each alone.
    writer: BindingWriter | None = None
    bindings: dict[str, dict[str, Binding]] = field(factory=dict)
    #: (AOR, contact) of bindings registered with RFC 5626 outbound; kept in
    #: memory only: after a restart their flows are gone anyway.
    _outbound: set[tuple[str, str]] = field(factory=set)
    _sweeper: LoopingCall | None = None
    log = Logger()

    async def load(self) -> int:
        """Read live bindings from the store (after a restart); returns the count."""
        now = self.clock.seconds()
        await self.store.expire_bindings(now)
        count = 0
        for b in await self.store.list_bindings():
            self.bindings.setdefault(b.aor, {})[b.contact] = b
            count += 1
        return count

    def start(self) -> None:
        """Start the expiry sweep on the injected clock."""
        self._sweeper = LoopingCall(self._sweep_safely)
        self._sweeper.clock = self.clock
        self._sweeper.start(SWEEP_INTERVAL, now=False)

    def stop(self) -> None:
        """Stop the sweep."""
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self._sweeper = None

    def _sweep_safely(self) -> Deferred[Any]:
        d = Deferred.fromCoroutine(self.sweep())
        d.addErrback(lambda f: self.log.failure("binding sweep failed", f))
        return d

    async def sweep(self) -> int:
        """Drop expired bindings from memory and store; returns how many."""
        now = self.clock.seconds()
        dropped = 0
        for aor in list(self.bindings):
            contacts = self.bindings[aor]
            for key in [k for k, b in contacts.items() if b.expires_at <= now]:
                del contacts[key]
                dropped += 1
            if not contacts:
                del self.bindings[aor]
        self._outbound = {k for k in self._outbound if k[1] in self.bindings.get(k[0], {})}
        await self.store.expire_bindings(now)
        return dropped

    def contacts(self, aor: str) -> list[Binding]:
        """The live bindings of an AOR, best q first."""
        now = self.clock.seconds()
        live = [b for b in self.bindings.get(aor, {}).values() if b.expires_at > now]
        return sorted(live, key=lambda b: -b.q)

    def forget(self, aor: str) -> None:
        """Drop an AOR's bindings from memory (the extension was deleted)."""
        self.bindings.pop(aor, None)

    def outbound(self, binding: Binding) -> bool:
        """
        Whether ``binding``'s phone asked for RFC 5626 outbound: requests go
        on its flow or nowhere.  Its REGISTER carried ``reg-id`` and
        ``+sip.instance`` on the Contact (§4.2.1), or the Contact URI has ``ob``.
        """
        return (binding.aor, binding.contact) in self._outbound or has_ob(binding)

    # -- REGISTER ----------------------------------------------------------

    def __call__(self, transaction: ServerTransaction) -> Deferred[None]:
        """Handle one REGISTER transaction."""
        d = Deferred.fromCoroutine(self._register(transaction))

        def failed(failure: Any) -> None:
            self.log.failure("REGISTER failed", failure)
            transaction.respond(make_response(transaction.request, 500))

        d.addErrback(failed)
        return d

    async def _register(self, transaction: ServerTransaction) -> None:
        request = transaction.request
        peer = transaction.peer
        try:
            aor = request.to.uri.user or ""
        except SIPParseError:
            transaction.respond(make_response(request, 400, "Bad To header"))
            return
        record = await self._authenticate(transaction, aor)
        if record is None:
            return
        try:
            response = await self._update(request, aor, peer.transport, f"{peer.host}:{peer.port}")
        except SIPParseError as e:
            response = make_response(request, 400, e.reason)
        except StoreUnavailable:
            # Not committed, so not acknowledged (the writer logged why).
            # RFC 3261 §21.5.4: a temporary condition; the phone may retry.
            response = make_response(request, 503, "Registrations cannot be stored")
            response.headers.add("Retry-After", str(RETRY_AFTER))
        transaction.respond(response)

    async def _authenticate(self, transaction: ServerTransaction, aor: str) -> ExtensionRecord | None:
        """
        §22.4 with RFC 7616: answer 401 until the request carries good
        credentials for this AOR; return the extension when it does.
        """
        if self.authn.lockout.is_locked(("sip-user", aor)):
            # The AOR's user is locked out: refuse before any challenge.
            self.authn.refuse(transaction)
            return None
        record = await self.authn.authenticate(transaction)
        if record is None:
            return None
        if record.number != aor:
            # §10.3 step 3: authenticated, but not for this address of record.
            transaction.respond(make_response(transaction.request, 403, "Forbidden", to_tag=new_tag()))
            return None
        return record

    async def _update(self, request: Request, aor: str, transport: str, source: str) -> Response:
        """§10.3 steps 5-8: apply the Contact changes and answer 200."""
        now = self.clock.seconds()
        limits = self.limits
        header_expires = request.expires
        current = self.bindings.setdefault(aor, {})
        call_id = request.call_id
        cseq = request.cseq.number
        user_agent = request.headers.get("User-Agent") or ""
        if request.contact_wildcard:
            # §10.3 step 6: "*" only alone and with Expires: 0.
            if request.contacts or header_expires != 0:
                return make_response(request, 400, "Wildcard Contact needs Expires 0 and no other Contact")
            for b in current.values():
                if b.call_id == call_id and cseq <= b.cseq:
                    return make_response(request, 500, "CSeq out of order")
            removed = [self._delete(aor, key) for key in current]
            current.clear()
            await self._committed(removed)
            return self._ok(request, aor)
        changes: list[tuple[str, int, NameAddr]] = []
        for contact in request.contacts:
            expires = _contact_expires(contact, header_expires, limits.default_expires)
            if 0 < expires < limits.min_expires:
                response = make_response(request, 423)  # §10.3 step 7
                response.headers.add("Min-Expires", str(limits.min_expires))
                return response
            changes.append((contact_key(contact), min(expires, limits.max_expires), contact))
        for key, _, _ in changes:
            existing = current.get(key)
            if existing is not None and existing.call_id == call_id and cseq <= existing.cseq:
                return make_response(request, 500, "CSeq out of order")  # §10.3 step 7
        writes: list[Deferred[None]] = []
        for key, expires, contact in changes:
            if expires == 0:
                if current.pop(key, None) is not None:
                    writes.append(self._delete(aor, key))
                continue
            q = _q(contact)
            if transport != "udp" and "reg-id" in contact.params and "+sip.instance" in contact.params:
                self._outbound.add((aor, key))
            else:
                self._outbound.discard((aor, key))
            binding = Binding(aor, key, now + expires, transport, source, user_agent, call_id, cseq, q, now)
            current[key] = binding
            writes.append(self._put(binding))
            self.log.debug("REGISTER {aor} {contact} for {expires}s from {transport}:{source}",
                          aor=aor, contact=key, expires=expires, transport=transport, source=source)
        if not current:
            self.bindings.pop(aor, None)
        # §10.3 step 8 answers once the changes are durable, not before.
        await self._committed(writes)
        return self._ok(request, aor)

    def _put(self, binding: Binding) -> Deferred[None]:
        if self.writer is not None:
            return self.writer.put(binding)
        return self.store.put_binding(binding)

    def _delete(self, aor: str, contact: str) -> Deferred[Any]:
        if self.writer is not None:
            return self.writer.delete(aor, contact)
        return self.store.delete_binding(aor, contact)

    async def _committed(self, writes: list[Deferred[Any]]) -> None:
        """Wait until every write is committed; :class:`StoreUnavailable` if one failed."""
        try:
            if len(writes) == 1:  # the usual REGISTER: one contact
                await writes[0]
            elif writes:
                await gatherResults(writes, consumeErrors=True)
        except FirstError as e:
            raise StoreUnavailable() from e.subFailure.value
        except Exception as e:
            raise StoreUnavailable() from e

    def _ok(self, request: Request, aor: str) -> Response:
        """§10.3 step 8: 200 listing every current binding with its expiry."""
        response = make_response(request, 200, to_tag=new_tag())
        now = self.clock.seconds()
        for b in self.contacts(aor):
            response.headers.add("Contact", f"<{b.contact}>;expires={max(0, round(b.expires_at - now))}")
        response.headers.add("Date", email.utils.formatdate(now, usegmt=True))
        return response


def _contact_expires(contact: NameAddr, header: int | None, default: int) -> int:
    """§10.2.1.1: the Contact's expires parameter, else the Expires header, else the default."""
    value = contact.params.get("expires")
    if value is not None:
        value = value.strip()
        if value.isdigit():
            return min(int(value), 2**32 - 1)
        raise SIPParseError("Malformed expires parameter")
    return default if header is None else header


def _q(contact: NameAddr) -> float:
    value = contact.params.get("q")
    try:
        q = float(value) if value else 1.0
    except ValueError:
        raise SIPParseError("Malformed q parameter") from None
    if not 0 <= q <= 1:
        raise SIPParseError("q must lie between 0 and 1")
    return q

