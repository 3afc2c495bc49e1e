"""A load run's summary rendered: terminal tables, the canary/stable ratio table, PNG plots and an offline HTML page."""
# Why ratios: the canary's absolute latency says little while the stable cluster carries most of the traffic; its
# p95/p99 over the stable cluster's, in the same window of the same run, is what a rollout is decided on ("the seeds'
# table"). Why self-contained HTML: the report is attached to CI runs and read offline, so it fetches nothing.
from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # generator boxes and CI have no display; must precede pyplot's import
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from loadtests import mail_delay, node_metrics  # noqa: E402

Summary = Mapping[str, Any]
PERCENTILES = ("p50", "p95", "p99", "p999")
RATIOS = ("p95", "p99")
PLOTTED = {"p50": ":", "p95": "--", "p99": "-"}
EVENT_COLOURS = {"kill": "tab:red", "heal": "tab:green", "share": "tab:purple", "step": "0.35", "note": "0.6"}
PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")
CORRECTED_NOTE = "corr: corrected for coordinated omission (timed from the intended send), where it differs from raw"


@dataclass(frozen=True)
class Ratio:
    """One row of the seeds' table: the canary's percentiles over the stable cluster's in one window."""

    label: str
    window: str  # "(0-30 s)"
    canary: str
    stable: str
    ratios: dict[str, float | None]  # None: nothing to divide (see reason)
    counts: tuple[int, int]  # canary, stable
    reason: str | None


def _count(figures: Mapping[str, Any] | None) -> int:
    return int((figures or {}).get("count") or 0)


def _percentile(figures: Mapping[str, Any], name: str) -> float | None:
    """The corrected figure where the run measured one: in the open model raw hides a stall's victims."""
    corrected = (figures.get("corrected") or {}).get(name)
    return corrected if corrected is not None else figures.get(name)


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{float(value):g}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{float(value):.1f}"


def roles_of(summary: Summary) -> tuple[str | None, str | None, str]:
    """(canary, stable, note): the summary's roles, else a guess that is said out loud in the header."""
    roles = summary.get("roles") or {}
    if roles.get("canary") and roles.get("stable"):
        return str(roles["canary"]), str(roles["stable"]), ""
    clusters = summary.get("clusters") or {}
    if len(clusters) != 2:
        return None, None, f"no roles in the summary and {len(clusters)} cluster(s), so no canary to compare"
    canary, stable = sorted(clusters, key=lambda name: (_count(clusters[name]), name))
    why = "fewer requests" if _count(clusters[canary]) < _count(clusters[stable]) else "as many requests, first by name"
    return canary, stable, f"no roles in the summary: {canary} ({why}) is taken as the canary"


def ratio_row(label: str, window: str, figures: Mapping[str, Any], canary: str, stable: str) -> Ratio:
    """One window's row; a window without requests of either cluster has no ratio, and says which is empty."""
    ours, theirs = figures.get(canary) or {}, figures.get(stable) or {}
    counts = (_count(ours), _count(theirs))
    empty = [name for name, count in zip((canary, stable), counts) if not count]
    if empty:
        return Ratio(label, window, canary, stable, dict.fromkeys(RATIOS), counts, f"no {' or '.join(empty)} requests")
    ratios: dict[str, float | None] = {}
    for name in RATIOS:
        top, bottom = _percentile(ours, name), _percentile(theirs, name)
        ratios[name] = top / bottom if top is not None and bottom else None
    missing = [name for name, value in ratios.items() if value is None]
    return Ratio(label, window, canary, stable, ratios, counts,
                 f"{' and '.join(missing)} missing or zero" if missing else None)


def ratios(summary: Summary) -> tuple[str, list[Ratio]]:
    """The seeds' table as data (header, rows), so the terminal and the HTML page cannot disagree."""
    canary, stable, note = roles_of(summary)
    if canary is None or stable is None:
        return f"canary vs stable: {note}", []
    source = "corrected where measured, else raw"
    steps = summary.get("steps") or []
    header = f"canary vs stable, {'by step' if steps else 'whole run'}: {canary} p95/p99 over {stable}'s ({source})"
    windows = steps or [{"name": "whole run", "start": 0.0, "end": summary.get("duration_s"),
                         "clusters": summary.get("clusters")}]
    return header + (f"; {note}" if note else ""), [
        ratio_row(str(w.get("name", "?")), f"({_seconds(w.get('start'))}-{_seconds(w.get('end'))} s)",
               w.get("clusters") or {}, canary, stable) for w in windows]


def _ratio_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _requests_text(row: Ratio) -> str:
    counts = ", ".join(f"{name} {count:,} req" for name, count in zip((row.canary, row.stable), row.counts) if count)
    return "; ".join(part for part in (row.reason, counts) if part)


