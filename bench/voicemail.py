"""
Voicemail deposit: how many callers pbx takes messages from at once.

SIPp plays the callers (``bench/sipp/uac_voicemail.xml``): each of as
many extensions as the largest step (3000, 3001, ...) calls ``*99`` with
proxy authentication; the
dialplan sends that number straight to the ``voicemail`` application for
mailbox 2000 (``{match: "*99", app: voicemail, args: {mailbox: "2000"}}``).
pbx answers with its own RTP endpoint, plays the standard greeting ("The
person at extension two zero zero zero is not available...", 10.3 s) and
the beep, records with silence detection and delivers the recording into
the spool and the store.  Each caller streams ``deposit.wav`` as G.711
mu-law with SIPp's ``rtp_stream`` (50 packets/s): digital silence while
the greeting plays, then about 15 s of speech (pbx's own Flite prompts
``vm/main-menu`` and ``aa/welcome``, so the words are known), then 1.5 s
of silence, and hangs up, as most callers end a message.

For each count of ``--steps`` (concurrent deposits, default 25, 50, 100,
150, 200, 250, 300, 400) SIPp places that many calls at ``--rate`` calls/s
(default 50: all of them are up at once, and all record at once for the
last 10 s or more of the speech), and the benchmark then checks what reached the
mailbox: every new message is read back from the API
(``/api/v1/voicemail/2000/messages``) and its WAV file from the spool, and
compared with what was sent, 20 ms frame by frame.  A step passes when no
call failed, every call left a message, every message is as long as the
speech sent (+-1 s; pbx keeps 0.5 s of silence on each side), no spoken
frame is missing or altered, and the kernel dropped no datagram on pbx's
sockets.  A step that does not pass is run once more (``--retries``: the
machine is shared), and climbing stops at the first step that still does
not pass.

Measured per step: pbx's CPU time per message (``utime + stime`` of the
process from the first call until the last message is delivered, and of
its reactor thread), peak RSS, the SIP response time of a probe (OPTIONS
about twice a second: how far behind the reactor runs), the call setup time
and how long after the last hang-up the last message appeared.

``--transcribe`` turns PocketSphinx transcription on (``transcription:
{engine: pocketsphinx}``): steps of 1, 5 and 10 deposits placed at 2
calls/s, so that the first messages are transcribed while later callers
still speak; each step also waits for every transcript and reports how
long they took and how many of the spoken words they found.  pbx runs as
in ``calls.py``: ``twistd -n pbx`` from this checkout, SQLite in a scratch
state directory, UDP on loopback; no e-mail.

Usage, from a source checkout (nothing is installed; see bench/README.rst)::

    python bench/voicemail.py [--steps 25,50,...] [--rate 50] [--transcribe]

The raw results go to ``bench/results/voicemail-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import re
import secrets
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import wave
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from _common import (
    DOMAIN,
    PBX,
    RESULTS,
    ROOT,
    SIPP_SCENARIOS,
    Usage,
    User,
    command_version,
    free_udp_port,
    machine,
    make_users,
    memory,
    percentile,
    read_rtt_file,
    rtt_summary,
    strong_password,
)
from calls import (
    API,
    Profile,
    Sockets,
    error_sample,
    finish_profile,
    free_tcp_port,
    log_problems_since,
    log_size,
    print_tables,
    rss_mb,
    sipp,
    spawn,
    sum_counters,
    ulaw,
)

SCENARIO = SIPP_SCENARIOS / "uac_voicemail.xml"
PROMPTS = ROOT / "share" / "prompts" / "en"
MAILBOX = "2000"
ROUTE = "*99"
STEPS = (25, 50, 100, 150, 200, 250, 300, 400)
TRANSCRIBE_STEPS = (1, 5, 10)
#: What the callers say: pbx's own prompts, so the words are known.
SPEECH = ("vm/main-menu", "aa/welcome")
#: Silence between two prompts of the speech.
SPEECH_GAP_S = 0.3
#: What the caller hears before the recording starts, in this order
#: (deposit.py's standard greeting for mailbox 2000, then the beep).
GREETING = (
    "vm/unavailable",
    "digits/2",
    "digits/0",
    "digits/0",
    "digits/0",
    "vm/is-unavailable",
    "vm/leave-message",
    "general/beep",
)
#: Silence sent beyond the greeting before the speech starts: pbx may start
#: its greeting this much later than SIPp starts streaming without the
#: speech being cut.  (deposit.py keeps 0.5 s of it.)
MARGIN_S = 2.0
#: Silence after the speech, before the BYE (deposit.py keeps 0.5 s of it).
TAIL_S = 1.5
#: deposit.py's SpeechTake: silence kept before the first and after the
#: last spoken frame, and its level of speech (RMS of a 20 ms frame).
KEPT_SILENCE_S = 0.5 + 0.5
SPEECH_LEVEL = 300.0
#: A message counts as whole within this many seconds of the expected length.
DURATION_TOLERANCE_S = 1.0
FRAME = 160  # samples in 20 ms at 8 kHz
WAV_HEADER = 44  # bytes before the samples in the WAV files written here
#: pbx's RTP port range for the application calls (two ports per call),
#: and SIPp's media ports above it (rtp_stream takes some per call).
RTP_PORTS = (10000, 13999)
SIPP_MEDIA_PORT = 16000
#: Passed to SIPp: a response not received within this time fails the call.
RECV_TIMEOUT_S = 10
#: The probe's wait for a response; a probe that waited this long counts as a timeout.
PROBE_LIMIT_S = 1.0
#: Calls placed per second: a burst, so every call of a step is up at
#: once; with --transcribe a trickle, so that later callers are still
#: recording while the first messages are transcribed.
RATE = 50.0
TRANSCRIBE_RATE = 2.0
ADMIN = "admin"
PIN_DIGITS = "0123456789"


# ---------------------------------------------------------------------------
# Audio: what the callers send, what a message should hold


ULAW_DECODE = np.array(
    [
        (1 if c & 0x80 else -1)
        * ((((~c & 0x0F) << 3) + 0x84 << ((~c >> 4) & 0x07)) - 0x84)
        for c in range(256)
    ],
    dtype=np.int16,
)
"""G.711 mu-law code -> 16-bit sample (what pbx's decoder gives)."""


def prompt_pcm(prompt_id: str) -> np.ndarray:
    """One 8 kHz prompt of share/prompts/en as int16 samples."""
    with wave.open(str(PROMPTS / "8000" / f"{prompt_id}.wav"), "rb") as w:
        if (w.getnchannels(), w.getsampwidth(), w.getframerate()) != (1, 2, 8000):
            raise RuntimeError(f"{prompt_id}: not 8 kHz mono 16-bit")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()


def greeting_seconds() -> float:
    """How long pbx plays before recording: every prompt padded to whole 20 ms frames."""
    return sum(math.ceil(len(prompt_pcm(p)) / FRAME) * 0.02 for p in GREETING)


DIGIT_WORDS = "zero one two three four five six seven eight nine".split()


def prompt_words(prompt_ids: Sequence[str]) -> list[str]:
    """The words of prompts, from prompts.yaml, lower case, digits spelt out."""
    catalogue = yaml.safe_load((PROMPTS / "prompts.yaml").read_text())["prompts"]
    words: list[str] = []
    for p in prompt_ids:
        entry = catalogue[p]
        text = entry["text"] if isinstance(entry, dict) else str(entry)
        for word in re.findall(r"[a-z0-9']+", text.lower()):
            words += [DIGIT_WORDS[int(c)] for c in word] if word.isdigit() else [word]
    return words


@dataclass
class Deposit:
    """The audio every caller sends, and what a message made of it holds."""

    codes: bytes
    """mu-law, 8 kHz: silence, speech, silence."""
    seconds: float
    speech_start_s: float
    speech_seconds: float
    """From the first to the end of the last spoken frame."""
    expected_s: float
    """The length of a whole message: the speech plus the silence pbx keeps."""
    spoken_frames: int
    greeting_s: float
    words: list[str]
    #: Decoded 20 ms frames that hold sound -> their index in the stream.
    frames: dict[bytes, int] = field(repr=False, default_factory=dict)
    loud: set[int] = field(repr=False, default_factory=set)


def make_deposit(greeting_s: float) -> Deposit:
    """
    Silence for the greeting, the speech, a little silence; as sent and as
    decoded.

    SIPp 3.6's ``rtp_stream`` sends the whole file, its 44-byte header
    included, in 160-byte payloads: the frames pbx records are aligned on
    the file, not on its data chunk, and the first one holds the header
    (during the greeting, so never recorded).
    """
    gap = np.zeros(int(SPEECH_GAP_S * 8000), dtype=np.int16)
    parts: list[np.ndarray] = []
    for p in SPEECH:
        parts += [prompt_pcm(p), gap]
    speech = np.concatenate(parts[:-1])
    lead = math.ceil((greeting_s + MARGIN_S) / 0.02) * FRAME
    tail = math.ceil(TAIL_S / 0.02) * FRAME
    # The file (header included) is made whole packets long: what SIPp
    # does with a short last packet is not documented.
    tail += (-(WAV_HEADER + lead + len(speech) + tail)) % FRAME
    pcm = np.concatenate([np.zeros(lead, np.int16), speech, np.zeros(tail, np.int16)])
    codes = bytes(ulaw(int(s)) for s in pcm)
    sent = ulaw_wav(codes)
    assert len(sent) % FRAME == 0
    frames = ULAW_DECODE[np.frombuffer(sent, dtype=np.uint8)].reshape(-1, FRAME)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    rms[0] = 0.0  # the header
    loud = np.nonzero(rms > SPEECH_LEVEL)[0]
    first, last = int(loud[0]), int(loud[-1])
    index = {}
    for i, frame in enumerate(frames[1:], 1):
        if frame.any():
            index.setdefault(frame.tobytes(), i)
    speech_s = (last - first + 1) * 0.02
    return Deposit(
        codes=codes,
        seconds=len(sent) / 8000,
        speech_start_s=first * 0.02,
        speech_seconds=speech_s,
        expected_s=speech_s + KEPT_SILENCE_S,
        spoken_frames=len(loud),
        greeting_s=greeting_s,
        words=prompt_words(SPEECH),
        frames=index,
        loud={int(i) for i in loud},
    )


def ulaw_wav(codes: bytes) -> bytes:
    """An 8 kHz mono mu-law WAV (format 7): what SIPp's rtp_stream sends as PCMU."""
    fmt = struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(codes)) + codes
    return b"RIFF" + struct.pack("<I", len(body)) + body


