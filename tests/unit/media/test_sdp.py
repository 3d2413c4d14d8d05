"""
Tests for L{pbx.media.sdp}: parsing real-world session descriptions, writing
them back, rejecting malformed ones, IPv6 (RFC 5118) and hold detection.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.trial.unittest import SynchronousTestCase

from pbx.media.sdp import (
    Bandwidth,
    Connection,
    MediaDescription,
    Origin,
    RTCPAddress,
    SDPError,
    SessionDescription,
    Timing,
    direction,
    effective_connection,
    is_hold,
    parse_sdp,
)

from support.paths import CONFORMANCE

RFC5118 = CONFORMANCE / "rfc5118"
BOUNDED = settings(max_examples=300, deadline=None)


def sdp(*lines: str) -> bytes:
    """Join lines into a CRLF-terminated SDP body."""
    return "".join(line + "\r\n" for line in lines).encode("utf-8")


BARESIP = sdp(
    "v=0",
    "o=- 1602327540 2128264297 IN IP4 192.168.1.50",
    "s=-",
    "c=IN IP4 192.168.1.50",
    "t=0 0",
    "m=audio 10390 RTP/AVP 96 9 0 8 101",
    "b=AS:96",
    "a=rtpmap:96 opus/48000/2",
    "a=fmtp:96 stereo=1;sprop-stereo=1",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=rtcp-rsize",
    "a=sendrecv",
    "a=label:1",
    "a=ssrc:1843245634 cname:91d2f2c4-4a7e-4b1e-b7c4-5b5ba6e3b3c0",
    "a=ptime:20",
)

LINPHONE = sdp(
    "v=0",
    "o=alice 1234 5678 IN IP4 10.0.0.12",
    "s=Talk",
    "c=IN IP4 10.0.0.12",
    "t=0 0",
    "a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics",
    "a=record:off",
    "m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100",
    "a=rtpmap:96 opus/48000/2",
    "a=fmtp:96 useinbandfec=1",
    "a=rtpmap:97 speex/16000",
    "a=fmtp:97 vbr=on",
    "a=rtpmap:98 speex/8000",
    "a=fmtp:98 vbr=on",
    "a=fmtp:18 annexb=yes",
    "a=rtpmap:101 telephone-event/48000",
    "a=rtpmap:99 telephone-event/16000",
    "a=rtpmap:100 telephone-event/8000",
    "a=rtcp-fb:* trr-int 1000",
    "a=rtcp-fb:* ccm tmmbr",
    "m=video 9078 RTP/AVP 96 97",
    "a=rtpmap:96 VP8/90000",
    "a=rtpmap:97 H264/90000",
    "a=fmtp:97 profile-level-id=42801F",
    "a=rtcp-fb:* trr-int 1000",
    "a=rtcp-fb:96 nack pli",
    "a=rtcp-fb:97 ccm fir",
)

POLYCOM = sdp(
    "v=0",
    "o=- 1614687390 1614687390 IN IP4 10.1.1.20",
    "s=Polycom IP Phone",
    "c=IN IP4 10.1.1.20",
    "t=0 0",
    "a=sendrecv",
    "m=audio 2222 RTP/AVP 9 102 0 8 18 127",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:102 G7221/16000",
    "a=fmtp:102 bitrate=32000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:18 G729/8000",
    "a=fmtp:18 annexb=no",
    "a=rtpmap:127 telephone-event/8000",
)

YEALINK = sdp(
    "v=0",
    "o=- 20022 20022 IN IP4 192.168.0.101",
    "s=SDP data",
    "c=IN IP4 192.168.0.101",
    "t=0 0",
    "m=audio 11780 RTP/AVP 0 8 18 9 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:18 G729/8000",
    "a=fmtp:18 annexb=no",
    "a=rtpmap:9 G722/8000",
    "a=fmtp:101 0-15",
    "a=rtpmap:101 telephone-event/8000",
    "a=ptime:20",
    "a=sendrecv",
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
)

ASTERISK = sdp(
    "v=0",
    "o=- 1831283716 1831283716 IN IP4 203.0.113.5",
    "s=Asterisk",
    "c=IN IP4 203.0.113.5",
    "t=0 0",
    "m=audio 18234 RTP/AVP 0 8 3 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:3 GSM/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=ptime:20",
    "a=maxptime:150",
    "a=sendrecv",
)

WEBRTC = sdp(
    "v=0",
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0",
    "a=extmap-allow-mixed",
    "a=msid-semantic: WMS",
    "m=audio 54321 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
    "c=IN IP4 198.51.100.7",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=candidate:842163049 1 udp 1677729535 198.51.100.7 54321 typ srflx "
    "raddr 192.168.1.2 rport 54321 generation 0 network-cost 999",
    "a=candidate:1 1 udp 2122260223 192.168.1.2 54321 typ host generation 0",
    "a=ice-ufrag:EsAw",
    "a=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:"
    "2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F",
    "a=setup:actpass",
    "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=sendrecv",
    "a=msid:- 4c8d2f1e-1d7e-4a1b-9f3a-0c5e8b7a6d21",
    "a=rtcp-mux",
    "a=rtpmap:111 opus/48000/2",
    "a=rtcp-fb:111 transport-cc",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:63 red/48000/2",
    "a=fmtp:63 111/111",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:13 CN/8000",
    "a=rtpmap:110 telephone-event/48000",
    "a=rtpmap:126 telephone-event/8000",
    "a=ssrc:1001 cname:kq0BDQ1RQgq1qZ2q",
)

SAMPLES = [BARESIP, LINPHONE, POLYCOM, YEALINK, ASTERISK, WEBRTC]


def rfc5118_body(name: str) -> bytes:
    """The SDP body of one RFC 5118 torture message."""
    return (RFC5118 / name).read_bytes().split(b"\r\n\r\n", 1)[1]


class ParseRealWorldTests(SynchronousTestCase):
    """Session descriptions as real phones and servers send them."""

    def test_baresip(self) -> None:
        """A baresip offer gives its origin, connection, formats and codecs."""
        session = parse_sdp(BARESIP)
        self.assertEqual(
            session.origin,
            Origin("-", "1602327540", 2128264297, "IN", "IP4", "192.168.1.50"),
        )
        self.assertEqual(session.connection, Connection("IN", "IP4", "192.168.1.50"))
        self.assertEqual(session.timings, (Timing(0, 0),))
        [audio] = session.media
        self.assertEqual(
            (audio.media, audio.port, audio.proto), ("audio", 10390, "RTP/AVP")
        )
        self.assertEqual(audio.formats, ("96", "9", "0", "8", "101"))
        self.assertEqual(audio.bandwidths, (Bandwidth("AS", 96),))
        self.assertEqual(audio.rtpmap["96"], ("opus", 48000, 2))
        self.assertEqual(audio.rtpmap["9"], ("G722", 8000, 1))
        self.assertEqual(audio.fmtp["101"], "0-15")
        self.assertEqual(audio.ptime, 20)
        self.assertIn(("rtcp-rsize", None), audio.attributes)

    def test_linphone(self) -> None:
        """Linphone's session attributes and two streams reusing PT 96 stay apart."""
        session = parse_sdp(LINPHONE)
        self.assertEqual(session.session_name, "Talk")
        self.assertEqual(session.attributes[1], ("record", "off"))
        audio, video = session.media
        self.assertEqual(audio.rtpmap["96"], ("opus", 48000, 2))
        self.assertEqual(video.rtpmap["96"], ("VP8", 90000, 1))
        self.assertEqual(audio.rtpmap["99"], ("telephone-event", 16000, 1))
        self.assertEqual(audio.fmtp["18"], "annexb=yes")
        self.assertEqual(video.attribute_values("rtcp-fb")[0], "* trr-int 1000")
        self.assertEqual(direction(session, video), "sendrecv")

    def test_polycom(self) -> None:
        """Polycom's session-level a=sendrecv applies to its audio stream."""
        session = parse_sdp(POLYCOM)
        [audio] = session.media
        self.assertEqual(audio.own_direction(), None)
        self.assertEqual(direction(session, audio), "sendrecv")
        self.assertEqual(audio.rtpmap["102"], ("G7221", 16000, 1))
        self.assertEqual(audio.fmtp["102"], "bitrate=32000")

    def test_yealink_crypto_kept(self) -> None:
        """Yealink's optional SRTP offer parses as RTP/AVP with its a=crypto kept."""
        [audio] = parse_sdp(YEALINK).media
        self.assertFalse(audio.is_secure)
        self.assertTrue(audio.is_rtp)
        self.assertTrue(
            audio.attribute("crypto").startswith("1 AES_CM_128_HMAC_SHA1_80")
        )

    def test_asterisk(self) -> None:
        """Asterisk's maxptime, unknown to us, is preserved as an attribute."""
        [audio] = parse_sdp(ASTERISK).media
        self.assertEqual(audio.attribute("maxptime"), "150")
        self.assertEqual(audio.rtpmap["3"], ("GSM", 8000, 1))

    def test_webrtc(self) -> None:
        """A browser offer with ICE and DTLS gives its media-level c= and RFC 3605 a=rtcp."""
        session = parse_sdp(WEBRTC)
        self.assertIsNone(session.connection)
        [audio] = session.media
        self.assertEqual(audio.proto, "UDP/TLS/RTP/SAVPF")
        self.assertTrue(audio.is_secure)
        self.assertEqual(
            effective_connection(session, audio),
            Connection("IN", "IP4", "198.51.100.7"),
        )
        self.assertEqual(audio.rtcp, RTCPAddress(9, Connection("IN", "IP4", "0.0.0.0")))
        self.assertEqual(len(audio.attribute_values("candidate")), 2)
        self.assertEqual(session.attributes[2], ("msid-semantic", " WMS"))

    def test_lf_only_and_trailing_whitespace(self) -> None:
        """LF line endings, trailing blanks and blank lines parse like clean CRLF."""
        sloppy = ASTERISK.replace(b"\r\n", b" \t\n").replace(b"t=0 0", b"t=0 0\n")
        self.assertEqual(parse_sdp(sloppy), parse_sdp(ASTERISK))

    def test_unknown_lines_kept(self) -> None:
        """Lines of unknown type are kept in their section and written back."""
        body = sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1",
                   "t=0 0", "y=0100000001", "m=audio 4000 RTP/AVP 0", "x=custom")  # fmt: skip
        session = parse_sdp(body)
        self.assertEqual(session.extra_lines, (("y", "0100000001"),))
        self.assertEqual(session.media[0].extra_lines, (("x", "custom"),))
        self.assertIn(b"y=0100000001\r\nm=audio", session.to_bytes())

    def test_session_information_fields(self) -> None:
        """i=, u=, e=, p=, r=, z= and k= lines are read into their fields."""
        session = parse_sdp(sdp(
            "v=0", "o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5", "s=SDP Seminar",
            "i=A Seminar on the session description protocol",
            "u=http://www.example.com/seminars/sdp.pdf", "e=j.doe@example.com (Jane Doe)",
            "p=+1 617 555-6011", "c=IN IP4 224.2.17.12/127", "t=2873397496 2873404696",
            "r=7d 1h 0 25h", "z=2882844526 -1h 2898848070 0", "k=prompt",
            "a=recvonly", "m=audio 49170 RTP/AVP 0", "i=voice",
            "m=video 51372/2 RTP/AVP 99", "a=rtpmap:99 h263-1998/90000",
        ))  # fmt: skip
        self.assertEqual(
            session.information, "A Seminar on the session description protocol"
        )
        self.assertEqual(session.uri, "http://www.example.com/seminars/sdp.pdf")
        self.assertEqual(session.emails, ("j.doe@example.com (Jane Doe)",))
        self.assertEqual(session.phones, ("+1 617 555-6011",))
        self.assertEqual(session.connection.host, "224.2.17.12")
        self.assertEqual(session.timings[0].repeats, ("7d 1h 0 25h",))
        self.assertEqual(
            (session.time_zones, session.key), ("2882844526 -1h 2898848070 0", "prompt")
        )
        self.assertEqual(session.media[0].information, "voice")
        self.assertEqual(session.media[1].port_count, 2)
        self.assertEqual(direction(session, session.media[1]), "recvonly")

    def test_rejected_stream_without_connection(self) -> None:
        """A port-0 stream needs no c= line (RFC 4566 §5.7 only binds live streams)."""
        session = parse_sdp(sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "t=0 0",
                                "m=video 0 RTP/AVP 31"))  # fmt: skip
        self.assertEqual(session.media[0].port, 0)


