"""
OPTIONS keep-alive (RFC 3261 §11): pbx asks the carrier every ``keepalive``
seconds; any response means it is up, none (the transaction's 408) or a
transport failure (503 made by our own transaction layer) means down.
A trunk that is down is skipped by outbound routes until it answers again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from pbx.sip.dialog import LocalAddress
from pbx.sip.ids import new_call_id, new_tag
from pbx.sip.message import Headers, Request, Response
from pbx.sip.named_timers import NamedTimers
from pbx.sip.transaction import ClientTransaction, Peer
from pbx.trunks.config import TrunkConfig

__all__ = ["KeepAlive"]

Send = Callable[[Request, Peer, Callable[[Response], None]], ClientTransaction]


class KeepAlive:
    """
    Pings one trunk with OPTIONS.

    :ivar state: ``unknown`` (no answer yet, taken as up), ``up`` or ``down``.
    """

    log = Logger()

    def __init__(self, trunk: TrunkConfig, send: Send, local_address: Callable[[str], LocalAddress], peer: Peer,
                 clock: Any) -> None:
        self.trunk = trunk
        self.state = "unknown"
        self.last_answer: float | None = None
        self._send = send
        self._local_address = local_address
        #: Where requests go (the trunk sets it once the carrier's name is resolved).
        self.peer = peer
        self._clock = clock
        self._timers = NamedTimers(clock)
        self._cseq = 0

    @property
    def up(self) -> bool:
        """Whether calls may go to the trunk."""
        return self.state != "down"

    def start(self) -> None:
        """Ping now, and every ``keepalive`` seconds."""
        if self.trunk.keepalive > 0:
            self._ping()

    def stop(self) -> None:
        """Stop pinging."""
        self._timers.stop_all()

    def _ping(self) -> None:
        try:
            self._send(self._options(), self.peer, self._answered)
        except Exception:
            self.log.failure("trunk {trunk}: OPTIONS failed", trunk=self.trunk.name)
        self._timers.start("ping", self.trunk.keepalive, self._ping)

    def _options(self) -> Request:
        trunk = self.trunk
        address = self._local_address(trunk.transport)
        self._cseq += 1
        headers = Headers()
        headers.add("Via", address.via())
        headers.add("Max-Forwards", "70")
        ours = f"<sip:{trunk.username or 'pbx'}@{address.hostport}>"
        headers.add("From", f"{ours};tag={new_tag()}")
        headers.add("To", f"<sip:{trunk.host}>")
        headers.add("Call-ID", new_call_id(address.host))
        headers.add("CSeq", f"{self._cseq} OPTIONS")
        headers.add("Accept", "application/sdp")
        headers.add("Content-Length", "0")
        return Request("OPTIONS", trunk.uri, headers)

    def _answered(self, response: Response) -> None:
        if response.status < 200:
            return
        # Our transaction layer makes 408 (no answer) and 503 (not sent)
        # itself; a carrier's own 503 still proves it is there, but it
        # says it takes no calls: down as well.
        state = "down" if response.status in (408, 503) else "up"
        if state == "up":
            self.last_answer = self._clock.seconds()
        if state != self.state:
            self.log.info("trunk {trunk} is {state} (OPTIONS: {status})", trunk=self.trunk.name, state=state,
                          status=response.status)
        self.state = state
