"""
HTTP Digest authentication as SIP uses it (RFC 3261 §22, RFC 7616, RFC 8760).

Pure code: it parses and builds header *values* and checks responses; it
knows nothing of SIP messages beyond the method and Request-URI strings, and
takes time from an injected clock.

Nonces are stateless (RFC 7616 §5.4)::

    base64url( timestamp(8) || random(8) || HMAC-SHA256(secret, ts||random||realm)[:16] )

so any nonce this server minted can be checked without remembering it: the
MAC proves it is ours and for this realm, the timestamp gives its age.  The
only state kept is the highest nonce-count (``nc``) accepted per nonce, for
replay protection, and that map is bounded.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
import secrets
import struct
import urllib.parse
from collections.abc import Callable

from attrs import define, field, frozen

from twisted.internet.interfaces import IReactorTime

__all__ = [
    "Credentials",
    "DigestAuthenticator",
    "DigestError",
    "SUPPORTED_ALGORITHMS",
    "Verdict",
    "compute_ha1",
    "compute_response",
    "parse_challenge",
    "parse_credentials",
]


class DigestError(ValueError):
    """An Authorization header value that is not well-formed Digest credentials."""


class Verdict(enum.Enum):
    """The outcome of checking Digest credentials."""

    #: The response is right, the nonce fresh and the nonce-count new.
    OK = "ok"
    #: The response is right but the nonce has expired: re-challenge with
    #: ``stale=true`` so the phone retries without asking its user
    #: (RFC 7616 §3.3).
    STALE = "stale"
    #: Anything else; deliberately no detail, so a peer cannot tell an
    #: unknown user from a wrong password.
    FAILED = "failed"


def _md5(data: bytes) -> str:
    # Digest MD5 is an interoperability requirement, not our security choice.
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_HASHES: dict[str, Callable[[bytes], str]] = {"MD5": _md5, "SHA-256": _sha256}
_HEX_LENGTH = {"MD5": 32, "SHA-256": 64}

SUPPORTED_ALGORITHMS: tuple[str, ...] = ("SHA-256", "MD5")
"""Algorithms this module implements, in preference order (RFC 8760 §2.4)."""


def _algorithm(name: str) -> str:
    """Canonical spelling of an algorithm name; names are case-insensitive."""
    canonical = name.upper()
    if canonical not in _HASHES:
        raise DigestError(f"unsupported digest algorithm {name!r}")
    return canonical


def _utf8(text: str) -> bytes:
    # RFC 7616 §4: user names and passwords are UTF-8 (charset=UTF-8).
    return text.encode("utf-8", "surrogatepass")


def compute_ha1(username: str, realm: str, password: str, algorithm: str) -> str:
    """
    Compute the Digest ``HA1 = H(username ":" realm ":" password)`` (RFC 7616 §3.4.2).

    :param username: the user name (for SIP, the extension).
    :param realm: the protection realm.
    :param password: the plain password.
    :param algorithm: ``"MD5"`` or ``"SHA-256"`` (case-insensitive).
    :returns: the lower-case hex digest.
    :raises DigestError: for another algorithm.
    """
    h = _HASHES[_algorithm(algorithm)]
    return h(_utf8(f"{username}:{realm}:{password}"))


def compute_response(
    ha1: str,
    *,
    nonce: str,
    method: str,
    uri: str,
    algorithm: str,
    qop: str | None = "auth",
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    """
    Compute the request-digest a client sends as ``response``.

    With ``qop="auth"``: ``KD(HA1, nonce:nc:cnonce:qop:HA2)`` where
    ``HA2 = H(method:uri)`` (RFC 7616 §3.4.1); with ``qop=None`` the RFC 2069
    form ``H(HA1:nonce:HA2)``.

    :param ha1: from :func:`compute_ha1`.
    :param nonce: the server's nonce.
    :param method: the request method.
    :param uri: the digest-uri (for SIP, the Request-URI).
    :param algorithm: ``"MD5"`` or ``"SHA-256"``.
    :param qop: ``"auth"`` or None.
    :param nc: the nonce-count, 8 hex digits (with a qop).
    :param cnonce: the client nonce (with a qop).
    :returns: the lower-case hex digest.
    :raises DigestError: for an unsupported algorithm.
    """
    h = _HASHES[_algorithm(algorithm)]
    ha2 = h(_utf8(f"{method}:{uri}"))
    if qop is None:
        return h(_utf8(f"{ha1}:{nonce}:{ha2}"))
    return h(_utf8(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"))


# -- parsing ---------------------------------------------------------------

# token (RFC 7230 §3.2.6 tchar, a superset of RFC 3261 §25.1 token).
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# quoted-string: qdtext is anything but DQUOTE, backslash and controls other
# than HTAB (non-ASCII allowed, RFC 3261 UTF8-NONASCII); quoted-pair escapes
# any character except CR and LF.
_QUOTED = r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[^\r\n])*)"'
_WS = r"[ \t]*"
_SCHEME = re.compile(rf"{_WS}({_TOKEN})[ \t]+")
_PARAM = re.compile(rf"({_TOKEN}){_WS}={_WS}(?:({_TOKEN})|{_QUOTED}){_WS}")
_COMMA = re.compile(rf",{_WS}")
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)
# LWS folding (RFC 3261 §7.3.1): a line break followed by whitespace is one SP.
_FOLD = re.compile(r"[ \t]*\r?\n[ \t]+")
_MAX_HEADER = 8192


@frozen
class Credentials:
    """
    Digest credentials from an Authorization or Proxy-Authorization header.

    ``algorithm`` is in canonical upper case and defaults to ``"MD5"`` when
    absent (RFC 7616 §3.4); ``qop``, ``nc`` and ``cnonce`` are None when the
    client sent none.  The response is left out of ``repr`` so credentials
    can be logged without the digest.
    """

    username: str
    realm: str
    nonce: str
    uri: str
    response: str = field(repr=False)
    algorithm: str = "MD5"
    cnonce: str | None = None
    opaque: str | None = None
    qop: str | None = None
    nc: str | None = None
    userhash: bool = False


def _params(text: str) -> dict[str, str]:
    """Split the auth-params after the scheme into a name -> value dict."""
    params: dict[str, str] = {}
    pos = 0
    while True:
        m = _PARAM.match(text, pos)
        if m is None:
            raise DigestError(f"malformed auth-param at offset {pos}")
        name = m.group(1).lower()
        if name in params:
            # A repeated directive is ambiguous; two parsers could disagree.
            raise DigestError(f"directive {name!r} given twice")
        token, quoted = m.group(2), m.group(3)
        params[name] = token if token is not None else _UNESCAPE.sub(r"\1", quoted)
        pos = m.end()
        if pos == len(text):
            return params
        m = _COMMA.match(text, pos)
        if m is None:
            raise DigestError(f"expected ',' at offset {pos}")
        pos = m.end()


def _ext_value(value: str) -> str:
    """Decode an RFC 8187 ext-value (``UTF-8''percent%20encoded``)."""
    charset, sep, rest = value.partition("'")
    _language, sep2, encoded = rest.partition("'")
    if not (sep and sep2) or charset.lower() != "utf-8":
        raise DigestError("username* must be UTF-8''<percent-encoded>")
    try:
        return urllib.parse.unquote(encoded, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as e:
        raise DigestError("username* is not valid UTF-8") from e


def parse_credentials(value: str) -> Credentials:
    """
    Parse an Authorization / Proxy-Authorization header value.

    Accepts the RFC 3261 §25.1 / RFC 7616 §3.4 grammar: the ``Digest``
    scheme (any case), then comma-separated ``name=value`` pairs with
    case-insensitive names, values as tokens or quoted strings with
    backslash escapes, and optional whitespace around ``=`` and ``,``.
    Unknown directives are ignored (RFC 7616 §3.4); a repeated directive, an
    empty list element or a missing required directive is an error.

    :param value: the header value, folded lines allowed.
    :returns: the credentials.
    :raises DigestError: if the value is malformed or not a Digest scheme.
    """
    if not isinstance(value, str) or len(value) > _MAX_HEADER:
        raise DigestError("credentials missing or too long")
    text = _FOLD.sub(" ", value).strip(" \t")
    m = _SCHEME.match(text)
    if m is None:
        raise DigestError("no authentication scheme")
    if m.group(1).lower() != "digest":
        raise DigestError(f"scheme {m.group(1)!r} is not Digest")
    params = _params(text[m.end() :])

    if "username*" in params:
        # RFC 7616 §3.4: username and username* MUST NOT both be present.
        if "username" in params:
            raise DigestError("both username and username* given")
        params["username"] = _ext_value(params["username*"])
    missing = [
        n for n in ("username", "realm", "nonce", "uri", "response") if n not in params
    ]
    if missing:
        raise DigestError(f"missing directive(s): {', '.join(missing)}")
    userhash = params.get("userhash", "false").lower()
    if userhash not in ("true", "false"):
        raise DigestError("userhash must be true or false")
    return Credentials(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=params["response"],
        # Kept as sent if unknown: verify() turns it into FAILED.
        algorithm=params.get("algorithm", "MD5").upper(),
        cnonce=params.get("cnonce"),
        opaque=params.get("opaque"),
        qop=params.get("qop"),
        nc=params.get("nc"),
        userhash=userhash == "true",
    )


def parse_challenge(value: str) -> dict[str, str]:
    """
    Parse a WWW-Authenticate / Proxy-Authenticate ``Digest`` challenge
    (RFC 3261 §22.4, RFC 7616 §3.3) into its lower-case directives.

    :raises DigestError: if the value is malformed, not Digest, or has no realm or nonce.
    """
    if not isinstance(value, str) or len(value) > _MAX_HEADER:
        raise DigestError("challenge missing or too long")
    text = _FOLD.sub(" ", value).strip(" \t")
    m = _SCHEME.match(text)
    if m is None or m.group(1).lower() != "digest":
        raise DigestError("not a Digest challenge")
    params = _params(text[m.end() :])
    if "realm" not in params or "nonce" not in params:
        raise DigestError("a challenge needs realm and nonce")
    return params


def _quote(text: str) -> str:
    """Render ``text`` as a quoted-string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- the authenticator ---------------------------------------------------------

