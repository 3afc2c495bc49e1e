"""Run Debian's wrk against a URL and parse its summary (throughput, latency percentiles, errors)."""
from __future__ import annotations

import re
import shutil
import subprocess

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def require() -> str:
    path = shutil.which("wrk")
    if not path:
        raise SystemExit("wrk is not installed: apt-get install wrk (Debian package 'wrk')")
    return path


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * UNITS[unit]


def run(url: str, connections: int, seconds: int, threads: int = 1, headers: dict[str, str] | None = None,
        script: str | None = None) -> dict:
    """One wrk run with --latency (and an optional Lua script); requests/s, p50..p99 in ms, errors."""
    command = [require(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script:
        command[1:1] = ["-s", script]
    for name, value in (headers or {}).items():
        command[1:1] = ["-H", f"{name}: {value}"]
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    percentiles = {f"p{p}": _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", output, re.M)}
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        **percentiles,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(map(int, socket_errors.groups())) if socket_errors else 0,
        "connections": connections,
        "seconds": seconds,
    }
