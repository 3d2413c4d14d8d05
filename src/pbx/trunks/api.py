"""
The trunks' REST routes, mounted under ``/api/v1/trunks/`` (administrators only):

- ``GET /``: every trunk with its live state: registration (registered or
  not, seconds left, last status, failures), up or down by OPTIONS, calls in
  use, and its settings;
- ``GET /<name>``: one trunk (404 if there is none);
- ``GET /rates``: the rate table (trunk -> prefix -> price per minute);
- ``PUT /<name>``: create or replace a trunk (the body is the trunk as
  ``trunks:`` spells it, checked by the same parser: a bad field is a 400
  naming it); it takes effect at once: the old registration is ended
  (Expires: 0) and the new one started, the keep-alive likewise; calls in
  progress go on.  An empty or absent ``password`` keeps the trunk's;
- ``DELETE /<name>``: remove a trunk put through the API (unregistering
  it); a trunk the file also defines goes back to the file's settings; a
  trunk only the API defines that a route names is kept (409);
- ``PUT /rates``: replace the rate table, used from the next call.

Changes are stored (:mod:`pbx.trunks.stored`: the API's copy of a trunk
wins over the file's) and written to the audit trail.  Passwords are never
returned, only whether one is set.
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
from pbx.calls.dialplan import Dialplan, ToTrunks
from pbx.errors import ConfigError, StartupError
from pbx.interfaces import IStore
from pbx.records import AuditEvent
from pbx.trunks.config import parse_rates, parse_trunk
from pbx.trunks.registry import Trunks
from pbx.trunks.stored import RATES_KEY, RATES_KIND, TRUNK_KIND, stored_form

#: Names a trunk put through the API may not have: they are routes of their own.
_RESERVED = {"rates"}


def _bad(e: ConfigError) -> APIError:
    """A 400 naming the field a :class:`ConfigError` is about."""
    return APIError(400, f"{e.key or 'body'}: {e.problem}")

__all__ = ["TrunksAPI", "openapi_paths"]


class TrunksAPI:
    """
    The routes, relative to the mount point.

    :param trunks: the running trunks.
    :param authenticate: the API's bearer-token check.
    :param store: where changed trunks and rates are kept, and the audit trail.
    :param clock: for audit times.
    :param routes: the dialplan in use (a trunk its routes name cannot be deleted).
    """

    app = Klein()
    log = Logger()

    def __init__(self, trunks: Trunks, authenticate: Callable[[IRequest], Session], store: IStore,
                 clock: IReactorTime, routes: Callable[[], Dialplan | None] = lambda: None) -> None:
        self._trunks = trunks
        self._authenticate = authenticate
        self._store = store
        self._clock = clock
        self._routes = routes

    def resource(self) -> Any:
        """The Klein resource to mount."""
        return self.app.resource()

    add_json_errors(app, "trunks API")

    @app.route("/", methods=["GET"])
    def list_trunks(self, request: IRequest) -> bytes:
        """Every trunk with its live state."""
        admin_name(self._authenticate(request))
        return json_body(request, 200, {"trunks": [self._summary(t["name"]) for t in self._trunks.summary()]})

    def _summary(self, name: str) -> dict[str, Any]:
        """A trunk's state and where its settings come from (``file`` or ``api``)."""
        trunk = self._trunks.get(name)
        assert trunk is not None
        source = "file" if trunk.config is self._trunks.configured.get(name) else "api"
        return {**trunk.summary(), "source": source}

    async def _audit(self, request: IRequest, kind: str, subject: str, detail: str) -> None:
        await self._store.add_audit(AuditEvent(self._clock.seconds(), kind, subject, client_host(request), detail))

    @app.route("/rates", methods=["GET"])
    def rates(self, request: IRequest) -> bytes:
        """The rate table of least-cost routing."""
        admin_name(self._authenticate(request))
        return json_body(request, 200, {"rates": self._trunks.rates.public()})

    @app.route("/rates", methods=["PUT"])
    async def put_rates(self, request: IRequest) -> bytes:
        """Replace the rate table (``{"rates": {trunk: {prefix: price}}}``); the next call is priced by it."""
        admin = admin_name(self._authenticate(request))
        body = read_json(request)
        unknown = sorted(set(body) - {"rates"})
        if unknown:
            raise APIError(400, f"{unknown[0]}: unknown key")
        if not isinstance(body.get("rates"), dict):
            raise APIError(400, "rates: required, a mapping of trunk names to {prefix: price per minute}")
        try:
            table = parse_rates(body["rates"], tuple(t.config for t in self._trunks.trunks.values()))
        except ConfigError as e:
            raise _bad(e) from None
        await self._store.put_item(RATES_KIND, "", RATES_KEY, {"rates": table.public()})
        self._trunks.rates = table
        await self._audit(request, "trunks.rates", "", f"by {admin}: {len(table.prices)} trunk(s) priced")
        return json_body(request, 200, {"rates": table.public()})

    @app.route("/<name>", methods=["GET"])
    def trunk(self, request: IRequest, name: str) -> bytes:
        """One trunk."""
        admin_name(self._authenticate(request))
        trunk = self._trunks.get(name)
        if trunk is None:
            raise APIError(404, f"no trunk {name}")
        return json_body(request, 200, self._summary(name))

    @app.route("/<name>", methods=["PUT"])
    async def put_trunk(self, request: IRequest, name: str) -> bytes:
        """Create or replace a trunk; it registers (or stops) at once."""
        admin = admin_name(self._authenticate(request))
        if name in _RESERVED:
            raise APIError(400, f"name: {name!r} is reserved")
        body = read_json(request)
        if body.get("name", name) != name:
            raise APIError(400, "name: differs from the path")
        raw = stored_form(body)
        old = self._trunks.get(name)
        if not raw.get("password") and old is not None:
            # Write-only: an absent or empty password keeps the one set.
            raw["password"] = old.config.password
        try:
            config = parse_trunk(name, raw)
        except ConfigError as e:
            raise _bad(e) from None
        for number in config.dids:
            owner = self._trunks.did_owner(number, but=name)
            if owner is not None:
                raise APIError(400, f"dids.{number}: is a DID of trunk {owner} too")
        try:
            self._trunks.put(config)
        except StartupError as e:
            raise APIError(400, str(e).removeprefix(f"trunks.{name}.")) from None
        await self._store.put_item(TRUNK_KIND, "", name, raw)
        what = "changed" if old is not None else "created"
        await self._audit(request, "trunks.put", name, f"by {admin}: {what}")
        return json_body(request, 200 if old is not None else 201, self._summary(name))

    @app.route("/<name>", methods=["DELETE"])
    async def delete_trunk(self, request: IRequest, name: str) -> bytes:
        """Remove a trunk put through the API; a trunk the file defines goes back to the file's settings."""
        admin = admin_name(self._authenticate(request))
        if self._trunks.get(name) is None:
            raise APIError(404, f"no trunk {name}")
        file_config = self._trunks.configured.get(name)
        dialplan = self._routes()
        if file_config is None and dialplan is not None:
            for i, route in enumerate(dialplan.routes):
                if isinstance(route.action, ToTrunks) and name in route.action.trunks:
                    raise APIError(409, f"trunk {name} is in route {i} ({route.pattern}); change the route first")
        for number in file_config.dids if file_config is not None else ():
            owner = self._trunks.did_owner(number, but=name)
            if owner is not None:
                raise APIError(409, f"the file's trunk {name} has DID {number}, now trunk {owner}'s; change that first")
        if not await self._store.delete_item(TRUNK_KIND, "", name):
            raise APIError(409, f"trunk {name} is defined in the configuration file only; edit the file")
        if file_config is not None:
            self._trunks.put(file_config)
            what = "back to the file's settings"
        else:
            self._trunks.remove(name)
            what = "deleted"
        await self._audit(request, "trunks.delete", name, f"by {admin}: {what}")
        request.setResponseCode(204)
        return b""


