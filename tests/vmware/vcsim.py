"""Build and run the vCenter simulator (tests/vmware/vcsim/main.go) on loopback.

Its test hooks (``set_host_state``, ``set_mount``) change what the vSphere API cannot; main.go
says where it corrects the simulator's figures to what vSphere documents.

Shared by the tests and by bench/vmware_collect.py. The binary is built once, in GOPATH mode
against Debian's golang-github-vmware-govmomi-dev, into tests/.build/ (gitignored).
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(__file__).resolve().parent / "vcsim" / "main.go"
BUILD_DIR = REPO_ROOT / "tests" / ".build"
GOCODE = Path(os.environ.get("RESMON_GOCODE", "/usr/share/gocode"))
BINARY = BUILD_DIR / "vcsim"


class SimulatorUnavailable(RuntimeError):
    """Go or the govmomi sources are missing, or the build failed."""


def build() -> Path:
    """Build the simulator unless a binary newer than its source exists; return its path."""
    if BINARY.exists() and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime:
        return BINARY
    go = shutil.which("go")
    if go is None:
        raise SimulatorUnavailable("the go toolchain is not installed (Debian: golang-go)")
    if not (GOCODE / "src/github.com/vmware/govmomi/simulator").is_dir():
        raise SimulatorUnavailable(
            f"govmomi sources not found under {GOCODE} (Debian: golang-github-vmware-govmomi-dev)"
        )
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        GO111MODULE="off",
        GOPATH=f"{BUILD_DIR / 'gopath'}:{GOCODE}",
        GOCACHE=str(BUILD_DIR / "gocache"),
        GOFLAGS="",
    )
    tmp = BINARY.with_suffix(".tmp")
    result = subprocess.run(
        [go, "build", "-o", str(tmp), str(SOURCE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise SimulatorUnavailable(f"go build failed:\n{result.stderr[-4000:]}")
    tmp.replace(BINARY)
    return BINARY


@dataclass
class Simulator:
    """A running simulator; ``url`` is its SDK URL, ``cert`` the PEM of its TLS certificate."""

    process: subprocess.Popen[str]
    url: str
    cert: Path | None
    workdir: Path
    args: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.url.rsplit("/sdk", 1)[0]

    def _hook(self, path: str, **form: str) -> str:
        request = urllib.request.Request(
            f"{self.base}/resmon/{path}", data=urllib.parse.urlencode(form).encode()
        )
        context = ssl.create_default_context(cafile=str(self.cert)) if self.cert else None
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:
            return str(answer.read().decode().strip())

    def set_host_state(self, host: str, *, connection: str = "", power: str = "") -> str:
        """Test hook: force a host's connection/power state (returns its managed-object id)."""
        return self._hook("host-state", host=host, connection=connection, power=power)

    def set_mount(self, host: str, datastore: str, *, accessible: bool) -> str:
        """Test hook: the datastore's ``host[].mountInfo.accessible`` for that host (False: all
        paths down); returns the datastore's managed-object id."""
        return self._hook(
            "mount", host=host, datastore=datastore, accessible=str(accessible).lower()
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self) -> None:
        """Die abruptly (SIGKILL), as a crashed vCenter would."""
        self.process.kill()
        self.process.wait(timeout=10)


def start(
    *,
    esx: bool = False,
    dc: int = 1,
    cluster: int = 1,
    host: int = 3,
    standalone: int = 1,
    vm: int = 2,
    ds: int = 1,
    tls: bool = True,
    listen: str = "127.0.0.1:0",
    username: str = "",
    password: str = "",
    extra: Sequence[str] = (),
) -> Simulator:
    """Start the simulator and wait for its URL line; ``extra``: more flags (-host-*, -guests)."""
    binary = build()
    workdir = Path(tempfile.mkdtemp(prefix="resmon-vcsim-"))
    cert = workdir / "cert.pem" if tls else None
    args = [
        str(binary),
        f"-esx={str(esx).lower()}",
        f"-dc={dc}",
        f"-cluster={cluster}",
        f"-host={host}",
        f"-standalone-host={standalone}",
        f"-vm={vm}",
        f"-ds={ds}",
        f"-tls={str(tls).lower()}",
        f"-listen={listen}",
        f"-username={username}",
        f"-password={password}",
    ]
    if cert is not None:
        args.append(f"-cert-out={cert}")
    args[1:1] = extra  # first: tests read the credentials from the end of args
    # The simulator keeps datastore directories under TMPDIR; keep them in our workdir.
    env = dict(os.environ, TMPDIR=str(workdir))
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=workdir
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("http"):
        process.kill()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
        raise SimulatorUnavailable(f"simulator did not start ({' '.join(args)}): {line!r}")
    return Simulator(process=process, url=line, cert=cert, workdir=workdir, args=args)
