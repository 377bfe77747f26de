"""A client of sandbox-agent's socket protocol (docs/protocol.md): NDJSON over a Unix socket.
Standard library only."""
from __future__ import annotations

import errno
import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Dict, Iterator, List, Mapping, Optional, Sequence, Union

from .exec import Command, ExecProcess, ExecResult, download, run_exec, start_exec, upload

DEFAULT_SOCKET = "/var/lib/sandbox-agent/agent.sock"
TERMINAL = ("stopped", "failed")


class AgentError(Exception):
    """An error the agent answered: its `code` (invalid_request, not_found, …), message and
    the request field at fault (a JSON pointer such as "/docker/cgroup"), if any."""

    def __init__(self, code: str, message: str, field: Optional[str] = None):
        self.code, self.message, self.field = code, message, field
        super().__init__(f"{code}{' ' + field if field else ''}: {message}")


class SandboxFailed(AgentError):
    """A launch that ended `failed` (or `stopped`) instead of `ready`; `sandbox` says why
    (`sandbox.reason`, `sandbox.status["log_tail"]`)."""

    def __init__(self, sandbox: "Sandbox"):
        self.sandbox = sandbox
        status = sandbox.status
        tail = (status.get("log_tail") or "").strip().splitlines()
        super().__init__(status.get("reason") or status.get("state", "failed"),
                         f"sandbox {sandbox.id} is {status.get('state')}" + (f": {tail[-1]}" if tail else ""))


class ConnectionError_(OSError):
    """The agent's socket could not be reached or closed mid-reply."""


class LaunchTimeout(TimeoutError):
    """`launch(wait=True, timeout=…)` gave up before the agent answered. The launch goes on:
    `sandbox_id` is the request's id (None if it had none, then the agent generated one)."""

    def __init__(self, sandbox_id: Optional[str], timeout: float):
        self.sandbox_id, self.timeout = sandbox_id, timeout
        what = f"sandbox {sandbox_id}" if sandbox_id else "the sandbox (its id was generated)"
        super().__init__(f"{what} was not ready after {timeout} s; the agent is still launching it")


@dataclass(frozen=True)
class Event:
    """A state change (`watch`): sandbox id, new state, reason, time (RFC 3339), exit code."""

    id: str
    state: str
    reason: str
    ts: str
    exit_code: Optional[int] = None


class _Connection:
    def __init__(self, path: str, timeout: Optional[float]):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            raise ConnectionError_(e.errno, f"cannot connect to {path}: {e.strerror}") from e
        self.buf = b""

    def send(self, obj: Mapping[str, Any], fds: Sequence[int] = ()) -> None:
        """One request line (with `fds` on its first bytes). An agent that refused it and closed
        (too_large) left its reply: that is raised as AgentError rather than EPIPE."""
        line = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        try:
            sent = socket.send_fds(self.sock, [line], list(fds)) if fds else 0
            if sent < len(line):
                self.sock.sendall(line[sent:])
        except OSError as e:
            if e.errno not in (errno.EPIPE, errno.ECONNRESET):
                raise
            reply = self._pending_reply()
            if reply is not None and not reply.get("ok"):
                _check(reply)
            raise ConnectionError_(e.errno, f"the agent closed the connection: {e.strerror}") from e

    def _pending_reply(self) -> Optional[Dict[str, Any]]:
        """The line the agent sent before it closed, if there is one."""
        try:
            self.sock.settimeout(1.0)
            return self.read()
        except (OSError, ValueError):
            return None

    def read(self) -> Dict[str, Any]:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError_(0, "the agent closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def read_with_fds(self) -> "tuple[Dict[str, Any], List[int]]":
        """One reply line and the descriptors that came with it."""
        fds: List[int] = []
        while b"\n" not in self.buf:
            data, got, _flags, _addr = socket.recv_fds(self.sock, 65536, 4)
            fds.extend(got)
            if not data:
                raise ConnectionError_(0, "the agent closed the connection")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line), fds

    def close(self) -> None:
        self.sock.close()


def _check(reply: Dict[str, Any]) -> Dict[str, Any]:
    if not reply.get("ok"):
        err = reply.get("error") or {}
        raise AgentError(err.get("code", "internal"), err.get("message", "no message"), err.get("field"))
    return reply


