"""Tests for :mod:`pbx.sip.dialog`: dialogs and the requests a user agent builds (RFC 3261 §8.1, §12)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pbx.sip.dialog import (
    Dialog,
    LocalAddress,
    ack_for_2xx,
    cancel_for,
    new_call_id,
    new_invite,
    new_tag,
    sips_requested,
)
from pbx.sip.ids import MAGIC_COOKIE
from pbx.sip.message import Request, Response, parse_message
from pbx.sip.transaction import Peer
from pbx.sip.uri import parse_uri

ADDRESS = LocalAddress("udp", "127.0.0.1", 5060)
PEER = Peer("udp", "192.0.2.11", 5062)

INVITE = (
    "INVITE sip:1002@pbx.test SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.11:5062;branch=z9hG4bK-in-1;rport\r\n"
    "Record-Route: <sip:p1.example.com;lr>\r\n"
    "Record-Route: <sip:p2.example.com;lr>\r\n"
    "Max-Forwards: 70\r\n"
    'From: "Alice" <sip:1001@pbx.test>;tag=alice-tag\r\n'
    "To: <sip:1002@pbx.test>\r\n"
    "Call-ID: call-1@192.0.2.11\r\n"
    "CSeq: 7 INVITE\r\n"
    "Contact: <sip:1001@192.0.2.11:5062;ob>\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
)


def parse_request(text: str) -> Request:
    """Parse a request written in a test."""
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def reparse(message: Request) -> Request:
    """The request as a peer would read it off the wire."""
    parsed = parse_message(message.to_bytes())
    assert isinstance(parsed, Request)
    return parsed


def ok_for(
    invite: Request,
    *,
    tag: str = "bob-tag",
    contact: str | None = "<sip:1002@192.0.2.12:5070>",
    record_routes: tuple[str, ...] = (),
) -> Response:
    """A 200 to ``invite`` as a callee would send it."""
    lines = [f"Via: {v}" for v in invite.headers.get_all("Via")]
    lines += [f"Record-Route: {r}" for r in record_routes]
    lines += [
        f"From: {invite.headers.get('From')}",
        f"To: {invite.headers.get('To')};tag={tag}",
        f"Call-ID: {invite.call_id}",
        f"CSeq: {invite.cseq}",
    ]
    if contact:
        lines.append(f"Contact: {contact}")
    text = "SIP/2.0 200 OK\r\n" + "\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n"
    message = parse_message(text.encode())
    assert isinstance(message, Response)
    return message


def uas_dialog() -> Dialog:
    """The dialog pbx makes answering :data:`INVITE`."""
    return Dialog.as_uas(parse_request(INVITE), PEER, ADDRESS, "our-tag")


class LocalAddressTests(SynchronousTestCase):
    """Via and Contact values for one transport."""

    def test_via(self) -> None:
        """A UDP Via names our address, the given branch and asks for rport."""
        self.assertEqual(
            ADDRESS.via("z9hG4bKabc"),
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc;rport",
        )

    def test_via_fresh_branch(self) -> None:
        """Without a branch each Via gets a fresh one with the magic cookie."""
        first, second = ADDRESS.via(), ADDRESS.via()
        self.assertNotEqual(first, second)
        branch = first.split("branch=")[1].split(";")[0]
        self.assertTrue(branch.startswith(MAGIC_COOKIE))

    def test_via_tcp_ipv6(self) -> None:
        """The transport is upper-cased and an IPv6 host is bracketed."""
        address = LocalAddress("tcp", "2001:db8::1", 5060)
        self.assertEqual(address.hostport, "[2001:db8::1]:5060")
        self.assertTrue(
            address.via("z9hG4bKx").startswith("SIP/2.0/TCP [2001:db8::1]:5060;")
        )

    def test_contact_udp(self) -> None:
        """A UDP Contact is a plain sip URI; the user part is ours to choose."""
        self.assertEqual(ADDRESS.contact(), "<sip:pbx@127.0.0.1:5060>")
        self.assertEqual(ADDRESS.contact("1001"), "<sip:1001@127.0.0.1:5060>")

    def test_contact_tcp_tls(self) -> None:
        """TCP and TLS name their transport in a sip URI (RFC 3261 §19.1.4)."""
        self.assertEqual(
            LocalAddress("tcp", "192.0.2.1", 5060).contact(),
            "<sip:pbx@192.0.2.1:5060;transport=tcp>",
        )
        self.assertEqual(
            LocalAddress("tls", "192.0.2.1", 5061).contact(),
            "<sip:pbx@192.0.2.1:5061;transport=tls>",
        )

    def test_contact_sips_only_when_asked_on_tls(self) -> None:
        """A peer asking for SIPS gets a sips URI on TLS (RFC 5630 §3.2: no transport=tls beside it); never on TCP or UDP."""
        self.assertEqual(
            LocalAddress("tls", "192.0.2.1", 5061).contact("1001", sips=True),
            "<sips:1001@192.0.2.1:5061>",
        )
        self.assertEqual(
            LocalAddress("tcp", "192.0.2.1", 5060).contact(sips=True),
            "<sip:pbx@192.0.2.1:5060;transport=tcp>",
        )
        self.assertEqual(ADDRESS.contact(sips=True), "<sip:pbx@127.0.0.1:5060>")

    def test_tags_and_call_ids(self) -> None:
        """Tags and Call-IDs are fresh each time; a Call-ID ends with our host."""
        self.assertNotEqual(new_tag(), new_tag())
        self.assertGreaterEqual(len(new_tag()), 8)
        call_id = new_call_id("127.0.0.1")
        self.assertTrue(call_id.endswith("@127.0.0.1"))
        self.assertNotEqual(call_id, new_call_id("127.0.0.1"))


class DialogCreationTests(SynchronousTestCase):
    """Dialog.as_uas and Dialog.as_uac (§12.1)."""

    def test_as_uas(self) -> None:
        """The UAS dialog takes our tag on To, the caller's From, its Contact and Record-Routes in order."""
        dialog = uas_dialog()
        self.assertEqual(dialog.call_id, "call-1@192.0.2.11")
        self.assertEqual(dialog.local_tag, "our-tag")
        self.assertEqual(str(dialog.local.uri), "sip:1002@pbx.test")
        self.assertEqual(dialog.remote_tag, "alice-tag")
        self.assertEqual(str(dialog.remote.uri), "sip:1001@pbx.test")
        self.assertEqual(str(dialog.remote_target), "sip:1001@192.0.2.11:5062;ob")
        self.assertEqual(
            dialog.route_set, ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
        )
        self.assertEqual((dialog.local_seq, dialog.remote_seq), (0, 7))
        self.assertEqual(dialog.key, ("call-1@192.0.2.11", "our-tag", "alice-tag"))
        self.assertEqual(dialog.peer, PEER)

    def test_as_uas_without_contact(self) -> None:
        """Without a Contact the remote target falls back to the From URI."""
        request = parse_request(
            INVITE.replace("Contact: <sip:1001@192.0.2.11:5062;ob>\r\n", "")
        )
        dialog = Dialog.as_uas(request, PEER, ADDRESS, "our-tag")
        self.assertEqual(str(dialog.remote_target), "sip:1001@pbx.test")

    def test_as_uac(self) -> None:
        """The UAC dialog takes the response's To tag and Contact, and reverses its Record-Routes."""
        invite = reparse(
            new_invite(
                target=parse_uri("sip:1002@192.0.2.12:5070"),
                to="<sip:1002@pbx.test>",
                from_="<sip:1001@pbx.test>",
                address=ADDRESS,
            )
        )
        response = ok_for(
            invite,
            contact="<sip:1002@192.0.2.12:5071>",
            record_routes=("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"),
        )
        dialog = Dialog.as_uac(invite, response, PEER, ADDRESS)
        self.assertEqual(dialog.call_id, invite.call_id)
        self.assertEqual(dialog.local_tag, invite.from_.tag)
        self.assertEqual(dialog.remote_tag, "bob-tag")
        self.assertEqual(str(dialog.remote_target), "sip:1002@192.0.2.12:5071")
        self.assertEqual(
            dialog.route_set, ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
        )
        self.assertEqual((dialog.local_seq, dialog.remote_seq), (1, None))

    def test_as_uac_without_contact(self) -> None:
        """Without a Contact in the response the remote target is the INVITE's Request-URI."""
        invite = new_invite(
            target=parse_uri("sip:1002@192.0.2.12:5070"),
            to="<sip:1002@pbx.test>",
            from_="<sip:1001@pbx.test>",
            address=ADDRESS,
        )
        dialog = Dialog.as_uac(
            invite, ok_for(reparse(invite), contact=None), PEER, ADDRESS
        )
        self.assertEqual(str(dialog.remote_target), "sip:1002@192.0.2.12:5070")
        self.assertEqual(dialog.route_set, [])

    def test_update_target(self) -> None:
        """A target refresh with a Contact moves the remote target; one without keeps it."""
        dialog = uas_dialog()
        moved = parse_request(INVITE.replace("192.0.2.11:5062;ob", "198.51.100.1:6000"))
        dialog.update_target(moved)
        self.assertEqual(str(dialog.remote_target), "sip:1001@198.51.100.1:6000")
        dialog.update_target(
            parse_request(
                INVITE.replace("Contact: <sip:1001@192.0.2.11:5062;ob>\r\n", "")
            )
        )
        self.assertEqual(str(dialog.remote_target), "sip:1001@198.51.100.1:6000")


