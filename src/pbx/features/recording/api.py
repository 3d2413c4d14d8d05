"""
The recordings REST API, mounted under ``/api/v1/recordings/``.

A user (logged in with an extension number and PIN) sees the recordings of
calls that extension was in, and may start, stop, pause and resume the
recording of its own live calls; an administrator reaches every recording
and call.  Deleting is for administrators, and for the user who started a
recording on demand.
"""

from __future__ import annotations

from typing import Any, Protocol

from klein import Klein
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from pbx.api.http import APIError, add_json_errors, json_body
from pbx.api.openapi import error_response, object_response
from pbx.features.recording.errors import NotRecording
from pbx.interfaces import IPBX

__all__ = ["RecordingAPI", "openapi_paths"]


class LiveRecordings(Protocol):
    """What the API uses of :class:`pbx.features.recording.service.RecordingService`."""

    library: Any

    def live(self, call_id: str) -> tuple[Any, Any]:
        """The live call's tap and watch; :raises NotRecording: 404."""

    def start(self, call_id: str, started_by: str) -> dict[str, Any]:
        """Start recording a live call."""

    async def stop(self, call_id: str) -> dict[str, Any] | None:
        """Stop recording a live call; its final metadata."""

    def pause(self, call_id: str, pause: bool) -> dict[str, Any]:
        """Pause or resume a live call's recording."""


_FILTERS = {"caller", "callee", "party", "call_id", "status", "since", "until"}
_TEXT_FILTERS = ("caller", "callee", "call_id", "status")


class RecordingAPI:
    """
    The routes, relative to the mount point ``/api/v1/recordings/``.

    :param pbx: the running PBX (authentication).
    :param service: the recording service (recordings and live calls).
    """

    app = Klein()
    log = Logger()

    def __init__(self, pbx: IPBX, service: LiveRecordings) -> None:
        self._pbx = pbx
        self._service = service

    def resource(self) -> Any:
        """The resource to mount."""
        return self.app.resource()

    def _library(self) -> Any:
        library = self._service.library
        if library is None:
            raise APIError(503, "recording is starting")
        return library

    @staticmethod
    def _args(request: IRequest) -> dict[str, str]:
        args = {
            k.decode("latin-1"): v[-1].decode("utf-8", "replace")
            for k, v in (request.args or {}).items()
        }
        unknown = sorted(set(args) - _FILTERS)
        if unknown:
            raise APIError(400, f"unknown query parameter: {unknown[0]}")
        return args

    async def _recording(
        self, request: IRequest, recording_id: str
    ) -> tuple[Any, dict[str, Any]]:
        session = self._pbx.authenticate(request)
        meta = await self._library().get(recording_id)
        if meta is None:
            raise APIError(404, f"no recording {recording_id}")
        if session.role != "admin" and session.extension not in (
            meta["caller"],
            meta["callee"],
        ):
            # Not found rather than forbidden: a user learns nothing of others' calls.
            raise APIError(404, f"no recording {recording_id}")
        return session, meta

    # -- routes ------------------------------------------------------------

    add_json_errors(app, "recordings API")

    @app.route("/", methods=["GET"])
    async def list_recordings(self, request: IRequest) -> bytes:
        """The recordings this session may see, newest first; the query filters them."""
        session = self._pbx.authenticate(request)
        args = self._args(request)
        bounds = {}
        for key in ("since", "until"):
            if key in args:
                try:
                    bounds[key] = float(args[key])
                except ValueError:
                    raise APIError(
                        400, f"{key} must be a time in seconds since the epoch"
                    ) from None
        party = None if session.role == "admin" else session.extension
        if party == "":
            raise APIError(403, "no extension for this session")
        found = await self._library().all(party)
        if "party" in args:
            found = [m for m in found if args["party"] in (m["caller"], m["callee"])]
        for key in _TEXT_FILTERS:
            if key in args:
                found = [m for m in found if str(m.get(key)) == args[key]]
        if "since" in bounds:
            found = [m for m in found if m["started"] >= bounds["since"]]
        if "until" in bounds:
            found = [m for m in found if m["started"] < bounds["until"]]
        return json_body(request, 200, {"recordings": [public(m) for m in found]})

    @app.route("/<recording_id>", methods=["GET"])
    async def get_recording(self, request: IRequest, recording_id: str) -> bytes:
        """One recording's metadata."""
        _, meta = await self._recording(request, recording_id)
        return json_body(request, 200, public(meta))

    @app.route("/<recording_id>/audio", methods=["GET"])
    async def audio(self, request: IRequest, recording_id: str) -> bytes:
        """The recording as ``audio/wav`` (409 while it is still being made)."""
        _, meta = await self._recording(request, recording_id)
        if meta["status"] == "recording":
            raise APIError(409, "the recording is still running")
        data = await self._library().audio(meta)
        if data is None:
            raise APIError(404, f"the audio of {recording_id} is missing")
        request.setHeader(b"Content-Type", b"audio/wav")
        request.setHeader(
            b"Content-Disposition",
            f'attachment; filename="{recording_id}.wav"'.encode(),
        )
        return bytes(data)

    @app.route("/<recording_id>", methods=["DELETE"])
    async def delete(self, request: IRequest, recording_id: str) -> bytes:
        """Delete a finished recording: administrators, or the user who started it on demand."""
        session, meta = await self._recording(request, recording_id)
        if session.role != "admin" and meta["started_by"] not in (
            f"api:{session.username}",
            f"keys:{session.extension}",
        ):
            raise APIError(
                403, "only an administrator deletes a recording someone else started"
            )
        if meta["status"] == "recording":
            raise APIError(409, "the recording is still running: stop it first")
        await self._library().delete(meta)
        request.setResponseCode(204)
        return b""

    @app.route(
        "/calls/<call_id>/<any(start, stop, pause, resume):action>", methods=["POST"]
    )
    async def live(self, request: IRequest, call_id: str, action: str) -> bytes:
        """Start, stop, pause (silence from now on) or resume the recording of a live call."""
        session = self._pbx.authenticate(request)
        service = self._service
        try:
            tap, _ = service.live(call_id)
            if session.role != "admin" and session.extension not in (
                tap.caller,
                tap.callee,
            ):
                raise APIError(404, f"no answered relayed call {call_id}")
            if action == "start":
                meta = service.start(call_id, f"api:{session.username}")
                return json_body(request, 201, public(meta))
            if action == "stop":
                stopped = await service.stop(call_id)
                if stopped is None:
                    raise APIError(500, "the recording could not be written")
                return json_body(request, 200, public(stopped))
            return json_body(
                request, 200, public(service.pause(call_id, action == "pause"))
            )
        except NotRecording as e:
            raise APIError(e.status, e.message) from None


