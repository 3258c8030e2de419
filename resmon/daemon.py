"""The daemon: collects every target on its own interval, writes to the store, serves the API.

Collections run in worker threads; finished collections go to a :class:`StoreWriter`, whose own
thread writes each in one transaction, so a database that stops answering never stalls the
schedule, the API or shutdown. A collection is limited as a whole (building its collector and
collecting) by its target's ``timeout_s``: past it, the collection is recorded as a ``timeout``
failure and its collector is abandoned, so a hung hypervisor never stalls the others.

With a ``[placement]`` table, the daemon also syncs into OpenStack Placement every
``interval_s`` (:mod:`exporters.placement_periodic`): the sync holds a lease like a target's, so
one replica runs it, and runs in its own thread, so nothing here ever waits for Placement.

``resmon collect`` runs one round through the same machinery with no store (``store=None``), so
a collection is bounded the same way whichever command runs it.

On SIGTERM/SIGINT the daemon stops within ``[resmon] shutdown_grace_s``: collections that finish
within the grace are stored, those still running are dropped (their targets keep what was stored
before), and nothing waits for an abandoned collector.
"""

from __future__ import annotations

import functools
import heapq
import logging
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from resmon.config import ConfigError, ResmonConfig, TargetConfig
from resmon.contract import Collector, IncompatibleContract, ProviderKind, TargetTimeout
from resmon.leases import Leases, open_leases
from resmon.registry import CollectorNotFound, load_collector
from resmon.runner import CollectionOutcome, collect_target
from resmon.store import Store, StoreWriter, TargetSpec, start_pruning

__all__ = ["ApiBindError", "Daemon", "PeriodicTask", "install_stop_signals", "start_api_server"]

log = logging.getLogger("resmon.daemon")

#: Longest the scheduling loop sleeps: how fast it notices anything not signalled to it.
_TICK_S = 0.5
#: How often a due Placement sync looks again whether every target was collected once.
_SYNC_WAIT_S = 2.0


class PeriodicTask(Protocol):
    """A task of the daemon's own, leased like a target (``spec`` names its row): the Placement
    sync (:class:`exporters.placement_periodic.PlacementSyncTask`)."""

    spec: TargetSpec

    def waiting(self) -> bool: ...
    def trigger(self) -> bool: ...
    def set_lease_held(self, held: bool) -> None: ...
    def cancel(self) -> None: ...
    def stop(self, timeout_s: float) -> None: ...


class ApiBindError(Exception):
    """The API's address cannot be listened on."""


@dataclass(order=True)
class _Due:
    at: float
    name: str = field(compare=False)


@dataclass
class _Running:
    """One collection handed to the workers. ``started``/``finished`` (time.monotonic()) are set
    by the worker: the timeout counts from when the collection really starts, not from when it
    was queued behind others."""

    future: Future[tuple[CollectionOutcome, Collector | None]]
    submitted_at: datetime
    started: float | None = None
    finished: float | None = None

    def deadline(self, timeout_s: float) -> float | None:
        return None if self.started is None else self.started + timeout_s

    def took(self, now: float) -> float:
        """How long the collection ran (so far); 0 if it never started."""
        if self.started is None:
            return 0.0
        return (self.finished if self.finished is not None else now) - self.started


class _WorkerPool:
    """A fixed number of daemon worker threads.

    Unlike ``ThreadPoolExecutor``, whose threads the interpreter joins at exit, a worker stuck in
    an abandoned collector cannot hold the process after the daemon decided to stop.
    """

    def __init__(self, workers: int) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._threads = [
            threading.Thread(target=self._work, name=f"resmon-collect-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self._jobs.put((fn, future))
        return future

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)

    def shutdown(self) -> None:
        """Cancel what has not started; stuck workers are left to die with the process."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job[1].cancel()
        for _ in self._threads:
            self._jobs.put(None)


def install_stop_signals(stop_event: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop_event`` (the daemon's loop sees it within a tick)."""

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)


