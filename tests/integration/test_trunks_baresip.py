"""
Integration test: two pbx instances joined by a trunk, a baresip phone on
each side, talking with audio checked both ways.

pbx A (extension 1001, DID +15552001001) and pbx B (extensions 2001 and
2002, DIDs +15553002001 and +15553002002) each have a trunk to the other,
IP-authenticated by the other's SIP address and port (both run on
127.0.0.1, like the phones, so the port tells them apart).  Each dials the
other with ``9`` and ten digits.  A call from a trunk is not challenged:
its DID picks the phone that rings, and only that one.

For each call: both phones report it established; both relays (one per
pbx) carry packets both ways; the caller hangs up and the callee sees the
call closed; each phone's recording is the other phone's keyed tone
(:func:`support.calls.heard_problems`); the records on each side name the
trunk and the numbers.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from twisted.trial.unittest import SynchronousTestCase

from support.baresip import LIMIT, MODULES, NEEDED, Phone
from support.calls import (
    call_config,
    free_udp_block,
    heard_problems,
    keyed_tone,
    read_pcm_wav,
    write_pcm_wav,
)
from support.daemon import (
    API,
    Daemon,
    admin_password,
    free_port,
    require_binary,
    strong_password,
    wait_until,
)

pytestmark = pytest.mark.integration

TONES = {"1001": 440.0, "2001": 700.0, "2002": 1000.0}
DIDS = {"1001": "+15552001001", "2001": "+15553002001", "2002": "+15553002002"}
SIGNAL_SECONDS = 8.0
#: Audio each way through each relay before the caller hangs up: 1.2 s of 20 ms packets.
PACKETS = 60
RELAY_PORTS = 40


class TwoPBXTests(SynchronousTestCase):
    """Phones on two pbx instances call each other through the trunk between them."""

    #: Whether A reaches B over TLS (see :class:`TLSTrunkTests`).
    tls = False

    def secure(self, side: str, config: dict[str, Any]) -> None:
        """Change ``side``'s configuration for TLS from A to B (a subclass does)."""

    def setUp(self) -> None:
        """Start both pbx instances and the three phones; wait for the registrations."""
        baresip = require_binary("baresip", "baresip-core")
        missing = [m for m in NEEDED if not (MODULES / f"{m}.so").is_file()]
        if missing:
            raise AssertionError(f"baresip-core is incomplete: no {missing} in {MODULES}")
        self.workdir = Path(tempfile.mkdtemp(prefix="pbx-trunks-"))
        self.addCleanup(shutil.rmtree, self.workdir, True)
        # Small blocks, one per relay and per phone: a benchmark holding ports beside
        # this test leaves few long runs free.
        relays = {side: free_udp_block(RELAY_PORTS) for side in ("a", "b")}
        sip = {"a": free_port(), "b": free_port()}
        self.tls_port, self.second_tls_port = free_port(), free_port()
        self.passwords = {number: strong_password(number) for number in TONES}
        self.daemons: dict[str, Daemon] = {}
        self.apis: dict[str, API] = {}
        # B first: with TLS, A trusts the certificate B makes at its first start.
        for side, numbers, other in (("b", ("2001", "2002"), "a"), ("a", ("1001",), "b")):
            admin = admin_password()
            config = json.loads(call_config(
                api_port=(api_port := free_port()), sip_port=sip[side], admin_password=admin,
                extensions={n: self.passwords[n] for n in numbers}, transports=("udp",),
                state_dir=str(self.workdir / side / "state"),
                rtp_ports=(relays[side], relays[side] + RELAY_PORTS - 1),
                **({"tls_port": self.tls_port} if side == "b" and self.tls else {}),
            ))
            config["trunks"] = {f"pbx-{other}": {
                "uri": f"sip:127.0.0.1:{sip[other]}", "allow_from": [f"127.0.0.1:{sip[other]}"],
                "caller_id": DIDS[numbers[0]],
                "dids": {DIDS[n]: {"extension": n} for n in numbers},
            }}
            config["dialplan"] = [{"match": "_9NXXNXXXXXX", "trunk": f"pbx-{other}", "strip": 1, "prepend": "+1"}]
            if self.tls:
                self.secure(side, config)
            daemon = Daemon(str(self.workdir / side), json.dumps(config))
            self.addCleanup(daemon.stop)
            daemon.start()
            self.daemons[side], self.apis[side] = daemon, API(api_port, admin)
        self.phones: dict[str, Phone] = {}
        self.patterns: dict[str, list[bool]] = {}
        for index, number in enumerate(TONES):
            samples, self.patterns[number] = keyed_tone(TONES[number], SIGNAL_SECONDS, seed=index + 1)
            write_pcm_wav(self.workdir / f"signal-{number}.wav", samples)
            side = "a" if number.startswith("1") else "b"
            phone = Phone(baresip, self.workdir / f"baresip-{number}", number, self.passwords[number], sip[side],
                          Path("..", f"signal-{number}.wav"), free_udp_block(20), answer=True)
            self.addCleanup(phone.stop)
            self.phones[number] = phone
        for number in TONES:
            api = self.apis["a" if number.startswith("1") else "b"]
            wait_until(lambda n=number, api=api: [r for r in api.registrations() if r["extension"] == n],
                       LIMIT, f"{number}'s registration")

    def carried(self, side: str) -> tuple[int, int] | None:
        """Packets one pbx's relay carried each way in its one live call, once confirmed."""
        calls = self.apis[side].get("/calls")["calls"]
        if len(calls) != 1 or calls[0]["state"] != "confirmed":
            return None
        media = calls[0]["media"]
        return media["a_to_b"]["packets"], media["b_to_a"]["packets"]

    def talk(self, caller: str, callee: str) -> None:
        """``caller`` dials ``callee``'s DID with 9; both talk through both relays; the caller hangs up."""
        a, b = self.phones[caller], self.phones[callee]
        others = [p for n, p in self.phones.items() if n not in (caller, callee)]
        marks = {a: a.control.mark(), b: b.control.mark()}
        recorded = {p: p.recorded() for p in self.phones.values()}
        dialled = "9" + DIDS[callee][2:]
        what = f"{caller} -> {dialled} ({callee})"
        try:
            a.control.command("dial", dialled)
            for phone in (a, b):
                phone.control.event("CALL_ESTABLISHED", since=marks[phone])
            for side in ("a", "b"):
                wait_until(lambda s=side: (c := self.carried(s)) and min(c) >= PACKETS, LIMIT,
                           f"{PACKETS} packets each way through pbx {side}'s relay ({what})")
            a.control.command("hangup")
            for phone in (a, b):
                phone.control.event("CALL_CLOSED", since=marks[phone])
        except AssertionError as e:
            tails = "\n".join(f"pbx {s}:\n" + "\n".join(list(d.output)[-25:]) for s, d in self.daemons.items())
            raise AssertionError(f"{what}: {e}\n{tails}") from None
        for listener, talker in ((a, callee), (b, caller)):
            [path] = wait_until(lambda p=listener: p.recorded() - recorded[p] or None, LIMIT,
                                f"{listener.number}'s recording of {what}")
            audio = wait_until(lambda p=path: read_pcm_wav(p) or None, LIMIT, f"audio in {path}")
            problems = heard_problems(audio, talker=TONES[talker], own=TONES[listener.number],
                                      pattern=self.patterns[talker], seconds=0.5)
            self.assertEqual(problems, [], f"{listener.number} hearing {talker}: {what}")
        for phone in others:
            self.assertEqual(phone.recorded(), recorded[phone], f"{phone.number} rang in {what}")

    def records(self, side: str, count: int) -> list[dict[str, Any]]:
        """The newest ``count`` records of one pbx, once written."""
        api = self.apis[side]
        return wait_until(lambda: p["records"][:count] if (p := api.get(f"/cdr?limit={count}"))["total"] >= count
                          else None, LIMIT, f"{count} records on pbx {side}")

    def test_calls_both_ways(self) -> None:
        """A's phone reaches B's second DID (only that phone rings), then B's first phone reaches A's."""
        self.talk("1001", "2002")
        out = next(r for r in self.records("a", 2) if r["leg"] == "a")
        self.assertEqual((out["caller"], out["trunk"], out["dialled"], out["sent"], out["disposition"]),
                         ("1001", "pbx-b", "95553002002", DIDS["2002"], "ANSWERED"))
        into = next(r for r in self.records("b", 2) if r["leg"] == "a")
        self.assertEqual((into["caller"], into["callee"], into["disposition"]), (DIDS["1001"], "2002", "ANSWERED"))

        self.talk("2001", "1001")
        back = next(r for r in self.records("b", 4) if r["leg"] == "a" and r["caller"] == "2001")
        self.assertEqual((back["trunk"], back["sent"]), ("pbx-a", DIDS["1001"]))
        for daemon in self.daemons.values():
            self.assertFalse(daemon.tracebacks)