class HelperTests(SynchronousTestCase):
    """Attribute helpers are lenient: a bad value reads as absent."""

    def media(self, *attributes: str) -> MediaDescription:
        """One audio stream with the given a= lines."""
        body = sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1",
                   "t=0 0", "m=audio 4000 RTP/AVP 0 96", *attributes)  # fmt: skip
        return parse_sdp(body).media[0]

    def test_malformed_rtpmap_skipped(self) -> None:
        """An rtpmap without a clock rate is skipped, the good one is read."""
        media = self.media("a=rtpmap:96 opus", "a=rtpmap:0 PCMU/8000", "a=rtpmap:x y/1")
        self.assertEqual(media.rtpmap, {"0": ("PCMU", 8000, 1)})

    def test_bad_ptime(self) -> None:
        """A non-numeric ptime reads as None; 20.0 reads as 20."""
        self.assertIsNone(self.media("a=ptime:fast").ptime)
        self.assertEqual(self.media("a=ptime:20.0").ptime, 20)

    def test_rtcp_port_only(self) -> None:
        """a=rtcp with a port only has no connection (RFC 3605)."""
        self.assertEqual(self.media("a=rtcp:53021").rtcp, RTCPAddress(53021))
        self.assertIsNone(self.media("a=rtcp:99999").rtcp)
        self.assertIsNone(self.media().rtcp)

    def test_attribute_lookup(self) -> None:
        """Attribute names match case-insensitively; property attributes read as ''."""
        media = self.media("a=RTCP-MUX", "a=X-Foo:bar")
        self.assertEqual(media.attribute("rtcp-mux"), "")
        self.assertEqual(media.attribute("x-foo"), "bar")
        self.assertIsNone(media.attribute("nothing"))
        self.assertTrue(media.has_attribute("Rtcp-Mux"))

    def test_media_connection_wins(self) -> None:
        """A media-level c= line overrides the session's."""
        session = parse_sdp(sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-",
                                "c=IN IP4 192.0.2.1", "t=0 0", "m=audio 4000 RTP/AVP 0",
                                "c=IN IP4 192.0.2.99", "m=audio 4002 RTP/AVP 8"))  # fmt: skip
        first, second = session.media
        self.assertEqual(effective_connection(session, first).address, "192.0.2.99")
        self.assertEqual(effective_connection(session, second).address, "192.0.2.1")

    def test_connection_for_address(self) -> None:
        """Connection.for_address picks IP6 for an IPv6 literal and IP4 otherwise."""
        self.assertEqual(Connection.for_address("2001:db8::1").addrtype, "IP6")
        self.assertEqual(Connection.for_address("pbx.example.com").addrtype, "IP4")


