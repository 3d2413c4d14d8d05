"""
Contracts of the security package that other layers use.

The SIP layer screens every message with an :class:`ISourceDefence` and
reports misbehaviour to it; the API (later) lists and edits its bans and
allow-list through the same interface, so neither knows the other.
"""

from __future__ import annotations

from zope.interface import Interface


class ISourceDefence(Interface):
    """
    Per-source-address rate limits, threat scores and bans.

    Sources are IP addresses as strings (``"192.0.2.7"``, ``"2001:db8::1"``).
    Allow-listed sources are never limited, scored or banned.
    """

    def admit(data, host):  # type: ignore[no-untyped-def]
        """
        Decide, before parsing, whether one message from ``host`` is worked on.

        :param data: the message's bytes (only the start line and the top
            Via branch are looked at).
        :param host: the source address.
        :returns: False to drop it: the source is banned or over its rate.
        """

    def offence(host, kind):  # type: ignore[no-untyped-def]
        """
        Score one piece of misbehaviour by ``host``; crossing the ban score bans it.

        :param kind: a key of :data:`pbx.security.defence.OFFENCES`.
        :returns: True when ``host`` is banned now.
        """

    def banned(host):  # type: ignore[no-untyped-def]
        """Whether ``host`` is banned now."""

    def bans():  # type: ignore[no-untyped-def]
        """
        The bans in force.

        :returns: :class:`pbx.security.defence.Ban` values, soonest end first.
        """

    def unban(host):  # type: ignore[no-untyped-def]
        """
        Lift ``host``'s ban and forget its score and past bans.

        :returns: whether it was banned.
        """

    def scores():  # type: ignore[no-untyped-def]
        """
        Every source with a threat score now.

        :returns: ``(host, score)`` pairs, highest first.
        """

    def allow_list():  # type: ignore[no-untyped-def]
        """The allow-listed networks, as CIDR strings."""

    def set_allow_list(networks):  # type: ignore[no-untyped-def]
        """
        Replace the allow-list; lifts bans of sources it now covers.

        :param networks: CIDR strings.
        :raises ValueError: for a string that is not a network.
        """