def ratio_lines(summary: Summary) -> list[str]:
    """The seeds' table for the terminal: a header, then one aligned line per step (or the whole run)."""
    header, rows = ratios(summary)
    label_width = max((len(row.label) for row in rows), default=0)
    window_width = max((len(row.window) for row in rows), default=0)
    return [header, *(f"{row.label:<{label_width}}  {row.window:<{window_width}}   {row.canary} vs {row.stable}: "
                      + ", ".join(f"{name} {_ratio_text(row.ratios[name])}" for name in RATIOS)
                      + f"  ({_requests_text(row)})" for row in rows)]


def _differs(figures: Mapping[str, Any], name: str) -> bool:
    corrected = (figures.get("corrected") or {}).get(name)
    return corrected is not None and corrected != figures.get(name)


def figure_rows(summary: Summary) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the figures table: clusters, endpoints, total; corrected columns only if any differ."""
    groups = [(f"cluster {name}", figures) for name, figures in (summary.get("clusters") or {}).items()]
    groups += [(f"endpoint {name}", figures) for name, figures in (summary.get("endpoints") or {}).items()]
    if summary.get("unattributed"):
        groups.append(("unattributed", summary["unattributed"]))   # no X-Served-By: refused, timed out, router's own
    groups.append(("total", summary.get("total") or {}))
    corrected = any(_differs(figures, name) for _, figures in groups for name in RATIOS)
    header = ["", "count", "errors", "err %", *(f"{name} ms" for name in PERCENTILES)]
    header += [f"{name} corr" for name in RATIOS] if corrected else []
    rows = []
    for label, figures in groups:
        count, errors = _count(figures), int(figures.get("errors") or 0)
        row = [label, f"{count:,}", f"{errors:,}", f"{errors / count:.2%}" if count else "-"]
        row += [_ms(figures.get(name)) for name in PERCENTILES]
        if corrected:
            row += [_ms(figures["corrected"][name]) if _differs(figures, name) else "" for name in RATIOS]
        rows.append(row)
    return header, rows


def _warning(summary: Summary) -> str | None:
    """Printed last and loud: a saturated generator under-reports latency, so the figures above may flatter."""
    warnings = "; ".join(map(str, (summary.get("generator") or {}).get("warnings") or []))
    return f"WARNING: the load generator may have limited this run: {warnings}" if warnings else None


def capacity_lines(summary: Summary) -> list[str]:
    """The capacity search's result (summary.json `capacity`), or nothing for other scenarios."""
    capacity = summary.get("capacity")
    if not capacity:
        return []
    lines = [f"capacity: {capacity.get('note', '')}"]
    if capacity.get("sustainable_rate") is not None:
        lines += [f"  sustainable: {float(capacity['sustainable_rate']):.3g} tasks/s = {capacity['requests_per_s']} "
                  f"requests/s, {capacity['logins_per_s']} logins/s, {capacity['session_checks_per_s']} session checks/s",
                  f"  per node: {capacity['per_node_rate']} tasks/s over {sum(capacity['nodes'].values())} nodes; "
                  f"to carry {float(capacity['peak_rate']):g} tasks/s on one cluster with "
                  f"+{(float(capacity['headroom']) - 1):.0%} headroom: {capacity['nodes_per_cluster_for_headroom']} "
                  "nodes per cluster"]
    return lines + [f"  {line}" for line in capacity.get("verdicts") or []]


def _slo_line(verdict: Mapping[str, Any]) -> str:
    return str(verdict.get("line") or f"{'ok' if verdict.get('ok') else 'FAIL'} {verdict.get('text', '?')}")


def summary_lines(summary: Summary) -> list[str]:
    """The terminal report: figures table, the seeds' table, the mail delay, the IMAP logins' back-end calls, SLO
    verdicts, and the generator's warning."""
    header, rows = figure_rows(summary)
    lines = mail_delay.aligned(header, rows)
    if len(header) > 4 + len(PERCENTILES):
        lines.append(CORRECTED_NOTE)
    lines += ["", *ratio_lines(summary)]
    for section in (mail_delay.lines(summary), node_metrics.lines(summary)):
        lines += ["", *section] if section else []
    capacity = capacity_lines(summary)
    lines += ["", *capacity] if capacity else []
    slo, warning = summary.get("slo") or [], _warning(summary)
    lines += ["", *map(_slo_line, slo)] if slo else []
    return lines + (["", warning] if warning else [])


def _number(value: Any) -> float:
    """matplotlib draws NaN as a gap, which is what a second without requests is."""
    return math.nan if value is None else float(value)


def _plain(text: Any) -> str:
    """Escape mathtext: a `$` in an event text or a cluster name must not make savefig raise."""
    return str(text).replace("$", r"\$")


def _colour(name: str, index: int) -> str:
    """Clusters named after a colour (blue/green deployments) are drawn in it: one less legend lookup."""
    return f"tab:{name}" if f"tab:{name}" in PALETTE else PALETTE[index % len(PALETTE)]


