"""The load report (loadtests/report.py): the seeds' ratio table, the terminal tables, a self-contained HTML page."""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

import pytest

from loadtests import report

PNG = b"\x89PNG\r\n\x1a\n"
HOST = "http://127.0.0.1:8000/?a=1&b=2"  # the one URL the page may hold, and it needs escaping


def fig(count: int, p95: float | None = None, p99: float | None = None, errors: int = 0,
        corrected: dict[str, float] | None = None) -> dict[str, Any]:
    """A FIG as summary.json holds it: percentiles None when there were no requests."""
    if not count:
        return {"count": 0, "errors": errors, "p50": None, "p95": None, "p99": None, "p999": None}
    p95 = 10.0 if p95 is None else p95
    p99 = 2 * p95 if p99 is None else p99
    figures: dict[str, Any] = {"count": count, "errors": errors, "p50": p95 / 4, "p95": p95, "p99": p99,
                               "p999": p99 * 2, "max": p99 * 3}
    if corrected:
        figures["corrected"] = {"p50": p95 / 4, "p95": p95, "p99": p99, "p999": p99 * 2, **corrected}
    return figures


def step(name: str, start: float, end: float, blue: dict[str, Any], green: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "start": start, "end": end, "share": float(name.split()[0]),
            "clusters": {"blue": blue, "green": green}}


def summary(**overrides: Any) -> dict[str, Any]:
    """A two-cluster canary run with two steps, a timeline, events, SLO verdicts and no warnings."""
    base: dict[str, Any] = {
        "scenario": "canary-ramp", "host": HOST, "started_at": "2026-12-03T08:00:00Z", "duration_s": 60.0,
        "users": 20, "rate": None, "processes": 1, "worst_send_lag_ms": 1.2, "exit_code": 0,
        "total": fig(6843, 9.0, errors=3),
        "clusters": {"blue": fig(5931, 10.0, errors=3), "green": fig(912, 2.0)},
        "endpoints": {"login": fig(843, 40.0, errors=3), "session": fig(6000, 4.0)},
        "roles": {"stable": "blue", "canary": "green"},
        "steps": [step("12 %", 0.0, 30.0, fig(5931, 10.0, 15.0), fig(812, 2.0, 5.0)),
                  step("50 %", 30.0, 60.0, fig(100, 4.0, 8.0), fig(100, 8.0, 8.0))],
        "timeline": [{"t": float(t), "users": 20, "clusters": {
            "blue": {"count": 90, "errors": t % 3, "p50": 3.0, "p95": 9.0, "p99": 14.0},
            "green": {"count": 0, "errors": 0, "p50": None, "p95": None, "p99": None} if t == 40 else
                     {"count": 10, "errors": 0, "p50": 2.0, "p95": 5.0, "p99": 8.0}}} for t in range(60)],
        "events": [{"t": 0.0, "kind": "share", "text": "share 12 %", "share": 12.0},
                   {"t": 30.0, "kind": "share", "text": "share 50 %", "share": 50.0},
                   {"t": 41.0, "kind": "kill", "text": r"kill green-1 <$\pid$>"},  # as mathtext: savefig raises
                   {"t": 50.0, "kind": "heal", "text": "heal green-1"}],
        "slo": [{"text": "p95<300", "ok": True, "line": "ok p95<300: p95 is 9.0 ms, limit < 300.0 ms"},
                {"text": "green:p99<5", "ok": False, "line": "FAIL green:p99<5: green:p99 is 10.0 ms, limit < 5.0 ms"}],
        "generator": {"warnings": [], "cpu_percent_max": 42.0},
    }
    base.update(overrides)
    return base


def test_ratio_lines_divide_the_canary_by_the_stable_cluster_per_step() -> None:
    header, first, second = report.ratio_lines(summary())
    assert "green" in header and "blue" in header
    assert first == "12 %  (0-30 s)    green vs blue: p95 0.20x, p99 0.33x  (green 812 req, blue 5,931 req)"
    assert second == "50 %  (30-60 s)   green vs blue: p95 2.00x, p99 1.00x  (green 100 req, blue 100 req)"


