"""Connections to libvirt that can neither hang nor outlive a dead daemon.

Two guards, because libvirt's client calls block without a deadline of their own:

* every call sequence runs in a daemon worker thread and the caller waits at most
  ``timeout_s`` (:func:`call_with_deadline`); a hung daemon costs the caller a timeout, never
  the daemon's main loop, and the abandoned thread cannot keep the process alive;
* libvirt keepalive (which needs an event loop: :func:`ensure_event_loop` registers libvirt's
  default one once per process and runs it in a daemon thread) closes a remote connection whose
  peer stopped answering, so the abandoned thread ends too.

Keepalive starts only once a connection is open, and libvirt has no deadline of its own for
opening one: against a peer that accepts and never answers, ``virConnectOpen`` blocks forever.
When an open over a TCP transport (tcp, tls, libssh, libssh2) times out, its socket is found in
``/proc/self`` (a socket created during the attempt, connected to the URI's host and port; opens
to one endpoint take turns so no other attempt can own such a socket) and shut down: libvirt
reads end-of-file, the open fails, and its thread and socket are gone. The socket of an open
that succeeded is remembered the same way: a connection given up later (a read past the timeout
on a link that still trickles bytes, which keepalive cannot tell from a healthy one) is shut
down too, so the read abandoned in its thread ends at once instead of when the last byte
arrives. The ssh transport runs ``ssh``, whose ``ServerAliveInterval`` ends a hung session;
local sockets are not guarded.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

import libvirt
from pydantic import SecretStr

from resmon.contract import TargetTimeout

__all__ = [
    "call_with_deadline",
    "ensure_event_loop",
    "open_connection",
    "open_with_deadline",
]

T = TypeVar("T")

_event_loop_lock = threading.Lock()
_event_loop_started = False


def _run_event_loop() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()


def ensure_event_loop() -> None:
    """Register libvirt's default event implementation and run it, once per process."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=_run_event_loop, name="libvirt-event-loop", daemon=True).start()
        _event_loop_started = True


def call_with_deadline(
    fn: Callable[[], T],
    *,
    timeout_s: float,
    what: str,
    target: str,
    on_abandon: Callable[[T], object] | None = None,
    unblock: Callable[[], object] | None = None,
) -> T:
    """Run ``fn`` in a daemon thread; raise TargetTimeout when it takes over ``timeout_s``.

    ``on_abandon`` receives a result that arrives after the caller gave up (to close a
    connection that opened too late). ``unblock``, called when the caller gives up, makes ``fn``
    return (it shuts down what ``fn`` waits on); the thread is then given a moment to end.
    """
    future: Future[T] = Future()
    lock = threading.Lock()
    abandoned = False

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:  # handed to the caller through the future
            with lock:
                future.set_exception(exc)
            return
        with lock:
            future.set_result(result)
            late = abandoned
        if late and on_abandon is not None:
            on_abandon(result)

    thread = threading.Thread(target=run, name=f"resmon-libvirt:{target}", daemon=True)
    thread.start()
    try:
        return future.result(timeout=timeout_s)
    except FutureTimeout:
        with lock:
            if not future.done():
                abandoned = True
        if future.done():  # it finished between the timeout and the lock: use it after all
            return future.result()
        if unblock is not None:
            unblock()
            thread.join(timeout=_UNBLOCKED_EXIT_S)
        raise TargetTimeout(f"{what}: no answer within {timeout_s:g}s", target=target) from None


#: How long an unblocked open gets to fail and end its thread.
_UNBLOCKED_EXIT_S = 2.0
#: Transports that connect a TCP socket of the process itself, and their default ports.
_TCP_TRANSPORTS = {"tcp": 16509, "tls": 16514, "libssh": 22, "libssh2": 22}
_endpoint_locks: dict[tuple[str, int], threading.Lock] = {}
_endpoint_locks_guard = threading.Lock()


def _tcp_endpoint(uri: str) -> tuple[str, int] | None:
    """``(host, port)`` a libvirt URI connects a TCP socket to, or None (local, ssh, test)."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    _, plus, transport = parts.scheme.partition("+")
    if not parts.hostname:
        return None
    transport = transport.lower() if plus else "tls"  # libvirt's default for a remote host
    if transport not in _TCP_TRANSPORTS:
        return None
    return parts.hostname, port or _TCP_TRANSPORTS[transport]


def _socket_fds() -> dict[int, int]:
    """Socket inode → a descriptor of this process holding it."""
    found: dict[int, int] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # closed meanwhile
            continue
        if link.startswith("socket:["):
            found[int(link[8:-1])] = int(name)
    return found


def _tcp_peers() -> dict[int, tuple[str, int]]:
    """Socket inode → (remote address, remote port) of this process's TCP sockets."""
    peers: dict[int, tuple[str, int]] = {}
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    address, port = fields[2].split(":")
                    # Addresses are 32-bit words in host (little-endian) order.
                    raw = b"".join(
                        bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, len(address), 8)
                    )
                    ip = ipaddress.ip_address(raw)
                    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                        ip = ip.ipv4_mapped
                    peers[int(fields[9])] = (str(ip), int(port, 16))
        except OSError:
            continue
    return peers


