"""
A minimal SIP phone that registers over UDP with SHA-256 digest auth.

The packaged SIP tools (sipsak, SIPp, baresip 1.0) answer MD5 only, and
pbx's own digest client is what is under test, so ``prove.sh`` uses this
independent one: the standard library only, written from the RFCs.

    python3 sha256_register.py HOST PORT DOMAIN USER PASSWORD

Prints each response's status line; exits 0 once a 200 OK arrives, 1 on any
other final response, 2 when the challenge offers no SHA-256, 3 on silence.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import socket
import sys

#: Attempts per request over UDP, and seconds to wait for each (RFC 3261 §17.1.2.2
#: retransmits; a few tries are enough on loopback).
TRIES, WAIT = 4, 2.0


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def challenges(response: str) -> list[dict[str, str]]:
    """The Digest challenges of a 401, one dict of parameters each."""
    found = []
    for line in response.split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "www-authenticate" and value.strip().lower().startswith("digest"):
            pairs = re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]*))', value)
            found.append({key.lower(): quoted or bare for key, quoted, bare in pairs})
    return found


def authorization(challenge: dict[str, str], user: str, password: str, uri: str) -> str:
    """RFC 7616 §3.4.1 with SHA-256 (RFC 8760 §2.5 for SIP), qop=auth."""
    realm, nonce = challenge["realm"], challenge["nonce"]
    cnonce, nc = secrets.token_hex(8), "00000001"
    ha1 = sha256(f"{user}:{realm}:{password}")
    ha2 = sha256(f"REGISTER:{uri}")
    response = sha256(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
    value = (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
             f'response="{response}", algorithm=SHA-256, qop=auth, nc={nc}, cnonce="{cnonce}"')
    if "opaque" in challenge:
        value += f', opaque="{challenge["opaque"]}"'
    return value


def main(host: str, port: str, domain: str, user: str, password: str) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(WAIT)
    local = sock.getsockname()[1]
    uri, call_id, tag = f"sip:{domain}", secrets.token_hex(8), secrets.token_hex(4)

    def send(cseq: int, extra: str = "") -> str | None:
        request = (
            f"REGISTER {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{user}@{domain}>;tag={tag}\r\n"
            f"To: <sip:{user}@{domain}>\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: {cseq} REGISTER\r\n"
            f"Contact: <sip:{user}@127.0.0.1:{local}>\r\n"
            "Expires: 120\r\n"
            f"{extra}"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        for _ in range(TRIES):
            sock.sendto(request, (host, int(port)))
            try:
                while True:
                    data = sock.recv(65535).decode(errors="replace")
                    status = data.split("\r\n", 1)[0]
                    print(status)
                    if not status.startswith("SIP/2.0 1"):  # skip provisional responses
                        return data
            except TimeoutError:
                continue
        return None

    first = send(1)
    if first is None:
        return 3
    if first.startswith("SIP/2.0 200"):
        return 0
    offered = [c for c in challenges(first) if c.get("algorithm", "MD5").upper() == "SHA-256"]
    if not first.startswith("SIP/2.0 401") or not offered:
        return 2
    second = send(2, f"Authorization: {authorization(offered[0], user, password, uri)}\r\n")
    if second is None:
        return 3
    return 0 if second.startswith("SIP/2.0 200") else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
