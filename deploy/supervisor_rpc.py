"""Talks to the stack's supervisord over its XML-RPC API on the unix socket under var/stack/."""
from __future__ import annotations

import http.client
import os
import signal
import socket
import xmlrpc.client
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

from deploy.programs import supervisor_socket
from deploy.stack import StackSpec


class NotRunning(Exception):
    """supervisord does not answer: the stack is not up (or is shutting down)."""


class Supervisor:
    """A thin, typed wrapper: every call either answers or raises NotRunning / xmlrpc.client.Fault."""

    def __init__(self, spec: StackSpec) -> None:
        self.socket = supervisor_socket(spec)

    def call(self, method: str, *args: Any) -> Any:
        # A fresh transport per call: after a failed request, a kept one is stuck in "Request-sent".
        proxy = xmlrpc.client.ServerProxy(
            "http://127.0.0.1", transport=SupervisorTransport("", "", f"unix://{self.socket}"))
        try:
            return getattr(proxy.supervisor, method)(*args)
        except (OSError, http.client.HTTPException, socket.error) as exc:
            raise NotRunning(f"no supervisord answers on {self.socket} ({exc}); is `make up` running?") from None

    def ping(self) -> bool:
        try:
            return self.call("getState")["statename"] == "RUNNING"
        except NotRunning:
            return False

    def info(self, name: str) -> dict[str, Any]:
        return self.call("getProcessInfo", name)

    def all_info(self) -> list[dict[str, Any]]:
        return self.call("getAllProcessInfo")

    def pids(self) -> set[int]:
        """Every program's pid (each is its process group's leader)."""
        return {i["pid"] for i in self.all_info() if i.get("pid")}

    def start(self, name: str) -> None:
        try:
            self.call("startProcess", name, True)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_STARTED" not in fault.faultString:
                raise

    def stop(self, name: str, wait: bool = True) -> None:
        """Stop `name`; one that is not running, or not (or no longer) a program at all, is fine."""
        try:
            self.call("stopProcess", name, wait)
        except xmlrpc.client.Fault as fault:
            if "NOT_RUNNING" not in fault.faultString and "BAD_NAME" not in fault.faultString:
                raise

    def add_program(self, name: str) -> None:
        """Re-read the include files and add the program `name` (autostart starts it)."""
        self.call("reloadConfig")
        try:
            self.call("addProcessGroup", name)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_ADDED" not in fault.faultString:
                raise

    def remove_program(self, name: str) -> None:
        self.stop(name)
        try:
            self.call("removeProcessGroup", name)
        except xmlrpc.client.Fault as fault:
            if "BAD_NAME" not in fault.faultString:
                raise
        self.call("reloadConfig")

    def kill(self, name: str) -> int | None:
        """SIGKILL the program's whole process group, as a crash would (supervisord restarts it)."""
        pid = self.info(name).get("pid") or 0
        if pid <= 0:
            return None
        try:
            os.killpg(pid, signal.SIGKILL)  # supervisord made each child a process-group leader
        except ProcessLookupError:
            return None
        return pid

    def shutdown(self) -> None:
        try:
            self.call("shutdown")
        except NotRunning:
            pass
