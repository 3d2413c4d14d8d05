"""
Tests for L{pbx.sip.uri}: parsing, serialising and comparing URIs.
"""

from __future__ import annotations

from attrs import evolve

from twisted.trial.unittest import SynchronousTestCase

from pbx.sip.uri import URI, SIPParseError, parse_hostport, parse_uri, unescape


class ParseSIPURITests(SynchronousTestCase):
    """
    L{parse_uri} splits SIP and SIPS URIs into their RFC 3261 §19.1.1 parts.
    """

    def test_components(self) -> None:
        """Every component of a full SIP URI is found."""
        uri = parse_uri(
            "sip:alice:secret@atlanta.com:5070;transport=tcp;lr?subject=x&a=b"
        )
        self.assertEqual(
            (uri.scheme, uri.user, uri.password, uri.host, uri.port),
            ("sip", "alice", "secret", "atlanta.com", 5070),
        )
        self.assertEqual(uri.params, (("transport", "tcp"), ("lr", None)))
        self.assertEqual(uri.headers, (("subject", "x"), ("a", "b")))

    def test_host_only(self) -> None:
        """A URI without user part has user None and no port by default."""
        uri = parse_uri("sip:example.com")
        self.assertEqual((uri.user, uri.host, uri.port), (None, "example.com", None))

    def test_sips(self) -> None:
        """The sips scheme is recognised and is a SIP URI."""
        uri = parse_uri("SIPS:bob@biloxi.com")
        self.assertEqual((uri.scheme, uri.is_sip, uri.user), ("sips", True, "bob"))

    def test_round_trip_exact(self) -> None:
        """str() of a parsed URI is exactly the text it came from."""
        for text in [
            "sip:alice@atlanta.com",
            "SIP:ALICE@AtLanTa.CoM;Transport=udp",
            "sip:user;par=u%40example.net@example.com",
            "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31",
            "sip:[2001:db8::10]:05070",
            "tel:+1-201-555-0123;phone-context=example.com",
            "urn:service:sos",
        ]:
            self.assertEqual(str(parse_uri(text)), text)

    def test_user_part_with_semicolon(self) -> None:
        """RFC 4475 §3.1.1.9: ';par=' before the '@' belongs to the user part."""
        uri = parse_uri("sip:user;par=u%40example.net@example.com")
        self.assertEqual(
            (uri.user, uri.host, uri.params),
            ("user;par=u%40example.net", "example.com", ()),
        )

    def test_unusual_user_part(self) -> None:
        """RFC 4475 §3.1.1.2: user parts may hold ?,;*:&+$ and a password."""
        uri = parse_uri(
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com"
        )
        self.assertEqual(uri.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        self.assertEqual(uri.password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        self.assertEqual(uri.host, "example.com")

    def test_param_lookup(self) -> None:
        """param() and has_param() ignore case and tell valueless from absent."""
        uri = parse_uri("sip:a@b;LR;Transport=TCP")
        self.assertEqual((uri.has_param("lr"), uri.param("lr")), (True, None))
        self.assertEqual(uri.param("transport"), "TCP")
        self.assertFalse(uri.has_param("maddr"))

    def test_escaped_param_name(self) -> None:
        """RFC 4475 §3.1.1.3: an escaped 'lr' parameter name is 'lr'."""
        self.assertTrue(parse_uri("sip:a@b;%6C%72").has_param("lr"))

    def test_malformed(self) -> None:
        """Text that is not a URI raises SIPParseError."""
        for text in [
            "",
            "alice@example.com",
            "sip:",
            "sip:@example.com",
            "sip:user@example.com; lr",
            "sip:user@exa mple.com",
            "<sip:user@example.com>",
            "sip:user@example.com:",
            "sip:user@example.com:65536",
            "sip:user@example.com:5o60",
            "sip:user@example.com;",
            "sip:user@example.com;;lr",
            "sip:user@",
            "sip:user@[2001:db8::1",
            "sip:user@[nonsense]",
            "tel:",
            "tel:call me",
            "1abc:def",
        ]:
            with self.assertRaises(SIPParseError, msg=text):
                parse_uri(text)

    def test_evolve_reserialises(self) -> None:
        """A URI changed with attrs.evolve is written from its new parts."""
        uri = evolve(parse_uri("sip:alice@atlanta.com;lr"), port=5070)
        self.assertEqual(str(uri), "sip:alice@atlanta.com:5070;lr")

    def test_built(self) -> None:
        """A URI built from parts serialises in RFC 3261 order."""
        uri = URI("sips", user="bob", host="[2001:db8::1]", port=5061,
                  params=(("transport", "tls"), ("lr", None)), headers=(("Subject", "hi"),))  # fmt: skip
        self.assertEqual(
            str(uri), "sips:bob@[2001:db8::1]:5061;transport=tls;lr?Subject=hi"
        )
        self.assertEqual(parse_uri(str(uri)), uri)


class IPv6Tests(SynchronousTestCase):
    """
    IPv6 references in URIs (RFC 3261 §19.1.1, RFC 5118).
    """

    def test_reference(self) -> None:
        """The host keeps its brackets; host_address drops them."""
        uri = parse_uri("sip:caller@[2001:db8::1]:5070")
        self.assertEqual(
            (uri.host, uri.host_address, uri.port),
            ("[2001:db8::1]", "2001:db8::1", 5070),
        )
        self.assertEqual(uri.hostport, "[2001:db8::1]:5070")

    def test_ambiguous_port(self) -> None:
        """RFC 5118 §4.3: a port inside the brackets is part of the address."""
        uri = parse_uri("sip:[2001:db8::10:5070]")
        self.assertEqual((uri.host, uri.port), ("[2001:db8::10:5070]", None))

    def test_unbracketed(self) -> None:
        """RFC 5118 §4.2: an IPv6 address without brackets is rejected."""
        with self.assertRaises(SIPParseError):
            parse_uri("sip:2001:db8::10")

    def test_three_colons(self) -> None:
        """RFC 5118 §4.10: '2001:db8:::192.0.2.1' is tolerated and equals '::'."""
        three = parse_uri("sip:user@[2001:db8:::192.0.2.1]")
        self.assertTrue(three.equivalent(parse_uri("sip:user@[2001:db8::192.0.2.1]")))

    def test_ipv4_mapped(self) -> None:
        """RFC 5118 §4.9: IPv4-mapped addresses parse."""
        self.assertEqual(
            parse_uri("sip:ted@[::ffff:192.0.2.2]").host, "[::ffff:192.0.2.2]"
        )

    def test_hostport(self) -> None:
        """parse_hostport handles names, IPv4 and IPv6 with and without port."""
        self.assertEqual(parse_hostport("example.com"), ("example.com", None))
        self.assertEqual(parse_hostport("192.0.2.1:5060"), ("192.0.2.1", 5060))
        self.assertEqual(parse_hostport("[::1]:5060"), ("[::1]", 5060))
        with self.assertRaises(SIPParseError):
            parse_hostport("[::1]x")


class TelAndOtherSchemeTests(SynchronousTestCase):
    """
    tel URIs (RFC 3966) and opaque absolute URIs.
    """

    def test_tel(self) -> None:
        """The number is the user part; parameters are parsed."""
        uri = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
        self.assertEqual(
            (uri.scheme, uri.user, uri.host), ("tel", "+1-201-555-0123", "")
        )
        self.assertEqual(uri.param("phone-context"), "example.com")
        self.assertFalse(uri.is_sip)

    def test_tel_equivalence(self) -> None:
        """RFC 3966 §4: visual separators and parameter order do not matter."""
        a = parse_uri("tel:+1-201-555-0123;a=1;b=2")
        self.assertTrue(a.equivalent(parse_uri("tel:+1(201)5550123;B=2;a=1")))
        self.assertFalse(a.equivalent(parse_uri("tel:+1-201-555-0124;a=1;b=2")))
        self.assertFalse(a.equivalent(parse_uri("tel:+1-201-555-0123;a=1")))

    def test_opaque(self) -> None:
        """RFC 4475 §3.3.2: unknown schemes parse as opaque URIs."""
        uri = parse_uri("nobodyKnowsThisScheme:totallyopaquecontent")
        self.assertEqual(
            (uri.scheme, uri.opaque, uri.is_sip),
            ("nobodyknowsthisscheme", "totallyopaquecontent", False),
        )
        self.assertEqual(parse_uri("soap.beep://192.0.2.103:3002").scheme, "soap.beep")
        self.assertEqual(str(URI("urn", opaque="service:sos")), "urn:service:sos")


class EquivalenceTests(SynchronousTestCase):
    """
    L{URI.equivalent} follows RFC 3261 §19.1.4.
    """

    def assertEquivalent(self, a: str, b: str, expected: bool = True) -> None:
        """Check equivalence both ways."""
        ua, ub = parse_uri(a), parse_uri(b)
        self.assertEqual(
            (ua.equivalent(ub), ub.equivalent(ua)), (expected, expected), f"{a} vs {b}"
        )

    def test_rfc_equivalent_examples(self) -> None:
        """The equivalent pairs listed in RFC 3261 §19.1.4 compare equal."""
        self.assertEquivalent(
            "sip:%61lice@atlanta.com;transport=TCP",
            "sip:alice@AtLanTa.CoM;Transport=tcp",
        )
        self.assertEquivalent(
            "sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"
        )
        self.assertEquivalent(
            "sip:carol@chicago.com;security=on", "sip:carol@chicago.com;newparam=5"
        )
        self.assertEquivalent(
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
        )
        self.assertEquivalent(
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
        )

    def test_rfc_non_equivalent_examples(self) -> None:
        """The non-equivalent sets listed in RFC 3261 §19.1.4 differ."""
        for a, b in [
            (
                "SIP:ALICE@AtLanTa.CoM;Transport=udp",
                "sip:alice@AtLanTa.CoM;Transport=UDP",
            ),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
            ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
            ("sip:bob@phone21.boxesbybob.example.com", "sip:bob@192.0.2.4"),
            ("sip:bob@biloxi.com", "sips:bob@biloxi.com"),
            ("sip:a@b;maddr=x", "sip:a@b"),
            ("sip:a@b;user=phone", "sip:a@b"),
        ]:
            self.assertEquivalent(a, b, False)

    def test_unescape_once(self) -> None:
        """RFC 4475 §3.1.1.3: %25%34%31 unescapes once to %41, never to A."""
        self.assertEquivalent(
            "sip:c@h;name=v%61lue%25%34%31", "sip:c@h;name=value%2541"
        )
        self.assertEquivalent(
            "sip:c@h;name=v%61lue%25%34%31", "sip:c@h;name=valueA", False
        )
        self.assertEquivalent("sip:%75se%72@example.com", "sip:user@example.com")

    def test_reserved_escapes_significant(self) -> None:
        """An escaped reserved character is not the character itself."""
        self.assertEquivalent("sip:a%3Bb@example.com", "sip:a;b@example.com", False)
        self.assertEquivalent("sip:a%3bb@example.com", "sip:a%3Bb@example.com")

    def test_null_escapes(self) -> None:
        """RFC 4475 §3.1.1.4: %00 and %00%00 are different users."""
        self.assertEquivalent(
            "sip:%00@host5.example.com", "sip:%00%00@host5.example.com", False
        )

    def test_ipv6_forms(self) -> None:
        """IPv6 hosts compare as addresses, not text."""
        self.assertEquivalent("sip:a@[2001:DB8:0::1]", "sip:a@[2001:db8::1]")

    def test_structural_equality_is_textual(self) -> None:
        """== compares the escaped parts, unlike equivalent()."""
        self.assertNotEqual(parse_uri("sip:%75ser@h"), parse_uri("sip:user@h"))
        self.assertEqual(parse_uri("sip:user@h"), URI("sip", user="user", host="h"))


class UnescapeTests(SynchronousTestCase):
    """
    L{unescape} decodes escapes exactly once and never raises.
    """

    def test_once(self) -> None:
        """%2541 becomes %41."""
        self.assertEqual(unescape("value%2541"), "value%41")

    def test_nul_kept(self) -> None:
        """NUL characters survive (no C-string truncation)."""
        self.assertEqual(unescape("null-%00-null"), "null-\x00-null")

    def test_utf8(self) -> None:
        """Escaped UTF-8 decodes to text."""
        self.assertEqual(unescape("%C3%A9t%C3%A9"), "été")

    def test_malformed_escape_kept(self) -> None:
        """A % not followed by two hex digits stays as it is."""
        self.assertEqual(unescape("%Z%45%4"), "%ZE%4")
