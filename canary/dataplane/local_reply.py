"""Responses the router writes itself (Envoy: local replies): 503 when overloaded, 4xx for bad requests, /healthz."""
from __future__ import annotations

import http
from typing import Final

STATUS_LINES: Final = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in http.HTTPStatus}


def local_response(status: int, close: bool, retry_after: int | None = None, body: bytes | None = None,
                   head_only: bool = False, extra_headers: bytes = b"", content_type: bytes = b"text/plain") -> bytes:
    """`extra_headers`: whole header lines (each ending in CRLF) the router adds, e.g. a Location."""
    if body is None:
        body = b"%d %s\n" % (status, http.HTTPStatus(status).phrase.encode())
    extra = extra_headers + (b"Retry-After: %d\r\n" % retry_after if retry_after is not None else b"")
    return (STATUS_LINES[status] + b"Content-Type: %s\r\nContent-Length: %d\r\n" % (content_type, len(body)) + extra
            + (b"Connection: close\r\n" if close else b"") + b"X-Served-By: canary-router\r\n\r\n"
            + (b"" if head_only else body))