_TS = struct.Struct(">Q")  # milliseconds on the injected clock
_RANDOM_BYTES = 8
_MAC_BYTES = 16
_NONCE_BYTES = _TS.size + _RANDOM_BYTES + _MAC_BYTES
_NONCE_TEXT = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of 32 bytes, unpadded
_NC = re.compile(r"[0-9A-Fa-f]{8}")


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and all(ch in "0123456789abcdefABCDEF" for ch in text)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@define(eq=False)
class DigestAuthenticator:
    """
    Issues Digest challenges and checks the answers for one realm.

    :ivar realm: the protection realm, also bound into every nonce.
    :ivar clock: source of time (``seconds()``).
    :ivar secret: server key for nonce MACs, at least 16 bytes; nonces from
        before a restart stay valid only if it is kept.
    :ivar nonce_lifetime: seconds a nonce is accepted; after that a correct
        answer gets :attr:`Verdict.STALE`.
    :ivar algorithms: algorithms offered, in preference order.
    :ivar max_nc_tracked: most nonces whose nonce-count is remembered.
    :ivar allow_no_qop: accept RFC 2069 responses without ``qop``; these
        have no nonce-count, so no replay protection within a nonce's life.
    :ivar opaque: if set, sent in every challenge and required back
        unchanged (RFC 7616 §3.3).
    """

    realm: str
    clock: IReactorTime
    secret: bytes = field(repr=False)
    nonce_lifetime: float = 300
    algorithms: tuple[str, ...] = SUPPORTED_ALGORITHMS
    max_nc_tracked: int = 100_000
    allow_no_qop: bool = False
    opaque: str | None = None
    # nonce -> (minted at, in ms; highest nc accepted).  Insertion-ordered,
    # so the front holds the nonces first used longest ago.
    _nc_seen: dict[str, tuple[int, int]] = field(init=False, factory=dict)
    # Nonces minted at or before this (ms) that are not in _nc_seen had their
    # entry evicted under memory pressure: they get STALE, never OK, so that
    # eviction cannot reopen a replay window.
    _evicted_floor: int = field(init=False, default=-1)
    _last_sweep: int = field(init=False, default=0)  # ms
    # Per algorithm, the HA1 of a random password: unknown users are checked
    # against it so they cost the same work as known ones.
    _dummy_ha1: dict[str, str] = field(init=False, factory=dict, repr=False)

    def __attrs_post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ValueError("the nonce secret must be at least 16 bytes")
        if self.nonce_lifetime <= 0:
            raise ValueError("nonce_lifetime must be positive")
        if self.max_nc_tracked < 1:
            raise ValueError("max_nc_tracked must be at least 1")
        canonical = tuple(_algorithm(a) for a in self.algorithms)
        if not canonical or len(set(canonical)) != len(canonical):
            raise ValueError("algorithms must be a non-empty list without repeats")
        self.algorithms = canonical
        self._last_sweep = self._now_ms()
        for algorithm in canonical:
            self._dummy_ha1[algorithm] = compute_ha1(
                "", self.realm, secrets.token_urlsafe(32), algorithm
            )

    @property
    def tracked_nonces(self) -> int:
        """How many nonces' nonce-counts are being remembered."""
        return len(self._nc_seen)

    # -- nonces ------------------------------------------------------------

    def _now_ms(self) -> int:
        return max(0, int(self.clock.seconds() * 1000))

    def _mac(self, head: bytes) -> bytes:
        mac = hmac.new(self.secret, head + _utf8(self.realm), hashlib.sha256)
        return mac.digest()[:_MAC_BYTES]

    def make_nonce(self) -> str:
        """
        Mint a fresh stateless nonce.

        :returns: 43 base64url characters (token-safe, no quoting needed).
        """
        head = _TS.pack(self._now_ms()) + secrets.token_bytes(_RANDOM_BYTES)
        return _b64url(head + self._mac(head))

    def _nonce_time(self, nonce: str) -> int | None:
        """The mint time (ms) of a nonce this authenticator made, else None."""
        if not _NONCE_TEXT.fullmatch(nonce):
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=")
        except binascii.Error:
            return None
        # Only the canonical spelling: the unused low bits of the last
        # character must not give one nonce several names (and nc counters).
        if len(raw) != _NONCE_BYTES or _b64url(raw) != nonce:
            return None
        head, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(self._mac(head), mac):
            return None
        (minted,) = _TS.unpack(head[: _TS.size])
        return int(minted)

    def challenge(self, *, stale: bool = False) -> list[str]:
        """
        Build WWW-Authenticate / Proxy-Authenticate header values.

        One value per algorithm, in preference order (RFC 8760 §2.4: the
        client uses the first it supports), all sharing one fresh nonce.

        :param stale: mark the previous nonce as expired (RFC 7616 §3.3).
        :returns: header values, e.g.
            ``Digest realm="pbx", nonce="...", algorithm=SHA-256, qop="auth"``.
        """
        nonce = self.make_nonce()
        values = []
        for algorithm in self.algorithms:
            parts = [f"realm={_quote(self.realm)}", f'nonce="{nonce}"']
            if self.opaque is not None:
                parts.append(f"opaque={_quote(self.opaque)}")
            parts.append(f"algorithm={algorithm}")
            parts.append('qop="auth"')
            if stale:
                parts.append("stale=true")
            values.append("Digest " + ", ".join(parts))
        return values

    # -- verification --------------------------------------------------------

    def verify(
        self,
        credentials: Credentials,
        method: str,
        ha1_for: Callable[[str, str], str | None],
        *,
        uri: str | None = None,
    ) -> Verdict:
        """
        Check Digest credentials against a request.

        An unknown user and a wrong password give the same verdict after
        the same work (one digest against a dummy HA1).  STALE is given only
        when the response is right for the expired nonce, i.e. the client
        knows the password (RFC 7616 §3.3).

        :param credentials: parsed from the request's authorization header.
        :param method: the request method, e.g. ``"REGISTER"``.
        :param ha1_for: ``(username, algorithm) -> HA1 hex`` for this realm,
            or None (or ``""``) when there is no such user or no HA1 for
            that algorithm.
        :param uri: the Request-URI; when given, the credentials' ``uri``
            must equal it (RFC 7616 §3.4.6), so an answer cannot be lifted
            onto another request.  Pass it already in the form the client
            signed.
        :returns: :attr:`Verdict.OK`, :attr:`Verdict.STALE` or
            :attr:`Verdict.FAILED`.
        """
        c = credentials
        algorithm = c.algorithm.upper()
        if (
            algorithm not in self.algorithms
            or c.userhash
            or c.realm != self.realm
            or (uri is not None and c.uri != uri)
            or (self.opaque is not None and c.opaque != self.opaque)
        ):
            return Verdict.FAILED
        if c.qop is None:
            if not self.allow_no_qop or c.nc is not None or c.cnonce is not None:
                return Verdict.FAILED
            nc = 0
        else:
            # We only offer qop="auth"; auth-int would need the body.
            if c.qop.lower() != "auth" or c.nc is None or c.cnonce is None:
                return Verdict.FAILED
            if not _NC.fullmatch(c.nc):
                return Verdict.FAILED
            nc = int(c.nc, 16)
        minted = self._nonce_time(c.nonce)
        if minted is None:
            return Verdict.FAILED

        stored = ha1_for(c.username, algorithm)
        known = isinstance(stored, str) and _is_hex(stored, _HEX_LENGTH[algorithm])
        ha1 = (
            stored.lower()
            if known and stored is not None
            else self._dummy_ha1[algorithm]
        )
        expected = compute_response(
            ha1,
            nonce=c.nonce,
            method=method,
            uri=c.uri,
            algorithm=algorithm,
            qop=c.qop,
            nc=c.nc,
            cnonce=c.cnonce,
        )
        # Bytes, so a non-ASCII response cannot make compare_digest raise.
        matches = hmac.compare_digest(
            expected.encode("ascii"), _utf8(c.response.lower())
        )
        if not (matches and known):
            return Verdict.FAILED

        now = self._now_ms()
        self._sweep(now)
        age = now - minted
        if age > self.nonce_lifetime * 1000 or age < 0:
            # A future timestamp means the clock stepped back: re-challenge.
            return Verdict.STALE
        if c.qop is None:
            return Verdict.OK  # RFC 2069: no counter to check
        entry = self._nc_seen.get(c.nonce)
        if entry is None:
            if minted <= self._evicted_floor:
                return Verdict.STALE  # its counter was forgotten: fresh nonce
            last = 0
        else:
            last = entry[1]
        if nc <= last:
            return Verdict.FAILED  # replay (RFC 7616 §3.4.1, nonce-count)
        self._remember(c.nonce, minted, nc, now)
        return Verdict.OK

    # -- the nonce-count map ------------------------------------------------

    def _remember(self, nonce: str, minted: int, nc: int, now: int) -> None:
        if nonce in self._nc_seen:
            self._nc_seen[nonce] = (minted, nc)
            return
        if len(self._nc_seen) >= self.max_nc_tracked:
            self._sweep(now, force=True)
        if len(self._nc_seen) >= self.max_nc_tracked:
            # Still full of live nonces: drop the oldest tenth in one go so
            # the next inserts are cheap, and remember how far we dropped.
            for _ in range(max(1, self.max_nc_tracked // 10)):
                old, (old_minted, _nc) = next(iter(self._nc_seen.items()))
                del self._nc_seen[old]
                self._evicted_floor = max(self._evicted_floor, old_minted)
        self._nc_seen[nonce] = (minted, nc)

    def _sweep(self, now: int, *, force: bool = False) -> None:
        """Forget counters of expired nonces; at most once per lifetime unless forced."""
        lifetime = self.nonce_lifetime * 1000
        if not force and now - self._last_sweep < lifetime:
            return
        self._last_sweep = now
        self._nc_seen = {
            n: entry for n, entry in self._nc_seen.items() if now - entry[0] <= lifetime
        }
