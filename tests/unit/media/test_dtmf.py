"""
Tests for L{pbx.media.dtmf} and L{pbx.media.goertzel}: RFC 4733 payloads,
receiving and sending key presses as telephone events, SIP INFO bodies,
in-band detection on generated tones, and the merged digit stream.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.trial.unittest import SynchronousTestCase

from pbx.media.dtmf import (
    DEFAULT_INFO_DURATION_MS,
    DIGITS,
    MAX_DURATION,
    DigitEvent,
    DigitStream,
    RFC4733Receiver,
    RFC4733Sender,
    TelephoneEvent,
    call_digits,
    decode_event,
    encode_event,
    parse_dtmf_info,
)
from pbx.media.goertzel import COLUMNS, KEYPAD, ROWS, GoertzelDetector

from support.dtmf import detect, digits, pcm

TONE_AMPLITUDE = 7200.0
"""Per-tone peak amplitude: about -10 dBm0, a phone's usual DTMF level."""


def packet(digit: str, duration: int, end: bool = False) -> bytes:
    """A telephone-event payload at volume 10."""
    return encode_event(digit, end, 10, duration)


def press(
    receiver: RFC4733Receiver, timestamp: int, digit: str, duration: int
) -> list[DigitEvent]:
    """Feed the packets of one press as a phone at ptime 20 sends them."""
    found = receiver.feed(timestamp, True, packet(digit, 160))
    for progress in range(320, duration, 160):
        found += receiver.feed(timestamp, False, packet(digit, progress))
    for _ in range(3):
        found += receiver.feed(timestamp, False, packet(digit, duration, end=True))
    return found


def tone(
    key: str,
    ms: float,
    rate: int = 8000,
    amplitude: float = TONE_AMPLITUDE,
    twist_db: float = 0.0,
    harmonic_db: float | None = None,
) -> np.ndarray:
    """
    The two tones of a key as float samples.

    :param twist_db: the high tone's level relative to the low tone.
    :param harmonic_db: if given, add both tones' second harmonics this far
        below them.
    """
    row, column = divmod(KEYPAD.index(key), 4)
    t = np.arange(round(rate * ms / 1000)) / rate
    high = amplitude * 10 ** (twist_db / 20)
    samples = amplitude * np.sin(2 * np.pi * ROWS[row] * t)
    samples += high * np.sin(2 * np.pi * COLUMNS[column] * t + 1.0)
    if harmonic_db is not None:
        gain = 10 ** (harmonic_db / 20)
        samples += gain * amplitude * np.sin(4 * np.pi * ROWS[row] * t + 0.5)
        samples += gain * high * np.sin(4 * np.pi * COLUMNS[column] * t + 0.5)
    return samples


def silence(ms: float, rate: int = 8000) -> np.ndarray:
    """Digital silence."""
    return np.zeros(round(rate * ms / 1000))


def dialled(
    keys: str, on_ms: float = 60, off_ms: float = 60, rate: int = 8000
) -> np.ndarray:
    """Keys dialled one after another: each tone followed by a pause."""
    return np.concatenate(
        [np.concatenate([tone(k, on_ms, rate), silence(off_ms, rate)]) for k in keys]
    )


class TelephoneEventPayloadTests(SynchronousTestCase):
    """
    Tests for L{encode_event} and L{decode_event} (RFC 4733 §2.3).
    """

    def test_encode_vectors(self) -> None:
        """Known payloads: event code, E bit with volume, duration big-endian."""
        self.assertEqual(encode_event("5", False, 10, 160), b"\x05\x0a\x00\xa0")
        self.assertEqual(encode_event("5", True, 10, 800), b"\x05\x8a\x03\x20")
        self.assertEqual(encode_event("*", False, 0, 0), b"\x0a\x00\x00\x00")
        self.assertEqual(encode_event("#", True, 63, 0xFFFF), b"\x0b\xbf\xff\xff")
        self.assertEqual(encode_event("d", False, 7, 1), b"\x0f\x07\x00\x01")
        self.assertEqual(encode_event("!", False, 10, 400), b"\x10\x0a\x01\x90")

    def test_event_codes(self) -> None:
        """0-9, *, #, A-D and flash are event codes 0 to 16 in that order."""
        codes = [encode_event(key, False, 10, 0)[0] for key in "0123456789*#ABCD!"]
        self.assertEqual(codes, list(range(17)))

    def test_keys_table(self) -> None:
        """DIGITS is indexed by event code and holds the same keys as the keypad."""
        self.assertEqual(sorted(DIGITS[:16]), sorted(KEYPAD))

    def test_decode_vector(self) -> None:
        """A payload decodes to its fields and names its key."""
        event = decode_event(b"\x0b\x8a\x03\x20")
        self.assertEqual(event, TelephoneEvent(11, True, 10, 800))
        self.assertEqual(event.digit, "#")

    def test_decode_ignores_reserved_bit(self) -> None:
        """The R bit is ignored on receipt (§2.3.3)."""
        self.assertEqual(
            decode_event(b"\x01\x4a\x00\xa0"), TelephoneEvent(1, False, 10, 160)
        )

    def test_decode_non_key_event(self) -> None:
        """An event outside 0-16 decodes but names no key."""
        event = decode_event(b"\x20\x0a\x00\xa0")
        self.assertEqual((event.event, event.digit), (32, None))

    def test_decode_malformed(self) -> None:
        """Payloads that are not exactly four bytes raise ValueError."""
        for payload in (b"", b"\x05", b"\x05\x0a\x00", b"\x05\x0a\x00\xa0\x00"):
            self.assertRaises(ValueError, decode_event, payload)

    def test_encode_rejects_out_of_range(self) -> None:
        """Unknown keys and out-of-range volume or duration raise ValueError."""
        for args in (
            ("E", 10, 0),
            ("55", 10, 0),
            (256, 10, 0),
            ("5", 64, 0),
            ("5", -1, 0),
            ("5", 10, 0x10000),
            ("5", 10, -1),
        ):
            key, volume, duration = args
            self.assertRaises(ValueError, encode_event, key, False, volume, duration)

    @settings(max_examples=200, deadline=None)
    @given(
        st.integers(0, 255),
        st.booleans(),
        st.integers(0, 63),
        st.integers(0, MAX_DURATION),
    )
    def test_round_trip(self, code: int, end: bool, volume: int, duration: int) -> None:
        """Every encodable payload decodes to the same fields."""
        payload = encode_event(code, end, volume, duration)
        self.assertEqual(
            decode_event(payload), TelephoneEvent(code, end, volume, duration)
        )


