"""The landing page at ``/``: a fleet summary rendered on the server, readable without JS."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from ._queries import TargetStatus
from ._tables import HOSTS as _H
from ._tables import INVENTORIES as _INV

__all__ = ["FleetSummary", "fleet_summary", "render_landing"]


@dataclass(frozen=True)
class FleetSummary:
    #: hv_type -> (compute hosts, of which up)
    hosts_by_hv_type: dict[str, tuple[int, int]]
    #: resource class -> (capacity, free), summed over compute hosts
    capacity: dict[str, tuple[int, int]]
    targets: list[TargetStatus]
    stale_hosts: int


def fleet_summary(session: Session, targets: list[TargetStatus]) -> FleetSummary:
    compute = _H.c.provider_kind == "compute_host"
    by_type = session.execute(
        select(_H.c.hv_type, func.count(), func.sum(case((_H.c.state == "up", 1), else_=0)))
        .where(compute)
        .group_by(_H.c.hv_type)
        .order_by(_H.c.hv_type)
    )
    capacity = session.execute(
        select(_INV.c.resource_class, func.sum(_INV.c.capacity), func.sum(_INV.c.free))
        .join(_H, _H.c.id == _INV.c.host_pk)
        .where(compute)
        .group_by(_INV.c.resource_class)
        .order_by(_INV.c.resource_class)
    )
    stale_ids = [t.id for t in targets if t.stale]
    stale_hosts = 0
    if stale_ids:
        stale_hosts = int(
            session.scalar(
                select(func.count()).select_from(_H).where(_H.c.target_id.in_(stale_ids))
            )
            or 0
        )
    return FleetSummary(
        hosts_by_hv_type={hv or "unknown": (int(n), int(up or 0)) for hv, n, up in by_type},
        capacity={rc: (int(cap or 0), int(free or 0)) for rc, cap, free in capacity},
        targets=targets,
        stale_hosts=stale_hosts,
    )


_STYLE = """body{font-family:sans-serif;margin:2em;max-width:60em}
table{border-collapse:collapse;margin-bottom:1.5em}th,td{border:1px solid #ccc;padding:.3em .6em}
th{background:#eee;text-align:left}td.n{text-align:right}.bad{color:#a00;font-weight:bold}"""


def _table(headers: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{cell}</td>' if i >= numeric_from else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    if not rows:
        body = f'<tr><td colspan="{len(headers)}">none</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_landing(summary: FleetSummary) -> str:
    """The page; every value from the store is HTML-escaped."""
    hosts = sum(n for n, _ in summary.hosts_by_hv_type.values())
    failed = [t for t in summary.targets if t.last_status == "failed"]
    stale = [t for t in summary.targets if t.stale]
    hv_rows = [[escape(hv), str(n), str(up)] for hv, (n, up) in summary.hosts_by_hv_type.items()]
    cap_rows = [[escape(rc), str(cap), str(free)] for rc, (cap, free) in summary.capacity.items()]
    target_rows = []
    for t in summary.targets:
        status = escape(t.last_status)
        if t.last_status == "failed":
            status = f'<span class="bad">failed ({escape(t.last_error_kind or "")})</span>'
        target_rows.append(
            [
                escape(t.name),
                escape(t.collector),
                status,
                '<span class="bad">stale</span>' if t.stale else "fresh",
                escape(t.last_success_at.isoformat() if t.last_success_at else "never"),
            ]
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>resmon: fleet summary</title>
<style>{_STYLE}</style></head><body>
<h1>resmon: fleet summary</h1>
<p>{hosts} compute hosts; {len(summary.targets)} targets, of which {len(failed)} failed and
{len(stale)} stale; {summary.stale_hosts} stale providers. Values are as of each target's last
collection.</p>
<h2>Hosts per hypervisor type</h2>
{_table(["hv_type", "hosts", "up"], hv_rows)}
<h2>Capacity (compute hosts)</h2>
<p>Capacity is (total − reserved) × allocation ratio, in the resource class's unit
(MEMORY_MB: MiB, DISK_GB: GiB).</p>
{_table(["resource class", "capacity", "free"], cap_rows)}
<h2>Targets</h2>
{_table(["target", "collector", "last collection", "freshness", "last success"], target_rows, 99)}
<p><a href="/v1/hosts">/v1/hosts</a> · <a href="/v1/targets">/v1/targets</a> ·
<a href="/v1/anomalies">/v1/anomalies</a> · <a href="/metrics">/metrics</a> ·
<a href="/openapi.json">/openapi.json</a></p>
</body></html>
"""
