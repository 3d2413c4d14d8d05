"""Where a registered phone is reached (RFC 3261 §10 bindings as the registrar keeps them)."""

from __future__ import annotations

from pbx.records import Binding
from pbx.sip.transaction import Peer
from pbx.sip.uri import parse_uri


def peer_for(binding: Binding) -> Peer:
    """
    The address its REGISTER came from, so a phone behind NAT stays
    reachable; the Contact's host when that source is unknown.
    """
    host, _, port = binding.source.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        contact = parse_uri(binding.contact)
        return Peer(binding.transport, contact.host_address, contact.port or 5060)
    return Peer(binding.transport, host, int(port))
