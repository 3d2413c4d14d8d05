"""
Answering a Digest challenge as a client (RFC 3261 §22.2, RFC 7616 §3.4,
RFC 8760): what pbx sends when a carrier challenges its REGISTER or INVITE.

Pure code: given the challenge header values of a 401/407 and the request's
method and Request-URI, it makes the Authorization / Proxy-Authorization
value.  The hashes are :mod:`pbx.sip.auth`'s.
"""

from __future__ import annotations

import re
import secrets

from attrs import evolve, frozen

from pbx.sip.auth import (
    SUPPORTED_ALGORITHMS,
    DigestError,
    compute_ha1,
    compute_response,
    parse_challenge,
)
from pbx.sip.ids import new_branch
from pbx.sip.message import Request, Response

__all__ = ["Answer", "answer_challenge", "authorized_retry", "is_stale"]

_BRANCH = re.compile(r"(;\s*branch=)[^;,\s]+", re.I)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@frozen
class Answer:
    """
    Credentials for a retried request.

    :ivar header: ``Authorization`` (for 401) or ``Proxy-Authorization`` (for 407).
    :ivar value: the header value.
    :ivar realm: the realm answered.
    :ivar nonce: the nonce answered (a second challenge with the same one
        and no ``stale=true`` means the credentials are wrong).
    """

    header: str
    value: str
    realm: str
    nonce: str


def answer_challenge(
    status: int, challenges: list[str], *, method: str, uri: str, username: str, password: str,
    nc: int = 1, cnonce: str | None = None, algorithms: tuple[str, ...] = SUPPORTED_ALGORITHMS,
) -> Answer:
    """
    Answer the strongest challenge we support among ``challenges`` (RFC 8760
    §2.4: SHA-256 before MD5).

    :param status: 401 or 407.
    :param challenges: the WWW-Authenticate / Proxy-Authenticate values.
    :param uri: the Request-URI of the request being retried (the digest-uri).
    :param algorithms: the algorithms we may answer with (FIPS mode: SHA-256 only).
    :raises DigestError: no usable Digest challenge.
    """
    parsed = []
    for value in challenges:
        try:
            params = parse_challenge(value)
        except DigestError:
            continue
        algorithm = params.get("algorithm", "MD5").upper()
        if algorithm in SUPPORTED_ALGORITHMS and algorithm in algorithms:
            parsed.append((SUPPORTED_ALGORITHMS.index(algorithm), algorithm, params))
    if not parsed:
        raise DigestError("no Digest challenge with an algorithm we support")
    _, algorithm, params = min(parsed, key=lambda p: p[0])
    realm, nonce = params["realm"], params["nonce"]
    qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
    qop = "auth" if "auth" in qops else None
    if qops and qop is None:
        raise DigestError("the challenge offers no qop we support (auth)")
    ha1 = compute_ha1(username, realm, password, algorithm)
    count = f"{nc:08x}"
    client_nonce = cnonce or secrets.token_hex(8)
    response = compute_response(ha1, nonce=nonce, method=method, uri=uri, algorithm=algorithm, qop=qop,
                                nc=count if qop else None, cnonce=client_nonce if qop else None)
    parts = [f"username={_quote(username)}", f"realm={_quote(realm)}", f"nonce={_quote(nonce)}",
             f"uri={_quote(uri)}", f"response={_quote(response)}", f"algorithm={algorithm}"]
    if qop:
        parts += [f"qop={qop}", f"nc={count}", f"cnonce={_quote(client_nonce)}"]
    if "opaque" in params:
        parts.append(f"opaque={_quote(params['opaque'])}")
    header = "Proxy-Authorization" if status == 407 else "Authorization"
    return Answer(header, "Digest " + ", ".join(parts), realm, nonce)


def is_stale(challenges: list[str]) -> bool:
    """Whether a challenge says the last nonce was only stale (RFC 7616 §3.3: retry without asking)."""
    for value in challenges:
        try:
            if parse_challenge(value).get("stale", "").lower() == "true":
                return True
        except DigestError:
            continue
    return False


def authorized_retry(
    request: Request, response: Response, username: str, password: str,
    algorithms: tuple[str, ...] = SUPPORTED_ALGORITHMS,
) -> Request | None:
    """
    RFC 3261 §22.2: the request again, answering the 401/407 ``response``
    with ``username``'s credentials: the same Call-ID, From tag and To, the
    CSeq one higher (§8.1.3.5), a new Via branch (a new transaction).

    :param algorithms: the digest algorithms we may answer with.
    :returns: None when the request already answered a challenge of this
        kind and the new one is not merely stale: the credentials are wrong
        and retrying again would loop; or when no challenge uses an
        algorithm of ``algorithms``.
    """
    if response.status not in (401, 407):
        return None
    challenge_header = "Proxy-Authenticate" if response.status == 407 else "WWW-Authenticate"
    challenges = response.headers.get_all(challenge_header)
    header = "Proxy-Authorization" if response.status == 407 else "Authorization"
    if request.headers.get(header) is not None and not is_stale(challenges):
        return None
    try:
        answer = answer_challenge(response.status, challenges, method=request.method, uri=str(request.uri),
                                  username=username, password=password, algorithms=algorithms)
    except DigestError:
        return None
    headers = request.headers.copy()
    vias = headers.get_all("Via")
    headers.remove("Via")
    top = _BRANCH.sub(lambda m: m.group(1) + new_branch(), vias[0], count=1)
    for via in reversed([top, *vias[1:]]):
        headers.prepend("Via", via)
    headers.set("CSeq", f"{request.cseq.number + 1} {request.method}")
    headers.set(answer.header, answer.value)
    return evolve(request, headers=headers)
