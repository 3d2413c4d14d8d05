"""
Fetching signers' certificates from ``x5u`` URLs: only from allowed places
(:mod:`pbx.stir.locations`), size- and time-capped, cached.

:class:`SignerCache` fetches with an injected ``IAgent`` (no redirects
followed), keeps each URL's certificates for the configured TTL or the
response's ``Cache-Control: max-age``, whichever is shorter, remembers a
failed fetch for a short while, asks for one URL once however many calls
wait for it, and checks each chain against the trust anchors again only
when the time leaves the window in which its last answer holds.
"""

from __future__ import annotations

import re
from typing import cast

from attrs import define, field
from cryptography import x509

from zope.interface import implementer

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse

from pbx.stir.certificates import (
    CertificateError,
    TrustAnchors,
    VerifiedSigner,
    read_certificates,
)
from pbx.stir.interfaces import ISignerSource
from pbx.stir.locations import x5u_problem
from pbx.stir.verdict import Reason, VerificationFailure

__all__ = ["SignerCache", "X5UError"]

_MAX_AGE = re.compile(r"max-age\s*=\s*\"?([0-9]+)\"?")
_ACCEPT = Headers(
    {
        b"accept": [
            b"application/pem-certificate-chain, application/x-pem-file, application/pkix-cert"
        ]
    }
)


class X5UError(VerificationFailure):
    """A certificate that could not be had or trusted; :attr:`reason` says which."""


class _BodyTooLarge(Exception):
    pass


_DONE = Failure(ResponseDone())


class _Body(Protocol):
    """Collects a response body up to a size; more stops the transfer."""

    def __init__(self, finished: Deferred[bytes], limit: int) -> None:
        self._finished = finished
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        """Keep ``data``, or give up when the body grows past the limit."""
        if self._finished.called:
            return
        self._size += len(data)
        if self._size > self._limit:
            cast(IPushProducer, self.transport).stopProducing()
            self._finished.errback(_BodyTooLarge())
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure = _DONE) -> None:
        """The body is complete (or the transfer failed)."""
        if self._finished.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self._finished.callback(b"".join(self._parts))
        else:
            self._finished.errback(reason)


def _read_body(response: IResponse, limit: int) -> Deferred[bytes]:
    protocol: _Body | None = None

    def cancel(d: Deferred[bytes]) -> None:
        if protocol is not None and protocol.transport is not None:
            cast(IPushProducer, protocol.transport).stopProducing()

    finished: Deferred[bytes] = Deferred(cancel)
    protocol = _Body(finished, limit)
    response.deliverBody(protocol)
    return finished


def _lifetime(headers: Headers, ceiling: float) -> float:
    """How long a response may be kept: its ``Cache-Control``, at most ``ceiling``."""
    value = ", ".join(
        v.decode("latin-1") for v in headers.getRawHeaders(b"cache-control", [])
    ).lower()
    if "no-store" in value or "no-cache" in value:
        return 0.0
    match = _MAX_AGE.search(value)
    return min(float(match.group(1)), ceiling) if match else ceiling


@define(eq=False)
class _Entry:
    certificates: list[x509.Certificate] | None
    error: str
    expires: float
    verified: VerifiedSigner | None = None


