"""
The registrar and location service (RFC 3261 §10.3).

REGISTER requests are authenticated with Digest (:mod:`pbx.sip.auth`),
brute force is locked out per user and per source address, and bindings
live in the store so a restart keeps every phone reachable.  An in-memory
copy answers lookups; the store is written on every change.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from typing import Any

from attrs import define, field

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from pbx.config import RegistrarConfig
from pbx.interfaces import IStore
from pbx.records import AuditEvent, Binding, ExtensionRecord
from pbx.security.lockout import Lockout
from pbx.sip.auth import DigestAuthenticator, DigestError, Verdict, parse_credentials
from pbx.sip.headers import NameAddr
from pbx.sip.message import Request, Response, SIPParseError, make_response
from pbx.sip.transaction import ServerTransaction
from pbx.store.writebehind import BindingWriter

SWEEP_INTERVAL = 30.0


def contact_key(contact: NameAddr) -> str:
    """The identity of a binding: its contact URI as text (§10.3 step 6)."""
    return str(contact.uri)


@define(eq=False)
class Registrar:
    """
    Handles REGISTER.

    :ivar lookup: fetches an extension's record (the store is the truth).
    """

    store: IStore
    clock: IReactorTime
    auth: DigestAuthenticator
    lockout: Lockout
    limits: RegistrarConfig
    lookup: Callable[[str], Deferred[ExtensionRecord | None]] | None = None
    #: Batches binding writes; None writes each change at once.
    writer: BindingWriter | None = None
    bindings: dict[str, dict[str, Binding]] = field(factory=dict)
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
        transaction.respond(response)

    async def _authenticate(self, transaction: ServerTransaction, aor: str) -> ExtensionRecord | None:
        """
        §22.4 with RFC 7616: answer 401 until the request carries good
        credentials for this AOR; return the extension when it does.
        """
        request = transaction.request
        source = transaction.peer.host
        keys = (("sip-user", aor), ("sip-ip", source))
        if any(self.lockout.is_locked(k) for k in keys):
            # Locked out: refuse without checking, so guessing costs nothing
            # and learns nothing (same answer for any user).
            transaction.respond(make_response(request, 403, "Forbidden", to_tag=_tag()))
            return None
        credentials = None
        for value in request.headers.get_all("Authorization"):
            try:
                candidate = parse_credentials(value)
            except DigestError:
                continue
            if candidate.realm == self.auth.realm:
                credentials = candidate
                break
        if credentials is None:
            self._challenge(transaction)
            return None
        record = await (self.lookup(credentials.username) if self.lookup else self.store.get_extension(credentials.username))
        if record is not None and not record.enabled:
            record = None

        def ha1_for(username: str, algorithm: str) -> str | None:
            if record is None or username != record.number:
                return None
            return record.ha1_sha256 if algorithm == "SHA-256" else record.ha1_md5

        verdict = self.auth.verify(credentials, request.method, ha1_for, uri=credentials.uri)
        if verdict is Verdict.STALE:
            self._challenge(transaction, stale=True)
            return None
        if verdict is not Verdict.OK or record is None:
            await self._failure(transaction, credentials.username, keys)
            return None
        if credentials.username != aor:
            # §10.3 step 3: authenticated, but not for this address of record.
            transaction.respond(make_response(request, 403, "Forbidden", to_tag=_tag()))
            return None
        for key in keys:
            self.lockout.record_success(key)
        return record

    def _challenge(self, transaction: ServerTransaction, *, stale: bool = False) -> None:
        response = make_response(transaction.request, 401, to_tag=_tag())
        for value in self.auth.challenge(stale=stale):
            response.headers.add("WWW-Authenticate", value)
        transaction.respond(response)

    async def _failure(self, transaction: ServerTransaction, username: str, keys: tuple[Any, ...]) -> None:
        delays = [self.lockout.record_failure(k) for k in keys]
        source = transaction.peer.host
        await self.store.add_audit(AuditEvent(self.clock.seconds(), "sip.auth.failure", username, source))
        if any(delays):
            self.log.warn("SIP lockout: {user} from {source} for {delay:.0f}s",
                          user=username, source=source, delay=max(delays))
            await self.store.add_audit(
                AuditEvent(self.clock.seconds(), "sip.lockout", username, source, f"{max(delays):.0f}s"))
        # Same answer as for an unknown user: a fresh challenge.
        self._challenge(transaction)

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
            for key in list(current):
                await self._delete(aor, key)
            current.clear()
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
        for key, expires, contact in changes:
            if expires == 0:
                if current.pop(key, None) is not None:
                    await self._delete(aor, key)
                continue
            q = _q(contact)
            binding = Binding(aor, key, now + expires, transport, source, user_agent, call_id, cseq, q, now)
            current[key] = binding
            await self._put(binding)
            self.log.info("REGISTER {aor} {contact} for {expires}s from {transport}:{source}",
                          aor=aor, contact=key, expires=expires, transport=transport, source=source)
        if not current:
            self.bindings.pop(aor, None)
        return self._ok(request, aor)

    async def _put(self, binding: Binding) -> None:
        if self.writer is not None:
            self.writer.put(binding)
        else:
            await self.store.put_binding(binding)

    async def _delete(self, aor: str, contact: str) -> None:
        if self.writer is not None:
            self.writer.delete(aor, contact)
        else:
            await self.store.delete_binding(aor, contact)

    def _ok(self, request: Request, aor: str) -> Response:
        """§10.3 step 8: 200 listing every current binding with its expiry."""
        response = make_response(request, 200, to_tag=_tag())
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


def _tag() -> str:
    import secrets

    return secrets.token_hex(6)