class InDialogRequestTests(SynchronousTestCase):
    """Dialog.request (§12.2.1.1)."""

    def test_bye(self) -> None:
        """A BYE goes to the remote target with our tags, the next CSeq, the route set and no Contact."""
        dialog = uas_dialog()
        bye = reparse(dialog.request("BYE"))
        self.assertEqual(bye.method, "BYE")
        self.assertEqual(str(bye.uri), "sip:1001@192.0.2.11:5062;ob")
        self.assertEqual(bye.from_.tag, "our-tag")
        self.assertEqual(bye.to.tag, "alice-tag")
        self.assertEqual(bye.call_id, "call-1@192.0.2.11")
        self.assertEqual(str(bye.cseq), "1 BYE")
        self.assertEqual(
            bye.headers.get_all("Route"),
            ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"],
        )
        self.assertEqual(bye.headers.get("Max-Forwards"), "70")
        self.assertEqual(bye.top_via.sent_by, "127.0.0.1:5060")
        self.assertEqual(bye.headers.get_all("Contact"), [])
        self.assertEqual(bye.body, b"")

    def test_cseq_increments(self) -> None:
        """Each new request takes the next local CSeq and a fresh branch."""
        dialog = uas_dialog()
        first, second = dialog.request("INFO"), dialog.request("BYE")
        self.assertEqual((first.cseq.number, second.cseq.number), (1, 2))
        self.assertEqual(dialog.local_seq, 2)
        self.assertNotEqual(first.top_via.branch, second.top_via.branch)

    def test_uac_cseq_continues(self) -> None:
        """A UAC dialog's next request follows the INVITE's CSeq."""
        invite = new_invite(
            target=parse_uri("sip:1002@192.0.2.12"),
            to="<sip:1002@pbx.test>",
            from_="<sip:1001@pbx.test>",
            address=ADDRESS,
        )
        dialog = Dialog.as_uac(invite, ok_for(reparse(invite)), PEER, ADDRESS)
        self.assertEqual(str(dialog.request("BYE").cseq), "2 BYE")

    def test_ack_and_cancel_keep_cseq(self) -> None:
        """ACK and CANCEL take the CSeq given and do not advance the counter."""
        dialog = uas_dialog()
        dialog.request("INVITE")
        ack = dialog.request("ACK", cseq=1)
        cancel = dialog.request("CANCEL", cseq=1, branch="z9hG4bKsame")
        self.assertEqual((str(ack.cseq), str(cancel.cseq)), ("1 ACK", "1 CANCEL"))
        self.assertEqual(cancel.top_via.branch, "z9hG4bKsame")
        self.assertEqual(dialog.local_seq, 1)
        self.assertEqual(str(dialog.request("BYE").cseq), "2 BYE")

    def test_contact_for_target_refresh(self) -> None:
        """INVITE and UPDATE carry our Contact (with the dialog's user); BYE, INFO, PRACK and ACK do not."""
        dialog = uas_dialog()
        dialog.contact_user = "1001"
        for method in ("INVITE", "UPDATE"):
            self.assertEqual(
                dialog.request(method).headers.get_all("Contact"),
                ["<sip:1001@127.0.0.1:5060>"],
            )
        for method in ("BYE", "INFO", "PRACK"):
            self.assertEqual(dialog.request(method).headers.get_all("Contact"), [])
        self.assertEqual(dialog.request("ACK", cseq=1).headers.get_all("Contact"), [])

    def test_body(self) -> None:
        """A body goes with its Content-Type and a matching Content-Length."""
        dialog = uas_dialog()
        info = reparse(
            dialog.request(
                "INFO", body=b"Signal=5\r\n", content_type="application/dtmf-relay"
            )
        )
        self.assertEqual(info.body, b"Signal=5\r\n")
        self.assertEqual(info.headers.get("Content-Type"), "application/dtmf-relay")
        self.assertEqual(info.content_length, 10)

    def test_ack_for_2xx(self) -> None:
        """The ACK of a 2xx has the INVITE's CSeq number, a new branch and no Contact."""
        invite = new_invite(
            target=parse_uri("sip:1002@192.0.2.12"),
            to="<sip:1002@pbx.test>",
            from_="<sip:1001@pbx.test>",
            address=ADDRESS,
        )
        dialog = Dialog.as_uac(invite, ok_for(reparse(invite)), PEER, ADDRESS)
        ack = reparse(ack_for_2xx(dialog, 1))
        self.assertEqual(str(ack.cseq), "1 ACK")
        self.assertNotEqual(ack.top_via.branch, invite.top_via.branch)
        self.assertEqual(ack.to.tag, "bob-tag")
        self.assertEqual(ack.headers.get_all("Contact"), [])
        self.assertEqual(dialog.local_seq, 1)
        with_body = ack_for_2xx(dialog, 1, b"v=0\r\n")
        self.assertEqual(with_body.headers.get("Content-Type"), "application/sdp")


