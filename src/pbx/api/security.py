"""
The SIP source defence's REST routes, mounted under ``/api/v1/security/``
(administrators only):

- ``GET /bans``: the bans in force (address, since, until, seconds left,
  the how-many-th ban, why);
- ``DELETE /bans/<address>``: lift a ban and forget the source's score and
  past bans (404 if it is not banned);
- ``GET /scores``: threat scores above zero, highest first;
- ``GET /allow``, ``PUT /allow`` (``{"allow": ["192.0.2.0/24", ...]}``): the
  allow-list in effect until the next start (the config file's
  ``security.allow`` is the lasting one).

Changes are written to the audit trail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from klein import Klein
from twisted.internet.defer import Deferred
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
from pbx.records import AuditEvent
from pbx.security.interfaces import ISourceDefence

__all__ = ["SecurityAPI", "openapi_paths"]

#: Most allow-list entries accepted in one PUT.
MAX_ALLOW = 1000


class SecurityAPI:
    """
    The routes, relative to the mount point.

    :param defence: the SIP source defence.
    :param authenticate: the API's bearer-token check.
    :param audit: writes one audit event.
    :param clock: for event times and seconds left.
    """

    app = Klein()
    log = Logger()

    def __init__(
        self,
        defence: ISourceDefence,
        authenticate: Callable[[IRequest], Session],
        audit: Callable[[AuditEvent], Deferred[Any]],
        clock: IReactorTime,
    ) -> None:
        self._defence = defence
        self._authenticate = authenticate
        self._audit = audit
        self._clock = clock

    def resource(self) -> Any:
        """The Klein resource to mount."""
        return self.app.resource()

    add_json_errors(app, "security API")

    def _admin(self, request: IRequest) -> str:
        return admin_name(self._authenticate(request))

    async def _record(self, request: IRequest, kind: str, subject: str, admin: str) -> None:
        await self._audit(AuditEvent(self._clock.seconds(), kind, subject, client_host(request), admin))

    @app.route("/bans", methods=["GET"])
    def bans(self, request: IRequest) -> bytes:
        """The bans in force, soonest end first."""
        self._admin(request)
        now = self._clock.seconds()
        return json_body(request, 200, {"bans": [
            {"address": b.host, "since": b.since, "until": b.until, "remaining": round(b.until - now),
             "strikes": b.strikes, "reason": b.reason}
            for b in self._defence.bans()
        ]})

    @app.route("/bans/<address>", methods=["DELETE"])
    async def unban(self, request: IRequest, address: str) -> bytes:
        """Lift one ban."""
        admin = self._admin(request)
        if not self._defence.unban(address):
            raise APIError(404, f"{address} is not banned")
        await self._record(request, "security.unban", address, admin)
        return json_body(request, 200, {"unbanned": address})

    @app.route("/scores", methods=["GET"])
    def scores(self, request: IRequest) -> bytes:
        """Sources with a threat score, highest first."""
        self._admin(request)
        return json_body(request, 200, {"scores": [
            {"address": host, "score": score} for host, score in self._defence.scores()
        ]})

    @app.route("/allow", methods=["GET"])
    def allow(self, request: IRequest) -> bytes:
        """The allow-list in effect."""
        self._admin(request)
        return json_body(request, 200, {"allow": self._defence.allow_list()})

    @app.route("/allow", methods=["PUT"])
    async def set_allow(self, request: IRequest) -> bytes:
        """Replace the allow-list (until the next start)."""
        admin = self._admin(request)
        body = read_json(request)
        if set(body) != {"allow"}:
            raise APIError(422, 'the body must be {"allow": [networks]}')
        networks = body["allow"]
        if not isinstance(networks, list) or not all(isinstance(n, str) for n in networks):
            raise APIError(422, "allow must be a list of strings")
        if len(networks) > MAX_ALLOW:
            raise APIError(422, f"allow holds more than {MAX_ALLOW} networks")
        try:
            self._defence.set_allow_list(networks)
        except ValueError as e:
            raise APIError(422, str(e)) from None
        allow = self._defence.allow_list()
        await self._record(request, "security.allow", ", ".join(allow)[:500], admin)
        return json_body(request, 200, {"allow": allow})


def openapi_paths(prefix: str = "/api/v1/security") -> dict[str, Any]:
    """The OpenAPI ``paths`` these routes add, keyed by full path."""
    errors = {"401": error_response("Not logged in"), "403": error_response("Administrators only")}
    address = {"name": "address", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        f"{prefix}/bans": {
            "get": {"summary": "SIP sources banned now",
                    "responses": {"200": object_response("The bans, soonest end first"), **errors}},
        },
        f"{prefix}/bans/{{address}}": {
            "parameters": [address],
            "delete": {"summary": "Lift a ban and forget the source's score",
                       "responses": {"200": object_response("Lifted"), "404": error_response("Not banned"), **errors}},
        },
        f"{prefix}/scores": {
            "get": {"summary": "SIP sources' threat scores",
                    "responses": {"200": object_response("Scores above zero, highest first"), **errors}},
        },
        f"{prefix}/allow": {
            "get": {"summary": "Networks never rate-limited or banned",
                    "responses": {"200": object_response("The allow-list"), **errors}},
            "put": {"summary": "Replace the allow-list until the next start",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["allow"],
                        "properties": {"allow": {"type": "array", "items": {"type": "string"}}}}}}},
                    "responses": {"200": object_response("The new allow-list"),
                                  "422": error_response("Not a list of networks"), **errors}},
        },
    }
