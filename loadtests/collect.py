"""Locust's events wired to our recorders: every response by cluster and name, workers' figures merged on the master, live progress, the scenario's actions and the reports at the end.

In a distributed run each worker records into its own Recorder and Timeline and ships them with every
stats report (Locust's report_to_master / worker_report events, every 3 s and once more at the end);
the master adds the HDR histograms and concatenates the samples, so merged figures are exact.
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import gevent
from locust.runners import MasterRunner, WorkerRunner

from loadtests import node_metrics, report, run_settings, scenarios, summary, thresholds
from loadtests.latency import Recorder
from loadtests.mail_delay import MailDelay
from loadtests.ops import Ops, OpsError, nodes_per_cluster, roles
from loadtests.timeline import Timeline

log = logging.getLogger("loadtests")
PROGRESS_SECONDS = 2.0
LOOP_PROBE_SECONDS = 0.1
LOOP_LAG_WARN_SECONDS = 0.05   # a gevent loop this late is busy: the generator, not the server, sets the pace
LOOP_LAG_WARN_COUNT = 3
MAIL_POLL_SECONDS = 1.0        # the Maildir read while the run goes on: the live line, and less to read at the end


class Collector:
    """One process's figures (and, on the master or a local run, everyone's)."""

    def __init__(self, environment: Any) -> None:
        self.environment = environment
        self.recorder, self.timeline = Recorder(), Timeline()
        self.loop_lag_max, self.loop_lag_count = 0.0, 0
        self.started_wall = 0.0
        self.started = 0.0
        self.events: list[dict[str, Any]] = []
        self.roles: dict[str, str] | None = None
        self.nodes: dict[str, int] = {}
        self.cpu_max = 0.0
        self.greenlets: list[gevent.Greenlet] = []
        self.ops: Ops | None = None
        self.capacity_lines: list[str] = []
        self.judged = 0   # capacity steps judged so far
        self.worker_counts: dict[str, int] = {}   # responses each worker reported (a distributed run)
        self.mail = MailDelay()   # the recovery journey's asks (loadtests/recovery.py) and, here, their mail
        self.backend: node_metrics.Window | None = None   # the nodes' histograms, for the IMAP journey's calls
        self.backend_figures: dict[str, Any] | None = None
        events = environment.events
        events.request.add_listener(self.on_request)
        events.test_start.add_listener(self.on_test_start)
        events.report_to_master.add_listener(self.on_report_to_master)
        events.worker_report.add_listener(self.on_worker_report)
        events.quitting.add_listener(self.on_quitting)

    @property
    def leads(self) -> bool:
        """The master, or the only process of a local run: it judges and reports."""
        return not isinstance(self.environment.runner, WorkerRunner)

    # -- every process -------------------------------------------------------------------------------
    def on_request(self, request_type: str, name: str, response_time: float, response_length: int,
                   response: Any = None, context: dict[str, Any] | None = None, exception: Any = None,
                   start_time: float | None = None, **_: Any) -> None:
        served = None
        headers = getattr(response, "headers", None)
        if headers is not None:
            served = headers.get("X-Served-By")
        cluster = served.split("/", 1)[0] if served else None
        seconds = (response_time or 0.0) / 1000
        sent = start_time if start_time is not None else time.time() - seconds
        lag = (context or {}).get("lag")
        intended = None if lag is None else sent - float(lag)
        raw, corrected = self.recorder.record(name, cluster, sent, sent + seconds, intended, exception is not None)
        self.timeline.add(int(sent if intended is None else intended), cluster, name, raw, corrected,
                          exception is not None)

    def on_test_start(self, environment: Any, **_: Any) -> None:
        self.started_wall, self.started = time.time(), time.monotonic()
        run = run_settings.reset(environment, self.started_wall)
        if self.leads and run.recovery_per_minute > 0:
            self.mail.watch(run.maildir, self.started_wall, run.recovery_limit)   # before the loop is probed
            self.greenlets.append(gevent.spawn(self.watch_mail))
        self.greenlets.append(gevent.spawn(self.probe_loop))
        if not self.leads:
            return
        nodes = node_metrics.stack_nodes(run.var_dir) if run.imap_per_second > 0 else None
        if nodes is not None:
            self.backend = node_metrics.Window(nodes)
            self.backend.start()
        options = environment.parsed_options
        if options.lt_admin:
            self.ops = Ops(options.lt_admin, Path(options.lt_var_dir or "var"))
            try:
                status = self.ops.status()
                self.roles, self.nodes = roles(status), nodes_per_cluster(status)
            except OpsError as exc:
                self.event("note", f"no router status: {exc}")
        self.greenlets.append(gevent.spawn(self.run_scenario, run.scenario))
        self.greenlets.append(gevent.spawn(self.progress, run.scenario))

    def probe_loop(self) -> None:
        """How late the event loop wakes a sleeping greenlet: a busy generator is late for every request."""
        while True:
            asked = time.monotonic()
            gevent.sleep(LOOP_PROBE_SECONDS)
            lag = time.monotonic() - asked - LOOP_PROBE_SECONDS
            self.loop_lag_max = max(self.loop_lag_max, lag)
            self.loop_lag_count += lag > LOOP_LAG_WARN_SECONDS

    def watch_mail(self) -> None:
        """The Maildir read as it fills: each scan reads only the messages that arrived since the last."""
        while True:
            gevent.sleep(MAIL_POLL_SECONDS)
            self.mail.poll()

    def warnings(self) -> list[str]:
        """Why this run's figures are not to be trusted, if they are not: the generator itself was the limit."""
        runner = self.environment.runner
        warnings = []
        if getattr(runner, "cpu_warning_emitted", False) or getattr(runner, "worker_cpu_warning_emitted", False):
            warnings.append("Locust's CPU warning: a generator process went over 90 % CPU; its latencies include "
                            "its own delays and are not to be trusted (use --processes, or fewer users)")
        if self.loop_lag_count >= LOOP_LAG_WARN_COUNT:
            warnings.append(f"the generator's event loop was late {self.loop_lag_count} times by more than "
                            f"{LOOP_LAG_WARN_SECONDS * 1000:.0f} ms (worst {self.loop_lag_max * 1000:.0f} ms): it was "
                            "CPU-bound, and its figures are not to be trusted")
        return warnings

    def on_report_to_master(self, client_id: str, data: dict[str, Any]) -> None:
        data["loadtests"] = {"recorder": self.recorder.encode(), "timeline": self.timeline.drain(),
                             "loop_lag_max": self.loop_lag_max, "loop_lag_count": self.loop_lag_count,
                             "mail": self.mail.drain()}
        self.recorder = Recorder()
        self.loop_lag_count = 0

    # -- the master ----------------------------------------------------------------------------------
    def on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        ours = data.get("loadtests")
        if not ours:
            return
        count = self.recorder.merge(ours["recorder"])
        self.worker_counts[client_id] = self.worker_counts.get(client_id, 0) + count
        self.timeline.merge(ours["timeline"])
        self.loop_lag_max = max(self.loop_lag_max, float(ours["loop_lag_max"]))
        self.loop_lag_count += int(ours["loop_lag_count"])
        self.mail.merge(ours.get("mail") or {})

    def event(self, kind: str, text: str, extra: dict[str, Any] | None = None) -> None:
        self.events.append({"t": round(time.monotonic() - self.started, 3), "kind": kind, "text": text,
                            **(extra or {})})
        log.info("event: %s", text)

    def run_scenario(self, scenario: scenarios.Scenario) -> None:
        try:
            scenario.begin(self.ops, self.event)
            if isinstance(scenario, scenarios.Capacity):
                self.judge_capacity(scenario)
        except OpsError as exc:
            self.event("note", f"the scenario's action failed: {exc}")

    def judge_capacity(self, scenario: scenarios.Capacity, waiting: bool = True) -> None:
        """Each step's SLOs once the workers' reports covering it are in (or, at the end, at once); the first
        breach ends the run."""
        delay = 4.0 if isinstance(self.environment.runner, MasterRunner) else 0.5
        while self.judged < len(scenario.steps) and scenario.broken_at is None:
            step = scenario.steps[self.judged]
            if waiting:
                gevent.sleep(max(0.0, step.end + delay - (time.monotonic() - self.started)))
            elif step.start >= time.monotonic() - self.started:
                return   # never started
            window = self.timeline.window(self.started_wall + step.start, self.started_wall + step.end)
            verdicts, code = thresholds.gate(scenario.slos, window)
            self.capacity_lines += [f"{step.name}: {v.line}" for v in verdicts]
            self.judged += 1
            if code:
                scenario.broken_at = self.judged - 1
                self.event("step", f"capacity step {step.name} broke an SLO")
                return
            self.event("step", f"capacity step {step.name} held")

    def progress(self, scenario: scenarios.Scenario) -> None:
        """One line every PROGRESS_SECONDS on stdout (rewritten in place on a terminal); Locust's own
        output goes to stderr, which `python -m loadtests run` keeps in the report folder."""
        tty = sys.stdout.isatty()
        while True:
            gevent.sleep(PROGRESS_SECONDS)
            line = self.progress_line(scenario)
            sys.stdout.write(("\r" + line + "\x1b[K") if tty else line + "\n")
            sys.stdout.flush()

    def progress_line(self, scenario: scenarios.Scenario) -> str:
        runner = self.environment.runner
        total = runner.stats.total
        cpu = getattr(runner, "current_cpu_usage", 0.0)
        if isinstance(runner, MasterRunner):
            cpu = max((c.cpu_usage for c in runner.clients.values()), default=0.0)
        self.cpu_max = max(self.cpu_max, float(cpu or 0.0))
        tails = self.recorder.tails(corrected=bool(scenario.rate))
        clusters = "  ".join(f"{name} p95 {_ms(p95)} p99 {_ms(p99)}" for name, (p95, p99) in tails.items())
        if self.mail.index is not None:
            clusters += "  mail {}/{}".format(*self.mail.counts())
        failures = total.num_failures
        share = f" ({failures / total.num_requests:.1%})" if total.num_requests else ""
        return (f"[{time.monotonic() - self.started:5.0f}/{scenario.duration:.0f} s] users {runner.user_count}  "
                f"req/s {total.current_rps:7.1f}  errors {failures}{share}  {clusters or 'no responses yet'}")

    def on_quitting(self, environment: Any, **_: Any) -> None:
        if not self.leads or not self.started:
            return
        for greenlet in self.greenlets:
            greenlet.kill(block=False)
        if sys.stdout.isatty():
            sys.stdout.write("\n")
        run = run_settings.current(environment)
        if isinstance(run.scenario, scenarios.Capacity):
            self.judge_capacity(run.scenario, waiting=False)   # the last step ends with the run
        try:
            run.scenario.finish(self.ops, self.event)
        except OpsError as exc:
            self.event("note", f"could not restore the stack: {exc}")
        elapsed = time.monotonic() - self.started
        if run.recovery_per_minute > 0:
            self.mail.wait(run.mail_grace, gevent.sleep)   # the mail of the last asks is still on its way
        if self.backend is not None:   # every IMAP login has ended, and with it Dovecot's calls
            self.backend_figures = self.backend.finish()
        options = environment.parsed_options
        result = summary.build(self, run, options, elapsed)
        out = Path(options.lt_out)
        out.mkdir(parents=True, exist_ok=True)
        summary.write(result, out)
        report.write(result, out)
        environment.process_exit_code = result["exit_code"]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"
