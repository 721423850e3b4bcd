"""Evaluation reports: one self-contained HTML file (inline CSS and SVG, no scripts, no network)
and a Markdown summary with the same tables.

The HTML shows the manifest summary, per-configuration metrics with 95% intervals next to latency,
paired comparisons with verdicts, a per-query win/loss plot, latency distributions and a
quality-vs-latency chart. Every user-supplied string is escaped.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from ragline.evaluate.metrics import PRIMARY_METRIC, latency_summary, metric_label
from ragline.evaluate.registry import RunRecord
from ragline.evaluate.stats import Comparison, Interval, Verdict, mean_ci

GREEN, RED, GREY, INK, MUTED = "#1a7f37", "#cf222e", "#8c959f", "#1f2328", "#57606a"
PALETTE = ("#0969da", "#bc4c00", "#8250df", "#1a7f37", "#cf222e", "#6e7781", "#bf8700", "#116329")
CI_RESAMPLES = 2_000


@dataclass(frozen=True, slots=True)
class ConfigResult:
    """One configuration's per-query metrics and latencies (seconds)."""

    name: str
    per_query: Mapping[str, Mapping[str, float]]
    latencies: Sequence[float] = ()
    run_id: str | None = None
    index_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything a report shows. `manifest` is one run's manifest dict (for the header)."""

    title: str
    configs: tuple[ConfigResult, ...]
    comparisons: tuple[Comparison, ...] = ()
    manifest: Mapping[str, Any] = field(default_factory=dict)
    metrics: tuple[str, ...] = ()
    seed: int = 0

    def metric_names(self) -> list[str]:
        if self.metrics:
            return list(self.metrics)
        first = next(iter(self.configs[0].per_query.values()), {}) if self.configs else {}
        return list(first)


def report_data_from_runs(
    runs: Sequence[RunRecord],
    comparisons: Sequence[Comparison] = (),
    *,
    title: str | None = None,
) -> ReportData:
    """Report data for registry runs: one configuration entry per (run, configuration)."""
    configs = []
    for run in runs:
        for cfg in run.configs:
            label = run.id if len(run.configs) == 1 else f"{run.id}:{cfg}"
            configs.append(ConfigResult(label, run.per_query(cfg), run.latencies(cfg), run.id))
    names = " vs ".join(r.id for r in runs)
    return ReportData(
        title=title or f"ragline evaluation: {names}",
        configs=tuple(configs),
        comparisons=tuple(comparisons),
        manifest=runs[0].manifest if runs else {},
    )


# --- tables -------------------------------------------------------------------------------


def _fmt_ms(seconds: float) -> str:
    """Milliseconds with enough digits to tell configurations apart."""
    ms = seconds * 1000
    if ms < 1:
        return f"{ms:.2f}"
    return f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def _fmt_p(p: float) -> str:
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def _config_rows(data: ReportData, metrics: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for i, cfg in enumerate(data.configs):
        cells: dict[str, Interval] = {}
        for m in metrics:
            values = [row.get(m, 0.0) for row in cfg.per_query.values()]
            cells[m] = mean_ci(values, n_resamples=CI_RESAMPLES, seed=data.seed)
        lat = latency_summary(cfg.latencies) if cfg.latencies else None
        rows.append(
            {
                "name": cfg.name,
                "color": PALETTE[i % len(PALETTE)],
                "n": len(cfg.per_query),
                "cells": cells,
                "p50": _fmt_ms(lat.p50) if lat else "-",
                "p95": _fmt_ms(lat.p95) if lat else "-",
                "index": _fmt_bytes(cfg.index_bytes),
                "latency": lat,
            }
        )
    return rows


def _comparison_rows(comparison: Comparison) -> list[dict[str, Any]]:
    colours = {Verdict.BETTER: GREEN, Verdict.WORSE: RED, Verdict.NO_DIFFERENCE: MUTED}
    rows = []
    for m in comparison.metrics:
        rel = m.relative_diff
        rows.append(
            {
                "metric": metric_label(m.metric),
                "a": f"{m.mean_a:.4f}",
                "b": f"{m.mean_b:.4f}",
                "diff": f"{m.diff:+.4f}",
                "rel": f"{rel:+.1%}" if rel is not None else "-",
                "ci": f"[{m.ci_low:+.4f}, {m.ci_high:+.4f}]",
                "p": _fmt_p(m.p_value),
                "p_holm": _fmt_p(m.p_holm),
                "mde": f"{m.mde:.4f}",
                "verdict": m.verdict.value,
                "color": colours[m.verdict],
                "record": f"{m.wins}/{m.losses}/{m.ties}",
            }
        )
    return rows


# --- SVG charts ---------------------------------------------------------------------------


def _text(
    x: float,
    y: float,
    s: str,
    *,
    size: int = 12,
    anchor: str = "start",
    color: str = INK,
    weight: str = "normal",
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
        f'fill="{color}" font-weight="{weight}">{escape(s)}</text>'
    )


def _svg(width: int, height: int, body: list[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}" '
        f'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif">'
        + "".join(body)
        + "</svg>"
    )


def _nice_step(span: float, count: int) -> float:
    raw = span / count
    mag = 10 ** math.floor(math.log10(raw))
    return float(next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw))


