"""
SRTP (RFC 3711) with keys exchanged in SDP (SDES, RFC 4568): the
``a=crypto`` attribute, key material, and the per-leg contexts that protect
and unprotect packets.

The cryptography is libsrtp's (pylibsrtp); this module only names suites,
draws keys from :mod:`secrets` and holds one libsrtp session per direction:

- :class:`Crypto` is one ``a=crypto`` line: tag, suite, master key and salt
  (``inline:`` base64, RFC 4568 §9.2).  Lines pbx cannot use (an unknown
  suite, an MKI, several keys, a key lifetime shorter than a call) parse to
  ``None`` and are skipped, as §6.1 tells an answerer to.
- :class:`LegCrypto` is what one leg of a call agreed on: the phone's key
  (what pbx unprotects with) and pbx's key for that leg (what pbx protects
  with).  Each leg has its own keys, so two SRTP phones never share one.

Nothing here imports Twisted.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Callable

import pylibsrtp
from attrs import frozen

__all__ = [
    "SUITES",
    "Crypto",
    "LegCrypto",
    "Suite",
    "crypto_lines",
    "inbound",
    "new_crypto",
    "outbound",
    "parse_crypto",
]


@frozen
class Suite:
    """An SDES crypto-suite: its libsrtp profile and master key and salt sizes."""

    name: str
    profile: int
    key_length: int
    salt_length: int

    @property
    def material_length(self) -> int:
        """Bytes of the ``inline:`` key: master key then master salt."""
        return self.key_length + self.salt_length


_P = pylibsrtp.Policy
#: The suites pbx speaks, in the order it offers them: RFC 4568 §6.2's two
#: AES-CM suites (80-bit tag first, the one every SRTP phone has) and
#: RFC 7714 §12's AES-GCM (a 12-byte salt).
SUITES: dict[str, Suite] = {s.name: s for s in (
    Suite("AES_CM_128_HMAC_SHA1_80", _P.SRTP_PROFILE_AES128_CM_SHA1_80, 16, 14),
    Suite("AES_CM_128_HMAC_SHA1_32", _P.SRTP_PROFILE_AES128_CM_SHA1_32, 16, 14),
    Suite("AEAD_AES_128_GCM", _P.SRTP_PROFILE_AEAD_AES_128_GCM, 16, 12),
)}  # fmt: skip

# RFC 4568 §9.1: tag 1*9DIGIT, crypto-suite, key-params (";"-separated), session params.
_CRYPTO = re.compile(r"([0-9]{1,9})[ \t]+([A-Za-z0-9_]+)[ \t]+(\S+)(?:[ \t]+(.*))?\Z")
# RFC 4568 §9.2 (SRTP key-info): key||salt ["|" lifetime] ["|" MKI:length].
_LIFETIME = re.compile(r"(?:2\^([0-9]{1,2})|([0-9]{1,20}))\Z")
#: The shortest master key lifetime pbx accepts: a key that must change
#: during a call needs re-keying, which pbx does not do.
_MIN_LIFETIME_BITS = 31


@frozen
class Crypto:
    """
    One ``a=crypto`` attribute (RFC 4568 §9.1) with one inline key.

    :ivar tag: the offerer's number for this line; the answer repeats it.
    :ivar suite: a name of :data:`SUITES`.
    :ivar material: master key then master salt.
    """

    tag: int
    suite: str
    material: bytes = b""

    def to_value(self) -> str:
        """The attribute value: ``1 AES_CM_128_HMAC_SHA1_80 inline:...``."""
        key = base64.b64encode(self.material).decode("ascii")
        return f"{self.tag} {self.suite} inline:{key}"

    def __repr__(self) -> str:
        return f"Crypto({self.tag}, {self.suite!r}, <key>)"  # never log keys


def parse_crypto(value: str | None) -> Crypto | None:
    """
    One ``a=crypto`` value as pbx can use it, or None: malformed, an
    unknown suite, session parameters, an MKI or more than one key,
    a lifetime shorter than 2^31 packets, or a key of the wrong length.
    """
    match = _CRYPTO.match((value or "").strip())
    if match is None:
        return None
    tag, name, params, session_params = match.groups()
    suite = SUITES.get(name.upper())
    if suite is None or session_params or ";" in params:
        return None  # §6.3: UNENCRYPTED_SRTP etc. and several keys (MKI) are not ours
    method, _, info = params.partition(":")
    if method != "inline":
        return None
    key, *rest = info.split("|")
    if len(rest) > 1 or (rest and not _long_lifetime(rest[0])):
        return None
    try:
        material = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(material) != suite.material_length:
        return None
    return Crypto(int(tag), suite.name, material)


def _long_lifetime(text: str) -> bool:
    match = _LIFETIME.match(text)
    if match is None:
        return False  # an MKI (value:length) or junk
    power, plain = match.groups()
    bits = int(power) if power is not None else int(plain).bit_length() - 1
    return bits >= _MIN_LIFETIME_BITS


def crypto_lines(values: list[str]) -> list[Crypto]:
    """The usable ``a=crypto`` lines of a stream, in the offer's order of preference."""
    return [c for c in (parse_crypto(v) for v in values) if c is not None]


