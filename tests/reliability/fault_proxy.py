"""A TCP proxy on loopback that forwards to a real server, or accepts and never answers.

``mode = "pass"`` forwards both ways; ``mode = "hang"`` keeps every connection (new or already
open) open but forwards nothing: a database host whose process froze, as the kernel still
completes TCP handshakes and acknowledges what is sent.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from typing import Literal

Mode = Literal["pass", "hang"]


class FaultProxy:
    def __init__(self, upstream: tuple[str, int] | None) -> None:
        self.upstream = upstream
        self.mode: Mode = "pass" if upstream else "hang"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _keep(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._keep(client)
            if self.mode == "hang" or self.upstream is None:
                continue  # accepted, and never a byte back
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            self._keep(server)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peer = {a: b, b: a}
        with selectors.DefaultSelector() as sel:
            sel.register(a, selectors.EVENT_READ)
            sel.register(b, selectors.EVENT_READ)
            while not self._closed.is_set():
                if self.mode == "hang":  # hold both ends; read nothing, forward nothing
                    self._closed.wait(0.05)
                    continue
                for key, _ in sel.select(timeout=0.05):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = src.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        for s in (a, b):
                            with contextlib.suppress(OSError):
                                s.shutdown(socket.SHUT_RDWR)
                        return
                    try:
                        peer[src].sendall(data)
                    except OSError:
                        return

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()
