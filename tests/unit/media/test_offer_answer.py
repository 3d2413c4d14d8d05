"""
Tests for L{pbx.media.offer_answer} and L{pbx.media.codecs_table}: RFC 3264
offer/answer for a B2BUA anchoring media on plain RTP.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.trial.unittest import SynchronousTestCase

from pbx.media.codecs_table import (
    STATIC_PAYLOAD_TYPES,
    CodecSpec,
    codec_key,
    static_codec,
    static_payload_type,
)
from pbx.media.offer_answer import (
    NotAcceptable,
    answer_direction,
    bump_version,
    make_answer,
    make_offer,
    negotiated,
    offered_codecs,
    rewrite_offer,
)
from pbx.media.sdp import (
    Connection,
    SDPError,
    SessionDescription,
    direction,
    is_hold,
    parse_sdp,
)

LOCAL = "203.0.113.10"
PCMU, PCMA, G722, G729 = (CodecSpec.parse(n) for n in ("PCMU", "PCMA", "G722", "G729"))
OPUS = CodecSpec.parse("opus")
DTMF = CodecSpec("telephone-event", 8000, fmtp="0-16")


def sdp(*lines: str) -> bytes:
    """Join lines into a CRLF-terminated SDP body."""
    return "".join(line + "\r\n" for line in lines).encode("utf-8")


def offer(
    *media_lines: str, connection: str = "192.0.2.5", head: tuple[str, ...] = ()
) -> SessionDescription:
    """Parse an offer from 192.0.2.5 with the given session attributes and m= sections."""
    return parse_sdp(sdp("v=0", "o=alice 2890844526 2890844526 IN IP4 192.0.2.5", "s=-",
                         f"c=IN IP4 {connection}", "t=0 0", *head, *media_lines))  # fmt: skip


def answer(
    offered: SessionDescription,
    supported: list[CodecSpec],
    ports: list[int] | None = None,
    **kw: object,
) -> SessionDescription:
    """make_answer with our address, port 40000 per stream and version 1."""
    return make_answer(offered, supported=supported, local_address=LOCAL,
                       ports=ports if ports is not None else [40000] * len(offered.media),
                       session_id=99, version=1, **kw)  # type: ignore[arg-type]  # fmt: skip


AUDIO = ("m=audio 49170 RTP/AVP 0 8 9 96 101", "a=rtpmap:96 opus/48000/2",
         "a=fmtp:96 useinbandfec=1", "a=rtpmap:101 telephone-event/8000",
         "a=fmtp:101 0-15", "a=ptime:20")  # fmt: skip
VIDEO = ("m=video 51372 RTP/AVP 97", "a=rtpmap:97 H264/90000")
WEBRTC_AUDIO = ("m=audio 54321 UDP/TLS/RTP/SAVPF 111 0", "a=rtpmap:111 opus/48000/2",
                "a=ice-ufrag:EsAw", "a=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y",
                "a=fingerprint:sha-256 D2:FA:0E:C3", "a=setup:actpass", "a=rtcp-mux")  # fmt: skip
# Asterisk with ICE and optional SDES on a plain RTP/AVP stream.
AVP_WITH_ICE = ("m=audio 18234 RTP/AVP 0 8 101", "a=rtpmap:101 telephone-event/8000",
                "a=fmtp:101 0-16", "a=rtcp-fb:0 nack", "a=rtcp-fb:8 nack", "a=rtcp:18235",
                "a=ice-ufrag:6c1f0e3a", "a=ice-pwd:5e9a0c3b6d1f2e4a7b8c9d0e",
                "a=candidate:Hcb00718 1 UDP 2130706431 203.0.113.5 18234 typ host",
                "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9",
                "a=rtcp-mux", "a=sendrecv")  # fmt: skip


def names(session: SessionDescription, index: int = 0) -> list[str]:
    """Attribute names of one stream."""
    return [name for name, _ in session.media[index].attributes]


class CodecTableTests(SynchronousTestCase):
    """The static table of RFC 3551 and codec identity."""

    def test_static_types(self) -> None:
        """The common static payload types have their RFC 3551 codecs."""
        self.assertEqual(static_codec(0), ("PCMU", 8000, 1))
        self.assertEqual(static_codec(8), ("PCMA", 8000, 1))
        self.assertEqual(static_codec(18), ("G729", 8000, 1))
        self.assertEqual(static_codec(3), ("GSM", 8000, 1))
        self.assertEqual(static_codec(4), ("G723", 8000, 1))
        self.assertEqual(static_codec(13), ("CN", 8000, 1))
        self.assertIsNone(static_codec(2))
        self.assertIsNone(static_codec(96))

    def test_g722_clock(self) -> None:
        """G722 has an 8000 Hz RTP clock though it samples at 16 kHz (RFC 3551 §4.5.2)."""
        self.assertEqual(STATIC_PAYLOAD_TYPES[9], ("G722", 8000, 1))
        self.assertEqual(G722.clock_rate, 8000)

    def test_codec_key_case(self) -> None:
        """Encoding names compare case-insensitively; channels default to 1."""
        self.assertEqual(codec_key("pcmu", 8000), codec_key("PCMU", 8000, None))
        self.assertNotEqual(codec_key("speex", 8000), codec_key("speex", 16000))
        self.assertEqual(codec_key("OPUS", 48000, 1), ("opus", 48000, 2))

    def test_static_payload_type(self) -> None:
        """A codec's static payload type is found by key."""
        self.assertEqual(static_payload_type("pcma", 8000), 8)
        self.assertEqual(PCMU.static_payload_type, 0)
        self.assertIsNone(OPUS.static_payload_type)

    def test_parse(self) -> None:
        """CodecSpec.parse completes bare names and reads NAME/RATE/CHANNELS."""
        self.assertEqual(OPUS, CodecSpec("opus", 48000, 2))
        self.assertEqual(
            CodecSpec.parse("telephone-event"), CodecSpec("telephone-event", 8000)
        )
        self.assertEqual(CodecSpec.parse("L16/16000/2"), CodecSpec("L16", 16000, 2))
        self.assertEqual(OPUS.rtpmap_value(), "opus/48000/2")
        self.assertEqual(PCMU.rtpmap_value(), "PCMU/8000")

    def test_parse_errors(self) -> None:
        """Unknown bare names and malformed specs raise ValueError."""
        for text in ("nocodec", "PCMU/fast", "a/1/2/3", "/8000", ""):
            self.assertRaises(ValueError, CodecSpec.parse, text)

    def test_offered_codecs(self) -> None:
        """A stream's codecs come from rtpmap or the static table; unknown PTs are skipped."""
        media = offer("m=audio 4000 RTP/AVP 0 96 97", "a=rtpmap:96 opus/48000/2").media[
            0
        ]
        self.assertEqual(offered_codecs(media),
                         [CodecSpec("PCMU", 8000, payload_type=0),
                          CodecSpec("opus", 48000, 2, payload_type=96)])  # fmt: skip