class RemoteSeqTests(SynchronousTestCase):
    """Dialog.check_remote_seq (§12.2.2)."""

    def request(self, cseq: int, method: str = "BYE") -> Request:
        """A request of the caller with CSeq ``cseq``."""
        return parse_request(
            INVITE.replace("CSeq: 7 INVITE", f"CSeq: {cseq} {method}").replace(
                "INVITE sip:", f"{method} sip:"
            )
        )

    def test_higher_accepted(self) -> None:
        """A higher CSeq is accepted and remembered."""
        dialog = uas_dialog()
        self.assertTrue(dialog.check_remote_seq(self.request(8)))
        self.assertEqual(dialog.remote_seq, 8)

    def test_lower_refused(self) -> None:
        """A lower CSeq is out of order and leaves the remembered one alone."""
        dialog = uas_dialog()
        self.assertFalse(dialog.check_remote_seq(self.request(6)))
        self.assertEqual(dialog.remote_seq, 7)

    def test_ack_and_cancel(self) -> None:
        """ACK and CANCEL reuse an old CSeq: accepted, and not remembered."""
        dialog = uas_dialog()
        dialog.check_remote_seq(self.request(9))
        self.assertTrue(dialog.check_remote_seq(self.request(7, "ACK")))
        self.assertTrue(dialog.check_remote_seq(self.request(7, "CANCEL")))
        self.assertEqual(dialog.remote_seq, 9)

    def test_first_request_of_uac_dialog(self) -> None:
        """A UAC dialog has no remote CSeq yet: any first number is accepted."""
        invite = new_invite(
            target=parse_uri("sip:1002@192.0.2.12"),
            to="<sip:1002@pbx.test>",
            from_="<sip:1001@pbx.test>",
            address=ADDRESS,
        )
        dialog = Dialog.as_uac(invite, ok_for(reparse(invite)), PEER, ADDRESS)
        self.assertTrue(dialog.check_remote_seq(self.request(1)))
        self.assertEqual(dialog.remote_seq, 1)


