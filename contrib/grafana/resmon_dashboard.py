"""The resmon Grafana dashboard, built in code with grafanalib.

    python contrib/grafana/resmon_dashboard.py            # rewrites contrib/grafana/resmon.json
    python contrib/grafana/resmon_dashboard.py -          # prints it

Import ``resmon.json`` into Grafana (Dashboards > New > Import) and pick the Prometheus data
source that scrapes resmon and loads ``contrib/prometheus/rules.yml``: the fleet panels read the
series those recording rules write. Edit this file, not the JSON: a test fails when the two differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafanalib._gen import DashboardEncoder
from grafanalib.core import (
    BarGauge,
    Dashboard,
    GridPos,
    RowPanel,
    Stat,
    Table,
    Target,
    Template,
    Templating,
    TimeSeries,
)

OUTPUT = Path(__file__).with_name("resmon.json")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
WIDTH = 24  # Grafana's grid is 24 columns wide


def target(expr: str, legend: str = "", *, instant: bool = False) -> Target:
    return Target(
        expr=expr, legendFormat=legend, instant=instant, datasource=DATASOURCE,
        format="table" if instant else "time_series",
    )  # fmt: skip


class _Layout:
    """Places panels left to right in rows of the grid, a new line when a row is full."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.line_height = 0

    def row(self, title: str) -> RowPanel:
        self.y += self.line_height
        self.x, self.line_height = 0, 0
        panel = RowPanel(title=title, gridPos=GridPos(h=1, w=WIDTH, x=0, y=self.y))
        self.y += 1
        return panel

    def at(self, w: int, h: int = 8) -> GridPos:
        if self.x + w > WIDTH:
            self.y += self.line_height
            self.x, self.line_height = 0, 0
        position = GridPos(h=h, w=w, x=self.x, y=self.y)
        self.x += w
        self.line_height = max(self.line_height, h)
        return position


