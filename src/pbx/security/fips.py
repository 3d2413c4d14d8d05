"""
FIPS mode (``security.fips: true``): pbx uses only approved algorithms,
and refuses to start unless the crypto libraries run in FIPS mode
themselves.

pbx does no cryptography of its own: its algorithms come from two OpenSSL
builds, and both must be in FIPS mode, or a promise made in the config
would not be kept:

- the one inside ``cryptography`` (TLS through pyOpenSSL, certificates,
  STIR/SHAKEN signatures), asked through its ``is_fips_enabled``;
- the one Python's ``hashlib`` is linked against (PBKDF2-HMAC-SHA256 for
  passwords and PINs, digest authentication's SHA-256), asked through
  ``_hashlib.get_fips_mode``.

Both questions only read the default property query (``fips=yes``) that
the OpenSSL config set; neither asks whether a FIPS provider is active to
answer it. Where none is, the library says it is in FIPS mode and then
fails every digest, cipher and key: the wheel of ``cryptography`` carries
an OpenSSL of its own, and one ``fips.so`` loaded by the system's OpenSSL
first cannot be started again by the second (the second core is left with
no provider matching ``fips=yes``). So each library is also asked for a
SHA-256 of a known message (FIPS 180-4, appendix B.1), and pbx starts only
where both give the right answer.

A library in FIPS mode refuses the algorithms that are not approved; pbx
keeps to the approved ones on its side as well, so that nothing it would
ask for fails at run time:

- SIP digest authentication offers and accepts SHA-256 only (RFC 8760);
  an MD5 challenge from a carrier is not answered (FIPS 180-4 has no MD5);
- TLS 1.2 or newer with AES-GCM suites and ECDHE or DHE key exchange only
  (NIST SP 800-52 Rev. 2, §3.3.1), for phones and for carriers;
- passwords and PINs hashed with PBKDF2-HMAC-SHA256 (SP 800-132), as ever;
- SRTP with AES suites only (its SDES suites are all AES-CM or AES-GCM).

Stored digest HA1 values for MD5 are still written beside the SHA-256
ones (with ``usedforsecurity=False``), so that turning FIPS mode off does
not force every phone's password to be set again; in FIPS mode they are
never used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import frozen
from OpenSSL import SSL

__all__ = [
    "APPROVED_DIGESTS",
    "TLS12_CIPHERS",
    "TLS13_SUITES",
    "approved_options",
    "FipsState",
    "answers_sha256",
    "library_state",
    "refusal",
    "unusable",
    "restrict_context",
]

#: SIP digest algorithms allowed in FIPS mode.
APPROVED_DIGESTS: tuple[str, ...] = ("SHA-256",)

#: TLS 1.2 suites allowed in FIPS mode (OpenSSL cipher list syntax).
TLS12_CIPHERS = "ECDHE+AESGCM:DHE+AESGCM:!aNULL:!eNULL:!PSK:!SRP"

#: TLS 1.3 suites allowed in FIPS mode (no ChaCha20-Poly1305).
TLS13_SUITES = "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256"


@frozen
class FipsState:
    """
    Whether each crypto library pbx relies on is in FIPS mode.

    :ivar crypto: the OpenSSL inside ``cryptography`` (TLS, certificates, signatures).
    :ivar crypto_version: its version text.
    :ivar hashlib: the OpenSSL behind Python's ``hashlib`` (password hashes, digests).
    :ivar hashlib_version: its version text.
    :ivar crypto_sha256: ``cryptography`` computed a SHA-256 right (a provider answers).
    :ivar hashlib_sha256: ``hashlib``'s OpenSSL computed a SHA-256 right.
    """

    crypto: bool
    crypto_version: str
    hashlib: bool
    hashlib_version: str
    crypto_sha256: bool = True
    hashlib_sha256: bool = True

    @property
    def enabled(self) -> bool:
        """Both libraries are in FIPS mode, each with a provider that answers."""
        return self.crypto and self.hashlib and self.crypto_sha256 and self.hashlib_sha256

    def summary(self) -> dict[str, object]:
        """For ``GET /api/v1/status``."""
        return {
            "cryptography": {"fips": self.crypto, "openssl": self.crypto_version, "sha256": self.crypto_sha256},
            "hashlib": {"fips": self.hashlib, "openssl": self.hashlib_version, "sha256": self.hashlib_sha256},
        }


#: SHA-256("abc"), FIPS 180-4 appendix B.1 (the NIST example).
_ABC_SHA256 = bytes.fromhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def answers_sha256(digest: Callable[[bytes], bytes]) -> bool:
    """
    Whether ``digest`` (a SHA-256 of one library) gives the known answer.

    A library in FIPS mode without an active FIPS provider raises here
    (``ValueError`` from ``hashlib``, ``InternalError`` or
    ``UnsupportedAlgorithm`` from ``cryptography``).
    """
    from cryptography.exceptions import InternalError, UnsupportedAlgorithm

    try:
        return digest(b"abc") == _ABC_SHA256
    except (ValueError, InternalError, UnsupportedAlgorithm):
        return False


def _cryptography_sha256(data: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes

    h = hashes.Hash(hashes.SHA256())
    h.update(data)
    return h.finalize()


def _hashlib_sha256(data: bytes) -> bytes:
    # _hashlib, not hashlib.sha256: hashlib falls back to Python's own
    # SHA-256 when OpenSSL refuses, and the question is about OpenSSL.
    import _hashlib  # type: ignore[import-not-found]

    return bytes(_hashlib.new("sha256", data).digest())


def library_state() -> FipsState:
    """Ask both libraries now."""
    import _hashlib  # type: ignore[import-not-found]
    import ssl

    from cryptography.hazmat.bindings._rust import openssl as rust_openssl

    return FipsState(
        crypto=bool(rust_openssl.is_fips_enabled()),
        crypto_version=str(rust_openssl.openssl_version_text()),
        hashlib=bool(_hashlib.get_fips_mode()),
        hashlib_version=ssl.OPENSSL_VERSION,
        crypto_sha256=answers_sha256(_cryptography_sha256),
        hashlib_sha256=answers_sha256(_hashlib_sha256),
    )


def refusal(wanted: bool, state: Callable[[], FipsState] | None = None) -> str | None:
    """
    Why pbx cannot start as the config asks, or None when it can.

    :param wanted: ``security.fips``.
    :param state: asks the libraries (default: :func:`library_state`).
    """
    if not wanted:
        return None
    found = (state or library_state)()
    missing = []
    if not found.crypto:
        missing.append(f"cryptography's {found.crypto_version}")
    if not found.hashlib:
        missing.append(f"hashlib's {found.hashlib_version}")
    if not missing:
        return None
    return (
        f"is true, but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not in FIPS mode "
        "(enable the OpenSSL FIPS provider, or set it to false)"
    )


def unusable(found: FipsState) -> str | None:
    """
    Why the crypto libraries cannot serve pbx at all, whatever the config says, or None.

    A library whose SHA-256 fails has no provider for it: nearly always an
    OpenSSL config that puts it in FIPS mode (``fips=yes``) where its FIPS
    provider did not start. pbx would fail later, at its first TLS context
    or password hash, with a traceback; this says it first, in one line.
    """
    broken = []
    if not found.crypto_sha256:
        broken.append(f"cryptography's {found.crypto_version}" + (" (in FIPS mode)" if found.crypto else ""))
    if not found.hashlib_sha256:
        broken.append(f"hashlib's {found.hashlib_version}" + (" (in FIPS mode)" if found.hashlib else ""))
    if not broken:
        return None
    return (
        f"{' and '.join(broken)} cannot compute SHA-256: no OpenSSL provider answers (see OPENSSL_CONF; "
        "a FIPS provider that did not start? two OpenSSL builds in one process need a copy of fips.so each)"
    )


def approved_options() -> dict[str, Any]:
    """Keyword arguments of ``CertificateOptions`` for TLS 1.2+ with the approved TLS 1.2 suites."""
    from twisted.internet.ssl import AcceptableCiphers, TLSVersion

    return {
        "raiseMinimumTo": TLSVersion.TLSv1_2,
        "acceptableCiphers": AcceptableCiphers.fromOpenSSLCipherString(TLS12_CIPHERS),
    }


def restrict_context(context: SSL.Context) -> SSL.Context:
    """Keep a TLS context to TLS 1.2+ and the approved suites (SP 800-52 Rev. 2)."""
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_cipher_list(TLS12_CIPHERS.encode())
    context.set_tls13_ciphersuites(TLS13_SUITES.encode())
    return context
