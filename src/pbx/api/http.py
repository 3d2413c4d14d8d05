"""
HTTP plumbing shared by every API route: JSON answers, errors, security
headers and a cap on request bodies.
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug.exceptions import MethodNotAllowed, NotFound

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server
from twisted.web.iweb import IRequest

from pbx.api.limits import HeaderTimedChannel
from pbx.validation import MAX_JSON_DEPTH, json_problem

SECURITY_HEADERS = {
    b"X-Content-Type-Options": b"nosniff",
    b"X-Frame-Options": b"DENY",
    b"Content-Security-Policy": b"default-src 'none'; frame-ancestors 'none'",
    b"Referrer-Policy": b"no-referrer",
    b"Cache-Control": b"no-store",
}


class APIError(Exception):
    """An error the client caused, answered as ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict[bytes, bytes] | None = None):
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def client_host(request: IRequest) -> str:
    """The address a request came from, as audit events and lockouts name it."""
    peer = request.getClientAddress()
    return getattr(peer, "host", "") or str(peer)


def admin_name(session: Any) -> str:
    """An administrator session's username; 403 for a user's session."""
    if session.role != "admin":
        raise APIError(403, "administrators only")
    return str(session.username)


def json_body(request: IRequest, status: int, body: Any) -> bytes:
    """Set status and JSON content type on ``request``; return the encoded body."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def error_body(request: IRequest, error: APIError) -> bytes:
    """The JSON answer for an :class:`APIError`."""
    for name, value in error.headers.items():
        request.setHeader(name, value)
    return json_body(request, error.status, {"error": error.message})


def add_json_errors(app: Any, what: str) -> None:
    """
    Answer every error of the Klein ``app`` as JSON, the way the core API
    does: :class:`APIError` as itself, unknown paths 404, wrong methods 405
    with ``Allow``, anything else 500 with the traceback logged (never sent).
    Call it in the class body after any handlers of more specific errors:
    Klein tries handlers in the order they were added.

    :param what: names the API in the log line of a 500.
    """
    log = Logger(namespace=f"pbx.api.{what.replace(' ', '_')}")

    def api_error(_: Any, request: IRequest, failure: Failure) -> bytes:
        return error_body(request, failure.value)

    def not_found(_: Any, request: IRequest, failure: Failure) -> bytes:
        return error_body(request, APIError(404, "no such resource"))

    def bad_method(_: Any, request: IRequest, failure: Failure) -> bytes:
        allowed = ", ".join(failure.value.valid_methods or [])
        return error_body(request, APIError(405, "method not allowed", {b"Allow": allowed.encode()}))

    def internal(_: Any, request: IRequest, failure: Failure) -> bytes:
        log.failure("{what} {method} {path} failed", failure, what=what, method=request.method, path=request.path)
        return error_body(request, APIError(500, "internal error"))

    app.handle_errors(APIError)(api_error)
    app.handle_errors(NotFound)(not_found)
    app.handle_errors(MethodNotAllowed)(bad_method)
    app.handle_errors(Exception)(internal)


def read_json(request: IRequest) -> dict[str, Any]:
    """
    The request body as a JSON object.

    :raises APIError: 415 for another content type, 400 for bad JSON, a
        body that is not an object, one nested too deeply or one holding a
        lone surrogate (``"\\ud800"`` decodes, but is not text).
    """
    ctype = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if ctype != b"application/json":
        raise APIError(415, "send the body as application/json")
    raw = request.content.read() if request.content is not None else b""
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise APIError(400, "the body is not valid JSON") from None
    except RecursionError:
        raise APIError(400, f"the body is nested deeper than {MAX_JSON_DEPTH} levels") from None
    if not isinstance(value, dict):
        raise APIError(400, "the body must be a JSON object")
    problem = json_problem(value)
    if problem is not None:
        raise APIError(400, f"the body {problem}")
    return value


class HardenedResource(resource.Resource):
    """
    Wraps the API's (leaf) resource: every answer carries the security
    headers, and a body over ``max_body`` is refused with 413 JSON.
    """

    isLeaf = True

    def __init__(self, inner: resource.Resource, max_body: int) -> None:
        super().__init__()
        self._inner = inner
        self._max_body = max_body

    def render(self, request: Any) -> Any:  # noqa: D102 - twisted.web API
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        content = request.content
        if content is not None:
            size = content.seek(0, 2)
            content.seek(0)
            if size > self._max_body:
                return error_body(request, APIError(413, f"request body over {self._max_body} bytes"))
        return self._inner.render(request)


class CappedRequest(server.Request):
    """
    A request that refuses bodies over ``max_body`` bytes with 413 while
    they arrive, so a huge upload is never buffered.
    """

    max_body = 1024 * 1024
    _too_large = False
    _received = 0

    def gotLength(self, length: int | None) -> None:  # noqa: N802 - twisted.web API
        if length is not None and length > self.max_body:
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 - twisted.web API
        if self._too_large:
            return
        self._received += len(data)
        if self._received > self.max_body:
            self._refuse()
            return
        super().handleContentChunk(data)

    def _refuse(self) -> None:
        self._too_large = True
        body = json.dumps({"error": f"request body over {self.max_body} bytes"}).encode()
        head = [b"HTTP/1.1 413 Payload Too Large", b"Content-Type: application/json"]
        head += [b"%s: %s" % kv for kv in SECURITY_HEADERS.items()]
        head += [b"Content-Length: %d" % len(body), b"Connection: close", b"", b""]
        transport = self.channel.transport
        if transport is not None:
            transport.write(b"\r\n".join(head) + body)
            transport.loseConnection()


def make_site(
    root: Any,
    max_body: int,
    *,
    reactor: IReactorTime | None = None,
    idle_timeout: float = 60.0,
    header_timeout: float = 20.0,
) -> server.Site:
    """
    A Site serving ``root`` with capped, header-hardened requests.

    :param reactor: for the connections' timeouts.
    :param idle_timeout: seconds a connection may stay silent.
    :param header_timeout: seconds a request has to send its head
        (:class:`~pbx.api.limits.HeaderTimedChannel`).
    """

    class Request(CappedRequest):
        pass

    class Channel(HeaderTimedChannel):
        pass

    Request.max_body = max_body
    Channel.header_timeout = header_timeout
    site = server.Site(
        HardenedResource(root, max_body), requestFactory=Request, reactor=reactor, timeout=idle_timeout
    )
    site.protocol = Channel  # type: ignore[method-assign,assignment]  # a channel with no HTTP/2 switch
    site.displayTracebacks = False
    site.noisy = False
    return site
