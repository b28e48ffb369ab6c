"""The health page's monitor figures: state, last result, 24-hour uptime and a response-time chart.

Data (:func:`monitor_views`, inside one store transaction) and the chart (:func:`chart_svg`;
the rest of the HTML is :mod:`.ui`'s). The chart is an inline SVG drawn on the server from per-bucket aggregates: no script, and no
inline style (the page's CSP allows neither); its colours come from ``ui.css``.

Definitions (docs/control-plane.md, "Health page"):

- state: ``down`` while the monitor has an open ``monitor_down`` alert (the ``down`` of
  ``GET /api/v1/monitors``), else ``paused`` when its checkpoint is disabled, else ``up`` /
  ``failing`` after a successful / failed latest result, ``pending`` before the first one;
- uptime over 24 h: the share of the checks of the last 24 hours whose verdict was up. A check
  is down when it failed on both attempts (what opens ``monitor_down``): ``1 - failed second
  attempts / first attempts``;
- response time: the average ``duration_ms`` of successful results per 5-minute bucket over
  the last :data:`CHART_HOURS` hours; buckets with failed results are marked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, and_, case, cast, func, select
from sqlalchemy.orm import Session

from vantage.control_plane.alerts import MONITOR_DOWN, open_subjects
from vantage.control_plane.db import Monitor, Result
from vantage.control_plane.health import DISABLED

UPTIME_WINDOW_S = 86400.0
CHART_HOURS = 6
CHART_BUCKET_S = 300.0
CHART_BUCKETS = int(CHART_HOURS * 3600 / CHART_BUCKET_S)
#: the chart's size in CSS pixels (and its SVG user units)
CHART_WIDTH, CHART_HEIGHT = 288, 56
_PLOT_TOP, _PLOT_BOTTOM = 13, 44  # the line's band: labels above it, failure marks below it


@dataclass(frozen=True)
class LastResult:
    ok: bool
    error: str | None
    duration_ms: float | None
    received_at: float
    instance: str
    attempt: int


@dataclass(frozen=True)
class Bucket:
    """One chart bucket: average response time of its successful results, number of failures."""

    index: int
    avg_ms: float | None
    failures: int


@dataclass(frozen=True)
class MonitorView:
    id: str
    name: str
    type: str
    target: str
    interval_s: float
    state: str
    down: bool
    last: LastResult | None
    #: checks (first attempts) in the last 24 h, and those down (failed second attempts)
    checks_24h: int
    down_24h: int
    chart: list[Bucket]

    @property
    def uptime(self) -> float | None:
        """Share of the last 24 hours' checks that were up; None without any check."""
        if not self.checks_24h:
            return None
        return max(0.0, 1.0 - self.down_24h / self.checks_24h)


def monitor_views(db: Session, admin_states: dict[str, str], t: float) -> dict[str, list[MonitorView]]:
    """Every monitor with its figures, by checkpoint (``admin_states``: checkpoint → admin state)."""
    monitors = list(db.scalars(select(Monitor).order_by(Monitor.checkpoint, Monitor.name, Monitor.id)).all())
    if not monitors:
        return {}
    ids = [m.id for m in monitors]
    down = open_subjects(db, MONITOR_DOWN, ids)
    last = _latest_results(db, ids, t - UPTIME_WINDOW_S)
    counts = _uptime_counts(db, ids, t - UPTIME_WINDOW_S)
    charts = _chart_buckets(db, ids, t)
    views: dict[str, list[MonitorView]] = {}
    for m in monitors:
        spec = _spec(m)
        result = last.get(m.id)
        if m.id in down:
            state = "down"
        elif admin_states.get(m.checkpoint) == DISABLED:
            state = "paused"
        elif result is None:
            state = "pending"
        else:
            state = "up" if result.ok else "failing"
        checks, failed = counts.get(m.id, (0, 0))
        views.setdefault(m.checkpoint, []).append(MonitorView(
            id=m.id, name=m.name, type=str(spec.get("type", "?")), target=str(spec.get("target", "")),
            interval_s=m.interval_s, state=state, down=m.id in down, last=result, checks_24h=checks,
            down_24h=failed, chart=charts.get(m.id, []),
        ))
    return views


def _spec(monitor: Monitor) -> dict[str, Any]:
    try:
        return monitor.spec
    except ValueError:  # a damaged row still gets a line on the page
        return {}


# Every query names the monitors and bounds the time, so that it reads ranges of the
# (monitor_id, received_at) index, never the whole (ever-growing) results table.

_LAST = (Result.monitor_id, Result.ok, Result.error, Result.duration_ms, Result.received_at, Result.instance,
         Result.attempt)


def _latest_results(db: Session, ids: list[str], since: float) -> dict[str, LastResult]:
    """Each monitor's newest result: one grouped query over the last 24 h, one seek per older one."""
    newest = (
        select(Result.monitor_id, func.max(Result.received_at).label("at"))
        .where(Result.monitor_id.in_(ids), Result.received_at >= since)
        .group_by(Result.monitor_id)
        .subquery()
    )
    rows = list(db.execute(
        select(*_LAST).join(newest, and_(Result.monitor_id == newest.c.monitor_id, Result.received_at == newest.c.at))
    ).all())
    found = {row[0] for row in rows}
    for monitor_id in ids:
        if monitor_id not in found:
            row = db.execute(
                select(*_LAST).where(Result.monitor_id == monitor_id).order_by(Result.received_at.desc()).limit(1)
            ).first()
            if row is not None:
                rows.append(row)
    return {
        monitor_id: LastResult(bool(ok), error, duration_ms, received_at, instance, attempt)
        for monitor_id, ok, error, duration_ms, received_at, instance, attempt in rows
    }


