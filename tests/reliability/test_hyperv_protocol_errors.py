"""A Hyper-V target whose port answers something other than WinRM is reported as a protocol error,
not as a certificate problem (which would send the operator after the wrong fix)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from collectors.hyperv import HypervCollector
from resmon.contract import Target, TargetUnreachable

#: What an SSH server sends first (RFC 4253 §4.2): a classic wrong-port answer.
GARBAGE = b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n" + bytes(range(256)) * 8


@pytest.fixture
def garbage_port() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.sendall(GARBAGE)
                    conn.recv(65536)
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()


@pytest.mark.parametrize(("scheme", "options"), [("https", {}), ("http", {"allow_http": True})])
def test_garbage_on_the_port_is_a_protocol_error(
    garbage_port: int, scheme: str, options: dict[str, object]
) -> None:
    target = Target(
        name="hv-garbage", collector="hyperv", url=f"{scheme}://127.0.0.1:{garbage_port}/wsman",
        username="resmon", password=SecretStr("pw-not-used"), timeout_s=5, options=options,
    )  # fmt: skip
    collector = HypervCollector.from_target(target, logger=logging.getLogger("test"))
    try:
        with pytest.raises(TargetUnreachable) as info:
            collector.collect()
    finally:
        collector.close()
    message = str(info.value.message)
    assert message.startswith("protocol error"), message
    assert "certificate" not in message
