"""
The lines of the security log (``security.log``), in the shape of
Asterisk's security events, which fail2ban's stock ``asterisk`` filter
(``filter.d/asterisk.conf``) reads::

    [2025-01-15 10:23:45] SECURITY[4242] pbx: SecurityEvent="InvalidPassword",
    EventTV="2025-01-15T10:23:45.123456+0100",Severity="Error",Service="SIP",
    EventVersion="1",AccountID="1001",RemoteAddress="IPV4/UDP/192.0.2.7/5062",
    Method="REGISTER"

(one line in the file).  The date at the start is local time, as fail2ban
expects.  ``InvalidPassword`` is a wrong password for an account that
exists, ``InvalidAccountID`` an account that does not (a probe for users);
``Service`` is ``SIP`` or ``API``.  A ban is a ``FailedACL`` event with
``ACLName="ban"``, the reason, its length in seconds and the how-many-th
ban: a ban covers every transport and port, so its ``RemoteAddress`` reads
``ANY`` and port 0.  The filter counts all three kinds.

What the network sent (user names, request methods) is cleaned by
:func:`clean` first, so a crafted value cannot end the line, close the
quotes it sits in, or put another address where the filter looks.

Pure code: nothing here does I/O.
"""

from __future__ import annotations

import time
from datetime import datetime

from attrs import frozen

__all__ = ["MAX_VALUE", "Remote", "ban_line", "clean", "failed_login_line"]

#: Longest value taken from the network, in characters (before escaping).
MAX_VALUE = 64

#: Characters written as ``%XX``: the quotes and backslash that could end a
#: value, ``%`` itself; controls, DEL and everything past ASCII are
#: escaped too (line ends, and Unicode ones such as U+2028, among them).
_ESCAPED = frozenset('"\'\\%')


@frozen
class Remote:
    """Where a login came from: transport (``udp``, ``tcp``, ``tls``), address and port."""

    transport: str
    host: str
    port: int


def clean(value: str, limit: int = MAX_VALUE) -> str:
    """
    ``value`` cut to ``limit`` characters, with quotes, backslash, ``%``,
    controls and non-ASCII characters percent-escaped (their UTF-8 octets,
    as in RFC 3986 §2.1).
    """
    out = []
    for char in value[:limit]:
        if " " <= char <= "~" and char not in _ESCAPED:
            out.append(char)
        else:
            out.extend(f"%{octet:02X}" for octet in char.encode("utf-8", "surrogatepass"))
    return "".join(out)


def _prefix(when: float, pid: int) -> str:
    """Asterisk's start of a line: local date and time, level, pid, source."""
    return f"[{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(when))}] SECURITY[{pid}] pbx: "


def _address(transport: str, host: str, port: int) -> str:
    """Asterisk's address form, ``IPV4/UDP/192.0.2.7/5060``."""
    family = "IPV6" if ":" in host else "IPV4"
    return f"{family}/{clean(transport.upper(), 8)}/{clean(host, 64)}/{int(port)}"


def _event(when: float, pid: int, event: str, service: str, account: str, remote: str,
           extra: dict[str, str]) -> str:
    stamp = datetime.fromtimestamp(when).astimezone().strftime("%Y-%m-%dT%H:%M:%S.%f%z")
    fields = {
        "SecurityEvent": event, "EventTV": stamp, "Severity": "Error", "Service": service,
        "EventVersion": "1", "AccountID": clean(account), "RemoteAddress": remote,
        **{name: clean(value) for name, value in extra.items()},
    }
    return _prefix(when, pid) + ",".join(f'{name}="{value}"' for name, value in fields.items())


def failed_login_line(
    when: float, pid: int, service: str, account: str, remote: Remote, known: bool, method: str = ""
) -> str:
    """
    The line for one failed login.

    :param when: the time (seconds since the epoch).
    :param pid: the process id the line names.
    :param service: ``SIP`` or ``API``.
    :param account: the user name tried.
    :param known: whether it exists: ``InvalidPassword``, else ``InvalidAccountID``.
    :param method: the SIP request method, if any.
    """
    event = "InvalidPassword" if known else "InvalidAccountID"
    extra = {"Method": method} if method else {}
    return _event(when, pid, event, service, account,
                  _address(remote.transport, remote.host, remote.port), extra)


def ban_line(when: float, pid: int, host: str, reason: str, seconds: float, strikes: int) -> str:
    """
    The line for one ban of ``host`` for ``seconds``, the ``strikes``-th, for ``reason``.
    """
    extra = {"ACLName": "ban", "Reason": reason, "Duration": f"{seconds:.0f}", "Strikes": str(strikes)}
    return _event(when, pid, "FailedACL", "SIP", "", _address("any", host, 0), extra)
