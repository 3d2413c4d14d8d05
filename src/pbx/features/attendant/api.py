"""
The attendant's REST routes, mounted under ``/api/v1/attendant/``
(administrators only):

- ``GET /menus``, ``GET /menus/<name>``: the menus in effect, each with its
  ``name`` and ``source`` (``config`` or ``api``);
- ``PUT /menus/<name>``: create or replace a menu (201 or 200); the body is
  validated like the config file, a 400 names the field
  (``{"error": "options.7.extension: ...", "field": "options.7.extension"}``);
- ``DELETE /menus/<name>``: 404 if none, 409 if another menu, a schedule or
  a dialplan route names it, or it comes from the config file; deleting an
  API override of a config menu reverts it to the file's;
- the same for ``/schedules`` and ``/schedules/<name>``.

Changes apply to the next call; see :mod:`pbx.features.attendant.catalogue`.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.logger import Logger
from twisted.python.failure import Failure
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
from pbx.errors import ConfigError
from pbx.features.attendant.catalogue import (
    MENU,
    SCHEDULE,
    Catalogue,
    Conflict,
    Missing,
)
from pbx.interfaces import IPBX
from pbx.records import AuditEvent

_KINDS = {"menus": MENU, "schedules": SCHEDULE}


class FieldError(APIError):
    """A 400 naming the field of the body at fault."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(400, f"{field}: {problem}")
        self.field = field


class AttendantAPI:
    """
    The routes, relative to the mount point.

    :param pbx: the running PBX (``authenticate``, ``store``, ``clock``).
    :param catalogue: the menus and schedules.
    """

    app = Klein()
    log = Logger()

    def __init__(self, pbx: IPBX, catalogue: Catalogue) -> None:
        self.pbx = pbx
        self.catalogue = catalogue

    def resource(self) -> Any:
        """The Klein resource to mount."""
        return self.app.resource()

    # -- errors ------------------------------------------------------------

    @app.handle_errors(FieldError)
    def _field_error(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        return json_body(request, 400, {"error": error.message, "field": error.field})

    add_json_errors(app, "attendant API")

    # -- helpers -----------------------------------------------------------

    async def _admin(self, request: IRequest) -> str:
        """The administrator's username; 401 without a session, 403 for users."""
        return admin_name(self.pbx.authenticate(request))

    async def _audit(self, request: IRequest, kind: str, subject: str, username: str) -> None:
        await self.pbx.store.add_audit(
            AuditEvent(self.pbx.clock.seconds(), kind, subject, client_host(request), username)
        )

    @staticmethod
    def _json(name: str, source: str, definition: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "source": source, **definition}

    # -- routes ------------------------------------------------------------

    @app.route("/<any(menus, schedules):collection>", methods=["GET"])
    async def list_all(self, request: IRequest, collection: str) -> bytes:
        """Every menu (or schedule) in effect."""
        await self._admin(request)
        entries = await self.catalogue.entries(_KINDS[collection])
        body = [self._json(n, source, d) for n, (source, d) in entries.items()]
        return json_body(request, 200, {collection: body})

    @app.route("/<any(menus, schedules):collection>/<name>", methods=["GET"])
    async def get_one(self, request: IRequest, collection: str, name: str) -> bytes:
        """One menu (or schedule)."""
        await self._admin(request)
        entries = await self.catalogue.entries(_KINDS[collection])
        if name not in entries:
            raise APIError(404, f"no {collection[:-1]} {name!r}")
        source, definition = entries[name]
        return json_body(request, 200, self._json(name, source, definition))

    @app.route("/<any(menus, schedules):collection>/<name>", methods=["PUT"])
    async def put_one(self, request: IRequest, collection: str, name: str) -> bytes:
        """Create or replace a menu (or schedule) after validating it."""
        username = await self._admin(request)
        body = read_json(request)
        try:
            definition, created = await self.catalogue.put(_KINDS[collection], name, body)
        except ConfigError as e:
            raise FieldError(e.key, e.problem) from None
        await self._audit(request, f"attendant.{collection[:-1]}.put", name, username)
        return json_body(request, 201 if created else 200, self._json(name, "api", definition))

    @app.route("/<any(menus, schedules):collection>/<name>", methods=["DELETE"])
    async def delete_one(self, request: IRequest, collection: str, name: str) -> bytes:
        """Delete a menu (or schedule), or revert an API override to the config file's."""
        username = await self._admin(request)
        try:
            done = await self.catalogue.delete(_KINDS[collection], name)
        except Missing as e:
            raise APIError(404, str(e)) from None
        except Conflict as e:
            raise APIError(409, str(e)) from None
        await self._audit(request, f"attendant.{collection[:-1]}.delete", name, username)
        return json_body(request, 200, {done: name})


def openapi_paths(prefix: str = "/api/v1/attendant") -> dict[str, Any]:
    """The OpenAPI ``paths`` these routes add, keyed by full path."""
    errors = {"401": error_response("Not logged in"), "403": error_response("Administrators only")}
    name = {"name": "name", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"}}
    paths: dict[str, Any] = {}
    for collection in ("menus", "schedules"):
        what = collection[:-1]
        paths[f"{prefix}/{collection}"] = {
            "get": {"summary": f"List the attendant's {collection}",
                    "responses": {"200": object_response(f"The {collection} in effect"), **errors}},
        }
        paths[f"{prefix}/{collection}/{{name}}"] = {
            "parameters": [name],
            "get": {"summary": f"One attendant {what}",
                    "responses": {"200": object_response(f"The {what}"), "404": error_response("No such " + what), **errors}},
            "put": {"summary": f"Create or replace an attendant {what}",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
                    "responses": {"200": object_response("Replaced"), "201": object_response("Created"),
                                  "400": error_response("Invalid; the message names the field"), **errors}},
            "delete": {"summary": f"Delete an attendant {what} (or revert it to the config file's)",
                       "responses": {"200": object_response("Deleted or reverted"), "404": error_response("No such " + what),
                                     "409": error_response("Still in use, or defined in the config file"), **errors}},
        }
    return paths