class RoundTripTests(SynchronousTestCase):
    """What parses is written back in RFC 4566 order and parses the same."""

    def test_samples_round_trip(self) -> None:
        """Every real-world sample survives parse, to_bytes, parse unchanged."""
        for body in SAMPLES:
            session = parse_sdp(body)
            self.assertEqual(parse_sdp(session.to_bytes()), session)

    def test_clean_sample_byte_exact(self) -> None:
        """A sample already in canonical form is written back byte for byte."""
        for body in (BARESIP, POLYCOM, ASTERISK, YEALINK):
            self.assertEqual(parse_sdp(body).to_bytes(), body)

    def test_crlf_terminated(self) -> None:
        """Output lines all end in CRLF, including the last."""
        out = parse_sdp(ASTERISK.replace(b"\r\n", b"\n")).to_bytes()
        self.assertTrue(out.endswith(b"\r\n"))
        self.assertEqual(out.count(b"\n"), out.count(b"\r\n"))

    def test_rfc_order(self) -> None:
        """Session lines given out of order come back in RFC 4566 §5 order."""
        body = sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "a=tool:x", "t=0 0",
                   "b=CT:128", "c=IN IP4 192.0.2.1", "m=audio 4000 RTP/AVP 0",
                   "a=sendonly", "b=AS:64", "c=IN IP4 192.0.2.2")  # fmt: skip
        out = parse_sdp(body).to_bytes().decode().split("\r\n")
        self.assertEqual(
            out[3:],
            ["c=IN IP4 192.0.2.1", "b=CT:128", "t=0 0", "a=tool:x", "m=audio 4000 RTP/AVP 0",
             "c=IN IP4 192.0.2.2", "b=AS:64", "a=sendonly", ""],
        )  # fmt: skip

    def test_empty_session_name(self) -> None:
        """An empty s= is written as a single space (RFC 4566 §5.3)."""
        built = SessionDescription(Origin("-", "1", 1, "IN", "IP4", "192.0.2.1"), "")
        self.assertIn(b"\r\ns= \r\n", built.to_bytes())
        self.assertEqual(parse_sdp(built.to_bytes()), built)

    def test_built_from_lists(self) -> None:
        """Values built from lists equal the parsed (tuple) form."""
        built = SessionDescription(
            Origin("-", "7", 1, "IN", "IP4", "192.0.2.1"),
            connection=Connection("IN", "IP4", "192.0.2.1"),
            media=[
                MediaDescription(
                    "audio", 4000, "RTP/AVP", ["0"], attributes=[("sendrecv", None)]
                )
            ],
        )
        self.assertEqual(parse_sdp(built.to_bytes()), built)


