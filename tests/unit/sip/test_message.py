"""
Tests for L{pbx.sip.headers}, L{pbx.sip.message} and L{pbx.sip.framing}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pbx.sip.headers import (
    CSeq,
    Via,
    canonical_name,
    parse_cseq,
    parse_name_addr,
    parse_params,
    parse_via,
    split_list,
    unquote,
)
from pbx.sip.message import (
    REASON_PHRASES,
    Headers,
    KeepAlive,
    MalformedMessage,
    Request,
    Response,
    SIPParseError,
    StreamFramer,
    UnsupportedVersion,
    make_response,
    parse_message,
)
from pbx.sip.uri import parse_uri

INVITE = (
    b"INVITE sip:bob@biloxi.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.com>\r\n"
    b"From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def request(*headers: bytes, start: bytes = b"OPTIONS sip:bob@biloxi.com SIP/2.0",
            body: bytes = b"", method: bytes = b"OPTIONS") -> bytes:  # fmt: skip
    """Build a request with the mandatory headers plus ``headers``."""
    lines = [
        start,
        b"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds",
        b"To: <sip:bob@biloxi.com>",
        b"From: <sip:alice@atlanta.com>;tag=1",
        b"Call-ID: abc@pc33",
        b"CSeq: 1 " + method,
        *headers,
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class HeaderNameTests(SynchronousTestCase):
    """
    Header names are normalised (RFC 3261 §7.3.3).
    """

    def test_compact_forms(self) -> None:
        """Every compact form maps to its long name."""
        expected = {
            "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
            "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To",
            "v": "Via", "o": "Event", "u": "Allow-Events", "r": "Refer-To", "b": "Referred-By",
            "x": "Session-Expires", "a": "Accept-Contact", "j": "Reject-Contact",
            "d": "Request-Disposition", "y": "Identity",
        }  # fmt: skip
        self.assertEqual({k: canonical_name(k.upper()) for k in expected}, expected)

    def test_canonical_capitalisation(self) -> None:
        """Known names get their canonical spelling; unknown ones keep theirs."""
        self.assertEqual(canonical_name("cSeQ"), "CSeq")
        self.assertEqual(canonical_name("www-authenticate"), "WWW-Authenticate")
        self.assertEqual(canonical_name("X-Custom"), "X-Custom")

    def test_not_a_token(self) -> None:
        """A name that is not a token is rejected."""
        with self.assertRaises(SIPParseError):
            canonical_name("Foobar roobar")


class HeadersTests(SynchronousTestCase):
    """
    L{Headers} is an ordered, case-insensitive multi-map.
    """

    def test_lookup(self) -> None:
        """Lookups ignore case and accept compact forms."""
        headers = Headers([("i", "abc"), ("CONTACT", "<sip:a@b>")])
        self.assertEqual(
            (headers.get("call-id"), headers.get("m")), ("abc", "<sip:a@b>")
        )
        self.assertIn("Call-ID", headers)
        self.assertNotIn("To", headers)
        self.assertEqual(
            headers.items(), [("Call-ID", "abc"), ("Contact", "<sip:a@b>")]
        )

    def test_list_headers_split(self) -> None:
        """get_all splits list headers across lines, respecting quotes and <>."""
        headers = Headers([
            ("Contact", '"Doe, J" <sip:a@b;x=1,2>, <sip:c@d>'),
            ("Contact", "<sip:e@f>"),
        ])  # fmt: skip
        self.assertEqual(
            headers.get_all("Contact"),
            ['"Doe, J" <sip:a@b;x=1,2>', "<sip:c@d>", "<sip:e@f>"],
        )
        self.assertEqual(headers.get("Contact"), '"Doe, J" <sip:a@b;x=1,2>')

    def test_non_list_headers_opaque(self) -> None:
        """Authorization, Date and unknown headers are never split at commas."""
        headers = Headers([
            ("Authorization", 'Digest username="a", realm="b", nonce="c"'),
            ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
            ("X-Odd", ";;,,;;,;"),
        ])  # fmt: skip
        self.assertEqual(len(headers.get_all("Authorization")), 1)
        self.assertEqual(headers.get_all("Date"), ["Sat, 13 Nov 2010 23:29:00 GMT"])
        self.assertEqual(headers.get_all("X-Odd"), [";;,,;;,;"])

    def test_mutation(self) -> None:
        """add appends, prepend inserts before the first same line, set replaces, remove deletes."""
        headers = Headers([("Via", "SIP/2.0/UDP a"), ("To", "<sip:x@y>")])
        headers.prepend("v", "SIP/2.0/UDP b")
        headers.add("Via", "SIP/2.0/UDP c")
        self.assertEqual(
            headers.get_all("Via"), ["SIP/2.0/UDP b", "SIP/2.0/UDP a", "SIP/2.0/UDP c"]
        )
        headers.set("Via", "SIP/2.0/UDP d")
        self.assertEqual(list(headers), [("Via", "SIP/2.0/UDP d"), ("To", "<sip:x@y>")])
        headers.remove("t")
        self.assertEqual(len(headers), 1)

    def test_injection_refused(self) -> None:
        """A value holding CR or LF cannot be added."""
        with self.assertRaises(ValueError):
            Headers().add("Subject", "hi\r\nVia: evil")

    def test_cache_invalidated(self) -> None:
        """Parsed values are recomputed after the headers change."""
        message = parse_message(INVITE)
        self.assertEqual(message.top_via.host, "pc33.atlanta.com")
        message.headers.prepend("Via", "SIP/2.0/TCP proxy.example.com;branch=z9hG4bKx")
        self.assertEqual(
            [v.host for v in message.vias], ["proxy.example.com", "pc33.atlanta.com"]
        )


class ValueParserTests(SynchronousTestCase):
    """
    Parsers of individual header values.
    """

    def test_split_list(self) -> None:
        """Commas inside quoted strings (with escapes) and <> do not split."""
        self.assertEqual(split_list('"a\\",b" <sip:x>, c'), ['"a\\",b" <sip:x>', "c"])
        self.assertEqual(split_list("a,,b"), ["a", "", "b"])
        self.assertEqual(split_list("  "), [])

    def test_params(self) -> None:
        """LWS around ; and = is allowed; quoted values keep ; and their quotes."""
        params = parse_params(' ; Tag = 1 ;lr; x="a;b"')
        self.assertEqual(params, {"tag": "1", "lr": None, "x": '"a;b"'})
        self.assertEqual(unquote(params["x"] or ""), "a;b")
        self.assertEqual(parse_params(""), {})

    def test_bad_params(self) -> None:
        """Empty parameters and bad values are rejected (RFC 4475 §3.1.2.1)."""
        for text in [";;", ";", "tag=1", ";a=", ";a b=1", ";a=b c", ';a="open']:
            with self.assertRaises(SIPParseError, msg=text):
                parse_params(text)

    def test_via(self) -> None:
        """A Via is split into transport, sent-by and parameters."""
        via = parse_via(
            "SIP/2.0/udp [2001:db8::9:1]:5070;branch=z9hG4bKx;received=192.0.2.1;rport=5071"
        )
        self.assertEqual(
            (via.protocol, via.transport, via.host, via.port),
            ("SIP/2.0", "UDP", "[2001:db8::9:1]", 5070),
        )
        self.assertEqual(
            (via.branch, via.received, via.rport, via.wants_rport),
            ("z9hG4bKx", "192.0.2.1", 5071, True),
        )

    def test_via_lws(self) -> None:
        """LWS inside sent-protocol and around the sent-by colon is allowed."""
        via = parse_via(
            "SIP  /   2.0  / TCP     spindle.example.com : 5060  ;  branch  =   z9hG4bK9ikj8"
        )
        self.assertEqual(
            str(via), "SIP/2.0/TCP spindle.example.com:5060;branch=z9hG4bK9ikj8"
        )

    def test_via_rport_request(self) -> None:
        """A valueless rport asks for RFC 3581 and has no value."""
        via = parse_via("SIP/2.0/UDP h;rport")
        self.assertEqual((via.rport, via.wants_rport), (None, True))
        self.assertEqual(str(via.with_params(received="192.0.2.9", rport="1024")),
                         "SIP/2.0/UDP h;rport=1024;received=192.0.2.9")  # fmt: skip

    def test_via_built(self) -> None:
        """A Via built from parts serialises."""
        self.assertEqual(str(Via("TLS", "example.com", 5061, {"branch": "z9hG4bK1"})),
                         "SIP/2.0/TLS example.com:5061;branch=z9hG4bK1")  # fmt: skip

    def test_bad_via(self) -> None:
        """Malformed Vias raise."""
        for text in [
            "SIP/2.0/UDP",
            "SIP/2.0 host",
            "SIP/2.0/UDP 192.0.2.15;;",
            "SIP/2.0/UDP a b",
            "SIP/2.0/UDP h:x",
        ]:
            with self.assertRaises(SIPParseError, msg=text):
                parse_via(text)

    def test_name_addr_quoted(self) -> None:
        """Quoted display names are unescaped."""
        value = parse_name_addr(
            '"J Rosenberg \\\\\\""       <sip:jdrosen@example.com> ; tag = 98asjd8'
        )
        self.assertEqual(
            (value.display_name, value.tag), ('J Rosenberg \\"', "98asjd8")
        )

    def test_name_addr_tokens(self) -> None:
        """Unquoted display names may be several tokens, with or without LWS before <."""
        self.assertEqual(
            parse_name_addr("A. G. Bell <sip:a@b>").display_name, "A. G. Bell"
        )
        self.assertEqual(parse_name_addr("caller<sip:a@b>").display_name, "caller")

    def test_addr_spec_params(self) -> None:
        """RFC 3261 §20.10: after a bare URI, ';' starts header parameters."""
        bare = parse_name_addr("sip:+1972@gw1.example.net;unknownparam;tag=5")
        self.assertEqual(
            (bare.uri.params, bare.params), ((), {"unknownparam": None, "tag": "5"})
        )
        enclosed = parse_name_addr("<sip:+1972@gw1.example.net;unknownparam>")
        self.assertEqual(
            (enclosed.uri.params, enclosed.params), ((("unknownparam", None),), {})
        )

    def test_name_addr_serialise(self) -> None:
        """str() quotes the display name and always uses <>."""
        value = parse_name_addr("sip:a@b;tag=1").with_tag("2")
        self.assertEqual(str(value), "<sip:a@b>;tag=2")
        value = parse_name_addr('"Say \\"hi\\"" <sip:a@b>')
        self.assertEqual(str(value), '"Say \\"hi\\"" <sip:a@b>')
        self.assertEqual(parse_name_addr(str(value)), value)

    def test_bad_name_addr(self) -> None:
        """RFC 4475 §3.1.2.6, 3.1.2.13-15 forms are rejected."""
        for text in [
            '"Mr. J. User <sip:j.user@example.com>',
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            '"Watson, Thomas" < sip:t.watson@example.org >',
            "Bell, Alexander <sip:a.g.bell@example.com>",
            "<sip:a@b",
            "<sip:a@b> junk",
            '"x" sip:a@b',
            "",
        ]:
            with self.assertRaises(SIPParseError, msg=text):
                parse_name_addr(text)

    def test_cseq(self) -> None:
        """Leading zeros and LWS are fine; overlarge numbers are not."""
        self.assertEqual(parse_cseq("0009  INVITE"), CSeq(9, "INVITE"))
        self.assertEqual(str(CSeq(4294967295, "ACK")), "4294967295 ACK")
        for text in [
            "36893488147419103232 REGISTER",
            "-1 INVITE",
            "1",
            "one INVITE",
            "1 INVITE x",
            "4294967296 X",
        ]:
            with self.assertRaises(SIPParseError, msg=text):
                parse_cseq(text)


class ParseMessageTests(SynchronousTestCase):
    """
    L{parse_message} reads datagrams per RFC 3261 §7 and §18.3.
    """

    def test_request(self) -> None:
        """A plain INVITE parses, with every accessor working."""
        message = parse_message(INVITE)
        assert isinstance(message, Request)
        self.assertEqual(
            (message.method, str(message.uri), message.version),
            ("INVITE", "sip:bob@biloxi.com", "SIP/2.0"),
        )
        self.assertEqual(message.top_via.branch, "z9hG4bK776asdhds")
        self.assertEqual(
            (message.from_.tag, message.to.tag, message.to.display_name),
            ("1928301774", None, "Bob"),
        )
        self.assertEqual(
            (message.call_id, message.cseq, message.max_forwards),
            ("a84b4c76e66710@pc33.atlanta.com", CSeq(314159, "INVITE"), 70),
        )
        self.assertEqual(
            [str(c.uri) for c in message.contacts], ["sip:alice@pc33.atlanta.com"]
        )
        self.assertEqual((message.content_length, message.body), (4, b"v=0\n"))

    def test_response(self) -> None:
        """A response keeps its status, reason phrase (even empty) and version."""
        data = b"SIP/2.0 180 Ringing\r\n" + request()[request().index(b"\r\n") + 2 :]
        message = parse_message(data)
        assert isinstance(message, Response)
        self.assertEqual((message.status, message.reason), (180, "Ringing"))
        empty = parse_message(
            b"SIP/2.0 100 \r\n" + request()[request().index(b"\r\n") + 2 :]
        )
        self.assertEqual(empty.reason, "")  # type: ignore[union-attr]

    def test_compact_and_folding(self) -> None:
        """Compact names, LWS before ':', and folded lines are understood."""
        data = request(
            b"s :",
            b"X-Long: one\r\n two\r\n\tthree",
            b"v: SIP  / 2.0\r\n /TCP h2 ; branch\r\n = z9hG4bK2",
        )
        message = parse_message(data)
        self.assertEqual(message.headers.get("Subject"), "")
        self.assertEqual(message.headers.get("x-long"), "one two three")
        self.assertEqual([(v.transport, v.host, v.branch) for v in message.vias],
                         [("UDP", "pc33.atlanta.com", "z9hG4bK776asdhds"), ("TCP", "h2", "z9hG4bK2")])  # fmt: skip

    def test_multiple_vias_in_one_line(self) -> None:
        """Vias may share a line and span several lines, in order."""
        data = request(
            b"Via: SIP/2.0/UDP b;branch=z9hG4bK2, SIP/2.0/TCP c;branch=z9hG4bK3",
            b"Via: SIP/2.0/TLS d",
        )
        self.assertEqual(
            [v.host for v in parse_message(data).vias],
            ["pc33.atlanta.com", "b", "c", "d"],
        )

    def test_leading_crlf_and_lf_only(self) -> None:
        """Leading CRLFs are skipped (§7.5) and LF-only messages are tolerated."""
        self.assertEqual(parse_message(b"\r\n\r\n" + INVITE).method, "INVITE")  # type: ignore[union-attr]
        lf = INVITE.replace(b"\r\n", b"\n")
        self.assertEqual(parse_message(lf).cseq.number, 314159)

    def test_utf8_and_binary_headers(self) -> None:
        """Non-ASCII header octets never raise a decode error and survive re-serialisation."""
        data = request(
            b"Subject: \xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82",
            b"X-Junk: \xff\xfe",
        )
        message = parse_message(data)
        self.assertEqual(message.headers.get("Subject"), "привет")
        self.assertIn(b"X-Junk: \xff\xfe\r\n", message.to_bytes())

    def test_unknown_method(self) -> None:
        """Unknown methods are valid; methods are case-sensitive."""
        message = parse_message(request(start=b"FOO sip:a@b SIP/2.0", method=b"FOO"))
        self.assertEqual(message.method, "FOO")  # type: ignore[union-attr]
        with self.assertRaises(SIPParseError):
            parse_message(request(start=b"invite sip:a@b SIP/2.0", method=b"INVITE"))

    def test_content_length_datagram(self) -> None:
        """Extra octets are dropped; a missing length takes the whole rest."""
        self.assertEqual(
            parse_message(request(b"Content-Length: 3", body=b"abcdef")).body, b"abc"
        )
        self.assertEqual(parse_message(request(body=b"abcdef")).body, b"abcdef")

    def test_content_length_errors(self) -> None:
        """Short bodies and negative, non-numeric or repeated lengths are 400s."""
        for header, body, reason in [
            (b"Content-Length: 10", b"abc", "Content-Length larger than message"),
            (b"Content-Length: -1", b"", "Malformed Content-Length"),
            (b"l: five", b"", "Malformed Content-Length"),
            (b"l: 1\r\nContent-Length: 2", b"ab", "Multiple Content-Length headers"),
        ]:
            with self.assertRaises(SIPParseError) as raised:
                parse_message(request(header, body=body))
            self.assertEqual(raised.exception.reason, reason)
            self.assertIsNotNone(raised.exception.request)

    def test_stream_requires_content_length(self) -> None:
        """Over a stream a missing Content-Length is an error (§18.3)."""
        with self.assertRaises(SIPParseError):
            parse_message(request(), stream=True)
        self.assertEqual(
            parse_message(request(b"Content-Length: 0"), stream=True).body, b""
        )

    def test_missing_headers(self) -> None:
        """Each mandatory header's absence is a 400 naming it."""
        full = request().split(b"\r\n")
        for index, name in [
            (1, "Via"),
            (2, "To"),
            (3, "From"),
            (4, "Call-ID"),
            (5, "CSeq"),
        ]:
            data = b"\r\n".join(full[:index] + full[index + 1 :])
            with self.assertRaises(SIPParseError) as raised:
                parse_message(data)
            self.assertEqual(raised.exception.reason, f"Missing {name} header")
            self.assertEqual(raised.exception.request is None, name == "Via")

    def test_scalar_limits(self) -> None:
        """Max-Forwards above 255 and non-numeric values are rejected."""
        for header in [b"Max-Forwards: 256", b"Max-Forwards: -1", b"Max-Forwards: x"]:
            with self.assertRaises(SIPParseError):
                parse_message(request(header))
        self.assertEqual(parse_message(request(b"Max-Forwards: 0068")).max_forwards, 68)

    def test_expires(self) -> None:
        """Expires parses lazily and raises only when read."""
        message = parse_message(request(b"Expires: 99999999999999"))
        with self.assertRaises(SIPParseError):
            message.expires  # noqa: B018
        self.assertEqual(parse_message(request(b"Expires: 60")).expires, 60)

    def test_start_line_errors(self) -> None:
        """Extra SP or other junk in the Request-Line is a 400 with the request attached."""
        for start in [b"OPTIONS  sip:a@b SIP/2.0", b"OPTIONS sip:a@b SIP/2.0 ", b"OPTIONS sip:a@b; lr SIP/2.0",
                      b"OPTIONS <sip:a@b> SIP/2.0", b"OPTIONS sip:a@b?Route=x SIP/2.0"]:  # fmt: skip
            with self.assertRaises(SIPParseError) as raised:
                parse_message(request(start=start))
            self.assertIsNotNone(raised.exception.request, start)
        for start in [
            b"OPTIONS sip:a@b",
            b"OPTIONS",
            b"SIP/2.0 abc OK",
            b"SIP/2.0 1000 Big",
            b"",
        ]:
            with self.assertRaises(SIPParseError) as raised:
                parse_message(request(start=start))
            self.assertIsNone(raised.exception.request, start)

    def test_every_rejection_is_malformed_message(self) -> None:
        """A fault found by a header or URI parser still comes out as MalformedMessage."""
        with self.assertRaises(MalformedMessage) as raised:
            parse_message(request(b"Max-Forwards: many"))
        self.assertEqual(raised.exception.request.method, "OPTIONS")  # type: ignore[union-attr]
        with self.assertRaises(MalformedMessage) as raised:
            parse_message(b"SIP/2.0 200 OK\r\nCSeq: one\r\n\r\n")
        self.assertIsNone(raised.exception.request)

    def test_version(self) -> None:
        """Any version but SIP/2.0 raises UnsupportedVersion (505) with the request."""
        with self.assertRaises(UnsupportedVersion) as raised:
            parse_message(request(start=b"OPTIONS sip:a@b SIP/7.0"))
        self.assertEqual(
            (raised.exception.status, raised.exception.request.method), (505, "OPTIONS")
        )  # type: ignore[union-attr]

    def test_empty_and_garbage(self) -> None:
        """Empty input and lines without a colon raise SIPParseError."""
        for data in [
            b"",
            b"\r\n\r\n",
            b"\x00\xff",
            request(b"Foobar roobar"),
            b" Via: x\r\n\r\n",
        ]:
            with self.assertRaises(SIPParseError):
                parse_message(data)


