"""
Micro-benchmark of the SIP message layer: microseconds per parse and per
serialisation of a typical INVITE and REGISTER.

Run: ``PYTHONPATH=src python bench/sip_parse.py``

"parse" is :func:`pbx.sip.message.parse_message`, which already parses and
checks Via, From, To, CSeq, Call-ID, Max-Forwards and Contact.  "cold" empties
the URI cache before every parse (a first-time peer); "warm" is a peer seen
before (a re-REGISTER, a call from a known phone).
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pbx.sip import uri as _uri  # noqa: E402
from pbx.sip.message import parse_message  # noqa: E402

SDP = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
)
INVITE = (
    b"INVITE sip:bob@pbx.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice" <sip:alice@pbx.example.com>;tag=9fxced76sl\r\n'
    b"To: <sip:bob@pbx.example.com>\r\n"
    b"Call-ID: 3848276298220188511@192.0.2.10\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.10:5060;transport=udp>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, INFO\r\n"
    b"Supported: replaces, timer\r\n"
    b"User-Agent: ExamplePhone/1.0\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)
REGISTER = (
    b"REGISTER sip:pbx.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds7;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:alice@pbx.example.com>;tag=a73kszlfl\r\n"
    b"To: <sip:alice@pbx.example.com>\r\n"
    b"Call-ID: 1j9FpLxk3uxtm8tn@192.0.2.10\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b"Contact: <sip:alice@192.0.2.10:5060;transport=udp>;expires=3600\r\n"
    b"User-Agent: ExamplePhone/1.0\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def microseconds(function: object, number: int = 5000) -> float:
    """Best of seven runs, in microseconds per call."""
    best = min(timeit.repeat(function, number=number, repeat=7))  # type: ignore[arg-type]
    return best / number * 1e6


def main() -> None:
    """Print one line per measurement."""
    for name, data in (("INVITE", INVITE), ("REGISTER", REGISTER)):
        message = parse_message(data)

        def cold(data: bytes = data) -> None:
            _uri._CACHE.clear()
            parse_message(data)

        print(f"{name:8} {len(data):4} octets")
        print(
            f"  parse (warm URI cache)   {microseconds(lambda data=data: parse_message(data)):6.1f} us"
        )
        print(f"  parse (cold URI cache)   {microseconds(cold):6.1f} us")
        print(f"  serialise (to_bytes)     {microseconds(message.to_bytes):6.1f} us")


if __name__ == "__main__":
    main()
