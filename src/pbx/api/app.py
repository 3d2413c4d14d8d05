"""
The REST API under ``/api/v1``: Klein routes as methods of one class that
holds its dependencies.
"""

from __future__ import annotations

import csv
import io
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from attrs import asdict, evolve
from werkzeug.routing import BaseConverter, RequestRedirect

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from pbx import __version__
from pbx.api.admin_passwords import AdminPasswords
from pbx.api.http import (
    APIError,
    add_json_errors,
    admin_name,
    client_host,
    error_body,
    json_body,
    read_json,
)
from pbx.api.openapi import openapi_document
from pbx.api.pages import Pages
from pbx.api.tokens import Session, TokenStore
from pbx.interfaces import IPBX
from pbx.media.srtp_policy import srtp_policy_problem
from pbx.provisioning import extension_record
from pbx.records import AuditEvent, ExtensionRecord
from pbx.security.fips import library_state
from pbx.security.interfaces import ISecurityLog
from pbx.security.lockout import Lockout
from pbx.security.log_file import NoSecurityLog
from pbx.security.log_lines import Remote
from pbx.security.passwords import password_problem
from pbx.validation import (
    display_name_problem,
    email_problem,
    extension_number_problem,
    pin_format_problem,
)

Verifier = Callable[[str, str], Deferred[bool]]
#: Serves one ``/api/v1/extensions/<number>/<name>`` request: ``(request, number) -> body``;
#: it checks the session itself (a user may reach their own extension).
ExtensionPart = Callable[[IRequest, str], Awaitable[bytes]]
Hasher = Callable[[str], Deferred[str]]

_NUMBER = re.compile(r"[0-9]{2,10}")
_FORWARDS = ("forward_always", "forward_busy", "forward_no_answer")
_MOUNT = re.compile(r"[a-z][a-z0-9-]{0,30}")
#: Path segments the core API uses itself.
_CORE_SEGMENTS = {"auth", "docs", "openapi.json", "status", "extensions", "registrations", "calls", "cdr"}


class _FeatureConverter(BaseConverter):
    """A path segment naming a feature's API: never one the core uses itself."""

    regex = "(?!(?:" + "|".join(re.escape(c) for c in sorted(_CORE_SEGMENTS)) + ")(?:/|$))[a-z][a-z0-9-]{0,30}"


