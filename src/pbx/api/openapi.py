"""The OpenAPI 3.1 description of ``/api/v1``; a test keeps it equal to the routes."""

from __future__ import annotations

from typing import Any

from pbx.records import DISPOSITIONS


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error_response(description: str) -> dict[str, Any]:
    """An OpenAPI response whose body is the JSON ``Error`` (for the routes features mount)."""
    return _json(_ref("Error"), description)


def object_response(description: str) -> dict[str, Any]:
    """An OpenAPI response whose body is a JSON object."""
    return _json({"type": "object"}, description)


_ERRORS = {
    "400": _json(_ref("Error"), "Bad request"),
    "401": _json(_ref("Error"), "Not logged in, or the token expired"),
    "403": _json(_ref("Error"), "Not allowed for this session (users reach only their own extension)"),
}

_NUMBER = {
    "name": "number", "in": "path", "required": True,
    "schema": {"type": "string", "pattern": "^[0-9]{2,10}$"},
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "Login": {
        "type": "object", "required": ["username", "password"],
        "properties": {"username": {"type": "string"}, "password": {"type": "string"}},
    },
    "Token": {
        "type": "object",
        "properties": {
            "token": {"type": "string"}, "token_type": {"const": "Bearer"},
            "role": {"enum": ["admin", "user"]},
            "expires_in": {"type": "integer"},
        },
    },
    "Status": {
        "type": "object",
        "properties": {
            "version": {"type": "string"}, "uptime": {"type": "number"},
            "listeners": {"type": "array", "items": {"type": "string"}},
            "features": {"type": "array", "items": {"type": "string"}},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "fips": {
                "type": "object",
                "description": "security.fips, and whether each crypto library is in FIPS mode and computes SHA-256 in it",
                "properties": {
                    "enabled": {"type": "boolean"},
                    "cryptography": {"type": "object"}, "hashlib": {"type": "object"},
                },
            },
        },
    },
    "Extension": {
        "type": "object",
        "properties": {
            "number": {"type": "string"}, "name": {"type": "string"},
            "email": {"type": "string"}, "enabled": {"type": "boolean"},
            "source": {"enum": ["config", "api"]},
            "has_password": {"type": "boolean"}, "has_pin": {"type": "boolean"},
            "has_voicemail_pin": {"type": "boolean", "description": "the older name of has_pin"},
            "dnd": {"type": "boolean"}, "caller_id": {"type": "string"},
            "forward_always": {"type": "string"}, "forward_busy": {"type": "string"},
            "forward_no_answer": {"type": "string"},
            "srtp": {"enum": ["off", "offered", "required"]},
        },
    },
    "ExtensionInput": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "number": {"type": "string", "pattern": "^[0-9]{2,10}$"},
            "name": {"type": "string", "maxLength": 100}, "email": {"type": "string"},
            "password": {"type": "string", "minLength": 10, "writeOnly": True},
            "pin": {"type": "string", "pattern": "^[0-9]{4,12}$", "writeOnly": True},
            "voicemail_pin": {"type": "string", "pattern": "^[0-9]{4,12}$", "writeOnly": True,
                              "description": "the older name of pin"},
            "enabled": {"type": "boolean"},
            "dnd": {"type": "boolean"}, "caller_id": {"type": "string", "maxLength": 100},
            "forward_always": {"type": "string", "pattern": "^([0-9]{2,10})?$"},
            "forward_busy": {"type": "string", "pattern": "^([0-9]{2,10})?$"},
            "forward_no_answer": {"type": "string", "pattern": "^([0-9]{2,10})?$"},
            "srtp": {"enum": ["off", "offered", "required"],
                     "description": "SRTP for the extension's phones; keys only over TLS"},
        },
    },
    "Registration": {
        "type": "object",
        "properties": {
            "extension": {"type": "string"}, "contact": {"type": "string"},
            "transport": {"type": "string"}, "source": {"type": "string"},
            "user_agent": {"type": "string"}, "expires_in": {"type": "integer"},
        },
    },
    "CallRecord": {
        "type": "object",
        "properties": {
            k: {"type": t} for k, t in [
                ("id", "integer"), ("call_id", "string"), ("leg", "string"),
                ("caller", "string"), ("callee", "string"), ("start", "number"),
                ("answer", ["number", "null"]), ("end", "number"), ("duration", "number"),
                ("billable", "number"),
                ("hangup_side", "string"), ("hangup_cause", "string"), ("codecs", "string"),
            ]
        } | {
            "disposition": {
                "type": "string", "enum": list(DISPOSITIONS),
                "description": "INTERRUPTED: the call was up when pbx stopped without hanging it up "
                "(a crash); recorded at the next start, ending when the call was last known to be up",
            },
            "application": {
                "type": "string",
                "description": "the dialplan application that answered the call, or the one a "
                "call nobody answered was diverted to; empty for a call between people",
            },
            "trunk": {"type": "string", "description": "the trunk a call went out through; empty otherwise"},
            "dialled": {"type": "string", "description": "the number dialled, for a call out through a trunk"},
            "sent": {"type": "string", "description": "the number sent to the trunk (after strip/prepend)"},
            "cost": {"type": "number", "description": "the talk time priced by the rate table"},
            "verstat": {
                "type": "string", "enum": ["", "TN-Validation-Passed", "TN-Validation-Failed", "No-TN-Validation"],
                "description": "a call from a trunk: what STIR/SHAKEN verification said of the caller's "
                "number; empty when pbx does not verify",
            },
            "linked_id": {
                "type": "string",
                "description": "shared by every record of one conversation: the call_id of the call it "
                "began as; transfers, park and pickup keep it, an attended transfer gives both calls "
                "the older one's",
            },
            "srtp": {"type": "string", "description": "the SRTP suite this leg's media was encrypted with; "
                     "empty for plain RTP"},
        },
    },
}