class RFC4733ReceiverTests(SynchronousTestCase):
    """
    Tests for L{RFC4733Receiver}.
    """

    def test_press_with_end_retransmissions(self) -> None:
        """A press whose end packet arrives three times is one digit."""
        receiver = RFC4733Receiver()
        self.assertEqual(
            press(receiver, 1000, "5", 800), [DigitEvent("5", 100, "rfc4733")]
        )

    def test_digit_reported_on_first_end_packet(self) -> None:
        """The digit comes out with the first end packet, not a later copy."""
        receiver = RFC4733Receiver()
        receiver.feed(1000, True, packet("7", 160))
        first = receiver.feed(1000, False, packet("7", 480, end=True))
        later = receiver.feed(1000, False, packet("7", 480, end=True))
        self.assertEqual((digits(first), later), ("7", []))

    def test_repeated_start_packets(self) -> None:
        """Start packets sent more than once still give one digit."""
        receiver = RFC4733Receiver()
        found = []
        for _ in range(3):
            found += receiver.feed(2000, True, packet("1", 0))
        found += receiver.feed(2000, False, packet("1", 400, end=True))
        self.assertEqual(found, [DigitEvent("1", 50, "rfc4733")])

    def test_lost_start(self) -> None:
        """A press whose first packet seen is an update is still a digit."""
        receiver = RFC4733Receiver()
        found = receiver.feed(5000, False, packet("9", 480))
        found += receiver.feed(5000, False, packet("9", 640, end=True))
        self.assertEqual(found, [DigitEvent("9", 80, "rfc4733")])

    def test_only_end_packet(self) -> None:
        """A lone end packet (all others lost) is a digit."""
        receiver = RFC4733Receiver()
        self.assertEqual(
            receiver.feed(0, False, packet("#", 960, end=True)),
            [DigitEvent("#", 120, "rfc4733")],
        )

    def test_reordered_update_after_end(self) -> None:
        """An update arriving after the end is ignored; the longest duration wins."""
        receiver = RFC4733Receiver()
        found = receiver.feed(100, True, packet("3", 160))
        found += receiver.feed(100, False, packet("3", 800, end=True))
        found += receiver.feed(100, False, packet("3", 480))
        self.assertEqual(found, [DigitEvent("3", 100, "rfc4733")])

    def test_reordered_shorter_end(self) -> None:
        """Updates that overtake each other keep the longest duration."""
        receiver = RFC4733Receiver()
        receiver.feed(100, False, packet("3", 640))
        receiver.feed(100, True, packet("3", 160))
        self.assertEqual(receiver.flush(), [DigitEvent("3", 80, "rfc4733")])

    def test_lost_end_times_out(self) -> None:
        """A press with no end packet ends after going the timeout without updates."""
        receiver = RFC4733Receiver(timeout=4000)
        receiver.feed(10_000, True, packet("4", 160))
        receiver.feed(10_000, False, packet("4", 800))
        self.assertEqual(receiver.flush(10_000 + 800 + 3999), [])
        self.assertEqual(
            receiver.flush(10_000 + 800 + 4000), [DigitEvent("4", 100, "rfc4733")]
        )
        self.assertEqual(receiver.flush(10_000 + 800 + 8000), [])

    def test_default_timeout_is_one_second(self) -> None:
        """Without a timeout argument a press ends one second after its last update."""
        receiver = RFC4733Receiver(clock_rate=16000)
        receiver.feed(0, True, packet("4", 320))
        self.assertEqual(receiver.flush(320 + 15999), [])
        self.assertEqual(digits(receiver.flush(320 + 16000)), "4")

    def test_timed_out_press_ignores_late_packets(self) -> None:
        """Packets of a press that already timed out do not report it again."""
        receiver = RFC4733Receiver(timeout=800)
        receiver.feed(0, True, packet("4", 160))
        receiver.flush(2000)
        self.assertEqual(receiver.feed(0, False, packet("4", 320, end=True)), [])

    def test_flush_without_time(self) -> None:
        """flush() with no timestamp ends the press in progress (stream closing)."""
        receiver = RFC4733Receiver()
        receiver.feed(0, True, packet("0", 160))
        self.assertEqual(receiver.flush(), [DigitEvent("0", 20, "rfc4733")])
        self.assertEqual(receiver.flush(), [])

    def test_lost_end_then_next_press(self) -> None:
        """A new event's packet ends a press whose end packets were lost."""
        receiver = RFC4733Receiver()
        receiver.feed(0, True, packet("1", 160))
        receiver.feed(0, False, packet("1", 640))
        found = receiver.feed(1600, True, packet("2", 160))
        found += receiver.feed(1600, False, packet("2", 480, end=True))
        self.assertEqual(
            found, [DigitEvent("1", 80, "rfc4733"), DigitEvent("2", 60, "rfc4733")]
        )

    def test_two_quick_presses_of_one_key(self) -> None:
        """The same key pressed twice, with distinct timestamps, is two digits."""
        receiver = RFC4733Receiver()
        found = press(receiver, 0, "8", 480) + press(receiver, 800, "8", 480)
        self.assertEqual(digits(found), "88")

    def test_late_packet_of_older_press(self) -> None:
        """A late packet of a finished press, arriving in the next, is ignored."""
        receiver = RFC4733Receiver()
        found = press(receiver, 0, "1", 480)
        found += receiver.feed(1600, True, packet("2", 160))
        found += receiver.feed(0, False, packet("1", 480, end=True))
        found += receiver.feed(1600, False, packet("2", 480, end=True))
        self.assertEqual(digits(found), "12")

    def test_stale_event_never_seen(self) -> None:
        """A packet older than the newest event, of an unseen event, is ignored."""
        receiver = RFC4733Receiver()
        press(receiver, 8000, "1", 480)
        self.assertEqual(receiver.feed(4000, False, packet("6", 480, end=True)), [])

    def test_long_press_with_updates(self) -> None:
        """A key held for 5 s reports its whole duration once."""
        receiver = RFC4733Receiver()
        found = press(receiver, 123, "5", 40_000)
        self.assertEqual(found, [DigitEvent("5", 5000, "rfc4733")])

    def test_long_press_in_segments(self) -> None:
        """A press over 65535 units comes in segments and is one digit (§2.5.1.3)."""
        receiver = RFC4733Receiver()
        found = receiver.feed(1000, True, packet("0", 160))
        for progress in range(400, MAX_DURATION, 400):
            found += receiver.feed(1000, False, packet("0", progress))
        for _ in range(3):
            found += receiver.feed(1000, False, packet("0", MAX_DURATION))
        second = 1000 + MAX_DURATION
        found += receiver.feed(second, False, packet("0", 400))
        found += receiver.feed(second, False, packet("0", 14_465, end=True))
        self.assertEqual(found, [DigitEvent("0", 10_000, "rfc4733")])

    def test_segment_arrives_before_previous_maximum(self) -> None:
        """A segment overtaking its predecessor's last packet still joins it."""
        receiver = RFC4733Receiver()
        receiver.feed(0, True, packet("0", 64_000))
        found = receiver.feed(MAX_DURATION, False, packet("0", 1_000))
        found += receiver.feed(0, False, packet("0", MAX_DURATION))
        found += receiver.feed(MAX_DURATION, False, packet("0", 14_465, end=True))
        self.assertEqual(found, [DigitEvent("0", 10_000, "rfc4733")])

    def test_timestamp_wraps(self) -> None:
        """Events on either side of the 32-bit timestamp wrap keep their order."""
        receiver = RFC4733Receiver()
        found = press(receiver, 2**32 - 400, "1", 320)
        found += press(receiver, 2**32 - 400 + 1600 - 2**32, "2", 320)
        self.assertEqual(digits(found), "12")

    def test_non_key_event_ignored(self) -> None:
        """Telephone events that are not keys (e.g. 32, ANSam) give no digit."""
        receiver = RFC4733Receiver()
        self.assertEqual(receiver.feed(0, True, encode_event(32, True, 10, 800)), [])
        self.assertEqual(receiver.flush(), [])

    def test_malformed_payload_raises_and_changes_nothing(self) -> None:
        """A malformed payload raises ValueError and the press in progress survives."""
        receiver = RFC4733Receiver()
        receiver.feed(0, True, packet("6", 160))
        self.assertRaises(ValueError, receiver.feed, 0, False, b"\x06\x8a")
        found = receiver.feed(0, False, packet("6", 320, end=True))
        self.assertEqual(found, [DigitEvent("6", 40, "rfc4733")])

    def test_invalid_timeout(self) -> None:
        """A timeout that is not positive is refused."""
        self.assertRaises(ValueError, RFC4733Receiver, timeout=0)

    def test_sender_to_receiver(self) -> None:
        """What the sender produces, the receiver reads back as the same press."""
        for clock_rate, duration_ms in (
            (8000, 120),
            (8000, 10_000),
            (16000, 6000),
            (48000, 3000),
        ):
            sender = RFC4733Sender(clock_rate=clock_rate, interval_ms=20)
            receiver = RFC4733Receiver(clock_rate=clock_rate)
            found = []
            for p in sender.packets("B", duration_ms):
                found += receiver.feed(7777 + p.timestamp_offset, p.marker, p.payload)
            self.assertEqual(found, [DigitEvent("B", duration_ms, "rfc4733")])


