"""
The pages a person opens on the API port: a home page (what this is, a
login, the status) and the API reference rendered from the OpenAPI
document. Plain files shipped in the package (``pbx/api/static``), read
once, served with a Content-Security-Policy that allows no inline script.
"""

from __future__ import annotations

import html
from importlib.resources import files

from attrs import frozen

from twisted.web.iweb import IRequest

from pbx.api.http import APIError

#: The policy of the HTML pages: scripts, styles and fetches from this
#: origin only, never inline; forms never submit (the script posts JSON).
PAGE_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    b"img-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)

_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".svg": b"image/svg+xml",
}


@frozen
class StaticFile:
    """One packaged file, ready to send."""

    body: bytes
    content_type: bytes


def load_static(version: str) -> dict[str, StaticFile]:
    """
    Every file of ``pbx/api/static`` by name; ``{{version}}`` in the HTML
    files becomes ``version``, escaped.
    """
    loaded = {}
    for item in files("pbx.api").joinpath("static").iterdir():
        suffix = "." + item.name.rpartition(".")[2]
        if suffix not in _TYPES:
            continue
        body = item.read_bytes()
        if suffix == ".html":
            body = body.replace(b"{{version}}", html.escape(version).encode())
        loaded[item.name] = StaticFile(body, _TYPES[suffix])
    return loaded


class Pages:
    """
    Answers for the browser routes of :class:`pbx.api.app.PBXApi`.

    :param version: shown on the pages.
    """

    def __init__(self, version: str) -> None:
        self._files = load_static(version)

    def page(self, request: IRequest, name: str) -> bytes:
        """An HTML page, with the strict page policy."""
        request.setHeader(b"Content-Security-Policy", PAGE_POLICY)
        return self._send(request, self._files[name])

    def asset(self, request: IRequest, name: str) -> bytes:
        """
        A script or style sheet the pages load.

        :raises APIError: 404 for any other name.
        """
        found = self._files.get(name)
        if found is None or name.endswith(".html"):
            raise APIError(404, "no such resource")
        return self._send(request, found)

    @staticmethod
    def _send(request: IRequest, found: StaticFile) -> bytes:
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", found.content_type)
        return found.body
