"""
The conference's REST routes, mounted under ``/api/v1/conference/``
(administrators only):

- ``GET /rooms``: every configured room with its settings (whether it has
  PINs, never the PINs) and its live state;
- ``GET /rooms/<room>``: one room;
- ``GET /rooms/<room>/participants``: who is in it;
- ``POST /rooms/<room>/lock``, ``POST /rooms/<room>/unlock``: only
  moderators may join a locked room (409 when nobody is in the room: a
  lock lasts as long as the meeting);
- ``POST /rooms/<room>/participants/<id>/mute`` and ``.../unmute``;
- ``DELETE /rooms/<room>/participants/<id>``: hang up (kick) a participant;
- ``POST /rooms/<room>/recording``: start recording the room (409 when it
  is recorded already or nobody is in it, 503 without the recording
  feature); ``DELETE /rooms/<room>/recording``: stop, answering with the
  finished recording's metadata (as ``/api/v1/recordings/`` lists it).

Every change is audited.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from pbx.api.http import APIError, add_json_errors, admin_name, client_host, json_body
from pbx.api.openapi import error_response, object_response
from pbx.features.conference.options import RoomOptions
from pbx.features.conference.room import Participant, Room, Rooms
from pbx.features.conference.taping import AlreadyRecording, NoRecorder, NotRecording
from pbx.interfaces import IPBX
from pbx.records import AuditEvent

__all__ = ["ConferenceAPI", "openapi_paths"]


class ConferenceAPI:
    """
    The routes, relative to the mount point.

    :param pbx: the running PBX (``authenticate``, ``store``, ``clock``).
    :param rooms: the rooms.
    """

    app = Klein()
    log = Logger()

    def __init__(self, pbx: IPBX, rooms: Rooms) -> None:
        self.pbx = pbx
        self.rooms = rooms

    def resource(self) -> Any:
        """The Klein resource to mount."""
        return self.app.resource()

    add_json_errors(app, "conference API")

    # -- helpers -----------------------------------------------------------

    def _admin(self, request: IRequest) -> str:
        """The administrator's username; 401 without a session, 403 for users."""
        return admin_name(self.pbx.authenticate(request))

    async def _audit(self, request: IRequest, kind: str, subject: str, username: str) -> None:
        await self.pbx.store.add_audit(
            AuditEvent(self.pbx.clock.seconds(), kind, subject, client_host(request), username)
        )

    def _options(self, number: str) -> RoomOptions:
        options = self.rooms.configured(number)
        if options is None:
            raise APIError(404, f"no room {number!r}")
        return options

    def _live(self, number: str) -> Room:
        self._options(number)
        room = self.rooms.live(number)
        if room is None:
            raise APIError(409, f"nobody is in room {number!r}")
        return room

    def _participant(self, number: str, participant_id: str) -> tuple[Room, Participant]:
        self._options(number)
        room = self.rooms.live(number)
        try:
            if room is None:
                raise KeyError(participant_id)
            return room, room.get(participant_id)
        except KeyError:
            raise APIError(404, f"no participant {participant_id!r} in room {number!r}") from None

    def _room(self, options: RoomOptions) -> dict[str, Any]:
        room = self.rooms.live(options.number)
        live = room.describe() if room is not None else {
            "participants": 0, "locked": False, "moderator_present": False, "sample_rate": None,
            "recording": None}
        return {
            "room": options.number,
            "pin": bool(options.pin),
            "moderator_pin": bool(options.moderator_pin),
            "moderators": sorted(options.moderators),
            "wait_for_moderator": options.wait_for_moderator,
            "end_with_moderator": options.end_with_moderator,
            "max_participants": options.max_participants,
            "record": options.record,
            **live,
        }

    # -- routes ------------------------------------------------------------

    @app.route("/rooms", methods=["GET"])
    def list_rooms(self, request: IRequest) -> bytes:
        """Every configured room and its live state."""
        self._admin(request)
        rooms = [self._room(o) for _, o in sorted(self.rooms.options.rooms.items())]
        return json_body(request, 200, {"rooms": rooms})

    @app.route("/rooms/<number>", methods=["GET"])
    def get_room(self, request: IRequest, number: str) -> bytes:
        """One room."""
        self._admin(request)
        return json_body(request, 200, self._room(self._options(number)))

    @app.route("/rooms/<number>/participants", methods=["GET"])
    def list_participants(self, request: IRequest, number: str) -> bytes:
        """Who is in the room."""
        self._admin(request)
        self._options(number)
        room = self.rooms.live(number)
        people = [p.describe() for p in room] if room is not None else []
        return json_body(request, 200, {"participants": people})

    @app.route("/rooms/<number>/<any(lock, unlock):action>", methods=["POST"])
    async def lock(self, request: IRequest, number: str, action: str) -> bytes:
        """Lock or unlock a room that someone is in."""
        username = self._admin(request)
        room = self._live(number)
        room.locked = action == "lock"
        self.log.info("conference {room}: {action}ed through the API by {user}", room=number,
                      action=action, user=username)
        await self._audit(request, f"conference.{action}", number, username)
        return json_body(request, 200, self._room(room.options))

    @app.route("/rooms/<number>/participants/<pid>/<any(mute, unmute):action>", methods=["POST"])
    async def mute(self, request: IRequest, number: str, pid: str, action: str) -> bytes:
        """Mute or unmute a participant."""
        username = self._admin(request)
        room, participant = self._participant(number, pid)
        room.set_muted(participant, action == "mute")
        await self._audit(request, f"conference.{action}", f"{number}/{pid}", username)
        return json_body(request, 200, participant.describe())

    @app.route("/rooms/<number>/participants/<pid>", methods=["DELETE"])
    async def kick(self, request: IRequest, number: str, pid: str) -> bytes:
        """Hang up a participant."""
        username = self._admin(request)
        room, participant = self._participant(number, pid)
        self.log.info("conference {room}: {caller} kicked through the API by {user}", room=number,
                      caller=participant.channel.caller or "anonymous", user=username)
        await room.kick(participant)
        await self._audit(request, "conference.kick", f"{number}/{pid}", username)
        return json_body(request, 200, {"kicked": pid})


    @app.route("/rooms/<number>/recording", methods=["POST", "DELETE"])
    async def recording(self, request: IRequest, number: str) -> bytes:
        """Start (POST) or stop (DELETE) recording a room that someone is in."""
        username = self._admin(request)
        room = self._live(number)
        if request.method == b"POST":
            try:
                tape = room.start_recording(f"api:{username}")
            except AlreadyRecording:
                raise APIError(409, f"room {number!r} is being recorded already") from None
            except NoRecorder:
                raise APIError(503, "the recording feature is not enabled") from None
            self.log.info("conference {room}: recording {id} started through the API by {user}",
                          room=number, id=tape.recording_id, user=username)
            await self._audit(request, "conference.record", number, username)
            return json_body(request, 201, {"room": number, "recording": tape.recording_id})
        try:
            finished = room.stop_recording()
        except NotRecording:
            raise APIError(409, f"room {number!r} is not being recorded") from None
        self.log.info("conference {room}: recording stopped through the API by {user}", room=number,
                      user=username)
        await self._audit(request, "conference.unrecord", number, username)
        meta = await finished
        if meta is None:
            raise APIError(500, "the recording could not be written")
        return json_body(request, 200, meta)


