"""
Integration tests: SRTP (SDES keys, RFC 4568) through pbx's features:
voicemail retrieval, blind transfer, park and retrieve, pickup.

One daemon and four baresip phones serve the class, each registered over
TLS with ``mediaenc=srtp-mand`` (it offers and accepts SRTP only), each
sending its own keyed tone:

- 1401 (440 Hz) calls;
- 1402 (1000 Hz) answers by itself, then transfers or parks its caller;
- 1403 (700 Hz) answers by itself: the transfer target, and it dials the
  park slot and the pickup codes;
- 1404 (1300 Hz) rings and never answers: the phone picked up from, and
  the owner of a mailbox with a PIN.

The tests:

- 1401 leaves a message for 1404 (``*21404``, straight to its voicemail),
  then 1404 dials ``*97``, enters its PIN as RFC 4733 events inside its
  SRTP, presses 1 and hears the message: the message's audio, as pbx kept
  it, is found in what 1404's phone decoded, and it is 1401's keyed tone;
- 1402 transfers 1401 to 1403 (REFER); 1402 parks 1401 (REFER to 70),
  which hears music on hold (each half second matched with the default
  class's track), and 1403 dials the slot; 1403 picks up 1401's call to 1404 (``**1404``, and
  ``*8`` as 1404's pickup group).  After each, the two parties left talking
  each record the other's keyed tone at the end of their call (frequency
  and on/off pattern by correlation), ``/api/v1/calls`` shows both legs
  of their call keyed with the suite, and every call record of the
  conversation says its leg was SRTP.

As root, a capture on ``lo`` collects the relay's packets through each
test: none may carry a PCMU frame of a phone's tone (the detector
``test_srtp_baresip.py`` shows finding plain audio), so neither what pbx
relays nor the message it plays back goes out in clear.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import struct
import tempfile
import wave
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from pbx.media.music import default_music_dir, load_music_class

from support.apps import locate, prompt_seconds
from support.baresip import (
    LIMIT,
    Phone,
    PhonesTestCase,
    press,
    require_baresip,
    wait_registered,
)
from support.calls import (
    RATE,
    best_alignment,
    call_config,
    envelope,
    free_udp_block,
    keyed_tone,
    read_pcm_wav,
    tone_share,
    write_pcm_wav,
)
from support.capture import LoopbackCapture, plain_tone_packets
from support.conversation import growing, newest_audio, tail_problems
from support.daemon import (
    API,
    Daemon,
    admin_password,
    free_port,
    strong_password,
    wait_until,
)
from support.music import best_match

pytestmark = pytest.mark.integration

CALLER, ANSWERER, TARGET, OWNER = "1401", "1402", "1403", "1404"
TONES = {CALLER: 440.0, ANSWERER: 1000.0, TARGET: 700.0, OWNER: 1300.0}
PIN = "582014"
SUITE = "AES_CM_128_HMAC_SHA1_80"
#: Longer than any call: baresip hangs up when its file ends.
SIGNAL_SECONDS = 60.0
RELAY_PORTS = 40
#: Packets (20 ms) each way after a feature joined two parties before the call is hung up: 3 s.
PACKETS = 150
#: Long enough that no parked call is rung back during a test.
PARK_TIMEOUT = 60
#: What 1404's voicemail says before the beep (no greeting recorded).
GREETING = (
    "vm/unavailable",
    "digits/1",
    "digits/4",
    "digits/0",
    "digits/4",
    "vm/is-unavailable",
    "vm/leave-message",
    "general/beep",
)
#: Seconds of message 1401 leaves.
MESSAGE = 3.0
#: The correlation above which the kept message is found whole in what its
#: owner heard: G.711 decoded and encoded again is the same signal (measured
#: 1.0); any other signal stays well below 0.5.
MATCH = 0.95
#: Music a parked phone must hear: 0.5 s pieces of 2 s, after 0.8 s to settle.
PIECE, STRETCH, SETTLE = RATE // 2, 2 * RATE, int(0.8 * RATE)


class SrtpFeatureTests(PhonesTestCase):
    """SRTP-only phones on TLS through voicemail retrieval, transfer, park and pickup."""

    patterns: ClassVar[dict[str, list[bool]]]
    tls_port: ClassVar[int]
    keys: ClassVar[itertools.count[int]]
    music: ClassVar[np.ndarray]
    relay: ClassVar[range]

    @classmethod
    def setUpClass(cls) -> None:
        """Start pbx (TLS, voicemail, park, pickup group) and the four phones; wait for every registration."""
        baresip = require_baresip("srtp")
        cls.workdir = Path(tempfile.mkdtemp(prefix="pbx-srtp-features-"))
        cls.phones, cls.patterns, cls.keys = {}, {}, itertools.count()
        passwords = {number: strong_password(number) for number in TONES}
        sip_port, cls.tls_port, api_port = free_port(), free_port(), free_port()
        first = free_udp_block(RELAY_PORTS + 20 * len(TONES))
        admin = admin_password()
        config = json.loads(
            call_config(
                api_port=api_port,
                sip_port=sip_port,
                admin_password=admin,
                extensions=passwords,
                transports=("udp",),
                tls_port=cls.tls_port,
                state_dir=str(cls.workdir / "pbx" / "state"),
                rtp_ports=(first, first + RELAY_PORTS - 1),
            )
        )
        cls.relay = range(first, first + RELAY_PORTS)
        config["extensions"][OWNER]["voicemail_pin"] = PIN
        config["features"] = {"voicemail": {}}
        config["dialplan"] = [
            {
                "match": r"re:^\*2(\d{4})$",
                "app": "voicemail",
                "args": {"mailbox": "$1"},
            },
            {"match": "*97", "app": "voicemail-main"},
        ]
        config["park"] = {"code": "70", "slots": "71-73", "timeout": PARK_TIMEOUT}
        config[
            "moh"
        ] = {}  # the default class pbx ships: what a parked SRTP phone hears
        cls.music = (
            load_music_class("default", default_music_dir())
            .pcm(RATE)
            .astype(np.float64)
        )
        config["pickup_groups"] = {"sales": [OWNER, TARGET]}
        cls.daemon = Daemon(str(cls.workdir / "pbx"), json.dumps(config, indent=1))
        cls.api = API(api_port, admin)
        try:
            cls.daemon.start()
            for index, number in enumerate(TONES):
                samples, cls.patterns[number] = keyed_tone(
                    TONES[number], SIGNAL_SECONDS, seed=index + 31
                )
                source = cls.workdir / f"signal-{number}.wav"
                write_pcm_wav(source, samples)
                cls.phones[number] = Phone(
                    baresip,
                    cls.workdir / f"baresip-{number}",
                    number,
                    passwords[number],
                    cls.tls_port,
                    Path("..", source.name),
                    first + RELAY_PORTS + 20 * index,
                    answer=number in (ANSWERER, TARGET),
                    transport="tls",
                    cafile=Path("..", "pbx", "state", "tls", "cert.pem"),
                    extra_modules=("srtp",),
                    params=";mediaenc=srtp-mand",
                )
            wait_registered(cls.phones, cls.api.registrations)
        except BaseException:
            cls.tearDownClass()
            raise

    def setUp(self) -> None:
        """As root, capture the relay's packets (``AF_PACKET`` needs CAP_NET_RAW)."""
        self.capture = LoopbackCapture(self.relay) if os.geteuid() == 0 else None
        if self.capture is not None:
            self.capture.start()

    def tearDown(self) -> None:
        """No call is left, no slot is occupied, pbx logged no traceback, and no tone crossed the relay in clear."""
        try:
            super().tearDown()
            self.assertEqual(self.api.get("/park/")["occupied"], [])
        finally:
            packets = self.capture.stop() if self.capture is not None else None
        if packets is not None:
            self.assertGreater(len(packets), 4 * PACKETS)
            self.assertEqual(plain_tone_packets(packets, tuple(TONES.values())), [])

    # -- helpers -------------------------------------------------------------------

    def the_call(self) -> dict[str, Any] | None:
        """The one live call, once confirmed."""
        calls = self.api.get("/calls")["calls"]
        return (
            calls[0] if len(calls) == 1 and calls[0]["state"] == "confirmed" else None
        )

    def carried(self) -> tuple[int, int]:
        """Packets the relay carried each way in the one live call so far ((0, 0) without one)."""
        call = self.the_call()
        if call is None:
            return (0, 0)
        return call["media"]["a_to_b"]["packets"], call["media"]["b_to_a"]["packets"]

    def explained(self, e: AssertionError) -> AssertionError:
        """``e`` with the live calls and the end of pbx's log (the API's own requests left out)."""
        lines = [line for line in self.daemon.output if '"GET /api/v1/' not in line][
            -40:
        ]
        calls = json.dumps(self.api.get("/calls")["calls"], indent=1)
        return AssertionError(f"{e}\ncalls: {calls}\npbx:\n" + "\n".join(lines))

    def connect(self, callee: str) -> dict[Phone, int]:
        """1401 calls ``callee`` (which answers); they talk; returns each phone's mark from before the call."""
        marks = {p: p.control.mark() for p in self.phones.values()}
        caller = self.phones[CALLER]
        caller.control.command("dial", callee)
        for phone in (caller, self.phones[callee]):
            phone.control.event("CALL_ESTABLISHED", since=marks[phone])
        wait_until(
            lambda: min(self.carried()) >= 25,
            LIMIT,
            f"audio between {CALLER} and {callee}",
        )
        return marks

    def refer(self, number: str, marks: dict[Phone, int]) -> None:
        """1402 sends its call to ``number`` (REFER) and closes it as transferred (the final NOTIFY's 2xx sipfrag)."""
        answerer = self.phones[ANSWERER]
        answerer.control.command(
            "transfer", f"sip:{number}@127.0.0.1:{self.tls_port};transport=tls"
        )
        answerer.control.wait_for(
            lambda m: (
                m.get("type") == "CALL_CLOSED" and "transfer" in json.dumps(m).lower()
            ),
            since=marks[answerer],
        )

    def joined(
        self, party: str, other: str, marks: dict[Phone, int], shown: set[str]
    ) -> dict[str, Any]:
        """
        Once the live call is the one between ``party`` and ``other``
        (/api/v1/calls names ``shown`` as its caller and callee): they
        talk :data:`PACKETS` each way, ``party`` hangs up, both phones close.

        :returns: the live call as /api/v1/calls showed it while they talked.
        """
        wait_until(
            lambda: (c := self.the_call()) and {c["caller"], c["callee"]} == shown,
            LIMIT,
            f"the call between {sorted(shown)}",
        )
        start = self.carried()
        wait_until(
            lambda: all(
                n - s >= PACKETS for n, s in zip(self.carried(), start, strict=True)
            ),
            LIMIT,
            f"{PACKETS} packets each way ({party} with {other})",
        )
        live = self.the_call()
        assert live is not None
        self.phones[party].control.command("hangup")
        for number in (party, other):
            self.phones[number].control.event(
                "CALL_CLOSED", since=marks[self.phones[number]]
            )
        return live

    def check_talk(
        self,
        live: dict[str, Any],
        pair: tuple[str, str],
        recorded: dict[str, set[Path]],
        records_before: int,
    ) -> None:
        """
        Each of ``pair`` heard the other's keyed tone at the end of its
        call; ``live`` had both legs keyed; every record since
        ``records_before`` (once the last leg's is in) says SRTP.
        """
        for listener, talker in (pair, pair[::-1]):
            problems = tail_problems(
                newest_audio(self.phones[listener], recorded[listener]),
                talker=TONES[talker],
                own=TONES[listener],
                pattern=self.patterns[talker],
            )
            self.assertEqual(problems, [], f"{listener} hearing {talker}")
        self.assertEqual(live["srtp"], {"a": SUITE, "b": SUITE}, live)
        wait_until(lambda: self.api.get("/calls")["calls"] == [], LIMIT, "no call left")
        page = self.api.get("/cdr?limit=20")
        rows = page["records"][: page["total"] - records_before]
        self.assertTrue(rows)
        self.assertEqual(
            [
                (r["caller"], r["callee"], r["leg"], r["srtp"])
                for r in rows
                if r["srtp"] != SUITE
            ],
            [],
            rows,
        )

    def recordings(self) -> dict[str, set[Path]]:
        """Each phone's recordings so far."""
        return {n: p.recorded() for n, p in self.phones.items()}

    def records(self) -> int:
        """How many call records there are."""
        return int(self.api.get("/cdr?limit=1")["total"])

    # -- voicemail -----------------------------------------------------------------

    def deposit(self) -> tuple[dict[str, Any], np.ndarray]:
        """1401 leaves :data:`MESSAGE` seconds for 1404; returns the message and its audio as pbx kept it."""
        caller = self.phones[CALLER]
        mark = caller.control.mark()
        caller.control.command("dial", f"*2{OWNER}")
        caller.control.event("CALL_ESTABLISHED", since=mark)
        greeting = sum(prompt_seconds(p) for p in GREETING)
        wait_until(
            lambda: [
                c
                for c in self.api.get("/calls")["calls"]
                if c["duration"] > greeting + MESSAGE
            ],
            LIMIT,
            f"{MESSAGE} s of message",
        )
        caller.control.command("hangup")
        caller.control.event("CALL_CLOSED", since=mark)
        [message] = wait_until(
            lambda: self.api.get(f"/voicemail/{OWNER}/messages")["messages"],
            LIMIT,
            "the message in the API",
        )
        with wave.open(
            io.BytesIO(
                self.api.download(f"/voicemail/{OWNER}/messages/{message['id']}/audio")
            )
        ) as w:
            self.assertEqual(w.getframerate(), RATE)
            raw = w.readframes(w.getnframes())
        return message, np.asarray(
            struct.unpack(f"<{len(raw) // 2}h", raw), dtype=np.float64
        )

    def test_voicemail_retrieval(self) -> None:
        """1404 on SRTP dials *97, keys its PIN inside SRTP, presses 1 and hears 1401's message."""
        try:
            message, kept = self.deposit()
        except AssertionError as e:
            raise self.explained(e) from None
        self.assertEqual(message["caller"], CALLER)
        self.assertGreater(
            tone_share(kept.astype(int).tolist(), TONES[CALLER]),
            0.8,
            "1401's tone, as pbx decrypted and kept it",
        )
        owner = self.phones[OWNER]
        recorded, before = owner.recorded(), self.records()
        mark = owner.control.mark()
        found = (0.0, 0)
        try:
            owner.control.command("dial", "*97")
            owner.control.event("CALL_ESTABLISHED", since=mark)
            self.daemon.wait_for(
                re.compile(rf"call {OWNER} -> \*97: application voicemail-main\b"),
                LIMIT,
            )
            path = max(
                wait_until(
                    lambda: owner.recorded() - recorded or None,
                    LIMIT,
                    "1404's recording",
                ),
                key=lambda p: p.stat().st_mtime,
            )
            prompt = prompt_seconds("vm/enter-password")
            wait_until(
                lambda: len(growing(path)) >= RATE * (prompt - 0.5),
                LIMIT,
                "the PIN prompt",
            )
            for key in PIN + "#":
                press(owner, key, next(self.keys))
            self.daemon.wait_for(
                re.compile(rf"voicemail {OWNER}: logged in from {OWNER}"), LIMIT
            )
            press(owner, "1", next(self.keys))

            def heard() -> bool:
                nonlocal found
                audio = growing(path)
                found = locate(audio, kept)
                # A message still playing matches in part only: wait for its end.
                return found[0] > MATCH and len(audio) >= found[1] + len(kept) + PIECE

            wait_until(heard, LIMIT, "the message in 1404's recording", interval=0.5)
            owner.control.command("hangup")
            owner.control.event("CALL_CLOSED", since=mark)
        except AssertionError as e:
            raise self.explained(
                AssertionError(f"{e} (best match r={found[0]:.3f})")
            ) from None
        audio = read_pcm_wav(path)
        r, offset = locate(np.asarray(audio, dtype=np.float64), kept)
        self.assertGreater(
            r, MATCH, "the message as pbx kept it, in what 1404's SRTP phone decoded"
        )
        played = audio[offset : offset + len(kept)]
        self.assertGreater(tone_share(played, TONES[CALLER]), 0.8)
        self.assertLess(tone_share(played, TONES[OWNER]), 0.05)
        received = envelope(played)
        keyed, _ = best_alignment(
            received,
            self.patterns[CALLER],
            max_lag=len(self.patterns[CALLER]) - len(received),
        )
        self.assertGreater(keyed, 0.8, "1401's keying in the message 1404 heard")
        [old] = self.api.get(f"/voicemail/{OWNER}/messages")["messages"]
        self.assertEqual(old["folder"], "old")
        wait_until(lambda: self.records() > before, LIMIT, "the retrieval's record")
        [record] = self.api.get(f"/cdr?caller={OWNER}&callee=%2A97")["records"]
        self.assertEqual(
            (record["application"], record["srtp"]), ("voicemail-main", SUITE)
        )

    # -- transfer, park, pickup ----------------------------------------------------

    def test_blind_transfer(self) -> None:
        """1402 transfers 1401 to 1403: 1401 and 1403 hear each other, both legs SRTP."""
        recorded, before = self.recordings(), self.records()
        try:
            marks = self.connect(ANSWERER)
            self.refer(TARGET, marks)
            self.phones[TARGET].control.event(
                "CALL_ESTABLISHED", since=marks[self.phones[TARGET]]
            )
            live = self.joined(CALLER, TARGET, marks, {CALLER, TARGET})
        except AssertionError as e:
            raise self.explained(e) from None
        self.check_talk(live, (CALLER, TARGET), recorded, before)
        causes = {r["hangup_cause"] for r in self.api.get("/cdr?limit=3")["records"]}
        self.assertIn(f"transferred to {TARGET}", causes)

    def music_heard(self, before: set[Path]) -> list[float]:
        """How well each piece of what 1401 decodes next matches the default music class (see :data:`PIECE`)."""
        phone = self.phones[CALLER]
        path = max(
            wait_until(
                lambda: phone.recorded() - before or None, LIMIT, "1401's recording"
            ),
            key=lambda p: p.stat().st_mtime,
        )
        start = len(growing(path)) + SETTLE
        wait_until(lambda: len(growing(path)) >= start + STRETCH, LIMIT, "1401's music")
        audio = growing(path)[start : start + STRETCH]
        return [
            best_match(audio[i : i + PIECE], self.music)
            for i in range(0, STRETCH, PIECE)
        ]

    def test_park_and_retrieve(self) -> None:
        """1402 parks 1401 at 71, where it hears music on hold; 1403 dials 71: they hear each other, both legs SRTP."""
        recorded, before = self.recordings(), self.records()
        retriever = self.phones[TARGET]
        try:
            marks = self.connect(ANSWERER)
            self.refer("70", marks)
            [slot] = wait_until(
                lambda: self.api.get("/park/")["occupied"] or None,
                LIMIT,
                "slot 71 taken",
            )
            self.assertEqual(
                (slot["slot"], slot["parked"], slot["parker"]), ("71", CALLER, ANSWERER)
            )
            music = self.music_heard(recorded[CALLER])
            self.assertGreaterEqual(
                sum(r > 0.9 for r in music), len(music) - 1, f"1401's music: {music}"
            )
            retriever.control.command("dial", "71")
            retriever.control.event("CALL_ESTABLISHED", since=marks[retriever])
            live = self.joined(CALLER, TARGET, marks, {CALLER, TARGET})
        except AssertionError as e:
            raise self.explained(e) from None
        self.check_talk(live, (CALLER, TARGET), recorded, before)

    def pick_up(self, code: str) -> None:
        """1401 calls 1404, which rings; 1403 dials ``code``; 1401 and 1403 talk; checked."""
        recorded, before = self.recordings(), self.records()
        marks = {p: p.control.mark() for p in self.phones.values()}
        caller, ringing, picker = (self.phones[n] for n in (CALLER, OWNER, TARGET))
        try:
            caller.control.command("dial", OWNER)
            ringing.control.event("CALL_INCOMING", since=marks[ringing])
            picker.control.command("dial", code)
            for phone in (caller, picker):
                phone.control.event("CALL_ESTABLISHED", since=marks[phone])
            ringing.control.event("CALL_CLOSED", since=marks[ringing])
            # The picked-up call keeps its callee's number; 1403 took 1404's place.
            live = self.joined(CALLER, TARGET, marks, {CALLER, OWNER})
        except AssertionError as e:
            raise self.explained(e) from None
        self.assertEqual(live["caller"], CALLER)
        self.check_talk(live, (CALLER, TARGET), recorded, before)

    def test_directed_pickup(self) -> None:
        """1403 dials **1404 while 1404 rings: 1401 and 1403 hear each other, both legs SRTP."""
        self.pick_up(f"**{OWNER}")

    def test_group_pickup(self) -> None:
        """1403 dials *8 while 1404, of its pickup group, rings: 1401 and 1403 hear each other, both legs SRTP."""
        self.pick_up("*8")
