"""
Integration tests: SRTP (SDES keys, RFC 4568) between baresip phones
through pbx, with the ``srtp`` module and ``mediaenc=srtp-mand``.

One daemon and four phones serve the class:

- 1301 (caller, 440 Hz) and 1302 (callee, 1000 Hz, auto answer): TLS and
  SRTP only;
- 1303 (callee, 1000 Hz): plain RTP over UDP;
- 1304: SRTP only, but over UDP, and its extension's policy is ``required``;
- 1305: no phone, only a mailbox: a call to it goes to voicemail, which
  pbx terminates and answers with SRTP.

Each call is checked as ``test_transports_baresip.py`` checks its calls:
both phones established, about 1.2 s of audio each way through the relay,
hang-up from one side, the other side closed, each phone's recording the
other phone's keyed tone.  The call records say which leg was encrypted.
While the SRTP calls run, a capture on ``lo`` (as root) collects the
relay's packets: none may carry a PCMU tone, while the plain leg of the
SRTP-to-plain call must (the same detector, shown to find plain audio).
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
import wave
from pathlib import Path
from typing import Any, ClassVar

import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.apps import locate, prompt, prompt_seconds
from support.baresip import LIMIT, Phone, require_baresip, stop_all, wait_registered
from support.calls import (
    call_config,
    free_udp_block,
    heard_problems,
    keyed_tone,
    read_pcm_wav,
    tone_share,
    write_pcm_wav,
)
from support.capture import LoopbackCapture, plain_tone_packets
from support.daemon import (
    API,
    Daemon,
    admin_password,
    free_port,
    strong_password,
    wait_until,
)

pytestmark = pytest.mark.integration

SRTP_CALLER, SRTP_CALLEE, PLAIN_CALLEE, UDP_SRTP, MAILBOX = "1301", "1302", "1303", "1304", "1305"
#: number -> (transport, calls, account parameters)
PHONES = {
    SRTP_CALLER: ("tls", True, ";mediaenc=srtp-mand"),
    SRTP_CALLEE: ("tls", False, ";mediaenc=srtp-mand"),
    PLAIN_CALLEE: ("udp", False, ""),
    UDP_SRTP: ("udp", True, ";mediaenc=srtp-mand"),
}
CALLER_TONE, CALLEE_TONE = 440.0, 1000.0
#: What pbx says before the beep for the mailbox (vm/unavailable, its number, ...).
GREETING = ("vm/unavailable", "digits/1", "digits/3", "digits/0", "digits/5",
            "vm/is-unavailable", "vm/leave-message", "general/beep")
#: Longer than any call: baresip hangs up when its file ends.
SIGNAL_SECONDS = 20.0
PACKETS = 60
RELAY_PORTS = 40
SUITE = "AES_CM_128_HMAC_SHA1_80"


class SrtpCallTests(SynchronousTestCase):
    """SRTP phones on TLS call each other and plain phones through pbx; keys never travel over UDP."""

    daemon: ClassVar[Daemon]
    api: ClassVar[API]
    phones: ClassVar[dict[str, Phone]]
    patterns: ClassVar[dict[str, list[bool]]]
    workdir: ClassVar[Path]
    relay: ClassVar[tuple[int, int]]

    @classmethod
    def setUpClass(cls) -> None:
        """Start pbx (UDP, TLS) and the four phones; wait for every registration."""
        baresip = require_baresip("srtp")
        cls.workdir = Path(tempfile.mkdtemp(prefix="pbx-srtp-"))
        cls.phones, cls.patterns = {}, {}
        passwords = {number: strong_password(number) for number in (*PHONES, MAILBOX)}
        sip_port, tls_port, api_port = free_port(), free_port(), free_port()
        first = free_udp_block(RELAY_PORTS + 20 * len(PHONES))
        cls.relay = (first, first + RELAY_PORTS - 1)
        admin = admin_password()
        config = json.loads(call_config(
            api_port=api_port, sip_port=sip_port, admin_password=admin, extensions=passwords,
            transports=("udp",), tls_port=tls_port, state_dir=str(cls.workdir / "pbx" / "state"),
            rtp_ports=cls.relay,
        ))
        config["extensions"][UDP_SRTP]["srtp"] = "required"
        config["features"] = {"voicemail": {}}
        cls.daemon = Daemon(str(cls.workdir / "pbx"), json.dumps(config, indent=1))
        cls.api = API(api_port, admin)
        try:
            cls.daemon.start()
            cls._start_phones(baresip, passwords, (sip_port, tls_port), first)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _start_phones(cls, baresip: str, passwords: dict[str, str], ports: tuple[int, int], first: int) -> None:
        sip_port, tls_port = ports
        passwords = {number: passwords[number] for number in PHONES}
        for index, (number, (transport, calling, params)) in enumerate(PHONES.items()):
            samples, cls.patterns[number] = keyed_tone(
                CALLER_TONE if calling else CALLEE_TONE, SIGNAL_SECONDS, seed=index + 1
            )
            source = cls.workdir / f"signal-{number}.wav"
            write_pcm_wav(source, samples)
            cls.phones[number] = Phone(
                baresip, cls.workdir / f"baresip-{number}", number, passwords[number],
                tls_port if transport == "tls" else sip_port, Path("..", source.name),
                first + RELAY_PORTS + 20 * index, answer=not calling, transport=transport,
                cafile=Path("..", "pbx", "state", "tls", "cert.pem"), extra_modules=("srtp",), params=params,
            )
        wait_registered(cls.phones, cls.api.registrations)

    @classmethod
    def tearDownClass(cls) -> None:
        """Stop the phones and pbx; remove their files."""
        stop_all(cls.phones, cls.daemon, cls.workdir)

    def carried(self) -> dict[str, Any] | None:
        """The one live call once it is confirmed and has carried PACKETS each way."""
        calls = self.api.get("/calls")["calls"]
        if len(calls) != 1 or calls[0]["state"] != "confirmed":
            return None
        media = calls[0]["media"]
        if min(media["a_to_b"]["packets"], media["b_to_a"]["packets"]) < PACKETS:
            return None
        return calls[0]  # type: ignore[no-any-return]

    def call(self, caller: str, callee: str, hangup: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """
        One call, checked as the module docstring says.

        :returns: the live call as /api/v1/calls showed it, and its two records.
        """
        a, b = self.phones[caller], self.phones[callee]
        what = f"{caller} -> {callee}, {hangup} hangs up"
        marks = {a: a.control.mark(), b: b.control.mark()}
        recorded = {a: a.recorded(), b: b.recorded()}
        before = self.api.get("/cdr?limit=1")["total"]
        try:
            a.control.command("dial", callee)
            for phone in (a, b):
                phone.control.event("CALL_ESTABLISHED", since=marks[phone])
            live = wait_until(self.carried, LIMIT, f"{PACKETS} packets each way ({what})")
            (a if hangup == "a" else b).control.command("hangup")
            for phone in (a, b):
                phone.control.event("CALL_CLOSED", since=marks[phone])
        except AssertionError as e:
            tail = "\n".join(list(self.daemon.output)[-30:])
            raise AssertionError(f"{what}: {e}\npbx:\n{tail}\n{a.output()[-2000:]}") from None
        records = wait_until(
            lambda: page["records"][:2] if (page := self.api.get("/cdr?limit=2"))["total"] >= before + 2 else None,
            LIMIT, f"the records of {what}",
        )
        for r in records:
            self.assertEqual((r["disposition"], r["hangup_side"], r["hangup_cause"]), ("ANSWERED", hangup, "BYE"))
        for listener, talker, own, tone in ((a, callee, CALLER_TONE, CALLEE_TONE), (b, caller, CALLEE_TONE, CALLER_TONE)):
            [path] = wait_until(lambda p=listener: p.recorded() - recorded[p] or None, LIMIT, f"{listener.number}'s recording")
            audio = wait_until(lambda p=path: read_pcm_wav(p) or None, LIMIT, f"audio in {path}")
            problems = heard_problems(audio, talker=tone, own=own, pattern=self.patterns[talker], seconds=0.5)
            self.assertEqual(problems, [], f"{listener.number} hearing {talker}: {what}")
        self.assertFalse(self.daemon.tracebacks)
        return live, records

    def capture(self) -> LoopbackCapture:
        """A capture of the relay's ports (root only: skipped otherwise)."""
        if os.geteuid() != 0:
            pytest.skip("a capture on lo needs root (AF_PACKET)")
        capture = LoopbackCapture(range(self.relay[0], self.relay[1] + 1))
        capture.start()
        return capture

    def test_srtp_to_srtp(self) -> None:
        """Two SRTP phones on TLS: each leg keyed on its own, audio both ways, no plain PCMU on the wire."""
        capture = self.capture()
        try:
            live, records = self.call(SRTP_CALLER, SRTP_CALLEE, "a")
            self.call(SRTP_CALLER, SRTP_CALLEE, "b")
        finally:
            packets = capture.stop()
        self.assertEqual(live["srtp"], {"a": SUITE, "b": SUITE})
        self.assertEqual({r["leg"]: r["srtp"] for r in records}, {"a": SUITE, "b": SUITE})
        self.assertGreater(len(packets), 4 * PACKETS)
        self.assertEqual(plain_tone_packets(packets, (CALLER_TONE, CALLEE_TONE)), [])

    def test_srtp_to_plain(self) -> None:
        """An SRTP phone calls a plain phone on UDP: audio both ways, only the plain leg's RTP is in clear."""
        capture = self.capture()
        try:
            live, records = self.call(SRTP_CALLER, PLAIN_CALLEE, "b")
        finally:
            packets = capture.stop()
        self.assertEqual(live["srtp"], {"a": SUITE, "b": ""})
        self.assertEqual({r["leg"]: r["srtp"] for r in records}, {"a": SUITE, "b": ""})
        a_port, b_port = live["media"]["a"]["local_port"], live["media"]["b"]["local_port"]
        plain = plain_tone_packets(packets, (CALLER_TONE, CALLEE_TONE))
        self.assertGreater(len(plain), PACKETS // 2)  # the tones are keyed: about 60 % of frames
        self.assertEqual({port for pair in plain for port in pair if port in (a_port, b_port)}, {b_port})

    def test_srtp_over_udp_refused(self) -> None:
        """An SRTP offer over UDP from a phone whose policy requires SRTP: 488, no call."""
        phone = self.phones[UDP_SRTP]
        before = self.api.get("/cdr?limit=1")["total"]
        mark = phone.control.mark()
        phone.control.command("dial", SRTP_CALLEE)
        closed = phone.control.event("CALL_CLOSED", since=mark)
        self.assertIn("488", json.dumps(closed))
        [record] = wait_until(
            lambda: page["records"][:1] if (page := self.api.get("/cdr?limit=1"))["total"] > before else None,
            LIMIT, "the refused call's record",
        )
        self.assertEqual(record["disposition"], "FAILED")
        self.assertTrue(record["hangup_cause"].startswith("488"), record)
        self.assertEqual(self.api.get("/calls")["calls"], [])

    def test_srtp_voicemail(self) -> None:
        """An SRTP phone calls a mailbox: pbx's voicemail answers with SRTP, the phone hears the greeting, the message is kept."""
        phone = self.phones[SRTP_CALLER]
        mark, recorded = phone.control.mark(), phone.recorded()
        phone.control.command("dial", MAILBOX)
        phone.control.event("CALL_ESTABLISHED", since=mark)
        [path] = wait_until(lambda: phone.recorded() - recorded or None, LIMIT, "the caller's recording")
        # The greeting (pbx sends nothing after the beep), then 2 s of message by pbx's count.
        greeting = sum(prompt_seconds(p) for p in GREETING)
        wait_until(lambda: path.stat().st_size >= 44 + 2 * 8000 * (greeting - 0.5), LIMIT, "the greeting")
        wait_until(lambda: [c for c in self.api.get("/calls")["calls"] if c["duration"] > greeting + 2.0],
                   LIMIT, "2 s of message")
        phone.control.command("hangup")
        phone.control.event("CALL_CLOSED", since=mark)
        try:
            [message] = wait_until(lambda: self.api.get(f"/voicemail/{MAILBOX}/messages")["messages"],
                                   LIMIT, "the message in the API")
        except AssertionError as e:
            raise AssertionError(f"{e}\npbx:\n" + "\n".join(list(self.daemon.output)[-30:])) from None
        self.assertEqual(message["caller"], SRTP_CALLER)
        self.assertGreater(message["duration"], 1.0, message)
        with wave.open(io.BytesIO(self.api.download(f"/voicemail/{MAILBOX}/messages/{message['id']}/audio"))) as w:
            rate, raw = w.getframerate(), w.readframes(w.getnframes())
        kept = list(struct.unpack(f"<{len(raw) // 2}h", raw))
        self.assertEqual(rate, 8000)
        self.assertGreater(tone_share(kept, CALLER_TONE), 0.5, "the caller's tone, as pbx decrypted and kept it")
        audio = wait_until(lambda: read_pcm_wav(path) or None, LIMIT, f"audio in {path}")
        # A prompt after the first: pbx plays from its 200 OK, and the caller can
        # decrypt only once that answer brought pbx's key (RFC 4568 §7.5), so the
        # very first packets may be lost.  Through G.711 a prompt matches at r
        # above 0.99, other signals stay well below 0.5.
        r, _ = locate(audio, prompt("vm/leave-message"))
        self.assertGreater(r, 0.9, "the greeting as the SRTP phone decoded it")
        [record] = self.api.get(f"/cdr?caller={SRTP_CALLER}&callee={MAILBOX}")["records"]
        self.assertEqual((record["application"], record["srtp"]), ("voicemail", SUITE))
