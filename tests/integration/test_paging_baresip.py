"""
Integration test: paging and intercom with baresip phones, real audio,
and a multicast listener.

Page: 1001 dials the page group 700 (``{match: "700", app: paging}``),
whose members are 1002 and 1003 (baresip phones that answer by
themselves) and 1004 (an extension with no phone registered: skipped).
The group also pages by multicast to a 239.x address on loopback, where
the test listens.  Every phone plays its own keyed tone
(:func:`support.calls.keyed_tone`: 600 Hz for the pager, 900 and 1300 Hz
for the members) and records what it hears.

- each member answers by itself and hears the pager: the amplitude of
  600 Hz in its recording, frame by frame, follows the pager's keying
  pattern (correlation by half second at the best lag: above 0.9 for
  half the pieces, above 0.8 for three quarters);
- no member hears the other member (its tone below a tenth of the
  pager's), and the pager hears no member;
- the multicast listener, joined to the group on 127.0.0.1, gets a
  steady RTP stream (PCMU, 20 ms) carrying the pager's keyed tone;
- when the pager hangs up, both members get BYE (their calls close) and
  the multicast stream stops.

Intercom: 1001 dials ``*801002`` (``{match: "_*80X!", app: intercom}``);
1002 answers by itself and each phone hears the other's keyed tone.  When
1001 hangs up, 1002's call ends.

baresip 1.0 (the version installed here) does not read ``Call-Info:
answer-after`` or ``Alert-Info`` (no code in it or its modules mentions
them), so the member phones' accounts say ``answermode=auto``; the
headers themselves are checked against SIPp in ``test_paging_sipp.py``.
Only loopback is used.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from twisted.trial.unittest import SynchronousTestCase

from pbx.media.codecs import PCMU

from support.baresip import LIMIT, MODULES, NEEDED, Phone, recorded_seconds
from support.calls import call_config, free_udp_block, keyed_tone, write_pcm_wav
from support.daemon import (
    API,
    Daemon,
    admin_password,
    free_port,
    require_binary,
    strong_password,
    wait_until,
)
from support.keying import keying_by_piece, tone_envelope

pytestmark = pytest.mark.integration

PAGER = "1001"
#: Each phone's tone (Hz) and keying seed.
TONES = {"1001": (600.0, 21), "1002": (900.0, 22), "1003": (1300.0, 23)}
#: A member with an extension but no phone: the page skips it.
ABSENT = "1004"
GROUP_NUMBER = "700"
MULTICAST_GROUP = "239.255.77.7"
AMPLITUDE = 8000
SIGNAL_SECONDS = 60.0
#: Seconds of the page (or intercom call) measured.
TALK = 8.0
#: Margin (s) after the answer: the beeps, the jitter buffer filling.
SETTLE = 1.0
RELAY_PORTS = 40




class MulticastListener:
    """
    A receiver joined to a multicast group on 127.0.0.1 (as a phone that
    listens to multicast pages is): keeps every datagram, read by a thread.
    """

    def __init__(self, group: str, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((group, port))
        membership = struct.pack(
            "4s4s", socket.inet_aton(group), socket.inet_aton("127.0.0.1")
        )
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        self.sock.settimeout(0.5)
        self.packets: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            self.packets.append(data)

    def close(self) -> None:
        """Stop reading and leave the group."""
        self._stop.set()
        self._thread.join(10)
        self.sock.close()


def rtp_audio(
    packets: list[bytes],
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """
    The PCMU audio of RTP packets in arrival order, and each packet's
    (payload type, sequence, timestamp, SSRC).
    """
    decoder = PCMU().new_decoder()
    headers, audio = [], []
    for data in packets:
        first, pt, sequence, timestamp, ssrc = struct.unpack("!BBHII", data[:12])
        headers.append((pt & 0x7F, sequence, timestamp, ssrc))
        audio.append(
            np.asarray(decoder.decode(data[12 + 4 * (first & 0x0F) :]), dtype=np.int16)
        )
    return (np.concatenate(audio) if audio else np.zeros(0, dtype=np.int16)), headers


class BaresipPagingTests(SynchronousTestCase):
    """baresip phones paged, and called by intercom, through the real daemon."""

    def setUp(self) -> None:
        self.baresip = require_binary("baresip", "baresip-core")
        missing = [m for m in NEEDED if not (MODULES / f"{m}.so").is_file()]
        if missing:
            raise AssertionError(
                f"baresip-core is incomplete: no {missing} in {MODULES}"
            )
        self.workdir = Path(self.mktemp()).absolute()
        self.workdir.mkdir(parents=True)
        self.sip_port = free_port()
        api_port = free_port()
        self.passwords = {n: strong_password(n) for n in [*TONES, ABSENT]}
        first = free_udp_block(RELAY_PORTS + 20 * len(TONES))
        relay = (first, first + RELAY_PORTS - 1)
        self.phone_rtp = {n: first + RELAY_PORTS + 20 * i for i, n in enumerate(TONES)}
        self.multicast_port = free_port(socket.SOCK_DGRAM)
        admin = admin_password()
        config = json.loads(call_config(
            api_port=api_port, sip_port=self.sip_port, admin_password=admin,
            extensions=self.passwords, transports=("udp",), rtp_ports=relay,
        ))  # fmt: skip
        config["features"] = {"paging": {
            "intercom_prefix": "*80",
            "multicast_interface": "127.0.0.1",
            "groups": {"warehouse": {
                "number": GROUP_NUMBER, "members": ["1002", "1003", ABSENT],
                "multicast": f"{MULTICAST_GROUP}:{self.multicast_port}", "codec": "pcmu",
            }},
        }}  # fmt: skip
        config["dialplan"] = [
            {"match": GROUP_NUMBER, "app": "paging"},
            {"match": "_*80X!", "app": "intercom"},
        ]
        self.daemon = Daemon(str(self.workdir / "pbx"), json.dumps(config, indent=1))
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.api = API(api_port, admin)
        self.patterns: dict[str, list[bool]] = {}

    def start_phone(self, number: str, answer: bool) -> Phone:
        """Write ``number``'s signal file and start its phone; wait for its registration."""
        frequency, seed = TONES[number]
        samples, self.patterns[number] = keyed_tone(
            frequency, SIGNAL_SECONDS, seed, amplitude=AMPLITUDE
        )
        source = self.workdir / f"signal-{number}.wav"
        write_pcm_wav(source, samples)
        phone = Phone(
            self.baresip,
            self.workdir / f"baresip-{number}",
            number,
            self.passwords[number],
            self.sip_port,
            Path("..", source.name),
            self.phone_rtp[number],
            answer=answer,
        )
        self.addCleanup(phone.stop)
        try:
            wait_until(
                lambda: [
                    r for r in self.api.registrations() if r["extension"] == number
                ],
                LIMIT,
                f"{number}'s registration",
            )
        except AssertionError as e:
            raise AssertionError(f"{e}\n{phone.output()[-3000:]}") from None
        return phone

    def hears(
        self, listener: str, audio: np.ndarray, talker: str, start: float
    ) -> float:
        """
        Require that ``audio`` (from ``start`` s, :data:`TALK` s long) follows
        ``talker``'s keying; its mean level of ``talker``'s frequency.
        """
        frequency = TONES[talker][0]
        envelope = tone_envelope(audio, frequency)
        stretch = slice(round(start * 50), round((start + TALK) * 50))
        pieces = keying_by_piece(
            envelope[stretch], self.patterns[talker], stretch.start
        )
        what = f"{listener} hearing {talker}: " + ", ".join(
            f"r={r:.2f} at lag {lag}" for r, lag in pieces
        )
        rs = sorted(r for r, _ in pieces)
        self.assertGreaterEqual(len(rs), 8, what)
        self.assertGreater(rs[len(rs) // 2], 0.9, what)
        self.assertGreater(rs[len(rs) // 4], 0.8, what)
        return float(envelope[stretch].mean())

    def level(self, audio: np.ndarray, talker: str, start: float) -> float:
        """The mean level of ``talker``'s frequency in ``audio`` over the measured stretch."""
        envelope = tone_envelope(audio, TONES[talker][0])
        return float(envelope[round(start * 50) : round((start + TALK) * 50)].mean())

    def test_page_group(self) -> None:
        """
        The members answer by themselves and hear the pager and not each
        other; the pager hears none of them; a multicast listener hears the
        pager; the pager's hang-up ends every member's call.
        """
        members = {n: self.start_phone(n, answer=True) for n in ("1002", "1003")}
        pager = self.start_phone(PAGER, answer=False)
        listener = MulticastListener(MULTICAST_GROUP, self.multicast_port)
        self.addCleanup(listener.close)
        pager.control.command("dial", GROUP_NUMBER)
        pager.control.event("CALL_ESTABLISHED")
        for phone in members.values():
            phone.control.event("CALL_ESTABLISHED")
        phones = {PAGER: pager, **members}
        start = {n: recorded_seconds(p) + SETTLE for n, p in phones.items()}
        wait_until(
            lambda: all(
                recorded_seconds(p) >= start[n] + TALK for n, p in phones.items()
            ),
            LIMIT,
            f"{TALK}s of the page",
        )
        closing = {n: p.control.mark() for n, p in members.items()}
        pager.control.command("hangup")
        pager.control.event("CALL_CLOSED")
        for number, phone in members.items():
            try:
                phone.control.event("CALL_CLOSED", since=closing[number])
            except AssertionError as e:
                raise AssertionError(
                    f"{number} got no BYE: {e}\n{list(self.daemon.output)[-30:]}"
                ) from None
        wait_until(lambda: not self.api.get("/calls")["calls"], LIMIT, "no call left")
        after_end = len(listener.packets)
        heard = {}
        for number, phone in phones.items():
            phone.stop()
            heard[number] = np.asarray(phone.heard(), dtype=np.float64)
        # The stream stopped with the page (a packet in flight aside),
        # while the phones took their time to stop.
        self.assertLessEqual(len(listener.packets) - after_end, 2)
        listener.close()
        for number in members:
            pager_level = self.hears(number, heard[number], PAGER, start[number])
            other = "1003" if number == "1002" else "1002"
            other_level = self.level(heard[number], other, start[number])
            self.assertGreater(
                pager_level, 500, f"{number} hears the pager at {pager_level:.0f}"
            )
            self.assertLess(other_level, 0.1 * pager_level, f"{number} hears {other}")
        for member in members:
            level = self.level(heard[PAGER], member, start[PAGER])
            self.assertLess(level, 100, f"the pager hears {member} at {level:.0f}")

        audio, headers = rtp_audio(listener.packets)
        self.assertGreater(len(headers), TALK * 50)
        self.assertEqual({h[0] for h in headers}, {0})
        self.assertEqual(len({h[3] for h in headers}), 1)
        steps = [
            (b[2] - a[2]) & 0xFFFFFFFF
            for a, b in zip(headers, headers[1:], strict=False)
        ]
        # One 20 ms PCMU frame per packet; a tick the reactor ran late
        # skips the time missed (a few on a busy machine, never most).
        self.assertEqual({step % 160 for step in steps}, {0}, "whole 20 ms frames")
        self.assertGreater(
            steps.count(160), 0.95 * len(steps), "one 20 ms frame per packet"
        )
        # The measured stretch: the last TALK seconds before the pager hung up.
        begin = max(0.0, len(headers) / 50 - TALK - 0.5)
        self.hears("the multicast listener", audio.astype(np.float64), PAGER, begin)

    def test_intercom(self) -> None:
        """*801002 reaches 1002, which answers by itself; each side hears the other; 1001's hang-up ends it."""
        callee = self.start_phone("1002", answer=True)
        caller = self.start_phone(PAGER, answer=False)
        caller.control.command("dial", "*801002")
        caller.control.event("CALL_ESTABLISHED")
        callee.control.event("CALL_ESTABLISHED")
        phones = {PAGER: caller, "1002": callee}
        start = {n: recorded_seconds(p) + SETTLE for n, p in phones.items()}
        wait_until(
            lambda: all(
                recorded_seconds(p) >= start[n] + TALK for n, p in phones.items()
            ),
            LIMIT,
            f"{TALK}s of the intercom call",
        )
        mark = callee.control.mark()
        caller.control.command("hangup")
        caller.control.event("CALL_CLOSED")
        callee.control.event("CALL_CLOSED", since=mark)
        heard = {}
        for number, phone in phones.items():
            phone.stop()
            heard[number] = np.asarray(phone.heard(), dtype=np.float64)
        self.assertGreater(self.hears(PAGER, heard[PAGER], "1002", start[PAGER]), 500)
        self.assertGreater(self.hears("1002", heard["1002"], PAGER, start["1002"]), 500)