class RFC4733SenderTests(SynchronousTestCase):
    """
    Tests for L{RFC4733Sender}.
    """

    def test_packet_sequence(self) -> None:
        """A 200 ms press at 50 ms intervals: start, two updates, three ends."""
        packets = RFC4733Sender().packets("5", 200)
        decoded = [decode_event(p.payload) for p in packets]
        self.assertEqual(
            [p.marker for p in packets], [True, False, False, False, False, False]
        )
        self.assertEqual(
            [e.duration for e in decoded], [400, 800, 1200, 1600, 1600, 1600]
        )
        self.assertEqual(
            [e.end for e in decoded], [False, False, False, True, True, True]
        )
        self.assertEqual({e.event for e in decoded}, {5})
        self.assertEqual({e.volume for e in decoded}, {10})
        self.assertEqual({p.timestamp_offset for p in packets}, {0})
        self.assertEqual(
            [p.send_offset for p in packets], [400, 800, 1200, 1600, 2000, 2400]
        )

    def test_ptime_20(self) -> None:
        """At a 20 ms interval each packet's duration grows by 160 units."""
        packets = RFC4733Sender(interval_ms=20).packets("1", 100)
        durations = [decode_event(p.payload).duration for p in packets]
        self.assertEqual(durations, [160, 320, 480, 640, 800, 800, 800])

    def test_short_press(self) -> None:
        """A press shorter than one interval is three end packets, the first marked."""
        packets = RFC4733Sender().packets("*", 30)
        self.assertEqual([p.marker for p in packets], [True, False, False])
        self.assertEqual(
            [decode_event(p.payload) for p in packets],
            [TelephoneEvent(10, True, 10, 240)] * 3,
        )

    def test_wideband_clock(self) -> None:
        """At a 16 kHz telephone-event clock the units are 16 kHz samples."""
        packets = RFC4733Sender(clock_rate=16000).packets("2", 100)
        durations = [decode_event(p.payload).duration for p in packets]
        self.assertEqual(durations, [800, 1600, 1600, 1600])

    def test_long_press_segments(self) -> None:
        """A 10 s press at 8 kHz is sent as two segments (§2.5.1.3)."""
        packets = RFC4733Sender(interval_ms=20).packets("0", 10_000)
        decoded = [decode_event(p.payload) for p in packets]
        self.assertEqual(sum(p.marker for p in packets), 1)
        self.assertEqual({p.timestamp_offset for p in packets}, {0, MAX_DURATION})
        maxima = [
            (p, e)
            for p, e in zip(packets, decoded, strict=True)
            if e.duration == MAX_DURATION
        ]
        self.assertEqual(len(maxima), 3)
        self.assertTrue(all(not e.end and p.timestamp_offset == 0 for p, e in maxima))
        second = [
            e for p, e in zip(packets, decoded, strict=True) if p.timestamp_offset
        ]
        self.assertEqual(second[0].duration, 160)
        self.assertEqual([e.duration for e in second[-3:]], [80_000 - MAX_DURATION] * 3)
        self.assertEqual(sum(e.end for e in decoded), 3)
        offsets = [p.send_offset for p in packets]
        self.assertEqual(offsets, sorted(offsets))

    def test_invalid_arguments(self) -> None:
        """An unknown key, a non-positive duration or a bad volume is refused."""
        self.assertRaises(ValueError, RFC4733Sender().packets, "X", 100)
        self.assertRaises(ValueError, RFC4733Sender().packets, "5", 0)
        self.assertRaises(ValueError, RFC4733Sender, volume=64)
        self.assertRaises(ValueError, RFC4733Sender, interval_ms=0)


