"""
Property tests: the SIP parsers never fail with anything but SIPParseError,
and what they accept they can write back.
"""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.trial.unittest import SynchronousTestCase

from pbx.sip.framing import StreamFramer
from pbx.sip.headers import NameAddr, parse_name_addr, parse_params, parse_via
from pbx.sip.message import Request, Response, SIPParseError, parse_message
from pbx.sip.uri import URI, parse_uri

BOUNDED = settings(max_examples=300, deadline=None)

SEEDS = [
    b"INVITE sip:bob@biloxi.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds;rport\r\n"
    b"Via: SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bK2, SIP/2.0/TLS h;received=1.2.3.4\r\n"
    b"Max-Forwards: 70\r\n"
    b'To: "Bob \\"B\\"" <sip:bob@biloxi.com>\r\n'
    b"f: Alice <sip:alice@atlanta.com;transport=tcp>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"m: <sip:alice@pc33.atlanta.com>;expires=60, sip:a@b;q=0.5\r\n"
    b"Route: <sip:p1.example.com;lr>,\r\n <sip:p2.example.com;lr>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n",
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx;received=192.0.2.9\r\n"
    b"To: <sip:bob@biloxi.com>;tag=a6c85cf\r\n"
    b"From: <sip:alice@atlanta.com>;tag=1928301774\r\n"
    b"Call-ID: x@y\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b"Contact: *\r\n"
    b"l: 0\r\n"
    b"\r\n",
]


def exercise(message: Request | Response) -> None:
    """Read every accessor; only SIPParseError may escape."""
    for name in ("vias", "top_via", "from_", "to", "cseq", "call_id", "contacts",
                 "contact_wildcard", "max_forwards", "routes", "record_routes",
                 "expires", "content_length"):  # fmt: skip
        try:
            getattr(message, name)
        except SIPParseError:
            pass
    message.headers.get_all("Via")


def check(data: bytes) -> None:
    """Parse ``data``; if it parses, it must re-parse from its serialisation."""
    try:
        message = parse_message(data)
    except SIPParseError:
        return
    exercise(message)
    again = parse_message(message.to_bytes())
    expected = message.headers.copy()
    expected.set("Content-Length", str(len(message.body)))
    assert again.headers == expected, (again.headers, expected)
    assert again.body == message.body
    assert type(again) is type(message)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A seed message damaged by flips, cuts, insertions and repeated lines."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "dup", "delete"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[position] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[position:]
        elif kind == "insert":
            data[position:position] = draw(st.sampled_from(
                [b"\r\n", b" ", b",", b";", b":", b'"', b"<", b">", b"%", b"\\", b"\r\n ",
                 b"\x00", b"\xff", b"[", b"]", b"=", b"9999999999999999999999"]))  # fmt: skip
        elif kind == "dup":
            lines = bytes(data).split(b"\r\n")
            index = draw(st.integers(0, len(lines) - 1))
            lines.insert(index, lines[index])
            data = bytearray(b"\r\n".join(lines))
        elif kind == "delete" and data:
            del data[position : position + draw(st.integers(1, 20))]
    return bytes(data)


class ParseNeverCrashesTests(SynchronousTestCase):
    """
    Whatever the input, parsing raises nothing but SIPParseError.
    """

    @BOUNDED
    @given(st.binary(max_size=600))
    def test_arbitrary_bytes(self, data: bytes) -> None:
        """Random octets never raise anything but SIPParseError."""
        check(data)

    @BOUNDED
    @given(mutated())
    def test_mutated_messages(self, data: bytes) -> None:
        """Damaged valid messages never raise anything but SIPParseError."""
        check(data)

    @BOUNDED
    @given(st.text(max_size=80))
    def test_value_parsers(self, text: str) -> None:
        """Header value and URI parsers only raise SIPParseError."""
        for parser in (parse_uri, parse_via, parse_name_addr, parse_params):
            try:
                parser(text)
            except SIPParseError:
                pass

    @BOUNDED
    @given(st.lists(st.integers(1, 40), min_size=1, max_size=30), mutated())
    def test_framer(self, sizes: list[int], noise: bytes) -> None:
        """Valid messages fed in any chunking come out whole; noise only raises SIPParseError."""
        stream = b"\r\n\r\n".join(SEEDS)
        framer = StreamFramer()
        out: list[object] = []
        position = 0
        for size in sizes * (len(stream) // sum(sizes) + 1):
            out += framer.feed(stream[position : position + size])
            position += size
        self.assertEqual([m for m in out if isinstance(m, bytes)], SEEDS)
        try:
            StreamFramer(max_size=1000).feed(noise)
        except SIPParseError:
            pass


hostnames = st.from_regex(
    r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z]{2,6}){0,2}", fullmatch=True
)
ipv6 = st.ip_addresses(v=6).map(lambda a: f"[{ipaddress.IPv6Address(a).compressed}]")
user_chars = st.text(alphabet="abcXYZ019-_.!~*'()&=+$,;?/%", min_size=1, max_size=12)
tokens = st.text(alphabet="abcdefxyz0189-.!*_+`'~", min_size=1, max_size=8)
param_values = st.none() | st.text(
    alphabet="abcXYZ019-_.!~*'()[]/:&+$", min_size=1, max_size=8
)


@st.composite
def sip_uris(draw: st.DrawFn) -> URI:
    """Valid sip/sips URIs built from parts."""
    return URI(
        draw(st.sampled_from(["sip", "sips"])),
        user=draw(st.none() | user_chars),
        host=draw(hostnames | ipv6),
        port=draw(st.none() | st.integers(0, 65535)),
        params=tuple(
            draw(st.lists(st.tuples(tokens.map(str.lower), param_values), max_size=3))
        ),
        headers=tuple(
            draw(
                st.lists(
                    st.tuples(tokens, st.text(alphabet="abc%20:", max_size=6)),
                    max_size=2,
                )
            )
        ),
    )


class URIRoundTripTests(SynchronousTestCase):
    """
    Generated URIs survive serialisation.
    """

    @BOUNDED
    @given(sip_uris())
    def test_round_trip(self, uri: URI) -> None:
        """Parsing str(uri) gives back the same parts and an equivalent URI."""
        parsed = parse_uri(str(uri))
        self.assertEqual(parsed, uri)
        self.assertEqual(str(parsed), str(uri))
        self.assertTrue(parsed.equivalent(uri))

    @BOUNDED
    @given(sip_uris(), st.none() | st.text(max_size=12), st.none() | tokens)
    def test_name_addr_round_trip(
        self, uri: URI, display: str | None, tag: str | None
    ) -> None:
        """A name-addr built from any display name and URI parses back equal."""
        display = (
            None if display is None else display.replace("\r", "").replace("\n", "")
        )
        value = NameAddr(uri, display, {} if tag is None else {"tag": tag})
        self.assertEqual(parse_name_addr(str(value)), value)
