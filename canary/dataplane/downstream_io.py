"""The client connection as its exchanges see it: the transport, the flow-control flags, and the calls back."""
from __future__ import annotations

import asyncio
from abc import abstractmethod
from typing import Any


class DownstreamIO(asyncio.Protocol):
    """What an Exchange (and its body) may use of the client connection that carries it; DownstreamConn is the one
    implementation. Kept apart so the exchange depends on this, not on the connection that creates exchanges."""

    __slots__ = ("transport", "peer", "write_paused", "paused_by_upstream_hint")
    transport: Any
    peer: bytes
    write_paused: bool                # the client's socket buffer is full: node reads pause
    paused_by_upstream_hint: bool     # reading paused because a node's connection is slow to take the body

    def __init__(self) -> None:
        self.transport = None
        self.peer = b""
        self.write_paused = False
        self.paused_by_upstream_hint = False

    @abstractmethod
    def pause_reading_for_upstream(self) -> None:
        """Stop reading the client while the node's connection cannot take more of the body."""

    @abstractmethod
    def resume_reading_for_upstream(self) -> None:
        """Read the client again once the node's connection drained."""

    @abstractmethod
    def abort(self) -> None:
        """Close the client connection at once (a response cut short)."""

    @abstractmethod
    def exchange_done(self, now: float) -> None:
        """The exchange being answered is finished: start the next pipelined one, keep alive, or close."""

    @abstractmethod
    def sweep(self, now: float) -> None:
        """The sweeper's turn: time out the exchange being answered, or close a connection idle past its deadline."""
