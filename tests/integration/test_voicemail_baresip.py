"""
Integration test: voicemail end to end with real phones and a real mail
server.

Two baresip phones register: 1001 (the caller, G.722 first, so pbx records
at 16 kHz) and 1002 (the callee, G.711, with baresip's ``mwi`` module,
which subscribes to ``message-summary`` and prints every NOTIFY body).  A
second device of 1002, SIPp (``tests/sipp/uac_mwi_watch.xml``), subscribes
too and ends successfully only after NOTIFYs saying ``Messages-Waiting:
yes`` and then ``no``, in that order.  A local aiosmtpd server takes the
voicemail e-mail.

1. 1001 calls 1002; 1002 rings and never answers; after the ring timeout
   pbx answers the caller itself with 1002's voicemail.  1001's phone plays
   silence through the greeting, then a spoken sentence (flite), then
   silence until pbx ends the recording on silence.
2. The message shows in the API with its caller and length; 1002's phone
   and watcher get ``Messages-Waiting: yes``; the e-mail arrives with the recording
   attached and a transcript.
3. 1002 dials ``*97``, enters its PIN as RFC 4733 telephone-events, presses
   1, and hears the message: the sentence is found in what its phone
   decoded.  Once heard the message is old and the light goes out
   (``Messages-Waiting: no``).
"""

from __future__ import annotations

import email
import io
import json
import re
import socket
import subprocess
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from twisted.trial.unittest import SynchronousTestCase

from support.apps import locate, prompt_seconds
from support.baresip import Phone, press
from support.calls import RATE, call_config, free_udp_block, write_pcm_wav
from support.daemon import (
    API,
    Daemon,
    admin_password,
    free_port,
    require_binary,
    strong_password,
    wait_until,
)
from support.paths import SCENARIOS

pytestmark = pytest.mark.integration

CALLER, CALLEE = "1001", "1002"
PIN = "482913"
MAILTO = "callee@pbx.test"
SENTENCE = "Hello. Please call me back about the invoice tomorrow morning."
LIMIT = 30.0
RELAY_PORTS = 40
#: What pbx says before the beep for an unrecorded mailbox (vm/unavailable, the digits, ...).
WATCH = SCENARIOS / "uac_mwi_watch.xml"
GREETING = ("vm/unavailable", "digits/1", "digits/0", "digits/0", "digits/2",
            "vm/is-unavailable", "vm/leave-message", "general/beep")


class _Inbox:
    """An aiosmtpd handler that keeps every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd API
        self.messages.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 Message accepted"


def speech(path: Path) -> np.ndarray:
    """The test sentence spoken by flite, 16 kHz mono int16."""
    subprocess.run(["flite", "-voice", "slt", "-t", SENTENCE, "-o", str(path)], check=True)
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        rate = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    if rate != 16000:
        samples = soxr.resample(samples, rate, 16000).astype(np.int16)
    return samples


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """Mono 16-bit PCM at ``rate``."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())