HEAD = ("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0")

# (name, body, fragment of the SDPError message)
MALFORMED = [
    ("empty", b"", "empty"),
    ("no v=", sdp(*HEAD[1:]), "v= line missing"),
    ("version 1", sdp("v=1", *HEAD[1:]), "version"),
    ("no o=", sdp("v=0", "s=-", "t=0 0"), "o= line missing"),
    (
        "o= after s=",
        sdp("v=0", "s=-", "o=- 1 1 IN IP4 192.0.2.1", "t=0 0"),
        "o= line out of order",
    ),
    (
        "o= five fields",
        sdp("v=0", "o=- 1 IN IP4 192.0.2.1", "s=-", "t=0 0"),
        "6 fields",
    ),
    (
        "o= bad version",
        sdp("v=0", "o=- 1 v2 IN IP4 192.0.2.1", "s=-", "t=0 0"),
        "sess-version",
    ),
    ("no s=", sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "t=0 0"), "s= line missing"),
    ("no t=", sdp(*HEAD[:4], "m=audio 4000 RTP/AVP 0"), "before any t= line"),
    ("no t= no m=", sdp(*HEAD[:4]), "t= line missing"),
    ("t= text", sdp(*HEAD[:4], "t=now later"), "t= line"),
    ("port text", sdp(*HEAD, "m=audio abc RTP/AVP 0"), "port"),
    ("port too big", sdp(*HEAD, "m=audio 70000 RTP/AVP 0"), "out of range"),
    ("port 40 digits", sdp(*HEAD, "m=audio " + "9" * 40 + " RTP/AVP 0"), "port"),
    ("named PT", sdp(*HEAD, "m=audio 4000 RTP/AVP PCMU"), "payload type"),
    ("PT 128", sdp(*HEAD, "m=audio 4000 RTP/AVP 128"), "payload type"),
    ("m= short", sdp(*HEAD, "m=audio 4000"), "m= line"),
    ("m= no formats", sdp(*HEAD, "m=audio 4000 RTP/AVP"), "no formats"),
    ("port count 0", sdp(*HEAD, "m=audio 4000/0 RTP/AVP 0"), "port count"),
    (
        "t= after m=",
        sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "t=0 0"),
        "not allowed in a media",
    ),
    ("two session c=", sdp(*HEAD, "c=IN IP4 192.0.2.2"), "more than one c="),
    ("c= two fields", sdp(*HEAD[:3], "c=IN 192.0.2.1", "t=0 0"), "c= line"),
    ("bad IPv4", sdp(*HEAD[:3], "c=IN IP4 192.0.2.300", "t=0 0"), "bad IP4 address"),
    ("bad IPv6", sdp(*HEAD[:3], "c=IN IP6 2001:db8::zz", "t=0 0"), "bad IP6 address"),
    ("no c=", sdp(*HEAD[:3], "t=0 0", "m=audio 4000 RTP/AVP 0"), "no c= line"),
    ("b= text", sdp(*HEAD, "b=AS:fast"), "b= line"),
    ("r= first", sdp(*HEAD[:4], "r=7d 1h 0 25h", "t=0 0"), "r= line before"),
    ("two v=", sdp(*HEAD, "v=0"), "duplicate v="),
    ("not UTF-8", sdp(*HEAD[:3]) + b"i=\xff\xfe\r\n" + sdp(*HEAD[3:]), "UTF-8"),
    ("NUL", sdp(*HEAD[:3]) + b"i=a\x00b\r\n" + sdp(*HEAD[3:]), "NUL"),
    ("no =", sdp(*HEAD, "hello"), "<type>=<value>"),
    ("upper-case type", sdp("V=0", *HEAD[1:]), "<type>=<value>"),
    ("bad attribute name", sdp(*HEAD, "a=:value"), "attribute name"),
]