def _end(summary: Summary) -> float:
    times = [float(summary.get("duration_s") or 0)]
    times += [float(entry.get("t") or 0) for entry in summary.get("timeline") or []]
    times += [float(event.get("t") or 0) for event in summary.get("events") or []]
    return max(times) or 1.0


def _cluster_names(summary: Summary) -> list[str]:
    timeline = summary.get("timeline") or []
    return sorted(set(summary.get("clusters") or {}).union(*(entry.get("clusters") or {} for entry in timeline)))


def _series(summary: Summary, cluster: str, key: str) -> list[float]:
    return [_number(((entry.get("clusters") or {}).get(cluster) or {}).get(key)) for entry in summary["timeline"]]


def _events(ax: Axes, summary: Summary) -> None:
    """Events as labelled vertical lines, so a latency step can be read against the kill or share change behind it."""
    end = _end(summary)
    for event in (e for e in summary.get("events") or [] if e.get("t") is not None):
        t, colour = float(event["t"]), EVENT_COLOURS.get(str(event.get("kind")), "0.5")
        ax.axvline(t, color=colour, linestyle=":", linewidth=1)
        ax.text(t, 0.98, _plain(event.get("text") or event.get("kind") or ""), transform=ax.get_xaxis_transform(),
                rotation=90, ha="left" if t < end / 2 else "right", va="top", fontsize=7, color=colour)


def _share(ax: Axes, summary: Summary) -> Axes | None:
    """The canary's share as a step function on a secondary axis: latency changes follow traffic changes."""
    shares = sorted((float(e["t"]), float(e["share"])) for e in summary.get("events") or []
                    if e.get("kind") == "share" and e.get("share") is not None and e.get("t") is not None)
    if not shares:
        return None
    twin = ax.twinx()
    twin.step([t for t, _ in shares] + [max(_end(summary), shares[-1][0])], [s for _, s in shares] + [shares[-1][1]],
              where="post", color=EVENT_COLOURS["share"], alpha=0.6, linewidth=2, label="canary share")
    twin.set_ylim(0, 100)
    twin.set_ylabel("canary share (%)")
    return twin


def _save(fig: Any, ax: Axes, summary: Summary, path: Path, title: str, extra: Axes | None = None) -> Path:
    """Common finish; the note keeps an empty plot from reading as "no latency" rather than "no data"."""
    if not summary.get("timeline"):
        ax.text(0.5, 0.5, "no timeline in this summary", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlim(0, _end(summary))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("seconds since start")
    ax.set_title(_plain(title))
    pairs = [axes.get_legend_handles_labels() for axes in (ax, extra) if axes is not None]
    handles, labels = [h for pair in pairs for h in pair[0]], [label for pair in pairs for label in pair[1]]
    if handles:  # below the axes: inside, it hides the lines and event labels it explains
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.15), fontsize=7, ncol=7)
    fig.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})  # Software carries a URL
    plt.close(fig)
    return path


def plot_latency(summary: Summary, path: Path) -> Path:
    """p50/p95/p99 per second per cluster (raw: the timeline has no corrected figures), events and share."""
    fig, ax = plt.subplots(figsize=(10, 4.8))
    if summary.get("timeline"):
        times = [_number(entry.get("t")) for entry in summary["timeline"]]
        for index, name in enumerate(_cluster_names(summary)):
            for key, style in PLOTTED.items():
                ax.plot(times, _series(summary, name, key), style, color=_colour(name, index),
                        label=_plain(f"{name} {key}"))
    ax.set_ylabel("latency (ms)")
    _events(ax, summary)
    return _save(fig, ax, summary, path, f"latency: {summary.get('scenario', '')}", _share(ax, summary))


def plot_errors(summary: Summary, path: Path) -> Path:
    """Share of failed requests per second per cluster: a canary's errors show before its latency does."""
    fig, ax = plt.subplots(figsize=(10, 4.0))
    if summary.get("timeline"):
        times = [_number(entry.get("t")) for entry in summary["timeline"]]
        for index, name in enumerate(_cluster_names(summary)):
            counts, errors = _series(summary, name, "count"), _series(summary, name, "errors")
            rates = [e / c * 100 if c and not math.isnan(c) and not math.isnan(e) else math.nan
                     for c, e in zip(counts, errors)]
            ax.plot(times, rates, "-", color=_colour(name, index), label=_plain(name))
    ax.set_ylabel("errors (% of requests)")
    _events(ax, summary)
    return _save(fig, ax, summary, path, f"errors: {summary.get('scenario', '')}")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], classes: Sequence[str] = ()) -> str:
    """An HTML table; `classes` (one per row, optional) colour SLO verdicts."""
    head = "".join(f"<th>{_e(cell)}</th>" for cell in header)
    marks = [*classes, *[""] * (len(rows) - len(classes))]
    body = "".join((f'<tr class="{_e(mark)}">' if mark else "<tr>")
                   + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row, mark in zip(rows, marks))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.2em .6em;text-align:right}td:first-child,th:first-child{text-align:left}