class VoicemailEndToEndTests(SynchronousTestCase):
    """A message left by one baresip phone reaches the other: light, e-mail and *97."""

    def setUp(self) -> None:
        self.baresip = require_binary("baresip", "baresip-core")
        require_binary("flite", "flite")
        from aiosmtpd.controller import Controller

        self.workdir = Path(self.mktemp()).absolute()
        self.workdir.mkdir(parents=True)
        self.inbox = _Inbox()
        smtp_port = free_port()
        controller = Controller(self.inbox, hostname="127.0.0.1", port=smtp_port)
        controller.start()
        self.addCleanup(controller.stop)

        self.sip_port = free_port()
        api_port = free_port()
        first = free_udp_block(RELAY_PORTS + 40)
        self.phone_rtp = {CALLER: first + RELAY_PORTS, CALLEE: first + RELAY_PORTS + 20}
        self.passwords = {n: strong_password(n) for n in (CALLER, CALLEE)}
        admin = admin_password()
        config = json.loads(call_config(
            api_port=api_port, sip_port=self.sip_port, admin_password=admin,
            extensions=self.passwords, transports=("udp",),
            rtp_ports=(first, first + RELAY_PORTS - 1), calls={"ring_timeout": 4},
        ))
        config["extensions"][CALLEE].update(voicemail_pin=PIN, email=MAILTO)
        config["features"] = {"voicemail": {
            "email": {"sender": "voicemail@pbx.test", "server": f"127.0.0.1:{smtp_port}", "starttls": "never"},
            "transcription": {"engine": "pocketsphinx"},
        }}
        config["dialplan"] = [{"match": "*97", "app": "voicemail-main"}]
        self.daemon = Daemon(str(self.workdir / "pbx"), json.dumps(config, indent=1))
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.api = API(api_port, admin)

    def phone(self, number: str, source: Path, codecs: tuple[str, ...], mwi: bool = False) -> Any:
        home = self.workdir / f"phone-{number}"
        home.mkdir()
        target = home / source.name
        target.write_bytes(source.read_bytes())
        phone = Phone(
            self.baresip, home / "baresip", number, self.passwords[number], self.sip_port,
            Path("..", source.name), self.phone_rtp[number], answer=False,
            codecs=codecs, extra_modules=("mwi",) if mwi else (),
        )
        self.addCleanup(phone.stop)
        wait_until(lambda: any(r["extension"] == number for r in self.api.registrations()),
                   LIMIT, f"{number}'s registration")
        return phone

    def light(self, phone: Any, waiting: str) -> None:
        """Wait until the last message summary the phone printed says Messages-Waiting: ``waiting``."""
        def last() -> bool:
            states = re.findall(r"Messages-Waiting:\s*(yes|no)", phone.output(), re.I)
            return bool(states) and states[-1].lower() == waiting

        try:
            wait_until(last, LIMIT, f"Messages-Waiting: {waiting} at {phone.number}")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{phone.output()[-3000:]}") from None

    def watch_light(self) -> subprocess.Popen[str]:
        """Start SIPp watching 1002's message-waiting light (see the module docstring)."""
        sipp = require_binary("sipp", "sip-tester")
        users = self.workdir / "watcher.csv"
        users.write_text(f"SEQUENTIAL\n{CALLEE};[authentication username={CALLEE} password={self.passwords[CALLEE]}]\n")
        command = [
            sipp, "-sf", str(WATCH), "-inf", str(users), "-m", "1", "-i", "127.0.0.1",
            "-p", str(free_port(socket.SOCK_DGRAM)), "-t", "u1", "-nostdin", "-nd",
            "-timeout", "240", "-timeout_error", "-trace_err", "-trace_msg", f"127.0.0.1:{self.sip_port}",
        ]
        watcher = subprocess.Popen(command, cwd=self.workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, errors="replace", stdin=subprocess.DEVNULL)
        self.addCleanup(lambda: watcher.poll() is None and watcher.kill())
        self.daemon.wait_for(re.compile(rf"SUBSCRIBE message-summary to {CALLEE} from {CALLEE}"), LIMIT)
        return watcher

    def watcher_done(self, watcher: subprocess.Popen[str]) -> None:
        """The watcher saw the light go on and off, and unsubscribed."""
        try:
            output, _ = watcher.communicate(timeout=LIMIT)
        except subprocess.TimeoutExpired:
            watcher.kill()
            output, _ = watcher.communicate()
        if watcher.returncode != 0:
            traces = sorted(self.workdir.glob("uac_mwi_watch_*"))
            detail = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in traces)
            self.fail(f"the light watcher exited {watcher.returncode}\n{output[-2000:]}\n{detail}")

    def test_leave_notify_email_and_listen(self) -> None:
        spoken = speech(self.workdir / "sentence.wav")
        lead = sum(prompt_seconds(p) for p in GREETING) + 2.0
        silence = np.zeros(int(16000 * lead), dtype=np.int16)
        tail = np.zeros(16000 * 9, dtype=np.int16)
        caller_source = self.workdir / "caller.wav"
        write_wav(caller_source, np.concatenate([silence, spoken, tail]), 16000)
        callee_source = self.workdir / "callee.wav"
        write_pcm_wav(callee_source, [0] * (RATE * 60))

        callee = self.phone(CALLEE, callee_source, ("g711",), mwi=True)
        self.light(callee, "no")  # subscribed; nothing waiting yet
        # One subscription, not baresip 1.0's re-subscription loop (see Phone).
        self.assertEqual(callee.output().count("mwi: subscribing"), 1, callee.output()[-3000:])
        watcher = self.watch_light()
        caller = self.phone(CALLER, caller_source, ("g722", "g711"))

        # 1. 1001 calls 1002, who does not answer: voicemail takes the call.
        caller.control.command("dial", CALLEE)
        callee.control.event("CALL_INCOMING")
        caller.control.event("CALL_ESTABLISHED")
        self.daemon.wait_for(re.compile(rf"call {CALLER} -> {CALLEE}: application voicemail\b"), LIMIT)
        # pbx hangs up after the silence that ends the message.
        caller.control.wait_for(lambda m: m.get("event") and m.get("type") == "CALL_CLOSED", 90.0)

        # 2. The message, the light and the e-mail.
        [message] = wait_until(lambda: self.api.get(f"/voicemail/{CALLEE}/messages")["messages"],
                               LIMIT, "the message in the API")
        self.assertEqual((message["folder"], message["caller"]), ("new", CALLER))
        # The call's records, newest first: taken by voicemail, after ringing unanswered.
        def call_records() -> list[tuple[str, str, str]] | None:
            rows = self.api.get(f"/cdr?caller={CALLER}&callee={CALLEE}")["records"]
            return [(r["leg"], r["disposition"], r["application"]) for r in rows] if len(rows) == 2 else None

        self.assertEqual(wait_until(call_records, LIMIT, "the call's two records"),
                         [("a", "VOICEMAIL", "voicemail"), ("a", "NO ANSWER", "voicemail")])
        spoken_seconds = len(spoken) / 16000
        self.assertLess(abs(message["duration"] - spoken_seconds), 2.0, message)
        self.light(callee, "yes")
        [(to, raw)] = wait_until(lambda: self.inbox.messages, 60.0, "the voicemail e-mail")
        self.assertEqual(to, [MAILTO])
        mail = email.message_from_bytes(raw)
        self.assertIn(CALLER, mail["Subject"])
        parts = {part.get_content_type(): part for part in mail.walk() if not part.is_multipart()}
        self.assertIn("audio/wav", parts)
        with wave.open(io.BytesIO(parts["audio/wav"].get_payload(decode=True)), "rb") as w:
            self.assertEqual((w.getnchannels(), w.getframerate()), (1, 16000))
            attached = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64)
        r, _ = locate(attached, spoken.astype(np.float64))
        self.assertGreater(r, 0.8, "the attachment is the spoken sentence")
        body = parts["text/plain"].get_payload(decode=True).decode()
        words = set(re.findall(r"[a-z]+", body.lower()))
        heard = words & {"please", "call", "back", "invoice", "tomorrow", "morning", "hello"}
        self.assertGreaterEqual(len(heard), 2, f"transcript in the e-mail: {body}")
        # The transcript is kept with the message, and searchable.
        [found] = self.api.get(f"/voicemail/search?q={sorted(heard)[0]}")["messages"]
        self.assertEqual(found["id"], message["id"])

        # 3. 1002 dials *97, enters its PIN by RFC 4733 and listens.
        before = len(callee.control.messages)
        callee.control.command("dial", "*97")
        event_after(callee, "CALL_ESTABLISHED", before)
        self.daemon.wait_for(re.compile(rf"call {CALLEE} -> \*97: application voicemail-main\b"), LIMIT)
        recording = Recording(callee)
        recording.settle(prompt_seconds("vm/enter-password", RATE) - 0.5, "the PIN prompt")
        for n, key in enumerate(PIN + "#"):
            press(callee, key, n)
        recording.settle(recording.seconds() + 2.0, "you have one new message, and the menu")
        press(callee, "1", 100)
        recording.grow_to(recording.seconds() + spoken_seconds + 3.0, "the envelope and the message")
        recording.settle(recording.seconds(), "the message menu")
        callee.control.command("hangup")
        event_after(callee, "CALL_CLOSED", before)
        self.light(callee, "no")  # heard: the light goes out
        self.watcher_done(watcher)  # lit by the message, dark once it was heard
        heard_audio = np.asarray(callee.heard(), dtype=np.float64)
        narrow = soxr.resample(spoken.astype(np.float64), 16000, RATE)
        r, _ = locate(heard_audio, narrow)
        self.assertGreater(r, 0.8, f"1002 heard the message (r={r:.3f})")
        [old] = self.api.get(f"/voicemail/{CALLEE}/messages")["messages"]
        self.assertEqual(old["folder"], "old")
        self.assertFalse(self.daemon.tracebacks, "\n".join(self.daemon.tracebacks))


