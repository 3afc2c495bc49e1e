"""Tiny HTTP/1.1 backend for tests, benchmarks and demos (uvloop + httptools, keep-alive).

Usage: python -m tests.demo_backend --port 0 --cluster blue --node blue-1 [--fixed] [--log FILE]
Prints `READY <port>` on stdout. /readyz -> 200 (503 with --unready); /slow?ms=N sleeps; /status/NNN answers NNN;
/chunked, /eof and /nocontent test response framing; --delay-ms N slows every echo answer by N ms;
any other path echoes method, path, headers and body size as JSON (or a fixed 13-byte body with --fixed).
Every request line received is appended to --log (used by the smuggling tests)."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys

import httptools


class Backend(asyncio.Protocol):
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.parser = httptools.HttpRequestParser(self)
        self.served = f"{args.cluster}/{args.node}".encode()
        self.fixed = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nX-Served-By: "
                      + self.served + b"\r\n\r\nHello, world!")

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers: list[list[str]] = []
        self.body = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append([name.decode("latin-1"), value.decode("latin-1")])

    def on_body(self, data: bytes) -> None:
        self.body += len(data)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        keep = self.parser.should_keep_alive()
        url = self.url
        if LOG is not None:
            LOG.write(method + b" " + url + b"\n")
            LOG.flush()
        path = url.split(b"?")[0]
        if path == b"/readyz":
            self.reply(503 if self.args.unready else 200, b"ready?\n", keep)
        elif self.args.status:
            self.reply(self.args.status, b"forced status\n", keep)
        elif self.args.fixed:
            self.transport.write(self.fixed)
            if not keep:
                self.transport.close()
        elif path == b"/slow":
            ms = int(url.partition(b"ms=")[2] or b"100")
            asyncio.get_running_loop().call_later(ms / 1000, self.echo, method, url, self.headers, self.body, keep)
        elif path == b"/chunked":      # streamed response: chunked framing, three chunks
            self.transport.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Served-By: " + self.served
                                 + b"\r\n\r\n5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n")
        elif path == b"/eof":          # close-delimited body (no length, no chunking)
            self.transport.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-eof-body")
            self.transport.close()
        elif path == b"/nocontent":
            self.transport.write(b"HTTP/1.1 204 No Content\r\nX-Served-By: " + self.served + b"\r\n\r\n")
        elif path.startswith(b"/status/"):
            self.reply(int(path[8:11]), b"status\n", keep)
        elif self.args.delay_ms:     # a slowed node (the canary analysis and proactive shift tests)
            asyncio.get_running_loop().call_later(self.args.delay_ms / 1000, self.echo, method, url, self.headers,
                                                  self.body, keep)
        else:
            self.echo(method, url, self.headers, self.body, keep)

    def echo(self, method: bytes, url: bytes, headers: list, body: int, keep: bool) -> None:
        doc = {"method": method.decode(), "path": url.decode("latin-1"), "headers": headers, "body_len": body,
               "cluster": self.args.cluster, "node": self.args.node}
        self.reply(200, json.dumps(doc).encode(), keep, b"application/json")

    def reply(self, status: int, body: bytes, keep: bool, ctype: bytes = b"text/plain") -> None:
        if self.transport.is_closing():
            return
        self.transport.write(b"HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %d\r\nX-Served-By: %s\r\n%s\r\n"
                             % (status, ctype, len(body), self.served, b"" if keep else b"Connection: close\r\n")
                             + body)
        if not keep:
            self.transport.close()


LOG = None


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Backend(args), args.host, args.port, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cluster", default="c")
    p.add_argument("--node", default="n")
    p.add_argument("--fixed", action="store_true")
    p.add_argument("--log")
    p.add_argument("--status", type=int, default=0, help="answer every non-/readyz request with this status")
    p.add_argument("--unready", action="store_true", help="/readyz answers 503 (other paths still work)")
    p.add_argument("--delay-ms", type=float, default=0, help="echo answers wait this long (a slowed node)")
    a = p.parse_args()
    if a.log:
        LOG = open(a.log, "ab")
    try:
        import uvloop
        uvloop.run(main(a))
    except ImportError:  # pragma: no cover
        asyncio.run(main(a))
    except KeyboardInterrupt:
        sys.exit(0)
