"""RFC 9457 problem details: the one place errors become HTTP statuses.

Every error body is ``application/problem+json`` and names the rule broken
and, where there is one, the field (httpx's habit of translating at one
boundary, applied to HTTP). The mapping follows the exception tree, so a new
error class lands in the right status by where it sits in the tree.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from preservation.errors import (
    AuthenticationError,
    ConflictError,
    ForbiddenError,
    GoneError,
    InvalidRequestError,
    InvalidSIPError,
    NotFoundError,
    PreservationError,
    RangeNotSatisfiableError,
    SIPPendingError,
    TransientError,
    UnsupportedMediaError,
    UploadTooLargeError,
)

__all__ = ["PROBLEM", "Problem", "install", "problem_response", "responses"]

log = logging.getLogger("preservation.api")

PROBLEM = "application/problem+json"
TYPE_BASE = "https://preservation.example/problems/"


class FieldProblem(BaseModel):
    field: str
    rule: str
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem: ``type``, ``title``, ``status``, ``detail``, plus our ``rule``."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    rule: str | None = None
    field: str | None = None
    errors: list[FieldProblem] | None = None


# Most specific first: the first class the error is an instance of decides.
STATUS: list[tuple[type[PreservationError], int, str]] = [
    (GoneError, 410, "Gone"),
    (NotFoundError, 404, "Not Found"),
    (AuthenticationError, 401, "Unauthorized"),
    (ForbiddenError, 403, "Forbidden"),
    (SIPPendingError, 409, "Conflict"),
    (ConflictError, 409, "Conflict"),
    (UploadTooLargeError, 413, "Content Too Large"),
    (UnsupportedMediaError, 415, "Unsupported Media Type"),
    (RangeNotSatisfiableError, 416, "Range Not Satisfiable"),
    (InvalidRequestError, 400, "Bad Request"),
    (InvalidSIPError, 422, "Unprocessable Content"),
    (TransientError, 503, "Service Unavailable"),
]


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for a route's error statuses, all problem+json."""
    return {
        s: {"model": Problem, "content": {PROBLEM: {}}, "description": _TITLES.get(s, "Error")}
        for s in statuses
    }


_TITLES = {s: t for _, s, t in STATUS} | {
    422: "Unprocessable Content",
    405: "Method Not Allowed",
    500: "Internal Server Error",
}


def problem_response(
    request: Request | None,
    status: int,
    detail: str,
    *,
    rule: str | None = None,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + (rule or str(status)),
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
    if rule:
        body["rule"] = rule
    if field:
        body["field"] = field
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _for_error(request: Request, err: PreservationError) -> JSONResponse:
    status = next((code for cls, code, _title in STATUS if isinstance(err, cls)), 500)
    if status == 500:
        log.error("unmapped error on %s: %s", request.url.path, err, exc_info=err)
    context = dict(err.context)
    rule = context.pop("rule", None) or type(err).__name__
    field = context.pop("field", None)
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="preservation"'
    if status == 503:
        headers["Retry-After"] = "30"
    if isinstance(err, RangeNotSatisfiableError):
        headers["Content-Range"] = f"bytes */{context.get('size', '*')}"
    extra: dict[str, Any] = {"error": type(err).__name__}
    for key in ("aip_id", "sip_id"):
        if getattr(err, key, None):
            extra[key] = getattr(err, key)
    if isinstance(err, InvalidSIPError) and err.problems:
        extra["problems"] = [
            p.to_dict() if hasattr(p, "to_dict") else dict(p) for p in err.problems
        ]
    for key, value in context.items():
        if isinstance(value, str | int | float | bool) and key not in extra:
            extra[key] = value
    if isinstance(context.get("tombstone"), dict):
        # What was disposed of, when and why: the caller's to see (dates as ISO text).
        extra["tombstone"] = jsonable_encoder(context["tombstone"])
    # A path is ours to know, not the caller's: never leak the data root.
    return problem_response(
        request, status, err.message, rule=rule, field=field, headers=headers, **extra
    )


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        where, rest = parts[0], parts[1:]
        return f"{where}:{'.'.join(rest)}" if rest else where
    return ".".join(parts)


def install(app: FastAPI) -> None:
    """Register the handlers: our tree, request validation, HTTP errors, the rest."""

    @app.exception_handler(PreservationError)
    async def _preservation(request: Request, err: PreservationError) -> JSONResponse:
        return _for_error(request, err)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": _location(tuple(e.get("loc", ()))),
                "rule": str(e.get("type", "invalid")),
                "message": str(e.get("msg", "invalid")),
            }
            for e in err.errors()
        ]
        first = errors[0] if errors else {"field": None, "rule": "invalid", "message": "invalid"}
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:10])
        return problem_response(
            request,
            422,
            detail or "the request is not valid",
            rule=first["rule"],
            field=first["field"],
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        detail = err.detail if isinstance(err.detail, str) else _TITLES.get(err.status_code, "")
        return problem_response(
            request,
            err.status_code,
            detail,
            rule={404: "no-such-route", 405: "method-not-allowed"}.get(err.status_code, "http"),
            headers=dict(err.headers or {}),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        log.error("unexpected error on %s", request.url.path, exc_info=err)
        return problem_response(
            request, 500, "an unexpected error; it has been logged", rule="internal"
        )
