"""The daemon: collects every target on its own interval, writes to the store, serves the API.

Collections run in worker threads; the store is written from the scheduling thread only, one
transaction per collection. A collection that outlives its target's timeout is recorded as a
``timeout`` failure and its collector is abandoned, so a hung hypervisor never stalls the others.
"""

from __future__ import annotations

import heapq
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from resmon.config import ConfigError, ResmonConfig, TargetConfig
from resmon.contract import Collector, IncompatibleContract, TargetTimeout
from resmon.leases import Leases, open_leases
from resmon.registry import CollectorNotFound, load_collector
from resmon.runner import CollectionOutcome, collect_target
from resmon.store import Store, StoreError, start_pruning

__all__ = ["Daemon", "GRACE_S"]

log = logging.getLogger("resmon.daemon")

#: Extra time a collection gets beyond its timeout before the daemon gives up on it; the
#: collector's own per-call timeouts should fire first and report more precisely.
GRACE_S = 5.0


@dataclass(order=True)
class _Due:
    at: float
    name: str = field(compare=False)


@dataclass
class _Running:
    future: Future[tuple[CollectionOutcome, Collector | None]]
    started: float  # time.monotonic() at submission
    deadline: float
    started_at: datetime


class Daemon:
    """Periodic collection of the configured targets into ``store``."""

    def __init__(
        self,
        config: ResmonConfig,
        store: Store,
        *,
        on_outcome: Callable[[CollectionOutcome], None] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.on_outcome = on_outcome
        self.stop_event = threading.Event()
        self._targets: dict[str, TargetConfig] = {t.name: t for t in config.targets}
        self._instances: dict[str, Collector | None] = {}
        self._pool = ThreadPoolExecutor(
            max_workers=config.resmon.max_workers, thread_name_prefix="resmon-collect"
        )
        self._server: Any = None
        self.leases: Leases | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        def _stop(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s, stopping", signal.Signals(signum).name)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)

    def run(self, *, once: bool = False) -> list[CollectionOutcome]:
        """Collect until stopped (or one round with ``once``); returns the outcomes of the
        last round when ``once`` is set."""
        self.store.sync_targets([t.spec() for t in self.config.targets])
        if once:
            return self.run_round()
        leases = self.leases = open_leases(
            self.store, {n: t.interval_s for n, t in self._targets.items()},
            ttl_s=self.config.replicas.lease_ttl_s, replica_id=self.config.replicas.replica_id,
        )  # fmt: skip
        retention = self.config.retention
        start_pruning(self.store, retention.policy(), interval_s=retention.interval_s,
                      stop=self.stop_event)  # fmt: skip
        queue: list[_Due] = []
        running: dict[str, _Running] = {}
        try:
            while not self.stop_event.is_set():
                now = time.monotonic()
                for name, delay in sorted(leases.tick().items()):  # newly held targets
                    queue = [due for due in queue if due.name != name] + [_Due(now + delay, name)]
                    heapq.heapify(queue)
                while queue and queue[0].at <= now:
                    due = heapq.heappop(queue)
                    if not leases.holds(due.name):
                        continue  # given up or lost: its new holder schedules it
                    if due.name not in running and leases.start(due.name):
                        running[due.name] = self._start(self._targets[due.name])
                    # From the start, not the due time: never two starts within the interval.
                    interval = self._targets[due.name].interval_s
                    heapq.heappush(queue, _Due(time.monotonic() + interval, due.name))
                self._reap(running, block=False)
                wait = min([queue[0].at - time.monotonic()] if queue else [1.0])
                self.stop_event.wait(timeout=max(0.05, min(wait, 0.5)))
        finally:
            self.shutdown()
            leases.close()
        return []

    def run_round(self) -> list[CollectionOutcome]:
        """Collect every target once, concurrently, and store each outcome."""
        running = {name: self._start(t) for name, t in sorted(self._targets.items())}
        outcomes: list[CollectionOutcome] = []
        while running:
            outcomes += self._reap(running, block=True)
        return outcomes

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for name, instance in list(self._instances.items()):
            if instance is not None:
                try:
                    instance.close()
                except Exception:  # close() must not raise; nothing more to do at exit
                    log.debug("close() of %s raised at shutdown", name, exc_info=True)
        self._instances.clear()

    # -- one collection ---------------------------------------------------------------------

    def _start(self, target_config: TargetConfig) -> _Running:
        started_at, started = datetime.now(UTC), time.monotonic()
        future = self._pool.submit(self._collect, target_config)
        deadline = started + target_config.timeout_s + GRACE_S
        return _Running(future=future, started=started, deadline=deadline, started_at=started_at)

    def _collect(self, target_config: TargetConfig) -> tuple[CollectionOutcome, Collector | None]:
        started_at = datetime.now(UTC)
        try:
            collector_cls = load_collector(target_config.collector)
            target = target_config.resolve()
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
        return collect_target(collector_cls, target, instance=instance)

    def _reap(self, running: dict[str, _Running], *, block: bool) -> list[CollectionOutcome]:
        finished: list[CollectionOutcome] = []
        for name, job in list(running.items()):
            target_config = self._targets[name]
            if block and not job.future.done():
                remaining = job.deadline - time.monotonic()
                try:
                    job.future.result(timeout=max(remaining, 0))
                except Exception:  # outcome handled below; _collect itself never raises
                    pass
            if job.future.done():
                outcome, instance = job.future.result()
                self._instances[name] = instance
            elif time.monotonic() >= job.deadline:
                log.warning("target %s: collection exceeded %.0fs, abandoned", name,
                            target_config.timeout_s + GRACE_S)  # fmt: skip
                error = TargetTimeout(
                    f"collection did not finish within {target_config.timeout_s:.0f}s "
                    f"(+{GRACE_S:.0f}s grace)"
                )
                outcome = CollectionOutcome(
                    target=name,
                    collector=target_config.collector,
                    started_at=job.started_at,
                    duration_s=time.monotonic() - job.started,
                    error_kind=error.kind,
                    error_message=error.message,
                )
                self._instances[name] = None
            else:
                continue
            del running[name]
            self._store(target_config, outcome)
            finished.append(outcome)
        return finished

    def _store(self, target_config: TargetConfig, outcome: CollectionOutcome) -> None:
        try:
            self.store.record(target_config.spec(), outcome)
        except StoreError as exc:
            log.error("%s", exc)
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    # -- API server ------------------------------------------------------------------------

    def start_server(self) -> None:
        """Serve the API and /metrics on the configured address in a background thread."""
        address = self.config.resmon.listen_address()
        if address is None:
            return
        self._server = start_api_server(self.config, self.store, address)

    def stop_server(self) -> None:
        if self._server is not None:
            self._server.should_exit = True


def start_api_server(config: ResmonConfig, store: Store, address: tuple[str, int]) -> Any:
    """Start uvicorn with the exporters' app in a daemon thread; returns the server."""
    import uvicorn

    from exporters.api import SERVER_OPTIONS, create_app

    app = create_app(
        store,
        api_tokens=config.resmon.api_tokens(),
        stale_after_s=config.resmon.stale_after_s,
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host=address[0], port=address[1], log_level="warning", **SERVER_OPTIONS)
    )
    # uvicorn installs signal handlers only in the main thread; the daemon keeps its own.
    thread = threading.Thread(target=server.run, name="resmon-api", daemon=True)
    thread.start()
    log.info("serving the API and /metrics on http://%s:%d", *address)
    return server