def test_ratio_lines_prefer_corrected_percentiles_on_either_side() -> None:
    """Corrected where present (green's p95 6 over blue's corrected 20), raw where not (p99 5 over blue's 25)."""
    steps = [step("12 %", 0.0, 30.0, fig(500, 10.0, 25.0, corrected={"p95": 20.0}),
                  fig(50, 2.0, 5.0, corrected={"p95": 6.0}))]
    _, line = report.ratio_lines(summary(steps=steps))
    assert "p95 0.30x, p99 0.20x" in line


def test_a_window_without_requests_of_a_cluster_has_no_ratio_and_says_why() -> None:
    steps = [step("5 %", 0.0, 10.0, fig(300), fig(0)), step("100 %", 10.0, 20.0, fig(0), fig(0))]
    _, canary_empty, both_empty = report.ratio_lines(summary(steps=steps))
    assert "p95 -, p99 -" in canary_empty and "(no green requests; blue 300 req)" in canary_empty
    assert "no green or blue requests" in both_empty and "x" not in both_empty.split(":", 1)[1]


def test_a_stable_percentile_of_zero_is_not_divided_by() -> None:
    steps = [step("12 %", 0.0, 30.0, fig(300, 0.0, 4.0), fig(30, 2.0, 6.0))]
    _, line = report.ratio_lines(summary(steps=steps))
    assert "p95 -, p99 1.50x" in line and "p95 missing or zero" in line


def test_without_steps_the_whole_run_is_compared() -> None:
    lines = report.ratio_lines(summary(steps=[]))
    assert len(lines) == 2
    assert lines[1].startswith("whole run  (0-60 s)   green vs blue: p95 0.20x, p99 0.20x")


def test_without_roles_the_cluster_with_fewer_requests_is_the_canary_and_the_header_says_so() -> None:
    header, line = report.ratio_lines(summary(roles=None, steps=[]))
    assert "no roles" in header and "green" in header
    assert "green vs blue: p95 0.20x" in line
    clusters = {"blue": fig(10, 10.0), "green": fig(900, 2.0)}
    header, line = report.ratio_lines(summary(roles=None, steps=[], clusters=clusters))
    assert "blue vs green: p95 5.00x" in line and "blue (fewer requests)" in header


def test_without_roles_and_three_clusters_there_is_no_canary_to_guess() -> None:
    clusters = {"a": fig(10), "b": fig(20), "c": fig(30)}
    assert report.ratio_lines(summary(roles=None, steps=[], clusters=clusters)) == [
        "canary vs stable: no roles in the summary and 3 cluster(s), so no canary to compare"]


def _row(lines: list[str], label: str) -> list[str]:
    [line] = [line for line in lines if line.startswith(label + " ")]
    return line[len(label):].split()


def test_summary_lines_table_clusters_endpoints_and_total_then_ratios_slos() -> None:
    lines = report.summary_lines(summary())
    assert lines[0].split() == ["count", "errors", "err", "%", "p50", "ms", "p95", "ms", "p99", "ms", "p999", "ms"]
    assert _row(lines, "cluster blue") == ["5,931", "3", "0.05%", "2.5", "10.0", "20.0", "40.0"]
    assert _row(lines, "endpoint login") == ["843", "3", "0.36%", "10.0", "40.0", "80.0", "160.0"]
    assert _row(lines, "total") == ["6,843", "3", "0.04%", "2.2", "9.0", "18.0", "36.0"]
    assert [line for line in lines if line.startswith(("cluster", "endpoint", "total"))][-1].startswith("total")
    assert report.ratio_lines(summary())[1] in lines
    assert lines.index("ok p95<300: p95 is 9.0 ms, limit < 300.0 ms") > lines.index(report.ratio_lines(summary())[-1])
    assert any(line.startswith("FAIL green:p99<5") for line in lines)
    assert not any("WARNING" in line for line in lines)


