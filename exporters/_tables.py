"""The store's tables as SQLAlchemy Core tables, for the exporters' reads.

The exporters read in bulk with Core (tuples, not ORM objects: a scrape or a candidates query
touches thousands of rows); every module takes its tables from here.
"""

from __future__ import annotations

from sqlalchemy import Table

from resmon.store import models

__all__ = [
    "ANOMALIES",
    "CHANGES",
    "COUNTS",
    "HOSTS",
    "INVENTORIES",
    "LEASES",
    "NUMA_CELLS",
    "RUNS",
    "SUPPORTED_INSTANCES",
    "TARGETS",
    "TRAITS",
]


def _table(model: type[models.Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


HOSTS = _table(models.Host)
INVENTORIES = _table(models.Inventory)
TRAITS = _table(models.HostTrait)
SUPPORTED_INSTANCES = _table(models.SupportedInstance)
NUMA_CELLS = _table(models.NumaCell)
ANOMALIES = _table(models.Anomaly)
CHANGES = _table(models.CapacityChange)
COUNTS = _table(models.CollectionCount)
TARGETS = _table(models.Target)
RUNS = _table(models.CollectionRun)
LEASES = _table(models.TargetLease)