class MakeAnswerTests(SynchronousTestCase):
    """make_answer: RFC 3264 §6 answers from our relay."""

    def test_offerer_order(self) -> None:
        """Common codecs follow the offer's order by default (§6.1)."""
        result = answer(offer(*AUDIO), [G722, PCMA, PCMU])
        self.assertEqual(result.media[0].formats, ("0", "8", "9"))

    def test_answerer_order(self) -> None:
        """With prefer='answerer' common codecs follow our order."""
        result = answer(offer(*AUDIO), [G722, PCMA, PCMU], prefer="answerer")
        self.assertEqual(result.media[0].formats, ("9", "8", "0"))

    def test_dynamic_payload_type_kept(self) -> None:
        """A dynamic codec keeps the offer's payload type (§6.1) and its fmtp."""
        result = answer(offer(*AUDIO), [CodecSpec("OPUS", 48000, 2, payload_type=120)])
        media = result.media[0]
        self.assertEqual(media.formats, ("96",))
        self.assertEqual(media.rtpmap, {"96": ("opus", 48000, 2)})
        self.assertEqual(media.fmtp, {"96": "useinbandfec=1"})

    def test_telephone_event(self) -> None:
        """telephone-event supported on both sides is kept, last, with our fmtp."""
        media = answer(offer(*AUDIO), [DTMF, PCMA]).media[0]
        self.assertEqual(media.formats, ("8", "101"))
        self.assertEqual(media.fmtp["101"], "0-16")
        self.assertEqual(media.rtpmap["101"], ("telephone-event", 8000, 1))

    def test_telephone_event_offer_fmtp(self) -> None:
        """Without an fmtp of ours, the offer's telephone-event fmtp is echoed."""
        media = answer(offer(*AUDIO), [PCMA, CodecSpec.parse("telephone-event")]).media[
            0
        ]
        self.assertEqual(media.fmtp["101"], "0-15")

    def test_telephone_event_unsupported(self) -> None:
        """telephone-event we do not support is left out."""
        self.assertEqual(answer(offer(*AUDIO), [PCMA]).media[0].formats, ("8",))

    def test_auxiliary_only_rejected(self) -> None:
        """telephone-event alone is no common codec: the stream is refused."""
        with self.assertRaises(NotAcceptable) as caught:
            answer(offer(*AUDIO), [DTMF, G729])
        self.assertIn("no common codec", str(caught.exception))

    def test_no_common_codec_port_zero(self) -> None:
        """A stream without a common codec gets port 0 and the offer's formats."""
        result = answer(offer(*AUDIO, "m=audio 49172 RTP/AVP 18"), [PCMU])
        rejected = result.media[1]
        self.assertEqual(
            (rejected.port, rejected.formats, rejected.attributes), (0, ("18",), ())
        )
        self.assertEqual(result.media[0].port, 40000)

    def test_all_rejected(self) -> None:
        """NotAcceptable (an SDPError) names each stream's reason when all are refused."""
        with self.assertRaises(NotAcceptable) as caught:
            answer(offer("m=audio 4000 RTP/AVP 18", *VIDEO), [PCMU])
        message = str(caught.exception)
        self.assertIn("stream 1 (audio): no common codec", message)
        self.assertIn("stream 2 (video): media type video not supported", message)
        self.assertIsInstance(caught.exception, SDPError)

    def test_video_rejected_audio_accepted(self) -> None:
        """Video is refused (port 0) while audio is answered, in the offer's order."""
        result = answer(offer(*VIDEO, *AUDIO), [PCMU, CodecSpec("H264", 90000)])
        self.assertEqual(
            [(m.media, m.port) for m in result.media], [("video", 0), ("audio", 40000)]
        )
        self.assertEqual(result.media[0].formats, ("97",))

    def test_video_allowed(self) -> None:
        """With video among media_types, a common video codec is answered."""
        result = answer(
            offer(*VIDEO), [CodecSpec("h264", 90000)], media_types=("audio", "video")
        )
        self.assertEqual(result.media[0].formats, ("97",))

    def test_savp_only_rejected(self) -> None:
        """An SRTP-only offer is not acceptable: we anchor plain RTP."""
        with self.assertRaises(NotAcceptable) as caught:
            answer(
                offer(
                    "m=audio 4000 RTP/SAVP 0",
                    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x",
                ),
                [PCMU],
            )
        self.assertIn("RTP/SAVP not supported", str(caught.exception))

    def test_webrtc_rejected(self) -> None:
        """A DTLS-SRTP browser offer is not acceptable."""
        self.assertRaises(NotAcceptable, answer, offer(*WEBRTC_AUDIO), [PCMU, OPUS])

    def test_savp_besides_avp(self) -> None:
        """Of a SAVP and an AVP copy of a stream, the plain one is taken."""
        result = answer(
            offer("m=audio 4000 RTP/SAVP 0", "m=audio 4002 RTP/AVP 0"), [PCMU]
        )
        self.assertEqual([m.port for m in result.media], [0, 40000])

    def test_crypto_and_ice_stripped(self) -> None:
        """SDES keys, ICE, rtcp-mux and a=rtcp of an AVP offer are not answered."""
        result = answer(offer(*AVP_WITH_ICE), [PCMU, DTMF])
        self.assertEqual(names(result), ["rtpmap", "rtpmap", "fmtp", "sendrecv"])
        self.assertNotIn(b"rtcp-mux", result.to_bytes())

    def test_ptime_copied(self) -> None:
        """The offer's ptime is copied; without one the answer has none."""
        self.assertEqual(answer(offer(*AUDIO), [PCMU]).media[0].ptime, 20)
        self.assertIsNone(
            answer(offer("m=audio 4000 RTP/AVP 0"), [PCMU]).media[0].ptime
        )

    def test_direction_mapping(self) -> None:
        """sendonly gets recvonly, recvonly sendonly, inactive inactive, sendrecv sendrecv."""
        for offered, expected in [("sendonly", "recvonly"), ("recvonly", "sendonly"),
                                  ("inactive", "inactive"), ("sendrecv", "sendrecv")]:  # fmt: skip
            result = answer(offer("m=audio 4000 RTP/AVP 0", f"a={offered}"), [PCMU])
            self.assertEqual(direction(result, result.media[0]), expected)

    def test_session_level_direction(self) -> None:
        """A session-level a=sendonly in the offer is answered recvonly."""
        result = answer(offer("m=audio 4000 RTP/AVP 0", head=("a=sendonly",)), [PCMU])
        self.assertEqual(result.media[0].own_direction(), "recvonly")

    def test_local_direction(self) -> None:
        """Our wish limits the answer: sendonly wanted to a sendrecv offer."""
        result = answer(
            offer("m=audio 4000 RTP/AVP 0"), [PCMU], local_direction="sendonly"
        )
        self.assertEqual(result.media[0].own_direction(), "sendonly")
        self.assertEqual(answer_direction("sendonly", "sendonly"), "inactive")

    def test_null_connection_hold(self) -> None:
        """A c=0.0.0.0 offer is answered recvonly with our own address."""
        result = answer(offer("m=audio 4000 RTP/AVP 0", connection="0.0.0.0"), [PCMU])
        self.assertEqual(result.media[0].own_direction(), "recvonly")
        self.assertEqual(result.connection, Connection("IN", "IP4", LOCAL))
        held = answer(
            offer("m=audio 4000 RTP/AVP 0", "a=recvonly", connection="0.0.0.0"), [PCMU]
        )
        self.assertEqual(held.media[0].own_direction(), "inactive")

    def test_disabled_stream_stays_disabled(self) -> None:
        """A stream the offer disabled (port 0) is answered with port 0."""
        result = answer(offer("m=audio 0 RTP/AVP 0", *AUDIO), [PCMU])
        self.assertEqual([m.port for m in result.media], [0, 40000])

    def test_local_port_zero(self) -> None:
        """Port 0 in ports refuses that stream."""
        result = answer(
            offer(*AUDIO, "m=audio 4002 RTP/AVP 0"), [PCMU], ports=[0, 40002]
        )
        self.assertEqual([m.port for m in result.media], [0, 40002])

    def test_origin_and_connection(self) -> None:
        """The answer's o= and c= are ours, IPv6 when our address is."""
        result = make_answer(offer(*AUDIO), supported=[PCMU], local_address="2001:db8::10",
                             ports=[40000], session_id=12345, version=3)  # fmt: skip
        self.assertEqual(
            (result.origin.sess_id, result.origin.sess_version), ("12345", 3)
        )
        self.assertEqual(result.connection, Connection("IN", "IP6", "2001:db8::10"))
        self.assertEqual(result.origin.address, "2001:db8::10")

    def test_answer_parses(self) -> None:
        """The answer's bytes parse back to the same description."""
        result = answer(offer(*AUDIO, *VIDEO), [OPUS, PCMU, DTMF])
        self.assertEqual(parse_sdp(result.to_bytes()), result)

    def test_ports_mismatch(self) -> None:
        """A ports list of the wrong length is a programming error (ValueError)."""
        self.assertRaises(ValueError, answer, offer(*AUDIO), [PCMU], ports=[1, 2])

    def test_no_media(self) -> None:
        """An offer without streams is not acceptable to a PBX."""
        self.assertRaises(NotAcceptable, answer, offer(), [PCMU], ports=[])