def test_summary_lines_show_corrected_only_where_it_differs_and_warn_about_the_generator() -> None:
    clusters = {"blue": fig(100, 10.0, 20.0, corrected={"p99": 55.0}), "green": fig(10, 2.0)}
    lines = report.summary_lines(summary(clusters=clusters, generator={"warnings": ["CPU at 97 %", "lag 250 ms"]}))
    assert lines[0].split()[-4:] == ["p95", "corr", "p99", "corr"]
    assert _row(lines, "cluster blue")[-1] == "55.0" and len(_row(lines, "cluster blue")) == 8  # p95 same: blank
    assert len(_row(lines, "cluster green")) == 7
    assert lines[-1] == "WARNING: the load generator may have limited this run: CPU at 97 %; lag 250 ms"
    assert "p95 corr" not in report.summary_lines(summary())[0]


def test_summary_lines_survive_a_run_without_requests() -> None:
    lines = report.summary_lines(summary(total=fig(0), clusters={"blue": fig(0), "green": fig(0)}, endpoints={},
                                         steps=[], slo=[]))
    assert _row(lines, "total") == ["0", "0", "-", "-", "-", "-", "-"]
    assert "no green or blue requests" in lines[-1]


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """One full report for the page tests: plotting costs most of this file's time."""
    out = tmp_path_factory.mktemp("report") / "nested"
    return out, report.write(summary(scenario="<script>alert(1)</script>",
                                     generator={"warnings": ["CPU <b>97 %</b>"]}), out)


def test_write_produces_two_pngs_and_a_page_embedding_them(written: tuple[Path, list[Path]]) -> None:
    out, paths = written
    assert paths == [out / "latency.png", out / "errors.png", out / "report.html"]
    assert all(path.is_file() and path.stat().st_size > 1000 for path in paths)
    assert all(path.read_bytes().startswith(PNG) for path in paths[:2])
    page = paths[2].read_text(encoding="utf-8")
    assert _images(page) == [paths[0].read_bytes(), paths[1].read_bytes()]


def test_the_page_fetches_nothing_and_escapes_every_summary_value(written: tuple[Path, list[Path]]) -> None:
    page = written[1][2].read_text(encoding="utf-8")
    assert re.findall(r"https?://[^\s<\"]*", page) == [html.escape(HOST)] and HOST not in page
    assert not re.search(r"<(script|link)\b|\bsrc=\"(?!data:image/png;base64,)", page, re.IGNORECASE)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>97" not in page and "CPU &lt;b&gt;97 %&lt;/b&gt;" in page
    assert r"kill green-1 &lt;$\pid$&gt;" in page  # the events list


def test_the_page_holds_the_parameters_tables_ratios_and_verdicts(written: tuple[Path, list[Path]]) -> None:
    page = written[1][2].read_text(encoding="utf-8")
    for cells in (["scenario", "&lt;script&gt;alert(1)&lt;/script&gt;"], ["started at", "2026-12-03T08:00:00Z"],
                  ["users", "20"], ["processes", "1"], ["rate (req/s)", "closed model"], ["duration (s)", "60.0"],
                  ["cluster blue", "5,931", "3", "0.05%", "2.5", "10.0", "20.0", "40.0"],
                  ["12 %", "(0-30 s)", "green vs blue", "0.20x", "0.33x", "green 812 req, blue 5,931 req"],
                  ["FAIL", "green:p99&lt;5", "FAIL green:p99&lt;5: green:p99 is 10.0 ms, limit &lt; 5.0 ms"],
                  ["41", "kill"]):
        assert "".join(f"<td>{cell}</td>" for cell in cells) in page, cells


def test_plots_are_written_without_timeline_events_or_requests(tmp_path: Path) -> None:
    bare = {"scenario": "empty", "total": fig(0), "clusters": {}, "endpoints": {}, "steps": []}
    paths = report.write(bare, tmp_path)
    assert [path.name for path in paths] == ["latency.png", "errors.png", "report.html"]
    assert all(path.read_bytes().startswith(PNG) for path in paths[:2])
    page = paths[2].read_text(encoding="utf-8")
    assert len(_images(page)) == 2 and "no events" in page and "no canary to compare" in page