@dataclass(frozen=True, slots=True)
class _Axis:
    """Maps data values to pixels along one axis, linear or log10."""

    lo: float
    hi: float
    start: float
    length: float
    log: bool = False

    def __call__(self, v: float) -> float:
        if self.log:
            lo, hi = math.log10(self.lo), math.log10(self.hi)
            frac = (math.log10(max(v, self.lo)) - lo) / (hi - lo)
        else:
            frac = (v - self.lo) / ((self.hi - self.lo) or 1.0)
        return self.start + frac * self.length

    def ticks(self, count: int = 5) -> list[float]:
        if self.log:
            decades = range(math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi)) + 1)
            cands = [m * 10.0**d for d in decades for m in (1, 2, 5)]
            return [t for t in cands if self.lo <= t <= self.hi]
        step = _nice_step(self.hi - self.lo, count)
        first = math.ceil(self.lo / step - 1e-9) * step
        return [first + i * step for i in range(count * 3) if first + i * step <= self.hi + 1e-9]


def _125(v: float, *, up: bool) -> float:
    """The nearest value of the 1-2-5 series at or below (or above, `up`) `v` > 0."""
    series = [
        m * 10.0**d
        for d in range(math.floor(math.log10(v)) - 1, math.ceil(math.log10(v)) + 2)
        for m in (1, 2, 5)
    ]
    return min(t for t in series if t >= v) if up else max(t for t in series if t <= v)


def _ms_axis(values_ms: Sequence[float], start: float, length: float) -> _Axis:
    """Linear from 0, or log10 when the values span more than 20x (so fast configs stay visible)."""
    lo, hi = min(values_ms), max(values_ms)
    if lo > 0 and hi / lo > 20:
        return _Axis(_125(lo, up=False), _125(hi, up=True), start, length, log=True)
    return _Axis(0.0, hi * 1.08 or 1.0, start, length)


def _tick_label(t: float) -> str:
    return f"{t:g}"


def win_loss_svg(comparison: Comparison, metric: str, width: int = 940, height: int = 300) -> str:
    """Per-query differences (B - A) of `metric`, sorted: green wins, red losses, grey ties."""
    diffs = sorted(comparison.diffs.get(metric, ()), reverse=True)
    row = comparison.metric(metric)
    sign = 1 if row.higher_is_better else -1
    left, right, top, bottom = 60, 20, 48, 30
    plot_w = width - left - right
    biggest = max((abs(d) for d in diffs), default=0.0) or 1.0
    step = _nice_step(biggest, 2)
    span = step * math.ceil(biggest / step - 1e-9)
    y = _Axis(-span, span, height - bottom, -(height - top - bottom))
    body = [
        _text(
            left,
            18,
            f"Per-query {metric_label(metric)}: {comparison.label_b} minus {comparison.label_a}",
            size=14,
            weight="600",
        ),
        _text(left, 38, f"{row.wins} better", color=GREEN, weight="600"),
        _text(left + 110, 38, f"{row.losses} worse", color=RED, weight="600"),
        _text(left + 220, 38, f"{row.ties} tied", color=MUTED, weight="600"),
        _text(left + 310, 38, f"of {len(diffs)} queries, sorted by difference", color=MUTED),
    ]
    for t in y.ticks(4):
        body.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
            f'stroke="{"#8c959f" if abs(t) < 1e-12 else "#eaeef2"}"/>'
        )
        body.append(
            _text(left - 6, y(t) + 4, f"{t:+.2f}" if t else "0", size=11, anchor="end", color=MUTED)
        )
    bar_w = plot_w / max(len(diffs), 1)
    for i, d in enumerate(diffs):
        colour = GREY if d == 0 else (GREEN if sign * d > 0 else RED)
        top_y, h = (min(y(d), y(0)), abs(y(d) - y(0))) if d else (y(0) - 1.5, 3.0)
        body.append(
            f'<rect x="{left + i * bar_w:.2f}" y="{top_y:.2f}" '
            f'width="{max(bar_w - 0.3, 0.6):.2f}" height="{max(h, 0.8):.2f}" '
            f'fill="{colour}"/>'
        )
    body.append(
        _text(
            left + plot_w / 2,
            height - 8,
            "queries, sorted from largest gain to largest loss",
            size=11,
            anchor="middle",
            color=MUTED,
        )
    )
    return _svg(width, height, body, f"win/loss plot of {metric}")


