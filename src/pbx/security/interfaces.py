"""
Contracts of the security package that other layers use.

The SIP layer screens every message with an :class:`ISourceDefence` and
reports misbehaviour to it; the API lists and edits its bans and
allow-list through the same interface, so neither knows the other.  Failed
logins and bans are written to an :class:`ISecurityLog` for tools such as
fail2ban.
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

    def add_ban_listener(listener):  # type: ignore[no-untyped-def]
        """
        Tell ``listener`` of every new ban, with its :class:`pbx.security.defence.Ban`.

        A listener that raises is logged; the ban and the other listeners go on.
        """

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


class ISecurityLog(Interface):
    """
    A log of failed logins and bans, one line each, in a shape fail2ban
    reads (:mod:`pbx.security.log_lines`).
    """

    def failed_login(service, account, remote, known, method):  # type: ignore[no-untyped-def]
        """
        One failed login.

        :param service: ``"SIP"`` (digest authentication) or ``"API"``.
        :param account: the user name tried, as the client sent it.
        :param remote: the client's :class:`pbx.security.log_lines.Remote`.
        :param known: whether the account exists (else: a probe for users).
        :param method: the SIP request's method, or ``""``.
        """

    def banned(ban):  # type: ignore[no-untyped-def]
        """One new ban (a :class:`pbx.security.defence.Ban`)."""
