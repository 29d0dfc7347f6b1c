"""Charts as inline SVG, rendered on the server (no JavaScript chart library): stacked bars and
lines over a time axis, with tick labels on both axes, the zone named, and a hover title per bucket."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from markupsafe import Markup, escape

# Drawing size in SVG user units, and the margins that hold the axes' labels.
DEFAULT_WIDTH = 640
DEFAULT_HEIGHT = 200
LEFT, RIGHT, TOP, BOTTOM = 58, 12, 22, 34
# Time-axis steps to choose from (seconds), and the most ticks an axis carries.
TIME_STEPS_S = (300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
MAX_TIME_TICKS = 7
# The zone the console writes times in.
ZONE = "UTC"


@dataclass(frozen=True)
class Frame:
    """Where a chart's buckets and values go: `count` buckets of `step` from `start`."""

    start: datetime
    step: timedelta
    count: int
    top: float
    width: int = DEFAULT_WIDTH
    height: int = DEFAULT_HEIGHT

    @property
    def plot_w(self) -> float:
        return self.width - LEFT - RIGHT

    @property
    def plot_h(self) -> float:
        return self.height - TOP - BOTTOM

    def x(self, i: float) -> float:
        return LEFT + self.plot_w * i / max(self.count, 1)

    def y(self, value: float) -> float:
        return TOP + self.plot_h * (1 - value / self.top)