def _lat_stats(values: Sequence[float]) -> tuple[float, float, float, float]:
    q1, q3 = np.percentile(values, [25, 75])
    s = latency_summary(values)
    return float(q1), s.p50, float(q3), s.p95


def latency_svg(
    rows: Sequence[dict[str, Any]], configs: Sequence[ConfigResult], width: int = 940
) -> str:
    """Per configuration: every query's latency as a dot, the interquartile box, p50 and p95."""
    with_lat = [(r, c) for r, c in zip(rows, configs, strict=True) if c.latencies]
    band, left, right, top = 56, 190, 170, 34
    axis_y = top + band * len(with_lat)
    all_ms = [v * 1000 for _, c in with_lat for v in c.latencies]
    x = _ms_axis(all_ms, left, width - left - right)
    scale = " (log scale)" if x.log else ""
    body = [
        _text(
            left,
            18,
            "Search latency per query: dots = queries, box = middle 50%, bar = p50, ◆ = p95",
            size=13,
            weight="600",
        )
    ]
    for t in x.ticks():
        body.append(
            f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{axis_y}" stroke="#eaeef2"/>'
        )
        body.append(_text(x(t), axis_y + 16, _tick_label(t), size=11, anchor="middle", color=MUTED))
    body.append(
        _text(
            left + x.length / 2,
            axis_y + 34,
            f"milliseconds{scale}",
            size=11,
            anchor="middle",
            color=MUTED,
        )
    )
    for i, (row, cfg) in enumerate(with_lat):
        body.extend(_latency_band(row, cfg, top + i * band, band, x, width - right + 12))
    return _svg(width, axis_y + 44, body, "latency distributions")


def _latency_band(
    row: dict[str, Any], cfg: ConfigResult, y0: float, band: float, x: _Axis, label_x: float
) -> list[str]:
    colour, mid = row["color"], y0 + band / 2
    q1, p50, q3, p95 = (v * 1000 for v in _lat_stats(cfg.latencies))
    jitter = np.random.default_rng(0).uniform(-band * 0.3, band * 0.3, len(cfg.latencies))
    out = [_text(x.start - 10, mid + 4, _short(cfg.name, 26), anchor="end", weight="600")]
    out += [
        f'<circle cx="{x(v * 1000):.1f}" cy="{mid + j:.1f}" r="1.6" fill="{colour}" '
        'fill-opacity="0.35"/>'
        for v, j in zip(cfg.latencies, jitter, strict=True)
    ]
    out.append(
        f'<rect x="{x(q1):.1f}" y="{mid - 10:.1f}" width="{max(x(q3) - x(q1), 1):.1f}" '
        f'height="20" fill="none" stroke="{INK}" stroke-width="1.2"/>'
    )
    out.append(
        f'<line x1="{x(p50):.1f}" x2="{x(p50):.1f}" y1="{mid - 14:.1f}" y2="{mid + 14:.1f}" '
        f'stroke="{INK}" stroke-width="3"/>'
    )
    out.append(f'<path d="M{x(p95):.1f},{mid - 7:.1f} l6,7 l-6,7 l-6,-7 z" fill="{INK}"/>')
    out.append(_text(label_x, mid - 2, f"p50 {_fmt_ms(p50 / 1000)} ms", size=12))
    out.append(_text(label_x, mid + 13, f"p95 {_fmt_ms(p95 / 1000)} ms", size=12, color=MUTED))
    return out


def _short(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def tradeoff_svg(
    rows: Sequence[dict[str, Any]], metric: str, width: int = 520, height: int = 340
) -> str:
    """Quality (mean with 95% CI) against p50 latency, one labelled point per configuration."""
    pts = [r for r in rows if r["latency"] is not None]
    left, right, top, bottom = 60, 30, 36, 44
    lows = [r["cells"][metric].low for r in pts]
    highs = [r["cells"][metric].high for r in pts]
    pad = max((max(highs) - min(lows)) * 0.15, 0.005)
    y = _Axis(min(lows) - pad, max(highs) + pad, height - bottom, -(height - top - bottom))
    ms = [r["latency"].p50 * 1000 for r in pts] + [r["latency"].p95 * 1000 for r in pts]
    x = _ms_axis(ms, left, width - left - right)
    scale = ", log scale" if x.log else ""
    body = [
        _text(
            left,
            18,
            f"{metric_label(metric)} (95% CI) vs latency (p50, dashes to p95)",
            size=13,
            weight="600",
        )
    ]
    for t in x.ticks(4):
        body.append(
            f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{height - bottom}" '
            'stroke="#eaeef2"/>'
        )
        body.append(
            _text(x(t), height - bottom + 16, _tick_label(t), size=11, anchor="middle", color=MUTED)
        )
    for t in y.ticks(4):
        body.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
            'stroke="#eaeef2"/>'
        )
        body.append(_text(left - 6, y(t) + 4, f"{t:.2f}", size=11, anchor="end", color=MUTED))
    body.append(
        _text(
            left + x.length / 2,
            height - 8,
            f"p50 latency (ms{scale})",
            size=11,
            anchor="middle",
            color=MUTED,
        )
    )
    for r in pts:
        body.extend(_tradeoff_point(r, metric, x, y))
    return _svg(width, height, body, "quality versus latency")


