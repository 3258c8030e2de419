"""A loopback HTTP server answering every request the way a refusing Placement does.

The bodies are the ones the real services send:

- 401: keystonemiddleware's ``auth_token`` in front of Placement rejects a missing or bad token
  with ``{"error": {"code": 401, "title": "Unauthorized", "message": ...}}`` and a
  ``WWW-Authenticate: Keystone uri="..."`` header (keystonemiddleware ``auth_token``
  ``_reject_request``);
- 403 and 503: Placement's own error document, ``{"errors": [{"status", "title", "detail",
  "request_id"}]}`` (Placement API reference, "Errors"; a 403 is its policy refusal, "Policy does
  not allow placement:resource_providers:list to be performed."; a 503 what a proxy in front of
  it answers while it is down).

Every request is counted (``requests``) so a test can see that nothing was retried behind its back.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.live_servers import LoopbackHTTPServer

BODIES: dict[int, tuple[dict[str, str], dict[str, Any]]] = {
    401: (
        {"WWW-Authenticate": 'Keystone uri="http://127.0.0.1:5000"'},
        {"error": {"code": 401, "title": "Unauthorized",
                   "message": "The request you have made requires authentication."}},
    ),
    403: (
        {},
        {"errors": [{"status": 403, "title": "Forbidden", "request_id": "req-1",
                     "detail": "Access was denied to this resource.\n\n Policy does not allow "
                               "placement:resource_providers:list to be performed.  "}]},
    ),
    503: (
        {},
        {"errors": [{"status": 503, "title": "Service Unavailable", "request_id": "req-2",
                     "detail": "The server is currently unavailable. Please try again later."}]},
    ),
}  # fmt: skip


class RefusingPlacement(LoopbackHTTPServer):
    """``with RefusingPlacement(503) as server: server.url``."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.requests += 1
                headers, body = BODIES[outer.status]
                data = json.dumps(body).encode()
                self.send_response(outer.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _answer

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        super().__init__(Handler)
