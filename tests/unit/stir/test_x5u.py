"""
Tests for :mod:`pbx.stir.x5u`: where certificates may be fetched from, and
the fetching cache, over an in-memory HTTP server (treq's
``RequestTraversalAgent``) and a fake agent that never answers.
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer
from zope.interface.verify import verifyObject

from treq.testing import RequestTraversalAgent
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IAgent
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from pbx.stir.certificates import TrustAnchors, VerifiedSigner
from pbx.stir.interfaces import ISignerSource
from pbx.stir.locations import normalise_prefix, x5u_problem
from pbx.stir.verdict import Reason
from pbx.stir.x5u import SignerCache, X5UError

from support.stir import NOW, PKI, make_pki

URL = "https://certs.example.com/shaken.pem"


class AllowedTests(SynchronousTestCase):
    """Which x5u URLs may be fetched."""

    def test_https_by_default(self) -> None:
        """With no prefixes, any https URL may be fetched and no http one."""
        self.assertIsNone(x5u_problem(URL, ()))
        self.assertIn(
            "not https", x5u_problem("http://certs.example.com/a.pem", ()) or ""
        )

    def test_local_addresses_need_a_prefix(self) -> None:
        """Without prefixes, https URLs to loopback, private or link-local addresses are refused."""
        for url in (
            "https://127.0.0.1/a.pem",
            "https://10.1.2.3/a.pem",
            "https://192.168.1.1:8443/a.pem",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/a.pem",
            "https://localhost/a.pem",
            "https://db.localhost/a.pem",
        ):
            self.assertIn("private or local", x5u_problem(url, ()) or "", url)
        self.assertIsNone(x5u_problem("https://8.8.8.8/a.pem", ()))
        allowed = (normalise_prefix("https://127.0.0.1/"),)
        self.assertIsNone(x5u_problem("https://127.0.0.1/a.pem", allowed))  # type: ignore[arg-type]

    def test_prefixes(self) -> None:
        """With prefixes, only URLs under them, http included where a prefix says so."""
        allowed = (
            normalise_prefix("https://cr.sti-ca.example/certs/"),
            normalise_prefix("http://127.0.0.1:8080"),
        )
        self.assertEqual(
            allowed, ("https://cr.sti-ca.example/certs/", "http://127.0.0.1:8080/")
        )
        self.assertIsNone(
            x5u_problem("https://cr.sti-ca.example/certs/sp1.pem", allowed)
        )  # type: ignore[arg-type]
        self.assertIsNone(x5u_problem("HTTP://127.0.0.1:8080/a.pem", allowed))  # type: ignore[arg-type]
        for url in (
            URL,
            "https://cr.sti-ca.example/other/sp1.pem",
            "http://127.0.0.1:8080.evil.example/a.pem",
            "http://127.0.0.1:80801/a.pem",
        ):
            self.assertEqual(
                x5u_problem(url, allowed), "is not under an allowed_x5u prefix", url
            )  # type: ignore[arg-type]

    def test_host_prefix_needs_a_slash(self) -> None:
        """A prefix that is a bare host does not allow longer host names."""
        allowed = (normalise_prefix("https://certs.example.com"),)
        self.assertIsNotNone(
            x5u_problem("https://certs.example.com.evil.org/a.pem", allowed)
        )  # type: ignore[arg-type]
        self.assertIsNone(x5u_problem("https://certs.example.com/a.pem", allowed))  # type: ignore[arg-type]

    def test_never(self) -> None:
        """Other schemes, user information, dot segments (escaped too), fragments and control characters never."""
        allowed = (normalise_prefix("https://certs.example.com/shaken/"),)
        for url in (
            "file:///etc/passwd",
            "ftp://certs.example.com/shaken/a.pem",
            "https://user@certs.example.com/shaken/a.pem",
            "https://certs.example.com/shaken/../private/key.pem",
            "https://certs.example.com/shaken/%2E%2E/private/key.pem",
            "https://certs.example.com/shaken/a.pem#x",
            "https://certs.example.com/shaken/a\r\n.pem",
            "https://certs.example.com/shaken/ä.pem",
            "https:///shaken/a.pem",
            "https://certs.example.com/shaken/" + "a" * 3000,
        ):
            self.assertIsNotNone(x5u_problem(url, allowed), url)  # type: ignore[arg-type]

    def test_bad_prefixes(self) -> None:
        """Prefixes that are not http(s) URLs with a host are refused."""
        for prefix in (
            "certs.example.com/",
            "ftp://h/",
            "https://",
            "https://u@h/",
            "https://h/?q",
            "https://h/ x",
        ):
            self.assertIsNone(normalise_prefix(prefix), prefix)


class Certificates(Resource):
    """Serves one body at every path, with chosen headers, counting requests."""

    isLeaf = True

    def __init__(
        self, body: bytes, code: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__()
        self.body = body
        self.code = code
        self.headers = headers or {}
        self.requests: list[bytes] = []
        self.chunked = False

    def render_GET(self, request: Request) -> Any:
        """Answer with the body (in two writes and no length when chunked)."""
        self.requests.append(request.uri)
        request.setResponseCode(self.code)
        for name, value in self.headers.items():
            request.setHeader(name, value)
        if self.chunked:
            request.write(self.body[: len(self.body) // 2])
            request.write(self.body[len(self.body) // 2 :])
            request.finish()
            return NOT_DONE_YET
        return self.body


@implementer(IAgent)
class SilentAgent:
    """An agent whose requests are never answered; it records cancellations."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.cancelled = 0

    def request(
        self, method: bytes, uri: bytes, headers: Any = None, bodyProducer: Any = None
    ) -> Deferred[Any]:
        """Record the request; the answer never comes."""
        self.requests.append(uri)

        def cancel(d: Deferred[Any]) -> None:
            self.cancelled += 1

        return Deferred(cancel)


