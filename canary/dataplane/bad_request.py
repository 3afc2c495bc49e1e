"""BadRequest: a client's request refused before or while it is read (a bad head, a body too large), with its status."""
from __future__ import annotations

from typing import Final

# The reason a refused request is logged with (access_log.py), by status: a short fixed word, never
# anything the client sent (a request line can carry secrets and control characters).
REASONS: Final = {400: "bad_head", 405: "method_not_allowed", 413: "body_too_large", 417: "bad_expect",
                  431: "head_too_large", 501: "upgrade"}


class BadRequest(Exception):
    """Raised inside parser callbacks: stops llhttp at once so nothing after the bad byte is parsed."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status
        self.reason = REASONS.get(status, "bad_request")
