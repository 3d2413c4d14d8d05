"""
The outbound routes, read through ``/api/v1/routes/`` (administrators only).

``GET /`` lists the dialplan's ``trunk:`` routes in the order they are
tried: the pattern, the digits stripped and prepended, the caller ID the
route presents, the trunks in their configured order (least-cost routing
may reorder them per call by the rate table), and whether calls are shared
by weight.

``PUT /<index>`` changes a trunk route's trunks and digits (``trunk``,
``strip``, ``prepend``, ``caller_id``, ``share``, checked as ``dialplan:``
is, every trunk named must be running): the next call uses it.  The file
keeps the routes, their patterns and their order; the change is stored by
the route's pattern (:func:`pbx.trunks.stored.load_routes` puts it back at
start) and audited.  ``DELETE /<index>`` drops the change: the file's route
again.
"""

from __future__ import annotations

import json
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
from pbx.calls.dialplan import Dialplan, Route, ToTrunks
from pbx.errors import ConfigError
from pbx.interfaces import IStore
from pbx.records import AuditEvent
from pbx.trunks.stored import ROUTE_KIND, route_change

__all__ = ["RoutesAPI", "openapi_paths", "trunk_routes"]


def trunk_routes(dialplan: Dialplan) -> list[dict[str, Any]]:
    """The dialplan's routes out through trunks, JSON-ready; ``index`` is the route's place in ``dialplan:``."""
    out = []
    for index, route in enumerate(dialplan.routes):
        action = route.action
        if not isinstance(action, ToTrunks):
            continue
        out.append(
            {
                "index": index,
                "pattern": route.pattern,
                "name": action.route_name,
                "moh": action.moh,
                "trunks": list(action.trunks),
                "strip": action.strip,
                "prepend": action.prepend,
                "caller_id": action.caller_id,
                "share": "weighted" if action.weighted else "",
                "emergency": action.emergency,
                "public": route.public,
            }
        )
    return out


class RoutesAPI:
    """
    The routes, relative to the mount point.

    :param dialplan: the dialplan in use now.
    :param authenticate: the API's bearer-token check.
    :param routes: the file's dialplan (what ``DELETE`` goes back to), the
        trunks running (by name), and where a changed dialplan is put in use.
    :param store: where route changes are kept, and the audit trail.
    :param clock: for audit times.
    """

    app = Klein()
    log = Logger()

    def __init__(
        self,
        dialplan: Callable[[], Dialplan],
        authenticate: Callable[[IRequest], Session],
        *,
        file_dialplan: Dialplan | None = None,
        trunk_names: Callable[[], set[str]] = set,
        use: Callable[[Dialplan], None] | None = None,
        store: IStore | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        self._dialplan = dialplan
        self._authenticate = authenticate
        self._file = file_dialplan
        self._trunk_names = trunk_names
        self._use = use
        self._store = store
        self._clock = clock

    def resource(self) -> Any:
        """The Klein resource to mount."""
        return self.app.resource()

    add_json_errors(app, "routes API")

    @app.route("/", methods=["GET"])
    def list_routes(self, request: IRequest) -> bytes:
        """The outbound routes in the order they are tried."""
        admin_name(self._authenticate(request))
        return json_body(request, 200, {"routes": trunk_routes(self._dialplan())})

    def _trunk_route(self, index: str) -> tuple[int, Route]:
        """The trunk route at ``index`` of the dialplan; 404 if there is none."""
        routes = self._dialplan().routes
        if not index.isdigit() or int(index) >= len(routes):
            raise APIError(404, f"no route {index}")
        route = routes[int(index)]
        if not isinstance(route.action, ToTrunks):
            raise APIError(404, f"route {index} is not a trunk route")
        return int(index), route

    def _put_in_use(self, i: int, route: Route) -> None:
        """The dialplan with route ``i`` replaced by ``route``, in use from the next call."""
        assert self._use is not None
        routes = list(self._dialplan().routes)
        routes[i] = route
        self._use(Dialplan(tuple(routes)))

    async def _audit(
        self, request: IRequest, kind: str, subject: str, detail: str
    ) -> None:
        assert self._store is not None and self._clock is not None
        await self._store.add_audit(
            AuditEvent(
                self._clock.seconds(), kind, subject, client_host(request), detail
            )
        )

    @app.route("/<index>", methods=["PUT"])
    async def put_route(self, request: IRequest, index: str) -> bytes:
        """Change a trunk route's trunks, strip/prepend, caller ID or sharing; the next call uses it."""
        admin = admin_name(self._authenticate(request))
        if self._use is None or self._store is None:
            raise APIError(405, "routes are read-only here")
        i, route = self._trunk_route(index)
        body = read_json(request)
        try:
            changed = route_change(route, body, self._trunk_names())
        except ConfigError as e:
            raise APIError(400, f"{e.key or 'body'}: {e.problem}") from None
        await self._store.put_item(ROUTE_KIND, "", route.pattern, body)
        self._put_in_use(i, changed)
        await self._audit(
            request,
            "routes.put",
            route.pattern,
            f"by {admin}: {json.dumps(body, sort_keys=True)}",
        )
        return json_body(
            request, 200, trunk_routes(Dialplan((changed,)))[0] | {"index": i}
        )

    @app.route("/<index>", methods=["DELETE"])
    async def reset_route(self, request: IRequest, index: str) -> bytes:
        """Drop the API's change of a trunk route: the file's route again."""
        admin = admin_name(self._authenticate(request))
        if self._use is None or self._store is None or self._file is None:
            raise APIError(405, "routes are read-only here")
        i, route = self._trunk_route(index)
        if not await self._store.delete_item(ROUTE_KIND, "", route.pattern):
            raise APIError(404, f"route {index} has no change from the API")
        original = next(r for r in self._file.routes if r.pattern == route.pattern)
        self._put_in_use(i, original)
        await self._audit(request, "routes.reset", route.pattern, f"by {admin}")
        request.setResponseCode(204)
        return b""


def openapi_paths(prefix: str = "/api/v1/routes") -> dict[str, Any]:
    """The OpenAPI ``paths`` these routes add, keyed by full path."""
    errors = {
        "401": error_response("Not logged in"),
        "403": error_response("Administrators only"),
    }
    index = {
        "name": "index",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
    return {
        f"{prefix}/{{index}}": {
            "parameters": [index],
            "put": {
                "summary": "Change a trunk route's trunk list, strip, prepend, caller_id or share (stored, next call)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {
                    "200": object_response("The route"),
                    "400": error_response("A bad field, named"),
                    "404": error_response("No such trunk route"),
                    **errors,
                },
            },
            "delete": {
                "summary": "Drop the API's change of a trunk route (the file's again)",
                "responses": {
                    "204": {"description": "The file's route is in use"},
                    "404": error_response("No change to drop"),
                    **errors,
                },
            },
        },
        f"{prefix}/": {
            "get": {
                "summary": "Outbound routes: pattern, strip/prepend, caller ID, trunks in order",
                "responses": {
                    "200": object_response("The routes"),
                    "401": error_response("Not logged in"),
                    "403": error_response("Administrators only"),
                },
            },
        },
    }
