"""
The process's file descriptors (RLIMIT_NOFILE): raising the soft limit to
the hard one at start, and sharing them out so that no number of SIP
connections can take the descriptors the API, the media relay and the
store need.

Out of ``N`` descriptors:

- :data:`RESERVED` are kept for the listeners, the store, the log, threads
  and files (prompts, voicemail);
- the API may hold ``N // 32`` connections (8 to 256), half of them from one
  address (at least 8);
- media takes up to half of what is left, fewer if the RTP port range is
  smaller (one socket per port);
- SIP connections phones open get the rest (at most :data:`SIP_CEILING`),
  a quarter of them from one address (at least 16: phones behind one NAT
  share an address).

With 1,024 descriptors that is 464 SIP connections (116 per address), 32
API connections (16 per address) and 464 media sockets.  A cap set in the
configuration (``sip.connections``, ``api.connections``) wins over the
derived one.
"""

from __future__ import annotations

import resource
from collections.abc import Callable

from attrs import frozen

from pbx.config import APIConnectionsConfig, SIPConnectionsConfig
from pbx.sip.connections import StreamLimits

__all__ = ["ConnectionBudget", "raise_descriptor_limit", "share_descriptors"]

#: Descriptors kept for everything that is not a connection or a media socket.
RESERVED = 64
#: The most SIP connections derived from the limit, however high it is.
SIP_CEILING = 65536
#: Where an unlimited hard limit is taken to stop (Linux's default fs.nr_open).
UNLIMITED = 1024 * 1024


def raise_descriptor_limit(
    getrlimit: Callable[[int], tuple[int, int]] = resource.getrlimit,
    setrlimit: Callable[[int, tuple[int, int]], None] = resource.setrlimit,
) -> tuple[int, int, int]:
    """
    Raise the soft RLIMIT_NOFILE to the hard limit.

    :returns: ``(before, now, hard)`` soft limits and the hard one; ``now``
        is ``before`` if the limit could not be raised.
    """
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):
            return soft, soft, hard
        return soft, target, hard
    return soft, soft, hard


@frozen
class ConnectionBudget:
    """
    How ``descriptors`` are shared out (see the module docstring).

    :ivar sip: the limits on SIP connections phones open.
    :ivar api_total: API connections open at once.
    :ivar api_per_source: API connections open at once from one address.
    :ivar media: descriptors left for RTP and RTCP sockets.
    """

    descriptors: int
    sip: StreamLimits
    api_total: int
    api_per_source: int
    media: int

    def describe(self) -> str:
        """One line for the log."""
        return (
            f"descriptors {self.descriptors}: SIP connections {self.sip.max_total}"
            f" ({self.sip.max_per_source} per address), API connections {self.api_total}"
            f" ({self.api_per_source} per address), media sockets {self.media}"
        )


def share_descriptors(
    descriptors: int, rtp_ports: int, sip: SIPConnectionsConfig, api: APIConnectionsConfig
) -> ConnectionBudget:
    """
    Share ``descriptors`` out; configured caps (non-zero) are kept as given.

    :param rtp_ports: how many ports the RTP range holds.
    """
    api_total = api.max_total or max(8, min(256, descriptors // 32))
    api_per_source = api.max_per_source or max(8, api_total // 2)
    free = max(0, descriptors - RESERVED - api_total)
    media = min(rtp_ports, free // 2)
    sip_total = sip.max_total or max(16, min(SIP_CEILING, free - media))
    sip_per_source = sip.max_per_source or max(16, sip_total // 4)
    limits = StreamLimits(
        max_total=sip_total,
        max_per_source=min(sip_per_source, sip_total),
        first_message_timeout=float(sip.first_message_timeout),
        idle_timeout=float(sip.idle_timeout),
        max_message=sip.max_message,
        max_buffered=sip.max_buffered,
    )
    return ConnectionBudget(descriptors, limits, api_total, min(api_per_source, api_total), media)
