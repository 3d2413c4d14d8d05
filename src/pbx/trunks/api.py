"""
The trunks' REST routes, mounted under ``/api/v1/trunks/`` (administrators only):

- ``GET /``: every trunk with its live state: registration (registered or
  not, seconds left, last status, failures), up or down by OPTIONS, calls in
  use, and its settings;
- ``GET /<name>``: one trunk (404 if there is none);
- ``GET /rates``: the rate table (trunk -> prefix -> price per minute).

Trunks come from the configuration file, which stays the one place they are
defined: the API reads them and does not change them (a restart applies an
edited file).  Passwords are never returned, only whether one is set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from klein import Klein
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from pbx.api.http import APIError, add_json_errors, admin_name, json_body
from pbx.api.openapi import error_response, object_response
from pbx.api.tokens import Session
from pbx.trunks.registry import Trunks

__all__ = ["TrunksAPI", "openapi_paths"]


class TrunksAPI:
    """
    The routes, relative to the mount point.

    :param trunks: the running trunks.
    :param authenticate: the API's bearer-token check.
    """

    app = Klein()
    log = Logger()

    def __init__(self, trunks: Trunks, authenticate: Callable[[IRequest], Session]) -> None:
        self._trunks = trunks
        self._authenticate = authenticate

    def resource(self) -> Any:
        """The Klein resource to mount."""
        return self.app.resource()

    add_json_errors(app, "trunks API")

    @app.route("/", methods=["GET"])
    def list_trunks(self, request: IRequest) -> bytes:
        """Every trunk with its live state."""
        admin_name(self._authenticate(request))
        return json_body(request, 200, {"trunks": self._trunks.summary()})

    @app.route("/rates", methods=["GET"])
    def rates(self, request: IRequest) -> bytes:
        """The rate table of least-cost routing."""
        admin_name(self._authenticate(request))
        return json_body(request, 200, {"rates": self._trunks.rates.public()})

    @app.route("/<name>", methods=["GET"])
    def trunk(self, request: IRequest, name: str) -> bytes:
        """One trunk."""
        admin_name(self._authenticate(request))
        trunk = self._trunks.get(name)
        if trunk is None:
            raise APIError(404, f"no trunk {name}")
        return json_body(request, 200, trunk.summary())


def openapi_paths(prefix: str = "/api/v1/trunks") -> dict[str, Any]:
    """The OpenAPI ``paths`` these routes add, keyed by full path."""
    errors = {"401": error_response("Not logged in"), "403": error_response("Administrators only")}
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        f"{prefix}/": {
            "get": {"summary": "Trunks with their registration, up/down state and calls in use (no passwords)",
                    "responses": {"200": object_response("The trunks, as configured"), **errors}},
        },
        f"{prefix}/rates": {
            "get": {"summary": "The rate table: trunk -> number prefix -> price per minute",
                    "responses": {"200": object_response("The rates"), **errors}},
        },
        f"{prefix}/{{name}}": {
            "parameters": [name],
            "get": {"summary": "One trunk and its live state",
                    "responses": {"200": object_response("The trunk"), "404": error_response("No such trunk"),
                                  **errors}},
        },
    }