class Sandbox:
    """One sandbox, as the agent last described it (`status`); `refresh()` asks again. As a
    context manager it is stopped (and waited for) on exit."""

    def __init__(self, agent: "Agent", status: Dict[str, Any]):
        self.agent = agent
        self.status = status

    @property
    def id(self) -> str:
        return self.status["id"]

    @property
    def state(self) -> str:
        return self.status["state"]

    @property
    def reason(self) -> Optional[str]:
        return self.status.get("reason")

    @property
    def docker_socket(self) -> Optional[str]:
        return self.status.get("docker_socket")

    @property
    def docker_host(self) -> Optional[str]:
        """What `docker -H` / DOCKER_HOST takes, for a Docker sandbox once ready."""
        return f"unix://{self.docker_socket}" if self.docker_socket else None

    @property
    def ip(self) -> Optional[str]:
        """A bridge sandbox's address."""
        return (self.status.get("network") or {}).get("ip")

    def refresh(self) -> "Sandbox":
        self.status = _check(self.agent.call({"op": "status", "id": self.id}))["sandbox"]
        return self

    def wait(self, states: Union[str, Sequence[str]] = TERMINAL, timeout: float = 60.0) -> "Sandbox":
        """Until the sandbox is in one of `states` (default: stopped or failed). One that ends
        (stopped or failed) in a state not wanted raises SandboxFailed at once; `timeout`
        seconds without raises TimeoutError."""
        wanted = (states,) if isinstance(states, str) else tuple(states)
        deadline = time.monotonic() + timeout
        delay = 0.005
        while self.refresh().state not in wanted:
            if self.state in TERMINAL:
                raise SandboxFailed(self)  # it will not change again
            if time.monotonic() > deadline:
                raise TimeoutError(f"sandbox {self.id} is {self.state}, not {'/'.join(wanted)}, after {timeout} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
        return self

    def stop(self, timeout_ms: int = 10000, wait: bool = True) -> "Sandbox":
        self.agent.call({"op": "stop", "id": self.id, "timeout_ms": timeout_ms})
        return self.wait(TERMINAL, timeout=timeout_ms / 1000 + 60) if wait else self.refresh()

    def logs(self, source: str = "main") -> BinaryIO:
        """Its log as a read-only file the agent hands over (SCM_RIGHTS): `main` (its stdout and
        stderr), `dockerd` or `runsc`. Read it now, or keep reading as it grows; once it is
        rotated (dockerd.log past 8 MiB, runsc.log past 4 MiB) the file held gets no more: call
        logs() again for the new one."""
        return self.agent.open_log(self.id, source)

    def extend(self, ttl_ms: int) -> str:
        """Stops the sandbox `ttl_ms` from now (sooner or later than before); returns the deadline."""
        deadline = self.agent.call({"op": "extend", "id": self.id, "ttl_ms": ttl_ms})["ttl_deadline"]
        self.status["ttl_deadline"] = deadline
        return deadline

    def exec(self, args: "Command", input: Union[None, bytes, str] = None, *,
             env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None,
             user: Optional["tuple[int, int]"] = None, timeout: Optional[float] = None) -> "ExecResult":
        """Runs `args` in the sandbox (a list, or one command line for its /bin/sh) and waits:
        ExecResult(exit_code, stdout, stderr). `input` goes to its stdin; `timeout` (seconds)
        has the agent kill it (then result.reason == "timeout"). The output comes through
        pipes of this process, never through the agent. A command that cannot be run raises
        AgentError (field "/args/0")."""
        return run_exec(self, args, input, env=env, cwd=cwd, user=user, timeout=timeout)

    def start_exec(self, args: "Command", **kw: Any) -> "ExecProcess":
        """Starts `args` and returns at once: the streaming form. stdin/stdout/stderr take PIPE
        (a pipe of this process: proc.stdout…), a file object or descriptor (given to the
        process as it is), or None (/dev/null); tty=True gives it a terminal (proc.pty).
        Also env, cwd, user, timeout as exec(). proc.wait() returns its exit code."""
        return start_exec(self, args, **kw)

    def upload(self, src: Union[bytes, str, "os.PathLike[str]", BinaryIO], dest: str,
               mode: Optional[int] = None, timeout: Optional[float] = None) -> int:
        """Copies bytes, a local file (by path) or an open file into the sandbox at `dest`
        (absolute); returns the byte count. Needs no tool in the image (docs/protocol.md)."""
        return upload(self, src, dest, mode, timeout)

    def download(self, src: str, dest: Union[None, str, "os.PathLike[str]"] = None,
                 timeout: Optional[float] = None) -> Union[bytes, int]:
        """Copies the file `src` out of the sandbox: its bytes, or into `dest` (a path, or a
        directory for the same name) and its byte count."""
        return download(self, src, dest, timeout)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.refresh().state not in TERMINAL:
            self.stop()

    def __repr__(self) -> str:
        return f"Sandbox(id={self.id!r}, state={self.state!r})"


class Agent:
    """The agent on this host: `Agent(root=DIR)` uses DIR/agent.sock, `Agent(socket=PATH)` that
    socket; with neither, $SANDBOX_AGENT_SOCKET or /var/lib/sandbox-agent/agent.sock."""

    def __init__(self, root: Optional[str] = None, socket: Optional[str] = None, timeout: Optional[float] = 30.0):
        if root and socket:
            raise ValueError("give root or socket, not both")
        self.socket_path = socket or (os.path.join(root, "agent.sock") if root else
                                      os.environ.get("SANDBOX_AGENT_SOCKET", DEFAULT_SOCKET))
        self.timeout = timeout

    def call(self, msg: Mapping[str, Any], timeout: Optional[float] = None) -> Dict[str, Any]:
        """One request, one reply; an error reply raises AgentError. `timeout`: seconds for
        the reply (default: the agent's `timeout`)."""
        c = _Connection(self.socket_path, timeout if timeout is not None else self.timeout)
        try:
            c.send(msg)
            return _check(c.read())
        finally:
            c.close()

    def open_log(self, sandbox_id: str, source: str = "main") -> BinaryIO:
        c = _Connection(self.socket_path, self.timeout)
        try:
            c.send({"op": "logs", "id": sandbox_id, "source": source})
            reply, fds = c.read_with_fds()
            try:
                _check(reply)
            except AgentError:
                for fd in fds:
                    os.close(fd)
                raise
            if not fds:
                raise ConnectionError_(0, "the agent sent no descriptor with its logs reply")
            for extra in fds[1:]:
                os.close(extra)
            return os.fdopen(fds[0], "rb")
        finally:
            c.close()

    def version(self) -> str:
        return self.call({"op": "version"})["version"]

    def launch(self, request: Mapping[str, Any], wait: bool = True, timeout: Optional[float] = None) -> Sandbox:
        """Submits a launch request (docs/protocol.md). With `wait`, returns once the sandbox is
        ready, and raises SandboxFailed if it failed instead; without, once it is accepted.
        Waiting takes as long as the agent does (it bounds it: docker.ready_timeout_ms), not
        the per-reply `Agent.timeout`; `timeout` (seconds) gives up sooner with LaunchTimeout,
        a TimeoutError carrying the request's id; the launch goes on."""
        if not wait:
            reply = self.call({"op": "launch", "request": dict(request)}, timeout=timeout)
            return self.get(reply["id"])
        c = _Connection(self.socket_path, self.timeout)  # connecting and sending: the usual bound
        try:
            c.send({"op": "launch", "request": dict(request), "wait": "ready"})
            c.sock.settimeout(timeout)  # the reply: when the agent has it, unless the caller says
            try:
                reply = _check(c.read())
            except socket.timeout as e:
                raise LaunchTimeout(request.get("id"), timeout if timeout is not None else 0.0) from e
        finally:
            c.close()
        sandbox = Sandbox(self, reply["sandbox"])
        if sandbox.state != "ready":
            raise SandboxFailed(sandbox)
        return sandbox

    def get(self, sandbox_id: str) -> Sandbox:
        return Sandbox(self, self.call({"op": "status", "id": sandbox_id})["sandbox"])

    def list(self) -> List[Sandbox]:
        return [Sandbox(self, s) for s in self.call({"op": "list"})["sandboxes"]]

    def stats(self) -> Dict[str, Any]:
        return self.call({"op": "stats"})["stats"]

    def pools(self) -> List[Dict[str, Any]]:
        """Each warm pool: name, size, ready, warming, failed_in_a_row (retry_at, last_error
        while it backs off)."""
        return self.call({"op": "pools"})["pools"]

    def watch(self) -> Iterator[Event]:
        """State changes as they happen, for as long as the iterator is used (close it, or
        leave the loop, to stop)."""
        c = _Connection(self.socket_path, None)
        try:
            c.send({"op": "watch"})
            _check(c.read())
            while True:
                e = c.read()
                if e.get("event") == "state":
                    yield Event(e["id"], e["state"], e.get("reason", ""), e["ts"], e.get("exit_code"))
        finally:
            c.close()