class DtmfInfoTests(SynchronousTestCase):
    """
    Tests for L{parse_dtmf_info}.
    """

    def test_dtmf_relay(self) -> None:
        """The usual dtmf-relay body gives the key and its duration in ms."""
        event = parse_dtmf_info(
            "application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"
        )
        self.assertEqual(event, DigitEvent("5", 160, "info"))

    def test_dtmf_relay_tolerant(self) -> None:
        """Case, spaces, bare LF line ends and media type parameters do not matter."""
        bodies: list[bytes | str] = [
            b"signal= #\nduration = 250\n",
            b"  SIGNAL =#  \r\n DURATION=250",
            "Signal=#\r\nDuration=250",
        ]
        for body in bodies:
            event = parse_dtmf_info("Application/DTMF-Relay; charset=utf-8", body)
            self.assertEqual(event, DigitEvent("#", 250, "info"))

    def test_dtmf_relay_missing_duration(self) -> None:
        """Without a usable Duration the default duration is used."""
        for body in (
            b"Signal=A",
            b"Signal=A\r\nDuration=abc",
            b"Signal=A\r\nDuration=-5",
        ):
            self.assertEqual(
                parse_dtmf_info("application/dtmf-relay", body),
                DigitEvent("A", DEFAULT_INFO_DURATION_MS, "info"),
            )

    def test_dtmf_relay_lower_case_and_codes(self) -> None:
        """Lower-case letters and event codes 10/11/16 name *, # and flash."""
        for signal, key in (
            (b"d", "D"),
            (b"10", "*"),
            (b"11", "#"),
            (b"16", "!"),
            (b"!", "!"),
        ):
            event = parse_dtmf_info("application/dtmf-relay", b"Signal=" + signal)
            self.assertEqual(event and event.digit, key)

    def test_application_dtmf(self) -> None:
        """An application/dtmf body is the key alone."""
        self.assertEqual(
            parse_dtmf_info("application/dtmf", b"5"),
            DigitEvent("5", DEFAULT_INFO_DURATION_MS, "info"),
        )
        star = parse_dtmf_info("APPLICATION/DTMF", b" *\r\n")
        self.assertEqual(star, DigitEvent("*", DEFAULT_INFO_DURATION_MS, "info"))

    def test_application_dtmf_relay_style_body(self) -> None:
        """An application/dtmf body written like dtmf-relay is understood too."""
        self.assertEqual(
            parse_dtmf_info("application/dtmf", b"Signal=7\r\nDuration=90"),
            DigitEvent("7", 90, "info"),
        )

    def test_garbage(self) -> None:
        """Bodies with no recognisable key give None."""
        cases = [
            ("application/dtmf-relay", b""),
            ("application/dtmf-relay", b"Signal=Z\r\nDuration=100"),
            ("application/dtmf-relay", b"Signal=55"),
            ("application/dtmf-relay", b"Duration=100"),
            ("application/dtmf-relay", b"5"),
            ("application/dtmf-relay", b"Signal=\xff\xfe"),
            ("application/dtmf-relay", b"Signal=99"),
            ("application/dtmf", b""),
            ("application/dtmf", b"12"),
            ("application/dtmf", b"hello"),
            ("application/dtmf", b"Signal=5" + b" " * 2000),
            ("application/sdp", b"Signal=5"),
            ("text/plain", b"5"),
            ("", b"5"),
        ]
        for content_type, body in cases:
            self.assertIsNone(parse_dtmf_info(content_type, body), (content_type, body))