TLS = LocalAddress("tls", "192.0.2.1", 5061)
TLS_PEER = Peer("tls", "192.0.2.11", 40123)


class SIPSContactTests(SynchronousTestCase):
    """Our Contact is a sips URI only where the peer asked for SIPS (RFC 3261 §8.1.1.8, §12.1)."""

    def test_sip_request_over_tls(self) -> None:
        """An INVITE to a sip URI over TLS gets a sip Contact with transport=tls, in the dialog too."""
        request = parse_request(INVITE.replace("Record-Route", "X-Record-Route"))
        self.assertFalse(sips_requested(request))
        dialog = Dialog.as_uas(request, TLS_PEER, TLS, "our-tag")
        self.assertEqual(dialog.contact(), "<sip:pbx@192.0.2.1:5061;transport=tls>")
        bye = reparse(dialog.request("INVITE"))
        self.assertEqual(bye.headers.get("Contact"), "<sip:pbx@192.0.2.1:5061;transport=tls>")

    def test_sips_request_uri(self) -> None:
        """A sips Request-URI asks for SIPS (§8.1.1.8): the dialog's Contact is sips."""
        request = parse_request(INVITE.replace("INVITE sip:1002@", "INVITE sips:1002@"))
        self.assertTrue(sips_requested(request))
        dialog = Dialog.as_uas(request, TLS_PEER, TLS, "our-tag")
        self.assertEqual(dialog.contact("1002"), "<sips:1002@192.0.2.1:5061>")

    def test_sips_contact_without_record_route(self) -> None:
        """Without Record-Route, the caller's sips Contact asks for SIPS (§12.1.1)."""
        request = parse_request(
            INVITE.replace("Record-Route", "X-Record-Route").replace(
                "Contact: <sip:1001@", "Contact: <sips:1001@"
            )
        )
        self.assertTrue(sips_requested(request))

    def test_top_record_route_decides(self) -> None:
        """With Record-Route, the top one decides, not the Contact (§12.1.1)."""
        sip_routes = parse_request(INVITE.replace("Contact: <sip:1001@", "Contact: <sips:1001@"))
        self.assertFalse(sips_requested(sip_routes))
        sips_route = parse_request(INVITE.replace("<sip:p1.example", "<sips:p1.example"))
        self.assertTrue(sips_requested(sips_route))

    def test_invite_to_phone(self) -> None:
        """An INVITE to a phone's sip Contact over TLS names transport=tls; to a sips Contact, sips; the dialogs follow."""
        for target, contact in [
            ("sip:1002-x@192.0.2.12:5071;transport=tls", "<sip:1001@192.0.2.1:5061;transport=tls>"),
            ("sips:1002-x@192.0.2.12:5071", "<sips:1001@192.0.2.1:5061>"),
        ]:
            invite = reparse(
                new_invite(
                    target=parse_uri(target), to="<sip:1002@pbx.test>",
                    from_="<sip:1001@pbx.test>", address=TLS, contact_user="1001",
                )
            )
            self.assertEqual(invite.headers.get("Contact"), contact)
            ok = Response(200, "OK")
            for name in ("Via", "From", "Call-ID", "CSeq"):
                ok.headers.add(name, invite.headers.get(name) or "")
            ok.headers.add("To", "<sip:1002@pbx.test>;tag=bob")
            dialog = Dialog.as_uac(invite, ok, TLS_PEER, TLS)
            dialog.contact_user = "1001"
            self.assertEqual(dialog.request("INVITE").headers.get("Contact"), contact)


