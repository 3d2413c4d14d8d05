"""
What a blind transfer to an outside number needs from the trunks
(:mod:`pbx.trunks.transfer` makes it): the trunk the target rings through,
and the route that finds it with the transferor's permissions.  The
transfer itself is :mod:`pbx.calls.transfer`'s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from attrs import frozen

from pbx.calls.dialplan import ToTrunks
from pbx.calls.forks import Fork
from pbx.calls.signalling import LegServices
from pbx.records import Binding
from pbx.sip.message import Request, Response


@frozen
class OutsideTarget:
    """
    Where a blind transfer to an outside number rings: one trunk.

    :ivar services: the trunk's leg services (its next hop).
    :ivar binding: the INVITE's target (``aor``: the number sent).
    :ivar to: the To header; :ivar from_: From and P-Asserted-Identity.
    :ivar headers: what the outbound hooks add.
    :ivar body: the INVITE's body and Content-Type for an SDP offer.
    :ivar on_challenge: answers the carrier's 401/407.
    :ivar release: the trunk has room again (the attempt or the call is over).
    """

    services: LegServices
    binding: Binding
    to: str
    from_: str
    headers: tuple[tuple[str, str], ...]
    body: Callable[[bytes], tuple[bytes, str]]
    on_challenge: Callable[[Fork, Response], Request | None]
    release: Callable[[], None]


#: The outside target of (transferor, number, route), or the refusal's (status, reason).
OutsideRoute = Callable[[str, str, ToTrunks], Awaitable["OutsideTarget | tuple[int, str]"]]