class RewriteOfferTests(SynchronousTestCase):
    """rewrite_offer: the offer relayed to the other leg."""

    def rewrite(self, offered: SessionDescription, **kw: object) -> SessionDescription:
        """rewrite_offer with our address, port 30000 per stream, version 1."""
        return rewrite_offer(offered, local_address=LOCAL, ports=[30000] * len(offered.media),
                             session_id=77, version=1, **kw)  # type: ignore[arg-type]  # fmt: skip

    def test_address_and_ports(self) -> None:
        """Our address and port replace the offerer's; formats and PTs are unchanged."""
        result = self.rewrite(offer(*AUDIO))
        self.assertEqual(result.connection, Connection("IN", "IP4", LOCAL))
        self.assertEqual(result.media[0].port, 30000)
        self.assertEqual(result.media[0].formats, ("0", "8", "9", "96", "101"))
        self.assertEqual(result.media[0].fmtp["96"], "useinbandfec=1")
        self.assertEqual(result.media[0].ptime, 20)
        self.assertEqual(result.origin.username, "-")

    def test_codec_filter(self) -> None:
        """Only allowed codecs are offered; their rtpmap/fmtp/rtcp-fb go with them."""
        result = self.rewrite(offer(*AVP_WITH_ICE), codecs=[PCMA, DTMF])
        media = result.media[0]
        self.assertEqual(media.formats, ("8", "101"))
        self.assertEqual(media.attribute_values("rtcp-fb"), ["8 nack"])

    def test_filter_leaves_nothing(self) -> None:
        """A stream left with telephone-event only is disabled; all disabled is NotAcceptable."""
        self.assertRaises(
            NotAcceptable, self.rewrite, offer(*AUDIO), codecs=[G729, DTMF]
        )

    def test_stripped_attributes(self) -> None:
        """Keys, ICE, rtcp-mux, a=rtcp and BUNDLE are not passed on."""
        result = self.rewrite(
            offer(*AVP_WITH_ICE, head=("a=group:BUNDLE 0", "a=ice-lite", "a=tool:x"))
        )
        self.assertEqual(set(names(result)), {"rtpmap", "fmtp", "rtcp-fb", "sendrecv"})
        self.assertEqual(result.attributes, (("tool", "x"),))

    def test_secure_stream_disabled(self) -> None:
        """A DTLS stream is disabled beside a plain one; alone it is NotAcceptable."""
        result = self.rewrite(offer(*WEBRTC_AUDIO, *AUDIO))
        self.assertEqual([m.port for m in result.media], [0, 30000])
        self.assertEqual(result.media[0].attributes, ())
        self.assertRaises(NotAcceptable, self.rewrite, offer(*WEBRTC_AUDIO))

    def test_null_connection_becomes_sendonly(self) -> None:
        """An RFC 2543 hold (c=0.0.0.0) is relayed as a=sendonly (RFC 3264 §8.4)."""
        result = self.rewrite(offer("m=audio 4000 RTP/AVP 0", connection="0.0.0.0"))
        self.assertEqual(result.media[0].own_direction(), "sendonly")
        self.assertTrue(is_hold(result, result.media[0]))

    def test_direction_passed_on(self) -> None:
        """The offer's direction, session-level included, is written per stream."""
        result = self.rewrite(offer("m=audio 4000 RTP/AVP 0", head=("a=inactive",)))
        self.assertEqual(result.media[0].own_direction(), "inactive")
        self.assertEqual(result.attributes, ())

    def test_reoffer_version_bump(self) -> None:
        """bump_version raises sess-version by one and changes nothing else."""
        first = self.rewrite(offer(*AUDIO))
        second = bump_version(first)
        self.assertEqual(second.origin.sess_version, first.origin.sess_version + 1)
        self.assertEqual(second.origin.sess_id, first.origin.sess_id)
        self.assertEqual(second.media, first.media)
        self.assertIn(b"o=- 77 2 IN IP4", second.to_bytes())

    def test_video_disabled_by_default(self) -> None:
        """Video is disabled unless media_types allows it."""
        self.assertEqual(
            [m.port for m in self.rewrite(offer(*AUDIO, *VIDEO)).media], [30000, 0]
        )
        widened = self.rewrite(offer(*AUDIO, *VIDEO), media_types=("audio", "video"))
        self.assertEqual([m.port for m in widened.media], [30000, 30000])