def public(meta: dict[str, Any]) -> dict[str, Any]:
    """What the API shows of a recording's metadata."""
    return {k: v for k, v in meta.items() if k != "part"}


def openapi_paths(prefix: str = "/api/v1/recordings") -> dict[str, Any]:
    """The OpenAPI ``paths`` these routes add, keyed by full path."""
    errors = {
        "401": error_response("Not logged in"),
        "404": error_response("No such recording or call"),
    }
    rid = {
        "name": "recording_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]{13}-[0-9a-f]{8}$"},
    }
    call = {
        "name": "call_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    query = [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
        for name in sorted(_FILTERS)
    ]
    paths: dict[str, Any] = {
        f"{prefix}/": {
            "get": {
                "summary": "Recordings (a user: of its own calls), newest first",
                "parameters": query,
                "responses": {
                    "200": object_response("The recordings"),
                    "400": error_response("Bad filter"),
                    **errors,
                },
            }
        },
        f"{prefix}/{{recording_id}}": {
            "parameters": [rid],
            "get": {
                "summary": "One recording's metadata (parties, times, call id, format)",
                "responses": {"200": object_response("The recording"), **errors},
            },
            "delete": {
                "summary": "Delete a recording (administrators; a user: one it started)",
                "responses": {
                    "204": {"description": "Deleted"},
                    "403": error_response("Not yours to delete"),
                    "409": error_response("Still running"),
                    **errors,
                },
            },
        },
        f"{prefix}/{{recording_id}}/audio": {
            "parameters": [rid],
            "get": {
                "summary": "The recording as WAV (stereo: caller left, callee right)",
                "responses": {
                    "200": {
                        "description": "The audio",
                        "content": {
                            "audio/wav": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    "409": error_response("Still running"),
                    **errors,
                },
            },
        },
    }
    for action, summary in (
        ("start", "Start recording a live call"),
        ("stop", "Stop recording a live call"),
        ("pause", "Pause a recording: silence is recorded until resumed"),
        ("resume", "Resume a paused recording"),
    ):
        paths[f"{prefix}/calls/{{call_id}}/{action}"] = {
            "parameters": [call],
            "post": {
                "summary": summary,
                "responses": {
                    ("201" if action == "start" else "200"): object_response(
                        "The recording"
                    ),
                    "409": error_response("Not in a state for this"),
                    **errors,
                },
            },
        }
    return paths
