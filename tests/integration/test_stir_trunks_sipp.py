"""
Integration tests: STIR/SHAKEN on the trunks, the real daemon against SIPp
carriers on loopback, checked by a signer and a verifier of the test's own
(PyJWT and ``cryptography``, against the test PKI of ``support.stir``), not
by pbx's.

- Out: 1001 dials out; the SIPp carrier (127.0.0.2, ``uas_answer.xml``)
  logs the INVITE it got; its ``Identity`` header's PASSporT verifies with
  the certificate fetched from its ``x5u`` (chained to the test root), with
  attest ``A`` for the trunk's own DID as caller ID and ``B`` for a route
  presenting another number, ``orig``/``dest`` the numbers sent.
- In: the carrier (``uac_carrier_identity.xml``) calls a DID with an
  Identity the test signed; the callee's SIPp phone gets From and
  P-Asserted-Identity with ``verstat=TN-Validation-Passed``, and the CDR
  says so; a tampered PASSporT is ``TN-Validation-Failed``; no Identity
  is ``No-TN-Validation``; with ``reject_failed: true`` the tampered call
  gets 438 and the phone never rings.

The certificate pbx and the test sign with is served over HTTP on loopback
(listed in ``allowed_x5u``).
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography import x509

from support.calls import bound_udp_ports
from support.daemon import free_port, wait_until
from support.sipp import CALLEE, LIMIT, SIPpCallCase
from support.stir import make_pki

pytestmark = pytest.mark.integration

DID = "+15551230000"
OTHER = "+15559990000"
OUTSIDE = "+13125550100"
#: The carrier's address: not the phones' (127.0.0.1), so its calls are told apart by source.
CARRIER = "127.0.0.2"


def received(messages: str, method: str) -> list[dict[str, str]]:
    """The headers (lower-case names, first value) of every ``method`` request in a SIPp message trace."""
    found = []
    for match in re.finditer(
        rf"received \[\d+\] bytes :\s*\n\n({method} .*?)(?=\n-{{20,}}|\Z)",
        messages,
        re.S,
    ):
        head = match.group(1).replace("\r\n", "\n").partition("\n\n")[0]
        headers: dict[str, str] = {}
        for line in head.split("\n")[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        found.append(headers)
    return found


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class StirTrunkCase(SIPpCallCase):
    """The daemon with a carrier trunk on 127.0.0.2 and ``stir_shaken:`` signing and verifying."""

    reject_failed = False

    def setUp(self) -> None:
        """The test PKI, valid now, and its chain served at the x5u URL on loopback."""
        self.pki = make_pki(around=time.time())
        chain = self.pki.chain_pem()

        class Serve(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                if self.path != "/shaken.pem":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/pem-certificate-chain")
                self.send_header("Content-Length", str(len(chain)))
                self.end_headers()
                self.wfile.write(chain)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Serve)
        thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 10)
        self.addCleanup(self.http.server_close)
        self.addCleanup(self.http.shutdown)
        self.x5u = f"http://127.0.0.1:{self.http.server_address[1]}/shaken.pem"
        super().setUp()

    def config(self, **kwargs: Any) -> str:
        """A carrier trunk (IP-authenticated from 127.0.0.2), two routes out, and ``stir_shaken:``."""
        self.carrier_port = free_port(socket.SOCK_DGRAM)
        config = json.loads(super().config(**kwargs))
        config["trunks"] = {
            "carrier": {
                "uri": f"sip:{CARRIER}:{self.carrier_port};transport=udp",
                "caller_id": DID,
                "allow_from": [f"{CARRIER}/32"],
                "dids": {DID: {"extension": CALLEE}},
            }
        }
        config["dialplan"] = [
            {
                "match": "_9NXXNXXXXXX",
                "trunk": ["carrier"],
                "strip": 1,
                "prepend": "+1",
            },
            {
                "match": "_8NXXNXXXXXX",
                "trunk": ["carrier"],
                "strip": 1,
                "prepend": "+1",
                "caller_id": OTHER,
            },
        ]
        (self.workdir / "shaken.pem").write_bytes(self.pki.chain_pem())
        (self.workdir / "shaken.key").write_bytes(self.pki.signer_key_pem())
        (self.workdir / "ca.pem").write_bytes(self.pki.root_pem())
        config["stir_shaken"] = {
            "certificate": str(self.workdir / "shaken.pem"),
            "key": str(self.workdir / "shaken.key"),
            "x5u": self.x5u,
            "trust": [str(self.workdir / "ca.pem")],
            "allowed_x5u": [f"http://127.0.0.1:{self.http.server_address[1]}/"],
            "reject_failed": self.reject_failed,
        }
        return json.dumps(config, indent=1)

    # -- the test's own signer and verifier -------------------------------------------

    def sign(self, orig: str, dest: str, attest: str = "A") -> str:
        """A SHAKEN PASSporT for ``orig`` -> ``dest`` signed with PyJWT (ES256) by the test PKI's signer."""
        claims = {
            "attest": attest,
            "dest": {"tn": [dest.lstrip("+")]},
            "iat": int(time.time()),
            "orig": {"tn": orig.lstrip("+")},
            "origid": str(uuid.uuid4()),
        }
        headers = {"typ": "passport", "ppt": "shaken", "x5u": self.x5u}
        return jwt.encode(
            claims, self.pki.signer_key, algorithm="ES256", headers=headers
        )

    def tamper(self, token: str, **claims: Any) -> str:
        """``token`` with its claims changed and the signature kept (what a forger on the path would send)."""
        header, payload, signature = token.split(".")
        changed = (
            json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            | claims
        )
        return ".".join([header, _b64(json.dumps(changed).encode()), signature])

    def verify(self, identity: str) -> dict[str, Any]:
        """
        Verify an Identity header as a carrier would: fetch ``x5u``, check the
        chain to the test root, check the ES256 signature; the claims.
        """
        token, *params = identity.split(";")
        self.assertIn(f"info=<{self.x5u}>", params)
        self.assertIn("ppt=shaken", params)
        header = jwt.get_unverified_header(token)
        self.assertEqual(
            (header["alg"], header["typ"], header["ppt"], header["x5u"]),
            ("ES256", "passport", "shaken", self.x5u),
        )
        with urllib.request.urlopen(header["x5u"], timeout=10) as response:
            signer, intermediate = x509.load_pem_x509_certificates(response.read())
        signer.verify_directly_issued_by(intermediate)
        intermediate.verify_directly_issued_by(self.pki.root)
        claims = jwt.decode(token, signer.public_key(), algorithms=["ES256"])
        self.assertLess(abs(claims["iat"] - time.time()), 60)
        uuid.UUID(claims["origid"])
        return claims

    # -- running the carrier ------------------------------------------------------------

    def listening(self, port: int) -> None:
        """Wait until a SIPp just started has bound ``port`` (a loaded machine starts it slowly)."""
        wait_until(
            lambda: port in bound_udp_ports(port, port),
            LIMIT,
            f"SIPp listening on {port}",
        )

    def carrier_calls(
        self, scenario: str, rows: list[tuple[str, ...]], name: str
    ) -> None:
        """The carrier on 127.0.0.2 places one call per row with ``scenario``, one after the other."""
        inf = self.injection(name, rows)
        process = self.start_sipp(
            scenario, free_port(socket.SOCK_DGRAM), "-inf", str(inf), "-m", str(len(rows)),
            "-mp", str(next(self.media_ports)), "-i", CARRIER, f"127.0.0.1:{self.sip_port}", name=name,
        )  # fmt: skip
        self.finish(process, name)