class NegotiatedTests(SynchronousTestCase):
    """negotiated: what the relay needs from an offer and its answer."""

    def test_offerer_is_remote(self) -> None:
        """After answering an offer, the remote is the offerer's address and codec choice."""
        offered = offer(*AUDIO)
        [stream] = negotiated(offered, answer(offered, [PCMA, DTMF]), remote="offerer")
        self.assertTrue(stream.accepted)
        self.assertEqual(
            (stream.remote_address, stream.remote_port), ("192.0.2.5", 49170)
        )
        self.assertEqual((stream.payload_type, stream.codec.encoding), (8, "PCMA"))
        self.assertEqual((stream.telephone_event, stream.ptime), (101, 20))
        self.assertEqual(
            (stream.direction, stream.remote_rtcp_port), ("sendrecv", 49171)
        )

    def test_answerer_is_remote(self) -> None:
        """After our offer is answered, the remote is the answerer, with its a=rtcp."""
        ours = make_offer(codecs=[OPUS, PCMU, CodecSpec("telephone-event", 48000), DTMF],
                          local_address=LOCAL, port=30000, session_id=1, version=1)  # fmt: skip
        theirs = parse_sdp(sdp("v=0", "o=- 5 5 IN IP4 198.51.100.9", "s=-",
                               "c=IN IP4 198.51.100.9", "t=0 0",
                               "m=audio 5004 RTP/AVP 96 97 98", "a=rtpmap:96 opus/48000/2",
                               "a=rtpmap:97 telephone-event/48000",
                               "a=rtpmap:98 telephone-event/8000", "a=rtcp:6000",
                               "a=sendonly"))  # fmt: skip
        [stream] = negotiated(ours, theirs)
        self.assertEqual(
            (stream.remote_address, stream.remote_port), ("198.51.100.9", 5004)
        )
        self.assertEqual(stream.remote_rtcp_port, 6000)
        self.assertEqual((stream.payload_type, stream.telephone_event), (96, 97))
        self.assertEqual(stream.direction, "sendonly")

    def test_rejected_stream(self) -> None:
        """A stream answered with port 0 is not accepted and has no address."""
        offered = offer(*AUDIO, *VIDEO)
        streams = negotiated(offered, answer(offered, [PCMU]))
        self.assertEqual([s.accepted for s in streams], [True, False])
        self.assertIsNone(streams[1].remote_address)

    def test_line_count_mismatch(self) -> None:
        """An answer with another number of m= lines is an SDPError."""
        self.assertRaises(
            SDPError, negotiated, offer(*AUDIO, *VIDEO), answer(offer(*AUDIO), [PCMU])
        )

    def test_foreign_codec(self) -> None:
        """An answer naming no codec of the offer is an SDPError."""
        self.assertRaises(SDPError, negotiated, offer("m=audio 4000 RTP/AVP 0"),
                          offer("m=audio 4000 RTP/AVP 8"))  # fmt: skip

    def test_null_answer_direction(self) -> None:
        """A c=0.0.0.0 remote does not receive, whatever its attribute says."""
        offered = offer("m=audio 4000 RTP/AVP 0")
        [stream] = negotiated(
            offered, offer("m=audio 4000 RTP/AVP 0", connection="0.0.0.0")
        )
        self.assertEqual(stream.direction, "sendonly")