class CacheTests(SynchronousTestCase):
    """Fetching, checking and keeping signers' certificates."""

    def setUp(self) -> None:
        self.pki: PKI = make_pki()
        self.clock = Clock()
        self.clock.advance(NOW)
        self.server = Certificates(self.pki.chain_pem())
        self.agent = RequestTraversalAgent(self.server)

    def cache(self, agent: Any = None, **options: Any) -> SignerCache:
        """A cache over the in-memory server (or ``agent``), trusting the test root."""
        return SignerCache(
            agent=agent or self.agent,
            clock=self.clock,
            trust=TrustAnchors((self.pki.root,)),
            **options,
        )

    def fetch(self, cache: SignerCache, url: str = URL) -> VerifiedSigner | Failure:
        """Ask for ``url``'s signer, pump the in-memory connection, and return the outcome."""
        d = ensureDeferred(cache.signer(url, NOW))
        self.agent.flush()
        results: list[Any] = []
        d.addBoth(results.append)
        self.assertEqual(len(results), 1, "the fetch did not finish")
        return results[0]

    def assertFailure_(self, outcome: object, reason: Reason) -> str:
        """``outcome`` is an X5UError with ``reason``; returns its detail."""
        self.assertIsInstance(outcome, Failure)
        assert isinstance(outcome, Failure)
        self.assertTrue(outcome.check(X5UError), outcome)
        self.assertIs(outcome.value.reason, reason, str(outcome.value))
        return str(outcome.value.detail)

    def test_interface(self) -> None:
        """The cache provides ISignerSource."""
        self.assertTrue(verifyObject(ISignerSource, self.cache()))

    def test_fetch_and_keep(self) -> None:
        """The first call fetches and verifies; calls within the TTL do not fetch again."""
        cache = self.cache(ttl=600)
        signer = self.fetch(cache)
        assert isinstance(signer, VerifiedSigner)
        self.assertEqual(signer.key, self.pki.signer_key.public_key())
        self.assertEqual(self.server.requests, [b"/shaken.pem"])
        self.clock.advance(599)
        self.assertIs(self.fetch(cache), signer)
        self.assertEqual(len(self.server.requests), 1)
        self.clock.advance(2)
        self.assertIsInstance(self.fetch(cache), VerifiedSigner)
        self.assertEqual(len(self.server.requests), 2)

    def test_max_age(self) -> None:
        """Cache-Control max-age shortens the TTL; no-store keeps nothing."""
        self.server.headers = {"Cache-Control": "public, max-age=30"}
        cache = self.cache(ttl=600)
        self.fetch(cache)
        self.clock.advance(29)
        self.fetch(cache)
        self.assertEqual(len(self.server.requests), 1)
        self.clock.advance(2)
        self.fetch(cache)
        self.assertEqual(len(self.server.requests), 2)
        self.server.headers = {"Cache-Control": "no-store"}
        self.clock.advance(31)
        self.fetch(cache)
        self.fetch(cache)
        self.assertEqual(len(self.server.requests), 4)

    def test_max_age_capped(self) -> None:
        """A max-age longer than the configured TTL is cut to it."""
        self.server.headers = {"Cache-Control": "max-age=999999"}
        cache = self.cache(ttl=60)
        self.fetch(cache)
        self.clock.advance(61)
        self.fetch(cache)
        self.assertEqual(len(self.server.requests), 2)

    def test_disallowed_not_fetched(self) -> None:
        """A URL outside the allowed prefixes fails without a request."""
        cache = self.cache(allowed=(normalise_prefix("https://cr.sti-ca.example/"),))
        self.assertFailure_(self.fetch(cache), Reason.X5U_NOT_ALLOWED)
        self.assertEqual(self.server.requests, [])

    def test_http_error(self) -> None:
        """A 404 is unavailable, and remembered for the failure TTL."""
        self.server.code = 404
        cache = self.cache(failure_ttl=30)
        self.assertIn(
            "HTTP 404", self.assertFailure_(self.fetch(cache), Reason.X5U_UNAVAILABLE)
        )
        self.server.code = 200
        self.assertFailure_(self.fetch(cache), Reason.X5U_UNAVAILABLE)
        self.assertEqual(len(self.server.requests), 1)
        self.clock.advance(31)
        self.assertIsInstance(self.fetch(cache), VerifiedSigner)

    def test_not_a_certificate(self) -> None:
        """A body that is not a certificate is unavailable."""
        self.server.body = b"<html>hello</html>"
        self.assertIn(
            "not a PEM",
            self.assertFailure_(self.fetch(self.cache()), Reason.X5U_UNAVAILABLE),
        )

    def test_too_large_by_length(self) -> None:
        """A body whose Content-Length is over the cap is refused."""
        self.server.body = self.pki.chain_pem() + b"\n" * 70000
        detail = self.assertFailure_(self.fetch(self.cache()), Reason.X5U_UNAVAILABLE)
        self.assertIn("bytes is over 65536", detail)

    def test_too_large_streamed(self) -> None:
        """A body without a length is cut off at the cap."""
        self.server.chunked = True
        self.server.body = b"x" * 5000
        detail = self.assertFailure_(
            self.fetch(self.cache(max_bytes=4000)), Reason.X5U_UNAVAILABLE
        )
        self.assertIn("body is over 4000 bytes", detail)

    def test_streamed_within_cap(self) -> None:
        """A chunked body under the cap is read whole."""
        self.server.chunked = True
        self.assertIsInstance(self.fetch(self.cache()), VerifiedSigner)

    def test_untrusted(self) -> None:
        """A chain to another root is untrusted; fixing the time does not help."""
        other = make_pki("Other")
        self.server.body = other.chain_pem()
        self.assertFailure_(self.fetch(self.cache()), Reason.CERTIFICATE_UNTRUSTED)
        self.assertFailure_(self.fetch(self.cache()), Reason.CERTIFICATE_UNTRUSTED)

    def test_rechecked_outside_window(self) -> None:
        """A cached chain is checked again once the time leaves its validity."""
        cache = self.cache(ttl=10**9)
        self.assertIsInstance(self.fetch(cache), VerifiedSigner)
        outcome = ensureDeferred(cache.signer(URL, NOW + 400 * 86400))
        results: list[Any] = []
        outcome.addBoth(results.append)
        self.assertFailure_(results[0], Reason.CERTIFICATE_UNTRUSTED)
        self.assertEqual(len(self.server.requests), 1)

    def test_timeout(self) -> None:
        """A server that never answers: the fetch is cancelled after the timeout and fails."""
        agent = SilentAgent()
        cache = self.cache(agent=agent, timeout=5.0)
        results: list[Any] = []
        ensureDeferred(cache.signer(URL, NOW)).addBoth(results.append)
        self.clock.advance(4.9)
        self.assertEqual(results, [])
        self.clock.advance(0.2)
        self.assertIn(
            "timed out", self.assertFailure_(results[0], Reason.X5U_UNAVAILABLE)
        )
        self.assertEqual(agent.cancelled, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_one_fetch_for_many_waiters(self) -> None:
        """Calls waiting for the same URL share one request."""
        agent = SilentAgent()
        cache = self.cache(agent=agent)
        results: list[Any] = []
        for _ in range(3):
            ensureDeferred(cache.signer(URL, NOW)).addBoth(results.append)
        self.assertEqual(len(agent.requests), 1)
        self.clock.advance(6)
        self.assertEqual(len(results), 3)
        for outcome in results:
            self.assertFailure_(outcome, Reason.X5U_UNAVAILABLE)

    def test_cancelled_waiter(self) -> None:
        """A call that gives up during the fetch leaves the fetch and the other waiters alone."""
        agent = SilentAgent()
        cache = self.cache(agent=agent)
        first = ensureDeferred(cache.signer(URL, NOW))
        results: list[Any] = []
        ensureDeferred(cache.signer(URL, NOW)).addBoth(results.append)
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.assertEqual((agent.cancelled, results), (0, []))
        self.clock.advance(6)
        self.assertFailure_(results[0], Reason.X5U_UNAVAILABLE)
        self.assertEqual(agent.cancelled, 1)

    def test_bounded(self) -> None:
        """The cache holds at most max_entries URLs."""
        cache = self.cache(max_entries=2)
        for name in ("a", "b", "c"):
            self.fetch(cache, f"https://certs.example.com/{name}.pem")
        self.fetch(cache, "https://certs.example.com/a.pem")
        self.assertEqual(len(self.server.requests), 4)
        self.fetch(cache, "https://certs.example.com/c.pem")
        self.assertEqual(len(self.server.requests), 4)
