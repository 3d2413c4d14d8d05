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
from pbx.trunks.config import TrunksConfig

__all__ = ["carrier_tls"]


def carrier_tls(config: TrunksConfig) -> dict[tuple[str, int], Any]:
    """
    A client TLS connection creator per next hop of each ``tls`` trunk that verifies.

    :raises StartupError: a trunk's ``ca`` file cannot be read or is no PEM certificate.
    """
    creators: dict[tuple[str, int], Any] = {}
    for trunk in config.trunks:
        if trunk.transport != "tls" or not trunk.verify:
            continue
        trust: Any = platformTrust()
        if trunk.ca:
            try:
                trust = Certificate.loadPEM(Path(trunk.ca).read_bytes())
            except Exception as e:  # OSError, or OpenSSL's error for a file that is no PEM
                raise StartupError(f"trunks.{trunk.name}.ca: {e}") from e
        host, port = trunk.next_hop
        creators[(host, port)] = optionsForClientTLS(trunk.uri.host_address if trunk.outbound_proxy is None
                                                     else host, trustRoot=trust)
    return creators
