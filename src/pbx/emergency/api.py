"""
The emergency REST routes.

Under ``/api/v1/emergency/`` (administrators only):

- ``GET /locations``: every named location (``source``: ``config`` or ``api``);
- ``PUT /locations/<name>`` (a civic address of RFC 5139 element names),
  ``DELETE /locations/<name>``: named locations added through the API; the
  configuration's own are fixed here (409);
- ``GET /events?limit=N``: recent emergency calls, newest first, from the
  audit trail;
- ``GET /callbacks``: the PSAP callback windows open now.

At ``/api/v1/extensions/<n>/location`` (an administrator, or the user of
that extension):

- ``GET``: the location the user set (``set``) and the one a call would
  carry now (``effective``, with where it came from);
- ``PUT`` ``{"location": "<name>"}`` or ``{"address": {...}}``: set it;
- ``DELETE``: clear it (the subnet or the configured location applies again).

Changes are written to the audit trail.
"""

from __future__ import annotations

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
from pbx.emergency.desk import EmergencyDesk
from pbx.emergency.event import AUDIT_KIND, EmergencyEvent
from pbx.emergency.locations import LOCATION_KIND, USER_KEY, USER_KIND
from pbx.emergency.options import location_name_problem, parse_civic_address
from pbx.errors import ConfigError
from pbx.interfaces import IStore
from pbx.records import AuditEvent
from pbx.validation import extension_number_problem

__all__ = ["EmergencyAPI", "extension_paths", "openapi_paths"]

MAX_EVENTS = 500


class EmergencyAPI:
    """
    The routes, relative to the mount point, and the extension's location handler.

    :param desk: the emergency desk (locations, callback windows).
    :param store: named locations, users' own, the audit trail.
    :param authenticate: the API's bearer-token check.
    :param clock: for audit times.
    """

    app = Klein()
    log = Logger()

    def __init__(
        self,
        desk: EmergencyDesk,
        store: IStore,
        authenticate: Callable[[IRequest], Session],
        clock: IReactorTime,
    ) -> None:
        self._desk = desk
        self._store = store
        self._authenticate = authenticate
        self._clock = clock

    def resource(self) -> Any:
        """The Klein resource to mount at ``/api/v1/emergency/``."""
        return self.app.resource()

    add_json_errors(app, "emergency API")

    async def _audit(
        self, request: IRequest, kind: str, subject: str, detail: str
    ) -> None:
        await self._store.add_audit(
            AuditEvent(
                self._clock.seconds(), kind, subject, client_host(request), detail
            )
        )

    @staticmethod
    def _address(raw: Any, key: str) -> Any:
        try:
            return parse_civic_address(raw, key)
        except ConfigError as e:
            raise APIError(422, str(e)) from None

    # -- named locations ---------------------------------------------------

    @app.route("/locations", methods=["GET"])
    async def locations(self, request: IRequest) -> bytes:
        """Every named location, by name."""
        admin_name(self._authenticate(request))
        return json_body(
            request,
            200,
            {
                "locations": [
                    {
                        "name": name,
                        "source": source,
                        "address": address.as_dict(),
                        "description": address.describe(),
                    }
                    for name, address, source in await self._desk.locator.all_named()
                ]
            },
        )

    def _changeable(self, name: str) -> None:
        problem = location_name_problem(name)
        if problem:
            raise APIError(422, problem)
        if name in self._desk.config.locations:
            raise APIError(
                409,
                f"location {name} is set in the configuration file; change it there",
            )

    @app.route("/locations/<name>", methods=["PUT"])
    async def put_location(self, request: IRequest, name: str) -> bytes:
        """Add or replace a named location (one not set in the configuration file)."""
        admin = admin_name(self._authenticate(request))
        self._changeable(name)
        body = read_json(request)
        address = self._address(body.get("address", body), "address")
        await self._store.put_item(LOCATION_KIND, "", name, address.as_dict())
        await self._audit(
            request,
            "emergency.location.put",
            name,
            f"by {admin}: {address.describe()}"[:500],
        )
        return json_body(
            request,
            200,
            {
                "name": name,
                "source": "api",
                "address": address.as_dict(),
                "description": address.describe(),
            },
        )

    @app.route("/locations/<name>", methods=["DELETE"])
    async def delete_location(self, request: IRequest, name: str) -> bytes:
        """Delete a named location added through the API."""
        admin = admin_name(self._authenticate(request))
        self._changeable(name)
        if not await self._store.delete_item(LOCATION_KIND, "", name):
            raise APIError(404, f"no location {name}")
        await self._audit(request, "emergency.location.delete", name, f"by {admin}")
        request.setResponseCode(204)
        return b""

    # -- events and callbacks ----------------------------------------------

    @app.route("/events", methods=["GET"])
    async def events(self, request: IRequest) -> bytes:
        """Recent emergency calls, newest first (``limit``: 1-500, default 100)."""
        admin_name(self._authenticate(request))
        args = {
            k.decode("latin-1"): v[-1].decode("utf-8", "replace")
            for k, v in (request.args or {}).items()
        }
        unknown = sorted(set(args) - {"limit"})
        if unknown:
            raise APIError(400, f"unknown query parameter: {unknown[0]}")
        text = args.get("limit", "100")
        if not text.isdigit() or not 1 <= int(text) <= MAX_EVENTS:
            raise APIError(400, f"limit must be a whole number from 1 to {MAX_EVENTS}")
        records = await self._store.list_audit(limit=int(text), kind=AUDIT_KIND)
        return json_body(
            request, 200, {"events": [EmergencyEvent.from_audit(r) for r in records]}
        )

    @app.route("/callbacks", methods=["GET"])
    def callbacks(self, request: IRequest) -> bytes:
        """The PSAP callback windows open now, soonest end first."""
        admin_name(self._authenticate(request))
        now = self._clock.seconds()
        return json_body(
            request,
            200,
            {
                "callbacks": [
                    {
                        "number": number,
                        "extension": extension,
                        "until": until,
                        "remaining": round(until - now),
                    }
                    for number, extension, until in self._desk.callbacks.open_windows(
                        now
                    )
                ]
            },
        )

    # -- an extension's own location -----------------------------------------

    async def extension_location(self, request: IRequest, number: str) -> bytes:
        """``/api/v1/extensions/<number>/location``: GET, PUT or DELETE (an admin, or that extension's user)."""
        session = self._authenticate(request)
        if session.role != "admin" and session.extension != number:
            raise APIError(403, "users reach only their own extension")
        if (
            extension_number_problem(number)
            or await self._store.get_extension(number) is None
        ):
            raise APIError(404, f"no extension {number}")
        method = request.method.decode("ascii", "replace").upper()
        if method == "GET":
            return await self._show(request, number)
        if method == "PUT":
            body = read_json(request)
            if set(body) not in ({"location"}, {"address"}):
                raise APIError(
                    422, 'the body must be {"location": "<name>"} or {"address": {...}}'
                )
            if "location" in body:
                name = body["location"]
                if not isinstance(name, str) or location_name_problem(name):
                    raise APIError(422, "location must be the name of a location")
                if await self._desk.locator.named(name) is None:
                    raise APIError(422, f"no location {name}")
                data: dict[str, Any] = {"location": name}
                what = name
            else:
                address = self._address(body["address"], "address")
                data = {"address": address.as_dict()}
                what = address.describe()
            await self._store.put_item(USER_KIND, number, USER_KEY, data)
            await self._audit(
                request,
                "emergency.extension.location",
                number,
                f"by {session.username}: {what}"[:500],
            )
            return await self._show(request, number)
        if method == "DELETE":
            existed = await self._store.delete_item(USER_KIND, number, USER_KEY)
            if existed:
                await self._audit(
                    request,
                    "emergency.extension.location",
                    number,
                    f"by {session.username}: cleared",
                )
            return await self._show(request, number)
        raise APIError(405, "method not allowed", {b"Allow": b"GET, PUT, DELETE"})

    async def _show(self, request: IRequest, number: str) -> bytes:
        chosen = await self._desk.locator.user_set(number)
        effective = await self._desk.locator.locate(number)
        return json_body(
            request,
            200,
            {
                "extension": number,
                "set": chosen.as_dict() if chosen is not None else None,
                "effective": effective.as_dict() if effective is not None else None,
            },
        )


