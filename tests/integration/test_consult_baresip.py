"""
Integration tests: attended transfer (``*2``) and three-way calls (``*3``)
keyed as SIP INFO, through the real daemon, with what each phone heard
checked by its tone.

1001 is SIPp (``uac_call_rtp.xml`` with the keys added: baresip 1.0 sends
keys only as RFC 4733 events, see ``test_apps_baresip.py``), talking a
keyed 440 Hz tone; 1002 (1000 Hz) and 1003 (700 Hz) are baresip phones
that answer by themselves and record what they hear.  1001 calls 1002,
keys a code and 1003, and hangs up after a while:

- three-way: 1002 and 1003 each hear both others at once; once 1001 has
  hung up, 1003 (in 1001's seat) and 1002 talk on;
- attended: 1003 hears 1001 alone while consulted (1002 waits), then,
  1001 gone, 1002 and 1003 hear each other;
- cancelled: 1001 keys ``*`` while consulting: 1003 is hung up and 1002
  hears 1001 again.

A tone is found in a stretch of a recording by the share of its energy at
that frequency (:func:`support.calls.tone_share`).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

import pytest

from support.baresip import MODULES, NEEDED, Phone, recorded_seconds
from support.calls import RATE, free_udp_block, keyed_tone, tone_share, write_pcm_wav
from support.daemon import free_port, require_binary, wait_until
from support.paths import SCENARIOS
from support.sipp import ABSENT, CALLEE, CALLER, LIMIT, SIPpCallCase

pytestmark = pytest.mark.integration

TARGET = ABSENT  # 1003 is registered here, by baresip
TONES = {CALLER: 440.0, CALLEE: 1000.0, TARGET: 700.0}
#: One key as SIP INFO (application/dtmf-relay) in 1001's dialog.
INFO = """
  <send retrans="500">
    <![CDATA[

      INFO [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[field0]@[remote_ip]:[remote_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field1]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} INFO
      Contact: <sip:[field0]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={key}
      Duration=100

    ]]>
  </send>
  <recv response="200" />
  <pause milliseconds="150" />