class Daemon:
    """Periodic collection of the configured targets into ``store``.

    With ``store=None`` nothing is stored and only :meth:`run` with ``once`` is possible (one
    bounded round whose outcomes are returned). ``dump_native_dir``: each target saves the
    native data it reads in a subdirectory of that name.
    """

    def __init__(
        self,
        config: ResmonConfig,
        store: Store | None,
        *,
        on_outcome: Callable[[CollectionOutcome], None] | None = None,
        stop_event: threading.Event | None = None,
        dump_native_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.dump_native_dir = dump_native_dir
        self.on_outcome = on_outcome
        #: Set to stop (a signal handler installed before the daemon existed may set it).
        self.stop_event = stop_event or threading.Event()
        #: Set on anything the scheduling loop must look at now (a collection ended, a stop).
        self._wake = threading.Event()
        self._targets: dict[str, TargetConfig] = {t.name: t for t in config.targets}
        self._instances: dict[str, Collector | None] = {}
        self._pool = _WorkerPool(config.resmon.max_workers)
        self._writer = StoreWriter(store) if store is not None else None
        self._server: Any = None
        self.leases: Leases | None = None
        #: The periodic Placement sync, with a [placement] table.
        self.placement: PeriodicTask | None = None
        if config.placement is not None and store is not None:
            try:
                from exporters.placement_periodic import PlacementSyncTask
            except ImportError as exc:
                raise ConfigError(
                    f"[placement] needs the placement extra (pip install 'resmon[placement]'): "
                    f"{exc}"
                ) from None
            self.placement = PlacementSyncTask(
                store, config.placement, targets=[t.name for t in config.targets]
            )

    # -- lifecycle ----------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        install_stop_signals(self.stop_event)

    def stop(self) -> None:
        self.stop_event.set()
        self._wake.set()

    def run(self, *, once: bool = False) -> list[CollectionOutcome]:
        """Collect until stopped (or one round with ``once``); returns the outcomes of the
        round when ``once`` is set."""
        store = self.store
        if store is not None:
            store.sync_targets([t.spec() for t in self.config.targets])
        if once:
            try:
                return self.run_round()
            finally:
                if self._writer is not None:
                    self._writer.flush()
                self.shutdown()
        if store is None:
            raise ValueError("a daemon without a store can only collect once")
        # Which targets this daemon collects (all of them, unless replicas share PostgreSQL), and
        # whether it runs the Placement sync (a lease like a target's).
        intervals = {n: t.interval_s for n, t in self._targets.items()}
        if self.placement is not None:
            store.sync_targets([self.placement.spec])
            intervals[self.placement.spec.name] = self.placement.spec.interval_s
        leases = self.leases = open_leases(
            store, intervals,
            ttl_s=self.config.replicas.lease_ttl_s, replica_id=self.config.replicas.replica_id,
        )  # fmt: skip
        retention = self.config.retention
        assert self._writer is not None  # made with the store
        start_pruning(store, retention.policy(), interval_s=retention.interval_s,
                      stop=self.stop_event, exclusive=self._writer.exclusive)  # fmt: skip
        due: list[_Due] = []
        running: dict[str, _Running] = {}
        try:
            while not self.stop_event.is_set():
                self._schedule(due, running)
                self._reap(running)
                self._sleep(due, running)
        finally:
            self._stop(running)
            leases.close()
        return []

    def run_round(self) -> list[CollectionOutcome]:
        """Collect every target once, concurrently, and store each outcome."""
        running = {name: self._start(t) for name, t in sorted(self._targets.items())}
        outcomes: list[CollectionOutcome] = []
        while running and not self.stop_event.is_set():
            outcomes += self._reap(running)
            self._sleep([], running)
        return outcomes

    def shutdown(self) -> None:
        self._pool.shutdown()
        for name, instance in list(self._instances.items()):
            if instance is not None:
                try:
                    instance.close()
                except Exception:  # close() must not raise; nothing more to do at exit
                    log.debug("close() of %s raised at shutdown", name, exc_info=True)
        self._instances.clear()

    def _schedule(self, due: list[_Due], running: dict[str, _Running]) -> None:
        now = time.monotonic()
        assert self.leases is not None
        for name, delay in sorted(self.leases.tick().items()):  # newly held targets
            due[:] = [d for d in due if d.name != name] + [_Due(now + delay, name)]
            heapq.heapify(due)
        task = self.placement
        if task is not None:
            task.set_lease_held(self.leases.holds(task.spec.name))
        while due and due[0].at <= now:
            name = heapq.heappop(due).name
            if not self.leases.holds(name):
                continue  # given up or lost: its new holder schedules it
            if task is not None and name == task.spec.name:
                self._sync_placement(due)
                continue
            if name not in running and self.leases.start(name):
                running[name] = self._start(self._targets[name])
            # From the start, not the due time: never two starts within the interval.
            heapq.heappush(due, _Due(time.monotonic() + self._targets[name].interval_s, name))

    def _sync_placement(self, due: list[_Due]) -> None:
        """The Placement sync is due and its lease is this daemon's: start it in its thread."""
        task = self.placement
        assert task is not None and self.leases is not None
        name, interval = task.spec.name, task.spec.interval_s
        if task.waiting():  # until every target was collected once
            heapq.heappush(due, _Due(time.monotonic() + _SYNC_WAIT_S, name))
            return
        if self.leases.start(name):
            task.trigger()
        heapq.heappush(due, _Due(time.monotonic() + interval, name))

    def _sleep(self, due: list[_Due], running: dict[str, _Running]) -> None:
        """Until the next collection is due or the next running one reaches its timeout."""
        wakes = [d.at for d in due[:1]]
        for name, job in running.items():
            deadline = job.deadline(self._targets[name].timeout_s)
            if deadline is not None:
                wakes.append(deadline)
        wait = min(wakes, default=time.monotonic() + _TICK_S) - time.monotonic()
        self._wake.wait(timeout=min(max(wait, 0.01), _TICK_S))
        self._wake.clear()

    def _stop(self, running: dict[str, _Running]) -> None:
        """Within the grace: store what finishes, drop what does not, release everything."""
        grace_s = self.config.resmon.shutdown_grace_s
        log.info("stopping within %gs (%d collections running)", grace_s, len(running))
        grace_end = time.monotonic() + grace_s
        if self.placement is not None:
            self.placement.cancel()  # no request to Placement starts from now on
        while running and time.monotonic() < grace_end:
            self._reap(running)
            if running:
                self._wake.wait(timeout=min(_TICK_S, max(grace_end - time.monotonic(), 0)))
                self._wake.clear()
        for name in running:
            log.warning("target %s: collection still running at shutdown, dropped", name)
        if self._writer is not None:
            self._writer.close(max(grace_end - time.monotonic(), 0.0))
        if self.placement is not None:
            self.placement.stop(grace_end - time.monotonic())
        closer = threading.Thread(target=self.shutdown, name="resmon-close", daemon=True)
        closer.start()
        closer.join(timeout=max(grace_end - time.monotonic(), 0.5))
        if closer.is_alive():
            log.warning("stopping: a collector did not close in time; leaving it behind")

    # -- one collection ---------------------------------------------------------------------

    def _start(self, target_config: TargetConfig) -> _Running:
        job = _Running(future=Future(), submitted_at=datetime.now(UTC))
        job.future = self._pool.submit(lambda: self._collect(target_config, job))
        return job

    def _collect(
        self, target_config: TargetConfig, job: _Running
    ) -> tuple[CollectionOutcome, Collector | None]:
        job.started = time.monotonic()
        try:
            return self._collect_now(target_config)
        finally:
            job.finished = time.monotonic()
            self._wake.set()

    def _collect_now(
        self, target_config: TargetConfig
    ) -> tuple[CollectionOutcome, Collector | None]:
        started_at = datetime.now(UTC)
        try:
            collector_cls = load_collector(target_config.collector)
            dump_dir = None
            if self.dump_native_dir is not None:
                dump_dir = self.dump_native_dir / target_config.name
                dump_dir.mkdir(parents=True, exist_ok=True)
            target = target_config.resolve(dump_native_dir=dump_dir)
        except (CollectorNotFound, IncompatibleContract, ConfigError) as exc:
            kind = "incompatible_contract" if isinstance(exc, IncompatibleContract) else "config"
            return (
                CollectionOutcome(
                    target=target_config.name,
                    collector=target_config.collector,
                    started_at=started_at,
                    duration_s=0.0,
                    error_kind=kind,
                    error_message=str(exc),
                ),
                None,
            )
        instance = self._instances.pop(target_config.name, None)
        return collect_target(
            collector_cls, target, instance=instance, policy=self.config.policy_for(target_config)
        )

    def _reap(self, running: dict[str, _Running]) -> list[CollectionOutcome]:
        """Take the collections that finished or ran out of time; hand them to the writer."""
        finished: list[CollectionOutcome] = []
        now = time.monotonic()
        for name, job in list(running.items()):
            target_config = self._targets[name]
            timeout_s = target_config.timeout_s
            if job.future.done():
                try:
                    outcome, instance = job.future.result()
                except Exception as exc:  # a bug of the daemon's own: the target fails, we go on
                    log.exception("target %s: the collection crashed", name)
                    outcome, instance = self._crashed(target_config, job, exc), None
                took = job.took(now)
                if took > timeout_s:
                    # Finished, but later than the limit: the whole collection is what counts.
                    if instance is not None:
                        self._close_late(name, instance)
                    outcome = self._timeout(target_config, job, took)
                else:
                    self._instances[name] = instance
            elif (deadline := job.deadline(timeout_s)) is not None and now >= deadline:
                outcome = self._timeout(target_config, job, job.took(now))
                self._instances[name] = None
                # Abandoned, not forgotten: a collector that still returns is closed then.
                job.future.add_done_callback(functools.partial(self._close_abandoned, name))
            else:
                continue
            del running[name]
            self._finish(target_config, outcome)
            finished.append(outcome)
        return finished

    def _timeout(
        self, target_config: TargetConfig, job: _Running, elapsed: float
    ) -> CollectionOutcome:
        error = TargetTimeout(
            f"collection did not finish within timeout_s = {target_config.timeout_s:g}s",
            target=target_config.name,
        )
        return CollectionOutcome(
            target=target_config.name,
            collector=target_config.collector,
            started_at=job.submitted_at,
            duration_s=elapsed,
            error_kind=error.kind,
            error_message=error.message,
        )

    def _crashed(
        self, target_config: TargetConfig, job: _Running, exc: Exception
    ) -> CollectionOutcome:
        return CollectionOutcome(
            target=target_config.name,
            collector=target_config.collector,
            started_at=job.submitted_at,
            duration_s=job.took(time.monotonic()),
            error_kind="internal_error",
            error_message=f"{type(exc).__name__}: {exc}",
        )

    def _close_abandoned(
        self, name: str, done: Future[tuple[CollectionOutcome, Collector | None]]
    ) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        _, instance = done.result()
        if instance is not None:
            log.debug("target %s: closing a collector that returned after its timeout", name)
            self._close_late(name, instance)

    def _close_late(self, name: str, instance: Collector) -> None:
        try:
            instance.close()
        except Exception:  # close() must not raise; the timeout already stands
            log.debug("close() of %s raised after a late collection", name, exc_info=True)

    def _finish(self, target_config: TargetConfig, outcome: CollectionOutcome) -> None:
        hosts = sum(1 for r in outcome.reports if r.provider_kind is ProviderKind.COMPUTE_HOST)
        if outcome.ok:
            log.info(
                "target %s: ok, %d hosts, %d providers, %.3fs",
                outcome.target, hosts, len(outcome.reports), outcome.duration_s,
            )  # fmt: skip
        else:
            log.warning(
                "target %s: failed after %.3fs: %s: %s",
                outcome.target, outcome.duration_s, outcome.error_kind, outcome.error_message,
            )  # fmt: skip
        if self._writer is not None:
            self._writer.submit(target_config.spec(), outcome)
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    # -- API server ------------------------------------------------------------------------

    def start_server(self) -> None:
        """Serve the API and /metrics on the configured address in a background thread."""
        address = self.config.resmon.listen_address()
        if address is None or self.store is None:
            return
        self._server = start_api_server(self.config, self.store, address, placement=self.placement)

    def stop_server(self) -> None:
        if self._server is not None:
            self._server.should_exit = True


def _bind(address: tuple[str, int]) -> socket.socket:
    host, port = address
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ApiBindError(f"cannot listen on {host}:{port} ([resmon] listen): {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise ApiBindError(f"cannot listen on {host}:{port} ([resmon] listen): {reason}") from None
    return sock


def start_api_server(
    config: ResmonConfig,
    store: Store,
    address: tuple[str, int],
    *,
    placement: PeriodicTask | None = None,
) -> Any:
    """Start uvicorn with the exporters' app in a daemon thread; returns the server. With
    ``placement`` (the daemon's Placement sync task), ``/metrics`` and ``/v1/placement/status``
    show its syncs.

    The socket is bound here, before anything is collected, so an address in use is an error
    the caller sees (:class:`ApiBindError`) rather than a server thread that quietly died.
    """
    import uvicorn

    from exporters.api import SERVER_OPTIONS, create_app

    sock = _bind(address)
    app = create_app(
        store,
        api_tokens=config.resmon.api_tokens(),
        stale_after_s=config.resmon.stale_after_s,
        placement=placement,
        answer_cache_bytes=config.resmon.answer_cache_mib * 1024 * 1024,
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host=address[0], port=address[1], log_level="warning", **SERVER_OPTIONS)
    )
    # uvicorn installs signal handlers only in the main thread; the daemon keeps its own.
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="resmon-api", daemon=True
    )
    thread.start()
    return server
