"""
The ring groups' REST routes, mounted under ``/api/v1/groups/``:

- ``GET /`` (administrators): every group with its settings and who of its
  members is logged in;
- ``GET /<name>`` (administrators): one group;
- ``POST /<name>/members/<number>``: the member logs in to the group (its
  calls ring that member again); ``DELETE`` the same path: it logs out.
  An administrator may do this for any member, a user for their own
  extension only.

Who is logged out is kept in the store, so it lasts over a restart.  Every
change is audited.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from pbx.api.http import APIError, add_json_errors, admin_name, client_host, json_body
from pbx.api.openapi import error_response, object_response
from pbx.api.tokens import Session
from pbx.calls.groups import MEMBERSHIP_KIND, GroupDirectory, RingGroup
from pbx.interfaces import IStore
from pbx.records import AuditEvent

__all__ = ["GroupsAPI", "openapi_paths"]


class GroupsAPI:
    """
    The routes, relative to the mount point.

    :param directory: the groups and their members' logins.
    :param authenticate: the API's bearer-token check.
    :param store: where logins and audit events are written.
    :param clock: for event times.
    """

    app = Klein()
    log = Logger()

    def __init__(
        self,
        directory: GroupDirectory,
        authenticate: Callable[[IRequest], Session],
        store: IStore,
        clock: IReactorTime,
    ) -> None:
        self._directory = directory
        self._authenticate = authenticate
        self._store = store
        self._clock = clock

    def resource(self) -> Any:
        """The Klein resource to mount."""
        return self.app.resource()

    add_json_errors(app, "groups API")

    def _group(self, name: str) -> RingGroup:
        group = self._directory.groups.get(name)
        if group is None:
            raise APIError(404, f"no group {name!r}")
        return group

    def _json(self, group: RingGroup) -> dict[str, Any]:
        return {**group.summary(), "logged_in": self._directory.logged_in(group)}

    @app.route("/", methods=["GET"])
    def groups(self, request: IRequest) -> bytes:
        """Every group, by name."""
        admin_name(self._authenticate(request))
        return json_body(
            request,
            200,
            {
                "groups": [
                    self._json(g) for _, g in sorted(self._directory.groups.items())
                ]
            },
        )

    @app.route("/<name>", methods=["GET"])
    def group(self, request: IRequest, name: str) -> bytes:
        """One group."""
        admin_name(self._authenticate(request))
        return json_body(request, 200, self._json(self._group(name)))

    @app.route("/<name>/members/<number>", methods=["POST"])
    async def log_in(self, request: IRequest, name: str, number: str) -> bytes:
        """The member logs in to the group."""
        return await self._change(request, name, number, True)

    @app.route("/<name>/members/<number>", methods=["DELETE"])
    async def log_out(self, request: IRequest, name: str, number: str) -> bytes:
        """The member logs out of the group."""
        return await self._change(request, name, number, False)

    async def _change(
        self, request: IRequest, name: str, number: str, logged_in: bool
    ) -> bytes:
        session = self._authenticate(request)
        if session.role != "admin" and session.extension != number:
            raise APIError(
                403, "users log in and out of groups as their own extension only"
            )
        group = self._group(name)
        if number not in group.members:
            raise APIError(404, f"{number!r} is not a member of group {name!r}")
        await self._store.put_item(
            MEMBERSHIP_KIND, name, number, {"logged_in": logged_in}
        )
        self._directory.set_logged_in(name, number, logged_in)
        kind = "groups.login" if logged_in else "groups.logout"
        await self._store.add_audit(
            AuditEvent(
                self._clock.seconds(),
                kind,
                f"{name}/{number}",
                client_host(request),
                session.username,
            )
        )
        return json_body(request, 200, self._json(group))


def openapi_paths(prefix: str = "/api/v1/groups") -> dict[str, Any]:
    """The OpenAPI ``paths`` these routes add, keyed by full path."""
    errors = {
        "401": error_response("Not logged in"),
        "403": error_response("Not allowed for this session"),
    }
    name = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    number = {
        "name": "number",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    change = {
        "200": object_response("The group, with who is logged in"),
        "404": error_response("No such group, or not a member of it"),
        **errors,
    }
    return {
        f"{prefix}/": {
            "get": {
                "summary": "Ring groups (administrators)",
                "responses": {
                    "200": object_response("Every group, with who is logged in"),
                    **errors,
                },
            },
        },
        f"{prefix}/{{name}}": {
            "parameters": [name],
            "get": {
                "summary": "One ring group (administrators)",
                "responses": {
                    "200": object_response("The group"),
                    "404": error_response("No such group"),
                    **errors,
                },
            },
        },
        f"{prefix}/{{name}}/members/{{number}}": {
            "parameters": [name, number],
            "post": {
                "summary": "Log a member in to a group (an administrator, or the member itself)",
                "responses": change,
            },
            "delete": {
                "summary": "Log a member out of a group (an administrator, or the member itself)",
                "responses": change,
            },
        },
    }