class GoertzelDetectorTests(SynchronousTestCase):
    """
    Tests for L{GoertzelDetector} on generated tones.
    """

    def test_all_keys_8k(self) -> None:
        """Each key (60 ms tone, 60 ms silence) at 8 kHz is found exactly once."""
        for key in KEYPAD:
            self.assertEqual(digits(detect(dialled(key))), key)

    def test_all_keys_16k(self) -> None:
        """Each of the 16 keys at 16 kHz is found exactly once."""
        for key in KEYPAD:
            self.assertEqual(digits(detect(dialled(key, rate=16000), rate=16000)), key)

    def test_quiet_blocks_are_not_projected(self) -> None:
        """
        Blocks too quiet for any window to reach the level threshold skip
        the projections; a press at the threshold's edge is still found.
        """
        detector = GoertzelDetector()
        classified: list[int] = []
        original = GoertzelDetector._classify

        def counting(self: GoertzelDetector, windows: np.ndarray) -> list[int]:
            classified.append(len(windows))
            return original(self, windows)

        self.patch(GoertzelDetector, "_classify", counting)
        rng = np.random.default_rng(3)
        for _ in range(50):
            detector.feed(pcm(rng.normal(0, 30, 160)))
        self.assertEqual(classified, [])
        # -30 dBm0 is the quietest press reported; 1 dB above it is found.
        quiet = 32768.0 * 10 ** ((-29.0 - 3.14) / 20)
        found = []
        for key in "59":
            press_ = np.concatenate([tone(key, 80, amplitude=quiet), silence(80)])
            for start in range(0, press_.size, 160):
                found += detector.feed(pcm(press_[start : start + 160]))
        self.assertEqual(digits(found + detector.flush()), "59")
        self.assertGreater(len(classified), 0)

    def test_gate_changes_nothing(self) -> None:
        """With or without the quiet gate, the same presses come out of noisy dialling."""
        rng = np.random.default_rng(5)
        audio = dialled("147*2580#369") + rng.normal(0, 200, dialled("147*2580#369").size)
        gated = GoertzelDetector()
        ungated = GoertzelDetector()
        ungated._quiet = -1.0
        results = []
        for detector in (gated, ungated):
            found = []
            samples = pcm(audio)
            for start in range(0, samples.size, 160):
                found += detector.feed(samples[start : start + 160])
            results.append([(e.digit, e.duration_ms) for e in found + detector.flush()])
        self.assertEqual(results[0], results[1])
        self.assertEqual("".join(d for d, _ in results[0]), "147*2580#369")

    def test_sequence(self) -> None:
        """Concatenated tones for "123#" give "123#", from the inband source."""
        found = detect(dialled("123#"))
        self.assertEqual(digits(found), "123#")
        self.assertEqual({event.source for event in found}, {"inband"})

    def test_fast_dialling(self) -> None:
        """The keypad dialled at 40 ms tone, 40 ms pause is found at any alignment."""
        for offset in range(0, 51, 10):
            audio = np.concatenate(
                [silence(offset / 8), dialled("0123456789*#ABCD", 40, 40)]
            )
            self.assertEqual(digits(detect(audio)), "0123456789*#ABCD")

    def test_odd_chunks(self) -> None:
        """Feeding odd-sized blocks (1, 7, 160, 1000 samples) finds the same digits."""
        audio = dialled("*0#")
        for chunk in (1, 7, 160, 1000):
            self.assertEqual(digits(detect(audio, chunk=chunk)), "*0#")

    def test_empty_block(self) -> None:
        """An empty block is accepted and finds nothing."""
        self.assertEqual(GoertzelDetector().feed(np.zeros(0, dtype=np.int16)), [])

    def test_duration(self) -> None:
        """The reported duration is within 10 ms of the tone's."""
        for ms in (40, 100, 250, 1000):
            (event,) = detect(np.concatenate([silence(3), tone("5", ms), silence(100)]))
            self.assertLessEqual(abs(event.duration_ms - ms), 10, ms)

    def test_white_noise_15db(self) -> None:
        """All 16 keys are still found, once each, in white noise at 15 dB SNR."""
        rng = np.random.default_rng(4733)
        for rate in (8000, 16000):
            audio = dialled(KEYPAD, rate=rate)
            # Signal power of two tones is 2 * A**2 / 2.
            noise = rng.normal(0, TONE_AMPLITUDE / 10**0.75, audio.size)
            self.assertEqual(digits(detect(audio + noise, rate=rate)), KEYPAD)

    def test_too_short(self) -> None:
        """A 20 ms tone is not a key press, at any alignment."""
        for offset in range(0, 64, 4):
            audio = np.concatenate([silence(offset / 8), tone("1", 20), silence(100)])
            self.assertEqual(detect(audio), [], offset)

    def test_minimum_duration(self) -> None:
        """A 40 ms tone is a key press, at any alignment."""
        for offset in range(0, 64, 4):
            audio = np.concatenate([silence(offset / 8), tone("1", 40), silence(100)])
            self.assertEqual(digits(detect(audio)), "1", offset)

    def test_interruption_bridged(self) -> None:
        """A 10 ms drop-out inside a tone does not split the press."""
        audio = np.concatenate(
            [tone("6", 60), silence(10), tone("6", 60), silence(100)]
        )
        self.assertEqual(digits(detect(audio)), "6")

    def test_pause_separates(self) -> None:
        """Two tones of one key 40 ms apart are two presses."""
        audio = np.concatenate(
            [tone("6", 60), silence(40), tone("6", 60), silence(100)]
        )
        self.assertEqual(digits(detect(audio)), "66")

    def test_single_tones(self) -> None:
        """A row or column tone alone is not a key."""
        t = np.arange(1600) / 8000
        for frequency in ROWS + COLUMNS:
            audio = TONE_AMPLITUDE * np.sin(2 * np.pi * frequency * t)
            self.assertEqual(detect(audio), [], frequency)

    def test_speech_like_harmonics(self) -> None:
        """Voiced-speech-like harmonic series, pitch 90-300 Hz, give no digits."""
        rng = np.random.default_rng(1)
        t = np.arange(2400) / 8000
        for f0 in np.arange(90.0, 300.0, 3.0):
            harmonics = np.arange(1, int(3800 / f0)) * f0
            # A vowel-like envelope: formants near 700, 1220 and 2600 Hz.
            gain = sum(
                1 / (1 + ((harmonics - f) / b) ** 2)
                for f, b in ((700, 130), (1220, 150), (2600, 200))
            )
            phases = rng.uniform(0, 2 * np.pi, harmonics.size)
            audio = 3000 * (
                (gain + 0.05) * np.sin(2 * np.pi * np.outer(t, harmonics) + phases)
            ).sum(axis=1)
            self.assertEqual(detect(audio), [], f0)

    def test_second_harmonics_rejected(self) -> None:
        """Second harmonics 6 dB down reject a tone pair; 20 dB down they do not."""
        for key in KEYPAD:
            self.assertEqual(detect(tone(key, 100, harmonic_db=-6)), [], key)
            self.assertEqual(digits(detect(tone(key, 100, harmonic_db=-20))), key)

    def test_twist_within_limits(self) -> None:
        """Every key is found with the high tone 6 dB weaker or 2.5 dB stronger."""
        for twist in (-6.0, 2.5):
            audio = np.concatenate(
                [
                    np.concatenate([tone(k, 60, twist_db=twist), silence(60)])
                    for k in KEYPAD
                ]
            )
            self.assertEqual(digits(detect(audio)), KEYPAD, twist)

    def test_twist_beyond_limits(self) -> None:
        """No key is found with the high tone 10 dB weaker or 6 dB stronger."""
        for twist in (-10.0, 6.0):
            audio = np.concatenate(
                [
                    np.concatenate([tone(k, 60, twist_db=twist), silence(60)])
                    for k in KEYPAD
                ]
            )
            self.assertEqual(detect(audio), [], twist)

    def test_frequency_tolerance(self) -> None:
        """Tones 1.5 % off their nominal frequencies are still found."""
        t = np.arange(640) / 8000
        for key in KEYPAD:
            row, column = divmod(KEYPAD.index(key), 4)
            for low, high in ((1.015, 0.985), (0.985, 1.015), (1.015, 1.015)):
                audio = TONE_AMPLITUDE * (
                    np.sin(2 * np.pi * ROWS[row] * low * t)
                    + np.sin(2 * np.pi * COLUMNS[column] * high * t)
                )
                self.assertEqual(digits(detect(audio)), key, (key, low, high))

    def test_level_threshold(self) -> None:
        """Tones at -25 dBm0 are found; at -35 dBm0 they are ignored."""
        full_scale = 32768 * 10 ** (-3.14 / 20)
        loud = full_scale * 10 ** (-25 / 20)
        quiet = full_scale * 10 ** (-35 / 20)
        self.assertEqual(digits(detect(tone("9", 100, amplitude=loud))), "9")
        self.assertEqual(detect(tone("9", 100, amplitude=quiet)), [])

    def test_flush(self) -> None:
        """flush() reports a press still sounding at the end, then forgets it."""
        detector = GoertzelDetector()
        self.assertEqual(detector.feed(pcm(tone("D", 100))), [])
        self.assertEqual(digits(detector.flush()), "D")
        self.assertEqual(detector.flush(), [])

    def test_invalid_sample_rate(self) -> None:
        """A sample rate below 8 kHz is refused."""
        self.assertRaises(ValueError, GoertzelDetector, sample_rate=4000)


