"""
Tests for :mod:`pbx.emergency.pidf` and :mod:`pbx.emergency.invite`: the
PIDF-LO is read back with another XML parser (:mod:`xml.dom.minidom`), the
multipart body with Python's :mod:`email` package.
"""

from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import default as default_policy
from xml.dom import minidom

from twisted.trial.unittest import SynchronousTestCase

from pbx.emergency.invite import emergency_invite
from pbx.emergency.options import parse_civic_address
from pbx.emergency.pidf import build_pidf_lo

PIDF = "urn:ietf:params:xml:ns:pidf"
DM = "urn:ietf:params:xml:ns:pidf:data-model"
GP = "urn:ietf:params:xml:ns:pidf:geopriv10"
GBP = "urn:ietf:params:xml:ns:pidf:geopriv10:basicPolicy"
CA = "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr"
NOW = 1_765_000_000.0  # 2025-12-06T05:46:40Z
ADDRESS = {
    "country": "US",
    "A1": "CA",
    "A3": "San Jose",
    "RD": "Main",
    "STS": "St",
    "HNO": "100",
    "FLR": "2",
    "ROOM": "210",
    "NAM": "Acme <HQ> & Co",
}
SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def one(
    parent: minidom.Element | minidom.Document, ns: str, name: str
) -> minidom.Element:
    """The one element ``{ns}name`` below ``parent``."""
    found = parent.getElementsByTagNameNS(ns, name)
    assert len(found) == 1, f"{len(found)} <{name}> elements"
    element: minidom.Element = found[0]
    return element


def text(element: minidom.Element) -> str:
    """The text inside ``element``."""
    return "".join(
        node.data for node in element.childNodes if node.nodeType == node.TEXT_NODE
    )


def civic_of(document: minidom.Document) -> dict[str, str]:
    """The civic address elements in ``document``, by local name."""
    civic = one(document, CA, "civicAddress")
    return {
        child.localName: text(child)
        for child in civic.childNodes
        if child.nodeType == child.ELEMENT_NODE
    }


class PIDFLOTests(SynchronousTestCase):
    """The document, parsed back independently."""

    def setUp(self) -> None:
        self.address = parse_civic_address(ADDRESS, "hq")

    def test_tuple_parses_to_the_address(self) -> None:
        """A tuple's status holds geopriv, whose civic address is exactly the configured one (escaped text too)."""
        document = minidom.parseString(
            build_pidf_lo(self.address, entity="pres:1000@pbx.test", now=NOW)
        )
        root = document.documentElement
        self.assertEqual((root.namespaceURI, root.localName), (PIDF, "presence"))
        self.assertEqual(root.getAttribute("entity"), "pres:1000@pbx.test")
        item = one(document, PIDF, "tuple")
        status = one(item, PIDF, "status")
        geopriv = one(status, GP, "geopriv")
        info = one(geopriv, GP, "location-info")
        self.assertEqual(civic_of(document), ADDRESS)
        self.assertEqual(
            one(info, CA, "civicAddress").getAttributeNS(
                "http://www.w3.org/XML/1998/namespace", "lang"
            ),
            "en",
        )
        self.assertEqual(text(one(geopriv, GP, "method")), "Manual")
        rules = one(geopriv, GP, "usage-rules")
        self.assertEqual(text(one(rules, GBP, "retransmission-allowed")), "false")
        self.assertEqual(
            text(one(rules, GBP, "retention-expiry")), "2025-12-07T05:46:40Z"
        )
        self.assertEqual(text(one(item, PIDF, "timestamp")), "2025-12-06T05:46:40Z")
        self.assertTrue(item.getAttribute("id"))

    def test_schema_order(self) -> None:
        """Elements appear in RFC 5139's schema order."""
        document = minidom.parseString(
            build_pidf_lo(self.address, entity="pres:1000@pbx.test", now=NOW)
        )
        self.assertEqual(
            list(civic_of(document)),
            ["country", "A1", "A3", "RD", "STS", "HNO", "FLR", "NAM", "ROOM"],
        )

    def test_device_form(self) -> None:
        """The device form (RFC 5491 §3.4) holds geopriv directly, a deviceID URN and a timestamp."""
        body = build_pidf_lo(
            self.address,
            entity="pres:1000@pbx.test",
            now=NOW,
            element="device",
            method="Derived",
        )
        document = minidom.parseString(body)
        device = one(document, DM, "device")
        geopriv = one(device, GP, "geopriv")
        self.assertEqual(geopriv.parentNode, device)
        self.assertEqual(text(one(geopriv, GP, "method")), "Derived")
        self.assertTrue(text(one(device, DM, "deviceID")).startswith("urn:uuid:"))
        self.assertEqual(text(one(device, DM, "timestamp")), "2025-12-06T05:46:40Z")
        self.assertEqual(document.getElementsByTagNameNS(PIDF, "tuple").length, 0)
        self.assertEqual(civic_of(document), ADDRESS)

    def test_bad_element(self) -> None:
        """Only tuple and device are offered."""
        self.assertRaises(
            ValueError,
            build_pidf_lo,
            self.address,
            entity="pres:x@y",
            now=NOW,
            element="person",
        )


