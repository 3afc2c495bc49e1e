"""gunicorn settings of one login-service node; every value can be overridden from the environment.

Why these values:
- gthread worker class: it keeps connections alive for the router's connection pool (the sync
  worker closes each one) and parks idle keep-alive connections in a poller, not in a thread.
- workers = cores, threads = 2: measured on 2 cores (docs/benchmarks.md), one thread per
  worker serves GET /api/session ~20 % faster (no GIL or logging-lock contention), but logins
  need more requests in flight than cores to keep every core on Argon2 (~20 ms each) while
  others wait on the database, and 2 x cores single-threaded workers contend on SQLite's write
  lock (p99 over 1 s). Two threads per worker is the measured balance.
- timeout 30 s: a worker stuck that long is killed and replaced; graceful_timeout 20 s lets
  in-flight requests finish on SIGTERM (the router drains a node that reports not-ready).
- drain on SIGTERM (LOGINSVC_DRAIN_SECONDS, default 1 s): the master first creates the drain file,
  so /readyz answers 503 "draining" while the node keeps serving; the router's health check
  (interval 0.25 s, fall 2) stops sending to it within ~0.5 s; only then does the graceful stop
  begin. Without it, requests routed in the gap would hit a closed socket. SIGINT (Ctrl-C in a
  terminal) and SIGQUIT skip the drain. Supervisors give a node stop time > drain + graceful.
- keepalive 5 s: longer than the router's idle pool timeout would be pointless, shorter costs
  reconnects.
- umask 0077: the node's files (heartbeats, metric files, the drain file, SQLite locally) are
  owner-only whoever started it; set here as the process umask too (before preload_app loads
  Django), since gunicorn's own `umask` covers only its sockets and worker temp files.
- back-channel logouts (OpenID Connect Back-Channel Logout 1.0): each worker runs one delivery
  thread (post_worker_init), stopped at worker_exit; the outbox is in the database, so a worker
  or node that stops mid-delivery loses nothing (another picks the row up after its lease).
- max_requests 200000 ± 20000 jitter: recycles workers against slow leaks without all of them
  restarting at the same moment. (A worker serves ~1,000 requests/s at full load; 5,000 would
  restart it every few seconds and show up as 100 ms tail latency.)
"""
import os
import shutil
import sys
import time

from prometheus_client import multiprocess

bind = os.environ.get("LOGINSVC_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 1))
worker_class = os.environ.get("LOGINSVC_WORKER_CLASS", "gthread")
threads = int(os.environ.get("LOGINSVC_THREADS", "2"))
timeout = int(os.environ.get("LOGINSVC_WORKER_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("LOGINSVC_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
max_requests = 200000
max_requests_jitter = 20000
preload_app = True  # a configuration error is reported once, before any worker forks
wsgi_app = "loginsvc.wsgi:application"
accesslog = None  # the app writes a structured access log with request ids
errorlog = "-"
loglevel = os.environ.get("LOGINSVC_GUNICORN_LOG_LEVEL", "warning")
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
umask = 0o077
os.umask(umask)
proc_name = f"loginsvc-{os.environ.get('LOGINSVC_NODE', 'local')}"
drain_seconds = float(os.environ.get("LOGINSVC_DRAIN_SECONDS", "1"))
# Workers inherit the path through the environment; the readiness check looks for the file.
os.environ.setdefault(
    "LOGINSVC_DRAIN_FILE",
    os.path.join(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or "/tmp", f"{proc_name}.{os.getpid()}.draining"),
)


def on_starting(server) -> None:  # noqa: ANN001 - gunicorn's hook signature
    """Start each node with empty multiprocess metric files, so counters never mix runs."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)
    _remove_drain_file()


def when_ready(server) -> None:  # noqa: ANN001
    """Replace the arbiter's SIGTERM handler: announce not-ready, keep serving `drain_seconds`, then stop.

    The arbiter looks its handlers up by name on the instance (handle_term), so an instance attribute
    takes precedence; the original raises StopIteration, which starts gunicorn's graceful stop."""
    original = server.handle_term

    def handle_term() -> None:
        path = os.environ["LOGINSVC_DRAIN_FILE"]
        try:
            with open(path, "w"):
                pass
            server.log.info("SIGTERM: readiness off, draining for %.1fs before the graceful stop", drain_seconds)
            time.sleep(drain_seconds)
        except OSError as exc:
            server.log.warning("SIGTERM: cannot create the drain file (%s); stopping without a drain", exc)
        original()

    server.handle_term = handle_term


OUTBOXES = ("loginsvc.sso.backchannel", "loginsvc.mail.delivery")  # each has start(), stop(timeout), kick()


def post_worker_init(worker) -> None:  # noqa: ANN001
    """Each worker delivers each outbox (loginsvc/outbox.py: back-channel logouts, mail) in a daemon thread:
    woken right after a change commits, and looking for due retries every second."""
    import importlib

    for name in OUTBOXES:
        importlib.import_module(name).start()


def worker_exit(server, worker) -> None:  # noqa: ANN001
    """Let a delivery in flight finish; a row it could not finish stays in the outbox for any node."""
    for name in OUTBOXES:
        module = sys.modules.get(name)  # absent: the app never loaded here
        if module is not None and not module.stop(timeout=min(5.0, graceful_timeout / 4)):
            server.log.warning("worker %s: %s thread still busy at exit", worker.pid, name)


def on_exit(server) -> None:  # noqa: ANN001
    _remove_drain_file()


def _remove_drain_file() -> None:
    try:
        os.unlink(os.environ["LOGINSVC_DRAIN_FILE"])
    except OSError:
        pass


def child_exit(server, worker) -> None:  # noqa: ANN001
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
