"""
Integration tests: blind transfer (baresip's ``transfer`` command, a
REFER) to a voicemail box and to a ring group, through the real daemon.

Phones: 2201 and 2206 call; 2202 answers by itself and transfers its
caller; 2204 (a group member) answers by itself; 2205 (another member)
rings and never answers.  2203 has a mailbox and no phone.  The dialplan
sends ``*2`` + four digits to that extension's voicemail
(``args: {mailbox: "$1"}``); group ``sales`` (2600) hunts 2205 then 2204.

- 2202 transfers 2201 to ``*22203``: 2202's baresip reports the call
  closed as transferred, 2201 hears 2203's greeting (found in what its
  phone decoded by correlation with the prompt files), then its keyed tone
  is taken as a message: the message is in 2203's mailbox, and the call
  records hold a ``voicemail`` row for the transferee;
- 2202 transfers 2206 to 2600: 2205 rings for ``member_timeout`` and stops,
  2204 answers, and 2206 and 2204 hear each other's keyed tones (frequency
  and on/off pattern by correlation).
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from support.apps import locate, prompt, prompt_seconds
from support.baresip import LIMIT, Phone, PhonesTestCase, require_baresip
from support.calls import (
    FRAME,
    RATE,
    call_config,
    free_udp_block,
    keyed_tone,
    read_pcm_wav,
    tone_share,
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
from support.keying import keying_correlation, tone_envelope

pytestmark = pytest.mark.integration

VM_CALLER, TRANSFEROR, MAILBOX, MEMBER, SILENT, CALLER = "2201", "2202", "2203", "2204", "2205", "2206"
TONES = {VM_CALLER: 440.0, TRANSFEROR: 1000.0, MEMBER: 700.0, SILENT: 1300.0, CALLER: 550.0}
PHONES = (VM_CALLER, TRANSFEROR, MEMBER, SILENT, CALLER)
RELAY_PORTS = 40
MEMBER_TIMEOUT = 4
#: What 2203's voicemail says before the beep (no greeting recorded).
GREETING = ("vm/unavailable", "digits/2", "digits/2", "digits/0", "digits/3",
            "vm/is-unavailable", "vm/leave-message", "general/beep")
#: Seconds of silence 2201 sends first: the call with 2202 and the transfer (about 1 s), the greeting.
LEAD = 1.5 + sum(prompt_seconds(p) for p in GREETING)


class TransferTargetTests(PhonesTestCase):
    """A baresip phone's transfer key sends the other party to voicemail or to a ring group."""

    patterns: ClassVar[dict[str, list[bool]]]
    sip_port: ClassVar[int]

    @classmethod
    def setUpClass(cls) -> None:
        """Start pbx (voicemail, the *2XXXX route, group sales) and the five phones; wait for the registrations."""
        baresip = require_baresip()
        cls.workdir = Path(tempfile.mkdtemp(prefix="pbx-transfer-targets-"))
        cls.phones, cls.patterns = {}, {}
        passwords = {n: strong_password(n) for n in (*PHONES, MAILBOX)}
        cls.sip_port, api_port = free_port(), free_port()
        first = free_udp_block(RELAY_PORTS + 20 * len(PHONES))
        admin = admin_password()
        config = json.loads(call_config(
            api_port=api_port, sip_port=cls.sip_port, admin_password=admin, extensions=passwords,
            transports=("udp",), state_dir=str(cls.workdir / "pbx" / "state"),
            rtp_ports=(first, first + RELAY_PORTS - 1),
        ))
        config["features"] = {"voicemail": {"silence_seconds": 3}}
        config["dialplan"] = [{"match": r"re:^\*2(\d{4})$", "app": "voicemail", "args": {"mailbox": "$1"}}]
        config["groups"] = {"sales": {"number": "2600", "members": [SILENT, MEMBER], "strategy": "hunt",
                                      "member_timeout": MEMBER_TIMEOUT, "timeout": 30}}
        cls.daemon = Daemon(str(cls.workdir / "pbx"), json.dumps(config, indent=1))
        cls.api = API(api_port, admin)
        try:
            cls.daemon.start()
            for index, number in enumerate(PHONES):
                samples, cls.patterns[number] = keyed_tone(TONES[number], 60.0, seed=index + 11)
                if number == VM_CALLER:
                    # Quiet through the greeting, a 3 s message, then silence that ends the recording.
                    samples = [0] * int(LEAD * RATE) + samples[: 3 * RATE] + [0] * (20 * RATE)
                source = cls.workdir / f"signal-{number}.wav"
                write_pcm_wav(source, samples)
                cls.phones[number] = Phone(
                    baresip, cls.workdir / f"baresip-{number}", number, passwords[number], cls.sip_port,
                    Path("..", source.name), first + RELAY_PORTS + 20 * index,
                    answer=number in (TRANSFEROR, MEMBER),
                )
            for number in PHONES:
                wait_until(lambda n=number: [r for r in cls.api.registrations() if r["extension"] == n],
                           LIMIT, f"{number}'s registration")
        except BaseException:
            cls.tearDownClass()
            raise

    # -- helpers -------------------------------------------------------------------

    def packets(self) -> tuple[int, int]:
        """Packets the relay carried each way in the one confirmed call so far ((0, 0) without one)."""
        calls = self.api.get("/calls")["calls"]
        if len(calls) != 1 or calls[0]["state"] != "confirmed":
            return (0, 0)
        media = calls[0]["media"]
        return media["a_to_b"]["packets"], media["b_to_a"]["packets"]

    def transfer_from(self, caller: str, number: str) -> dict[Phone, int]:
        """``caller`` calls 2202, they talk, and 2202 transfers it to ``number``; each phone's mark from before."""
        marks = {p: p.control.mark() for p in self.phones.values()}
        transferor = self.phones[TRANSFEROR]
        self.phones[caller].control.command("dial", TRANSFEROR)
        for phone in (self.phones[caller], transferor):
            phone.control.event("CALL_ESTABLISHED", since=marks[phone])
        wait_until(lambda: min(self.packets()) >= 25, LIMIT, f"audio between {caller} and 2202")
        transferor.control.command("transfer", f"sip:{number}@127.0.0.1:{self.sip_port}")
        # The final NOTIFY's 2xx sipfrag: baresip closes its call as transferred.
        transferor.control.wait_for(
            lambda m: m.get("type") == "CALL_CLOSED" and "transfer" in json.dumps(m).lower(),
            since=marks[transferor],
        )
        return marks

    def audio(self, number: str) -> np.ndarray:
        """What ``number``'s phone decoded in its newest call, once the file is closed."""
        phone = self.phones[number]
        path = max(wait_until(lambda: phone.recorded() or None, LIMIT, f"{number}'s recording"),
                   key=lambda p: p.stat().st_mtime)
        return np.asarray(wait_until(lambda: read_pcm_wav(path) or None, LIMIT, f"audio in {path}"))

    def explained(self, e: AssertionError) -> AssertionError:
        """``e`` with the end of pbx's log."""
        lines = [line for line in self.daemon.output if '"GET /api/' not in line]
        return AssertionError(f"{e}\npbx (no API requests):\n" + "\n".join(lines[-40:]))

    # -- tests ---------------------------------------------------------------------

    def test_to_voicemail_of_extension(self) -> None:
        """2202 transfers 2201 to *22203: 2201 hears 2203's greeting, leaves a message, and the record says voicemail."""
        cdr_before = self.api.get("/cdr?limit=1")["total"]
        try:
            marks = self.transfer_from(VM_CALLER, "*22203")
            self.daemon.wait_for(re.compile(r"handed to application voicemail \(\*22203\)"), LIMIT)
            # pbx hangs up once the silence after the message ended it.
            self.phones[VM_CALLER].control.wait_for(lambda m: m.get("event") and m.get("type") == "CALL_CLOSED",
                                                    limit=60.0, since=marks[self.phones[VM_CALLER]])
            [message] = wait_until(lambda: self.api.get(f"/voicemail/{MAILBOX}/messages")["messages"],
                                   LIMIT, "the message in 2203's mailbox")
        except AssertionError as e:
            raise self.explained(e) from None
        self.assertEqual(message["caller"], VM_CALLER)
        self.assertLess(abs(message["duration"] - 3.0), 1.5, message)
        heard = self.audio(VM_CALLER)
        for prompt_id in ("vm/unavailable", "vm/leave-message"):
            r, _ = locate(heard, prompt(prompt_id))
            self.assertGreater(r, 0.8, f"2201 heard {prompt_id} (r={r:.3f})")
        # The call's (2201's leg), 2202's (transferred) and the voicemail leg's.
        rows = wait_until(lambda: (page := self.api.get("/cdr?limit=3"))["total"] >= cdr_before + 3
                          and page["records"], LIMIT, "the call records")
        voicemail = [r for r in rows if r["application"] == "voicemail"]
        self.assertEqual([(r["caller"], r["callee"], r["disposition"]) for r in voicemail],
                         [(VM_CALLER, "*22203", "VOICEMAIL")])
        self.assertIn("transferred to *22203", {r["hangup_cause"] for r in rows})

    def test_to_hunt_group(self) -> None:
        """2202 transfers 2206 to group 2600: 2205 rings and stops, 2204 answers; 2206 and 2204 hear each other."""
        silent, member = self.phones[SILENT], self.phones[MEMBER]
        try:
            marks = self.transfer_from(CALLER, "2600")
            silent.control.event("CALL_INCOMING", since=marks[silent])
            silent.control.event("CALL_CLOSED", since=marks[silent])
            member.control.event("CALL_ESTABLISHED", since=marks[member])
            wait_until(lambda: (c := self.api.get("/calls")["calls"]) and c[0]["callee"] == MEMBER,
                       LIMIT, "2204 in the call")
            start = self.packets()
            wait_until(lambda: all(n - s >= 150 for n, s in zip(self.packets(), start, strict=True)),
                       LIMIT, "3 s of audio each way between 2206 and 2204")
            self.phones[CALLER].control.command("hangup")
            member.control.event("CALL_CLOSED", since=marks[member])
        except AssertionError as e:
            raise self.explained(e) from None
        for listener, talker in ((CALLER, MEMBER), (MEMBER, CALLER)):
            # The last 2 s before the hang-up: the talker's tone alone, keyed as it was sent.
            audio = self.audio(listener)
            start = (len(audio) - int(2.5 * RATE)) // FRAME
            tail = audio[start * FRAME: -RATE // 2]
            self.assertGreater(tone_share(list(tail), TONES[talker]), 0.8, f"{listener} hearing {talker}")
            self.assertLess(tone_share(list(tail), TONES[listener]), 0.05, f"{listener} hearing itself")
            r, lag = keying_correlation(tone_envelope(tail, TONES[talker]), self.patterns[talker], start)
            self.assertGreater(r, 0.8, f"{listener} hearing {talker}'s keying (lag {lag})")
