"""A whole deadline for one WinRM collection, enforced on the session's sockets.

pywinrm only bounds each socket read (``read_timeout_sec``): on a link that trickles a byte now
and then, every read succeeds and a collection runs far past the target's timeout, holding its
thread and socket. So the session's connections record their sockets when they connect (the
raw socket, before any TLS handshake: the TLS socket takes over its descriptor), and when the
deadline passes a timer shuts every one of them down (``shutdown`` wakes a ``recv`` or a
handshake blocked in another thread; the owner still closes the descriptor). The cleanup that
follows (signal the command, delete the shell: a host keeps a user's shells up to a quota) opens
new connections; they get a grace as long again, then they are shut down too.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import cached_property

import requests
import winrm.transport
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["DeadlineTransport"]


def _shut_down(fd: int, inode: int) -> None:
    """Shut down the socket recorded as (fd, inode), if that descriptor still refers to it."""
    try:
        pinned = os.dup(fd)  # holds the socket, so the check below cannot race a close and reuse
    except OSError:
        return
    try:
        if os.fstat(pinned).st_ino == inode:
            with socket.socket(fileno=pinned) as sock, suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            return
    except OSError:
        pass
    os.close(pinned)


class _Sockets:
    """The sockets a session's connections opened, to shut down when a deadline passes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._opened: set[tuple[int, int]] = set()
        #: The deadline passed: the sockets open then were shut down.
        self.expired = threading.Event()
        #: The cleanup's grace passed too: every socket, even one opened later, is shut down.
        self._refused = threading.Event()

    def record(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        entry = (fd, os.fstat(fd).st_ino)
        with self._lock:
            self._opened.add(entry)
        if self._refused.is_set():
            _shut_down(*entry)

    def shut_down(self, *, refuse_new: bool) -> None:
        self.expired.set()
        if refuse_new:
            self._refused.set()
        with self._lock:
            opened = list(self._opened)
        for entry in opened:
            _shut_down(*entry)

    def start(self) -> None:
        """A new deadline: forget the sockets closed since (their descriptor is gone or reused)."""
        self.expired.clear()
        self._refused.clear()
        with self._lock:
            self._opened = {entry for entry in self._opened if _still_open(*entry)}


def _still_open(fd: int, inode: int) -> bool:
    try:
        return os.fstat(fd).st_ino == inode
    except OSError:
        return False


class _RecordingAdapter(HTTPAdapter):
    """requests' default adapter, but its connections record their sockets."""

    def __init__(self, sockets: _Sockets) -> None:
        super().__init__()

        class Connection(HTTPConnection):
            def _new_conn(self) -> socket.socket:
                sock = super()._new_conn()
                sockets.record(sock)
                return sock

        class TLSConnection(HTTPSConnection):
            def _new_conn(self) -> socket.socket:
                sock = super()._new_conn()
                sockets.record(sock)
                return sock

        class Pool(HTTPConnectionPool):
            ConnectionCls = Connection

        class TLSPool(HTTPSConnectionPool):
            ConnectionCls = TLSConnection

        self.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": TLSPool}


class DeadlineTransport(winrm.transport.Transport):
    """pywinrm's transport whose session's sockets can be shut down at a deadline.

    The recording adapter is mounted before the session's first request: ``build_session`` sends
    one itself when it sets up message encryption (NTLM or Kerberos over plain http).
    """

    @cached_property
    def _sockets(self) -> _Sockets:
        return _Sockets()

    def _mount(self, session: requests.Session) -> None:
        if not isinstance(session.get_adapter("https://"), _RecordingAdapter):
            adapter = _RecordingAdapter(self._sockets)
            session.mount("http://", adapter)
            session.mount("https://", adapter)

    def setup_encryption(self, session: requests.Session) -> None:
        self._mount(session)
        super().setup_encryption(session)

    def build_session(self) -> requests.Session:
        session = super().build_session()
        self._mount(session)
        return session

    @contextmanager
    def deadline(self, seconds: float, grace_s: float) -> Iterator[threading.Event]:
        """Within the block, the session's sockets are shut down once ``seconds`` have passed,
        and again, with any opened since, ``grace_s`` later (the cleanup's allowance). The event
        yielded tells whether the deadline passed. The watching thread ends with the block."""
        sockets, stop = self._sockets, threading.Event()
        sockets.start()

        def watch() -> None:
            if not stop.wait(seconds):
                sockets.shut_down(refuse_new=False)
                if not stop.wait(grace_s):
                    sockets.shut_down(refuse_new=True)

        watcher = threading.Thread(target=watch, name="winrm-deadline", daemon=True)
        watcher.start()
        try:
            yield sockets.expired
        finally:
            stop.set()
            watcher.join()
