"""
The ``stir_shaken:`` section of the configuration, validated into one frozen
:class:`StirShakenOptions`, and the files it names read into
:class:`Credentials`.

::

    stir_shaken:
      certificate: /etc/pbx/shaken.pem       # signing: our certificate (and chain) ...
      key: /etc/pbx/shaken.key               # ... its P-256 private key ...
      x5u: "https://certs.example.com/shaken.pem"   # ... and where verifiers fetch it
      trust: [/etc/pbx/sti-ca.pem]           # verifying: the STI-CAs' certificates
      allowed_x5u: ["https://cr.sti-ca.example/"]   # default: any public https URL
      max_age: 60                            # seconds iat may be off (RFC 8224 §6.2.1)
      reject_failed: false                   # true: failed calls get 436/437/438/403
      x5u_timeout: 5                         # seconds per certificate fetch
      x5u_max_bytes: 65536
      x5u_cache_ttl: 3600                    # ceiling on Cache-Control max-age
      require_tn_auth_list: true             # signers' certificates must carry TNAuthList

Signing needs ``certificate``, ``key`` and ``x5u`` together; verifying
needs ``trust``.  Errors name the key (``stir_shaken.trust[1]: ...``).
Relative paths are taken from the configuration file's directory.  Pure:
no Twisted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pbx.errors import ConfigError
from pbx.stir.certificates import CertificateError, TrustAnchors, read_certificates
from pbx.stir.locations import normalise_prefix, x5u_problem
from pbx.validation import text_problem

__all__ = ["Credentials", "StirShakenOptions", "load_credentials", "parse_options"]

SECTION = "stir_shaken"
_KEYS = frozenset(
    {
        "certificate",
        "key",
        "x5u",
        "trust",
        "allowed_x5u",
        "max_age",
        "reject_failed",
        "x5u_timeout",
        "x5u_max_bytes",
        "x5u_cache_ttl",
        "require_tn_auth_list",
    }
)
_MAX_PATH = 4096
_MAX_ANCHORS = 1000


@frozen
class StirShakenOptions:
    """The validated ``stir_shaken:`` section; paths absolute."""

    certificate: str = ""
    key: str = ""
    x5u: str = ""
    trust: tuple[str, ...] = ()
    allowed_x5u: tuple[str, ...] = ()
    """Normalised URL prefixes (:func:`pbx.stir.x5u.normalise_prefix`)."""
    max_age: int = 60
    reject_failed: bool = False
    x5u_timeout: float = 5.0
    x5u_max_bytes: int = 65536
    x5u_cache_ttl: int = 3600
    require_tn_auth_list: bool = True

    @property
    def signs(self) -> bool:
        """Whether outbound calls are signed."""
        return bool(self.certificate)

    @property
    def verifies(self) -> bool:
        """Whether inbound calls are verified."""
        return bool(self.trust)


@frozen
class Credentials:
    """What the files of :class:`StirShakenOptions` hold."""

    key: ec.EllipticCurvePrivateKey | None
    """The signing key; None when not signing."""
    chain: tuple[x509.Certificate, ...]
    """Our certificate and its chain, as served at ``x5u``."""
    trust: TrustAnchors


def _key(name: str) -> str:
    return f"{SECTION}.{name}"


def _path(value: Any, key: str, base: Path | None) -> str:
    problem = text_problem(value, _MAX_PATH)
    if problem is not None:
        raise ConfigError(key, problem)
    if not value:
        raise ConfigError(key, "must name a file")
    path = Path(os.path.expanduser(value))
    return str(path if base is None else base / path)


def _number(
    raw: Mapping[str, Any], name: str, default: int, low: int, high: int
) -> int:
    value = raw.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(_key(name), "must be a whole number")
    if not low <= value <= high:
        raise ConfigError(_key(name), f"must be between {low} and {high}")
    return value


def _flag(raw: Mapping[str, Any], name: str, default: bool) -> bool:
    value = raw.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(_key(name), "must be true or false")
    return value


def _strings(raw: Mapping[str, Any], name: str) -> list[Any]:
    value = raw.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise ConfigError(_key(name), "must be a list")
    return value


def parse_options(raw: Any, base: Path | None = None) -> StirShakenOptions | None:
    """
    Validate the ``stir_shaken:`` section.

    :param raw: the section as YAML gave it; None when absent.
    :param base: the directory relative paths are taken from.
    :returns: the options; None when the section is absent (STIR/SHAKEN off).
    :raises ConfigError: naming the first bad key (``stir_shaken.<key>``).
    """
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(SECTION, "must be a mapping")
    unknown = sorted(str(k) for k in raw if k not in _KEYS)
    if unknown:
        raise ConfigError(_key(unknown[0]), "unknown key")
    signing = [
        name
        for name in ("certificate", "key", "x5u")
        if raw.get(name) not in (None, "")
    ]
    if signing and len(signing) < 3:
        missing = next(n for n in ("certificate", "key", "x5u") if n not in signing)
        raise ConfigError(
            _key(missing), "signing needs certificate, key and x5u together"
        )
    x5u = ""
    if signing:
        x5u = raw["x5u"]
        problem = text_problem(x5u, 2048)
        if problem is None:
            # What verifiers fetch: https for carriers' verifiers (they fetch
            # nothing else by default); http only makes sense between pbx
            # sites that list it in their allowed_x5u.
            own = normalise_prefix(x5u)
            problem = (
                "must be an https:// (or http://) URL"
                if own is None
                else x5u_problem(x5u, (own,))
            )
        if problem is not None:
            raise ConfigError(_key("x5u"), problem)
    trust = tuple(
        _path(v, f"{_key('trust')}[{i}]", base)
        for i, v in enumerate(_strings(raw, "trust"))
    )
    allowed = []
    for i, value in enumerate(_strings(raw, "allowed_x5u")):
        prefix = normalise_prefix(value) if isinstance(value, str) else None
        if prefix is None:
            raise ConfigError(
                f"{_key('allowed_x5u')}[{i}]",
                "must be an http:// or https:// URL prefix with a host",
            )
        allowed.append(prefix)
    if not signing and not trust:
        raise ConfigError(
            SECTION, "needs certificate, key and x5u (to sign) or trust (to verify)"
        )
    return StirShakenOptions(
        certificate=_path(raw["certificate"], _key("certificate"), base)
        if signing
        else "",
        key=_path(raw["key"], _key("key"), base) if signing else "",
        x5u=x5u,
        trust=trust,
        allowed_x5u=tuple(allowed),
        max_age=_number(raw, "max_age", 60, 1, 3600),
        reject_failed=_flag(raw, "reject_failed", False),
        x5u_timeout=float(_number(raw, "x5u_timeout", 5, 1, 60)),
        x5u_max_bytes=_number(raw, "x5u_max_bytes", 65536, 1024, 1048576),
        x5u_cache_ttl=_number(raw, "x5u_cache_ttl", 3600, 0, 86400),
        require_tn_auth_list=_flag(raw, "require_tn_auth_list", True),
    )


def _read(path: str, key: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(1048576)
    except OSError as e:
        raise ConfigError(key, f"cannot read {path}: {e.strerror}") from None


def load_credentials(options: StirShakenOptions) -> Credentials:
    """
    Read the key, certificates and trust anchors the options name.

    :param options: from :func:`parse_options`.
    :returns: the credentials.
    :raises ConfigError: naming the key whose file is missing or unfit.
    """
    key: ec.EllipticCurvePrivateKey | None = None
    chain: tuple[x509.Certificate, ...] = ()
    if options.signs:
        try:
            loaded = serialization.load_pem_private_key(
                _read(options.key, _key("key")), password=None
            )
        except TypeError:
            raise ConfigError(
                _key("key"), f"{options.key} is encrypted; give an unencrypted key"
            ) from None
        except ValueError:
            raise ConfigError(
                _key("key"), f"{options.key} is not a PEM private key"
            ) from None
        if not isinstance(loaded, ec.EllipticCurvePrivateKey) or not isinstance(
            loaded.curve, ec.SECP256R1
        ):
            raise ConfigError(
                _key("key"), "must be a P-256 (prime256v1) key: SHAKEN signs with ES256"
            )
        key = loaded
        try:
            chain = tuple(
                read_certificates(_read(options.certificate, _key("certificate")))
            )
        except CertificateError as e:
            raise ConfigError(
                _key("certificate"), f"{options.certificate}: {e}"
            ) from None
        if chain[0].public_key() != key.public_key():
            raise ConfigError(
                _key("certificate"),
                "its first certificate is not the key's (key and certificate do not match)",
            )
    anchors: list[x509.Certificate] = []
    for i, path in enumerate(options.trust):
        where = f"{_key('trust')}[{i}]"
        try:
            anchors.extend(read_certificates(_read(path, where), limit=_MAX_ANCHORS))
        except CertificateError as e:
            raise ConfigError(where, f"{path}: {e}") from None
    return Credentials(
        key=key,
        chain=chain,
        trust=TrustAnchors(
            tuple(anchors), require_tn_auth_list=options.require_tn_auth_list
        ),
    )
