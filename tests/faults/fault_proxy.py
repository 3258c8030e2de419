"""A TCP proxy on loopback in front of a real server, with the faults a network and a host show.

Modes (set :attr:`FaultProxy.mode` at any time; connections already open follow the change):

``pass``
    forwards both ways.
``refuse``
    nothing listens on the port any more (a connection attempt is refused, as the kernel answers
    a SYN to a closed port with a RST) and open connections are reset: a host whose service
    stopped or crashed.
``hang``
    accepts (the kernel completes the handshake) and keeps every connection open, forwarding
    nothing either way: a host whose process froze.
``slow``
    forwards, but what the server sends reaches the client ``slow_chunk`` bytes at a time, one
    chunk every ``slow_delay_s``: every read gets *something* within any socket timeout, yet a
    larger answer takes many seconds (a saturated or lossy link).
``garbage``
    answers bytes that are no protocol at all (seeded random bytes), before and after the
    client's first bytes, then closes: a port where something else, or something broken,
    answers.

The upstream is a ``(host, port)`` TCP address or the path of a Unix socket (a local daemon's,
reached over TCP through the proxy).
"""

from __future__ import annotations

import contextlib
import random
import selectors
import socket
import struct
import threading
from typing import Literal

Mode = Literal["pass", "refuse", "hang", "slow", "garbage"]
MODES: tuple[Mode, ...] = ("pass", "refuse", "hang", "slow", "garbage")

Upstream = tuple[str, int] | str

#: ``slow``: by default, bytes per step and the pause between steps from the server to the
#: client: every answer waits at least a quarter of a second, so that an exchange of a dozen
#: round trips (a TLS handshake, a libvirt connection) takes seconds.
SLOW_CHUNK = 256
SLOW_DELAY_S = 0.25
#: ``garbage``: how much is sent each time.
GARBAGE_BYTES = 4096


def _reset(sock: socket.socket) -> None:
    """Close with a RST (SO_LINGER 0), as a crashed peer's kernel would answer."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class FaultProxy:
    def __init__(
        self,
        upstream: Upstream | None,
        *,
        seed: int = 0,
        slow_chunk: int = SLOW_CHUNK,
        slow_delay_s: float = SLOW_DELAY_S,
    ) -> None:
        self.upstream = upstream
        self.slow_chunk, self.slow_delay_s = slow_chunk, slow_delay_s
        self._mode: Mode = "pass" if upstream is not None else "hang"
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.port = 0
        self._listen()

    # -- control ------------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self._mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown fault mode {mode!r} (one of {', '.join(MODES)})")
        with self._lock:
            was, self._mode = self._mode, mode
            if mode == "refuse":
                listener, self._listener = self._listener, None
                open_sockets = list(self._sockets)
                self._sockets.clear()
            else:
                listener, open_sockets = None, []
        if listener is not None:
            listener.close()
            for sock in open_sockets:
                _reset(sock)
        if was == "refuse" and mode != "refuse":
            self._listen()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            listener, self._listener = self._listener, None
            open_sockets = list(self._sockets)
            self._sockets.clear()
        if listener is not None:
            listener.close()
        for sock in open_sockets:
            sock.close()

    # -- serving ------------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))  # the same port again after ``refuse``
        listener.listen(64)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _keep(self, sock: socket.socket) -> bool:
        with self._lock:
            if self._mode == "refuse" or self._closed.is_set():
                return False
            self._sockets.add(sock)
            return True

    def _forget(self, *socks: socket.socket) -> None:
        with self._lock:
            for sock in socks:
                self._sockets.discard(sock)
        for sock in socks:
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while not self._closed.is_set():
            try:
                client, _ = listener.accept()
            except OSError:  # closed: refused from now on, or the proxy closed
                return
            if not self._keep(client):
                _reset(client)
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _connect_upstream(self) -> socket.socket:
        assert self.upstream is not None
        if isinstance(self.upstream, str):
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.settimeout(5)
            server.connect(self.upstream)
        else:
            server = socket.create_connection(self.upstream, timeout=5)
        server.settimeout(None)
        return server

    def _serve(self, client: socket.socket) -> None:
        if self.upstream is None or self._mode == "hang":
            self._closed.wait()  # accepted, and never a byte back
            return
        if self._mode == "garbage":
            self._garbage(client)
            return
        try:
            server = self._connect_upstream()
        except OSError:
            self._forget(client)
            return
        if not self._keep(server):
            _reset(server)
            return
        try:
            self._pump(client, server)
        finally:
            self._forget(client, server)

    def _garbage(self, client: socket.socket) -> None:
        try:
            client.sendall(self._noise())
            client.settimeout(2)
            with contextlib.suppress(TimeoutError):
                client.recv(65536)
            client.sendall(self._noise())
        except OSError:
            pass
        finally:
            self._forget(client)

    def _noise(self) -> bytes:
        with self._lock:
            return self._random.randbytes(GARBAGE_BYTES)

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        peer = {client: server, server: client}
        with selectors.DefaultSelector() as sel:
            sel.register(client, selectors.EVENT_READ)
            sel.register(server, selectors.EVENT_READ)
            while not self._closed.is_set():
                mode = self._mode
                if mode == "refuse":
                    return  # both ends were reset
                if mode == "hang":  # hold both ends; read nothing, forward nothing
                    self._closed.wait(0.05)
                    continue
                if mode == "garbage":
                    with contextlib.suppress(OSError):
                        client.sendall(self._noise())
                    return
                for key, _ in sel.select(timeout=0.05):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = src.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        for sock in (client, server):
                            with contextlib.suppress(OSError):
                                sock.shutdown(socket.SHUT_RDWR)
                        return
                    try:
                        self._send(peer[src], data, trickle=src is server and mode == "slow")
                    except OSError:
                        return

    def _send(self, dst: socket.socket, data: bytes, *, trickle: bool) -> None:
        if not trickle:
            dst.sendall(data)
            return
        for start in range(0, len(data), self.slow_chunk):
            if self._closed.wait(self.slow_delay_s):
                return
            dst.sendall(data[start : start + self.slow_chunk])
