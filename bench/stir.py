"""
Micro-benchmark of STIR/SHAKEN: Identity headers signed and verified per
second on one core.

Run: ``PYTHONPATH=src python bench/stir.py`` (needs the test extras: treq
serves the certificate in memory).

- "sign" is :meth:`pbx.stir.service.StirShaken.sign_outbound`: attestation,
  PASSporT claims, an ES256 signature (PyJWT over cryptography/OpenSSL) and
  the Identity header value, for a new origid each call.
- "verify (cached x5u)" is :meth:`~pbx.stir.service.StirShaken.verify_inbound`
  of such a header once the certificate is in the cache and its chain has
  been checked: header parsing, the signature check, ``iat`` and orig/dest.
- "chain check" is what a first call from a new certificate adds (the fetch
  aside): building and checking the chain to the trust anchor.

Each figure is the best of seven runs.
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from treq.testing import RequestTraversalAgent  # noqa: E402
from twisted.internet.defer import ensureDeferred  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from twisted.web.resource import Resource  # noqa: E402
from twisted.web.static import Data  # noqa: E402

from pbx.stir.certificates import TrustAnchors  # noqa: E402
from pbx.stir.options import Credentials, StirShakenOptions  # noqa: E402
from pbx.stir.service import build_stir_shaken  # noqa: E402
from pbx.stir.signer import OutboundCall  # noqa: E402
from pbx.stir.verdict import Status  # noqa: E402

from support.stir import NOW, make_pki  # noqa: E402

X5U = "https://certs.example.com/sp.pem"


def per_second(function: Any, number: int = 2000) -> tuple[float, float]:
    """Best of seven runs: (operations per second, microseconds per operation)."""
    best = min(timeit.repeat(function, number=number, repeat=7)) / number
    return 1 / best, best * 1e6


def main() -> None:
    """Print one line per measurement."""
    pki = make_pki()
    root = Resource()
    root.putChild(b"sp.pem", Data(pki.chain_pem(), "application/pem-certificate-chain"))
    agent = RequestTraversalAgent(root)
    clock = Clock()
    clock.advance(NOW)
    options = StirShakenOptions(certificate="-", key="-", x5u=X5U, trust=("-",))
    credentials = Credentials(
        key=pki.signer_key,
        chain=(pki.signer, pki.intermediate),
        trust=TrustAnchors((pki.root,)),
    )
    stir = build_stir_shaken(options, clock, agent, credentials)
    call = OutboundCall(
        "+15551230000",
        "+15557654321",
        authenticated=True,
        trunk_dids=frozenset({"15551230000"}),
    )
    value = stir.sign_outbound(call)
    assert value is not None
    first = ensureDeferred(
        stir.verify_inbound([value], "15551230000", "15557654321", NOW)
    )
    agent.flush()
    verdicts: list[Any] = []
    first.addBoth(verdicts.append)
    assert verdicts[0].status is Status.PASSED, verdicts

    def verify() -> None:
        d = ensureDeferred(
            stir.verify_inbound([value], "15551230000", "15557654321", NOW)
        )
        result: list[Any] = []
        d.addBoth(result.append)
        assert result[0].status is Status.PASSED  # cached: done without waiting

    anchors = TrustAnchors((pki.root,))
    chain = [pki.signer, pki.intermediate]
    for name, function in (
        ("sign", lambda: stir.sign_outbound(call)),
        ("verify (cached x5u)", verify),
        ("chain check", lambda: anchors.verify(chain, NOW)),
    ):
        rate, micros = per_second(function, 500 if name == "chain check" else 2000)
        print(f"{name:22s} {rate:9,.0f} /s   {micros:7.1f} us each")
    print(f"Identity header: {len(value)} bytes")


if __name__ == "__main__":
    main()