class MakeOfferTests(SynchronousTestCase):
    """make_offer: offers pbx originates itself."""

    def test_payload_types(self) -> None:
        """Static codecs keep their numbers; dynamic ones get 96 up, skipping taken ones."""
        result = make_offer(codecs=[OPUS, PCMU, CodecSpec("speex", 16000, payload_type=96), DTMF],
                            local_address=LOCAL, port=30000, session_id=1, version=1, ptime=20)  # fmt: skip
        media = result.media[0]
        self.assertEqual(media.formats, ("97", "0", "96", "98"))
        self.assertEqual(media.fmtp, {"98": "0-16"})
        self.assertEqual(media.ptime, 20)
        self.assertEqual(parse_sdp(result.to_bytes()), result)


SEEDS = [
    sdp("v=0", "o=- 1 1 IN IP4 192.0.2.5", "s=-", "c=IN IP4 192.0.2.5", "t=0 0", *AUDIO, *VIDEO),
    sdp("v=0", "o=- 1 1 IN IP4 192.0.2.5", "s=-", "t=0 0", "a=sendonly", *AVP_WITH_ICE,
        "c=IN IP4 0.0.0.0", *WEBRTC_AUDIO, "c=IN IP6 2001:db8::1"),
]  # fmt: skip


class FuzzTests(SynchronousTestCase):
    """Offer/answer on any parsed description raises SDPError or nothing."""

    @settings(max_examples=300, deadline=None)
    @given(st.data())
    def test_mutated_offers(self, data: st.DataObject) -> None:
        """make_answer, rewrite_offer and negotiated raise nothing but SDPError."""
        body = bytearray(data.draw(st.sampled_from(SEEDS)))
        for _ in range(data.draw(st.integers(0, 4))):
            at = data.draw(st.integers(0, len(body) - 1))
            body[at : at + data.draw(st.integers(0, 3))] = data.draw(
                st.binary(max_size=3)
            )
        try:
            offered = parse_sdp(bytes(body))
        except SDPError:
            return
        ports = [40000] * len(offered.media)
        codecs = data.draw(
            st.lists(st.sampled_from([PCMU, PCMA, G722, OPUS, DTMF]), max_size=4)
        )
        try:
            result = make_answer(offered, supported=codecs, local_address=LOCAL, ports=ports,
                                 session_id=1, version=1)  # fmt: skip
            self.assertEqual(len(result.media), len(offered.media))
            negotiated(offered, parse_sdp(result.to_bytes()), remote="offerer")
        except SDPError:
            pass
        try:
            rewritten = rewrite_offer(offered, local_address=LOCAL, ports=ports, session_id=1,
                                      version=1, codecs=codecs or None)  # fmt: skip
            self.assertEqual(parse_sdp(rewritten.to_bytes()), rewritten)
        except SDPError:
            pass