def check_recording(path: Path, deposit: Deposit) -> dict[str, Any]:
    """
    Compare a message's WAV with what was sent, 20 ms frame by frame.

    Each frame of the recording that holds sound is looked up among the
    frames sent.  ``altered``: frames found nowhere (concealment of a lost
    packet, or damage); ``jumps``: places where the recording skips or
    repeats part of the stream (a frame dropped or inserted by the jitter
    buffer, or audio lost); ``missing_spoken``: spoken frames sent that the
    recording lacks.
    """
    try:
        with wave.open(str(path), "rb") as w:
            rate, width = w.getframerate(), w.getsampwidth()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    except (OSError, wave.Error, EOFError) as e:
        return {"error": f"{type(e).__name__}: {e}"}
    if rate != 8000 or width != 2:
        return {"error": f"{rate} Hz, {8 * width}-bit"}
    frames = pcm[: len(pcm) // FRAME * FRAME].reshape(-1, FRAME)
    altered = jumps = 0
    offset = None
    present: set[int] = set()
    where: list[float] = []
    for k, frame in enumerate(frames):
        if not frame.any():
            continue
        i = deposit.frames.get(frame.tobytes())
        if i is None:
            altered += 1
            where.append(k * 0.02)
            continue
        present.add(i)
        if offset is not None and i - k != offset:
            jumps += 1
            where.append(k * 0.02)
        offset = i - k
    return {
        "file_seconds": round(len(pcm) / rate, 3),
        "altered": altered,
        "jumps": jumps,
        "missing_spoken": len(deposit.loud - present),
        #: Seconds into the message of the first altered frames and jumps.
        "faults_at_s": [round(t, 2) for t in sorted(set(where))[:10]],
    }


def word_recall(transcript: str, words: Sequence[str]) -> float:
    """Share of the spoken words (with repeats) that the transcript has."""
    heard = collections.Counter(re.findall(r"[a-z0-9']+", transcript.lower()))
    said = collections.Counter(words)
    return sum(min(n, heard[w]) for w, n in said.items()) / max(1, sum(said.values()))


# ---------------------------------------------------------------------------
# pbx


class VoicemailPBX(PBX):
    """pbx with the voicemail feature, mailbox 2000 and the ``*99`` route."""

    mailbox_pin = ""

    def config_text(self) -> str:
        """The generated configuration, with a PIN for mailbox 2000 (none is generated and logged)."""
        text = super().config_text()
        plain = f'"{MAILBOX}": {{name: Bench {MAILBOX}, '
        if plain not in text:
            raise RuntimeError(
                "cannot find mailbox 2000 in the generated configuration"
            )
        return text.replace(plain, plain + f'voicemail_pin: "{self.mailbox_pin}", ')


def mailbox_pin() -> str:
    """A PIN pbx accepts for mailbox 2000: no repeated digit, no run."""
    while True:
        pin = "".join(secrets.choice(PIN_DIGITS) for _ in range(6))
        steps = {int(b) - int(a) for a, b in zip(pin, pin[1:], strict=False)}
        if len(set(pin)) > 1 and steps not in ({1}, {-1}):
            return pin


def make_pbx(
    workdir: Path, users: Sequence[User], args: argparse.Namespace
) -> VoicemailPBX:
    """pbx for deposits: MD5 only, application media on loopback, the voicemail feature."""
    server = VoicemailPBX(workdir, free_udp_port(), users)
    server.digest_algorithms = ("MD5",)
    server.api_port = free_tcp_port()
    server.admin_password = strong_password(ADMIN, 24)
    server.mailbox_pin = mailbox_pin()
    transcription = (
        "    transcription: {engine: pocketsphinx}\n" if args.transcribe else ""
    )
    server.extra_config = (
        "rtp:\n"
        f"  ports: {RTP_PORTS[0]}-{RTP_PORTS[1]}\n"
        "  interface: 127.0.0.1\n"
        "calls:\n"
        "  ring_timeout: 30\n"
        "  media_timeout: 60\n"
        "dialplan:\n"
        f'  - {{match: "{ROUTE}", app: voicemail,'
        f' args: {{mailbox: "{MAILBOX}", reason: unavailable}}}}\n'
        "features:\n"
        "  voicemail:\n"
        # Only 2000: every mailbox without a PIN gets one generated at start
        # (PBKDF2, 600,000 iterations each) and the callers need none.
        f'    mailboxes: ["{MAILBOX}"]\n'
        "    max_seconds: 120\n" + transcription
    )
    server.problem_pattern = re.compile(
        r"Traceback|Unhandled|CRITICAL|lockout|dropped|dropping|failed|too slow"
        r"|no media port|cannot be bound|media timeout|unusable|malformed",
        re.I,
    )
    return server


def messages(api: API) -> list[dict[str, Any]]:
    """Every message of mailbox 2000, from the API."""
    return list(api.get(f"/voicemail/{MAILBOX}/messages")["messages"])


def endpoint_sockets(server: PBX) -> int:
    """UDP sockets pbx holds in its RTP range (two per application call)."""
    assert server.process is not None
    return Sockets(server.process.pid).sample()


class Probe:
    """
    SIP OPTIONS to pbx, one at a time: the response time says how far
    behind its reactor is (it reads every datagram on that one thread).
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.local = self.sock.getsockname()[1]
        self.n = 0
        self.times: list[float] = []

    def ping(self, limit: float = PROBE_LIMIT_S) -> None:
        """One OPTIONS; its response time (ms) is noted, ``limit`` s when none came."""
        self.n += 1
        branch = f"z9hG4bK-vm-probe-{self.local}-{self.n}"
        message = (
            f"OPTIONS sip:{DOMAIN} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.local};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{DOMAIN}>;tag=probe{self.n}\r\n"
            f"To: <sip:{DOMAIN}>\r\n"
            f"Call-ID: vm-probe-{self.local}-{self.n}@127.0.0.1\r\n"
            f"CSeq: {self.n} OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sent = time.monotonic()
        self.sock.sendto(message.encode(), ("127.0.0.1", self.port))
        deadline = sent + limit
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.times.append(1000 * limit)
                return
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, ConnectionRefusedError):
                continue
            if branch.encode() in data:
                self.times.append(1000 * (time.monotonic() - sent))
                return

    def summary(self) -> dict[str, float]:
        """Percentiles of the response times (ms), and how many probes timed out."""
        timeouts = sum(t >= 1000 * PROBE_LIMIT_S for t in self.times)
        return {
            "samples": len(self.times),
            "timeouts": timeouts,
            **rtt_summary(self.times),
        }

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


# ---------------------------------------------------------------------------
# One step


@dataclass
class Step:
    """``calls`` callers leaving a message at once."""

    calls: int
    rate: float
    attempt: int = 1
    command: list[str] = field(default_factory=list)
    uac_exit: int | None = None
    uac: dict[str, Any] = field(default_factory=dict)
    #: INVITE with credentials sent -> 200 received, ms.
    setup_ms: dict[str, float] = field(default_factory=dict)
    #: Application calls pbx held at once (its RTP sockets / 2), at the peak.
    peak_calls: int = 0
    #: Seconds every call of the step was recording at once (by the schedule).
    all_recording_s: float = 0.0
    #: OPTIONS response times during the step, ms.
    probe_ms: dict[str, float] = field(default_factory=dict)
    delivered: int = 0
    #: Seconds from SIPp's end (the last BYE answered) to the last new message.
    drain_s: float | None = None
    #: Messages as long as expected (+-1 s), with every spoken frame unchanged.
    intact: int = 0
    #: Worst and median difference between a message's length and the expected one.
    duration_error_s: dict[str, float] = field(default_factory=dict)
    too_short: int = 0
    too_long: int = 0
    altered_frames: int = 0
    jumps: int = 0
    missing_spoken_frames: int = 0
    #: The message with the most spoken frames missing or altered: how much
    #: speech that is (20 ms a frame).
    worst_message_fault_ms: int = 0
    #: Messages whose WAV could not be read, or was not in the spool.
    unreadable: int = 0
    transcribed: int = 0
    #: Seconds from SIPp's end (the last BYE answered) to the last transcript.
    transcripts_after_s: float | None = None
    word_recall: dict[str, float] = field(default_factory=dict)
    transcript_sample: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    cpu_s_per_message: float | None = None
    reactor_cpu_s_per_message: float | None = None
    rss_before_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_after_mb: float = 0.0
    #: Datagrams the kernel dropped on full receive buffers of pbx's
    #: sockets (SIP and RTP).  SIPp does not read the greeting pbx sends,
    #: so drops on its sockets ("uac") are every packet of that.
    socket_drops: dict[str, int] = field(default_factory=dict)
    endpoint_sockets_left: int = 0
    log_problems: list[str] = field(default_factory=list)
    errors_sample: list[str] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    passed: bool = False
    verdict: str = ""


def judge(step: Step) -> tuple[bool, str]:
    """Whether every caller left a whole message, and why not."""
    reasons = []
    if step.uac_exit is None:
        reasons.append("SIPp did not finish in time")
    failed = step.uac.get("failed", 0)
    if failed:
        kinds = ", ".join(f"{k} {v}" for k, v in step.uac.get("failures", {}).items())
        reasons.append(f"{failed} failed calls ({kinds or 'see errors'})")
    elif step.uac.get("successful", 0) < step.calls:
        reasons.append(
            f"{step.uac.get('successful', 0)} of {step.calls} calls completed"
        )
    if step.delivered < step.calls:
        reasons.append(f"{step.delivered} of {step.calls} messages delivered")
    damaged = step.delivered - step.intact
    if damaged > 0:
        lengths = (
            f", {step.too_short} short, {step.too_long} long"
            if step.too_short or step.too_long
            else ""
        )
        reasons.append(f"{damaged} damaged{lengths}")
    if step.socket_drops.get("pbx", 0):
        reasons.append(f"{step.socket_drops['pbx']} datagrams dropped on pbx's sockets")
    if any(
        re.search(r"Traceback|Unhandled|failed", line) for line in step.log_problems
    ):
        reasons.append("failures in pbx's log")
    return (not reasons, "; ".join(reasons) or "ok")


def new_messages(api: API, before: set[str], callers: set[str]) -> list[dict[str, Any]]:
    """Messages that were not there before the step, from the step's callers."""
    return [
        m for m in messages(api) if m["id"] not in before and m["caller"] in callers
    ]


def run_step(
    server: VoicemailPBX,
    api: API,
    args: argparse.Namespace,
    deposit: Deposit,
    calls: int,
    callers: Sequence[User],
    stepdir: Path,
) -> Step:
    """Place ``calls`` deposits, wait for their messages, check them."""
    stepdir.mkdir(parents=True)
    rate = float(args.rate)
    step = Step(calls=calls, rate=rate)
    (stepdir / "deposit.wav").write_bytes(ulaw_wav(deposit.codes))
    users = callers[:calls]
    inf = stepdir / "callers.csv"
    inf.write_text(
        "SEQUENTIAL\n" + "".join(f"{u.number};{ROUTE};{u.password}\n" for u in users)
    )
    ramp_s = calls / rate
    call_s = deposit.seconds
    # Every call records from the end of its greeting to its hang-up.
    step.all_recording_s = max(0.0, call_s - deposit.greeting_s - ramp_s)
    limit_s = ramp_s + call_s + 4 * RECV_TIMEOUT_S + 20
    step.command = sipp(
        SCENARIO, free_udp_port(),
        "-inf", str(inf), "-r", str(args.rate), "-rp", "1000",
        "-m", str(calls), "-l", str(calls), "-d", str(round(1000 * call_s)),
        "-mp", str(SIPP_MEDIA_PORT), "-recv_timeout", str(RECV_TIMEOUT_S * 1000),
        "-timeout", f"{math.ceil(limit_s)}s",
        "-max_recv_loops", "10000", "-max_sched_loops", "10000",
        "-trace_stat", "-fd", "1", "-trace_rtt", "-rtt_freq", "1", "-trace_err",
        remote=server.port,
    )  # fmt: skip
    before = {m["id"] for m in messages(api)}
    caller_numbers = {u.number for u in users}
    offset = log_size(server)
    step.rss_before_mb = rss_mb(server)
    assert server.process is not None
    pid = server.process.pid
    usage = Usage(server.pids(), pid).start()
    uac = spawn(step.command, stepdir, "uac")
    started = time.monotonic()
    # py-spy (--profile): while every call of the step is recording.
    profile: Profile | None = None
    profile_at = None
    if args.profile == calls and stepdir.name.endswith("-1"):
        profile_at = started + ramp_s + deposit.greeting_s + 1
    sockets = Sockets(pid, uac.pid)
    sockets.sample()
    probe = Probe(server.port)

    def tick() -> None:
        """Sample memory and sockets, probe the reactor (up to PROBE_LIMIT_S)."""
        step.rss_peak_mb = max(step.rss_peak_mb, rss_mb(server))
        sockets.sample()
        probe.ping()

    try:
        deadline = time.monotonic() + limit_s
        while uac.poll() is None and time.monotonic() < deadline:
            if profile_at is not None and time.monotonic() >= profile_at:
                profile_at = None
                seconds = max(3.0, step.all_recording_s - 2)
                profile = start_gil_profile(pid, seconds, stepdir / "py-spy.txt")
            tick()
            time.sleep(0.4)
        step.uac_exit = uac.poll()
        if step.uac_exit is None:
            uac.kill()
            uac.wait()
        ended = time.monotonic()
        # The last messages are written after the last BYE; transcripts later.
        found: list[dict[str, Any]] = []
        last_change, count = ended, -1
        expected = min(
            calls, sum_counters(stepdir, "uac_voicemail").get("successful", calls)
        )
        while time.monotonic() < ended + args.drain_limit:
            found = new_messages(api, before, caller_numbers)
            if len(found) != count:
                count, last_change = len(found), time.monotonic()
            if count >= max(1, expected) or time.monotonic() - last_change > 10:
                break
            tick()
            time.sleep(0.25)
        step.drain_s = round(last_change - ended, 2) if found else None
        if args.transcribe and found:
            found = wait_transcripts(api, before, caller_numbers, args, step, tick)
            if step.transcribed:
                step.transcripts_after_s = round(time.monotonic() - ended, 1)
        step.usage = usage.stop()
    finally:
        probe.close()
        if uac.poll() is None:
            uac.kill()
            uac.wait()
    if profile is not None:
        finish_profile(profile)
    step.rss_after_mb = rss_mb(server)
    step.socket_drops = sockets.drops()
    step.peak_calls = sockets.relay_peak // 2
    step.probe_ms = probe.summary()
    step.uac = sum_counters(stepdir, "uac_voicemail")
    rtt = sorted(stepdir.glob("uac_voicemail_*_rtt.csv"))
    if rtt:
        step.setup_ms = rtt_summary(read_rtt_file(rtt[0], "2")[1])
    check_messages(step, found, deposit, server)
    step.delivered = len(found)
    if found and step.usage.get("server_cpu_s") is not None:
        step.cpu_s_per_message = step.usage["server_cpu_s"] / len(found)
        main = step.usage.get("server_main_thread_cpu_s")
        if main is not None:
            step.reactor_cpu_s_per_message = main / len(found)
    step.endpoint_sockets_left = wait_calls_ended(server, api)
    step.log_problems = log_problems_since(server, offset)[:30]
    step.errors_sample = error_sample(stepdir)
    step.passed, step.verdict = judge(step)
    return step


def start_gil_profile(pid: int, seconds: float, out: Path) -> Profile | None:
    """
    Sample pbx with ``py-spy record --gil`` for ``seconds``: only the
    thread holding the GIL is sampled, so the shares are of CPU time spent
    in Python (or in C called from it without releasing the GIL), not of
    time spent waiting.  Not ``--nonblocking`` (as calls.py): stacks read
    from a running process came out torn (reactor frames under a pool
    thread); py-spy pauses pbx for each of its 100 samples a second.
    """
    if shutil.which("py-spy") is None:
        print("   (py-spy is not installed: no profile)", flush=True)
        return None
    raw = out.with_suffix(".raw")
    command = [
        "py-spy", "record", "--pid", str(pid), "--duration", str(math.ceil(seconds)),
        "--rate", "100", "--gil", "--format", "raw", "--output", str(raw),
    ]  # fmt: skip
    with out.with_suffix(".log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    return Profile(process, raw, out)


def wait_transcripts(
    api: API,
    before: set[str],
    callers: set[str],
    args: argparse.Namespace,
    step: Step,
    tick: Callable[[], None],
) -> list[dict[str, Any]]:
    """Wait (bounded) until every new message has its transcript; the messages."""
    started = time.monotonic()
    found = new_messages(api, before, callers)
    while time.monotonic() < started + args.transcribe_limit:
        if all(m.get("confidence") is not None for m in found):
            break
        tick()
        time.sleep(0.4)
        found = new_messages(api, before, callers)
    done = [m for m in found if m.get("confidence") is not None]
    step.transcribed = len(done)
    if done:
        recalls = [word_recall(m.get("transcript") or "", args.words) for m in done]
        step.word_recall = {
            "min": round(min(recalls), 3),
            "median": round(sorted(recalls)[len(recalls) // 2], 3),
            "max": round(max(recalls), 3),
        }
        step.transcript_sample = str(done[0].get("transcript") or "")
    return found


def check_messages(
    step: Step, found: Sequence[dict[str, Any]], deposit: Deposit, server: PBX
) -> None:
    """Length and content of every new message against what was sent."""
    spool = server.workdir / "state" / "voicemail" / MAILBOX
    errors = []
    for m in found:
        path = spool / f"{m['id']}.wav"
        result = (
            check_recording(path, deposit) if path.exists() else {"error": "no file"}
        )
        error = float(m["duration"]) - deposit.expected_s
        record = {
            "id": m["id"],
            "caller": m["caller"],
            "duration": m["duration"],
            "error_s": round(error, 3),
            **result,
        }
        step.messages.append(record)
        if "error" in result:
            step.unreadable += 1
            continue
        errors.append(error)
        short = error < -DURATION_TOLERANCE_S
        long = error > DURATION_TOLERANCE_S
        step.too_short += short
        step.too_long += long
        step.altered_frames += result["altered"]
        step.jumps += result["jumps"]
        step.missing_spoken_frames += result["missing_spoken"]
        step.worst_message_fault_ms = max(
            step.worst_message_fault_ms,
            20 * (result["missing_spoken"] + result["altered"]),
        )
        if not (short or long or result["missing_spoken"] or result["altered"]):
            step.intact += 1
    if errors:
        ordered = sorted(errors)
        worst = max(ordered, key=abs)
        step.duration_error_s = {
            "min": round(ordered[0], 3),
            "median": round(percentile(ordered, 50), 3),
            "max": round(ordered[-1], 3),
            "worst": round(worst, 3),
        }


def wait_calls_ended(server: PBX, api: API, limit: float = 30.0) -> int:
    """Wait (bounded) until pbx has no call and no RTP socket; returns the sockets left."""
    deadline = time.monotonic() + limit
    left = endpoint_sockets(server)
    while time.monotonic() < deadline:
        try:
            calls = api.calls()
        except (OSError, ValueError):
            calls = []
        left = endpoint_sockets(server)
        if not calls and not left:
            break
        time.sleep(0.5)
    return left


def print_step(step: Step) -> None:
    """One progress line for a finished step."""
    u = step.usage
    probe = step.probe_ms
    again = f" (attempt {step.attempt})" if step.attempt > 1 else ""
    print(
        f"   {step.calls:>4} deposits{again} (peak {step.peak_calls} calls):"
        f" {step.uac.get('successful', 0):>4} ok {step.uac.get('failed', 0):>3} failed;"
        f" {step.delivered} delivered, {step.intact} intact"
        f" (length error {step.duration_error_s.get('worst', math.nan):+.2f} s worst,"
        f" {step.missing_spoken_frames} spoken frames missing, {step.altered_frames} altered,"
        f" worst message {step.worst_message_fault_ms} ms);"
        f" CPU: pbx {u.get('server_cpu_percent', 0):3.0f}%"
        f" ({step.cpu_s_per_message or 0:.2f} s/message)"
        f" SIPp {u.get('sipp_cpu_percent', 0):3.0f}% other {u.get('other_cpu_percent', 0):3.0f}%;"
        f" probe p99 {probe.get('p99', math.nan):.0f} max {_probe_max(probe)} ms; RSS peak {step.rss_peak_mb:.0f} MB;"
        f" UDP drops pbx {step.socket_drops.get('pbx', 0)}"
        + (
            f"; {step.transcribed} transcribed, the last {step.transcripts_after_s} s after the last call"
            if step.transcribed
            else ""
        )
        + f" -> {step.verdict}",
        flush=True,
    )


def bench(
    args: argparse.Namespace,
    callers: Sequence[User],
    deposit: Deposit,
    scratch: Path,
) -> dict[str, Any]:
    """Start pbx, run the steps until one does not pass, stop pbx."""
    workdir = scratch / "pbx"
    workdir.mkdir()
    mailbox = User(MAILBOX, strong_password(MAILBOX))
    server = make_pbx(workdir, [*callers, mailbox], args)
    result: dict[str, Any] = {"version": server.version()}
    print(f"== voicemail deposit: {result['version']}", flush=True)
    server.start()
    result["command"] = server.command
    api = API(server.api_port, server.admin_password)
    steps: list[Step] = []
    try:
        messages(api)  # log in (PBKDF2) before measuring
        result["memory_idle"] = memory(server.pids())
        for calls in args.step_list:
            for attempt in range(1, args.retries + 2):
                step = run_step(
                    server, api, args, deposit, calls, callers,
                    workdir / f"deposits-{calls}-{attempt}",
                )  # fmt: skip
                step.attempt = attempt
                steps.append(step)
                print_step(step)
                time.sleep(args.settle)
                if step.passed:
                    break
            if not step.passed:
                break
        result["memory_after"] = memory(server.pids())
    finally:
        result["exit_status"] = server.stop()
        result["log"] = str(server.log_path)
        result["log_problems"] = server.log_problems()[:50]
        result["steps"] = [asdict(s) for s in steps]
    best = max((s for s in steps if s.passed), key=lambda s: s.calls, default=None)
    result["best"] = asdict(best) if best else None
    profiles = sorted(workdir.glob("deposits-*-1/py-spy.txt"))
    if profiles:
        result["profile"] = {"file": str(profiles[0]), "text": profiles[0].read_text()}
    return result


# ---------------------------------------------------------------------------
# Report


SUMMARY = (
    "max concurrent deposits, all intact",
    "CPU s per message",
    "of which reactor thread",
    "% of a core per call",
    "probe p99 (ms)",
    "peak RSS (MB)",
)
STEP_COLUMNS = (
    "deposits",
    "peak calls",
    "failed calls",
    "delivered",
    "intact",
    "length error min / max (s)",
    "spoken frames missing / altered",
    "worst message (ms)",
    "setup p99 (ms)",
    "probe p99 / max (ms)",
    "pbx CPU %",
    "CPU s per message",
    "peak RSS (MB)",
    "result",
)
TRANSCRIBE_COLUMNS = (
    "deposits",
    "transcribed",
    "last transcript (s after the last call)",
    "words found (median)",
    "probe max (ms)",
    "pbx CPU %",
    "CPU s per message",
    "peak RSS (MB)",
)


def _f(value: float | None, spec: str) -> str:
    return "n/a" if value is None or math.isnan(value) else format(value, spec)


def _probe_max(probe: dict[str, Any]) -> str:
    if probe.get("timeouts"):
        return f"≥ {1000 * PROBE_LIMIT_S:.0f} ({probe['timeouts']}x)"
    return _f(probe.get("max"), ".0f")


def summary_rows(
    result: dict[str, Any], steps: Sequence[int], call_s: float
) -> list[tuple[str, ...]]:
    """The one-line summary: the highest step that passed, and its figures."""
    best = result.get("best")
    if best is None:
        return [(f"< {steps[0]}", "n/a", "n/a", "n/a", "n/a", "n/a")]
    calls = f"≥ {best['calls']}" if best["calls"] == steps[-1] else str(best["calls"])
    cpu = best["cpu_s_per_message"]
    main = best["reactor_cpu_s_per_message"]
    return [
        (
            calls,
            _f(cpu, ".3f"),
            f"{100 * main / cpu:.0f} %" if cpu and main is not None else "n/a",
            _f(100 * cpu / call_s if cpu else None, ".2f"),
            _f(best["probe_ms"].get("p99"), ".0f"),
            f"{best['rss_peak_mb']:.1f}",
        )
    ]


def step_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per step."""
    rows = []
    for s in result.get("steps", []):
        err = s["duration_error_s"]
        probe = s["probe_ms"]
        rows.append(
            (
                f"{s['calls']}" + (f" (#{s['attempt']})" if s["attempt"] > 1 else ""),
                str(s["peak_calls"]),
                str(s["uac"].get("failed", 0)),
                str(s["delivered"]),
                str(s["intact"]),
                f"{err['min']:+.2f} / {err['max']:+.2f}" if err else "n/a",
                f"{s['missing_spoken_frames']} / {s['altered_frames']}",
                str(s["worst_message_fault_ms"]),
                _f(s["setup_ms"].get("p99"), ".0f"),
                f"{_f(probe.get('p99'), '.0f')} / {_probe_max(probe)}",
                f"{s['usage'].get('server_cpu_percent', 0):.0f}",
                _f(s["cpu_s_per_message"], ".3f"),
                f"{s['rss_peak_mb']:.1f}",
                s["verdict"],
            )
        )
    return rows


def transcribe_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per step: the transcription figures."""
    return [
        (
            str(s["calls"]),
            str(s["transcribed"]),
            _f(s["transcripts_after_s"], ".1f"),
            _f(s["word_recall"].get("median"), ".0%"),
            _probe_max(s["probe_ms"]),
            f"{s['usage'].get('server_cpu_percent', 0):.0f}",
            _f(s["cpu_s_per_message"], ".2f"),
            f"{s['rss_peak_mb']:.1f}",
        )
        for s in result.get("steps", [])
    ]


def report(result: dict[str, Any], args: argparse.Namespace, deposit: Deposit) -> None:
    """Print the tables and what they mean."""
    if result.get("error"):
        print(f"\nvoicemail: {result['error']}")
        return
    print_tables(
        "Voicemail deposit" + (" with transcription" if args.transcribe else ""),
        SUMMARY,
        summary_rows(result, args.step_list, deposit.seconds),
    )
    print_tables("Steps", STEP_COLUMNS, step_rows(result))
    if args.transcribe:
        print_tables("Transcription", TRANSCRIBE_COLUMNS, transcribe_rows(result))
        sample = next(
            (
                s["transcript_sample"]
                for s in result.get("steps", [])
                if s["transcript_sample"]
            ),
            "",
        )
        if sample:
            print(f"\nA transcript: {sample!r}")
    print(
        f"\nEach caller: greeting and beep {deposit.greeting_s:.1f} s (silence sent,"
        f" {MARGIN_S:g} s more), {deposit.speech_seconds:.1f} s of speech"
        f" ({', '.join(SPEECH)}), {TAIL_S:g} s of silence, BYE: {deposit.seconds:.1f} s"
        f" a call, G.711 mu-law at 50 packets/s; calls placed at {args.rate:g} calls/s."
        f" A whole message lasts {deposit.expected_s:.2f} s (the speech plus the"
        f" {KEPT_SILENCE_S:g} s of silence pbx keeps); length error: API duration minus"
        f" that. Intact: within ±{DURATION_TOLERANCE_S:g} s and every spoken frame of the"
        " WAV in the spool equal to what was sent. CPU: pbx process, utime+stime, from"
        " the first call to the last message (and transcript) of the step, per message."
        " Probe: SIP OPTIONS response time, every 0.4 s during the step."
    )
    profile = result.get("profile")
    if profile:
        print(
            f"\npy-spy --gil while all {args.profile} deposits were recording"
            " (samples of the thread holding the GIL):\n"
        )
        print(profile["text"])


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--steps",
        help=f"concurrent deposits climbed (default {','.join(map(str, STEPS))};"
        f" with --transcribe {','.join(map(str, TRANSCRIBE_STEPS))})",
    )
    parser.add_argument(
        "--rate",
        type=float,
        help=f"calls placed per second (default {RATE:g}; with --transcribe {TRANSCRIBE_RATE:g})",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=1,
        help="run a step that did not pass again this many times (default 1)",
    )
    parser.add_argument(
        "--transcribe",
        action="store_true",
        help="transcribe every message with PocketSphinx and wait for the transcripts",
    )
    parser.add_argument(
        "--transcribe-limit",
        type=float,
        default=240.0,
        help="seconds to wait for a step's transcripts (default 240)",
    )
    parser.add_argument(
        "--drain-limit",
        type=float,
        default=60.0,
        help="seconds to wait for a step's messages after the last call (default 60)",
    )
    parser.add_argument(
        "--settle", type=float, default=3.0, help="seconds between steps (default 3)"
    )
    parser.add_argument(
        "--profile",
        type=int,
        metavar="DEPOSITS",
        help="record pbx with py-spy during the step of this many deposits",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the scratch directory (logs, SIPp traces, spool)",
    )
    args = parser.parse_args(argv)
    default = TRANSCRIBE_STEPS if args.transcribe else STEPS
    steps = [int(n) for n in args.steps.split(",")] if args.steps else list(default)
    args.step_list = sorted({n for n in steps if n > 0})
    if not args.step_list:
        parser.error("no step")
    if max(args.step_list) > min(1000, (RTP_PORTS[1] - RTP_PORTS[0] + 1) // 2):
        parser.error("--steps: at most 1000 deposits")
    if args.rate is None:
        args.rate = TRANSCRIBE_RATE if args.transcribe else RATE
    if not 0.1 <= args.rate <= 200:
        parser.error("--rate must be 0.1-200 calls/s")
    if not 0 <= args.retries <= 5:
        parser.error("--retries must be 0-5")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if shutil.which("sipp") is None:
        print(
            "voicemail.py: sipp is not installed (see bench/README.rst)",
            file=sys.stderr,
        )
        return 2
    command_line = shlex.join(
        ["python", "bench/voicemail.py", *(sys.argv[1:] if argv is None else argv)]
    )
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    scratch = Path(tempfile.mkdtemp(prefix="pbx-bench-voicemail-"))
    deposit = make_deposit(greeting_seconds())
    args.words = deposit.words
    callers = make_users(max(args.step_list), 3000)
    data: dict[str, Any] = {
        "benchmark": "voicemail",
        "started": stamp,
        "command": command_line,
        "machine": machine(),
        "sipp": command_version(["sipp", "-v"]),
        "options": {k: v for k, v in vars(args).items() if k != "words"},
        "deposit": {
            k: v
            for k, v in asdict(deposit).items()
            if k not in ("codes", "frames", "loud", "words")
        },
        "speech": list(SPEECH),
        "pass_rule": (
            "no failed call, every call left a message, every message within"
            f" ±{DURATION_TOLERANCE_S:g} s of the expected length with every spoken"
            " frame unchanged, no datagram dropped on pbx's sockets, no failure logged"
        ),
        "scratch": str(scratch),
    }
    print(
        f"callers {callers[0].number}-{callers[-1].number} -> {ROUTE} (mailbox {MAILBOX});"
        f" steps {','.join(map(str, args.step_list))}; {deposit.seconds:.1f} s a call;"
        f" scratch {scratch}",
        flush=True,
    )
    status = 0
    try:
        try:
            data["result"] = bench(args, callers, deposit, scratch)
        except (RuntimeError, OSError, urllib.error.URLError) as e:
            print(f"== voicemail: {e}", file=sys.stderr, flush=True)
            data["result"] = {"error": str(e), "steps": []}
            status = 1
    finally:
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"voicemail-{stamp}.json"
        out.write_text(json.dumps(data, indent=2) + "\n")
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    report(data["result"], args, deposit)
    print(f"\nCommand: {command_line}")
    busy = [
        (s["calls"], s["usage"].get("other_cpu_percent", 0))
        for s in data["result"].get("steps", [])
        if s["usage"].get("other_cpu_percent", 0) > 20
    ]
    if busy:
        worst = max(busy, key=lambda b: b[1])
        print(
            f"Warning: other processes used up to {worst[1]:.0f}% CPU during a step"
            f" ({worst[0]} deposits): the limit may be low; CPU per message holds best."
        )
    print(f"Raw results: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return status


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