def _list_of(key: str, item: str) -> dict[str, Any]:
    return {"type": "object", "properties": {key: {"type": "array", "items": _ref(item)}}}


def _op(summary: str, responses: dict[str, Any], *, auth: bool = True, **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**responses, **(_ERRORS if auth else {})}}
    if not auth:
        op["security"] = []
    op.update(extra)
    return op


_PATHS: dict[str, Any] = {
    "/api/v1/auth/login": {"post": _op(
        "Log in as an administrator", {
            "200": _json(_ref("Token"), "A bearer token"),
            "401": _json(_ref("Error"), "Wrong username or password"),
            "429": _json(_ref("Error"), "Locked out after repeated failures"),
        }, auth=False,
        requestBody={"required": True, "content": {"application/json": {"schema": _ref("Login")}}},
    )},
    "/api/v1/auth/logout": {"post": _op("End this token's session", {"200": {"description": "Logged out"}})},
    "/api/v1/auth/password": {"post": _op(
        "An administrator changes its own password (also with an expired one); its other sessions end", {
            "200": {"description": "Changed: a new token"},
            "403": _json(_ref("Error"), "Wrong current password"),
            "409": _json(_ref("Error"), "Set in the config file"),
            "422": _json(_ref("Error"), "New password refused by the policy"),
            "429": _json(_ref("Error"), "Locked out"),
        },
        requestBody={"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["password", "new_password"],
            "properties": {"password": {"type": "string"}, "new_password": {"type": "string"}},
        }}}},
    )},
    "/api/v1/openapi.json": {"get": _op(
        "This document", {"200": {"description": "OpenAPI document"}}, auth=False)},
    "/api/v1/docs": {"get": _op(
        "This document rendered for people", {
            "200": {"description": "An HTML page", "content": {"text/html": {"schema": {"type": "string"}}}},
        }, auth=False)},
    "/api/v1/status": {"get": _op("Version, uptime, listeners, counts", {"200": _json(_ref("Status"), "Status")})},
    "/api/v1/extensions": {
        "get": _op("List extensions", {"200": _json(_list_of("extensions", "Extension"), "Extensions")}),
        "post": _op(
            "Create an extension", {
                "201": _json(_ref("Extension"), "Created"),
                "409": _json(_ref("Error"), "Exists"),
                "422": _json(_ref("Error"), "Invalid field"),
            },
            requestBody={"required": True, "content": {"application/json": {"schema": _ref("ExtensionInput")}}},
        ),
    },
    "/api/v1/extensions/{number}": {
        "parameters": [_NUMBER],
        "get": _op("One extension", {"200": _json(_ref("Extension"), "Extension"),
                                     "404": _json(_ref("Error"), "No such extension")}),
        "patch": _op(
            "Change an extension", {
                "200": _json(_ref("Extension"), "Changed"),
                "404": _json(_ref("Error"), "No such extension"),
                "422": _json(_ref("Error"), "Invalid field"),
            },
            requestBody={"required": True, "content": {"application/json": {"schema": _ref("ExtensionInput")}}},
        ),
        "delete": _op("Delete an extension and its registrations", {
            "204": {"description": "Deleted"}, "404": _json(_ref("Error"), "No such extension")}),
    },
    "/api/v1/registrations": {"get": _op(
        "Live registrations", {"200": _json(_list_of("registrations", "Registration"), "Registrations")})},
    "/api/v1/calls": {"get": _op(
        "Calls in progress", {"200": _json({"type": "object", "properties": {"calls": {"type": "array"}}}, "Calls")})},
    "/api/v1/cdr": {"get": _op(
        "Call detail records, newest first", {
            "200": {"description": "Records", "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "total": {"type": "integer"}, "offset": {"type": "integer"},
                    "limit": {"type": "integer"},
                    "records": {"type": "array", "items": _ref("CallRecord")}}}},
                "text/csv": {"schema": {"type": "string"}},
            }},
        },
        parameters=[
            {"name": n, "in": "query", "schema": s} for n, s in [
                ("offset", {"type": "integer", "minimum": 0}),
                ("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                ("caller", {"type": "string"}), ("callee", {"type": "string"}),
                ("since", {"type": "number"}), ("until", {"type": "number"}),
                ("linked_id", {"type": "string"}),
                ("format", {"enum": ["json", "csv"]}),
            ]
        ],
    )},
}


def openapi_document(version: str, extra_paths: dict[str, Any] | None = None) -> dict[str, Any]:
    """The OpenAPI document for this version of pbx, with the paths features mounted."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "pbx REST API", "version": version},
        "paths": {**_PATHS, **(extra_paths or {})},
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
