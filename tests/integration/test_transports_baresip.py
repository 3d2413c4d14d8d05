"""
Integration tests: baresip calls baresip through pbx over every pair of
transports (UDP, TCP, TLS on either side), with audio checked both ways and
the call hung up once from each side.

One daemon and six phones serve the whole class: for each transport a
calling phone (a 440 Hz keyed tone) and an answering one (1000 Hz, auto
answer).  Each test is one pair of transports and places two calls: the
caller hangs up the first, the callee the second.  For each call:

- both phones report the call established, and pbx lists it as confirmed:
  the caller's ACK arrived (a lost ACK would leave it answered until
  Timer H ends it after 32 s);
- after about 1.2 s of audio each way through the relay, one side hangs up;
  the other phone sees the call closed, so the BYE crossed pbx (from a
  callee, it must reach pbx on the callee's connection);
- the two call records say ANSWERED, with the side that hung up and BYE;
- each phone's recording of the call is the other phone's signal
  (:func:`support.calls.heard_problems`).

:class:`GoneConnectionTests` kills a TCP callee's baresip and calls it: with
RFC 5626 outbound (baresip's ``sipnat=outbound``) pbx sends nothing and the
caller hears 480 at once; without, pbx dials the port its Contact names, is
refused, and the caller hears 480 at once too.  Neither dials the port the
phone's old connection came from.

See ``test_calls_baresip.py`` for how baresip plays and records audio, and
``test_peers_baresip.py`` for TLS: libre 1.1.0 does not verify the server's
certificate, but the phones are still pointed at pbx's self-signed one.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path
from typing import ClassVar

import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.baresip import LIMIT, Phone, require_baresip, stop_all, wait_registered
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
    strong_password,
    wait_until,
)

pytestmark = pytest.mark.integration

TRANSPORTS = ("udp", "tcp", "tls")
#: The calling and the answering phone on each transport.
CALLERS = {"udp": "1101", "tcp": "1102", "tls": "1103"}
CALLEES = {"udp": "1201", "tcp": "1202", "tls": "1203"}
#: Tone (Hz) of every caller and of every callee; keying seeds differ per phone.
CALLER_TONE, CALLEE_TONE = 440.0, 1000.0
#: Longer than any call: baresip hangs up when its file ends.
SIGNAL_SECONDS = 8.0
#: Audio each way (20 ms packets) before the test hangs up: 1.2 s.
PACKETS = 60
RELAY_PORTS = 40


class TransportMatrixTests(SynchronousTestCase):
    """Calls between baresip phones on every pair of transports work, and end from either side."""

    daemon: ClassVar[Daemon]
    api: ClassVar[API]
    phones: ClassVar[dict[str, Phone]]
    patterns: ClassVar[dict[str, list[bool]]]
    workdir: ClassVar[Path]
    relay: ClassVar[tuple[int, int]]

    @classmethod
    def setUpClass(cls) -> None:
        """Start pbx (UDP, TCP, TLS) and the six phones; wait for every registration."""
        baresip = require_baresip()
        cls.workdir = Path(tempfile.mkdtemp(prefix="pbx-transports-"))
        cls.phones, cls.patterns = {}, {}
        phones = [
            (number, transport, number in CALLERS.values())
            for transport in TRANSPORTS
            for number in (CALLERS[transport], CALLEES[transport])
        ]
        passwords = {number: strong_password(number) for number, _, _ in phones}
        sip_port, tls_port, api_port = free_port(), free_port(), free_port()
        first = free_udp_block(RELAY_PORTS + 20 * len(phones))
        cls.relay = (first, first + RELAY_PORTS - 1)
        admin = admin_password()
        cls.daemon = Daemon(
            str(cls.workdir / "pbx"),
            call_config(
                api_port=api_port,
                sip_port=sip_port,
                admin_password=admin,
                extensions=passwords,
                transports=("udp", "tcp"),
                tls_port=tls_port,
                state_dir=str(cls.workdir / "pbx" / "state"),
                rtp_ports=cls.relay,
            ),
        )
        cls.api = API(api_port, admin)
        try:
            cls.daemon.start()
            cls._start_phones(baresip, phones, passwords, (sip_port, tls_port), first)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _start_phones(
        cls,
        baresip: str,
        phones: list[tuple[str, str, bool]],
        passwords: dict[str, str],
        ports: tuple[int, int],
        first: int,
    ) -> None:
        """Start each (number, transport, calling) phone; wait for every registration."""
        sip_port, tls_port = ports
        for index, (number, transport, calling) in enumerate(phones):
            samples, cls.patterns[number] = keyed_tone(
                CALLER_TONE if calling else CALLEE_TONE, SIGNAL_SECONDS, seed=index + 1
            )
            source = cls.workdir / f"signal-{number}.wav"
            write_pcm_wav(source, samples)
            cls.phones[number] = Phone(
                baresip,
                cls.workdir / f"baresip-{number}",
                number,
                passwords[number],
                tls_port if transport == "tls" else sip_port,
                # Relative to baresip's working directory: it cuts
                # configuration values short, and temporary paths are long.
                Path("..", source.name),
                first + RELAY_PORTS + 20 * index,
                answer=not calling,
                transport=transport,
                cafile=Path("..", "pbx", "state", "tls", "cert.pem"),
            )
        wait_registered(cls.phones, cls.api.registrations)

    @classmethod
    def tearDownClass(cls) -> None:
        """Stop the phones and pbx; remove their files."""
        stop_all(cls.phones, cls.daemon, cls.workdir)

    def carried(self) -> tuple[int, int] | None:
        """Packets the relay carried each way in the one live call, once it is confirmed (ACKed)."""
        calls = self.api.get("/calls")["calls"]
        if len(calls) != 1 or calls[0]["state"] != "confirmed":
            return None
        media = calls[0]["media"]
        return media["a_to_b"]["packets"], media["b_to_a"]["packets"]

    def call(self, caller_transport: str, callee_transport: str, hangup: str) -> None:
        """
        One call from the caller on ``caller_transport`` to the callee on
        ``callee_transport``, hung up by ``hangup`` (``a``: the caller, ``b``:
        the callee), checked as the module docstring says.
        """
        number_a, number_b = CALLERS[caller_transport], CALLEES[callee_transport]
        a, b = self.phones[number_a], self.phones[number_b]
        what = f"{caller_transport} {number_a} -> {callee_transport} {number_b}, {hangup} hangs up"
        marks = {a: a.control.mark(), b: b.control.mark()}
        recorded = {a: a.recorded(), b: b.recorded()}
        records_before = self.api.get("/cdr?limit=1")["total"]
        try:
            a.control.command("dial", number_b)
            for phone in (a, b):
                phone.control.event("CALL_ESTABLISHED", since=marks[phone])
            wait_until(
                lambda: (c := self.carried()) and min(c) >= PACKETS,
                LIMIT,
                f"{PACKETS} packets each way through the relay ({what})",
            )
            ender = a if hangup == "a" else b
            ender.control.command("hangup")
            for phone in (a, b):
                phone.control.event("CALL_CLOSED", since=marks[phone])
        except AssertionError as e:
            tail = "\n".join(list(self.daemon.output)[-30:])
            raise AssertionError(f"{what}: {e}\npbx:\n{tail}") from None

        records = wait_until(
            lambda: (
                page["records"][:2]
                if (page := self.api.get("/cdr?limit=2"))["total"] >= records_before + 2
                else None
            ),
            LIMIT,
            f"the records of {what}",
        )
        self.assertEqual(sorted(r["leg"] for r in records), ["a", "b"], what)
        for r in records:
            self.assertEqual(
                (r["caller"], r["callee"], r["disposition"]),
                (number_a, number_b, "ANSWERED"),
                what,
            )
            self.assertEqual((r["hangup_side"], r["hangup_cause"]), (hangup, "BYE"), what)
        self.assertEqual(self.api.get("/calls")["calls"], [], what)

        for listener, talker, own, tone in (
            (a, number_b, CALLER_TONE, CALLEE_TONE),
            (b, number_a, CALLEE_TONE, CALLER_TONE),
        ):
            [path] = wait_until(
                lambda p=listener: p.recorded() - recorded[p] or None,
                LIMIT,
                f"{listener.number}'s recording of {what}",
            )
            problems = heard_problems(
                self.read(path), talker=tone, own=own, pattern=self.patterns[talker], seconds=0.5
            )
            self.assertEqual(problems, [], f"{listener.number} hearing {talker}: {what}")

    def read(self, path: Path) -> list[int]:
        """A phone's recording once baresip has closed it (its WAV header then holds the length)."""
        return wait_until(lambda: read_pcm_wav(path) or None, LIMIT, f"audio in {path}")

    def pair(self, caller_transport: str, callee_transport: str) -> None:
        """Two calls between the pair: the caller hangs up the first, the callee the second."""
        self.call(caller_transport, callee_transport, "a")
        self.call(caller_transport, callee_transport, "b")
        self.assertFalse([line for line in self.daemon.output if "malformed" in line])
        self.assertFalse(self.daemon.tracebacks)

    def test_udp_to_udp(self) -> None:
        """UDP caller, UDP callee: audio both ways, hang-up from each side."""
        self.pair("udp", "udp")

    def test_udp_to_tcp(self) -> None:
        """UDP caller, TCP callee: audio both ways, hang-up from each side."""
        self.pair("udp", "tcp")

    def test_udp_to_tls(self) -> None:
        """UDP caller, TLS callee: audio both ways, hang-up from each side."""
        self.pair("udp", "tls")

    def test_tcp_to_udp(self) -> None:
        """TCP caller, UDP callee: audio both ways, hang-up from each side."""
        self.pair("tcp", "udp")

    def test_tcp_to_tcp(self) -> None:
        """TCP caller, TCP callee: audio both ways, hang-up from each side."""
        self.pair("tcp", "tcp")

    def test_tcp_to_tls(self) -> None:
        """TCP caller, TLS callee: audio both ways, hang-up from each side."""
        self.pair("tcp", "tls")

    def test_tls_to_udp(self) -> None:
        """TLS caller, UDP callee: its ACK arrives, audio both ways, hang-up from each side."""
        self.pair("tls", "udp")

    def test_tls_to_tcp(self) -> None:
        """TLS caller, TCP callee: audio both ways, hang-up from each side."""
        self.pair("tls", "tcp")

    def test_tls_to_tls(self) -> None:
        """TLS caller, TLS callee: audio both ways, hang-up from each side."""
        self.pair("tls", "tls")