def openapi_paths(prefix: str = "/api/v1/conference") -> dict[str, Any]:
    """The OpenAPI ``paths`` these routes add, keyed by full path."""
    errors = {"401": error_response("Not logged in"), "403": error_response("Administrators only")}
    room = {"name": "room", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9]{1,20}$"}}
    pid = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    missing = {"404": error_response("No such room")}
    nobody = {"409": error_response("Nobody is in the room")}
    gone = {"404": error_response("No such room or participant")}
    paths: dict[str, Any] = {
        f"{prefix}/rooms": {
            "get": {"summary": "List the conference rooms with their live state",
                    "responses": {"200": object_response("The rooms"), **errors}},
        },
        f"{prefix}/rooms/{{room}}": {
            "parameters": [room],
            "get": {"summary": "One conference room", "responses": {"200": object_response("The room"), **missing, **errors}},
        },
        f"{prefix}/rooms/{{room}}/participants": {
            "parameters": [room],
            "get": {"summary": "Who is in a conference room",
                    "responses": {"200": object_response("The participants"), **missing, **errors}},
        },
    }
    for action in ("lock", "unlock"):
        paths[f"{prefix}/rooms/{{room}}/{action}"] = {
            "parameters": [room],
            "post": {"summary": f"{action.capitalize()} a conference room (moderators may still join a locked one)",
                     "responses": {"200": object_response("The room"), **missing, **nobody, **errors}},
        }
    for action in ("mute", "unmute"):
        paths[f"{prefix}/rooms/{{room}}/participants/{{id}}/{action}"] = {
            "parameters": [room, pid],
            "post": {"summary": f"{action.capitalize()} a participant",
                     "responses": {"200": object_response("The participant"), **gone, **errors}},
        }
    paths[f"{prefix}/rooms/{{room}}/participants/{{id}}"] = {
        "parameters": [room, pid],
        "delete": {"summary": "Hang up a participant",
                   "responses": {"200": object_response("Kicked"), **gone, **errors}},
    }
    paths[f"{prefix}/rooms/{{room}}/recording"] = {
        "parameters": [room],
        "post": {"summary": "Start recording a conference room (everyone hears the recording tone)",
                 "responses": {"201": object_response("The recording's id"), **missing,
                               "409": error_response("Nobody is in the room, or it is recorded already"),
                               "503": error_response("The recording feature is not enabled"), **errors}},
        "delete": {"summary": "Stop recording a conference room",
                   "responses": {"200": object_response("The finished recording"), **missing,
                                 "409": error_response("Nobody is in the room, or it is not recorded"),
                                 **errors}},
    }
    return paths