class PBXApi:
    """
    The ``/api/v1`` resource.

    :param pbx: the running PBX (store, config, clock, lockout, live calls).
    :param verify: checks a password against a PBKDF2 encoding; returns a
        Deferred so the work can run off the reactor thread.
    :param hasher: hashes a new PIN the same way.
    :param security_log: told of failed logins, for fail2ban (default: none).
    """

    app = Klein()
    app.url_map.converters["feature"] = _FeatureConverter
    log = Logger()

    def __init__(
        self, pbx: IPBX, verify: Verifier, hasher: Hasher, *, security_log: ISecurityLog | None = None
    ) -> None:
        self.pbx = pbx
        self._security_log = NoSecurityLog() if security_log is None else security_log
        self._verify = verify
        self._hash = hasher
        # A PBKDF2 encoding no password matches, verified for unknown users so
        # that they cost as much time as known ones; made on first need.
        self._dummy_hash: str | None = None
        self._mounts: dict[str, Any] = {}
        self._paths: dict[str, Any] = {}
        self._extension_parts: dict[str, ExtensionPart] = {}
        self.tokens = TokenStore(pbx.clock, lifetime=pbx.config.api.token_lifetime)
        # The PBX's one lockout, which voicemail PINs typed on a phone count in too.
        self.lockout: Lockout = pbx.lockout
        self._pages = Pages(__version__)
        security = pbx.config.security
        self.passwords = AdminPasswords(
            pbx.store, pbx.clock, security.password_min_length, security.password_max_age_days,
            frozenset(a.username for a in pbx.config.api.admins if a.password), verify, hasher,
        )

    def resource(self) -> Any:
        """The Klein resource to mount at the root of the API site."""
        return self.app.resource()

    # -- errors ------------------------------------------------------------

    @app.handle_errors(RequestRedirect)
    def _slash(self, request: IRequest, failure: Failure) -> bytes:
        # /api/v1/<name> without its slash: not a resource of its own.
        return error_body(request, APIError(404, "no such resource"))

    add_json_errors(app, "API request")

    # -- authentication ----------------------------------------------------

    def _client(self, request: IRequest) -> str:
        return client_host(request)

    def authenticate(self, request: IRequest, *, expired_ok: bool = False) -> Session:
        """
        The session of the bearer token presented (an admin's or a user's).

        :param expired_ok: a session whose password has expired will do
            (changing the password, logging out).
        :raises APIError: 401 without a live token; 403 for a session that
            must change its password first.
        """
        header = (request.getHeader(b"authorization") or b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise APIError(401, "log in first", {b"WWW-Authenticate": b'Bearer realm="pbx"'})
        session = self.tokens.check(token.strip())
        if session is None:
            raise APIError(401, "token expired or invalid", {b"WWW-Authenticate": b'Bearer realm="pbx", error="invalid_token"'})
        if session.must_change_password and not expired_ok:
            raise APIError(403, "password expired: change it with POST /api/v1/auth/password")
        return session

    def _authenticate(self, request: IRequest) -> str:
        """An administrator's session (403 for a user's); returns the username."""
        return admin_name(self.authenticate(request))

    # -- feature APIs ------------------------------------------------------

    def mount(self, name: str, resource: Any, paths: dict[str, Any]) -> None:
        """Serve a feature's resource under ``/api/v1/<name>/`` and document its paths."""
        if not _MOUNT.fullmatch(name) or name in _CORE_SEGMENTS or name in self._mounts:
            raise ValueError(f"cannot mount an API at /api/v1/{name}/")
        self._mounts[name] = resource
        self._paths.update(paths)

    @app.route("/api/v1/<feature:name>/", branch=True)
    def _mounted(self, request: IRequest, name: str) -> Any:
        """A feature's API (routes relative to its mount point)."""
        resource = self._mounts.get(name)
        if resource is None:
            raise APIError(404, "no such resource")
        return resource

    def mount_extension(self, name: str, handler: ExtensionPart, paths: dict[str, Any]) -> None:
        """Serve ``/api/v1/extensions/<number>/<name>`` with ``handler`` and document its paths."""
        if not _MOUNT.fullmatch(name) or name in self._extension_parts:
            raise ValueError(f"cannot mount an API at /api/v1/extensions/<number>/{name}")
        self._extension_parts[name] = handler
        self._paths.update(paths)

    @app.route("/api/v1/extensions/<number>/<feature:name>", methods=["GET", "PUT", "POST", "PATCH", "DELETE"])
    async def _extension_part(self, request: IRequest, number: str, name: str) -> bytes:
        """A part of one extension another module serves (its location ...)."""
        handler = self._extension_parts.get(name)
        if handler is None:
            raise APIError(404, "no such resource")
        return await handler(request, number)

    async def _audit(self, kind: str, subject: str, request: IRequest, detail: str = "") -> None:
        await self.pbx.store.add_audit(
            AuditEvent(self.pbx.clock.seconds(), kind, subject, self._client(request), detail)
        )

    @app.route("/api/v1/auth/login", methods=["POST"])
    async def login(self, request: IRequest) -> bytes:
        """
        Exchange credentials for a bearer token: an administrator's username
        and password, or an extension number and its voicemail PIN (a user).
        """
        body = read_json(request)
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise APIError(400, "username and password are required strings")
        if len(username) > 128 or len(password) > 1024:
            raise APIError(400, "username or password too long")
        ip = self._client(request)
        # Lockout per credential: every attempt counts against its user name
        # and, with a much higher threshold, against its address.  A locked
        # address stops PIN logins only: an administrator is locked by its
        # own failures, never by users' wrong PINs from the same address
        # (behind a reverse proxy every client shares one).
        admin = await self.pbx.store.get_admin(username)
        keys = (("user", username), ("ip", ip))
        for key in keys[:1] if admin is not None else keys:
            self._refuse_if_locked(key, "too many failed logins; try later")
        # An administrator, else a user: an extension number with its
        # voicemail PIN, who reaches only that extension's own resources.
        encoded, role = (admin.password_hash, "admin") if admin is not None else ("", "user")
        if admin is None and _NUMBER.fullmatch(username):
            record = await self.pbx.store.get_extension(username)
            if record is not None and record.enabled:
                encoded = record.pin_hash
        if not encoded and self._dummy_hash is None:
            self._dummy_hash = await self._hash(secrets.token_urlsafe(24))
        ok = await self._verify(password, encoded or self._dummy_hash or "")
        if not ok or not encoded:
            locked = self.lockout.record_failures(keys, what="API login", who=username, source=ip)
            peer = request.getClientAddress()
            remote = Remote(getattr(peer, "type", "TCP"), ip, getattr(peer, "port", 0))
            self._security_log.failed_login("API", username, remote, bool(encoded), "")
            await self._audit("api.login.failure", username, request)
            if locked:
                await self._audit("api.lockout", username, request, f"{locked:.0f}s")
            raise APIError(401, "wrong username or password")
        # Only the user's own count is forgiven: one good login must not wipe
        # what its address did under other names.
        self.lockout.record_success(keys[0])
        expired = role == "admin" and await self.passwords.expired(username)
        token, session = self.tokens.issue(username, role, "" if role == "admin" else username, expired)
        await self._audit("api.login", username, request, "password expired" if expired else "")
        return self._token_body(request, token, session)

    def _refuse_if_locked(self, key: tuple[str, str], message: str) -> None:
        """429 with Retry-After while ``key`` is locked out."""
        until = self.lockout.locked_until(key)
        if until is not None:
            wait = max(1, int(until - self.pbx.clock.seconds()))
            raise APIError(429, message, {b"Retry-After": str(wait).encode()})

    def _token_body(self, request: IRequest, token: str, session: Session) -> bytes:
        body = {"token": token, "token_type": "Bearer", "role": session.role,
                "expires_in": int(session.expires_at - self.pbx.clock.seconds())}
        if session.must_change_password:
            body["password_expired"] = True
        return json_body(request, 200, body)

    @app.route("/api/v1/auth/password", methods=["POST"])
    async def change_password(self, request: IRequest) -> bytes:
        """An administrator changes its own password; every session of it ends and a new one begins."""
        session = self.authenticate(request, expired_ok=True)
        username = admin_name(session)
        body = read_json(request)
        current, new = body.get("password"), body.get("new_password")
        if not isinstance(current, str) or not isinstance(new, str) or len(current) > 1024 or len(new) > 1024:
            raise APIError(400, "password and new_password are required strings (1024 characters at most)")
        self._refuse_if_locked(("user", username), "too many failed attempts; try later")
        if not await self.passwords.change(username, current, new):
            locked = self.lockout.record_failures((("user", username),), what="password change",
                                                  who=username, source=self._client(request))
            await self._audit("api.password.failure", username, request, f"locked {locked:.0f}s" if locked else "")
            raise APIError(403, "the current password is wrong")
        self.revoke_sessions(username)
        await self._audit("api.password", username, request)
        token, fresh = self.tokens.issue(username, "admin")
        return self._token_body(request, token, fresh)

    @app.route("/api/v1/auth/logout", methods=["POST"])
    def logout(self, request: IRequest) -> bytes:
        """End the session of the token presented (an administrator's or a user's own)."""
        self.authenticate(request, expired_ok=True)
        token = (request.getHeader(b"authorization") or b"").decode("latin-1").partition(" ")[2].strip()
        self.tokens.revoke(token)
        return json_body(request, 200, {"logged_out": True})

    def revoke_sessions(self, username: str) -> int:
        """
        End every session of ``username``: after its secret changed, or it
        was disabled or deleted.

        :returns: how many sessions ended.
        """
        ended = self.tokens.revoke_user(username)
        if ended:
            self.log.info("{count} API session(s) of {username!r} ended", count=ended, username=username)
        return ended

    # -- status and documents ---------------------------------------------

    @app.route("/api/v1/openapi.json", methods=["GET"])
    def openapi(self, request: IRequest) -> bytes:
        """The OpenAPI document of this API (no login needed)."""
        return json_body(request, 200, openapi_document(__version__, self._paths))

    @app.route("/api/v1/docs", methods=["GET"])
    def docs(self, request: IRequest) -> bytes:
        """The OpenAPI document rendered for people (an HTML page)."""
        return self._pages.page(request, "docs.html")

    # -- pages for a person's browser, outside the API -----------------------

    @app.route("/", methods=["GET"])
    def home(self, request: IRequest) -> bytes:
        """What this is, with a login and the status."""
        return self._pages.page(request, "index.html")

    @app.route("/admin", methods=["GET"])
    def admin(self, request: IRequest) -> bytes:
        """The home page holds what administration there is for now."""
        request.redirect(b"/")
        return b""

    @app.route("/static/<name>", methods=["GET"])
    def static(self, request: IRequest, name: str) -> bytes:
        """The scripts and style sheet of the pages."""
        return self._pages.asset(request, name)

    @app.route("/api/v1/status", methods=["GET"])
    async def status(self, request: IRequest) -> bytes:
        """Version, uptime, listeners and counts."""
        self._authenticate(request)
        extensions = await self.pbx.store.list_extensions()
        bindings = await self.pbx.store.list_bindings()
        return json_body(request, 200, {
            "version": __version__,
            "uptime": round(self.pbx.clock.seconds() - self.pbx.started_at, 3),
            "listeners": list(self.pbx.listeners),
            "features": sorted(self.pbx.features),
            "counts": {
                "extensions": len(extensions),
                "registrations": len(bindings),
                "calls": len(self.pbx.live_calls()),
            },
            "fips": {"enabled": self.pbx.config.security.fips, **library_state().summary()},
        })

    # -- extensions --------------------------------------------------------

    @staticmethod
    def _extension_json(record: ExtensionRecord) -> dict[str, Any]:
        return {
            "number": record.number,
            "name": record.name,
            "email": record.email,
            "enabled": record.enabled,
            "source": record.source,
            "has_password": bool(record.ha1_md5),
            "has_pin": bool(record.pin_hash),
            "has_voicemail_pin": bool(record.pin_hash),
            "dnd": record.dnd,
            "forward_always": record.forward_always,
            "forward_busy": record.forward_busy,
            "forward_no_answer": record.forward_no_answer,
            "caller_id": record.caller_id,
            "srtp": record.srtp,
        }

    @app.route("/api/v1/extensions", methods=["GET"])
    async def list_extensions(self, request: IRequest) -> bytes:
        """Every extension; secrets are never included."""
        self._authenticate(request)
        records = await self.pbx.store.list_extensions()
        return json_body(request, 200, {"extensions": [self._extension_json(r) for r in records]})

    @app.route("/api/v1/extensions/<number>", methods=["GET"])
    async def get_extension(self, request: IRequest, number: str) -> bytes:
        """One extension."""
        self._authenticate(request)
        record = await self._existing(number)
        return json_body(request, 200, self._extension_json(record))

    async def _existing(self, number: str) -> ExtensionRecord:
        record = await self.pbx.store.get_extension(number) if _NUMBER.fullmatch(number) else None
        if record is None:
            raise APIError(404, f"no extension {number}")
        return record

    def _fields(self, body: dict[str, Any], number: str, *, creating: bool) -> dict[str, Any]:
        allowed = {"name", "email", "password", "pin", "voicemail_pin", "enabled", "dnd", "caller_id", "srtp",
                   *_FORWARDS}
        if creating:
            allowed.add("number")
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise APIError(422, f"unknown field: {unknown[0]}")
        for name in ("password", "pin", "voicemail_pin", *_FORWARDS):
            if name in body and not isinstance(body[name], str):
                raise APIError(422, f"{name} must be a string")
        for name in ("enabled", "dnd"):
            if name in body and not isinstance(body[name], bool):
                raise APIError(422, f"{name} must be true or false")
        # The one set of checks the config file uses too (pbx.validation).
        for name, problem_of in (("name", display_name_problem), ("caller_id", display_name_problem),
                                 ("email", email_problem)):
            problem = problem_of(body[name]) if name in body else None
            if problem is not None:
                raise APIError(422, f"{name} {problem}")
        for name in _FORWARDS:
            target = body.get(name, "")
            if target and extension_number_problem(target):
                raise APIError(422, f"{name} must be an extension number or empty")
            if target == number:
                raise APIError(422, f"{name} cannot forward an extension to itself")
        if "password" in body:
            problem = password_problem(body["password"], username=number)
            if problem:
                raise APIError(422, f"password too weak: {problem}")
        if "srtp" in body and (problem := srtp_policy_problem(body["srtp"])):
            raise APIError(422, f"srtp {problem}")
        if "pin" in body and "voicemail_pin" in body:
            raise APIError(422, "give pin or voicemail_pin (its older name), not both")
        pin_field = "pin" if "pin" in body else "voicemail_pin"
        pin = body.get(pin_field)
        if pin is not None and pin_format_problem(pin):
            raise APIError(422, f"{pin_field} {pin_format_problem(pin)}")
        if "voicemail_pin" in body:
            body = {k: v for k, v in body.items() if k != "voicemail_pin"} | {"pin": body["voicemail_pin"]}
        return body

    @app.route("/api/v1/extensions", methods=["POST"])
    async def create_extension(self, request: IRequest) -> bytes:
        """Create an extension; the SIP password is required and stored only as HA1."""
        admin = self._authenticate(request)
        body = read_json(request)
        number = body.get("number")
        if not isinstance(number, str) or extension_number_problem(number):
            raise APIError(422, f"number {extension_number_problem(number)}")
        if "password" not in body:
            raise APIError(422, "password is required")
        fields = self._fields(body, number, creating=True)
        if await self.pbx.store.get_extension(number) is not None:
            raise APIError(409, f"extension {number} exists")
        record = await self._record(number, fields, None)
        await self.pbx.store.put_extension(record)
        self.pbx.extension_changed(number)
        await self._audit("api.extension.create", number, request, f"by {admin}")
        request.setHeader(b"Location", f"/api/v1/extensions/{number}".encode())
        return json_body(request, 201, self._extension_json(record))

    async def _record(self, number: str, fields: dict[str, Any], previous: ExtensionRecord | None) -> ExtensionRecord:
        pin_hash = ""
        if fields.get("pin"):
            pin_hash = await self._hash(fields["pin"])
        record = extension_record(
            number,
            self.pbx.config.sip.domain,
            name=fields.get("name", previous.name if previous else ""),
            email=fields.get("email", previous.email if previous else ""),
            password=fields.get("password"),
            pin_hash=pin_hash,
            source=previous.source if previous else "api",
            previous=previous,
        )
        changes = {k: fields[k] for k in ("enabled", "dnd", "caller_id", "srtp", *_FORWARDS) if k in fields}
        if previous is not None:
            kept = ("dnd", "caller_id", "srtp", *_FORWARDS)
            changes = {**{k: getattr(previous, k) for k in kept}, **changes}
        return evolve(record, **changes) if changes else record

    @app.route("/api/v1/extensions/<number>", methods=["PATCH"])
    async def update_extension(self, request: IRequest, number: str) -> bytes:
        """Change some fields of an extension."""
        admin = self._authenticate(request)
        previous = await self._existing(number)
        fields = self._fields(read_json(request), number, creating=False)
        record = await self._record(number, fields, previous)
        await self.pbx.store.put_extension(record)
        self.pbx.extension_changed(number)
        if fields.get("password") or fields.get("pin") or fields.get("enabled") is False:
            # A token taken with the old secret, or before the disable, dies now.
            self.revoke_sessions(number)
        await self._audit("api.extension.update", number, request, f"by {admin}: {','.join(sorted(fields))}")
        return json_body(request, 200, self._extension_json(record))

    @app.route("/api/v1/extensions/<number>", methods=["DELETE"])
    async def delete_extension(self, request: IRequest, number: str) -> bytes:
        """Delete an extension and its registrations."""
        admin = self._authenticate(request)
        await self._existing(number)
        await self.pbx.store.delete_extension(number)
        self.pbx.extension_deleted(number)
        self.revoke_sessions(number)
        await self._audit("api.extension.delete", number, request, f"by {admin}")
        request.setResponseCode(204)
        return b""

    # -- registrations, calls, CDR ----------------------------------------

    @app.route("/api/v1/registrations", methods=["GET"])
    async def registrations(self, request: IRequest) -> bytes:
        """Every live registration binding."""
        self._authenticate(request)
        now = self.pbx.clock.seconds()
        bindings = await self.pbx.store.list_bindings()
        return json_body(request, 200, {"registrations": [
            {
                "extension": b.aor,
                "contact": b.contact,
                "transport": b.transport,
                "source": b.source,
                "user_agent": b.user_agent,
                "expires_in": max(0, int(b.expires_at - now)),
            }
            for b in bindings if b.expires_at > now
        ]})

    @app.route("/api/v1/calls", methods=["GET"])
    def calls(self, request: IRequest) -> bytes:
        """Calls in progress."""
        self._authenticate(request)
        return json_body(request, 200, {"calls": self.pbx.live_calls()})

    @app.route("/api/v1/cdr", methods=["GET"])
    async def cdr(self, request: IRequest) -> bytes:
        """Call detail records, newest first, paged and filtered; CSV with ``format=csv``."""
        self._authenticate(request)
        args = {k.decode("latin-1"): v[-1].decode("utf-8", "replace") for k, v in (request.args or {}).items()}
        unknown = sorted(set(args) - {"offset", "limit", "caller", "callee", "since", "until", "linked_id",
                                      "format"})
        if unknown:
            raise APIError(400, f"unknown query parameter: {unknown[0]}")
        offset = _int_arg(args, "offset", 0, 0, 10**9)
        limit = _int_arg(args, "limit", 100, 1, 1000)
        since = _float_arg(args, "since")
        until = _float_arg(args, "until")
        fmt = args.get("format", "json")
        if fmt not in ("json", "csv"):
            raise APIError(400, "format must be json or csv")
        total, records = await self.pbx.store.list_call_records(
            offset=offset, limit=limit, caller=args.get("caller"), callee=args.get("callee"),
            since=since, until=until, linked_id=args.get("linked_id"),
        )
        rows = []
        for r in records:
            row = asdict(r)
            row["duration"] = round(r.duration, 3)
            row["billable"] = round(r.billable, 3)
            rows.append(row)
        if fmt == "csv":
            out = io.StringIO()
            columns = ["id", "call_id", "leg", "caller", "callee", "start", "answer", "end",
                       "duration", "billable", "disposition", "hangup_side", "hangup_cause", "codecs",
                       "application", "trunk", "dialled", "sent", "cost", "verstat", "linked_id", "srtp"]
            writer = csv.DictWriter(out, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
            request.setHeader(b"Content-Type", b"text/csv; charset=utf-8")
            request.setHeader(b"Content-Disposition", b'attachment; filename="cdr.csv"')
            return out.getvalue().encode()
        return json_body(request, 200, {"total": total, "offset": offset, "limit": limit, "records": rows})


def _int_arg(args: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    if name not in args:
        return default
    value = args[name]
    if not value.isdigit() or not low <= int(value) <= high:
        raise APIError(400, f"{name} must be a whole number from {low} to {high}")
    return int(value)


def _float_arg(args: dict[str, str], name: str) -> float | None:
    if name not in args:
        return None
    try:
        value = float(args[name])
    except ValueError:
        raise APIError(400, f"{name} must be a POSIX time in seconds") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise APIError(400, f"{name} must be a POSIX time in seconds")
    return value
