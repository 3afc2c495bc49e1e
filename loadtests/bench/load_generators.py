"""The load generators of the router benchmark: small C programs built with gcc at run time, because a Python
client would add more latency than the proxies it measures.

* open loop: GETs at Poisson arrival times at a fixed rate over keep-alive connections, each latency measured
  from the *intended* send time (no coordinated omission, like wrk2);
* burst: K requests written at once on K keep-alive connections, then the time until the last response, N
  times with a pause between bursts. A burst is what a proxy faces when it resumes after a stall (a VM
  preempted, a page fault, a collection): its open-loop p99 is decided by how fast it works off such backlogs.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
from typing import Any, Callable

_C_COMMON = r"""#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAXC 256
typedef struct { int fd; int busy; double t_intended; char buf[8192]; int len; } conn_t;
static conn_t C[MAXC];
static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec / 1e9; }
static int cmp(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }
static int open_conn(const char *host, int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0); struct sockaddr_in a = {0};
  a.sin_family = AF_INET; a.sin_port = htons(port); inet_pton(AF_INET, host, &a.sin_addr);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); exit(1); }
  int one = 1; setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); return fd;
}
/* returns 1 when a full response is in buf */
static int complete(conn_t *c) {
  c->buf[c->len] = 0; char *end = strstr(c->buf, "\r\n\r\n"); if (!end) return 0;
  long cl = 0; char *p = c->buf;
  while ((p = strcasestr(p, "\r\ncontent-length:")) && p < end) { cl = strtol(p + 17, NULL, 10); break; }
  return (end + 4 - c->buf) + cl <= c->len;
}
"""

OPENLOOP_C = r"""/* Open-loop HTTP/1.1 load generator: Poisson arrivals at a fixed rate, latency from the intended send time
   (no coordinated omission), keep-alive connections, timerfd for sub-ms pacing. */
""" + _C_COMMON + r"""
static int nconn;
int main(int argc, char **argv) {
  if (argc < 6) { fprintf(stderr, "usage: openloop HOST PORT RATE SECONDS CONNS\n"); return 2; }
  const char *host = argv[1]; int port = atoi(argv[2]); double rate = atof(argv[3]), secs = atof(argv[4]);
  nconn = atoi(argv[5]); if (nconn > MAXC) nconn = MAXC;
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  char req[256]; int reqlen = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: %s:%d\r\n\r\n", host, port);
  int ep = epoll_create1(0), tfd = timerfd_create(CLOCK_MONOTONIC, 0);
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = MAXC}; epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
  for (int i = 0; i < nconn; i++) { C[i].fd = open_conn(host, port); ev.data.u32 = i; epoll_ctl(ep, EPOLL_CTL_ADD, C[i].fd, &ev); }
  size_t cap = (size_t)(rate * secs * 1.2) + 1000, n = 0, late = 0, backlog_max = 0;
  double *lat = malloc(cap * sizeof(double)), *pending = malloc(cap * sizeof(double)); size_t ph = 0, pt = 0;
  srand48(12345); double t0 = now(), next = t0 + 0.01, stop = t0 + secs;
  while (1) {
    double t = now();
    while (next <= t && next < stop) { pending[pt++] = next; next += -log(1.0 - drand48()) / rate; }
    if (pt - ph > backlog_max) backlog_max = pt - ph;
    for (int i = 0; i < nconn && ph < pt; i++) if (!C[i].busy) {
      C[i].busy = 1; C[i].t_intended = pending[ph++]; C[i].len = 0;
      if (write(C[i].fd, req, reqlen) != reqlen) { perror("write"); return 1; }
    }
    if (ph < pt) late++;
    int inflight = 0; for (int i = 0; i < nconn; i++) inflight += C[i].busy;
    if (t >= stop && !inflight && ph == pt) break;
    if (t > stop + 10) { fprintf(stderr, "drain timeout\n"); break; }
    if (next < stop) { struct itimerspec its = {0}; its.it_value.tv_sec = (time_t)next; its.it_value.tv_nsec = (long)((next - (time_t)next) * 1e9);
      timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL); }
    struct epoll_event evs[64]; int k = epoll_wait(ep, evs, 64, 100);
    for (int j = 0; j < k; j++) {
      unsigned id = evs[j].data.u32;
      if (id == MAXC) { unsigned long long x; if (read(tfd, &x, 8) < 0) {} continue; }
      conn_t *c = &C[id]; int r = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
      if (r <= 0) { fprintf(stderr, "connection closed\n"); return 1; }
      c->len += r;
      if (c->busy && complete(c)) { if (n < cap) lat[n++] = now() - c->t_intended; c->busy = 0; }
    }
  }
  qsort(lat, n, sizeof(double), cmp);
  double el = secs;
  printf("{\"requests\": %zu, \"rate\": %.1f, \"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, \"p999_ms\": %.3f, \"max_ms\": %.3f, \"backlog_max\": %zu}\n",
         n, n / el, lat[n / 2] * 1e3, lat[(size_t)(n * 0.9)] * 1e3, lat[(size_t)(n * 0.99)] * 1e3, lat[(size_t)(n * 0.999)] * 1e3, lat[n - 1] * 1e3, backlog_max);
  return 0;
}
"""

BURST_C = r"""/* Burst: K requests at once on K keep-alive connections, time to the last response; N bursts, GAP_US apart. */
""" + _C_COMMON + r"""
int main(int argc, char **argv) {
  if (argc < 5) { fprintf(stderr, "usage: burst PORT K N GAP_US\n"); return 2; }
  int port = atoi(argv[1]), k = atoi(argv[2]), n = atoi(argv[3]); long gap = atol(argv[4]);
  if (k < 1 || k > MAXC || n < 1) { fprintf(stderr, "K must be 1..%d and N >= 1\n", MAXC); return 2; }
  char req[128]; int rl = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", port);
  int ep = epoll_create1(0);
  for (int i = 0; i < k; i++) {
    int fd = open_conn("127.0.0.1", port); C[i].fd = fd; struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i}; epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  double *t = malloc(n * sizeof(double));
  for (int r = 0; r < n; r++) {
    double t0 = now(); int left = k;
    for (int i = 0; i < k; i++) { C[i].len = 0; C[i].busy = 1; if (write(C[i].fd, req, rl) != rl) { perror("write"); return 1; } }
    while (left) {
      struct epoll_event evs[MAXC]; int m = epoll_wait(ep, evs, MAXC, 2000);
      if (m <= 0) { fprintf(stderr, "no answer within 2 s\n"); return 1; }
      for (int j = 0; j < m; j++) {
        conn_t *c = &C[evs[j].data.u32]; int x = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
        if (x <= 0) { fprintf(stderr, "connection closed\n"); return 1; }
        c->len += x; if (c->busy && complete(c)) { c->busy = 0; left--; }
      }
    }
    t[r] = now() - t0;
    struct timespec ts = {gap / 1000000, (gap % 1000000) * 1000}; nanosleep(&ts, NULL);
  }
  qsort(t, n, sizeof(double), cmp);
  printf("{\"bursts\": %d, \"k\": %d, \"p10_ms\": %.3f, \"p50_ms\": %.3f, \"p90_ms\": %.3f}\n", n, k, t[n / 10] * 1e3, t[n / 2] * 1e3, t[n * 9 / 10] * 1e3);
  return 0;
}
"""


def _build(tmp: pathlib.Path, name: str, source: str) -> str | None:
    """Compile one generator into `tmp`: its path, or None without a C compiler (or if it does not build)."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        return None
    (tmp / f"{name}.c").write_text(source)
    r = subprocess.run([gcc, "-O2", "-o", str(tmp / name), str(tmp / f"{name}.c"), "-lm"],
                       capture_output=True, text=True, timeout=60)
    return str(tmp / name) if r.returncode == 0 else None


