"""
The park slots' REST route, mounted under ``/api/v1/park/``:

- ``GET /`` (administrators and users alike: the lot is what every phone
  may dial): the occupied slots, each with the parked party, the parker,
  since when, and who a recall is ringing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from klein import Klein
from twisted.web.iweb import IRequest

from pbx.api.http import add_json_errors, json_body
from pbx.api.openapi import error_response, object_response
from pbx.api.tokens import Session

__all__ = ["ParkAPI", "openapi_paths"]


class ParkAPI:
    """
    The routes, relative to the mount point.

    :param occupied: the occupied slots now
        (:meth:`pbx.calls.park.ParkingLot.occupied`).
    :param slots: every slot.
    :param authenticate: the API's bearer-token check.
    """

    app = Klein()

    def __init__(
        self,
        occupied: Callable[[], list[dict[str, Any]]],
        slots: Sequence[str],
        authenticate: Callable[[IRequest], Session],
    ) -> None:
        self._occupied = occupied
        self._slots = list(slots)
        self._authenticate = authenticate

    def resource(self) -> Any:
        """The Klein resource to mount."""
        return self.app.resource()

    add_json_errors(app, "park API")

    @app.route("/", methods=["GET"])
    def slots(self, request: IRequest) -> bytes:
        """The occupied slots and every slot there is."""
        self._authenticate(request)
        return json_body(
            request,
            200,
            {"occupied": self._occupied(), "slots": self._slots},
        )


def openapi_paths(prefix: str = "/api/v1/park") -> dict[str, Any]:
    """The OpenAPI ``paths`` this route adds, keyed by full path."""
    return {
        f"{prefix}/": {
            "get": {
                "summary": "Occupied park slots",
                "responses": {
                    "200": object_response("The occupied slots and every slot"),
                    "401": error_response("Not logged in"),
                },
            },
        },
    }
