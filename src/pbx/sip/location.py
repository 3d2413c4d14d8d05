"""Where a registered phone is reached (RFC 3261 §10 bindings as the registrar keeps them)."""

from __future__ import annotations

from collections.abc import Callable

from pbx.records import Binding
from pbx.sip.transaction import Peer
from pbx.sip.uri import parse_uri

#: RFC 3263 §4.2: the port of a URI that names none.
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}


def peer_for(
    binding: Binding,
    connected: Callable[[Peer], bool] | None = None,
    outbound: Callable[[Binding], bool] | None = None,
) -> Peer:
    """
    Where requests to ``binding``'s phone go.

    Over UDP, the address its REGISTER came from, so a phone behind NAT
    stays reachable.  Over TCP and TLS, the connection it registered on (a
    flow: its port is ephemeral).  When ``connected`` says that connection
    is gone, a phone that asked for RFC 5626 outbound is still sent to the
    flow, which fails at once (a proxy answers 430 then, §5.3; the phone
    recovers with a new flow, §4.5); any other gets a new connection to the
    address its Contact names (RFC 3261 §18.1.1).  The Contact's address is
    also used when the source is unknown.

    :param connected: whether a stream to a peer is open; None takes the
        connection as open.
    :param outbound: whether a binding asked for RFC 5626 outbound (the
        registrar knows); None looks for ``ob`` in its Contact only.
    :raises pbx.sip.message.SIPParseError: for a Contact that cannot be read
        when it is needed.
    """
    host, _, port = binding.source.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        return _contact_peer(binding)
    if binding.transport == "udp":
        return Peer("udp", host, int(port))
    flow = Peer(binding.transport, host, int(port), flow=True)
    if connected is None or connected(flow) or (outbound or has_ob)(binding):
        return flow
    return _contact_peer(binding)


def has_ob(binding: Binding) -> bool:
    """Whether the binding's Contact URI has RFC 5626's ``ob`` parameter."""
    try:
        return parse_uri(binding.contact).has_param("ob")
    except ValueError:
        return False


def _contact_peer(binding: Binding) -> Peer:
    contact = parse_uri(binding.contact)
    return Peer(binding.transport, contact.host_address, contact.port or DEFAULT_PORTS.get(binding.transport, 5060))