def openapi_paths(prefix: str = "/api/v1/emergency") -> dict[str, Any]:
    """The OpenAPI ``paths`` of the routes under ``/api/v1/emergency/``."""
    errors = {
        "401": error_response("Not logged in"),
        "403": error_response("Administrators only"),
    }
    name = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    civic = {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "description": "RFC 5139 civic address elements: country, A1..A6, RD, STS, HNO, FLR, ROOM ...",
    }
    return {
        f"{prefix}/locations": {
            "get": {
                "summary": "Named dispatchable locations",
                "responses": {
                    "200": object_response("The locations, by name"),
                    **errors,
                },
            },
        },
        f"{prefix}/locations/{{name}}": {
            "parameters": [name],
            "put": {
                "summary": "Add or replace a named location (not one from the configuration file)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": civic}},
                },
                "responses": {
                    "200": object_response("The location"),
                    "409": error_response("Set in the configuration file"),
                    "422": error_response("Not a civic address"),
                    **errors,
                },
            },
            "delete": {
                "summary": "Delete a named location added through the API",
                "responses": {
                    "204": {"description": "Deleted"},
                    "404": error_response("No such location"),
                    "409": error_response("Set in the configuration file"),
                    **errors,
                },
            },
        },
        f"{prefix}/events": {
            "get": {
                "summary": "Recent emergency calls, newest first",
                "responses": {"200": object_response("The calls"), **errors},
            },
        },
        f"{prefix}/callbacks": {
            "get": {
                "summary": "PSAP callback windows open now",
                "responses": {"200": object_response("The windows"), **errors},
            },
        },
    }


def extension_paths(prefix: str = "/api/v1/extensions") -> dict[str, Any]:
    """The OpenAPI ``paths`` of ``/api/v1/extensions/<n>/location``."""
    errors = {
        "401": error_response("Not logged in"),
        "403": error_response("Users reach only their own extension"),
        "404": error_response("No such extension"),
    }
    number = {
        "name": "number",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]{2,10}$"},
    }
    shown = object_response("The location set and the one a call carries now")
    return {
        f"{prefix}/{{number}}/location": {
            "parameters": [number],
            "get": {
                "summary": "An extension's dispatchable location",
                "responses": {"200": shown, **errors},
            },
            "put": {
                "summary": "Set an extension's location: a named one or a civic address",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "location": {"type": "string"},
                                    "address": {"type": "object"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": shown,
                    "422": error_response("No such location or not an address"),
                    **errors,
                },
            },
            "delete": {
                "summary": "Clear the location the user set",
                "responses": {"200": shown, **errors},
            },
        },
    }
