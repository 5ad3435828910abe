"""The service's refusal: an HTTP status, a message, and the fields at fault."""

from __future__ import annotations

__all__ = ["RequestError"]


class RequestError(Exception):
    """A request the service refuses: status, message and the fields at fault."""

    def __init__(self, message: str, problems: list[dict[str, str]] | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.message, self.problems, self.status = message, problems or [], status
