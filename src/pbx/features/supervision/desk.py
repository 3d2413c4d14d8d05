"""
Who supervises which call: the rules (who may supervise whom), finding an
extension's live relayed call, and the monitors running now.

Both ways in use it: the ``supervise`` dialplan application (a supervisor
dials code + extension) and the REST API (an administrator names a call and
a supervisor).
"""

from __future__ import annotations

from typing import Any

from attrs import define, field

from twisted.logger import Logger

from pbx.features.supervision.monitor import Monitor
from pbx.features.supervision.options import MODES, SupervisionOptions
from pbx.interfaces import IPBX
from pbx.media.media_clock import MediaClock

__all__ = ["NoCall", "NotAllowed", "Supervision"]


class NotAllowed(Exception):
    """The supervisor may not supervise that extension (or that call)."""


class NoCall(Exception):
    """No answered call pbx relays is up for that extension (or call id)."""


@define(eq=False)
class Supervision:
    """
    Starts monitors on live calls for supervisors the configuration allows.

    :ivar pbx: the running PBX (its live calls and their media).
    :ivar options: who may supervise whom.
    :ivar clock: the 20 ms clock every monitor ticks on.
    :ivar monitors: the running monitors by supervisor extension.
    """

    pbx: IPBX
    options: SupervisionOptions
    clock: MediaClock
    monitors: dict[str, tuple[str, Monitor]] = field(factory=dict)
    log = Logger()

    def find(self, target: str) -> tuple[str, Any, str]:
        """
        ``(call id, call tap, agent leg)`` of ``target``'s answered relayed call.

        :raises NoCall: it has none.
        """
        for summary in self.pbx.live_calls():
            if target not in (summary.get("caller"), summary.get("callee")):
                continue
            found = self._tap(summary["call_id"], target)
            if found is not None:
                return found
        raise NoCall(target)

    def _tap(self, call_id: str, target: str | None) -> tuple[str, Any, str] | None:
        tap = self.pbx.tap_call(call_id)
        if tap is None:
            return None
        if target is None or tap.caller == target:
            return call_id, tap, "a" if target is not None else ""
        if tap.callee == target:
            return call_id, tap, "b"
        return None

    def start(
        self,
        supervisor: str,
        mode: str,
        *,
        target: str | None = None,
        call_id: str | None = None,
    ) -> tuple[str, Monitor]:
        """
        Start a monitor for ``supervisor`` on ``target``'s call, or on call ``call_id``.

        For a call named by id, the agent (the party a whisper goes to) is
        whichever party ``supervisor`` may supervise, the caller first.

        :returns: the call id and the running monitor (join its ``mix``, then :meth:`stop` it).
        :raises NotAllowed: ``supervisor`` may not supervise that party.
        :raises NoCall: no such answered relayed call.
        :raises NoAudio: a leg's codec cannot be decoded.
        :raises ValueError: ``mode`` is not one of :data:`~.options.MODES`.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if call_id is None:
            if target is None or not self.options.may_supervise(supervisor, target):
                raise NotAllowed(target)
            call_id, tap, agent = self.find(target)
        else:
            found = self._tap(call_id, None)
            if found is None:
                raise NoCall(call_id)
            tap = found[1]
            allowed = [
                leg
                for leg, party in (("a", tap.caller), ("b", tap.callee))
                if self.options.may_supervise(supervisor, party)
            ]
            if not allowed:
                raise NotAllowed(call_id)
            agent = allowed[0]
        self.stop(supervisor)
        monitor = Monitor(tap, agent, self.clock, mode)
        monitor.start()
        self.monitors[supervisor] = (call_id, monitor)
        self.log.info(
            "supervision: {supervisor} {mode} on call {call_id} (agent leg {agent})",
            supervisor=supervisor,
            mode=mode,
            call_id=call_id,
            agent=agent,
        )
        return call_id, monitor

    def stop(self, supervisor: str, monitor: Monitor | None = None) -> None:
        """
        Stop ``supervisor``'s monitor, if any: the call is relayed as before.

        :param monitor: stop only this one (a newer one the supervisor started is left running).
        """
        running = self.monitors.get(supervisor)
        if running is None or (monitor is not None and running[1] is not monitor):
            if monitor is not None:
                monitor.stop()
            return
        del self.monitors[supervisor]
        running[1].stop()

    def stop_all(self) -> None:
        """Stop every monitor (the service stops)."""
        for supervisor in list(self.monitors):
            self.stop(supervisor)
