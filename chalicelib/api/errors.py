"""The API's error: an HTTP status with a code, a message a person can act on, and the field."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request the API refuses; rendered as ``{"error": {"code", "message", "field"}}``."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


def bad_request(code: str, message: str, field: str | None = None) -> ApiError:
    return ApiError(400, code, message, field)


def not_found(code: str, message: str, field: str | None = None) -> ApiError:
    return ApiError(404, code, message, field)


def internal_error() -> ApiError:
    """The answer to an unexpected failure: its details are logged, never sent."""
    return ApiError(500, "internal_error", "the server failed to answer; the error is logged")
