"""
The permissions REST routes.

Under ``/api/v1/permissions/`` (administrators only):

- ``GET /``: the class ladder, the prefix table, the default class, groups,
  each configured extension's class, the limits, international hours, the
  announcement, the held extensions and the live counters;
- ``GET /extensions/<n>``: one extension's class (and where it comes
  from), limits, counters and hold;
- ``PUT /extensions/<n>``: set its class and/or limits
  (``{"class": "international", "limits": {"concurrent_outside": 2}}``,
  checked as ``permissions.extensions`` is); stored, winning over the
  file's, effective from the next call; ``DELETE`` drops them (the file's
  apply again);
- ``GET /check?extension=<n>&number=<number>``: what a call would get
  now (allowed, or the status, reason and limit), changing no counter;
- ``GET /alerts?unacknowledged=true``: recent toll-fraud alerts, newest first;
- ``POST /alerts/<id>/acknowledge``: mark one seen;
- ``GET /holds``, ``DELETE /holds/<n>``: held extensions; release one.

Settings, acknowledgements and releases are written to the audit trail.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from pbx.api.http import (
    APIError,
    add_json_errors,
    admin_name,
    client_host,
    json_body,
    read_json,
)
from pbx.api.openapi import error_response, object_response
from pbx.api.tokens import Session
from pbx.errors import ConfigError
from pbx.features.attendant.schedule import dump_schedule
from pbx.interfaces import IStore
from pbx.permissions.classes import CLASS_NAMES
from pbx.permissions.guard import SETTING_KEY, SETTING_KIND, Guard
from pbx.permissions.options import parse_extension_setting
from pbx.records import AuditEvent
from pbx.validation import extension_number_problem

__all__ = ["PermissionsAPI", "openapi_paths"]

_NUMBER = re.compile(r"\+?[0-9*#]{1,20}")


def _args(request: IRequest, allowed: set[str]) -> dict[str, str]:
    args = {
        k.decode("latin-1"): v[-1].decode("utf-8", "replace")
        for k, v in (request.args or {}).items()
    }
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise APIError(400, f"unknown query parameter: {unknown[0]}")
    return args


class PermissionsAPI:
    """
    The routes, relative to the mount point.

    :param guard: the permissions guard (configuration, counters, alerts, holds).
    :param store: the audit trail.
    :param authenticate: the API's bearer-token check.
    :param clock: for audit times.
    """

    app = Klein()
    log = Logger()

    def __init__(
        self,
        guard: Guard,
        store: IStore,
        authenticate: Callable[[IRequest], Session],
        clock: IReactorTime,
    ) -> None:
        self._guard = guard
        self._store = store
        self._authenticate = authenticate
        self._clock = clock

    def resource(self) -> Any:
        """The Klein resource to mount at ``/api/v1/permissions/``."""
        return self.app.resource()

    add_json_errors(app, "permissions API")

    async def _audit(
        self, request: IRequest, kind: str, subject: str, detail: str
    ) -> None:
        await self._store.add_audit(
            AuditEvent(
                self._clock.seconds(), kind, subject, client_host(request), detail
            )
        )

    @app.route("/", methods=["GET"])
    def overview(self, request: IRequest) -> bytes:
        """The whole configuration of permissions, with the holds and live counters."""
        admin_name(self._authenticate(request))
        config = self._guard.config
        hours = config.international_hours
        international_hours = None
        if hours is not None:
            international_hours = {
                k: v
                for k, v in dump_schedule(hours).items()
                if k not in ("open", "closed")
            }
        return json_body(
            request,
            200,
            {
                "classes": list(CLASS_NAMES),
                "table": config.table.as_dict(),
                "default": config.default.label,
                "groups": {
                    name: {"class": c.label, "members": sorted(members)}
                    for name, (c, members) in config.groups.items()
                },
                "extensions": {
                    number: c.label for number, c in sorted(config.extensions.items())
                },
                "limits": config.limits.as_dict(),
                "extension_limits": {
                    n: lim.as_dict()
                    for n, lim in sorted(config.extension_limits.items())
                },
                "international_hours": international_hours,
                "announcement": config.announcement,
                "holds": [h.as_dict() for h in self._guard.holds()],
                "usage": self._guard.usage(),
            },
        )

    @app.route("/extensions/<number>", methods=["GET"])
    def extension(self, request: IRequest, number: str) -> bytes:
        """One extension's class of service, limits, counters and hold."""
        admin_name(self._authenticate(request))
        if extension_number_problem(number):
            raise APIError(404, f"no extension {number}")
        config = self._guard.config
        service_class, source = config.class_of(number)
        hold = next((h for h in self._guard.holds() if h.extension == number), None)
        own_class, own_limits = self._guard.setting_of(number)
        return json_body(
            request,
            200,
            {
                "extension": number,
                "class": service_class.label,
                "source": source,
                "limits": config.limits_of(number).as_dict(),
                "outside_calls": self._guard.outside_calls(number),
                "international_last_hour": self._guard.international_calls(number),
                "hold": hold.as_dict() if hold is not None else None,
                "set_by_api": {
                    "class": own_class.label if own_class is not None else None,
                    "limits": own_limits.as_dict() if own_limits is not None else None,
                },
            },
        )

    @app.route("/extensions/<number>", methods=["PUT"])
    async def set_extension(self, request: IRequest, number: str) -> bytes:
        """Set an extension's class of service and/or limits; the next call is judged by them."""
        admin = admin_name(self._authenticate(request))
        if extension_number_problem(number):
            raise APIError(404, f"no extension {number}")
        body = read_json(request)
        if not body:
            raise APIError(400, "class or limits: at least one is required")
        try:
            service_class, limits = parse_extension_setting(
                body, "", self._guard.file_limits
            )
        except ConfigError as e:
            raise APIError(400, f"{e.key}: {e.problem}") from None
        data: dict[str, Any] = {}
        if service_class is not None:
            data["class"] = service_class.label
        if limits is not None:
            data["limits"] = limits.as_dict()
        await self._store.put_item(SETTING_KIND, number, SETTING_KEY, data)
        self._guard.set_extension(number, service_class, limits)
        await self._audit(
            request,
            "permissions.extension.set",
            number,
            f"by {admin}: {json.dumps(data, sort_keys=True)}",
        )
        return self.extension(request, number)

    @app.route("/extensions/<number>", methods=["DELETE"])
    async def clear_extension(self, request: IRequest, number: str) -> bytes:
        """Drop the class and limits set through the API: the file's apply again."""
        admin = admin_name(self._authenticate(request))
        if extension_number_problem(number) or not await self._store.delete_item(
            SETTING_KIND, number, SETTING_KEY
        ):
            raise APIError(404, f"extension {number} has no settings from the API")
        self._guard.set_extension(number, None, None)
        await self._audit(request, "permissions.extension.clear", number, f"by {admin}")
        request.setResponseCode(204)
        return b""

    @app.route("/check", methods=["GET"])
    def check(self, request: IRequest) -> bytes:
        """Would ``extension`` be let through to ``number`` now?  Nothing is counted."""
        admin_name(self._authenticate(request))
        args = _args(request, {"extension", "number"})
        extension, number = args.get("extension", ""), args.get("number", "")
        if number.startswith(" "):
            # An unescaped + in a query string reads as a space (form encoding).
            number = "+" + number[1:]
        if extension_number_problem(extension):
            raise APIError(400, "extension must be an extension number (2-10 digits)")
        if not _NUMBER.fullmatch(number):
            raise APIError(400, "number must be digits, an optional + first (up to 20)")
        decision = self._guard.preview(extension, number)
        service_class, source = self._guard.config.class_of(extension)
        return json_body(
            request,
            200,
            {
                "extension": extension,
                "number": number,
                "class": service_class.label,
                "source": source,
                "number_class": decision.number_class.label,
                "allowed": decision.allowed,
                "verdict": decision.verdict.value,
                "status": decision.status,
                "reason": decision.reason,
                "detail": decision.detail,
                "limit": decision.limit,
                "emergency": decision.emergency,
            },
        )

    @app.route("/alerts", methods=["GET"])
    def alerts(self, request: IRequest) -> bytes:
        """Recent toll-fraud alerts, newest first (``unacknowledged=true``: only those nobody has seen)."""
        admin_name(self._authenticate(request))
        args = _args(request, {"unacknowledged"})
        flag = args.get("unacknowledged", "false")
        if flag not in ("true", "false"):
            raise APIError(400, "unacknowledged must be true or false")
        return json_body(
            request,
            200,
            {
                "alerts": [
                    a.as_dict()
                    for a in self._guard.alerts.alerts(unacknowledged=flag == "true")
                ]
            },
        )

    @app.route("/alerts/<alert_id>/acknowledge", methods=["POST"])
    async def acknowledge(self, request: IRequest, alert_id: str) -> bytes:
        """Mark an alert seen (it stays listed; a later trip raises a new one)."""
        admin = admin_name(self._authenticate(request))
        if not alert_id.isdigit() or len(alert_id) > 12:
            raise APIError(404, f"no alert {alert_id}")
        alert = self._guard.alerts.acknowledge(
            int(alert_id), admin, self._clock.seconds()
        )
        if alert is None:
            raise APIError(404, f"no alert {alert_id}")
        await self._audit(
            request,
            "permissions.alert.acknowledge",
            alert.extension,
            f"by {admin}: alert {alert.id} ({alert.limit})",
        )
        return json_body(request, 200, alert.as_dict())

    @app.route("/holds", methods=["GET"])
    def holds(self, request: IRequest) -> bytes:
        """The extensions whose outside calls are held."""
        admin_name(self._authenticate(request))
        return json_body(
            request, 200, {"holds": [h.as_dict() for h in self._guard.holds()]}
        )

    @app.route("/holds/<number>", methods=["DELETE"])
    async def release(self, request: IRequest, number: str) -> bytes:
        """Let a held extension call out again."""
        admin = admin_name(self._authenticate(request))
        if extension_number_problem(number) or not await self._guard.release_hold(
            number
        ):
            raise APIError(404, f"extension {number} is not held")
        await self._audit(request, "permissions.hold.release", number, f"by {admin}")
        request.setResponseCode(204)
        return b""