class EmergencyInviteTests(SynchronousTestCase):
    """The headers and multipart body an emergency INVITE carries."""

    def setUp(self) -> None:
        self.address = parse_civic_address(ADDRESS, "hq")

    def parts(self, content_type: str, body: bytes) -> EmailMessage:
        """The body parsed as a MIME message of ``content_type``, as a mail reader would."""
        raw = f"Content-Type: {content_type}\r\n\r\n".encode() + body
        message = email.message_from_bytes(raw, policy=default_policy)
        assert isinstance(message, EmailMessage)
        return message

    def test_multipart_with_location(self) -> None:
        """The SDP and the PIDF-LO travel as multipart/mixed; Geolocation names the PIDF-LO's Content-ID."""
        invite = emergency_invite(
            extension="1000",
            callback_number="+15551230000",
            sdp=SDP,
            domain="pbx.test",
            now=NOW,
            address=self.address,
            token="t0k3n",
        )
        headers = dict(invite.headers)
        self.assertEqual(headers["Geolocation"], "<cid:t0k3n@pbx.test>")
        self.assertEqual(headers["Geolocation-Routing"], "no")
        self.assertEqual(headers["P-Asserted-Identity"], "<tel:+15551230000>")
        self.assertEqual(headers["Priority"], "emergency")
        message = self.parts(invite.content_type, invite.body)
        self.assertTrue(message.is_multipart())
        self.assertEqual(message.get_content_type(), "multipart/mixed")
        sdp, pidf = list(message.iter_parts())
        self.assertEqual(sdp.get_content_type(), "application/sdp")
        self.assertEqual(sdp.get_payload(decode=True), SDP)
        self.assertEqual(pidf.get_content_type(), "application/pidf+xml")
        self.assertEqual(pidf["Content-ID"], "<t0k3n@pbx.test>")
        self.assertEqual(invite.content_id, "t0k3n@pbx.test")
        self.assertEqual(
            headers["Geolocation"], "<cid:" + pidf["Content-ID"].strip("<>") + ">"
        )
        location = pidf.get_payload(decode=True)
        self.assertEqual(location, invite.location)
        self.assertEqual(civic_of(minidom.parseString(location)), ADDRESS)
        self.assertIn(b"\r\n--boundary-t0k3n--\r\n", invite.body)

    def test_fresh_token(self) -> None:
        """Without a token a fresh one names the part, different for every call."""
        a = emergency_invite(
            extension="1000",
            callback_number="1",
            sdp=SDP,
            domain="d",
            now=NOW,
            address=self.address,
        )
        b = emergency_invite(
            extension="1000",
            callback_number="1",
            sdp=SDP,
            domain="d",
            now=NOW,
            address=self.address,
        )
        self.assertNotEqual(
            dict(a.headers)["Geolocation"], dict(b.headers)["Geolocation"]
        )

    def test_offerless_invite(self) -> None:
        """An INVITE without an offer carries the PIDF-LO as the only part."""
        invite = emergency_invite(
            extension="1000",
            callback_number="1",
            sdp=b"",
            domain="d",
            now=NOW,
            address=self.address,
            token="x",
        )
        parts = list(self.parts(invite.content_type, invite.body).iter_parts())
        self.assertEqual(
            [p.get_content_type() for p in parts], ["application/pidf+xml"]
        )

    def test_no_location(self) -> None:
        """Without a known location the call still goes out: the SDP unchanged, the callback number, no Geolocation."""
        invite = emergency_invite(
            extension="1000",
            callback_number="+15551230000",
            sdp=SDP,
            domain="pbx.test",
            now=NOW,
            address=None,
        )
        self.assertEqual(
            (invite.body, invite.content_type, invite.location),
            (SDP, "application/sdp", b""),
        )
        self.assertEqual(
            [name for name, _ in invite.headers], ["P-Asserted-Identity", "Priority"]
        )

    def test_callback_identity_forms(self) -> None:
        """An E.164 callback number is a tel: URI (beside a trunk's sip: one); any other a sip: URI with user=phone."""
        for number, expected in (
            ("+15551230000", "<tel:+15551230000>"),
            ("5551230000", "<sip:5551230000@d;user=phone>"),
        ):
            invite = emergency_invite(
                extension="1000",
                callback_number=number,
                sdp=SDP,
                domain="d",
                now=NOW,
                address=None,
            )
            self.assertEqual(dict(invite.headers)["P-Asserted-Identity"], expected)