class SignAndVerifyTests(StirTrunkCase):
    """Signing out, verifying in; failures marked, not refused."""

    def test_outbound_invites_are_signed(self) -> None:
        """
        The carrier's INVITEs carry an Identity the test's verifier accepts:
        attest A with the trunk's DID as caller ID, B with another number;
        orig the caller ID, dest the number sent.
        """
        carrier = self.start_sipp(
            "uas_answer",
            self.carrier_port,
            "-m",
            "2",
            "-mp",
            str(next(self.media_ports)),
            "-i",
            CARRIER,
            name="carrier",
        )
        self.listening(self.carrier_port)
        self.call("uac_auth", "95552345678")
        self.call("uac_auth", "85552345678")
        self.finish(carrier, "carrier")
        invites = received(
            (self.workdir / "carrier.messages").read_text(errors="replace"), "INVITE"
        )
        self.assertEqual(len(invites), 2)
        found = [self.verify(invite["identity"]) for invite in invites]
        self.assertEqual(
            [(c["attest"], c["orig"], c["dest"]) for c in found],
            [
                ("A", {"tn": "15551230000"}, {"tn": ["15552345678"]}),
                ("B", {"tn": "15559990000"}, {"tn": ["15552345678"]}),
            ],
        )
        self.assertIn(DID, invites[0]["p-asserted-identity"])
        self.assert_idle()

    def test_inbound_verdicts_reach_the_phone_and_the_record(self) -> None:
        """
        A good PASSporT: the phone sees verstat=TN-Validation-Passed on From
        and P-Asserted-Identity, the CDR too; a tampered one: Failed (the call
        still rings); none: No-TN-Validation.
        """
        phone = self.register_callee()
        callee = self.start_callee("uas_answer", phone, 3)
        self.listening(phone)
        good = self.sign(OUTSIDE, DID)
        self.carrier_calls(
            "uac_carrier_identity", [(OUTSIDE, DID, good, self.x5u)], "good"
        )
        forged = self.tamper(self.sign(OUTSIDE, DID), orig={"tn": "13125550199"})
        self.carrier_calls(
            "uac_carrier_identity", [(OUTSIDE, DID, forged, self.x5u)], "forged"
        )
        self.carrier_calls("uac_carrier_call", [(OUTSIDE, DID)], "plain")
        self.finish(callee, "callee-uas_answer")
        invites = received(
            (self.workdir / "callee-uas_answer.messages").read_text(errors="replace"),
            "INVITE",
        )
        expected = ["TN-Validation-Passed", "TN-Validation-Failed", "No-TN-Validation"]
        self.assertEqual(len(invites), 3)
        for invite, verstat in zip(invites, expected, strict=True):
            self.assertIn(f"<sip:{OUTSIDE};verstat={verstat}@", invite["from"])
            self.assertIn(
                f"<sip:{OUTSIDE};verstat={verstat}@", invite["p-asserted-identity"]
            )
            self.assertNotIn(
                "identity", invite
            )  # the carrier's Identity stays on pbx's side
        records = [
            r
            for r in self.wait_records(6)
            if r["caller"] == OUTSIDE and r["leg"] == "a"
        ]
        self.assertEqual(
            [(r["trunk"], r["disposition"], r["verstat"]) for r in records],
            [("carrier", "ANSWERED", v) for v in expected],
        )
        self.assertTrue(
            any(
                "verstat=TN-Validation-Failed stir=orig-mismatch" in line
                or "verstat=TN-Validation-Failed stir=bad-signature" in line
                for line in self.daemon.output
            )
        )
        self.assert_idle()


