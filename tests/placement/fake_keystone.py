"""A loopback Keystone that issues tokens the way Keystone's Identity API v3 documents them, so
keystoneauth1's password and application-credential plugins can be tried for real.

``POST /v3/auth/tokens`` follows the API reference (https://docs.openstack.org/api-ref/identity/v3/,
"Password authentication with scoped authorization" and "Authenticating with an Application
Credential"): the request's ``auth.identity.methods`` and its ``password.user`` (name, domain,
password) or ``application_credential`` (id, secret) and ``scope.project`` are checked; the answer
is a 201 with the token id in ``X-Subject-Token`` and a body shaped like the reference samples
(``auth-password-project-scoped-response.json``, ``auth-application-credential-response.json``):
methods, user, project, roles, issued/expires times and the service catalog. A wrong credential
gets the documented 401 (``{"error": {"code": 401, "title": "Unauthorized", "message"}}``).

The catalog lists ``placement`` with a ``public`` endpoint nobody listens on and an ``internal``
one at the real Placement: a client that does not honour ``interface`` fails. The token issued
is ``admin``, which Placement's ``noauth2`` strategy takes as the admin user.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.live_servers import LoopbackHTTPServer

USER = {"id": "fd786d56402c4d1691372e7dee0d00b5", "name": "resmon",
        "domain": {"id": "default", "name": "Default"}, "password_expires_at": None}  # fmt: skip
PROJECT = {"id": "231c62fb0fbd485b995e8b060c3f0d98", "name": "service",
           "domain": {"id": "default", "name": "Default"}}  # fmt: skip
UNAUTHORIZED = {
    "error": {"code": 401, "title": "Unauthorized",
              "message": "The request you have made requires authentication."}
}  # fmt: skip


class FakeKeystone(LoopbackHTTPServer):
    def __init__(
        self, *, placement_internal: str, placement_public: str, password: str,
        credential_id: str, credential_secret: str,
    ) -> None:  # fmt: skip
        self.token_requests: list[dict[str, Any]] = []
        outer = self

        def catalog(base: str) -> list[dict[str, Any]]:
            def endpoint(interface: str, url: str) -> dict[str, str]:
                return {"id": f"{interface}-ep", "interface": interface, "region": "RegionOne",
                        "region_id": "RegionOne", "url": url}  # fmt: skip

            return [
                {"id": "identity-svc", "name": "keystone", "type": "identity",
                 "endpoints": [endpoint("public", base + "/v3")]},
                {"id": "placement-svc", "name": "placement", "type": "placement",
                 "endpoints": [endpoint("public", placement_public),
                               endpoint("internal", placement_internal)]},
            ]  # fmt: skip

        def accepted(identity: dict[str, Any], scope: dict[str, Any]) -> str | None:
            methods = identity.get("methods")
            if methods == ["password"]:
                user = identity.get("password", {}).get("user", {})
                good = (user.get("name"), user.get("domain", {}).get("name"),
                        user.get("password")) == ("resmon", "Default", password)  # fmt: skip
                project = scope.get("project", {})
                scoped = (project.get("name"), project.get("domain", {}).get("name")) == (
                    "service", "Default"
                )  # fmt: skip
                return "password" if good and scoped else None
            if methods == ["application_credential"]:
                credential = identity.get("application_credential", {})
                good = (credential.get("id"), credential.get("secret")) == (
                    credential_id, credential_secret
                )  # fmt: skip
                return "application_credential" if good else None
            return None

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                if self.path.split("?")[0] != "/v3/auth/tokens":
                    missing = {"code": 404, "title": "Not Found",
                               "message": "Could not find the resource."}  # fmt: skip
                    self._send(404, {"error": missing})
                    return
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.token_requests.append(request)
                auth = request.get("auth", {})
                method = accepted(auth.get("identity", {}), auth.get("scope", {}))
                if method is None:
                    self._send(401, UNAUTHORIZED,
                               {"WWW-Authenticate": f'Keystone uri="{outer.url}"'})  # fmt: skip
                    return
                now = datetime.now(UTC)
                token: dict[str, Any] = {
                    "methods": [method], "user": USER, "project": PROJECT, "is_domain": False,
                    "roles": [{"id": "51cc68287d524c759f47c811e6463340", "name": "admin"}],
                    "audit_ids": ["9JsolhssRzKfyayTIiCRUg"],
                    "issued_at": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "expires_at": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "catalog": catalog(outer.url),
                }  # fmt: skip
                if method == "application_credential":
                    token["application_credential_restricted"] = True
                self._send(201, {"token": token}, {"X-Subject-Token": "admin"})

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        super().__init__(Handler)