class MalformedTests(SynchronousTestCase):
    """Malformed descriptions raise SDPError with a message, nothing else."""

    def test_cases(self) -> None:
        """Each malformed body raises SDPError whose message names the problem."""
        wrong = []
        for name, body, fragment in MALFORMED:
            try:
                parse_sdp(body)
            except SDPError as e:
                if fragment not in str(e):
                    wrong.append(f"{name}: {e}")
            else:
                wrong.append(f"{name}: accepted")
        self.assertEqual(wrong, [])

    def test_line_number(self) -> None:
        """The message says which line is wrong."""
        with self.assertRaises(SDPError) as caught:
            parse_sdp(sdp(*HEAD, "m=audio abc RTP/AVP 0"))
        self.assertTrue(str(caught.exception).startswith("line 6: "))

    def test_is_value_error(self) -> None:
        """SDPError is a ValueError, so generic input handling catches it too."""
        self.assertTrue(issubclass(SDPError, ValueError))

    def test_str_rejected(self) -> None:
        """A str instead of bytes is refused with SDPError."""
        self.assertRaises(SDPError, parse_sdp, "v=0\r\n")  # type: ignore[arg-type]


class IPv6Tests(SynchronousTestCase):
    """IPv6 in SDP: unbracketed addresses (RFC 5118 §4.6, §4.8, §4.9)."""

    def test_rfc5118_ipv6_in_sdp(self) -> None:
        """RFC 5118 §4.6: o= and c= with IN IP6 2001:db8::20 parse."""
        session = parse_sdp(rfc5118_body("ipv6-in-sdp.dat"))
        self.assertEqual(session.origin.addrtype, "IP6")
        self.assertEqual(session.origin.address, "2001:db8::20")
        self.assertEqual(session.connection, Connection("IN", "IP6", "2001:db8::20"))
        self.assertEqual(session.media[0].rtpmap["2"], ("G726-32", 8000, 1))
        self.assertEqual(parse_sdp(session.to_bytes()), session)

    def test_rfc5118_multiple_addresses(self) -> None:
        """RFC 5118 §4.8: an IPv4 audio and an IPv6 video stream, no session c=."""
        session = parse_sdp(rfc5118_body("mult-ip-in-sdp.dat"))
        self.assertIsNone(session.connection)
        self.assertEqual(session.origin.address, "host.example.com")
        audio, video = session.media
        self.assertEqual(
            effective_connection(session, audio), Connection("IN", "IP4", "192.0.2.1")
        )
        self.assertEqual(
            effective_connection(session, video), Connection("IN", "IP6", "2001:db8::1")
        )

    def test_rfc5118_ipv4_mapped(self) -> None:
        """RFC 5118 §4.9: an IPv4-mapped IPv6 connection address parses."""
        session = parse_sdp(rfc5118_body("ipv4-mapped-ipv6.dat"))
        self.assertEqual(session.connection.address, "::ffff:192.0.2.2")

    def test_brackets_tolerated(self) -> None:
        """A bracketed IPv6 c= address is accepted and stored without brackets."""
        session = parse_sdp(sdp(*HEAD[:3], "c=IN IP6 [2001:db8::5]", "t=0 0"))
        self.assertEqual(session.connection.address, "2001:db8::5")

    def test_ipv6_null_is_hold(self) -> None:
        """c=IN IP6 :: reads as a null connection, like 0.0.0.0."""
        session = parse_sdp(
            sdp(*HEAD[:3], "c=IN IP6 ::", "t=0 0", "m=audio 4000 RTP/AVP 0")
        )
        self.assertTrue(is_hold(session, session.media[0]))


