"""
TLS to carriers: unlike a phone's, a carrier's certificate is verified
(its name or address, and its chain to the system's CAs or the trunk's
``ca``), unless the trunk says ``verify: false``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.ssl import Certificate, optionsForClientTLS, platformTrust

from pbx.errors import StartupError
from pbx.security.fips import approved_options
from pbx.trunks.config import TrunksConfig

__all__ = ["carrier_tls"]


def carrier_tls(config: TrunksConfig) -> dict[tuple[str, int], Any]:
    """
    A client TLS connection creator per next hop of each ``tls`` trunk that verifies.

    One connection serves every trunk to the same next hop, so those trunks
    must check it the same way.

    :raises StartupError: a trunk's ``ca`` file cannot be read or is no PEM
        certificate; two trunks to one next hop check it differently.
    """
    creators: dict[tuple[str, int], Any] = {}
    checks: dict[tuple[str, int], tuple[str, str, bool, str]] = {}
    for trunk in config.trunks:
        if trunk.transport != "tls":
            continue
        hop = trunk.next_hop
        name = trunk.uri.host_address if trunk.outbound_proxy is None else hop[0]
        first = checks.setdefault(hop, (name, trunk.ca, trunk.verify, trunk.name))
        if first[:3] != (name, trunk.ca, trunk.verify):
            raise StartupError(f"trunks.{trunk.name}: TLS to {hop[0]}:{hop[1]} is checked otherwise by "
                               f"trunks.{first[3]} (name, ca or verify), and both share one connection")
        if not trunk.verify or hop in creators:
            continue
        trust: Any = platformTrust()
        if trunk.ca:
            try:
                trust = Certificate.loadPEM(Path(trunk.ca).read_bytes())
            except Exception as e:  # OSError, or OpenSSL's error for a file that is no PEM
                raise StartupError(f"trunks.{trunk.name}.ca: {e}") from e
        creators[hop] = optionsForClientTLS(
            name, trustRoot=trust, extraCertificateOptions=approved_options() if trunk.approved_only else None
        )
    return creators
