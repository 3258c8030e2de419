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
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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


class RefusingPlacement:
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

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> RefusingPlacement:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