class _OpenAttempt:
    """What is needed to find, and shut down, the socket of one open that hangs."""

    def __init__(self, endpoint: tuple[str, int]) -> None:
        self.host, self.port = endpoint
        self.addresses: set[str] = set()
        self.sockets_before: set[int] = set()
        self.abandoned = threading.Event()
        #: Inodes of the socket(s) the open connected, once it succeeded.
        self.opened: set[int] = set()

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Opens to one endpoint take turns, so a new socket to it belongs to this attempt."""
        with _endpoint_locks_guard:
            lock = _endpoint_locks.setdefault((self.host, self.port), threading.Lock())
        with lock:
            if self.abandoned.is_set():
                raise TargetTimeout("gave up before connecting")
            try:
                infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            except OSError:  # libvirt will report the name it cannot resolve
                infos = []
            self.addresses = {str(ipaddress.ip_address(info[4][0])) for info in infos}
            self.sockets_before = set(_socket_fds())
            yield

    def _new_sockets(self) -> dict[int, int]:
        """Inode → descriptor of the sockets to the endpoint created during this attempt."""
        peers = _tcp_peers()
        found = {}
        for inode, fd in _socket_fds().items():
            address, port = peers.get(inode, ("", 0))
            if inode not in self.sockets_before and port == self.port and address in self.addresses:
                found[inode] = fd
        return found

    def remember_opened(self) -> None:
        """Called within the turn once the open succeeded: its socket is the new one."""
        self.opened = set(self._new_sockets())

    def shut_down(self) -> None:
        self.abandoned.set()
        for inode, fd in self._new_sockets().items():
            _shut_down_socket(fd, inode)

    def shut_down_opened(self) -> None:
        """Shut down the socket of the connection this attempt opened (if still open)."""
        for inode, fd in _socket_fds().items():
            if inode in self.opened:
                _shut_down_socket(fd, inode)


def _shut_down_socket(fd: int, inode: int) -> None:
    """Shut down (not close: libvirt owns the descriptor) the socket ``inode`` held by ``fd``."""
    try:
        duplicate = os.dup(fd)
    except OSError:  # closed meanwhile
        return
    if os.fstat(duplicate).st_ino != inode:  # the number was reused meanwhile
        os.close(duplicate)
        return
    sock = socket.socket(fileno=duplicate)
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


def open_with_deadline(
    uri: str,
    *,
    username: str | None,
    password: SecretStr | None,
    read_only: bool,
    timeout_s: float,
    target: str,
    guard: Callable[[Callable[[], Any]], Callable[[], Any]],
    on_abandon: Callable[[Any], object],
) -> tuple[Any, Callable[[], None] | None]:
    """Open ``uri`` within ``timeout_s``; an open that hangs is unblocked and leaves nothing.

    ``guard`` wraps the opening call (error mapping); ``on_abandon`` closes a connection that
    opened after the caller gave up. Returns the connection and, for TCP transports, what shuts
    its socket down (to unblock every call still waiting on a connection given up).
    """
    endpoint = _tcp_endpoint(uri)
    attempt = _OpenAttempt(endpoint) if endpoint is not None else None

    def opening() -> Any:
        if attempt is None:
            return open_connection(uri, username=username, password=password, read_only=read_only)
        with attempt.turn():
            conn = open_connection(uri, username=username, password=password, read_only=read_only)
            attempt.remember_opened()
            return conn

    conn = call_with_deadline(
        guard(opening),
        timeout_s=timeout_s,
        what=f"connecting to {uri}",
        target=target,
        on_abandon=on_abandon,
        unblock=attempt.shut_down if attempt is not None else None,
    )
    return conn, attempt.shut_down_opened if attempt is not None else None


def open_connection(
    uri: str,
    *,
    username: str | None,
    password: SecretStr | None,
    read_only: bool,
) -> Any:
    """Open ``uri`` (blocking: call it through :func:`call_with_deadline`)."""
    flags = libvirt.VIR_CONNECT_RO if read_only else 0
    if username is None and password is None:
        return libvirt.openReadOnly(uri) if read_only else libvirt.open(uri)

    def answer(credentials: list[list[Any]], _data: object) -> int:
        for cred in credentials:
            if cred[0] == libvirt.VIR_CRED_AUTHNAME and username is not None:
                cred[4] = username
            elif cred[0] == libvirt.VIR_CRED_PASSPHRASE and password is not None:
                cred[4] = password.get_secret_value()
            else:
                return -1
        return 0

    auth = [[libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE], answer, None]
    return libvirt.openAuth(uri, auth, flags)