def event_after(phone: Any, kind: str, start: int) -> dict[str, Any]:
    """The first event of type ``kind`` among the phone's messages from index ``start`` on."""
    earlier = {id(m) for m in phone.control.messages[:start]}
    return dict(phone.control.wait_for(
        lambda m: m.get("event") and m.get("type") == kind and id(m) not in earlier))


class Recording:
    """A phone's decoder recording, read while it grows (see test_apps_baresip)."""

    QUIET = 0.7

    def __init__(self, phone: Any) -> None:
        self.phone = phone

    def seconds(self) -> float:
        paths = sorted(self.phone.recordings.glob("dump-*-dec.wav"), key=lambda p: p.stat().st_mtime)
        if not paths:
            return 0.0
        return max(0, paths[-1].stat().st_size - 44) / 2 / RATE

    def grow_to(self, seconds: float, what: str) -> float:
        return float(wait_until(lambda: s if (s := self.seconds()) >= seconds else None, LIMIT, what))

    def settle(self, seconds: float, what: str) -> float:
        """Wait for ``seconds`` of audio and then no growth for QUIET seconds."""
        import time

        last = [-1.0, time.monotonic()]

        def settled() -> float | None:
            now, size = time.monotonic(), self.seconds()
            if size != last[0]:
                last[:] = [size, now]
                return None
            return size if size >= seconds and now - last[1] >= self.QUIET else None

        return float(wait_until(settled, LIMIT, what))
