"""
The voicemail REST API, mounted under ``/api/v1/voicemail/``.

Users (logged in with their extension number and voicemail PIN) reach their
own mailbox only; administrators reach every mailbox.  Every change goes
through :class:`Voicemail`, which announces new counts to the phones.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from typing import Any

from klein import Klein
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from pbx.api.http import APIError, add_json_errors, json_body, read_json
from pbx.features.voicemail.mailbox import FOLDERS, GREETINGS, Message, Voicemail
from pbx.features.voicemail.spool import read_file, unlink, write_new_file
from pbx.media.wav import load_wav

__all__ = ["MAX_GREETING_SECONDS", "OPENAPI_PATHS", "VoicemailAPI"]

MAX_GREETING_SECONDS = 300
_WAV_TYPES = {b"audio/wav", b"audio/x-wav", b"audio/wave", b"audio/vnd.wave"}


def message_json(message: Message) -> dict[str, Any]:
    """What the API shows of a message."""
    return {
        "id": message.id,
        "mailbox": message.mailbox,
        "folder": message.folder,
        "caller": message.caller,
        "caller_name": message.caller_name,
        "received": message.received,
        "duration": message.duration,
        "transcript": message.transcript,
        "confidence": message.confidence,
        "emailed": message.emailed,
        "forwarded_by": message.forwarded_by,
    }


def _check_greeting(path: str) -> None:
    """Refuse anything but mono 16-bit PCM at 8 or 16 kHz (blocking)."""
    audio = load_wav(path, MAX_GREETING_SECONDS)
    if audio.channels != 1:
        raise ValueError("a greeting must be mono")
    if not len(audio.samples):
        raise ValueError("the recording is empty")


class VoicemailAPI:
    """
    The routes, relative to the mount point ``/api/v1/voicemail/``.

    :param voicemail: the mailboxes.
    :param authenticate: :meth:`IPBX.authenticate`: the session of a request
        (``role``, ``extension``) or :class:`APIError` 401.
    """

    app = Klein()
    log = Logger()

    def __init__(
        self, voicemail: Voicemail, authenticate: Callable[[IRequest], Any]
    ) -> None:
        self.voicemail = voicemail
        self._authenticate = authenticate

    def resource(self) -> Any:
        """The resource to mount."""
        return self.app.resource()

    add_json_errors(app, "voicemail API")

    # -- helpers -----------------------------------------------------------

    async def _mailbox(self, request: IRequest, mailbox: str) -> Any:
        """Authenticate; the session may use ``mailbox``, which exists."""
        session = self._authenticate(request)
        if session.role != "admin" and session.extension != mailbox:
            raise APIError(403, "not your mailbox")
        if not await self.voicemail.exists(mailbox):
            raise APIError(404, f"no mailbox {mailbox}")
        return session

    async def _message(
        self, request: IRequest, mailbox: str, message_id: str
    ) -> Message:
        await self._mailbox(request, mailbox)
        message = await self.voicemail.get(mailbox, message_id)
        if message is None:
            raise APIError(404, f"no message {message_id}")
        return message

    @staticmethod
    def _args(request: IRequest, allowed: set[str]) -> dict[str, str]:
        args = {
            k.decode("latin-1"): v[-1].decode("utf-8", "replace")
            for k, v in (request.args or {}).items()
        }
        unknown = sorted(set(args) - allowed)
        if unknown:
            raise APIError(400, f"unknown query parameter: {unknown[0]}")
        return args

    @staticmethod
    def _greeting_kind(kind: str) -> str:
        if kind not in GREETINGS:
            raise APIError(404, f"no greeting {kind!r}; use {', '.join(GREETINGS)}")
        return kind

    # -- routes ------------------------------------------------------------

    @app.route("/search", methods=["GET"])
    async def search(self, request: IRequest) -> bytes:
        """Messages whose transcript or caller matches ``q``: every mailbox for admins."""
        session = self._authenticate(request)
        text = self._args(request, {"q"}).get("q", "").strip()
        if not text:
            raise APIError(400, "q is required")
        if len(text) > 200:
            raise APIError(400, "q is longer than 200 characters")
        mailbox = None if session.role == "admin" else session.extension
        if mailbox == "":
            raise APIError(403, "no mailbox for this session")
        found = await self.voicemail.search(text, mailbox)
        return json_body(request, 200, {"messages": [message_json(m) for m in found]})

    @app.route("/<mailbox>", methods=["GET"])
    async def summary(self, request: IRequest, mailbox: str) -> bytes:
        """Message counts and which greetings are recorded."""
        await self._mailbox(request, mailbox)
        new, old = await self.voicemail.counts(mailbox)
        greetings = {
            kind: self.voicemail.greeting_path(mailbox, kind) is not None
            for kind in GREETINGS
        }
        return json_body(
            request,
            200,
            {"mailbox": mailbox, "new": new, "old": old, "greetings": greetings},
        )

    @app.route("/<mailbox>/messages", methods=["GET"])
    async def list_messages(self, request: IRequest, mailbox: str) -> bytes:
        """The messages of a mailbox, new first; ``folder`` and ``q`` filter."""
        await self._mailbox(request, mailbox)
        args = self._args(request, {"folder", "q"})
        folder = args.get("folder")
        if folder is not None and folder not in FOLDERS:
            raise APIError(400, "folder must be new or old")
        text = args.get("q", "").strip()
        if text:
            found = [
                m
                for m in await self.voicemail.search(text, mailbox)
                if folder is None or m.folder == folder
            ]
        else:
            found = await self.voicemail.messages(mailbox, folder)
        return json_body(request, 200, {"messages": [message_json(m) for m in found]})

    @app.route("/<mailbox>/messages/<message_id>", methods=["GET"])
    async def get_message(
        self, request: IRequest, mailbox: str, message_id: str
    ) -> bytes:
        """One message."""
        message = await self._message(request, mailbox, message_id)
        return json_body(request, 200, message_json(message))

    @app.route("/<mailbox>/messages/<message_id>/audio", methods=["GET"])
    async def audio(self, request: IRequest, mailbox: str, message_id: str) -> bytes:
        """The recording, as ``audio/wav``."""
        message = await self._message(request, mailbox, message_id)
        data = await self.voicemail.in_thread(read_file, message.path)
        if data is None:
            raise APIError(404, f"the recording of {message_id} is missing")
        request.setHeader(b"Content-Type", b"audio/wav")
        request.setHeader(
            b"Content-Disposition", f'attachment; filename="{message_id}.wav"'.encode()
        )
        return bytes(data)

    @app.route("/<mailbox>/messages/<message_id>", methods=["PATCH"])
    async def update_message(
        self, request: IRequest, mailbox: str, message_id: str
    ) -> bytes:
        """Move a message to ``folder`` (``old`` marks it heard)."""
        await self._message(request, mailbox, message_id)
        body = read_json(request)
        unknown = sorted(set(body) - {"folder"})
        if unknown:
            raise APIError(422, f"unknown field: {unknown[0]}")
        folder = body.get("folder")
        if folder not in FOLDERS:
            raise APIError(422, "folder must be new or old")
        await self.voicemail.mark(mailbox, message_id, folder)
        message = await self.voicemail.get(mailbox, message_id)
        if message is None:
            raise APIError(404, f"no message {message_id}")
        return json_body(request, 200, message_json(message))

    @app.route("/<mailbox>/messages/<message_id>", methods=["DELETE"])
    async def delete_message(
        self, request: IRequest, mailbox: str, message_id: str
    ) -> bytes:
        """Delete a message and its recording."""
        await self._message(request, mailbox, message_id)
        await self.voicemail.delete(mailbox, message_id)
        request.setResponseCode(204)
        return b""

    @app.route("/<mailbox>/greetings/<kind>", methods=["GET"])
    async def get_greeting(self, request: IRequest, mailbox: str, kind: str) -> bytes:
        """A recorded greeting, as ``audio/wav``."""
        await self._mailbox(request, mailbox)
        path = self.voicemail.greeting_path(mailbox, self._greeting_kind(kind))
        data = None if path is None else await self.voicemail.in_thread(read_file, path)
        if data is None:
            raise APIError(404, f"no {kind} greeting recorded")
        request.setHeader(b"Content-Type", b"audio/wav")
        return bytes(data)

    @app.route("/<mailbox>/greetings/<kind>", methods=["PUT"])
    async def put_greeting(self, request: IRequest, mailbox: str, kind: str) -> bytes:
        """Replace a greeting with the ``audio/wav`` body (mono, 16-bit, 8 or 16 kHz)."""
        await self._mailbox(request, mailbox)
        self._greeting_kind(kind)
        ctype = (
            (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        )
        if ctype not in _WAV_TYPES:
            raise APIError(415, "send the greeting as audio/wav")
        data = request.content.read() if request.content is not None else b""
        if not data:
            raise APIError(400, "the body is empty")
        path = os.path.join(
            self.voicemail.spool, "tmp", f"{mailbox}.{secrets.token_hex(8)}.wav"
        )
        try:
            await self.voicemail.in_thread(write_new_file, path, data)
            try:
                await self.voicemail.in_thread(_check_greeting, path)
            except ValueError as e:
                raise APIError(
                    400, f"not a usable greeting: {str(e).replace(path + ': ', '')}"
                ) from None
            await self.voicemail.save_greeting(mailbox, kind, path)
        finally:
            await self.voicemail.in_thread(unlink, path)
        return json_body(
            request, 200, {"mailbox": mailbox, "greeting": kind, "bytes": len(data)}
        )

    @app.route("/<mailbox>/greetings/<kind>", methods=["DELETE"])
    async def delete_greeting(
        self, request: IRequest, mailbox: str, kind: str
    ) -> bytes:
        """Remove a greeting (the standard one plays instead)."""
        await self._mailbox(request, mailbox)
        if not await self.voicemail.delete_greeting(mailbox, self._greeting_kind(kind)):
            raise APIError(404, f"no {kind} greeting recorded")
        request.setResponseCode(204)
        return b""


# -- OpenAPI ---------------------------------------------------------------


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }


_ERROR = {"$ref": "#/components/schemas/Error"}
_ERRORS = {
    "401": _json(_ERROR, "Not logged in, or the token expired"),
    "403": _json(_ERROR, "Not your mailbox"),
    "404": _json(_ERROR, "No such mailbox, message or greeting"),
}
_MESSAGE = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "mailbox": {"type": "string"},
        "folder": {"enum": list(FOLDERS)},
        "caller": {"type": "string"},
        "caller_name": {"type": "string"},
        "received": {"type": "number"},
        "duration": {"type": "number"},
        "transcript": {"type": "string"},
        "confidence": {"type": ["number", "null"]},
        "emailed": {"type": "boolean"},
        "forwarded_by": {"type": "string"},
    },
}
_MESSAGES = {
    "type": "object",
    "properties": {"messages": {"type": "array", "items": _MESSAGE}},
}
_WAV = {
    "description": "The recording",
    "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}},
}
_NO_CONTENT = {"description": "Done"}
_SECURE: list[dict[str, list[str]]] = [{"bearer": []}]


def _param(
    name: str, where: str = "path", pattern: str | None = None, **extra: Any
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", **extra}
    if pattern:
        schema["pattern"] = pattern
    return {"name": name, "in": where, "required": where == "path", "schema": schema}


_MAILBOX = _param("mailbox", pattern="^[0-9]{2,10}$")
_ID = _param("message_id", pattern="^[0-9]{13}-[0-9a-f]{6}$")
_KIND = _param("kind", enum=list(GREETINGS))


def _op(
    summary: str, ok: dict[str, Any], status: str = "200", **extra: Any
) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": _SECURE,
        "responses": {status: ok, **_ERRORS},
        **extra,
    }


_BASE = "/api/v1/voicemail"
OPENAPI_PATHS: dict[str, Any] = {
    f"{_BASE}/search": {
        "get": _op(
            "Search transcripts and callers (admins: every mailbox)",
            _json(_MESSAGES, "Matches"),
            parameters=[_param("q", "query")],
        ),
    },
    f"{_BASE}/{{mailbox}}": {
        "parameters": [_MAILBOX],
        "get": _op(
            "Message counts and recorded greetings",
            _json({"type": "object"}, "The mailbox"),
        ),
    },
    f"{_BASE}/{{mailbox}}/messages": {
        "parameters": [_MAILBOX],
        "get": _op(
            "Messages, new first",
            _json(_MESSAGES, "Messages"),
            parameters=[
                _param("folder", "query", enum=list(FOLDERS)),
                _param("q", "query"),
            ],
        ),
    },
    f"{_BASE}/{{mailbox}}/messages/{{message_id}}": {
        "parameters": [_MAILBOX, _ID],
        "get": _op("One message", _json(_MESSAGE, "The message")),
        "patch": _op(
            "Move to a folder (old: heard)",
            _json(_MESSAGE, "The message"),
            requestBody={
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"folder": {"enum": list(FOLDERS)}},
                        }
                    }
                },
            },
        ),
        "delete": _op("Delete the message and its recording", _NO_CONTENT, "204"),
    },
    f"{_BASE}/{{mailbox}}/messages/{{message_id}}/audio": {
        "parameters": [_MAILBOX, _ID],
        "get": _op("The recording", _WAV),
    },
    f"{_BASE}/{{mailbox}}/greetings/{{kind}}": {
        "parameters": [_MAILBOX, _KIND],
        "get": _op("A recorded greeting", _WAV),
        "put": _op(
            "Replace a greeting (mono 16-bit PCM WAV, 8 or 16 kHz)",
            _json({"type": "object"}, "Saved"),
            requestBody={
                "required": True,
                "content": {
                    "audio/wav": {"schema": {"type": "string", "format": "binary"}}
                },
            },
        ),
        "delete": _op("Remove a greeting", _NO_CONTENT, "204"),
    },
}
