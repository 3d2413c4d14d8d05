"""
The outbound routes, read through ``/api/v1/routes/`` (administrators only).

``GET /`` lists the dialplan's ``trunk:`` routes in the order they are
tried: the pattern, the digits stripped and prepended, the caller ID the
route presents, the trunks in their configured order (least-cost routing
may reorder them per call by the rate table), and whether calls are shared
by weight.  Routes are defined in the configuration file's ``dialplan:``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from klein import Klein
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from pbx.api.http import add_json_errors, admin_name, json_body
from pbx.api.openapi import error_response, object_response
from pbx.api.tokens import Session
from pbx.calls.dialplan import Dialplan, ToTrunks

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
    """

    app = Klein()
    log = Logger()

    def __init__(
        self,
        dialplan: Callable[[], Dialplan],
        authenticate: Callable[[IRequest], Session],
    ) -> None:
        self._dialplan = dialplan
        self._authenticate = authenticate

    def resource(self) -> Any:
        """The Klein resource to mount."""
        return self.app.resource()

    add_json_errors(app, "routes API")

    @app.route("/", methods=["GET"])
    def list_routes(self, request: IRequest) -> bytes:
        """The outbound routes in the order they are tried."""
        admin_name(self._authenticate(request))
        return json_body(request, 200, {"routes": trunk_routes(self._dialplan())})


def openapi_paths(prefix: str = "/api/v1/routes") -> dict[str, Any]:
    """The OpenAPI ``paths`` these routes add, keyed by full path."""
    return {
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