@implementer(ISignerSource)
@define(eq=False)
class SignerCache:
    """
    Signers' keys by ``x5u`` URL: fetched, chained to the trust anchors, kept.

    :ivar agent: makes the HTTP requests (``twisted.web.client.Agent``).
    :ivar clock: for the timeout and the cache's expiry.
    :ivar trust: the anchors chains must reach.
    :ivar allowed: normalised URL prefixes (:func:`normalise_prefix`).
    """

    log = Logger()

    agent: IAgent
    clock: IReactorTime
    trust: TrustAnchors
    allowed: tuple[str, ...] = ()
    timeout: float = 5.0
    """Seconds a fetch may take, from the request to the last byte."""
    max_bytes: int = 65536
    """Largest body accepted."""
    ttl: float = 3600.0
    """How long certificates are kept, and the ceiling on ``max-age``."""
    failure_ttl: float = 30.0
    """How long a failed fetch is remembered (not retried)."""
    max_entries: int = 1000
    _entries: dict[str, _Entry] = field(factory=dict, init=False)
    _waiting: dict[str, list[Deferred[_Entry]]] = field(factory=dict, init=False)

    async def signer(self, url: str, now: float) -> VerifiedSigner:
        """
        The key that signs PASSporTs whose ``x5u`` is ``url``.

        :param url: the ``x5u``.
        :param now: the time the chain must be valid at.
        :returns: the verified signer.
        :raises X5UError: ``X5U_NOT_ALLOWED``, ``X5U_UNAVAILABLE`` or
            ``CERTIFICATE_UNTRUSTED``.
        """
        problem = x5u_problem(url, self.allowed)
        if problem is not None:
            raise X5UError(Reason.X5U_NOT_ALLOWED, f"x5u {problem}")
        entry = self._entries.get(url)
        if entry is None or entry.expires <= self.clock.seconds():
            entry = await self._fetched(url)
        if entry.certificates is None:
            raise X5UError(Reason.X5U_UNAVAILABLE, entry.error)
        if entry.verified is not None and entry.verified.valid_at(now):
            return entry.verified
        try:
            entry.verified = self.trust.verify(entry.certificates, now)
        except CertificateError as e:
            entry.verified = None
            raise X5UError(Reason.CERTIFICATE_UNTRUSTED, str(e)) from None
        return entry.verified

    def _fetched(self, url: str) -> Deferred[_Entry]:
        """The URL's entry, fetched once for every caller that waits for it."""
        waiter: Deferred[_Entry] = Deferred()
        waiters = self._waiting.get(url)
        if waiters is not None:
            waiters.append(waiter)
            return waiter
        self._waiting[url] = [waiter]
        fetch = ensureDeferred(self._fetch(url))
        fetch.addTimeout(self.timeout, self.clock)

        def done(result: _Entry | Failure) -> None:
            if isinstance(result, Failure):
                error = (
                    "timed out"
                    if result.check(DeferredTimeout)
                    else result.getErrorMessage()
                )
                self.log.info("x5u {url}: fetch failed: {error}", url=url, error=error)
                result = _Entry(
                    None,
                    f"x5u fetch failed: {error}",
                    self.clock.seconds() + self.failure_ttl,
                )
            self._keep(url, result)
            for w in self._waiting.pop(url):
                w.callback(result)

        fetch.addBoth(done)
        return waiter

    async def _fetch(self, url: str) -> _Entry:
        response = await self.agent.request(b"GET", url.encode("ascii"), _ACCEPT)
        if response.code != 200:
            response.deliverBody(Protocol())
            raise ValueError(f"HTTP {response.code}")
        if isinstance(response.length, int) and response.length > self.max_bytes:
            response.deliverBody(Protocol())
            raise ValueError(
                f"body of {response.length} bytes is over {self.max_bytes}"
            )
        try:
            body = await _read_body(response, self.max_bytes)
        except _BodyTooLarge:
            raise ValueError(f"body is over {self.max_bytes} bytes") from None
        lifetime = _lifetime(response.headers, self.ttl)
        expires = self.clock.seconds() + lifetime
        try:
            return _Entry(read_certificates(body), "", expires)
        except CertificateError as e:
            self.log.info("x5u {url}: {error}", url=url, error=str(e))
            return _Entry(None, f"x5u: {e}", self.clock.seconds() + self.failure_ttl)

    def _keep(self, url: str, entry: _Entry) -> None:
        """Remember ``entry``, dropping expired entries (then the oldest) when full."""
        self._entries.pop(url, None)
        if len(self._entries) >= self.max_entries:
            now = self.clock.seconds()
            for key in [k for k, e in self._entries.items() if e.expires <= now]:
                del self._entries[key]
            while len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]
        self._entries[url] = entry