class RejectFailedTests(StirTrunkCase):
    """``reject_failed: true``: a failed call is refused with RFC 8224's status."""

    reject_failed = True

    def test_tampered_identity_is_refused(self) -> None:
        """A PASSporT whose claims were changed gets 438; the phone never rings; a good one still goes through."""
        phone = self.register_callee()
        callee = self.start_callee("uas_answer", phone, 1)
        self.listening(phone)
        forged = self.tamper(
            self.sign(OUTSIDE, DID), attest="A", orig={"tn": "13125550199"}
        )
        self.carrier_calls(
            "uac_carrier_identity_refused", [(OUTSIDE, DID, forged, self.x5u)], "forged"
        )
        log = (self.workdir / "forged.log").read_text(errors="replace")
        self.assertEqual(re.findall(r"final (\d{3})", log), ["438"])
        self.carrier_calls(
            "uac_carrier_identity",
            [(OUTSIDE, DID, self.sign(OUTSIDE, DID), self.x5u)],
            "good",
        )
        self.finish(callee, "callee-uas_answer")
        invites = received(
            (self.workdir / "callee-uas_answer.messages").read_text(errors="replace"),
            "INVITE",
        )
        self.assertEqual(len(invites), 1)
        self.assertIn("verstat=TN-Validation-Passed", invites[0]["from"])
        self.assert_idle()