tr.fail td{background:#fdd}tr.ok td{background:#efe}.warning{background:#ffd;border:1px solid #cc0;padding:.5em}
img{max-width:100%;display:block;margin:1em 0}"""


def _mail_html(summary: Summary) -> str:
    """The mail delay table (loadtests/mail_delay.py), or nothing for a run without the recovery journey."""
    mail = summary.get("mail")
    if not mail:
        return ""
    note = f"<p>note: {_e(mail['note'])}</p>" if mail.get("note") else ""
    return f"<h2>mail delay</h2><p>{_e(mail_delay.title(mail))}</p>" + _table(*mail_delay.rows(mail)) + note


def _imap_html(summary: Summary) -> str:
    """The IMAP logins' back-end table (loadtests/node_metrics.py), or nothing for a run without IMAP logins."""
    imap = summary.get("imap")
    if not imap:
        return ""
    notes = "".join(f"<p>{_e(line)}</p>" for line in node_metrics.notes(imap))
    return (f"<h2>IMAP logins: the login service's side</h2><p>{_e(node_metrics.title(imap))}</p>"
            + _table(*node_metrics.rows(imap.get("backend") or {})) + notes)


def render_html(summary: Summary, latency_png: Path, errors_png: Path) -> str:
    """The whole report as one HTML string; every value from the summary passes through html.escape."""
    parameters = [("scenario", summary.get("scenario")), ("host", summary.get("host")),
                  ("started at", summary.get("started_at")), ("duration (s)", summary.get("duration_s")),
                  ("users", summary.get("users")), ("processes", summary.get("processes")),
                  ("rate (req/s)", "closed model" if summary.get("rate") is None else summary["rate"]),
                  ("worst send lag (ms)", summary.get("worst_send_lag_ms")),
                  ("generator CPU max (%)", (summary.get("generator") or {}).get("cpu_percent_max")),
                  ("exit code", summary.get("exit_code"))]
    header, rows = figure_rows(summary)
    ratio_header, ratio_rows = ratios(summary)
    slo = summary.get("slo") or []
    events = summary.get("events") or []
    warning = _warning(summary)
    parts = [f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>load run: {_e(summary.get('scenario'))}"
             f"</title><style>{CSS}</style></head><body><h1>load run: {_e(summary.get('scenario'))}</h1>",
             f'<p class="warning">{_e(warning)}</p>' if warning else "",
             "<h2>run</h2>", _table(["parameter", "value"], [[k, "-" if v is None else str(v)] for k, v in parameters]),
             "<h2>figures</h2>", _table(header, rows),
             f"<p>{_e(CORRECTED_NOTE)}</p>" if len(header) > 4 + len(PERCENTILES) else "",
             "<h2>canary vs stable</h2>", f"<p>{_e(ratio_header)}</p>",
             _table(["step", "window", "clusters", *(f"{name} ratio" for name in RATIOS), "requests"],
                    [[row.label, row.window, f"{row.canary} vs {row.stable}",
                      *(_ratio_text(row.ratios[name]) for name in RATIOS), _requests_text(row)] for row in ratio_rows])
             if ratio_rows else "",
             _mail_html(summary), _imap_html(summary),
             ("<h2>capacity</h2><pre>" + _e("\n".join(capacity_lines(summary))) + "</pre>")
             if summary.get("capacity") else "",
             "<h2>SLOs</h2>", _table(["verdict", "SLO", "detail"],
                                     [["ok" if v.get("ok") else "FAIL", str(v.get("text", "")), _slo_line(v)]
                                      for v in slo], ["ok" if v.get("ok") else "fail" for v in slo])
             if slo else "<p>no SLOs given</p>",
             "<h2>events</h2>", _table(["t (s)", "kind", "text"],
                                       [[_seconds(e.get("t")), str(e.get("kind", "")), str(e.get("text", ""))]
                                        for e in events]) if events else "<p>no events</p>",
             "<h2>latency</h2>", _image(latency_png, "latency per cluster over time"),
             "<h2>errors</h2>", _image(errors_png, "error rate per cluster over time"), "</body></html>"]
    return "\n".join(part for part in parts if part)


def write(summary: Summary, out_dir: Path) -> list[Path]:
    """latency.png, errors.png and report.html (which embeds both) in out_dir; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    latency = plot_latency(summary, out_dir / "latency.png")
    errors = plot_errors(summary, out_dir / "errors.png")
    page = out_dir / "report.html"
    page.write_text(render_html(summary, latency, errors), encoding="utf-8")
    return [latency, errors, page]