class TLSTrunkTests(TwoPBXTests):
    """
    A reaches B over TLS, verifying B's certificate: with B's certificate
    as the trunk's ``ca`` the call connects with audio both ways; a trunk
    whose ``ca`` is another certificate never gets its INVITE to B.

    B takes INVITEs from all of 127.0.0.1 as the trunk (A's TLS connection
    comes from a port nobody knows beforehand), so only A calls here.
    """

    tls = True

    def secure(self, side: str, config: dict[str, Any]) -> None:
        """A: the trunk to B over TLS trusting B's certificate, and one trusting another; B: A by address."""
        if side == "b":
            config["trunks"]["pbx-a"]["allow_from"] = ["127.0.0.1/32"]
            # A second TLS port with the same certificate, for the trunk that does not trust it.
            config["sip"]["listen"].append(f"tls:{self.second_tls_port}:interface=127.0.0.1")
            return
        trusted = self.workdir / "b" / "state" / "tls" / "cert.pem"
        stranger = self.workdir / "stranger.pem"
        stranger.write_bytes(_self_signed("127.0.0.1"))
        trunk = config["trunks"]["pbx-b"]
        trunk.update(uri=f"sip:127.0.0.1:{self.tls_port};transport=tls", ca=str(trusted))
        config["trunks"]["untrusted"] = {**trunk, "uri": f"sip:127.0.0.1:{self.second_tls_port};transport=tls",
                                         "ca": str(stranger), "setup_timeout": 2, "dids": {}}
        config["dialplan"].append({"match": "_8NXXNXXXXXX", "trunk": "untrusted", "strip": 1, "prepend": "+1"})

    def test_calls_both_ways(self) -> None:
        """A's phone reaches B's DID over the verified TLS trunk, audio both ways."""
        self.talk("1001", "2002")
        out = next(r for r in self.records("a", 2) if r["leg"] == "a")
        self.assertEqual((out["trunk"], out["sent"], out["disposition"]), ("pbx-b", DIDS["2002"], "ANSWERED"))

    def test_unverified_carrier_gets_nothing(self) -> None:
        """Through the trunk that does not trust B's certificate the call fails and nothing rings at B."""
        a = self.phones["1001"]
        mark = a.control.mark()
        recorded = {p: p.recorded() for p in self.phones.values()}
        a.control.command("dial", "8" + DIDS["2002"][2:])
        a.control.event("CALL_CLOSED", since=mark)
        failed = next(r for r in self.records("a", 1) if r["leg"] == "a")
        self.assertEqual((failed["trunk"], failed["disposition"], failed["hangup_cause"]),
                         ("untrusted", "FAILED", "503 No Trunk Available"))
        self.assertEqual(self.apis["b"].get("/cdr?limit=1")["total"], 0)
        for phone in self.phones.values():
            self.assertEqual(phone.recorded(), recorded[phone])


def _self_signed(address: str) -> bytes:
    """A self-signed certificate for ``address`` that nobody here uses to serve: a CA B is not signed by."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stranger")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)
