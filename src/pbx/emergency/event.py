"""
The ``emergency`` event: one emergency call, as its subscribers (e-mail
now; the operator console and webhooks later) and the audit trail see it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from attrs import frozen

from pbx.emergency.locations import Located
from pbx.records import AuditEvent

__all__ = ["AUDIT_KIND", "EmergencyEvent"]

#: The audit trail's kind for an emergency call.
AUDIT_KIND = "emergency.call"


@frozen
class EmergencyEvent:
    """
    Someone dialled an emergency number.

    :ivar time: when (the clock's time).
    :ivar number: the emergency number (``911``), prefix removed.
    :ivar dialled: what was dialled (``9911``).
    :ivar extension: the extension that dialled.
    :ivar caller_name: its name, or "".
    :ivar location: where the caller is, or None when nothing is known.
    :ivar call_id: the call's key.
    :ivar callback: the callback number presented, or "" when not known yet.
    :ivar test: the number is an address read-back test (933): routed and
        audited, nobody is alerted.
    """

    time: float
    number: str
    dialled: str
    extension: str
    caller_name: str = ""
    location: Located | None = None
    call_id: str = ""
    callback: str = ""
    test: bool = False

    @property
    def when(self) -> str:
        """The time in UTC, ISO 8601."""
        return datetime.fromtimestamp(self.time, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, as the API lists it."""
        return {
            "time": self.time,
            "number": self.number,
            "dialled": self.dialled,
            "extension": self.extension,
            "caller_name": self.caller_name,
            "call_id": self.call_id,
            "callback": self.callback,
            "test": self.test,
            "location": self.location.as_dict() if self.location is not None else None,
        }

    def audit(self, source: str = "") -> AuditEvent:
        """The audit trail's record of this call: its fields as JSON in ``detail``."""
        detail = {
            k: v for k, v in self.as_dict().items() if k not in ("time", "extension")
        }
        return AuditEvent(
            self.time,
            AUDIT_KIND,
            self.extension,
            source,
            json.dumps(detail, separators=(",", ":"), sort_keys=True),
        )

    @classmethod
    def from_audit(cls, event: AuditEvent) -> dict[str, Any]:
        """The JSON-ready form of an audit record :meth:`audit` made (what the API lists)."""
        try:
            detail = json.loads(event.detail)
        except ValueError:
            detail = {"detail": event.detail}
        if not isinstance(detail, dict):
            detail = {"detail": event.detail}
        return {**detail, "time": event.time, "extension": event.subject}
