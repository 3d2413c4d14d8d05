"""
The supervision REST routes, mounted under ``/api/v1/supervision/``
(administrators only):

- ``POST /calls/<call id>`` ``{"supervisor": "1000", "mode": "listen"}``:
  ring the supervisor's phone and, once it answers, join it to the call
  (``202``; ``403`` when the configuration does not allow that supervisor
  over either party, ``404`` for no such answered relayed call);
- ``GET /monitors``: who supervises which call, in which mode;
- ``POST /monitors/<supervisor>`` ``{"mode": "whisper"}``: change a running
  monitor's mode;
- ``DELETE /monitors/<supervisor>``: stop it (the supervisor's phone is hung up).

Every change is audited.
"""

from __future__ import annotations

import json
from typing import Any

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from pbx.api.http import APIError, add_json_errors, admin_name, client_host, json_body
from pbx.api.openapi import error_response, object_response
from pbx.features.supervision.app import Supervise
from pbx.features.supervision.desk import NoCall, NotAllowed, Supervision
from pbx.features.supervision.monitor import NoAudio
from pbx.features.supervision.options import MODES
from pbx.interfaces import IPBX
from pbx.media.channel import HungUp
from pbx.records import AuditEvent

__all__ = ["SupervisionAPI", "openapi_paths"]

#: The largest request body read.
MAX_BODY = 4096
#: Seconds the supervisor's phone rings.
RING_TIMEOUT = 30