def _tradeoff_point(r: dict[str, Any], metric: str, x: _Axis, y: _Axis) -> list[str]:
    ci, lat, c = r["cells"][metric], r["latency"], r["color"]
    px, py = x(lat.p50 * 1000), y(ci.estimate)
    return [
        f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{y(ci.low):.1f}" y2="{y(ci.high):.1f}" '
        f'stroke="{c}" stroke-width="2"/>',
        f'<line x1="{px:.1f}" x2="{x(lat.p95 * 1000):.1f}" y1="{py:.1f}" y2="{py:.1f}" '
        f'stroke="{c}" stroke-width="1.2" stroke-dasharray="3,2"/>',
        f'<circle cx="{px:.1f}" cy="{py:.1f}" r="5" fill="{c}"/>',
        _text(px + 8, py - 8, _short(r["name"], 22), size=11, color=c, weight="600"),
    ]


# --- rendering ----------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ragline.evaluate", "templates"),
        # HTML templates escape every value; the Markdown template escapes with the md filter.
        autoescape=jinja2.select_autoescape(["html", "html.j2"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["md"] = _md_escape
    return env


def _md_escape(value: object) -> str:
    """Make a value safe inside a Markdown table cell."""
    text = str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _header(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    machine = manifest.get("machine") or {}
    sha = manifest.get("git_sha")
    dirty = " (uncommitted changes)" if manifest.get("git_dirty") else ""
    config = manifest.get("config") or {}
    pairs = [
        ("dataset", str(config.get("dataset") or config.get("dataset_name") or "-")),
        ("dataset hash", str(manifest.get("dataset_hash", "-"))[:16]),
        ("git", f"{str(sha)[:12]}{dirty}" if sha else "not a git checkout"),
        ("ragline", str(manifest.get("ragline_version") or "-")),
        ("date", str(manifest.get("created_at", "-"))),
        ("seed", str(manifest.get("seed", "-"))),
        (
            "machine",
            f"{machine.get('cpu_model') or '?'} · {machine.get('cpu_count') or '?'} CPUs · "
            f"Python {machine.get('python') or '?'}",
        ),
    ]
    return [(k, v) for k, v in pairs if manifest or k == "date"]


def _context(data: ReportData) -> dict[str, Any]:
    metrics = data.metric_names()
    rows = _config_rows(data, metrics)
    primary = PRIMARY_METRIC if PRIMARY_METRIC in metrics else (metrics[0] if metrics else "")
    has_latency = any(r["latency"] for r in rows)
    comparisons = []
    for comp in data.comparisons:
        plot_metric = primary if primary in comp.diffs else comp.metrics[0].metric
        comparisons.append(
            {
                "a": comp.label_a,
                "b": comp.label_b,
                "n": comp.n_queries,
                "rows": _comparison_rows(comp),
                "confidence": comp.confidence,
                "resamples": comp.n_resamples,
                "seed": comp.seed,
                "plot": win_loss_svg(comp, plot_metric),
            }
        )
    return {
        "title": data.title,
        "header": _header(data.manifest),
        "metrics": metrics,
        "labels": {m: metric_label(m) for m in metrics},
        "rows": rows,
        "comparisons": comparisons,
        "latency_svg": latency_svg(rows, data.configs) if has_latency else "",
        "tradeoff_svg": tradeoff_svg(rows, primary) if has_latency and primary else "",
        "primary": metric_label(primary),
        "primary_key": primary,
        "ranked": sorted(rows, key=lambda r: -r["cells"][primary].estimate) if primary else rows,
    }


def render_html(data: ReportData) -> str:
    return _environment().get_template("report.html.j2").render(**_context(data))


def render_markdown(data: ReportData) -> str:
    return _environment().get_template("report.md.j2").render(**_context(data))


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(data: ReportData, html_path: Path, md_path: Path | None = None) -> None:
    """Write the self-contained HTML report and, if asked, the Markdown summary."""
    _atomic_write(Path(html_path), render_html(data))
    if md_path is not None:
        _atomic_write(Path(md_path), render_markdown(data))