def _uptime_counts(db: Session, ids: list[str], since: float) -> dict[str, tuple[int, int]]:
    first = func.sum(case((Result.attempt == 1, 1), else_=0))
    failed_second = func.sum(case((and_(Result.attempt >= 2, Result.ok.is_(False)), 1), else_=0))
    rows = db.execute(
        select(Result.monitor_id, first, failed_second)
        .where(Result.monitor_id.in_(ids), Result.received_at >= since)
        .group_by(Result.monitor_id)
    ).all()
    return {monitor_id: (int(checks or 0), int(failed or 0)) for monitor_id, checks, failed in rows}


def _chart_buckets(db: Session, ids: list[str], t: float) -> dict[str, list[Bucket]]:
    start = t - CHART_BUCKETS * CHART_BUCKET_S
    offset = (Result.received_at - start) / CHART_BUCKET_S
    # the bucket number: SQLite's CAST truncates (offsets are >= 0), PostgreSQL's rounds
    index = cast(offset, Integer) if db.get_bind().dialect.name == "sqlite" else cast(func.floor(offset), Integer)
    rows = db.execute(
        select(Result.monitor_id, index, func.avg(case((Result.ok, Result.duration_ms))),
               func.sum(case((Result.ok, 0), else_=1)))
        .where(Result.monitor_id.in_(ids), Result.received_at >= start)
        .group_by(Result.monitor_id, index)
    ).all()
    charts: dict[str, list[Bucket]] = {}
    for monitor_id, bucket, avg_ms, failures in rows:
        if 0 <= int(bucket) < CHART_BUCKETS:
            charts.setdefault(monitor_id, []).append(
                Bucket(int(bucket), float(avg_ms) if avg_ms is not None else None, int(failures or 0))
            )
    for buckets in charts.values():
        buckets.sort(key=lambda b: b.index)
    return charts


# --- rendering -----------------------------------------------------------------------------------


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2 and 5 times a power of ten at or above ``value`` (an axis maximum)."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        candidate = step * 10.0**exponent
        if candidate >= value:
            return candidate
    return 10.0 ** (exponent + 1)  # pragma: no cover - the loop always returns


def fmt_ms(value: float) -> str:
    return f"{value:.1f} ms" if value < 10 else f"{value:.0f} ms"


def chart_svg(buckets: list[Bucket]) -> str:
    """The response-time chart: a line per run of consecutive buckets, failures as red marks."""
    values = [b.avg_ms for b in buckets if b.avg_ms is not None]
    top = nice_ceiling(max(values)) if values else 1.0
    step = CHART_WIDTH / CHART_BUCKETS

    def x(index: int) -> float:
        return round((index + 0.5) * step, 1)

    def y(value: float) -> float:
        return round(_PLOT_BOTTOM - (_PLOT_BOTTOM - _PLOT_TOP) * min(value, top) / top, 1)

    runs: list[list[str]] = []
    previous = -2
    for b in buckets:
        if b.avg_ms is None:
            previous = -2
            continue
        if b.index != previous + 1:
            runs.append([])
        runs[-1].append(f"{x(b.index)},{y(b.avg_ms)}")
        previous = b.index
    shapes = [f'<line class="grid" x1="0" y1="{_PLOT_TOP}" x2="{CHART_WIDTH}" y2="{_PLOT_TOP}"/>',
              f'<line class="axis" x1="0" y1="{_PLOT_BOTTOM}" x2="{CHART_WIDTH}" y2="{_PLOT_BOTTOM}"/>',
              f'<text class="tick" x="1" y="9">{CHART_HOURS} h ago</text>']
    if values:  # the scale, at the dashed line
        shapes.append(f'<text class="tick" x="{CHART_WIDTH - 1}" y="9" text-anchor="end">{fmt_ms(top)}</text>')
    for points in runs:
        if len(points) == 1:
            cx, cy = points[0].split(",")
            shapes.append(f'<circle class="point" cx="{cx}" cy="{cy}" r="1.8"/>')
        else:
            shapes.append(f'<polyline class="line" points="{" ".join(points)}"/>')
    for b in buckets:
        if b.failures:
            shapes.append(f'<rect class="fail" x="{round(b.index * step, 1)}" y="{_PLOT_BOTTOM + 3}" '
                          f'width="{max(1.0, round(step - 0.5, 1))}" height="6"/>')
    failures = sum(b.failures for b in buckets)
    scale = f"up to {fmt_ms(top)}" if values else "no successful result"
    label = (f"response time over the last {CHART_HOURS} h, average per {int(CHART_BUCKET_S // 60)} min: "
             f"{scale}; {failures} failed result{'' if failures == 1 else 's'}")
    return (
        f'<svg class="chart" role="img" aria-label="{label}" width="{CHART_WIDTH}" height="{CHART_HEIGHT}" '
        f'viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{label}</title>{''.join(shapes)}</svg>"
    )
