"""Connections to libvirt that can neither hang nor outlive a dead daemon.

Two guards, because libvirt's client calls block without a deadline of their own:

* every call sequence runs in a daemon worker thread and the caller waits at most
  ``timeout_s`` (:func:`call_with_deadline`); a hung daemon costs the caller a timeout, never
  the daemon's main loop, and the abandoned thread cannot keep the process alive;
* libvirt keepalive (which needs an event loop: :func:`ensure_event_loop` registers libvirt's
  default one once per process and runs it in a daemon thread) closes a remote connection whose
  peer stopped answering, so the abandoned thread ends too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

import libvirt
from pydantic import SecretStr

from resmon.contract import TargetTimeout

__all__ = ["call_with_deadline", "ensure_event_loop", "open_connection"]

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
) -> T:
    """Run ``fn`` in a daemon thread; raise TargetTimeout when it takes over ``timeout_s``.

    ``on_abandon`` receives a result that arrives after the caller gave up (to close a
    connection that opened too late).
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

    threading.Thread(target=run, name=f"resmon-libvirt:{target}", daemon=True).start()
    try:
        return future.result(timeout=timeout_s)
    except FutureTimeout:
        with lock:
            if not future.done():
                abandoned = True
        if future.done():  # it finished between the timeout and the lock: use it after all
            return future.result()
        raise TargetTimeout(f"{what}: no answer within {timeout_s:g}s", target=target) from None


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