class DigitStreamTests(SynchronousTestCase):
    """
    Tests for L{DigitStream}.
    """

    def test_rfc4733_immediately(self) -> None:
        """RFC 4733 digits come out as soon as they are pushed."""
        stream = DigitStream()
        self.assertEqual(
            stream.push(DigitEvent("1", 100, "rfc4733"), 10.0),
            [DigitEvent("1", 100, "rfc4733")],
        )
        self.assertIsNone(stream.next_deadline())

    def test_inband_held_then_released(self) -> None:
        """An in-band digit alone waits for the hold time, then comes out."""
        stream = DigitStream(hold=0.25)
        event = DigitEvent("5", 80, "inband")
        self.assertEqual(stream.push(event, 10.0), [])
        self.assertEqual(stream.next_deadline(), 10.25)
        self.assertEqual(stream.poll(10.2), [])
        self.assertEqual(stream.poll(10.25), [event])
        self.assertEqual(stream.poll(11.0), [])

    def test_rfc4733_then_inband_duplicate(self) -> None:
        """The in-band copy of a press already reported by RFC 4733 is dropped."""
        stream = DigitStream()
        out = stream.push(DigitEvent("5", 100, "rfc4733"), 1.0)
        out += stream.push(DigitEvent("5", 90, "inband"), 1.1)
        out += stream.poll(5.0)
        self.assertEqual(out, [DigitEvent("5", 100, "rfc4733")])

    def test_inband_then_rfc4733_prefers_rfc4733(self) -> None:
        """In-band arriving first is replaced by RFC 4733 within the hold."""
        stream = DigitStream()
        out = stream.push(DigitEvent("5", 90, "inband"), 1.0)
        out += stream.push(DigitEvent("5", 100, "rfc4733"), 1.1)
        out += stream.poll(5.0)
        self.assertEqual(out, [DigitEvent("5", 100, "rfc4733")])

    def test_late_rfc4733_after_release(self) -> None:
        """RFC 4733 arriving after its in-band twin was released is dropped."""
        stream = DigitStream(hold=0.25, window=1.0)
        out = stream.push(DigitEvent("5", 90, "inband"), 1.0)
        out += stream.poll(1.3)
        out += stream.push(DigitEvent("5", 100, "rfc4733"), 1.6)
        self.assertEqual(digits(out), "5")

    def test_both_sources_every_press(self) -> None:
        """A phone sending both for "1551" gives "1551", each digit once."""
        stream = DigitStream()
        out: list[DigitEvent] = []
        now = 0.0
        for key in "1551":
            out += stream.push(DigitEvent(key, 100, "rfc4733"), now)
            out += stream.push(DigitEvent(key, 90, "inband"), now + 0.05)
            now += 0.2
        out += stream.poll(now + 1)
        self.assertEqual(digits(out), "1551")
        self.assertEqual({e.source for e in out}, {"rfc4733"})

    def test_same_source_never_paired(self) -> None:
        """Two quick in-band presses of one key stay two digits."""
        stream = DigitStream()
        stream.push(DigitEvent("9", 60, "inband"), 0.0)
        stream.push(DigitEvent("9", 60, "inband"), 0.12)
        self.assertEqual(digits(stream.poll(1.0)), "99")

    def test_outside_window_not_paired(self) -> None:
        """Two sources' reports of a key further apart than the window are two."""
        stream = DigitStream(window=1.0)
        out = stream.push(DigitEvent("3", 100, "rfc4733"), 0.0)
        out += stream.push(DigitEvent("3", 100, "inband"), 1.5)
        out += stream.poll(3.0)
        self.assertEqual(digits(out), "33")

    def test_order_preserved(self) -> None:
        """A held in-band digit is not overtaken by a later RFC 4733 digit."""
        stream = DigitStream()
        out = stream.push(DigitEvent("4", 60, "inband"), 0.0)
        out += stream.push(DigitEvent("7", 100, "rfc4733"), 0.1)
        self.assertEqual(out, [])
        out += stream.poll(0.25)
        self.assertEqual(digits(out), "47")

    def test_info_preferred_to_inband(self) -> None:
        """SIP INFO is preferred to in-band; it is held in case RFC 4733 follows."""
        stream = DigitStream()
        out = stream.push(DigitEvent("8", 60, "inband"), 0.0)
        out += stream.push(DigitEvent("8", 250, "info"), 0.05)
        self.assertEqual(out, [])
        out += stream.poll(0.3)
        self.assertEqual(out, [DigitEvent("8", 250, "info")])

    def test_detectors_feed_stream(self) -> None:
        """The receiver's and the detector's reports of one press merge into one."""
        receiver = RFC4733Receiver()
        stream = DigitStream()
        out: list[DigitEvent] = []
        for event in press(receiver, 0, "#", 800):
            out += stream.push(event, 0.10)
        for event in detect(tone("#", 100)):
            out += stream.push(event, 0.15)
        out += stream.poll(2.0)
        self.assertEqual(out, [DigitEvent("#", 100, "rfc4733")])

    def test_invalid(self) -> None:
        """Unknown sources and inconsistent settings are refused."""
        self.assertRaises(
            ValueError, DigitStream().push, DigitEvent("1", 1, "carrier-pigeon"), 0.0
        )
        self.assertRaises(ValueError, DigitStream, hold=2.0, window=1.0)
        self.assertRaises(ValueError, DigitStream, preference=("info", "info"))

    def test_three_sources_one_press(self) -> None:
        """One press reported in band, by INFO and by RFC 4733 is one RFC 4733 digit."""
        stream = DigitStream()
        out = stream.push(DigitEvent("2", 60, "inband"), 0.0)
        out += stream.push(DigitEvent("2", 250, "info"), 0.05)
        out += stream.push(DigitEvent("2", 100, "rfc4733"), 0.1)
        out += stream.poll(2.0)
        self.assertEqual(out, [DigitEvent("2", 100, "rfc4733")])


class CallDigitsTests(SynchronousTestCase):
    """call_digits: a call's digit sources follow its SDP."""

    def test_sources(self) -> None:
        """telephone-event negotiated: RFC 4733 and INFO; not negotiated: INFO and in-band."""
        self.assertEqual(call_digits(True).preference, ("rfc4733", "info"))
        self.assertEqual(call_digits(False).preference, ("info", "inband"))
        stream = call_digits(True)
        self.assertRaises(ValueError, stream.push, DigitEvent("5", 160, "inband"), 0.0)
