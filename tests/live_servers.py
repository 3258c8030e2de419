"""Loopback servers the tests start and stop: resmon's API, and a real Prometheus scraping it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import uvicorn

from exporters._answer_cache import DEFAULT_MAX_BYTES
from exporters.api import create_app
from resmon.store import Store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], Any], what: str, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"gave up waiting for {what} after {timeout_s:.0f}s")


def promql(base: str, query: str) -> list[dict[str, Any]]:
    """The result of an instant query, or [] while Prometheus does not answer yet."""
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
    except OSError:
        return []
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


@contextmanager
def serve_api(
    store: Store,
    *,
    api_tokens: Sequence[str] = (),
    start_timeout_s: float = 60.0,
    answer_cache_bytes: int = DEFAULT_MAX_BYTES,
) -> Iterator[str]:
    """resmon's API on a free loopback port; yields ``host:port``."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(store, api_tokens=list(api_tokens), answer_cache_bytes=answer_cache_bytes),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )  # fmt: skip
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, "resmon's API to start", start_timeout_s)
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it is still running 20 s later."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def resmon_serve(
    database_url: str, workdir: Path, *, answer_cache_mib: int = 32, start_timeout_s: float = 60.0
) -> Iterator[str]:
    """``resmon serve`` (the API alone, as a read replica runs it) in its own process on a free
    loopback port; yields ``host:port``. Its log goes to ``workdir/serve-<port>.log``."""
    port = free_port()
    config = workdir / f"serve-{port}.toml"
    config.write_text(
        f"[resmon]\ndatabase_url = {json.dumps(database_url)}\n"
        f'listen = "127.0.0.1:{port}"\nanswer_cache_mib = {answer_cache_mib}\n'
    )
    log = workdir / f"serve-{port}.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "resmon.cli", "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"resmon serve exited {process.returncode}: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5):
                return True
        except OSError:
            return False

    try:
        wait_until(answers, "resmon serve to answer", start_timeout_s)
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(process)


@contextmanager
def run_prometheus(config_file: Path, workdir: Path) -> Iterator[str]:
    """A Prometheus server with ``config_file`` on a free loopback port; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        ["prometheus", f"--config.file={config_file}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=(workdir / "prometheus.log").open("wb"),
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


class LoopbackHTTPServer:
    """A small HTTP server of a test's own (``handler``) on a free loopback port, served from a
    thread inside a ``with`` block; ``url`` is its base URL."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
