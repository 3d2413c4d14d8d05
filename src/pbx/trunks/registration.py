"""
Keeping a registration with a carrier: pbx as the UAC of REGISTER
(RFC 3261 §10.2).

One Call-ID for the life of the registration, the CSeq one higher each
time (§10.2.4); digest challenges answered with the trunk's credentials
(§22.2, once per challenge); refreshed before it expires; a failure retried
with a growing delay (as RFC 5626 §4.5 backs off); 423 answered with the
Min-Expires asked (§10.2.8).  The whole behaviour is :data:`TABLE`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.logger import Logger

from pbx.calls.machine import build
from pbx.sip.dialog import LocalAddress
from pbx.sip.digest_client import authorized_retry
from pbx.sip.ids import new_call_id, new_tag
from pbx.sip.message import Headers, Request, Response
from pbx.sip.named_timers import NamedTimers
from pbx.sip.transaction import ClientTransaction, Peer
from pbx.sip.uri import parse_uri
from pbx.trunks.config import TrunkConfig

__all__ = ["MAX_RETRY_DELAY", "RETRY_DELAY", "Registration", "TABLE", "refresh_delay"]

#: First delay before a failed registration is tried again; it doubles each time.
RETRY_DELAY = 10.0
#: The longest delay between tries.
MAX_RETRY_DELAY = 600.0

Send = Callable[[Request, Peer, Callable[[Response], None]], ClientTransaction]


def refresh_delay(granted: int) -> float:
    """When to refresh a registration granted for ``granted`` seconds: well before it runs out."""
    return float(max(granted // 2, granted - 60)) if granted > 2 else 1.0


class _Inputs(Protocol):
    """What happens to a registration."""

    def start(self) -> None:
        """Begin registering."""

    def accepted(self, granted: int) -> None:
        """A 2xx granted the binding for ``granted`` seconds."""

    def refused(self, status: int) -> None:
        """A final failure (wrong credentials, 403, 408 no answer, 503 ...)."""

    def due(self) -> None:
        """The refresh or retry timer fired."""

    def stop(self) -> None:
        """pbx stops: unregister (Expires: 0) and stop the timers."""


#: (from, input, to, actions).
TABLE = [
    (["idle"], "start", "registering", ["_send"]),
    (["registering"], "accepted", "registered", ["_granted", "_schedule_refresh"]),
    (["registering"], "refused", "failed", ["_failed", "_schedule_retry"]),
    (["registered"], "due", "registering", ["_send"]),
    (["failed"], "due", "registering", ["_send"]),
    (["idle", "registering", "registered", "failed"], "stop", "stopped", ["_unregister"]),
    (["idle"], "accepted", "idle", []),
    (["idle"], "refused", "idle", []),
    (["idle"], "due", "idle", []),
    (["registering"], "start", "registering", []),
    (["registering"], "due", "registering", []),
    (["registered"], "start", "registered", []),
    (["registered"], "accepted", "registered", []),
    (["registered"], "refused", "registered", []),
    (["failed"], "start", "failed", []),
    (["failed"], "accepted", "failed", []),
    (["failed"], "refused", "failed", []),
    (["stopped"], "start", "stopped", []),
    (["stopped"], "accepted", "stopped", []),
    (["stopped"], "refused", "stopped", []),
    (["stopped"], "due", "stopped", []),
    (["stopped"], "stop", "stopped", []),
]


class Registration:
    """
    pbx's registration with one carrier.

    :param trunk: the trunk (account, password, carrier, expiry asked).
    :param send: starts a client transaction (:meth:`pbx.calls.signalling.SIPSender.request`).
    :param local_address: our Via/Contact address on a transport.
    :param peer: where REGISTER goes (the carrier or its outbound proxy).
    :param clock: the injected ``IReactorTime``.
    :ivar state: ``idle``, ``registering``, ``registered``, ``failed`` or ``stopped``.
    """

    log = Logger()

    def __init__(self, trunk: TrunkConfig, send: Send, local_address: Callable[[str], LocalAddress], peer: Peer,
                 clock: Any) -> None:
        self.trunk = trunk
        self.state = "idle"
        self.expires_at: float | None = None
        self.last_status = 0
        self.failures = 0
        self._send_request = send
        self._local_address = local_address
        #: Where requests go (the trunk sets it once the carrier's name is resolved).
        self.peer = peer
        self._clock = clock
        self._timers = NamedTimers(clock)
        self._call_id = ""
        self._tag = new_tag()
        self._cseq = 0
        self._expires = trunk.register_expires
        self._too_brief = 0
        self._inputs = _MACHINE(self)

    @property
    def registered(self) -> bool:
        """Whether the carrier holds our binding now (also while it is being refreshed)."""
        return self.expires_at is not None and self.expires_at > self._clock.seconds()

    def start(self) -> None:
        """Register now."""
        self._inputs.start()

    def stop(self) -> None:
        """Unregister and stop every timer."""
        self._inputs.stop()

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view for the API."""
        now = self._clock.seconds()
        return {
            "state": self.state, "registered": self.registered,
            "expires_in": round(self.expires_at - now) if self.registered and self.expires_at else 0,
            "last_status": self.last_status, "failures": self.failures,
        }

    # -- requests ---------------------------------------------------------------

    def _request(self, expires: int) -> Request:
        trunk = self.trunk
        address = self._local_address(trunk.transport)
        self._call_id = self._call_id or new_call_id(address.host)
        self._cseq += 1
        aor = f"<sip:{trunk.username}@{trunk.host}>"
        headers = Headers()
        headers.add("Via", address.via())
        headers.add("Max-Forwards", "70")
        headers.add("From", f"{aor};tag={self._tag}")
        headers.add("To", aor)
        headers.add("Call-ID", self._call_id)
        headers.add("CSeq", f"{self._cseq} REGISTER")
        headers.add("Contact", address.contact(trunk.username))
        headers.add("Expires", str(expires))
        headers.add("Content-Length", "0")
        scheme = "sips" if trunk.uri.scheme == "sips" else "sip"
        port = f":{trunk.uri.port}" if trunk.uri.port else ""
        suffix = "" if trunk.transport == "udp" else f";transport={trunk.transport}"
        return Request("REGISTER", parse_uri(f"{scheme}:{trunk.host}{port}{suffix}"), headers)

    def _send(self) -> None:
        self._transmit(self._request(self._expires))

    def _transmit(self, request: Request) -> None:
        self._cseq = request.cseq.number
        self._send_request(request, self.peer, lambda response: self._response(request, response))

    def _response(self, request: Request, response: Response) -> None:
        status = response.status
        if status < 200 or self.state != "registering":
            return
        self.last_status = status
        if status in (401, 407):
            trunk = self.trunk
            retry = authorized_retry(request, response, trunk.digest_user, trunk.password, trunk.digest_algorithms)
            if retry is not None:
                self._transmit(retry)
                return
            self.log.warn("trunk {trunk}: the carrier refused our credentials ({status})", trunk=trunk.name,
                          status=status)
        elif status == 423 and self._too_brief < 2:
            # RFC 3261 §10.2.8: ask again for at least Min-Expires.
            minimum = (response.headers.get("Min-Expires") or "").strip()
            if minimum.isdigit() and int(minimum) > self._expires:
                self._too_brief += 1
                self._expires = int(minimum)
                self._send()
                return
        elif 200 <= status < 300:
            self._inputs.accepted(self._granted_by(response))
            return
        self._inputs.refused(status)

    def _granted_by(self, response: Response) -> int:
        """§10.2.4: the expiry the registrar granted our Contact (its parameter, else Expires)."""
        ours = self._local_address(self.trunk.transport).hostport
        for value in response.headers.get_all("Contact"):
            for contact in value.split(","):
                if ours in contact:
                    for param in contact.split(";")[1:]:
                        name, _, number = param.partition("=")
                        if name.strip().lower() == "expires" and number.strip().isdigit():
                            return int(number.strip())
        header = (response.headers.get("Expires") or "").strip()
        return int(header) if header.isdigit() else self._expires

    # -- actions ------------------------------------------------------------------

    def _granted(self, granted: int) -> None:
        self.failures = 0
        self._too_brief = 0
        self.expires_at = self._clock.seconds() + granted
        self.log.info("trunk {trunk}: registered for {granted}s", trunk=self.trunk.name, granted=granted)

    def _schedule_refresh(self, granted: int) -> None:
        self._timers.start("due", refresh_delay(granted), self._inputs.due)

    def _failed(self, status: int) -> None:
        self.failures += 1
        self.log.warn("trunk {trunk}: registration failed ({status}), try {n}", trunk=self.trunk.name,
                      status=status, n=self.failures)

    def _schedule_retry(self, status: int) -> None:
        delay = min(MAX_RETRY_DELAY, RETRY_DELAY * 2 ** (self.failures - 1))
        self._timers.start("due", delay, self._inputs.due)

    def _unregister(self) -> None:
        self._timers.stop_all()
        if self.registered:
            self._send_request(self._request(0), self.peer, _ignore)
        self.expires_at = None


def _ignore(response: Response) -> None:
    """The answer to our unregistering: nobody waits for it."""


_MACHINE = build(_Inputs, Registration, ["idle", "registering", "registered", "failed", "stopped"], TABLE)