class GoneConnectionTests(SynchronousTestCase):
    """
    A TCP callee whose connection is gone (baresip killed, so it neither
    unregisters nor listens any more) fails the call at once: pbx never
    dials the port the phone's connection came from.
    """

    def setUp(self) -> None:
        """pbx on UDP and TCP; a UDP caller; a TCP callee with outbound (1202) and one without (1203)."""
        self.baresip = require_baresip("uuid")
        self.workdir = Path(self.mktemp()).absolute()
        self.workdir.mkdir(parents=True)
        numbers = ("1101", "1202", "1203")
        self.passwords = {n: strong_password(n) for n in numbers}
        self.sip_port, api_port = free_port(), free_port()
        first = free_udp_block(RELAY_PORTS + 20 * len(numbers))
        admin = admin_password()
        config = json.loads(call_config(
            api_port=api_port,
            sip_port=self.sip_port,
            admin_password=admin,
            extensions=self.passwords,
            transports=("udp", "tcp"),
            rtp_ports=(first, first + RELAY_PORTS - 1),
        ))
        # The test waits for the transport's debug line of the closed connection.
        config["log"] = {"level": "debug"}
        self.daemon = Daemon(str(self.workdir / "pbx"), json.dumps(config))
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.api = API(api_port, admin)
        samples, _ = keyed_tone(CALLER_TONE, SIGNAL_SECONDS, seed=1)
        write_pcm_wav(self.workdir / "signal.wav", samples)
        self.phones = {}
        for index, (number, transport, outbound) in enumerate(
            [("1101", "udp", False), ("1202", "tcp", True), ("1203", "tcp", False)]
        ):
            phone = Phone(
                self.baresip,
                self.workdir / f"baresip-{number}",
                number,
                self.passwords[number],
                self.sip_port,
                Path("..", "signal.wav"),
                first + RELAY_PORTS + 20 * index,
                answer=number != "1101",
                transport=transport,
                outbound=outbound,
            )
            self.addCleanup(phone.stop)
            self.phones[number] = phone
            self.binding(number)

    def binding(self, number: str) -> dict[str, str]:
        """``number``'s binding, once listed."""
        phone = self.phones[number]
        try:
            return wait_until(
                lambda: next(
                    (r for r in self.api.registrations() if r["extension"] == number), None
                ),
                LIMIT,
                f"{number}'s registration",
            )
        except AssertionError as e:
            raise AssertionError(f"{e}\n{phone.output()[-3000:]}") from None

    def call_gone(self, number: str) -> tuple[str, str]:
        """
        Kill ``number``'s baresip, wait until pbx saw its connection close,
        call it, and check the caller hears 480 within seconds.

        :returns: the port its connection came from and the one its Contact names.
        """
        binding = self.binding(number)
        source = binding["source"].rpartition(":")[2]
        contact = re.search(r"@127\.0\.0\.1:(\d+)", binding["contact"])
        assert contact is not None, binding
        self.phones[number].process.kill()
        self.daemon.wait_for(re.compile(rf"connection tcp:127\.0\.0\.1:{source} closed"), LIMIT)
        caller = self.phones["1101"].control
        since = caller.mark()
        started = time.monotonic()
        caller.command("dial", number)
        closed = caller.event("CALL_CLOSED", since=since)
        self.assertLess(time.monotonic() - started, 5.0, "not at once: a timer ended the call")
        self.assertIn("480", closed.get("param", ""), closed)
        return source, contact.group(1)

    def assert_source_not_dialled(self, source: str) -> None:
        """pbx never tried to open a connection to the port the phone's connection came from."""
        self.assertNotIn(f"connect to tcp:127.0.0.1:{source}", "\n".join(self.daemon.output))
        self.assertFalse(self.daemon.tracebacks)

    def test_outbound_flow_gone(self) -> None:
        """baresip registered with outbound: pbx does not dial anything, the caller hears 480 at once."""
        binding = self.binding("1202")
        self.assertNotIn(";ob", binding["contact"])  # reg-id and +sip.instance mark it
        source, contact = self.call_gone("1202")
        self.daemon.wait_for(re.compile(rf"no connection to tcp:127\.0\.0\.1:{source}; request dropped"), LIMIT)
        self.assertNotIn("could not connect", "\n".join(self.daemon.output))
        self.assert_source_not_dialled(source)

    def test_plain_connection_gone(self) -> None:
        """baresip registered without outbound: pbx dials its Contact's port (not its old one), refused, 480 at once."""
        source, contact = self.call_gone("1203")
        self.daemon.wait_for(re.compile(rf"could not connect to tcp:127\.0\.0\.1:{contact}\b"), LIMIT)
        self.assert_source_not_dialled(source)