class NewInviteTests(SynchronousTestCase):
    """new_invite (§8.1.1) and cancel_for (§9.1)."""

    def invite(self) -> Request:
        """An INVITE with every option set."""
        return new_invite(
            target=parse_uri("sip:1002@192.0.2.12:5070"),
            to="<sip:1002@pbx.test>",
            from_='"Alice" <sip:1001@pbx.test>',
            address=ADDRESS,
            body=b"v=0\r\n",
            max_forwards=69,
            contact_user="1001",
            extra=[("P-Asserted-Identity", '"Alice" <sip:1001@pbx.test>')],
        )

    def test_headers(self) -> None:
        """The INVITE has a tagged From, an untagged To, a fresh Call-ID, CSeq 1 and our Contact."""
        invite = reparse(self.invite())
        self.assertEqual(str(invite.uri), "sip:1002@192.0.2.12:5070")
        self.assertTrue(invite.from_.tag)
        self.assertEqual(invite.from_.display_name, "Alice")
        self.assertIsNone(invite.to.tag)
        self.assertTrue(invite.call_id.endswith("@127.0.0.1"))
        self.assertEqual(str(invite.cseq), "1 INVITE")
        self.assertEqual(invite.max_forwards, 69)
        self.assertEqual(
            invite.headers.get_all("Contact"), ["<sip:1001@127.0.0.1:5060>"]
        )
        self.assertEqual(
            invite.headers.get("P-Asserted-Identity"), '"Alice" <sip:1001@pbx.test>'
        )
        self.assertIn("timer", invite.headers.get_all("Supported"))
        self.assertIn("PRACK", invite.headers.get_all("Allow"))
        self.assertEqual(invite.headers.get("Content-Type"), "application/sdp")
        self.assertEqual(invite.body, b"v=0\r\n")

    def test_fresh_identifiers(self) -> None:
        """Two INVITEs have different Call-IDs, From tags and branches."""
        a, b = self.invite(), self.invite()
        self.assertNotEqual(a.call_id, b.call_id)
        self.assertNotEqual(a.from_.tag, b.from_.tag)
        self.assertNotEqual(a.top_via.branch, b.top_via.branch)

    def test_no_body_no_content_type(self) -> None:
        """Without a body there is no Content-Type."""
        invite = new_invite(
            target=parse_uri("sip:1002@192.0.2.12"),
            to="<sip:1002@pbx.test>",
            from_="<sip:1001@pbx.test>",
            address=ADDRESS,
        )
        self.assertIsNone(invite.headers.get("Content-Type"))

    def test_cancel_for(self) -> None:
        """The CANCEL has the INVITE's Request-URI, top Via (same branch), From, To, Call-ID and CSeq number."""
        invite = self.invite()
        invite.headers.add("Route", "<sip:p1.example.com;lr>")
        cancel = reparse(cancel_for(invite))
        self.assertEqual(cancel.method, "CANCEL")
        self.assertEqual(str(cancel.uri), str(invite.uri))
        self.assertEqual(
            cancel.headers.get_all("Via"), invite.headers.get_all("Via")[:1]
        )
        self.assertEqual(cancel.top_via.branch, invite.top_via.branch)
        self.assertEqual(cancel.headers.get("From"), invite.headers.get("From"))
        self.assertEqual(cancel.headers.get("To"), invite.headers.get("To"))
        self.assertEqual(cancel.call_id, invite.call_id)
        self.assertEqual(str(cancel.cseq), "1 CANCEL")
        self.assertEqual(cancel.headers.get_all("Route"), ["<sip:p1.example.com;lr>"])
        self.assertEqual(cancel.body, b"")