def build_openloop(tmp: pathlib.Path) -> str | None:
    return _build(tmp, "openloop", OPENLOOP_C)


def build_burst(tmp: pathlib.Path) -> str | None:
    return _build(tmp, "burst", BURST_C)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _run(args: list[str], timeout: float, pid: int | None, requests: Callable[[dict[str, Any]], int],
         failed: dict[str, Any]) -> dict[str, Any]:
    """Run one generator and read its JSON line; with `pid`, add that process's user and system CPU per request
    (microseconds) over the run. A generator that fails gives `failed` and its error."""
    before = cpu_seconds(pid) if pid else None
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    try:
        res = json.loads(out.stdout)
    except ValueError:
        return {"error": (out.stderr or out.stdout)[-200:], **failed}
    n = requests(res)
    if before is not None and pid is not None and n:
        after = cpu_seconds(pid)
        res["cpu_user_us"] = round((after[0] - before[0]) / n * 1e6, 1)
        res["cpu_sys_us"] = round((after[1] - before[1]) / n * 1e6, 1)
    return res


def openloop(binary: str, port: int, rate: float, seconds: float, conns: int = 64,
             pid: int | None = None) -> dict[str, Any]:
    """One open-loop run at `rate` requests/s for `seconds` over `conns` connections."""
    return _run([binary, "127.0.0.1", str(port), str(int(rate)), str(seconds), str(conns)], seconds + 30, pid,
                lambda res: res.get("requests", 0), {"p99_ms": float("inf"), "p50_ms": float("inf")})


def burst(binary: str, port: int, k: int, n: int, gap_us: int, pid: int | None = None) -> dict[str, Any]:
    """`n` bursts of `k` requests, `gap_us` microseconds apart."""
    return _run([binary, str(port), str(k), str(n), str(gap_us)], n * (gap_us / 1e6 + 2) + 30, pid,
                lambda res: k * n, {})
