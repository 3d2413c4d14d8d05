"""What other parts of pbx may use of the emergency desk."""

from __future__ import annotations

from zope.interface import Interface

__all__ = ["IEmergencyEvents"]


class IEmergencyEvents(Interface):
    """
    Emergency calls as they happen: the operator console and webhooks
    subscribe here (features find the provider with ``IPBX.lookup``).
    """

    def subscribe(subscriber):  # type: ignore[no-untyped-def]
        """
        Call ``subscriber(event)`` with an :class:`~pbx.emergency.event.EmergencyEvent`
        for every emergency call from now on; a subscriber that raises is
        logged and keeps its place.

        :returns: what unsubscribes it.
        """