def openapi_paths(prefix: str = "/api/v1/permissions") -> dict[str, Any]:
    """The OpenAPI ``paths`` of the routes under ``/api/v1/permissions/``."""
    errors = {
        "401": error_response("Not logged in"),
        "403": error_response("Administrators only"),
    }

    def parameter(name: str, pattern: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": pattern},
        }

    number = parameter("number", "^[0-9]{2,10}$")
    return {
        f"{prefix}/": {
            "get": {
                "summary": "Classes of service, the prefix table, limits, holds and live counters",
                "responses": {"200": object_response("The permissions"), **errors},
            },
        },
        f"{prefix}/extensions/{{number}}": {
            "parameters": [number],
            "get": {
                "summary": "One extension's class of service, limits, counters and hold",
                "responses": {
                    "200": object_response("The extension's permissions"),
                    **errors,
                },
            },
            "put": {
                "summary": "Set an extension's class of service and/or limits "
                "(stored, over the file's, from the next call)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "class": {
                                        "type": "string",
                                        "enum": list(CLASS_NAMES),
                                    },
                                    "limits": {"type": "object"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": object_response("The extension's permissions"),
                    "400": error_response("A bad field, named"),
                    **errors,
                },
            },
            "delete": {
                "summary": "Drop the class and limits set through the API",
                "responses": {
                    "204": {"description": "Dropped: the file's apply"},
                    "404": error_response("No settings from the API"),
                    **errors,
                },
            },
        },
        f"{prefix}/check": {
            "get": {
                "summary": "What a call from an extension to a number would get now (nothing is counted)",
                "parameters": [
                    {
                        "name": "extension",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "number",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": object_response("The decision"),
                    "400": error_response("Bad query"),
                    **errors,
                },
            },
        },
        f"{prefix}/alerts": {
            "get": {
                "summary": "Recent toll-fraud alerts, newest first",
                "parameters": [
                    {
                        "name": "unacknowledged",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["true", "false"]},
                    }
                ],
                "responses": {
                    "200": object_response("The alerts"),
                    "400": error_response("Bad query"),
                    **errors,
                },
            },
        },
        f"{prefix}/alerts/{{id}}/acknowledge": {
            "parameters": [parameter("id", "^[0-9]+$")],
            "post": {
                "summary": "Acknowledge an alert",
                "responses": {
                    "200": object_response("The alert"),
                    "404": error_response("No such alert"),
                    **errors,
                },
            },
        },
        f"{prefix}/holds": {
            "get": {
                "summary": "Extensions whose outside calls are held after a tripped limit",
                "responses": {"200": object_response("The holds"), **errors},
            },
        },
        f"{prefix}/holds/{{number}}": {
            "parameters": [number],
            "delete": {
                "summary": "Release a held extension",
                "responses": {
                    "204": {"description": "Released"},
                    "404": error_response("Not held"),
                    **errors,
                },
            },
        },
    }
