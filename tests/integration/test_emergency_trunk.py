"""
Integration test: 911 out through a SIP trunk to a SIPp carrier, and the
PSAP's callback in through it.  It needs SIP trunks (``pbx.trunks``) with
the emergency route wired into the call path, and is skipped until they
are there.

- A SIPp phone (1001) dials 911; the SIPp carrier (``uas_answer.xml``)
  gets an INVITE with ``Geolocation: <cid:...>``, ``Geolocation-Routing:
  no`` (RFC 6442), the callback number in ``P-Asserted-Identity`` and a
  ``multipart/mixed`` body (read back with Python's :mod:`email`) whose
  PIDF-LO (read back with :mod:`xml.dom.minidom`) is the configured address;
- then 1001 turns on DND, and the carrier (``uac_carrier_call.xml``, IP
  authenticated) calls the callback number: 1001's SIPp phone rings and
  answers, although the DID otherwise goes to 1002.
"""

from __future__ import annotations

import email
import importlib.util
import json
import re
import socket
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any
from xml.dom import minidom

import pytest

from support.daemon import free_port, http
from support.sipp import CALLEE, CALLER, SIPpCallCase

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("pbx.trunks") is None,
        reason="needs SIP trunks (pbx.trunks)",
    ),
]

CA = "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr"
DID = "+15551230000"
#: The carrier's address: not the phones' (127.0.0.1), so its calls are told apart by source.
CARRIER = "127.0.0.2"
HQ = {
    "country": "US",
    "A1": "CA",
    "A3": "San Jose",
    "RD": "Main",
    "STS": "St",
    "HNO": "100",
    "FLR": "2",
    "ROOM": "210",
}


def received_invite(messages: str) -> tuple[dict[str, str], bytes]:
    """The first INVITE in a SIPp message trace: its headers (lower-case names) and body."""
    match = re.search(
        r"received \[\d+\] bytes :\s*\n\n(INVITE .*?)(?=\n-{20,}|\Z)", messages, re.S
    )
    assert match is not None, messages[-2000:]
    text = match.group(1).replace("\r\n", "\n")
    head, _, body = text.partition("\n\n")
    headers = {}
    for line in head.split("\n")[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return headers, body.replace("\n", "\r\n").encode()


class EmergencyTrunkTests(SIPpCallCase):
    """911 reaches the carrier with the caller's location; the PSAP's callback rings through DND."""

    def config(self, **kwargs: Any) -> str:
        """A carrier trunk (IP-authenticated from 127.0.0.2) and the ``emergency:`` section."""
        self.carrier_port = free_port(socket.SOCK_DGRAM)
        config = json.loads(super().config(**kwargs))
        config["trunks"] = {
            "carrier": {
                "uri": f"sip:{CARRIER}:{self.carrier_port};transport=udp",
                "caller_id": DID,
                "allow_from": [f"{CARRIER}/32"],
                "dids": {DID: {"extension": CALLEE}},
            }
        }
        config["dialplan"] = [
            {"match": "_9NXXNXXXXXX", "trunk": ["carrier"], "strip": 1, "prepend": "+1"}
        ]
        config["emergency"] = {
            "trunk": ["carrier"],
            "locations": {"hq-2": HQ},
            "extensions": {CALLER: "hq-2"},
        }
        return json.dumps(config, indent=1)

    def start_carrier(self) -> Any:
        """The SIPp carrier on 127.0.0.2 (``uas_answer.xml``): answers one call; its messages in ``carrier.messages``."""
        return self.start_sipp(
            "uas_answer", self.carrier_port, "-m", "1", "-mp", str(next(self.media_ports)),
            "-i", CARRIER, name="carrier",
        )  # fmt: skip

    def test_pidf_lo_reaches_the_carrier(self) -> None:
        """The carrier's INVITE carries the PIDF-LO of the configured address by value."""
        carrier = self.start_carrier()
        self.call("uac_auth", "911")
        self.finish(carrier, "carrier")
        headers, body = received_invite(
            (self.workdir / "carrier.messages").read_text(errors="replace")
        )
        cid = re.fullmatch(r"<cid:(.+)>", headers["geolocation"])
        assert cid is not None, headers
        self.assertEqual(headers["geolocation-routing"], "no")
        self.assertIn(DID, headers["p-asserted-identity"])
        message = email.message_from_bytes(
            f"Content-Type: {headers['content-type']}\r\n\r\n".encode() + body,
            policy=default_policy,
        )
        assert isinstance(message, EmailMessage)
        parts = {part.get_content_type(): part for part in message.iter_parts()}
        self.assertEqual(sorted(parts), ["application/pidf+xml", "application/sdp"])
        pidf = parts["application/pidf+xml"]
        self.assertEqual(pidf["Content-ID"], f"<{cid.group(1)}>")
        document = minidom.parseString(pidf.get_payload(decode=True))
        civic = document.getElementsByTagNameNS(CA, "civicAddress")[0]
        found = {
            n.localName: n.firstChild.data
            for n in civic.childNodes
            if n.nodeType == n.ELEMENT_NODE
        }
        self.assertEqual(found, HQ)

    def test_callback_rings_through_dnd(self) -> None:
        """Within the callback window the carrier's call to the callback number reaches 1001 despite DND."""
        phone = self.register_callee(CALLER)
        carrier = self.start_carrier()
        self.call("uac_auth", "911")
        self.finish(carrier, "carrier")
        status, login = http(
            "POST", f"{self.api.base}/auth/login", self.api._credentials
        )
        self.assertEqual(status, 200)
        status, _ = http(
            "PATCH",
            f"{self.api.base}/extensions/{CALLER}",
            {"dnd": True},
            token=login["token"],
        )
        self.assertEqual(status, 200)
        callee = self.start_callee("uas_answer", phone, 1)
        inf = self.injection("psap", [("+12125550100", DID)])
        psap = self.start_sipp(
            "uac_carrier_call",
            free_port(socket.SOCK_DGRAM),
            "-inf",
            str(inf),
            "-m",
            "1",
            "-mp",
            str(next(self.media_ports)),
            "-i",
            CARRIER,
            f"127.0.0.1:{self.sip_port}",
            name="psap",
        )
        self.finish(psap, "psap")
        self.finish(callee, "callee-uas_answer")
