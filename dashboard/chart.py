"""A bar chart as inline SVG, rendered on the server (no JavaScript chart library)."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

# Drawing size in SVG user units.
DEFAULT_WIDTH = 720
DEFAULT_HEIGHT = 140


def bars(
    points: list[dict[str, Any]], title: str, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT
) -> Markup:
    """Stacked bars: succeeded (bottom) and failed (top) per bucket, with a hover title each."""
    n = max(len(points), 1)
    peak = max([p["succeeded"] + p["failed"] for p in points] + [1])
    slot = width / n
    bar_w = max(slot - 1, 1)
    plot_h = height - 16
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="2" y="11" class="chart-label">{escape(title)} (peak {peak}/bucket)</text>',
    ]
    for i, p in enumerate(points):
        x = i * slot
        ok_h = plot_h * p["succeeded"] / peak
        bad_h = plot_h * p["failed"] / peak
        tip = f"{p['at']:%Y-%m-%d %H:%M} succeeded {p['succeeded']}, failed {p['failed']}"
        parts.append(f"<g><title>{escape(tip)}</title>")
        if ok_h:
            parts.append(
                f'<rect class="ok" x="{x:.1f}" y="{height - ok_h:.1f}" '
                f'width="{bar_w:.1f}" height="{ok_h:.1f}"/>'
            )
        if bad_h:
            y = height - ok_h - bad_h
            parts.append(
                f'<rect class="bad" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{bad_h:.1f}"/>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))
