"""
What the call controller expects of every call it tracks: a call through
the B2BUA (:class:`~pbx.calls.call.Call`), a call pbx answered for an
application (:class:`~pbx.calls.app_call.ApplicationCall`) and a call pbx
placed for an application (:class:`~pbx.calls.outbound.OutboundCall`).
"""

from __future__ import annotations

from typing import Any, Protocol

from pbx.records import CallRecord
from pbx.sip.dialog import Dialog
from pbx.sip.message import Request
from pbx.sip.transaction import ServerTransaction


class LiveCall(Protocol):
    """One call in :attr:`pbx.calls.controller.CallController.calls`."""

    caller: str
    callee: str
    state: str
    disposition: str
    hangup_side: str
    hangup_cause: str
    answered_at: float | None

    @property
    def call_id(self) -> str:
        """The key of the call in the controller."""

    @property
    def invite(self) -> ServerTransaction | None:
        """The INVITE server transaction a CANCEL may match (None: pbx placed the call)."""

    def leg_of(self, dialog: Dialog) -> str:
        """Which leg (``"a"`` or ``"b"``) an in-dialog request came from."""

    def hang_up(self, side: str, cause: str) -> None:
        """End the call, sending BYE where needed."""

    def reoffer(self, leg: str, transaction: ServerTransaction) -> None:
        """Answer a re-INVITE or UPDATE from ``leg``."""

    def acked(self, request: Request) -> None:
        """An ACK for a 2xx of ours."""

    def inactive_for(self, now: float) -> float:
        """Seconds since media last flowed (the dead-call watchdog)."""

    def release_media(self) -> None:
        """Give the call's RTP ports back."""

    def record(self) -> list[CallRecord]:
        """The call detail records, one per leg."""

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view for the API."""
