"""exec and cp: this process's descriptors go to the agent with the request line (SCM_RIGHTS),
and the process in the sandbox reads and writes them directly (docs/protocol.md, "Exec and cp")."""
from __future__ import annotations

import json
import os
import selectors
import socket
import tempfile
import time
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Dict, List, Mapping, Optional, Sequence, Tuple, Union

if TYPE_CHECKING:
    from .client import Sandbox

PIPE = -1  # start_exec(stdout=PIPE): a pipe this process reads (as subprocess.PIPE)

Command = Union[str, Sequence[str]]
Stream = Union[None, int, IO[Any]]


@dataclass(frozen=True)
class ExecResult:
    """How an exec ended. `exit_code` is runsc's: the process's code, or 128+N when signal N
    ended it. `signal` and `reason` (timeout, client_gone, sandbox_stopped, agent_shutdown) are
    set when the agent ended it."""

    exit_code: int
    stdout: bytes = b""
    stderr: bytes = b""
    signal: Optional[int] = None
    reason: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def _argv(args: Command) -> List[str]:
    if isinstance(args, str):  # a command line, for the sandbox's shell
        return ["/bin/sh", "-c", args]
    argv = list(args)
    if not argv or not all(isinstance(a, str) for a in argv):
        raise TypeError("args must be a non-empty sequence of strings (or one command line string)")
    return argv


def _fd_of(stream: Stream, mode: int) -> Tuple[int, bool]:
    """A descriptor to hand over for `stream`, and whether it is ours to close once sent."""
    if stream is None:
        return os.open(os.devnull, mode | os.O_CLOEXEC), True
    if isinstance(stream, int):
        return stream, False
    return stream.fileno(), False


class ExecProcess:
    """A process running in a sandbox (Sandbox.start_exec). `stdin`, `stdout`, `stderr` are
    this end of the pipes asked for with PIPE (else None); with tty=True, `pty` is the terminal's
    master end, read and written like a terminal. Closing it (kill(), or leaving a `with`)
    before it ends makes the agent kill it."""

    def __init__(self, sandbox: "Sandbox", sock: socket.socket, exec_id: str,
                 stdin: Optional[BinaryIO], stdout: Optional[BinaryIO], stderr: Optional[BinaryIO],
                 pty: Optional[BinaryIO], buf: bytes):
        self.sandbox, self.exec_id = sandbox, exec_id
        self.stdin, self.stdout, self.stderr, self.pty = stdin, stdout, stderr, pty
        self._sock, self._buf = sock, buf
        self.result: Optional[ExecResult] = None

    def _reply_ready(self) -> bool:
        return b"\n" in self._buf

    def _read_some(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            from .client import ConnectionError_
            raise ConnectionError_(0, "the agent closed the connection before the exec ended")
        self._buf += chunk

    def _finish(self) -> ExecResult:
        from .client import _check
        line, self._buf = self._buf.split(b"\n", 1)
        reply = _check(json.loads(line))
        self.result = ExecResult(reply["exit_code"], signal=reply.get("signal"), reason=reply.get("reason"))
        self._sock.close()
        return self.result

    def wait(self, timeout: Optional[float] = None) -> int:
        """Its exit code, once it has ended (TimeoutError past `timeout` seconds; it keeps running)."""
        if self.result:
            return self.result.exit_code
        self._sock.settimeout(timeout)
        try:
            while not self._reply_ready():
                self._read_some()
        except socket.timeout as e:
            raise TimeoutError(f"exec {self.exec_id} still running after {timeout} s") from e
        return self._finish().exit_code

    def communicate(self, input: Optional[bytes] = None, timeout: Optional[float] = None) -> Tuple[bytes, bytes]:
        """Feeds `input` to stdin (then closes it), reads stdout and stderr to their end, and waits
        for the exit: (stdout, stderr), as subprocess's."""
        out: Dict[int, List[bytes]] = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = memoryview(input or b"")
        sel = selectors.DefaultSelector()
        try:
            for f in (self.stdout, self.stderr):
                if f:
                    out[f.fileno()] = []
                    sel.register(f.fileno(), selectors.EVENT_READ)
            open_pipes = set(out)
            stdin_fd = self.stdin.fileno() if self.stdin else -1
            if self.stdin and pending:
                os.set_blocking(self.stdin.fileno(), False)
                sel.register(self.stdin.fileno(), selectors.EVENT_WRITE)
                open_pipes.add(self.stdin.fileno())
            elif self.stdin:
                self.stdin.close()
            self._sock.setblocking(False)
            if not self._reply_ready():
                sel.register(self._sock.fileno(), selectors.EVENT_READ)
            # Until every pipe is at its end and the exit code has come.
            while open_pipes or not self._reply_ready():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"exec {self.exec_id} still running after {timeout} s")
                for key, _ in sel.select(left):
                    fd = key.fd
                    if fd == self._sock.fileno():
                        try:
                            self._read_some()
                        except BlockingIOError:
                            pass
                        if self._reply_ready():
                            sel.unregister(fd)
                    elif fd == stdin_fd:
                        try:
                            pending = pending[os.write(fd, pending[:65536]):]
                        except BrokenPipeError:
                            pending = memoryview(b"")
                        if not pending:
                            sel.unregister(fd)
                            open_pipes.discard(fd)
                            self.stdin.close()  # EOF for the process
                    else:
                        data = os.read(fd, 65536)
                        if data:
                            out[fd].append(data)
                        else:
                            sel.unregister(fd)
                            open_pipes.discard(fd)
        finally:
            sel.close()
        self._sock.setblocking(True)
        result = self._finish()
        stdout = b"".join(out.get(self.stdout.fileno(), [])) if self.stdout else b""
        stderr = b"".join(out.get(self.stderr.fileno(), [])) if self.stderr else b""
        for f in (self.stdout, self.stderr):
            if f:
                f.close()
        self.result = ExecResult(result.exit_code, stdout, stderr, result.signal, result.reason)
        return stdout, stderr

    def kill(self) -> None:
        """Ends it: the agent kills the process when this client's connection closes."""
        if not self.result:
            self._sock.close()

    def __enter__(self) -> "ExecProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        for f in (self.stdin, self.stdout, self.stderr, self.pty):
            if f and not f.closed:
                f.close()