class HoldTests(SynchronousTestCase):
    """Hold detection (RFC 3264 §8.4, RFC 2543 style included)."""

    def hold(self, *lines: str, connection: str = "192.0.2.1") -> bool:
        """is_hold for the one audio stream of a description."""
        session = parse_sdp(sdp(*HEAD[:3], f"c=IN IP4 {connection}", "t=0 0", *lines))
        return is_hold(session, session.media[-1])

    def test_sendonly(self) -> None:
        """a=sendonly is hold."""
        self.assertTrue(self.hold("m=audio 4000 RTP/AVP 0", "a=sendonly"))

    def test_inactive(self) -> None:
        """a=inactive is hold."""
        self.assertTrue(self.hold("m=audio 4000 RTP/AVP 0", "a=inactive"))

    def test_null_connection(self) -> None:
        """c=IN IP4 0.0.0.0 is hold even with a=sendrecv."""
        self.assertTrue(
            self.hold("m=audio 4000 RTP/AVP 0", "a=sendrecv", connection="0.0.0.0")
        )

    def test_session_level_sendonly(self) -> None:
        """A session-level a=sendonly holds streams that say nothing."""
        self.assertTrue(self.hold("a=sendonly", "m=audio 4000 RTP/AVP 0"))

    def test_media_overrides_session(self) -> None:
        """A media-level a=sendrecv overrides a session-level a=inactive."""
        self.assertFalse(
            self.hold("a=inactive", "m=audio 4000 RTP/AVP 0", "a=sendrecv")
        )

    def test_recvonly_and_default(self) -> None:
        """recvonly (the answer to hold) and no attribute at all are not hold."""
        self.assertFalse(self.hold("m=audio 4000 RTP/AVP 0", "a=recvonly"))
        self.assertFalse(self.hold("m=audio 4000 RTP/AVP 0"))