"""


def keyed_scenario(path: Path, *steps: str | int) -> Path:
    """
    ``uac_call_rtp.xml`` with ``steps`` once its RTP flows: a string is
    keys (one INFO each), a number a pause in milliseconds; ``-d`` is the
    pause before the BYE.
    """
    text = (SCENARIOS / "uac_call_rtp.xml").read_text()
    added, cseq = [], 3
    for step in steps:
        if isinstance(step, int):
            added.append(f'  <pause milliseconds="{step}" />\n')
            continue
        for key in step:
            added.append(INFO.format(cseq=cseq, key=key))
            cseq += 1
    anchor = "  <!-- The call's length: -d. -->"
    assert anchor in text and "CSeq: 3 BYE" in text
    text = text.replace(anchor, "".join(added) + anchor).replace("CSeq: 3 BYE", f"CSeq: {cseq} BYE")
    path.write_text(text)
    return path


def heard_together(audio: Sequence[int], first: float, second: float, share: float = 0.1) -> bool:
    """Whether some two seconds of ``audio`` hold both tones, each above ``share`` of the energy."""
    window = 2 * RATE
    for start in range(0, max(0, len(audio) - window), RATE // 4):
        piece = audio[start : start + window]
        if tone_share(piece, first) > share and tone_share(piece, second) > share:
            return True
    return False


def heard_alone(audio: Sequence[int], tone: float, others: Sequence[float]) -> bool:
    """Whether some two seconds of ``audio`` are ``tone`` (over half the energy) with none of ``others``."""
    window = 2 * RATE
    for start in range(0, max(0, len(audio) - window), RATE // 4):
        piece = audio[start : start + window]
        if tone_share(piece, tone) > 0.5 and all(tone_share(piece, f) < 0.05 for f in others):
            return True
    return False


class ConsultTests(SIPpCallCase):
    """1001 (SIPp) keys codes in its call with 1002; 1002 and 1003 are baresip phones."""

    def setUp(self) -> None:
        """The daemon, SIPp's tone, and the two baresip phones, registered."""
        super().setUp()
        baresip = require_binary("baresip", "baresip-core")
        missing = [m for m in NEEDED if not (MODULES / f"{m}.so").is_file()]
        if missing:
            raise AssertionError(f"baresip-core is incomplete: no {missing} in {MODULES}")
        # SIPp's tone.wav (support.sipp) is 1001's keyed 440 Hz.
        self.phones: dict[str, Phone] = {}
        for index, number in enumerate((CALLEE, TARGET)):
            tone, _ = keyed_tone(TONES[number], 60.0, seed=index + 3)
            write_pcm_wav(self.workdir / f"signal-{number}.wav", tone)
            self.phones[number] = Phone(
                baresip, self.workdir / f"baresip-{number}", number, self.passwords[number], self.sip_port,
                Path("..", f"signal-{number}.wav"), free_udp_block(20), answer=True,
            )
            self.addCleanup(lambda p=self.phones[number]: p.process.poll() is None and p.stop())
        for number in self.phones:
            wait_until(lambda n=number: [r for r in self.api.registrations() if r["extension"] == n],
                       LIMIT, f"{number}'s registration")

    def key_call(self, name: str, *steps: str | int, after: int) -> None:
        """1001 calls 1002, takes ``steps`` (see :func:`keyed_scenario`), talks ``after`` ms more, hangs up."""
        scenario = keyed_scenario(self.workdir / f"{name}.xml", *steps)
        row = (CALLER, CALLEE, f"[authentication username={CALLER} password={self.passwords[CALLER]}]")
        process = self.start_sipp(
            str(scenario.with_suffix("")), free_port(socket.SOCK_DGRAM),
            "-inf", str(self.injection(name, [row])), "-m", "1", "-mp", str(next(self.media_ports)),
            "-d", str(after), f"127.0.0.1:{self.sip_port}", name=name, limit=60,
        )  # fmt: skip
        self.finish(process, name)

    def heard(self, number: str) -> list[int]:
        """What ``number``'s phone recorded (its phone stopped first, so the file is whole)."""
        self.phones[number].stop()
        return self.phones[number].heard()

    def test_three_way(self) -> None:
        """*31003#: 1002 and 1003 each hear the two others at once; 1001 gone, they talk on."""
        self.key_call("three-way", 1500, "*31003#", after=6000)
        wait_until(lambda: [c for c in self.live_calls() if c["caller"] == TARGET], LIMIT, "1003 in 1001's seat")
        self.settle(3.0)
        self.phones[CALLEE].control.command("hangup")
        callee, target = self.heard(CALLEE), self.heard(TARGET)
        self.assertTrue(heard_together(callee, TONES[CALLER], TONES[TARGET]), "1002 did not hear 1001 and 1003")
        self.assertTrue(heard_together(target, TONES[CALLER], TONES[CALLEE]), "1003 did not hear 1001 and 1002")
        self.assertTrue(heard_alone(callee[-3 * RATE :], TONES[TARGET], [TONES[CALLER]]),
                        "1002 did not hear 1003 alone at the end")
        self.assert_idle()

    def test_attended(self) -> None:
        """*21003#: 1003 hears 1001 alone (1002 waits); 1001 hangs up and 1002 and 1003 hear each other."""
        self.key_call("attended", 1500, "*21003#", after=5000)
        wait_until(lambda: [c for c in self.live_calls() if c["caller"] == TARGET], LIMIT, "1003 in 1001's seat")
        self.settle(3.0)
        self.phones[CALLEE].control.command("hangup")
        callee, target = self.heard(CALLEE), self.heard(TARGET)
        self.assertTrue(heard_alone(target, TONES[CALLER], [TONES[CALLEE]]), "1003 was not consulted privately")
        self.assertFalse(heard_together(callee, TONES[CALLER], TONES[TARGET]), "1002 heard the consultation")
        self.assertTrue(heard_alone(callee[-3 * RATE :], TONES[TARGET], [TONES[CALLER]]), "1002 did not get 1003")
        self.assertTrue(heard_alone(target[-3 * RATE :], TONES[CALLEE], [TONES[CALLER]]), "1003 did not get 1002")
        self.assert_idle()

    def test_cancelled(self) -> None:
        """*21003# then *: 1003 is hung up and 1002 hears 1001 again until 1001 hangs up."""
        self.key_call("cancelled", 1500, "*21003#", 3000, "*", after=4000)
        callee, target = self.heard(CALLEE), self.heard(TARGET)
        self.assertTrue(heard_alone(target, TONES[CALLER], [TONES[CALLEE]]), "1003 was not consulted")
        self.assertTrue(heard_alone(callee[-3 * RATE :], TONES[CALLER], [TONES[TARGET]]), "1002 is not back with 1001")
        self.assert_idle()

    def settle(self, seconds: float) -> None:
        """Wait until 1002's recording has grown by ``seconds`` (the call runs on meanwhile)."""
        start = recorded_seconds(self.phones[CALLEE])
        wait_until(lambda: recorded_seconds(self.phones[CALLEE]) >= start + seconds, LIMIT, f"{seconds}s more talk")