def openapi_paths(prefix: str = "/api/v1/trunks") -> dict[str, Any]:
    """The OpenAPI ``paths`` these routes add, keyed by full path."""
    errors = {"401": error_response("Not logged in"), "403": error_response("Administrators only")}
    body = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        f"{prefix}/": {
            "get": {"summary": "Trunks with their registration, up/down state and calls in use (no passwords)",
                    "responses": {"200": object_response("The trunks, as configured"), **errors}},
        },
        f"{prefix}/rates": {
            "get": {"summary": "The rate table: trunk -> number prefix -> price per minute",
                    "responses": {"200": object_response("The rates"), **errors}},
            "put": {"summary": "Replace the rate table ({rates: {trunk: {prefix: price}}}), used from the next call",
                    "requestBody": body,
                    "responses": {"200": object_response("The rates"), "400": error_response("Bad rates"),
                                  **errors}},
        },
        f"{prefix}/{{name}}": {
            "parameters": [name],
            "get": {"summary": "One trunk and its live state",
                    "responses": {"200": object_response("The trunk"), "404": error_response("No such trunk"),
                                  **errors}},
            "put": {"summary": "Create or replace a trunk (as trunks: spells it; password write-only, "
                               "kept when absent); re-registers at once",
                    "requestBody": body,
                    "responses": {"200": object_response("The trunk, changed"),
                                  "201": object_response("The trunk, created"),
                                  "400": error_response("A bad field, named"), **errors}},
            "delete": {"summary": "Delete a trunk put through the API (unregisters); a file trunk reverts to the file",
                       "responses": {"204": {"description": "Deleted"}, "404": error_response("No such trunk"),
                                     "409": error_response("Defined in the configuration file only"),
                                     **errors}},
        },
    }
