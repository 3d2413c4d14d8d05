"""
Tests for :mod:`pbx.media.g711`, :mod:`pbx.media.codecs` and
:mod:`pbx.media.resample`.

G.711 is checked against the segment and quantisation tables of ITU-T G.711
(tables 1a and 2a), written here from their segment end points and step
sizes rather than from the bit manipulations the implementation uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from zope.interface.verify import verifyObject

from twisted.trial.unittest import SynchronousTestCase

from pbx.interfaces import ICodec, IDecoder, IEncoder
from pbx.media import codecs, g711
from pbx.media.codecs import (
    G722,
    PCMA,
    PCMU,
    CodecUnavailable,
    Opus,
)
from pbx.media.codecs_table import static_payload_type
from pbx.media.resample import Resampler, transcoder
from pbx.plugin_loader import discover_codecs

ALL_CODES = np.arange(256, dtype=np.uint8)
# Every int16 value, in the order of its bit pattern read as uint16.
ALL_SAMPLES = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16)


# ---------------------------------------------------------------------------
# Signals and measurements


def speech_like(rate: int, seconds: float = 1.0) -> np.ndarray:
    """
    A voiced-speech stand-in: harmonics of a 250 Hz fundamental with a 5 %
    vibrato, up to 3.4 kHz at -3 dB per octave, under a 3 Hz syllable
    envelope, peaking at -6 dBFS.
    """
    t = np.arange(int(rate * seconds)) / rate
    f0 = 250.0 * (1 + 0.05 * np.sin(2 * np.pi * 2 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    k = np.arange(1, int(3400 / (250 * 1.05)) + 1)[:, np.newaxis]
    voice = (np.sin(k * phase) / np.sqrt(k)).sum(axis=0)
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 3 * t))
    return (voice / np.abs(voice).max() * 0.5 * 32767 * envelope).astype(np.int16)


def tone(rate: int, frequency: float = 1000.0, seconds: float = 1.0) -> np.ndarray:
    """A sine at -6 dBFS."""
    t = np.arange(int(rate * seconds)) / rate
    return (16384 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def align(reference: np.ndarray, output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    Cut ``output`` by the delay (0 to a quarter of the signal) at which it
    best matches ``reference``, by cross-correlation.
    """
    n = len(reference)
    spectrum = np.fft.rfft(output.astype(float), 2 * n) * np.conj(
        np.fft.rfft(reference.astype(float), 2 * n)
    )
    lag = int(np.argmax(np.fft.irfft(spectrum)[: n // 4]))
    length = min(n, len(output)) - lag
    return reference[:length].astype(float), output[lag : lag + length].astype(float)


def snr_db(reference: np.ndarray, output: np.ndarray) -> float:
    """Signal-to-noise ratio of ``output`` against ``reference`` after alignment."""
    ref, out = align(reference, output)
    return float(10 * np.log10(np.sum(ref**2) / np.sum((ref - out) ** 2)))


def peak_hz(pcm: np.ndarray, rate: int) -> float:
    """The frequency of the largest FFT bin, skipping the first 100 ms."""
    settled = pcm[rate // 10 :].astype(float)
    spectrum = np.abs(np.fft.rfft(settled * np.hanning(len(settled))))
    return float(np.fft.rfftfreq(len(settled), 1 / rate)[np.argmax(spectrum)])


def frames(pcm: np.ndarray, size: int) -> list[np.ndarray]:
    """``pcm`` cut into frames of ``size`` samples (the last may be short)."""
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def round_trip(codec: ICodec, pcm: np.ndarray) -> np.ndarray:
    """``pcm`` encoded and decoded in 20 ms frames by fresh streams of ``codec``."""
    encoder, decoder = codec.new_encoder(), codec.new_decoder()
    size = codec.sample_rate // 50
    return np.concatenate(
        [decoder.decode(encoder.encode(f)) for f in frames(pcm, size)]
    )


# ---------------------------------------------------------------------------
# G.711 against the standard's tables


def ulaw_segments() -> tuple[np.ndarray, np.ndarray]:
    """
    G.711 table 2a (µ-law) in 14-bit magnitudes: for each of the 128
    intervals (segment s = 0..7, step m = 0..15), the lowest magnitude it holds
    and the decoder output.  Segment s ends at 2**(s+5) - 33 (31, 95, 223,
    ..., 8159) and has steps of 2**(s+1); the output is the interval middle.
    """
    lower, output = [], []
    for s in range(8):
        start, step = (32 << s) - 33, 2 << s
        for m in range(16):
            lower.append(max(start + step * m, 0))
            output.append(start + step * m + step // 2)
    return np.array(lower), np.array(output)


def alaw_segments() -> tuple[np.ndarray, np.ndarray]:
    """
    G.711 table 1a (A-law) in 13-bit magnitudes: segment 0 covers 0..31 and
    segment s >= 1 covers 2**(s+4)..2**(s+5)-1, in 16 steps of 2 (segments 0
    and 1) or 2**s; the output is the interval middle.
    """
    lower, output = [], []
    for s in range(8):
        start, step = (0, 2) if s == 0 else (16 << s, 1 << s)
        for m in range(16):
            lower.append(start + step * m)
            output.append(start + step * m + step // 2)
    return np.array(lower), np.array(output)


def ulaw_reference(samples: np.ndarray) -> bytes:
    """µ-law codes of 16-bit samples: the interval holding each, all bits inverted."""
    lower, _ = ulaw_segments()
    x = samples.astype(np.int64)
    magnitude = np.where(x >= 0, x, ~x) >> 2  # 14 bits; negatives as in G.191
    interval = np.searchsorted(lower, np.minimum(magnitude, 8158), side="right") - 1
    codes = (0x7F - interval) | np.where(x >= 0, 0x80, 0)
    return codes.astype(np.uint8).tobytes()


def alaw_reference(samples: np.ndarray) -> bytes:
    """A-law codes of 16-bit samples: the interval holding each, even bits inverted."""
    lower, _ = alaw_segments()
    x = samples.astype(np.int64)
    magnitude = np.where(x >= 0, x, ~x) >> 3  # 13 bits; negatives as in G.191
    interval = np.searchsorted(lower, magnitude, side="right") - 1
    codes = (interval | np.where(x >= 0, 0x80, 0)) ^ 0x55
    return codes.astype(np.uint8).tobytes()


class G711Tests(SynchronousTestCase):
    """The G.711 tables in :mod:`pbx.media.g711`."""

    def test_ulaw_known_values(self) -> None:
        """µ-law 0xFF and 0x7F decode to 0, 0x00 to -32124 and 0x80 to 32124."""
        decoded = g711.ulaw_decode(bytes([0xFF, 0x7F, 0x00, 0x80]))
        self.assertEqual(decoded.tolist(), [0, 0, -32124, 32124])

    def test_alaw_known_values(self) -> None:
        """A-law 0xD5 decodes to 8, 0x55 to -8, 0xAA to 32256 and 0x2A to -32256."""
        decoded = g711.alaw_decode(bytes([0xD5, 0x55, 0xAA, 0x2A]))
        self.assertEqual(decoded.tolist(), [8, -8, 32256, -32256])

    def test_ulaw_decode_table_follows_the_segments(self) -> None:
        """Every µ-law code decodes to 4 x the middle of its table 2a interval."""
        _, output = ulaw_segments()
        inverted = 0xFF - ALL_CODES.astype(int)
        expected = 4 * output[inverted & 0x7F] * np.where((inverted & 0x80) != 0, -1, 1)
        self.assertEqual(
            g711.ulaw_decode(ALL_CODES.tobytes()).tolist(), expected.tolist()
        )

    def test_alaw_decode_table_follows_the_segments(self) -> None:
        """Every A-law code decodes to 8 x the middle of its table 1a interval."""
        _, output = alaw_segments()
        toggled = ALL_CODES.astype(int) ^ 0x55
        expected = 8 * output[toggled & 0x7F] * np.where((toggled & 0x80) != 0, 1, -1)
        self.assertEqual(
            g711.alaw_decode(ALL_CODES.tobytes()).tolist(), expected.tolist()
        )

    def test_ulaw_encode_finds_the_interval_of_every_sample(self) -> None:
        """All 65536 samples encode to the µ-law interval that holds them."""
        expected = ulaw_reference(ALL_SAMPLES)
        self.assertEqual(g711.ulaw_encode(ALL_SAMPLES), expected)

    def test_alaw_encode_finds_the_interval_of_every_sample(self) -> None:
        """All 65536 samples encode to the A-law interval that holds them."""
        expected = alaw_reference(ALL_SAMPLES)
        self.assertEqual(g711.alaw_encode(ALL_SAMPLES), expected)

    def test_ulaw_round_trip(self) -> None:
        """Every µ-law code survives decode then encode, but negative zero 0x7F becomes 0xFF."""
        again = g711.ulaw_encode(g711.ulaw_decode(ALL_CODES.tobytes()))
        expected = ALL_CODES.copy()
        expected[0x7F] = 0xFF
        self.assertEqual(again, expected.tobytes())

    def test_alaw_round_trip(self) -> None:
        """Every A-law code survives decode then encode."""
        again = g711.alaw_encode(g711.alaw_decode(ALL_CODES.tobytes()))
        self.assertEqual(again, ALL_CODES.tobytes())

    def test_small_negative_samples_are_negative_zero(self) -> None:
        """-1 to -4 encode to µ-law negative zero and -1 to -8 to the smallest negative A-law code."""
        self.assertEqual(g711.ulaw_encode(np.array([-1, -4], np.int16)), b"\x7f\x7f")
        self.assertEqual(g711.alaw_encode(np.array([-1, -8], np.int16)), b"\x55\x55")

    def test_full_scale_clips_to_the_last_interval(self) -> None:
        """Full-scale samples encode to the largest codes of both laws."""
        pcm = np.array([32767, -32768], np.int16)
        self.assertEqual(g711.ulaw_encode(pcm), b"\x80\x00")
        self.assertEqual(g711.alaw_encode(pcm), b"\xaa\x2a")

    def test_strided_input(self) -> None:
        """A non-contiguous int16 view encodes like its contiguous copy."""
        pcm = speech_like(8000)[::2]
        self.assertEqual(g711.ulaw_encode(pcm), g711.ulaw_encode(pcm.copy()))

    def test_rejects_other_dtypes(self) -> None:
        """Encoding a float array raises TypeError rather than guessing a scale."""
        self.assertRaises(TypeError, g711.alaw_encode, np.zeros(160, np.float32))


# ---------------------------------------------------------------------------
# Every codec


if TYPE_CHECKING:
    _TestCase = SynchronousTestCase
else:
    _TestCase = object


class _CodecContract(_TestCase):
    """Tests every codec passes; mixed into one TestCase per codec."""

    codec: ICodec
    min_snr_db: float

    def test_provides_interfaces(self) -> None:
        """The codec, its encoder and its decoder provide their interfaces."""
        self.assertTrue(verifyObject(ICodec, self.codec))
        self.assertTrue(verifyObject(IEncoder, self.codec.new_encoder()))
        self.assertTrue(verifyObject(IDecoder, self.codec.new_decoder()))

    def test_round_trip_snr(self) -> None:
        """Speech-like audio comes back above the codec's SNR threshold."""
        pcm = speech_like(self.codec.sample_rate)
        self.assertGreater(snr_db(pcm, round_trip(self.codec, pcm)), self.min_snr_db)

    def test_frame_length(self) -> None:
        """Every decoded 20 ms frame has sample_rate / 50 int16 samples."""
        size = self.codec.sample_rate // 50
        encoder, decoder = self.codec.new_encoder(), self.codec.new_decoder()
        decoded = [
            decoder.decode(encoder.encode(f))
            for f in frames(tone(self.codec.sample_rate), size)
        ]
        self.assertEqual(
            {(len(f), f.dtype) for f in decoded}, {(size, np.dtype(np.int16))}
        )

    def test_conceal_length(self) -> None:
        """conceal(n) returns n int16 samples, before and after a frame was decoded."""
        size = self.codec.sample_rate // 50
        decoder = self.codec.new_decoder()
        lengths = [len(decoder.conceal(size))]
        decoder.decode(
            self.codec.new_encoder().encode(tone(self.codec.sample_rate)[:size])
        )
        for n in (size, 2 * size, 10):
            pcm = decoder.conceal(n)
            lengths.append(len(pcm))
            self.assertEqual(pcm.dtype, np.int16)
        self.assertEqual(lengths, [size, size, 2 * size, 10])

    def test_conceal_rejects_negative_length(self) -> None:
        """conceal() of a negative length raises ValueError and of zero returns nothing."""
        decoder = self.codec.new_decoder()
        self.assertRaises(ValueError, decoder.conceal, -1)
        self.assertEqual(len(decoder.conceal(0)), 0)

    def test_streams_are_independent(self) -> None:
        """Two interleaved streams encode exactly as each would alone."""
        size = self.codec.sample_rate // 50
        a, b = (
            speech_like(self.codec.sample_rate, 0.2),
            tone(self.codec.sample_rate, 700, 0.2),
        )
        solo = self.codec.new_encoder()
        alone = [solo.encode(f) for f in frames(a, size)]
        first, second = self.codec.new_encoder(), self.codec.new_encoder()
        interleaved = []
        for fa, fb in zip(frames(a, size), frames(b, size), strict=True):
            interleaved.append(first.encode(fa))
            second.encode(fb)
        self.assertEqual(interleaved, alone)

    def test_rejects_float_pcm(self) -> None:
        """Encoding float samples raises TypeError."""
        size = self.codec.sample_rate // 50
        self.assertRaises(TypeError, self.codec.new_encoder().encode, np.zeros(size))

    def test_static_payload_type_agrees_with_rfc_3551(self) -> None:
        """The codec's payload type is the one RFC 3551 assigns its rtpmap, or None."""
        codec = self.codec
        expected = static_payload_type(codec.name, codec.clock_rate, codec.channels)
        self.assertEqual(codec.payload_type, expected)


class PCMUTests(_CodecContract, SynchronousTestCase):
    """G.711 µ-law as a codec."""

    codec = PCMU()
    min_snr_db = 30.0

    def test_one_octet_per_sample(self) -> None:
        """A 20 ms frame is 160 octets, the table encoding of its samples."""
        pcm = tone(8000)[:160]
        self.assertEqual(self.codec.new_encoder().encode(pcm), g711.ulaw_encode(pcm))

    def test_conceal_repeats_then_fades_to_silence(self) -> None:
        """Concealment repeats the last frame for 10 ms, then fades to silence at 60 ms."""
        decoder = self.codec.new_decoder()
        last = decoder.decode(self.codec.new_encoder().encode(tone(8000)[:160]))
        first = decoder.conceal(160)
        self.assertEqual(first[:80].tolist(), last[:80].tolist())
        self.assertLess(np.abs(first[120:]).max(), np.abs(last[120:]).max())
        second, third = decoder.conceal(160), decoder.conceal(160)
        self.assertGreater(np.abs(second).max(), np.abs(third).max())
        self.assertGreater(np.abs(third).max(), 0)
        self.assertEqual(np.abs(decoder.conceal(160)).max(), 0)

    def test_good_frame_ends_the_fade(self) -> None:
        """After a decoded frame, concealment starts again at full level."""
        decoder, encoder = self.codec.new_decoder(), self.codec.new_encoder()
        decoder.decode(encoder.encode(tone(8000)[:160]))
        for _ in range(4):
            decoder.conceal(160)
        last = decoder.decode(encoder.encode(tone(8000)[160:320]))
        self.assertEqual(decoder.conceal(80).tolist(), last[:80].tolist())


class PCMATests(_CodecContract, SynchronousTestCase):
    """G.711 A-law as a codec."""

    codec = PCMA()
    min_snr_db = 30.0


class G722Tests(_CodecContract, SynchronousTestCase):
    """G.722 at 64 kbit/s."""

    codec = G722()
    min_snr_db = 20.0

    def test_rtpmap(self) -> None:
        """G.722 samples at 16 kHz but announces an 8000 Hz RTP clock."""
        self.assertEqual((self.codec.sample_rate, self.codec.clock_rate), (16000, 8000))

    def test_two_samples_per_octet(self) -> None:
        """320 samples (20 ms) encode to 160 octets."""
        self.assertEqual(len(self.codec.new_encoder().encode(tone(16000)[:320])), 160)

    def test_rejects_odd_length(self) -> None:
        """An odd number of samples raises ValueError."""
        self.assertRaises(
            ValueError, self.codec.new_encoder().encode, tone(16000)[:321]
        )


class OpusTests(_CodecContract, SynchronousTestCase):
    """Opus through opuslib-next-bundled."""

    codec = Opus()
    min_snr_db = 10.0

    def test_rtpmap_and_fmtp(self) -> None:
        """Opus is dynamic, opus/48000/2, and offers in-band FEC."""
        codec = self.codec
        self.assertEqual(
            (codec.name, codec.clock_rate, codec.channels, codec.payload_type),
            ("opus", 48000, 2, None),
        )
        self.assertTrue("useinbandfec=1" in codec.fmtp.split(";"))

    def test_encoder_has_fec_on(self) -> None:
        """The encoder runs libopus in-band FEC tuned for some loss."""
        encoder = self.codec.new_encoder()._encoder
        self.assertEqual((encoder.inband_fec, encoder.packet_loss_perc), (1, 10))

    def test_recover_uses_fec(self) -> None:
        """recover() rebuilds a lost frame from the next packet far better than PLC."""
        pcm = speech_like(48000)
        encoder = self.codec.new_encoder()
        packets = [encoder.encode(f) for f in frames(pcm, 960)]
        lost = 25
        results = {}
        for how in ("fec", "plc"):
            decoder = self.codec.new_decoder()
            out = []
            for k, packet in enumerate(packets):
                if k != lost:
                    out.append(decoder.decode(packet))
                elif how == "fec":
                    out.append(decoder.recover(packets[k + 1], 960))
                else:
                    out.append(decoder.conceal(960))
            ref, got = align(pcm, np.concatenate(out))
            span = slice(lost * 960, (lost + 1) * 960)
            noise = np.sum((ref[span] - got[span]) ** 2)
            results[how] = 10 * np.log10(np.sum(ref[span] ** 2) / noise)
        self.assertGreater(results["fec"], 5.0)
        self.assertGreater(results["fec"], results["plc"] + 3.0)

    def test_decodes_stereo_packets_to_mono(self) -> None:
        """A stereo packet from a peer decodes to one 48 kHz channel."""
        import opuslib_next

        stereo = np.repeat(tone(48000)[:960], 2)
        packet = opuslib_next.Encoder(48000, 2, "voip").encode(stereo.tobytes(), 960)
        self.assertEqual(len(self.codec.new_decoder().decode(packet)), 960)

    def test_rejects_bad_frame_length(self) -> None:
        """Encoding 1000 samples, not an Opus frame length, raises ValueError."""
        self.assertRaises(
            ValueError, self.codec.new_encoder().encode, tone(48000)[:1000]
        )

    def test_rejects_bad_packet(self) -> None:
        """A malformed packet raises ValueError."""
        decoder = self.codec.new_decoder()
        self.assertRaises(ValueError, decoder.decode, b"\x03")
        self.assertRaises(ValueError, decoder.decode, b"")

    def test_bitrate(self) -> None:
        """A configured bitrate reaches libopus."""
        self.assertEqual(Opus(bitrate=24000).new_encoder()._encoder.bitrate, 24000)

    def test_rejects_bad_settings(self) -> None:
        """A bitrate or loss percentage libopus cannot take raises ValueError at construction."""
        self.assertRaises(ValueError, Opus, bitrate=1000)
        self.assertRaises(ValueError, Opus, expected_loss=101)


# ---------------------------------------------------------------------------
# Registry


class AvailableCodecsTests(SynchronousTestCase):
    """:func:`pbx.plugin_loader.discover_codecs` and the dropin :mod:`pbx.plugins.codecs`."""

    def test_finds_every_codec(self) -> None:
        """PCMU, PCMA, G722 and opus are found, keyed by lower-cased name."""
        found = discover_codecs()
        self.assertEqual(sorted(found), ["g722", "opus", "pcma", "pcmu"])
        self.assertEqual(
            {k: v.name.lower() for k, v in found.items()}, {k: k for k in found}
        )

    def test_plugins_provide_icodec(self) -> None:
        """Every codec found provides ICodec."""
        for codec in discover_codecs().values():
            self.assertTrue(verifyObject(ICodec, codec))

    def test_unavailable_codec_is_left_out(self) -> None:
        """A codec whose library does not load is left out, not fatal."""

        def missing(self: Opus) -> None:
            raise CodecUnavailable("opuslib-next-bundled is not usable here")

        self.patch(Opus, "probe", missing)
        self.assertEqual(sorted(discover_codecs()), ["g722", "pcma", "pcmu"])

    def test_missing_library_error_names_the_package(self) -> None:
        """Using a codec whose module cannot be imported names the package to install."""
        error = self.assertRaises(
            CodecUnavailable, codecs._native, "no_such_module_pbx", "no-such-package"
        )
        self.assertIn("no-such-package", str(error))


# ---------------------------------------------------------------------------
# Resampling and transcoding


class ResamplerTests(SynchronousTestCase):
    """:class:`pbx.media.resample.Resampler`."""

    def test_tone_survives_8k_16k_8k(self) -> None:
        """A 1 kHz tone resampled 8 kHz -> 16 kHz -> 8 kHz keeps its frequency."""
        up, down = Resampler(8000, 16000), Resampler(16000, 8000)
        out = np.concatenate([down(up(f)) for f in frames(tone(8000), 160)])
        self.assertEqual(len(out), 8000)
        self.assertLess(abs(peak_hz(out, 8000) - 1000), 5)

    def test_level_is_kept(self) -> None:
        """A 1 kHz tone comes out of 8 kHz -> 48 kHz within 0.5 dB of its level."""
        resampler = Resampler(8000, 48000)
        out = np.concatenate([resampler(f) for f in frames(tone(8000), 160)])
        level = 20 * np.log10(np.std(out[4800:].astype(float)) / (16384 / np.sqrt(2.0)))
        self.assertLess(abs(level), 0.5)

    def test_frame_in_frame_out(self) -> None:
        """Every 20 ms frame gives exactly 20 ms at the new rate, for every codec rate pair."""
        for source in (8000, 16000, 48000):
            for target in (8000, 16000, 48000):
                resampler = Resampler(source, target)
                lengths = {
                    len(resampler(f))
                    for f in frames(tone(source, 440, 0.5), source // 50)
                }
                self.assertEqual(lengths, {target // 50}, (source, target))

    def test_odd_chunks_carry_fractions(self) -> None:
        """Fed in 7-sample chunks, the output total is always the input total scaled."""
        resampler = Resampler(48000, 16000)
        total_in = total_out = 0
        for chunk in frames(tone(48000, 440, 0.1), 7):
            total_in += len(chunk)
            total_out += len(resampler(chunk))
            self.assertEqual(total_out, total_in // 3)

    def test_same_rate_passes_through(self) -> None:
        """A resampler between equal rates returns its input unchanged."""
        pcm = tone(8000)[:160]
        self.assertIs(Resampler(8000, 8000)(pcm), pcm)

    def test_rejects_float_pcm(self) -> None:
        """Resampling a float array raises TypeError."""
        self.assertRaises(TypeError, Resampler(8000, 16000), np.zeros(160))

    def test_rejects_bad_rates(self) -> None:
        """A rate of zero raises ValueError."""
        self.assertRaises(ValueError, Resampler, 0, 8000)


class TranscoderTests(SynchronousTestCase):
    """:func:`pbx.media.resample.transcoder`."""

    def transcode_tone(self, source: ICodec, target: ICodec) -> np.ndarray:
        """A 1 kHz tone through source -> transcoder -> target decoder."""
        encoder, convert, decoder = (
            source.new_encoder(),
            transcoder(source, target),
            target.new_decoder(),
        )
        payloads = [
            convert(encoder.encode(f))
            for f in frames(tone(source.sample_rate), source.sample_rate // 50)
        ]
        return np.concatenate([decoder.decode(p) for p in payloads])

    def test_pcmu_to_pcma_keeps_a_tone(self) -> None:
        """PCMU -> PCMA keeps a 1 kHz tone."""
        out = self.transcode_tone(PCMU(), PCMA())
        self.assertEqual(len(out), 8000)
        self.assertLess(abs(peak_hz(out, 8000) - 1000), 5)

    def test_pcmu_to_g722_keeps_a_tone(self) -> None:
        """PCMU -> G.722 keeps a 1 kHz tone, now at 16 kHz."""
        out = self.transcode_tone(PCMU(), G722())
        self.assertEqual(len(out), 16000)
        self.assertLess(abs(peak_hz(out, 16000) - 1000), 5)

    def test_g722_to_opus_keeps_a_tone(self) -> None:
        """G.722 -> Opus keeps a 1 kHz tone, now at 48 kHz."""
        out = self.transcode_tone(G722(), Opus())
        self.assertEqual(len(out), 48000)
        self.assertLess(abs(peak_hz(out, 48000) - 1000), 5)

    def test_short_payloads_are_buffered_to_frames(self) -> None:
        """10 ms PCMU payloads give a 20 ms G.722 payload every second call."""
        encoder, convert = PCMU().new_encoder(), transcoder(PCMU(), G722())
        sizes = [
            len(convert(encoder.encode(f))) for f in frames(tone(8000, 1000, 0.08), 80)
        ]
        self.assertEqual(sizes, [0, 160, 0, 160, 0, 160, 0, 160])

    def test_conceal_gives_a_frame(self) -> None:
        """A lost source packet still gives one destination frame."""
        encoder, convert = PCMA().new_encoder(), transcoder(PCMA(), PCMU())
        convert(encoder.encode(tone(8000)[:160]))
        self.assertEqual(len(convert.conceal(160)), 160)

    def test_bad_payload_raises_value_error(self) -> None:
        """A payload the source cannot decode raises ValueError."""
        self.assertRaises(ValueError, transcoder(Opus(), PCMU()), b"\x03")
