"""A real libvirtd with QEMU answering ``qemu:///system``, for tests and the benchmark.

A libvirtd that already answers is reused and left alone. Otherwise (root only) the users,
groups and directories the Debian packages would create are created, ``virtlogd`` and
``libvirtd`` are started as daemons with pid files, and :func:`stop` ends exactly those pids.
Tests use :func:`running_or_skip`.
"""

from __future__ import annotations

import grp
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SYSTEM_URI = "qemu:///system"
PID_DIR = Path("/run/resmon-tests")


class DaemonUnavailable(RuntimeError):
    """libvirtd cannot be started here; the message says why."""


@dataclass
class Daemon:
    uri: str
    started_pids: list[int] = field(default_factory=list)
    #: (path, mode, gid) of /dev/kvm before it was opened to the kvm group, to restore.
    kvm_restore: tuple[Path, int, int] | None = None


def answers(uri: str = SYSTEM_URI, timeout_s: float = 30.0) -> bool:
    if shutil.which("virsh") is None:
        return False
    try:
        done = subprocess.run(
            ["virsh", "-c", uri, "uri"], capture_output=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


def _ensure_accounts() -> None:
    """What libvirt-daemon-system's postinst does: the qemu user, its group, the kvm group."""
    for group in ("kvm", "libvirt-qemu"):
        if subprocess.run(["getent", "group", group], capture_output=True).returncode:
            _run("groupadd", "--system", group)
    if subprocess.run(["getent", "passwd", "libvirt-qemu"], capture_output=True).returncode:
        _run(
            "useradd", "--system", "-g", "libvirt-qemu", "-G", "kvm", "-d", "/var/lib/libvirt",
            "-s", "/usr/sbin/nologin", "libvirt-qemu",
        )  # fmt: skip
    for directory in ("/var/log/libvirt", "/var/lib/libvirt", "/var/cache/libvirt", "/run/libvirt"):
        Path(directory).mkdir(parents=True, exist_ok=True)


def _open_kvm_to_group() -> tuple[Path, int, int] | None:
    """udev normally makes /dev/kvm 0660 root:kvm; containers often leave it 0600 root:root."""
    kvm = Path("/dev/kvm")
    if not kvm.exists():
        return None
    st = kvm.stat()
    gid = grp.getgrnam("kvm").gr_gid
    if st.st_gid == gid and st.st_mode & stat.S_IRWXG == stat.S_IRGRP | stat.S_IWGRP:
        return None
    os.chown(kvm, -1, gid)
    os.chmod(kvm, 0o660)
    return kvm, stat.S_IMODE(st.st_mode), st.st_gid


def _start(argv: list[str], pidfile: Path) -> int:
    pidfile.unlink(missing_ok=True)
    subprocess.run([*argv, "-d", "-p", str(pidfile)], check=True, timeout=60)
    deadline = time.monotonic() + 15
    while not pidfile.exists() or not pidfile.read_text().strip():
        if time.monotonic() > deadline:
            raise DaemonUnavailable(f"{argv[0]} wrote no pid file {pidfile}")
        time.sleep(0.1)
    return int(pidfile.read_text().strip())


def start(uri: str = SYSTEM_URI) -> Daemon:
    """A libvirtd answering ``uri``: the running one, or one started here."""
    if answers(uri):
        return Daemon(uri)
    if os.geteuid() != 0:
        raise DaemonUnavailable("qemu:///system does not answer and starting libvirtd needs root")
    for binary in ("libvirtd", "virtlogd", "virsh"):
        if shutil.which(binary) is None:
            raise DaemonUnavailable(f"{binary} is not installed (apt: libvirt-daemon, -clients)")
    _ensure_accounts()
    daemon = Daemon(uri, kvm_restore=_open_kvm_to_group())
    PID_DIR.mkdir(parents=True, exist_ok=True)
    try:
        if not Path("/run/libvirt/virtlogd-sock").exists():
            daemon.started_pids.append(_start(["virtlogd"], PID_DIR / "virtlogd.pid"))
        daemon.started_pids.append(_start(["libvirtd"], PID_DIR / "libvirtd.pid"))
        deadline = time.monotonic() + 60
        while not answers(uri, timeout_s=10):
            if time.monotonic() > deadline:
                raise DaemonUnavailable(f"libvirtd started but {uri} does not answer")
            time.sleep(0.5)
        # A libvirtd that just started probes QEMU on the first request for capabilities
        # (seconds, a minute on a loaded machine). A host's long-running libvirtd has done that
        # long ago: do it here, so tests with a short timeout_s meet the daemon they model.
        subprocess.run(
            ["virsh", "-c", uri, "capabilities"], capture_output=True, timeout=300, check=True
        )
    except (DaemonUnavailable, subprocess.SubprocessError, OSError):
        stop(daemon)
        raise
    return daemon


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(daemon: Daemon) -> None:
    """Stop what :func:`start` started (newest first) and restore /dev/kvm."""
    for pid in reversed(daemon.started_pids):
        if not _alive(pid):
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    daemon.started_pids.clear()
    if daemon.kvm_restore is not None:
        path, mode, gid = daemon.kvm_restore
        os.chown(path, -1, gid)
        os.chmod(path, mode)
        daemon.kvm_restore = None


@contextmanager
def running_or_skip(uri: str = SYSTEM_URI) -> Iterator[Daemon]:
    """For a test: a libvirtd answering ``uri`` while in the block, stopped after if started
    here; the test is skipped, with the reason, where none can be started."""
    import pytest

    try:
        daemon = start(uri)
    except DaemonUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield daemon
    finally:
        stop(daemon)