def nice_steps(peak: float, ticks: int = 4) -> list[float]:
    """Tick values from 0 to a round top at or above `peak` (steps of 1, 2 or 5 times 10^k)."""
    raw = max(peak, 1e-9) / ticks
    scale = 10 ** _floor_log10(raw)
    step = next(m * scale for m in (1, 2, 5, 10) if m * scale >= raw)
    count = max(1, -int(-peak // step))
    return [step * i for i in range(count + 1)]


def _floor_log10(value: float) -> int:
    exponent = 0
    while value >= 10:
        value, exponent = value / 10, exponent + 1
    while value < 1:
        value, exponent = value * 10, exponent - 1
    return exponent


def time_ticks(start: datetime, end: datetime) -> tuple[list[datetime], str]:
    """Round times between `start` and `end` (at most MAX_TIME_TICKS) and their strftime format."""
    span_s = (end - start).total_seconds()
    step_s = next((s for s in TIME_STEPS_S if span_s / s <= MAX_TIME_TICKS), TIME_STEPS_S[-1])
    step = timedelta(seconds=step_s)
    epoch = datetime(2000, 1, 1, tzinfo=start.tzinfo or UTC)
    first = epoch + -((epoch - start) // step) * step
    ticks = []
    while first <= end:
        ticks.append(first)
        first += step
    if step_s >= 86400:
        return ticks, "%a %d %b"
    return ticks, "%a %H:%M" if span_s > 86400 else "%H:%M"


def count_label(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


@functools.lru_cache(maxsize=4096)
def duration_label(ms: float) -> str:
    """A duration in milliseconds as people read it: 850 ms, 1.2 s, 3 min, 2.5 h."""
    if ms < 1000:
        return f"{ms:.0f} ms" if ms >= 1 or ms == 0 else f"{ms:.1f} ms"
    seconds = ms / 1000
    for limit, unit, div in ((60, "s", 1), (3600, "min", 60), (86400, "h", 3600)):
        if seconds < limit:
            value = seconds / div
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{seconds / 86400:.1f} d"


def _axes(
    frame: Frame, ticks: list[float], fmt: Callable[[float], str], title: str, y_title: str
) -> list[str]:
    end = frame.start + frame.step * frame.count
    parts = [
        f'<text x="{LEFT}" y="14" class="chart-title">{escape(title)}</text>',
        f'<g class="y-axis"><text class="axis-title" x="4" y="{TOP - 8}">{escape(y_title)}</text>',
    ]
    for value in ticks:
        y = frame.y(value)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{frame.width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end">{escape(fmt(value))}</text>'
        )
    parts.append('</g><g class="x-axis">')
    bottom = frame.height - BOTTOM
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{frame.width - RIGHT}" y1="{bottom}" y2="{bottom}"/>')
    when, pattern = time_ticks(frame.start, end)
    for at in when:
        x = frame.x((at - frame.start) / frame.step)
        label = at.astimezone(UTC).strftime(pattern)
        # A label at either edge is anchored inside the drawing, not cut by it.
        anchor = "start" if x < LEFT + 30 else "end" if x > frame.width - RIGHT - 30 else "middle"
        parts.append(
            f'<line class="tick" x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}"/>'
            f'<text x="{x:.1f}" y="{bottom + 15}" text-anchor="{anchor}">{escape(label)}</text>'
        )
    parts.append(
        f'<text class="axis-title" x="{frame.width - RIGHT}" y="{frame.height - 3}" text-anchor="end">'
        f"time ({ZONE})</text></g>"
    )
    return parts


def _svg(frame: Frame, title: str, body: list[str]) -> Markup:
    head = (
        f'<svg class="chart" viewBox="0 0 {frame.width} {frame.height}" role="img" '
        f'aria-label="{escape(title)}" preserveAspectRatio="xMidYMid meet">'
    )
    return Markup(head + "".join(body) + "</svg>")


@functools.lru_cache(maxsize=4096)  # the four charts of a page, and the next refresh, share buckets
def _when(at: datetime, step: timedelta) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} to {(at + step).astimezone(UTC):%H:%M} {ZONE}"


def stacked_bars(
    start: datetime, step: timedelta, stacks: Sequence[tuple[float, float]], title: str, y_title: str
) -> Markup:
    """Bars of (ok, bad) per bucket, ok at the bottom, with a hover title each."""
    peak = max([ok + bad for ok, bad in stacks] + [0])
    ticks = nice_steps(peak if peak > 0 else 1)
    frame = Frame(start, step, len(stacks), ticks[-1])
    body = _axes(frame, ticks, count_label, title, y_title)
    bar_w = max(frame.plot_w / max(len(stacks), 1) - 1, 1)
    for i, (ok, bad) in enumerate(stacks):
        x = frame.x(i)
        body.append(
            f"<g><title>{escape(_when(start + step * i, step))}: {ok:g} succeeded, {bad:g} failed</title>"
        )
        body.append(
            f'<rect class="hover" x="{x:.1f}" y="{TOP}" width="{bar_w:.1f}" height="{frame.plot_h:.1f}"/>'
        )
        for cls, low, high in (("ok", 0, ok), ("bad", ok, ok + bad)):
            if high > low:
                y = frame.y(high)
                body.append(
                    f'<rect class="{cls}" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                    f'height="{frame.y(low) - y:.1f}"/>'
                )
        body.append("</g>")
    return _svg(frame, title, body)


def lines(
    start: datetime,
    step: timedelta,
    series: Sequence[tuple[str, str, Sequence[float | None]]],
    title: str,
    y_title: str,
    fmt: Callable[[float], str] = count_label,
) -> Markup:
    """One line per (label, css class, values) series; a missing value breaks its line."""
    values = [v for _, _, vs in series for v in vs if v is not None]
    ticks = nice_steps(max(values) if values and max(values) > 0 else 1)
    count = max((len(vs) for _, _, vs in series), default=0)
    frame = Frame(start, step, count, ticks[-1])
    body = _axes(frame, ticks, fmt, title, y_title)
    for label, cls, vs in series:
        runs: list[list[str]] = [[]]
        for i, v in enumerate(vs):
            if v is None:
                runs.append([])
                continue
            runs[-1].append(f"{frame.x(i + 0.5):.1f},{frame.y(v):.1f}")
        name = f"<title>{escape(label)}</title>"
        for run in filter(None, runs):
            if len(run) == 1:
                x, y = run[0].split(",")
                body.append(f'<circle class="line {cls}" cx="{x}" cy="{y}" r="2">{name}</circle>')
            else:
                body.append(f'<polyline class="line {cls}" points="{" ".join(run)}">{name}</polyline>')
    for i in range(count):
        tip = "; ".join(
            f"{label} {fmt(vs[i])}" for label, _, vs in series if i < len(vs) and vs[i] is not None
        )
        if tip:
            body.append(
                f'<rect class="hover" x="{frame.x(i):.1f}" y="{TOP}" width="{frame.plot_w / count:.1f}" '
                f'height="{frame.plot_h:.1f}"><title>{escape(_when(start + step * i, step))}: '
                f"{escape(tip)}</title></rect>"
            )
    return _svg(frame, title, body)


def overview_charts(stats: dict) -> dict[str, Markup]:
    """The overview's four charts of a range of the rollup (workers/stats.read_range)."""
    start, step, points = stats["start"], timedelta(seconds=stats["grain_s"]), stats["points"]
    per_minute = stats["grain_s"] / 60
    every = "minute" if stats["grain_s"] == 60 else f"{stats['grain_s'] // 60} minutes"
    return {
        "attempts": stacked_bars(
            start,
            step,
            [(p["succeeded"] / per_minute, p["failed"] / per_minute) for p in points],
            f"Attempts per minute (averaged over {every})" if per_minute > 1 else "Attempts per minute",
            "per min",
        ),
        "wait": _percentiles(stats, "wait", "Wait: enqueued to started (first attempts)"),
        "run": _percentiles(stats, "run", "Run time per attempt"),
        "depth": lines(
            start,
            step,
            [("queued", "depth", [p["depth"] for p in points])],
            "Queue depth (jobs queued)",
            "jobs",
        ),
    }


def _percentiles(stats: dict, field: str, title: str) -> Markup:
    points = stats["points"]
    series = [(q, q, [p[f"{field}_{q}_ms"] for p in points]) for q in ("p50", "p95")]
    return lines(stats["start"], timedelta(seconds=stats["grain_s"]), series, title, "", duration_label)