class SerialiseTests(SynchronousTestCase):
    """
    L{Request.to_bytes} and L{Response.to_bytes}.
    """

    def test_byte_exact(self) -> None:
        """A canonical message with Content-Length round-trips byte for byte."""
        self.assertEqual(parse_message(INVITE).to_bytes(), INVITE)

    def test_round_trip_normalises(self) -> None:
        """Compact, folded input re-parses to equal headers and body."""
        message = parse_message(
            request(b"i2: x", b"m: <sip:a@b>,\r\n <sip:c@d>", b"l: 5", body=b"hello")
        )
        again = parse_message(message.to_bytes())
        self.assertEqual((again.headers, again.body), (message.headers, message.body))
        self.assertIn(b"\r\nContact: <sip:a@b>, <sip:c@d>\r\n", message.to_bytes())

    def test_content_length_follows_body(self) -> None:
        """Content-Length is always written, from the body."""
        message = parse_message(INVITE)
        message.body = b"longer body"
        self.assertIn(b"\r\nContent-Length: 11\r\n", message.to_bytes())
        built = Response(200, headers=Headers([("Call-ID", "x")]))
        self.assertEqual(
            built.to_bytes(),
            b"SIP/2.0 200 OK\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n",
        )

    def test_built_request(self) -> None:
        """A request built from parts serialises its Request-URI."""
        message = Request(
            "OPTIONS", parse_uri("sip:a@b"), Headers([("Max-Forwards", "70")])
        )
        self.assertEqual(
            message.to_bytes(),
            b"OPTIONS sip:a@b SIP/2.0\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        )


class MakeResponseTests(SynchronousTestCase):
    """
    L{make_response} follows RFC 3261 §8.2.6.
    """

    def test_copies(self) -> None:
        """All Vias in order, From, To, Call-ID and CSeq are copied; others are not."""
        message = parse_message(
            request(b"Via: SIP/2.0/UDP b, SIP/2.0/UDP c", b"Subject: x")
        )
        response = make_response(message, 486)  # type: ignore[arg-type]
        self.assertEqual((response.status, response.reason), (486, "Busy Here"))
        self.assertEqual(
            [v.host for v in response.vias], ["pc33.atlanta.com", "b", "c"]
        )
        self.assertEqual([n for n, _ in response.headers],
                         ["Via", "Via", "From", "To", "Call-ID", "CSeq"])  # fmt: skip
        self.assertEqual(
            (response.call_id, response.cseq, response.from_.tag),
            ("abc@pc33", CSeq(1, "OPTIONS"), "1"),
        )

    def test_to_tag(self) -> None:
        """A To tag is added only when To has none."""
        message = parse_message(request())
        self.assertEqual(make_response(message, 200, to_tag="xyz").to.tag, "xyz")  # type: ignore[arg-type]
        tagged = parse_message(
            request(start=b"BYE sip:a@b SIP/2.0", method=b"BYE").replace(
                b"<sip:bob@biloxi.com>", b"<sip:bob@biloxi.com>;tag=old"
            )
        )
        self.assertEqual(make_response(tagged, 200, to_tag="new").to.tag, "old")  # type: ignore[arg-type]

    def test_timestamp_on_100_only(self) -> None:
        """Timestamp is copied into a 100 Trying (§8.2.6.1) and nowhere else."""
        message = parse_message(request(b"Timestamp: 54"))
        self.assertEqual(make_response(message, 100).headers.get("Timestamp"), "54")  # type: ignore[arg-type]
        self.assertNotIn("Timestamp", make_response(message, 180).headers)  # type: ignore[arg-type]

    def test_partial_request(self) -> None:
        """The partial request of a SIPParseError can be answered with 400."""
        with self.assertRaises(SIPParseError) as raised:
            parse_message(request(b"To: <sip:other@example.com>"))
        assert raised.exception.request is not None
        response = make_response(
            raised.exception.request, 400, raised.exception.reason, to_tag="t"
        )
        self.assertEqual(
            (response.reason, len(response.headers.get_all("To"))),
            ("Multiple To headers", 1),
        )
        self.assertEqual(parse_message(response.to_bytes()).status, 400)  # type: ignore[union-attr]

    def test_reason_phrases(self) -> None:
        """Every RFC 3261 code and the extension codes have a phrase."""
        codes = {100, 180, 181, 182, 183, 200, 300, 301, 302, 305, 380, 400, 401, 402, 403, 404, 405,
                 406, 407, 408, 410, 413, 414, 415, 416, 420, 421, 422, 423, 429, 480, 481, 482, 483,
                 484, 485, 486, 487, 488, 489, 491, 493, 494, 500, 501, 502, 503, 504, 505, 513, 600,
                 603, 604, 606}  # fmt: skip
        self.assertEqual(codes - REASON_PHRASES.keys(), set())
        self.assertEqual(Response(499).reason, "Client Error")


class StreamFramerTests(SynchronousTestCase):
    """
    L{StreamFramer} cuts streams by Content-Length (RFC 3261 §18.3).
    """

    def feed(
        self, framer: StreamFramer, data: bytes, size: int
    ) -> list[bytes | KeepAlive]:
        """Feed ``data`` in chunks of ``size`` octets."""
        out: list[bytes | KeepAlive] = []
        for i in range(0, len(data), size):
            out += framer.feed(data[i : i + size])
        return out

    def test_odd_chunks(self) -> None:
        """Messages fed 1, 7 or 13 octets at a time come out whole."""
        other = request(b"Content-Length: 5", body=b"hello")
        for size in (1, 7, 13):
            self.assertEqual(
                self.feed(StreamFramer(), INVITE + other + INVITE, size),
                [INVITE, other, INVITE],
            )

    def test_keepalive(self) -> None:
        """CRLFCRLF is a ping, a lone CRLF before a message a pong (RFC 5626 §3.5.1)."""
        for size in (1, 3, 100):
            out = self.feed(
                StreamFramer(),
                b"\r\n\r\n" + INVITE + b"\r\n" + INVITE + b"\r\n\r\n",
                size,
            )
            self.assertEqual(
                out, [KeepAlive.PING, INVITE, KeepAlive.PONG, INVITE, KeepAlive.PING]
            )

    def test_partial_ping_waits(self) -> None:
        """A lone CRLF is held until it is known not to start a ping."""
        framer = StreamFramer()
        self.assertEqual(framer.feed(b"\r\n"), [])
        self.assertEqual(framer.feed(b"\r\n"), [KeepAlive.PING])

    def test_waits_for_body(self) -> None:
        """A message whose body has not all arrived is held (RFC 4475 clerr over TCP)."""
        framer = StreamFramer()
        self.assertEqual(framer.feed(INVITE[:-1]), [])
        self.assertEqual(framer.feed(INVITE[-1:]), [INVITE])

    def test_too_large(self) -> None:
        """Headers or a declared body beyond max_size are an error."""
        with self.assertRaises(SIPParseError):
            StreamFramer(max_size=100).feed(
                b"INVITE sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * 20
            )
        with self.assertRaises(SIPParseError):
            StreamFramer(max_size=1000).feed(request(b"Content-Length: 5000"))

    def test_framing_errors(self) -> None:
        """Missing, negative or conflicting Content-Length breaks framing."""
        for headers in [
            (),
            (b"Content-Length: -999",),
            (b"Content-Length: 13", b"l: 5"),
        ]:
            with self.assertRaises(SIPParseError, msg=repr(headers)):
                StreamFramer().feed(request(*headers))

    def test_parsed_after_framing(self) -> None:
        """Framed messages parse in stream mode."""
        (message,) = StreamFramer().feed(INVITE)
        assert isinstance(message, bytes)
        self.assertEqual(parse_message(message, stream=True).to_bytes(), INVITE)
