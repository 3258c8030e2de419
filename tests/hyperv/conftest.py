"""Fixtures for the Hyper-V tests: a test CA, the NTLM account store and WS-Management servers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from collectors.hyperv import SCRIPT
from resmon.contract import Target

from .wsman_server import Reply, WSManServer, make_test_pki

FIXTURES = Path(__file__).parent / "fixtures"
HOSTS = FIXTURES / "hosts"
FAULTS = FIXTURES / "faults"
SAVED = FIXTURES / "saved"
USERNAME = "resmon"
#: Distinctive, so a leak anywhere is found by a plain substring search.
PASSWORD = "Pw-9f3c1e7a-Hyperv-NeverLogMe"

ServerFactory = Callable[..., WSManServer]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, key.pem) of a CA made for this test run."""
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def ntlm_user_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """pyspnego's NTLM acceptor reads the accepted accounts from ``NTLM_USER_FILE``."""
    path = tmp_path_factory.mktemp("ntlm") / "users"
    path.write_text(f":{USERNAME}:{PASSWORD}\n")
    before = os.environ.get("NTLM_USER_FILE")
    os.environ["NTLM_USER_FILE"] = str(path)
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop("NTLM_USER_FILE", None)
        else:
            os.environ["NTLM_USER_FILE"] = before


@pytest.fixture
def wsman(pki: tuple[Path, Path, Path], ntlm_user_file: Path) -> Iterator[ServerFactory]:
    """Start servers on 127.0.0.1 (HTTPS + NTLM unless told otherwise); all stop at teardown."""
    started: list[WSManServer] = []
    _, cert, key = pki

    def start(reply: Reply | None = None, *, auth: str = "ntlm", tls: bool = True) -> WSManServer:
        server = WSManServer(
            expected_script=SCRIPT,
            reply=reply or host_reply("server2022_2socket"),
            auth=auth,
            username=USERNAME,
            password=PASSWORD,
            tls=(cert, key) if tls else None,
        )
        started.append(server.start())
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def host_reply(profile: str) -> Reply:
    return Reply(stdout=(HOSTS / f"{profile}.json").read_bytes())


def make_target(server: WSManServer, ca: Path, **changes: object) -> Target:
    fields: dict[str, object] = {
        "name": "hv-under-test",
        "collector": "hyperv",
        "url": server.url,
        "username": USERNAME,
        "password": SecretStr(PASSWORD),
        "ca_bundle": ca,
        "timeout_s": 10.0,
    }
    fields.update(changes)
    return Target.model_validate(fields)