def new_crypto(suite: str, tag: int) -> Crypto:
    """A fresh master key and salt for ``suite`` from the system's CSPRNG."""
    return Crypto(tag, suite, secrets.token_bytes(SUITES[suite].material_length))


def _session(crypto: Crypto, direction: int) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(key=crypto.material, ssrc_type=direction,
                              srtp_profile=SUITES[crypto.suite].profile)  # fmt: skip
    if direction == _P.SSRC_ANY_OUTBOUND:
        # A relayed stream may repeat a packet (the phone retransmitted, or the
        # network duplicated it); libsrtp would refuse to protect it again.
        policy.allow_repeat_tx = True
    return pylibsrtp.Session(policy)


class LegCrypto:
    """
    The SRTP contexts of one leg: ``theirs`` unprotects what the phone
    sends, ``ours`` protects what pbx sends it (RFC 4568 §6.1: each side
    encrypts with the key it announced).

    :ivar failed: packets that failed authentication or the replay check
        (dropped).
    """

    def __init__(self, theirs: Crypto, ours: Crypto) -> None:
        """:raises ValueError: the two keys are of different suites."""
        if theirs.suite != ours.suite:
            raise ValueError(f"suites differ: {theirs.suite} and {ours.suite}")
        self.suite = theirs.suite
        self.keys = (theirs.material, ours.material)
        self._in = _session(theirs, _P.SSRC_ANY_INBOUND)
        self._out = _session(ours, _P.SSRC_ANY_OUTBOUND)
        self._theirs = theirs
        self.failed = 0

    def same_keys(self, theirs: Crypto, ours: Crypto) -> bool:
        """Whether these are the keys in use (a re-offer that keeps them keeps the contexts)."""
        return self.suite == theirs.suite and self.keys == (theirs.material, ours.material)

    def unprotect(self, data: bytes) -> bytes | None:
        """An SRTP packet from the phone as RTP; None (counted) if it fails authentication."""
        try:
            return self._in.unprotect(data)
        except (pylibsrtp.Error, ValueError):
            self.failed += 1
            return None

    def unprotect_rtcp(self, data: bytes) -> bytes | None:
        """An SRTCP packet from the phone as RTCP; None (counted) if it fails authentication."""
        try:
            return self._in.unprotect_rtcp(data)
        except (pylibsrtp.Error, ValueError):
            self.failed += 1
            return None

    def protect(self, data: bytes) -> bytes:
        """
        An RTP packet for the phone as SRTP.

        :raises OSError: libsrtp refused it (the relay counts a send error).
        """
        try:
            return self._out.protect(data)
        except (pylibsrtp.Error, ValueError) as e:
            raise OSError(f"SRTP protect failed: {e}") from None

    def protect_rtcp(self, data: bytes) -> bytes:
        """An RTCP packet for the phone as SRTCP; :raises OSError: libsrtp refused it."""
        try:
            return self._out.protect_rtcp(data)
        except (pylibsrtp.Error, ValueError) as e:
            raise OSError(f"SRTCP protect failed: {e}") from None

    def listener_view(self) -> Callable[[bytes], bytes | None]:
        """
        Unprotect with a context of its own (its own replay window): for
        a recording that sees the phone's packets beside the relay.
        """
        inbound = _session(self._theirs, _P.SSRC_ANY_INBOUND)

        def view(data: bytes) -> bytes | None:
            try:
                return inbound.unprotect(data)
            except (pylibsrtp.Error, ValueError):
                return None

        return view


def inbound(unprotect: Callable[[bytes], bytes | None] | None,
            transform: Callable[[bytes], bytes | None] | None) -> Callable[[bytes], bytes | None] | None:
    """
    What a relay socket does to each packet it accepts: ``unprotect``
    (SRTP to RTP), then ``transform`` (transcoding); None when neither is
    needed, which keeps the relay's fast path.
    """
    if unprotect is None:
        return transform
    if transform is None:
        return unprotect

    def both(data: bytes) -> bytes | None:
        plain = unprotect(data)
        return transform(plain) if plain else None

    return both


def outbound(protect: Callable[[bytes], bytes], send: Callable[[bytes, tuple[str, int]], object]
             ) -> Callable[[bytes, tuple[str, int]], object]:
    """A send function that protects each packet (RTP to SRTP) before ``send``."""

    def protected(data: bytes, addr: tuple[str, int]) -> object:
        return send(protect(data), addr)

    return protected
