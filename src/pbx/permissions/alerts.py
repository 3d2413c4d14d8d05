"""
Toll-fraud alerts: what a tripped limit leaves behind.

An alert is logged (one warning line), written to the audit trail (kind
``toll_fraud``, the extension as its subject) and kept in a bounded list the
API shows until an administrator acknowledges it.  While an alert of one
extension and one limit is unacknowledged, the same limit tripping again
counts on it (``count``, ``last``) instead of raising another: a phone
hammering the limit does not flood the log or the audit trail.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from attrs import define, field

from twisted.logger import Logger

from pbx.interfaces import IStore
from pbx.records import AuditEvent

__all__ = ["AUDIT_KIND", "Alert", "AlertBoard"]

#: The audit kind of an alert.
AUDIT_KIND = "toll_fraud"
#: How many alerts the list keeps (the oldest go first; the audit trail keeps all).
MAX_ALERTS = 500


@define(eq=False)
class Alert:
    """
    One tripped limit of one extension.

    :ivar limit: ``concurrent_outside``, ``international_per_hour`` or
        ``international_hours``.
    :ivar number: the number of the call that tripped it.
    :ivar count: how many calls it refused until acknowledged.
    """

    id: int
    time: float
    extension: str
    limit: str
    number: str
    detail: str
    count: int = 1
    last: float = 0.0
    acknowledged_by: str = ""
    acknowledged_at: float | None = None

    @property
    def acknowledged(self) -> bool:
        """Whether an administrator has seen it."""
        return self.acknowledged_at is not None

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready form."""
        return {
            "id": self.id,
            "time": self.time,
            "extension": self.extension,
            "limit": self.limit,
            "number": self.number,
            "detail": self.detail,
            "count": self.count,
            "last": self.last or self.time,
            "acknowledged": self.acknowledged,
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": self.acknowledged_at,
        }


@define(eq=False)
class AlertBoard:
    """
    The recent alerts, newest last.

    :param store: where alerts are audited.
    """

    store: IStore
    _alerts: deque[Alert] = field(factory=lambda: deque(maxlen=MAX_ALERTS))
    _next_id: int = 1
    log = Logger()

    def raise_alert(
        self, extension: str, limit: str, number: str, detail: str, now: float
    ) -> Alert:
        """
        Record that ``limit`` tripped for ``extension``: a new alert (logged
        and audited), or one more count on the unacknowledged one.
        """
        for alert in reversed(self._alerts):
            if (
                alert.extension == extension
                and alert.limit == limit
                and not alert.acknowledged
            ):
                alert.count += 1
                alert.last = now
                return alert
        alert = Alert(self._next_id, now, extension, limit, number, detail, last=now)
        self._next_id += 1
        self._alerts.append(alert)
        self.log.warn(
            "toll-fraud guard: extension {extension} tripped {limit} calling {number}: {detail}",
            extension=extension,
            limit=limit,
            number=number,
            detail=detail,
        )
        d = self.store.add_audit(
            AuditEvent(
                now, AUDIT_KIND, extension, "", f"{limit}: {number}: {detail}"[:500]
            )
        )
        d.addErrback(
            lambda f: self.log.failure("audit of a toll-fraud alert failed", f)
        )
        return alert

    def alerts(self, unacknowledged: bool = False) -> list[Alert]:
        """The alerts kept, newest first (only those nobody acknowledged, if asked)."""
        return [
            a for a in reversed(self._alerts) if not (unacknowledged and a.acknowledged)
        ]

    def get(self, alert_id: int) -> Alert | None:
        """The alert ``alert_id``, if it is still kept."""
        for alert in self._alerts:
            if alert.id == alert_id:
                return alert
        return None

    def acknowledge(self, alert_id: int, by: str, now: float) -> Alert | None:
        """
        Mark the alert seen by ``by`` (the first acknowledgement counts).

        :returns: the alert, or None if it is not kept.
        """
        alert = self.get(alert_id)
        if alert is not None and not alert.acknowledged:
            alert.acknowledged_by = by
            alert.acknowledged_at = now
        return alert