class SupervisionAPI:
    """
    The routes, relative to the mount point.

    :param pbx: the running PBX (``authenticate``, ``originate``, ``store``).
    :param supervision: the rules and the running monitors.
    """

    app = Klein()
    log = Logger()

    def __init__(self, pbx: IPBX, supervision: Supervision) -> None:
        self.pbx = pbx
        self.supervision = supervision
        self.supervise = Supervise(pbx, supervision)

    def resource(self) -> Any:
        """The Klein resource to mount."""
        return self.app.resource()

    add_json_errors(app, "supervision API")

    def _admin(self, request: IRequest) -> str:
        """The administrator's username; 401 without a session, 403 for users."""
        return admin_name(self.pbx.authenticate(request))

    async def _audit(
        self, request: IRequest, kind: str, subject: str, username: str
    ) -> None:
        await self.pbx.store.add_audit(
            AuditEvent(
                self.pbx.clock.seconds(), kind, subject, client_host(request), username
            )
        )

    @staticmethod
    def _body(request: IRequest) -> dict[str, Any]:
        raw = request.content.read(MAX_BODY + 1)  # type: ignore[attr-defined]
        if len(raw) > MAX_BODY:
            raise APIError(413, "request body too large")
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise APIError(400, "body must be JSON") from None
        if not isinstance(body, dict):
            raise APIError(400, "body must be a JSON object")
        return body

    @staticmethod
    def _mode(body: dict[str, Any]) -> str:
        mode = body.get("mode", "listen")
        if mode not in MODES:
            raise APIError(400, f"mode must be one of: {', '.join(MODES)}")
        return str(mode)

    @app.route("/calls/<call_id>", methods=["POST"])
    async def supervise_call(self, request: IRequest, call_id: str) -> bytes:
        """Ring the supervisor and join it to call ``call_id`` once it answers."""
        username = self._admin(request)
        body = self._body(request)
        mode = self._mode(body)
        supervisor = body.get("supervisor")
        if not isinstance(supervisor, str) or not supervisor.isdigit():
            raise APIError(400, "supervisor must be an extension number")
        tap = self.pbx.tap_call(call_id)
        if tap is None:
            raise APIError(404, f"no answered relayed call {call_id!r}")
        if not any(
            self.supervision.options.may_supervise(supervisor, p)
            for p in (tap.caller, tap.callee)
        ):
            raise APIError(403, f"{supervisor} may not supervise this call")
        await self._audit(
            request, "supervision.start", f"{call_id} {supervisor} {mode}", username
        )
        ringing = self.pbx.originate(
            supervisor, caller=tap.callee, timeout=RING_TIMEOUT
        )
        ringing.addCallback(self._answered, supervisor, call_id, mode)
        ringing.addErrback(
            lambda f: self.log.failure(
                "supervision of {call_id} failed", f, call_id=call_id
            )
        )
        return json_body(
            request,
            202,
            {
                "call_id": call_id,
                "supervisor": supervisor,
                "mode": mode,
                "status": "ringing",
            },
        )

    def _answered(
        self, result: Any, supervisor: str, call_id: str, mode: str
    ) -> Deferred[None] | None:
        """The supervisor's phone answered (or did not): join it to the call."""
        if result.outcome != "answered" or result.channel is None:
            self.log.info(
                "supervision: {supervisor} did not answer ({outcome})",
                supervisor=supervisor,
                outcome=result.outcome,
            )
            return None
        channel = result.channel
        try:
            _, monitor = self.supervision.start(supervisor, mode, call_id=call_id)
        except (NoCall, NotAllowed, NoAudio):
            self.log.info("supervision: call {call_id} is gone", call_id=call_id)
            result.hang_up()
            return None

        async def attend() -> None:
            try:
                await self.supervise.attend(channel, supervisor, call_id, monitor)
            except HungUp:
                return
            if not channel.hung_up:
                result.hang_up()

        return Deferred.fromCoroutine(attend())

    @app.route("/monitors", methods=["GET"])
    def list_monitors(self, request: IRequest) -> bytes:
        """Every running monitor."""
        self._admin(request)
        monitors = [
            {
                "supervisor": supervisor,
                "call_id": call_id,
                "mode": monitor.mode,
                "agent_leg": monitor.agent,
            }
            for supervisor, (call_id, monitor) in sorted(
                self.supervision.monitors.items()
            )
        ]
        return json_body(request, 200, {"monitors": monitors})

    def _running(self, supervisor: str) -> Any:
        running = self.supervision.monitors.get(supervisor)
        if running is None:
            raise APIError(404, f"{supervisor!r} supervises no call")
        return running

    @app.route("/monitors/<supervisor>", methods=["POST"])
    async def change_mode(self, request: IRequest, supervisor: str) -> bytes:
        """Listen, whisper or barge from now on."""
        username = self._admin(request)
        mode = self._mode(self._body(request))
        call_id, monitor = self._running(supervisor)
        monitor.set_mode(mode)
        await self._audit(
            request, "supervision.mode", f"{call_id} {supervisor} {mode}", username
        )
        return json_body(
            request, 200, {"supervisor": supervisor, "call_id": call_id, "mode": mode}
        )

    @app.route("/monitors/<supervisor>", methods=["DELETE"])
    async def stop(self, request: IRequest, supervisor: str) -> bytes:
        """Stop a monitor: the call is relayed as before."""
        username = self._admin(request)
        call_id, _ = self._running(supervisor)
        self.supervision.stop(supervisor)
        await self._audit(
            request, "supervision.stop", f"{call_id} {supervisor}", username
        )
        return json_body(
            request,
            200,
            {"supervisor": supervisor, "call_id": call_id, "stopped": True},
        )


def openapi_paths() -> dict[str, Any]:
    """The OpenAPI description of the routes, under their full paths."""
    base = "/api/v1/supervision"
    errors = {
        "400": error_response("Bad request"),
        "401": error_response("Not logged in"),
        "403": error_response("Not allowed"),
        "404": error_response("Not found"),
    }
    return {
        f"{base}/calls/{{call_id}}": {
            "post": {
                "summary": "Ring a supervisor and join it to a live call (listen, whisper or barge)",
                "responses": {
                    "202": object_response("Ringing the supervisor"),
                    **errors,
                },
            }
        },
        f"{base}/monitors": {
            "get": {
                "summary": "Running monitors",
                "responses": {"200": object_response("The monitors")},
            }
        },
        f"{base}/monitors/{{supervisor}}": {
            "post": {
                "summary": "Change a monitor's mode",
                "responses": {"200": object_response("The new mode"), **errors},
            },
            "delete": {
                "summary": "Stop a monitor",
                "responses": {"200": object_response("Stopped"), **errors},
            },
        },
    }