def panels() -> list[object]:
    grid = _Layout()
    return [
        grid.row("Fleet capacity (clusters counted once; as of each target's last collection)"),
        TimeSeries(
            title="Capacity and free, counted classes (VCPU in CPUs)",
            description="Placement capacity, (total - reserved) x allocation ratio, and what is "
            "free of it, summed over compute hosts and shared storage.",
            dataSource=DATASOURCE, gridPos=grid.at(8),
            targets=[
                target("resmon_class:inventory_capacity_units:sum", "{{resource_class}} capacity"),
                target("resmon_class:inventory_free_units:sum", "{{resource_class}} free"),
            ],
        ),
        TimeSeries(
            title="Capacity and free, memory and disk",
            description="MEMORY_MB and DISK_GB in bytes.",
            dataSource=DATASOURCE, gridPos=grid.at(8), unit="bytes",
            targets=[
                target("resmon_class:inventory_capacity_bytes:sum", "{{resource_class}} capacity"),
                target("resmon_class:inventory_free_bytes:sum", "{{resource_class}} free"),
            ],
        ),
        BarGauge(
            title="Free share of the fleet by class",
            dataSource=DATASOURCE, gridPos=grid.at(8), format="percentunit", min=0, max=1,
            targets=[target("resmon_class:inventory_free:ratio", "{{resource_class}}")],
        ),
        BarGauge(
            title="Free share by cluster and class",
            description="vCenter clusters, from the cluster providers' own inventories.",
            dataSource=DATASOURCE, gridPos=grid.at(12), format="percentunit", min=0, max=1,
            targets=[
                target(
                    "resmon_cluster:inventory_free:ratio",
                    "{{hostname}} ({{target}}) {{resource_class}}",
                )
            ],
        ),
        TimeSeries(
            title="Used by class (Placement allocations)",
            dataSource=DATASOURCE, gridPos=grid.at(12),
            targets=[
                target("resmon_class:inventory_used_units:sum", "{{resource_class}}"),
                target("resmon_class:inventory_used_bytes:sum / 2^30", "{{resource_class}} GiB"),
            ],
        ),
        grid.row("Hosts"),
        TimeSeries(
            title="Compute hosts by state",
            description="Only up hosts are schedulable.",
            dataSource=DATASOURCE, gridPos=grid.at(8), stacking={"mode": "normal"},
            targets=[target("resmon_state:hosts:count", "{{state}}")],
        ),
        BarGauge(
            title="Supported instance coverage",
            description="Share of compute hosts that say they can run each arch/hv_type/vm_mode.",
            dataSource=DATASOURCE, gridPos=grid.at(8), format="percentunit", min=0, max=1,
            targets=[
                target("resmon_instance:hosts:ratio", "{{arch}}/{{hv_type}}/{{vm_mode}}"),
            ],
        ),
        Stat(
            title="Stale providers",
            description="Providers of targets whose data is stale: left out of candidates.",
            dataSource=DATASOURCE, gridPos=grid.at(8), reduceCalc="lastNotNull",
            targets=[target("sum(resmon_stale_hosts)", "stale")],
        ),
        grid.row("Targets"),
        TimeSeries(
            title="Last collection succeeded",
            description="1 when the target's last collection succeeded.",
            dataSource=DATASOURCE, gridPos=grid.at(8),
            targets=[target("resmon_collector_success", "{{target}}")],
        ),
        TimeSeries(
            title="Collection duration",
            dataSource=DATASOURCE, gridPos=grid.at(8), unit="s",
            targets=[target("resmon_collector_duration_seconds", "{{target}}")],
        ),
        TimeSeries(
            title="Time since last successful collection",
            dataSource=DATASOURCE, gridPos=grid.at(8), unit="s",
            targets=[
                target(
                    "time() - resmon_collector_last_success_timestamp_seconds", "{{target}}"
                )
            ],
        ),
        Table(
            title="Target health",
            dataSource=DATASOURCE, gridPos=grid.at(12),
            targets=[
                target("resmon_collector_consecutive_failures", instant=True),
                target("resmon_target_stale", instant=True),
            ],
            transformations=[
                {"id": "merge", "options": {}},
                {"id": "organize", "options": {
                    "excludeByName": {"Time": True},
                    "renameByName": {"Value #A": "consecutive failures", "Value #B": "stale"},
                }},
            ],
        ),  # fmt: skip
        TimeSeries(
            title="Failed collections by error kind",
            description="Failed collections of each target in the store's history.",
            dataSource=DATASOURCE, gridPos=grid.at(12),
            targets=[
                target(
                    "sum by (target, kind) (resmon_collector_errors_total)", "{{target}} {{kind}}"
                )
            ],
        ),
        grid.row("Anomalies"),
        TimeSeries(
            title="Anomalies by code",
            description="Values kept but flagged (unknown vocabulary, soft invariants); "
            "docs/operators.md says what each code means.",
            dataSource=DATASOURCE, gridPos=grid.at(12),
            targets=[target("resmon_code:anomalies:sum", "{{code}}")],
        ),
        Table(
            title="Anomalies by target and code",
            dataSource=DATASOURCE, gridPos=grid.at(12),
            targets=[target("resmon_anomalies", instant=True)],
            transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True}}}],
        ),
        grid.row("Exporter"),
        Stat(
            title="Database available",
            description="0 when /metrics could not read the database (scrape), or when the "
            "process's last database operation, writes included, failed (daemon).",
            dataSource=DATASOURCE, gridPos=grid.at(8), reduceCalc="lastNotNull",
            targets=[
                target("min(resmon_exporter_store_success)", "scrape"),
                target("min(resmon_exporter_store_up)", "daemon"),
            ],
        ),
        TimeSeries(
            title="Store read time per scrape",
            dataSource=DATASOURCE, gridPos=grid.at(16), unit="s",
            targets=[target("resmon_exporter_store_read_duration_seconds", "{{instance}}")],
        ),
    ]  # fmt: skip


def dashboard() -> Dashboard:
    built = panels()
    for panel in built:  # query letters, as Grafana's editor gives them (A, B, ...)
        for letter, query in zip("ABCDEFGH", getattr(panel, "targets", []), strict=False):
            query.refId = letter
    return Dashboard(
        title="resmon",
        uid="resmon-fleet",
        description="What every hypervisor in the fleet has and can run, from resmon's /metrics.",
        tags=["resmon"],
        timezone="utc",
        refresh="1m",
        templating=Templating(
            list=[
                Template(
                    name="datasource", label="Data source", type="datasource", query="prometheus"
                )
            ]  # fmt: skip
        ),
        panels=built,
    ).auto_panel_ids()


def render() -> str:
    """The dashboard as the JSON Grafana imports (stable key order, so diffs stay small)."""
    return json.dumps(dashboard().to_json_data(), cls=DashboardEncoder, sort_keys=True, indent=2)


def main(argv: list[str]) -> int:
    text = render() + "\n"
    if argv[1:] == ["-"]:
        sys.stdout.write(text)
    else:
        OUTPUT.write_text(text)
        print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
