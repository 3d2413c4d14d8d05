"""
The SIP torture messages of RFC 4475 and RFC 5118 through L{parse_message}.

Expected outcomes come from ``tests/conformance/*/EXPECTED.md`` and
``rfc4475/verdicts.tsv``.  Where a verdict leaves the
choice to the implementation ("either"), the test pins the choice we made.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pbx.sip.framing import StreamFramer
from pbx.sip.message import (
    Request,
    Response,
    SIPParseError,
    UnsupportedVersion,
    parse_message,
)
from pbx.sip.uri import parse_uri, unescape

from support.paths import CONFORMANCE

RFC4475 = CONFORMANCE / "rfc4475"
RFC5118 = CONFORMANCE / "rfc5118"
KNOWN_METHODS = {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "MESSAGE",
                 "INFO", "PRACK", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER", "PUBLISH"}  # fmt: skip


def exercise(message: Request | Response) -> None:
    """Read every accessor the core uses; only SIPParseError may escape."""
    message.vias  # noqa: B018
    message.top_via  # noqa: B018
    message.from_  # noqa: B018
    message.to  # noqa: B018
    message.cseq  # noqa: B018
    message.call_id  # noqa: B018
    message.contacts  # noqa: B018
    message.contact_wildcard  # noqa: B018
    message.max_forwards  # noqa: B018
    message.routes  # noqa: B018
    message.record_routes  # noqa: B018
    message.content_length  # noqa: B018
    message.to_bytes()


class _TortureCase(SynchronousTestCase):
    """Helpers to read the conformance files."""

    directory = RFC4475

    def data(self, name: str) -> bytes:
        """The bytes of one message file."""
        return (self.directory / name).read_bytes()

    def parse(self, name: str) -> Request | Response:
        """Parse a message that must be accepted, and exercise it."""
        message = parse_message(self.data(name))
        exercise(message)
        return message

    def request(self, name: str) -> Request:
        """Parse a message that must be an accepted request."""
        message = self.parse(name)
        assert isinstance(message, Request), name
        return message

    def rejected(self, name: str, data: bytes | None = None) -> SIPParseError:
        """Parse a message that must be rejected with a response (400/505)."""
        with self.assertRaises(SIPParseError) as raised:
            parse_message(self.data(name) if data is None else data)
        self.assertIsInstance(raised.exception.request, Request, name)
        return raised.exception

    def verdicts(self) -> dict[str, str]:
        """File name to verdict class, from verdicts.tsv."""
        lines = (self.directory / "verdicts.tsv").read_text().splitlines()
        return dict(line.split("\t") for line in lines if line.strip())


class RFC4475VerdictTests(_TortureCase):
    """
    Every RFC 4475 message meets the verdict class of verdicts.tsv.
    """

    def files(self, *classes: str) -> list[str]:
        """Files whose verdict is one of ``classes``."""
        return sorted(
            name for name, verdict in self.verdicts().items() if verdict in classes
        )

    def test_verdicts_cover_files(self) -> None:
        """verdicts.tsv names every message file except test.dat."""
        on_disk = {p.name for p in self.directory.glob("*.dat")} - {"test.dat"}
        self.assertEqual(set(self.verdicts()), on_disk)

    def test_accept(self) -> None:
        """Every 'accept' file parses and all its accessors work."""
        failures = []
        for name in self.files("accept"):
            try:
                self.parse(name)
            except SIPParseError as e:
                failures.append((name, e.reason))
        self.assertEqual(failures, [])
        self.assertEqual(len(self.files("accept")), 23)

    def test_responses(self) -> None:
        """Every 'response' file parses as a response."""
        for name in self.files("response"):
            self.assertIsInstance(self.parse(name), Response, name)

    def test_reject(self) -> None:
        """Every 'reject' file raises SIPParseError carrying the request to answer."""
        names = self.files("reject")
        self.assertEqual(len(names), 16)
        for name in names:
            self.rejected(name)

    def test_drop(self) -> None:
        """'drop' files are responses: rejected with nothing to answer, or parsed."""
        for name in self.files("drop"):
            try:
                message = parse_message(self.data(name))
            except SIPParseError as e:
                self.assertIsNone(e.request, name)
            else:
                self.assertIsInstance(message, Response, name)

    def test_either(self) -> None:
        """'either' files parse, or are rejected with a request to answer 400."""
        outcome = {}
        for name in self.files("either"):
            try:
                self.parse(name)
            except SIPParseError:
                self.rejected(name)
                outcome[name] = "reject"
            else:
                outcome[name] = "accept"
        # Our choices: tolerate nothing in the Request-Line, ignore the Date,
        # leave the branch-less magic cookie to transaction matching.
        self.assertEqual(outcome, {
            "lwsstart.dat": "reject", "trws.dat": "reject", "escruri.dat": "reject",
            "baddate.dat": "accept", "badbranch.dat": "accept",
        })  # fmt: skip

    def test_unlisted(self) -> None:
        """test.dat (no section of the RFC) is rejected without crashing."""
        with self.assertRaises(SIPParseError) as raised:
            parse_message(self.data("test.dat"))
        self.assertIsNone(raised.exception.request)


class RFC4475ValidTests(_TortureCase):
    """
    RFC 4475 §3.1.1: valid messages, and what they must parse to.
    """

    def test_wsinv(self) -> None:
        """§3.1.1.1: folding, LWS, compact forms, leading zeros, escaped quotes."""
        message = self.request("wsinv.dat")
        self.assertEqual(str(message.to.uri), "sip:vivekg@chair-dnrc.example.com")
        self.assertEqual(message.to.tag, "1918181833n")
        self.assertEqual(
            (message.from_.display_name, message.from_.tag),
            ('J Rosenberg \\"', "98asjd8"),
        )
        self.assertEqual(
            (message.max_forwards, message.cseq.number, message.cseq.method),
            (68, 9, "INVITE"),
        )
        self.assertEqual([(v.transport, v.host, v.branch) for v in message.vias], [
            ("UDP", "192.0.2.2", "390skdjuw"),
            ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
            ("UDP", "192.168.255.111", "z9hG4bK30239"),
        ])  # fmt: skip
        self.assertEqual(message.headers.get("Subject"), "")
        self.assertEqual(
            message.headers.get_all("UnknownHeaderWithUnusualValue"), [";;,,;;,;"]
        )
        self.assertEqual(
            message.headers.get("NewFangledHeader"),
            "newfangled value continued newfangled value",
        )
        (contact,) = message.contacts
        self.assertEqual(
            (contact.display_name, contact.params),
            (
                'Quoted string ""',
                {"newparam": "newvalue", "secondparam": None, "q": "0.33"},
            ),
        )
        self.assertEqual(message.routes[0].uri.param("unknownwith"), "value")
        self.assertEqual(len(message.body), 150)

    def test_intmeth(self) -> None:
        """§3.1.1.2: an unknown token method (answer 501) and odd but legal values."""
        message = self.request("intmeth.dat")
        self.assertEqual(message.method, "!interesting-Method0123456789_*+`.%indeed'~")
        self.assertNotIn(message.method, KNOWN_METHODS)
        self.assertEqual(message.to.display_name, "BEL:\x07 NUL:\x00 DEL:\x7f")
        self.assertEqual(message.from_.display_name, "token1~` token2'+_ token3*%!.-")
        self.assertEqual(message.from_.tag, "_token~1'+`*%!-.")
        self.assertEqual(
            message.call_id, "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
        )
        self.assertEqual(
            message.headers.get("extensionHeader-!.%*+_`'~"), "\ufeff大停電"
        )

    def test_esc01(self) -> None:
        """§3.1.1.3: escapes are kept, and compared after unescaping once."""
        message = self.request("esc01.dat")
        self.assertEqual(unescape(message.uri.user or ""), "sips:user@example.com")
        self.assertTrue(message.to.uri.equivalent(parse_uri("sip:user@example.com")))
        self.assertEqual(unescape(message.from_.uri.user or ""), "I have spaces")
        contact = message.contacts[0].uri
        self.assertTrue(contact.has_param("lr"))
        self.assertTrue(
            contact.equivalent(
                parse_uri("sip:caller@host5.example.net;lr;name=value%2541")
            )
        )
        self.assertFalse(
            contact.equivalent(parse_uri("sip:caller@host5.example.net;lr;name=valueA"))
        )

    def test_escnull(self) -> None:
        """§3.1.1.4: %00 does not truncate; the two contacts are distinct."""
        message = self.request("escnull.dat")
        self.assertEqual(unescape(message.to.uri.user or ""), "null-\x00-null")
        first, second = message.contacts
        self.assertFalse(first.uri.equivalent(second.uri))

    def test_esc02(self) -> None:
        """§3.1.1.5: % is literal in methods, display names and header names."""
        message = self.request("esc02.dat")
        self.assertEqual(message.method, "RE%47IST%45R")
        self.assertNotIn(message.method, KNOWN_METHODS)  # so: 501
        self.assertEqual(message.to.display_name, "%Z%45")
        self.assertEqual(len(message.contacts), 2)
        self.assertEqual(
            message.headers.get("C%6Fntact"), "<sip:alias2@host2.example.com>"
        )
        self.assertEqual(message.top_via.branch, "z9hG4bK209%fzsnel234")

    def test_lwsdisp(self) -> None:
        """§3.1.1.6: no LWS between display name and < is tolerated."""
        self.assertEqual(self.request("lwsdisp.dat").from_.display_name, "caller")

    def test_longreq(self) -> None:
        """§3.1.1.7: long values and 34 Vias in mixed-case spellings."""
        message = self.request("longreq.dat")
        self.assertEqual(len(message.vias), 34)
        self.assertEqual(message.vias[-1].received, "192.0.2.5")
        self.assertEqual(message.to.uri.port, 6000)
        self.assertEqual(len(message.body), 150)

    def test_dblreq(self) -> None:
        """§3.1.1.8: only the first message of the datagram counts."""
        message = self.request("dblreq.dat")
        self.assertEqual((message.method, message.body), ("REGISTER", b""))
        self.assertEqual(message.call_id, "dblreq.0ha0isndaksdj99sdfafnl3lk233412")

    def test_semiuri(self) -> None:
        """§3.1.1.9: ';par=' is in the user part, not a URI parameter."""
        uri = self.request("semiuri.dat").uri
        self.assertEqual(
            (uri.user, uri.host, uri.params),
            ("user;par=u%40example.net", "example.com", ()),
        )

    def test_transports(self) -> None:
        """§3.1.1.10: unknown transports are legal."""
        vias = self.request("transports.dat").vias
        self.assertEqual(
            [v.transport for v in vias], ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
        )

    def test_mpart01(self) -> None:
        """§3.1.1.11: a binary multipart body is framed by octet count."""
        message = self.request("mpart01.dat")
        self.assertEqual(len(message.body), 553)
        self.assertIn(b"\x00", message.body)
        self.assertTrue(message.body.endswith(b"--7a9cbec02ceef655--\r\n"))

    def test_unreason(self) -> None:
        """§3.1.1.12: a UTF-8 reason phrase."""
        message = self.parse("unreason.dat")
        assert isinstance(message, Response)
        self.assertEqual((message.status, message.reason[:14]), (200, "= 2**3 * 5**2 "))
        self.assertIn("простое", message.reason)

    def test_noreason(self) -> None:
        """§3.1.1.13: an empty reason phrase."""
        message = self.parse("noreason.dat")
        assert isinstance(message, Response)
        self.assertEqual((message.status, message.reason), (100, ""))
        self.assertEqual(message.to_bytes()[:13], b"SIP/2.0 100 \r")


class RFC4475InvalidTests(_TortureCase):
    """
    RFC 4475 §3.1.2: invalid messages are rejected for the right reason.
    """

    def test_badinv01(self) -> None:
        """§3.1.2.1: empty Via parameters."""
        self.assertIn("Via", self.rejected("badinv01.dat").reason)

    def test_clerr(self) -> None:
        """§3.1.2.2: 400 over UDP; over TCP the framer waits for more octets."""
        self.assertEqual(
            self.rejected("clerr.dat").reason, "Content-Length larger than message"
        )
        self.assertEqual(StreamFramer().feed(self.data("clerr.dat")), [])

    def test_ncl(self) -> None:
        """§3.1.2.3: a negative Content-Length; over TCP framing is lost."""
        self.assertEqual(self.rejected("ncl.dat").reason, "Malformed Content-Length")
        with self.assertRaises(SIPParseError):
            StreamFramer().feed(self.data("ncl.dat"))

    def test_scalar02(self) -> None:
        """§3.1.2.4: CSeq above 2**32-1."""
        self.assertIn("CSeq", self.rejected("scalar02.dat").reason)

    def test_scalarlg(self) -> None:
        """§3.1.2.5: a response with overlarge values is dropped, not answered."""
        with self.assertRaises(SIPParseError) as raised:
            parse_message(self.data("scalarlg.dat"))
        self.assertIsNone(raised.exception.request)

    def test_addresses(self) -> None:
        """§3.1.2.6, 3.1.2.13-15: broken name-addrs in To, From or Contact."""
        for name, header in [("quotbal.dat", "To"), ("regbadct.dat", "Contact"),
                             ("badaspec.dat", "To"), ("baddn.dat", "From")]:  # fmt: skip
            self.assertIn(
                f"Malformed {header} header", self.rejected(name).reason, name
            )

    def test_baddn_with_final_crlf(self) -> None:
        """§3.1.2.15: rejected with or without the missing empty line."""
        self.rejected("baddn.dat", self.data("baddn.dat") + b"\r\n")

    def test_request_line(self) -> None:
        """§3.1.2.7-11: <>, LWS, extra SP and headers in the Request-URI."""
        for name in [
            "ltgtruri.dat",
            "lwsruri.dat",
            "lwsstart.dat",
            "trws.dat",
            "escruri.dat",
        ]:
            self.assertIn("Request-", self.rejected(name).reason, name)

    def test_baddate(self) -> None:
        """§3.1.2.12: the Date is opaque to the parser (reject or ignore)."""
        self.assertEqual(
            self.request("baddate.dat").headers.get("Date"),
            "Fri, 01 Jan 2010 16:00:00 EST",
        )

    def test_badvers(self) -> None:
        """§3.1.2.16: SIP/7.0 is a 505, with the request to answer."""
        error = self.rejected("badvers.dat")
        self.assertIsInstance(error, UnsupportedVersion)
        self.assertEqual(error.status, 505)

    def test_mismatch(self) -> None:
        """§3.1.2.17-18: CSeq method differs from the method (400; 501 also fine)."""
        for name in ["mismatch01.dat", "mismatch02.dat"]:
            self.assertEqual(self.rejected(name).reason, "CSeq method does not match")

    def test_bigcode(self) -> None:
        """§3.1.2.19: status code above 699 is dropped."""
        with self.assertRaises(SIPParseError) as raised:
            parse_message(self.data("bigcode.dat"))
        self.assertIsNone(raised.exception.request)


class RFC4475SemanticTests(_TortureCase):
    """
    RFC 4475 §3.2-3.4: well-formed messages the application must judge.
    """

    def test_badbranch(self) -> None:
        """§3.2.1: a bare magic cookie parses; matching decides."""
        self.assertEqual(self.request("badbranch.dat").top_via.branch, "z9hG4bK")

    def test_insuf(self) -> None:
        """§3.3.1: missing Call-ID, From, To: 400 naming one."""
        self.assertRegex(
            self.rejected("insuf.dat").reason, "^Missing (From|To|Call-ID) header$"
        )

    def test_schemes(self) -> None:
        """§3.3.2-3: unknown Request-URI schemes parse, for a 416."""
        for name, scheme in [
            ("unkscm.dat", "nobodyknowsthisscheme"),
            ("novelsc.dat", "soap.beep"),
        ]:
            uri = self.request(name).uri
            self.assertEqual((uri.scheme, uri.is_sip), (scheme, False))

    def test_unksm2(self) -> None:
        """§3.3.4: non-SIP URIs in To, From, Contact parse (registrar: 400)."""
        message = self.request("unksm2.dat")
        self.assertEqual([message.to.uri.scheme, message.from_.uri.scheme, message.contacts[0].uri.scheme],
                         ["isbn", "http", "name"])  # fmt: skip

    def test_bext01(self) -> None:
        """§3.3.5: Require and Proxy-Require list their options (for 420)."""
        message = self.request("bext01.dat")
        self.assertEqual(
            message.headers.get_all("Require"),
            ["nothingSupportsThis", "nothingSupportsThisEither"],
        )
        self.assertEqual(len(message.headers.get_all("Proxy-Require")), 2)

    def test_invut(self) -> None:
        """§3.3.6: the unknown Content-Type is visible (for 415)."""
        self.assertEqual(
            self.request("invut.dat").headers.get("c"), "application/unknownformat"
        )

    def test_regaut01(self) -> None:
        """§3.3.7: an unknown Authorization scheme stays one opaque value."""
        message = self.request("regaut01.dat")
        self.assertEqual(
            message.headers.get_all("Authorization"),
            ["NoOneKnowsThisScheme opaque-data=here"],
        )
        self.assertEqual(message.content_length, 0)

    def test_multi01(self) -> None:
        """§3.3.8: repeated single-value headers are a 400."""
        self.assertTrue(self.rejected("multi01.dat").reason.startswith("Multiple "))

    def test_mcl01(self) -> None:
        """§3.3.9: two Content-Lengths: 400 over UDP, framing lost over TCP."""
        self.assertEqual(
            self.rejected("mcl01.dat").reason, "Multiple Content-Length headers"
        )
        with self.assertRaises(SIPParseError):
            StreamFramer().feed(self.data("mcl01.dat"))

    def test_bcast(self) -> None:
        """§3.3.10: parses; the broadcast Via is visible to whoever would forward."""
        message = self.parse("bcast.dat")
        self.assertEqual(
            [v.host for v in message.vias], ["192.0.2.198", "255.255.255.255"]
        )

    def test_zeromf(self) -> None:
        """§3.3.11: Max-Forwards 0 parses as 0."""
        self.assertEqual(self.request("zeromf.dat").max_forwards, 0)

    def test_cparam(self) -> None:
        """§3.3.12-13: a parameter after a bare URI is the Contact's, inside <> the URI's."""
        (bare,) = self.request("cparam01.dat").contacts
        self.assertEqual(
            (str(bare.uri), bare.params),
            ("sip:+19725552222@gw1.example.net", {"unknownparam": None}),
        )
        (enclosed,) = self.request("cparam02.dat").contacts
        self.assertEqual(
            (str(enclosed.uri), enclosed.params),
            ("sip:+19725552222@gw1.example.net;unknownparam", {}),
        )

    def test_regescrt(self) -> None:
        """§3.3.14: the escaped Route header in the Contact URI is kept verbatim."""
        (contact,) = self.request("regescrt.dat").contacts
        self.assertEqual(
            str(contact.uri), "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
        )

    def test_sdp01(self) -> None:
        """§3.3.15: the Accept header is there to decide 406."""
        self.assertEqual(
            self.request("sdp01.dat").headers.get_all("Accept"),
            ["text/nobodyKnowsThis"],
        )

    def test_inv2543(self) -> None:
        """§3.4.1: RFC 2543 style: no Content-Length, branch, Max-Forwards or tags."""
        message = self.request("inv2543.dat")
        self.assertEqual(
            (message.content_length, message.max_forwards, message.top_via.branch),
            (None, None, None),
        )
        self.assertEqual((message.from_.tag, message.to.tag), (None, None))
        self.assertTrue(
            message.body.startswith(b"v=0\r\n")
            and message.body.endswith(b"RTP/AVP 0\r\n")
        )


class RFC5118Tests(_TortureCase):
    """
    RFC 5118: IPv6 torture messages.
    """

    directory = RFC5118

    def test_all_but_ipv6_bad_accepted(self) -> None:
        """Every message but §4.2 parses, and §4.2 is a 400."""
        names = sorted(p.name for p in self.directory.glob("*.dat"))
        self.assertEqual(len(names), 12)
        for name in names:
            if name == "ipv6-bad.dat":
                self.assertIn("Request-URI", self.rejected(name).reason)
            else:
                self.parse(name)

    def test_hosts(self) -> None:
        """Hosts and ports come out as EXPECTED.md says."""
        uri = self.request("port-ambiguous.dat").uri
        self.assertEqual((uri.host, uri.port), ("[2001:db8::10:5070]", None))
        uri = self.request("port-unambiguous.dat").uri
        self.assertEqual((uri.host_address, uri.port), ("2001:db8::10", 5070))
        vias = self.request("mult-ip-in-header.dat").vias
        self.assertEqual([(v.host, v.port, v.received) for v in vias], [
            ("[2001:db8::9:1]", 6050, None), ("192.0.2.1", None, None),
            ("[2001:db8::9:255]", None, "192.0.2.200"),
        ])  # fmt: skip
        message = self.request("ipv4-mapped-ipv6.dat")
        self.assertEqual(
            (message.top_via.host, message.top_via.port), ("[::ffff:192.0.2.10]", 19823)
        )
        self.assertEqual(message.contacts[0].uri.host, "[::ffff:192.0.2.2]")

    def test_received(self) -> None:
        """§4.5: received with and without brackets."""
        self.assertEqual(
            self.request("via-received-param-with-delim.dat").top_via.received,
            "[2001:db8::9:255]",
        )
        self.assertEqual(
            self.request("via-received-param-no-delim.dat").top_via.received,
            "2001:db8::9:255",
        )

    def test_three_colons(self) -> None:
        """§4.10: the 3261-ABNF form equals the correct form."""
        three = self.request("ipv6-bug-abnf-3-colons.dat").uri
        two = self.request("ipv6-correct-abnf-2-colons.dat").uri
        self.assertTrue(three.equivalent(two))

    def test_archive_never_crashes(self) -> None:
        """The RFC's own LF-only bytes parse or raise only SIPParseError."""
        results = {}
        for path in sorted((self.directory / "archive").iterdir()):
            try:
                exercise(parse_message(path.read_bytes()))
                results[path.name] = "ok"
            except SIPParseError:
                results[path.name] = "error"
        # Content-Length too large in the RFC itself for 4.6 and 4.8.
        self.assertEqual({n for n, r in results.items() if r == "error"},
                         {"ipv6-bad", "ipv6-in-sdp", "mult-ip-in-sdp"})  # fmt: skip
