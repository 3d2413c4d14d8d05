"""
Integration: STIR/SHAKEN certificates fetched over real HTTP on loopback.

A twisted.web server on 127.0.0.1 serves the signer's chain, as a carrier's
certificate repository would; pbx's verifier, built from ``stir_shaken:``
options and files with a real ``Agent``, fetches it only from the allowed
prefix, keeps it, and verifies a PASSporT signed by pbx.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from pbx.stir.options import parse_options
from pbx.stir.service import StirShaken, build_stir_shaken
from pbx.stir.signer import OutboundCall
from pbx.stir.verdict import Reason, Status

from support.daemon import free_port
from support.stir import make_pki

pytestmark = pytest.mark.integration


def _reactor() -> Any:
    """The global reactor: these tests do real network I/O."""
    from twisted.internet import reactor

    return reactor


class Repository(Resource):
    """A certificate repository: one chain at /sti/sp.pem, 404 elsewhere; counts requests."""

    isLeaf = True

    def __init__(self, chain: bytes) -> None:
        super().__init__()
        self.chain = chain
        self.requests: list[bytes] = []

    def render_GET(self, request: Request) -> bytes:
        """Serve the chain with a max-age, or 404."""
        self.requests.append(request.path)
        if request.path != b"/sti/sp.pem":
            request.setResponseCode(404)
            return b"not here"
        request.setHeader(b"content-type", b"application/pem-certificate-chain")
        request.setHeader(b"cache-control", b"max-age=300")
        return self.chain


class X5UOverHTTPTests(TestCase):
    """Real sockets on loopback, real Agent, real clock."""

    def setUp(self) -> None:
        reactor = _reactor()
        self.pki = make_pki(around=time.time())
        self.repository = Repository(self.pki.chain_pem())
        self.port = free_port()
        listening = reactor.listenTCP(
            self.port, Site(self.repository), interface="127.0.0.1"
        )
        self.addCleanup(listening.stopListening)
        folder = Path(self.mktemp())
        folder.mkdir()
        (folder / "sp.pem").write_bytes(self.pki.chain_pem())
        (folder / "sp.key").write_bytes(self.pki.signer_key_pem())
        (folder / "ca.pem").write_bytes(self.pki.root_pem())
        self.base = f"http://127.0.0.1:{self.port}"
        self.x5u = f"{self.base}/sti/sp.pem"
        options = parse_options(
            {
                "certificate": "sp.pem",
                "key": "sp.key",
                "x5u": self.x5u,
                "trust": ["ca.pem"],
                "allowed_x5u": [f"{self.base}/sti/"],
                "x5u_timeout": 5,
            },
            folder,
        )
        assert options is not None
        self.stir: StirShaken = build_stir_shaken(options, reactor, Agent(reactor))

    def sign(self) -> str:
        """A PASSporT for 15551230000 -> 15557654321, signed by pbx now."""
        value = self.stir.sign_outbound(
            OutboundCall(
                "+15551230000",
                "+15557654321",
                authenticated=True,
                trunk_dids=frozenset({"15551230000"}),
            )
        )
        assert value is not None
        return value

    async def test_fetch_verify_and_cache(self) -> None:
        """The chain is fetched once over HTTP, the call passes, and the next call uses the cache."""
        value = self.sign()
        for _ in range(2):
            verdict = await ensureDeferred(
                self.stir.verify_inbound(
                    [value], "15551230000", "15557654321", time.time()
                )
            )
            self.assertEqual(verdict.status, Status.PASSED, verdict.detail)
            self.assertEqual((verdict.attest, verdict.x5u), ("A", self.x5u))
        self.assertEqual(self.repository.requests, [b"/sti/sp.pem"])

    async def test_outside_prefix_and_missing(self) -> None:
        """An http URL outside the allowed prefix is never fetched; a 404 inside it is unavailable."""
        value = self.sign().replace(self.x5u, f"{self.base}/other/sp.pem")
        verdict = await ensureDeferred(
            self.stir.verify_inbound([value], "15551230000", "15557654321", time.time())
        )
        self.assertEqual(verdict.reason, Reason.INFO_MISMATCH)
        assert self.stir.signer is not None
        # A signer whose x5u is outside the prefix this verifier allows.
        self.stir.signer.x5u = f"{self.base}/other/sp.pem"
        verdict = await ensureDeferred(
            self.stir.verify_inbound(
                [self.sign()], "15551230000", "15557654321", time.time()
            )
        )
        self.assertEqual(verdict.reason, Reason.X5U_NOT_ALLOWED)
        self.assertEqual(self.repository.requests, [])
        self.stir.signer.x5u = f"{self.base}/sti/gone.pem"
        verdict = await ensureDeferred(
            self.stir.verify_inbound(
                [self.sign()], "15551230000", "15557654321", time.time()
            )
        )
        self.assertEqual(verdict.reason, Reason.X5U_UNAVAILABLE)
        self.assertIn("HTTP 404", verdict.detail)
        self.assertEqual(self.repository.requests, [b"/sti/gone.pem"])
