"""
Authenticating SIP requests from extensions (RFC 3261 §22).

One :class:`RequestAuthenticator` serves the registrar (``401`` with
``WWW-Authenticate``, §22.2) and the call controller (``407`` with
``Proxy-Authenticate``, §22.3).  Failures count towards a lockout per user
and per source address, with growing delays, and towards the source's
threat score; they are written to the audit trail and the security log
(for fail2ban, :mod:`pbx.security.log_file`).  An unknown user and a
wrong password get the same answer.  Challenges and refusals are sent
statelessly (§8.2.7), so an unauthenticated request costs one response and
no memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define, field

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pbx.interfaces import IStore
from pbx.records import AuditEvent, ExtensionRecord
from pbx.security.interfaces import ISecurityLog, ISourceDefence
from pbx.security.lockout import Lockout
from pbx.security.log_file import NoSecurityLog
from pbx.security.log_lines import Remote
from pbx.sip.auth import (
    Credentials,
    DigestAuthenticator,
    DigestError,
    Verdict,
    parse_credentials,
)
from pbx.sip.ids import new_tag
from pbx.sip.message import make_response
from pbx.sip.transaction import ServerTransaction


@define(eq=False)
class RequestAuthenticator:
    """
    Challenges and verifies requests; answers the transaction itself when
    the request cannot go on.

    :ivar lookup: number -> Deferred[ExtensionRecord | None].
    """

    store: IStore
    clock: IReactorTime
    digest: DigestAuthenticator
    lockout: Lockout
    lookup: Callable[[str], Deferred[ExtensionRecord | None]]
    #: Told of failed authentications (threat scores and bans).
    defence: ISourceDefence | None = None
    #: Told of each failed authentication, for fail2ban.
    security_log: ISecurityLog = field(factory=NoSecurityLog)
    log = Logger()

    async def authenticate(self, transaction: ServerTransaction, *, proxy: bool = False,
                           emergency: bool = False) -> ExtensionRecord | None:
        """
        Return the authenticated extension, or None after answering
        401/407 (challenge) or 403 (locked out).

        :param emergency: the request is an emergency call: a lockout does not
            refuse it (Kari's Law: nothing may block 911), though its
            credentials are checked and a wrong answer still counts.
        """
        request = transaction.request
        source = transaction.peer.host
        header = "Proxy-Authorization" if proxy else "Authorization"
        credentials = self._credentials(request.headers.get_all(header))
        user = credentials.username if credentials else ""
        keys: tuple[Any, ...] = (("sip-ip", source),) + ((("sip-user", user),) if user else ())
        if not emergency and any(self.lockout.is_locked(k) for k in keys):
            # Locked: refuse without checking, so guessing learns nothing.
            self.refuse(transaction)
            return None
        if credentials is None:
            self.challenge(transaction, proxy=proxy)
            return None
        record = await self.lookup(credentials.username)
        if record is not None and not record.enabled:
            record = None

        def ha1_for(username: str, algorithm: str) -> str | None:
            if record is None or username != record.number:
                return None
            return record.ha1_sha256 if algorithm == "SHA-256" else record.ha1_md5

        verdict = self.digest.verify(credentials, request.method, ha1_for, uri=credentials.uri)
        if verdict is Verdict.STALE:
            self.challenge(transaction, proxy=proxy, stale=True)
            return None
        if verdict is not Verdict.OK or record is None:
            await self._failure(transaction, credentials.username, keys, proxy, known=record is not None)
            return None
        for key in keys:
            self.lockout.record_success(key)
        return record

    def _credentials(self, values: list[str]) -> Credentials | None:
        for value in values:
            try:
                candidate = parse_credentials(value)
            except DigestError:
                continue
            if candidate.realm == self.digest.realm:
                return candidate
        return None

    def challenge(self, transaction: ServerTransaction, *, proxy: bool = False, stale: bool = False) -> None:
        """
        Answer 401 (or 407) with a fresh challenge per algorithm, statelessly
        (RFC 3261 §8.2.7): the nonce is stateless too, so nothing is kept.
        """
        response = make_response(transaction.request, 407 if proxy else 401, to_tag=new_tag())
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        for value in self.digest.challenge(stale=stale):
            response.headers.add(name, value)
        transaction.respond_statelessly(response)

    def refuse(self, transaction: ServerTransaction) -> None:
        """
        Answer 403 to a request from a locked-out user or address, statelessly
        (§8.2.7); trying while locked out counts as a failure for the source.
        """
        self._offence(transaction.peer.host, "auth failure")
        transaction.respond_statelessly(make_response(transaction.request, 403, to_tag=new_tag()))

    def _offence(self, source: str, kind: str) -> None:
        if self.defence is not None:
            self.defence.offence(source, kind)

    async def _failure(
        self, transaction: ServerTransaction, username: str, keys: tuple[Any, ...], proxy: bool, *, known: bool
    ) -> None:
        peer = transaction.peer
        source = peer.host
        # An unknown user gets the same answer as a wrong password, but a
        # source probing for users scores more (pbx.security.defence).
        self._offence(source, "auth failure" if known else "unknown user")
        method = transaction.request.method
        self.security_log.failed_login("SIP", username, Remote(peer.transport, source, peer.port), known, method)
        delay = self.lockout.record_failures(keys, what="SIP digest", who=username, source=source)
        now = self.clock.seconds()
        await self.store.add_audit(AuditEvent(now, "sip.auth.failure", username, source, method))
        if delay:
            await self.store.add_audit(AuditEvent(now, "sip.lockout", username, source, f"{delay:.0f}s"))
        # The same answer as for no credentials at all: a fresh challenge.
        self.challenge(transaction, proxy=proxy)

