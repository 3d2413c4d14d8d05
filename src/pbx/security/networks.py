"""
Address allow-lists: CIDR strings in, a membership test out.  Pure code.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["Network", "contains", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """
    Networks from CIDR strings (a bare address is a /32 or /128).

    :raises ValueError: naming the first string that is not a network.
    """
    networks = []
    for text in cidrs:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an address or network (CIDR)") from None
    return tuple(networks)


def contains(networks: tuple[Network, ...], host: str) -> bool:
    """Whether the address ``host`` (an IPv6 zone is ignored) lies in one of ``networks``."""
    if not networks:
        return False
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return any(address in network for network in networks)