def mutate(data: st.DataObject, body: bytes) -> bytes:
    """Apply a few random edits to ``body``: delete, insert, replace, swap lines."""
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(
            st.sampled_from(["delete", "insert", "replace", "swap", "dup"])
        )
        at = data.draw(st.integers(0, max(len(body) - 1, 0)))
        if kind == "delete":
            body = body[:at] + body[at + data.draw(st.integers(1, 20)) :]
        elif kind == "insert":
            body = body[:at] + data.draw(st.binary(max_size=12)) + body[at:]
        elif kind == "replace":
            body = body[:at] + data.draw(st.sampled_from(
                [b" ", b"/", b":", b"=", b"\n", b"\r", b"0", b"a", b"\x80", b"-", b"["])) + body[at + 1:]  # fmt: skip
        else:
            lines = body.split(b"\r\n")
            i, j = (
                data.draw(st.integers(0, len(lines) - 1)),
                data.draw(st.integers(0, len(lines) - 1)),
            )
            if kind == "swap":
                lines[i], lines[j] = lines[j], lines[i]
            else:
                lines.insert(j, lines[i])
            body = b"\r\n".join(lines)
    return body


def exercise(session: SessionDescription) -> None:
    """Read every helper; none may raise on a parsed description."""
    for media in session.media:
        media.rtpmap, media.fmtp, media.ptime, media.rtcp  # noqa: B018
        direction(session, media)
        is_hold(session, media)


class FuzzTests(SynchronousTestCase):
    """parse_sdp raises nothing but SDPError, and what it accepts round-trips."""

    @BOUNDED
    @given(st.binary(max_size=300))
    def test_arbitrary_bytes(self, body: bytes) -> None:
        """Arbitrary bytes either parse or raise SDPError."""
        try:
            session = parse_sdp(body)
        except SDPError:
            return
        exercise(session)
        self.assertEqual(parse_sdp(session.to_bytes()), session)

    @BOUNDED
    @given(st.data())
    def test_mutated_samples(self, data: st.DataObject) -> None:
        """Mutated real-world SDPs either parse and round-trip or raise SDPError."""
        body = mutate(data, data.draw(st.sampled_from(SAMPLES)))
        try:
            session = parse_sdp(body)
        except SDPError as e:
            self.assertTrue(str(e))
            return
        exercise(session)
        self.assertEqual(parse_sdp(session.to_bytes()), session)