def start_exec(sandbox: "Sandbox", args: Command, *, stdin: Stream = None, stdout: Stream = None,
               stderr: Stream = None, env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None,
               user: Optional[Tuple[int, int]] = None, tty: bool = False,
               timeout: Optional[float] = None) -> ExecProcess:
    msg: Dict[str, Any] = {"op": "exec", "id": sandbox.id, "args": _argv(args)}
    if env:
        msg["env"] = [f"{k}={v}" for k, v in env.items()]
    if cwd:
        msg["cwd"] = cwd
    if user is not None:
        msg["user"] = {"uid": int(user[0]), "gid": int(user[1])}
    if timeout is not None:
        msg["timeout_ms"] = max(1, int(timeout * 1000))
    ours: List[int] = []      # descriptors to close once they are sent
    mine: Dict[str, BinaryIO] = {}  # this process's ends of the pipes
    pty = None
    if tty:
        msg["tty"] = True
        master, slave = os.openpty()
        pty = os.fdopen(master, "r+b", buffering=0)
        fds = [slave, slave, slave]
        ours.append(slave)
    else:
        fds = []
        for name, stream, mode in (("stdin", stdin, os.O_RDONLY), ("stdout", stdout, os.O_WRONLY),
                                   ("stderr", stderr, os.O_WRONLY)):
            if stream == PIPE:
                r, w = os.pipe()
                give, keep = (r, w) if name == "stdin" else (w, r)
                mine[name] = os.fdopen(keep, "wb" if name == "stdin" else "rb", buffering=0)
                fds.append(give)
                ours.append(give)
            else:
                fd, close = _fd_of(stream, mode)
                fds.append(fd)
                if close:
                    ours.append(fd)
    from .client import _Connection, _check
    c = _Connection(sandbox.agent.socket_path, sandbox.agent.timeout)
    try:
        c.send(msg, fds)
    finally:
        for fd in ours:
            os.close(fd)  # the process holds them now: the pipes end when it does
    try:
        first = _check(c.read())
    except BaseException:
        c.close()
        for f in list(mine.values()) + ([pty] if pty else []):
            f.close()
        raise
    return ExecProcess(sandbox, c.sock, first["exec_id"], mine.get("stdin"), mine.get("stdout"),
                       mine.get("stderr"), pty, c.buf)


def run_exec(sandbox: "Sandbox", args: Command, input: Union[None, bytes, str] = None,
             **kw: Any) -> ExecResult:
    data = input.encode() if isinstance(input, str) else input
    with start_exec(sandbox, args, stdin=PIPE if data is not None else None, stdout=PIPE, stderr=PIPE, **kw) as p:
        p.communicate(data)
        assert p.result is not None
        return p.result


def _copy(sandbox: "Sandbox", direction: str, path: str, fd: int, mode: Optional[int],
          timeout: Optional[float]) -> int:
    from .client import _Connection, _check
    msg: Dict[str, Any] = {"op": "cp", "id": sandbox.id, "direction": direction, "path": path}
    if mode is not None:
        msg["mode"] = mode
    if timeout is not None:
        msg["timeout_ms"] = max(1, int(timeout * 1000))
    c = _Connection(sandbox.agent.socket_path, None)
    try:
        c.send(msg, [fd])
        return int(_check(c.read())["bytes"])
    finally:
        c.close()


def upload(sandbox: "Sandbox", src: Union[bytes, str, "os.PathLike[str]", IO[bytes]], dest: str,
           mode: Optional[int] = None, timeout: Optional[float] = None) -> int:
    if isinstance(src, (bytes, bytearray)):
        # A file, not a pipe: nothing to feed while the sandbox reads. (gVisor reads a regular
        # file from its start, whatever the offset; rewound for any other reader.)
        with tempfile.TemporaryFile() as f:
            f.write(src)
            f.flush()
            f.seek(0)
            return _copy(sandbox, "in", dest, f.fileno(), mode, timeout)
    if hasattr(src, "fileno"):
        return _copy(sandbox, "in", dest, src.fileno(), mode, timeout)  # type: ignore[union-attr]
    path = os.fspath(src)  # type: ignore[arg-type]
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if mode is None:
            mode = os.fstat(fd).st_mode & 0o7777
        return _copy(sandbox, "in", dest, fd, mode, timeout)
    finally:
        os.close(fd)


def download(sandbox: "Sandbox", src: str, dest: Union[None, str, "os.PathLike[str]"] = None,
             timeout: Optional[float] = None) -> Union[bytes, int]:
    if dest is None:
        with tempfile.TemporaryFile() as f:
            _copy(sandbox, "out", src, f.fileno(), None, timeout)
            f.seek(0)  # the sandbox wrote from offset 0; this side's offset did not move
            return f.read()
    target = os.fspath(dest)
    if os.path.isdir(target):
        target = os.path.join(target, os.path.basename(src))
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(target)), prefix=".sandbox-agent-")
    try:
        n = _copy(sandbox, "out", src, fd, None, timeout)
        os.close(fd)
        fd = -1
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        return n
    except BaseException:
        if fd >= 0:
            os.close(fd)
        os.unlink(tmp)
        raise
