"""`exec` and `cp` against the real agent and the fake runtime: the client's descriptors ride
on the request line, the process uses them directly, and the agent ends what its client,
a timeout, a stop or a shutdown leaves behind. (tests/e2e has the same on the real runsc.)"""
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import unittest
import weakref

from harness import AgentTestCase, fd_count, pids_with_cmdline, sandboxctl, wait_for


def connect(agent):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(agent.socket_path)
    return s


def send(s, msg, fds=()):
    socket.send_fds(s, [(json.dumps(msg) + "\n").encode()], list(fds))


_unread = weakref.WeakKeyDictionary()  # per socket: bytes read past the last reply returned


def replies(s, n):
    """The next n reply lines. What came after them is kept for the next call: a command that
    cannot run gets its first and final replies in one chunk."""
    out, buf = [], _unread.pop(s, b"")
    while True:
        while b"\n" in buf and len(out) < n:
            line, buf = buf.split(b"\n", 1)
            out.append(json.loads(line))
        if len(out) == n:
            break
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    _unread[s] = buf
    return out


def settled_fd_count(pid):
    """The agent's descriptors once a launch's transient ones are gone (the same twice, 100 ms apart)."""
    before = fd_count(pid)
    for _ in range(50):
        time.sleep(0.1)
        now = fd_count(pid)
        if now == before:
            return now
        before = now
    return before


def run(agent, sid, args, stdin=b"", **kw):
    """exec with pipes: (first reply, final reply, stdout, stderr)."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    s = connect(agent)
    try:
        send(s, dict(op="exec", id=sid, args=args, **kw), [in_r, out_w, err_w])
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        os.write(in_w, stdin)
        os.close(in_w)
        first = replies(s, 1)[0]
        with os.fdopen(out_r, "rb") as o, os.fdopen(err_r, "rb") as e:
            out, err = o.read(), e.read()
        final = replies(s, 1)[0] if first.get("ok") else None
        return first, final, out, err
    finally:
        s.close()


class ExecTest(AgentTestCase):
    def data_dir(self, agent):
        d = os.path.join(agent.root, "images", "data")
        os.makedirs(d, exist_ok=True)
        return d

    def ready(self, agent, sid="x", **kw):
        r = agent.request(sid, **kw)
        reply = agent.launch(r, wait=True)
        self.assertEqual(reply.get("state"), "ready", reply)

    def test_output_exit_code_and_stdin_go_straight_through(self):
        a = self.start_agent()
        self.ready(a)
        first, final, out, err = run(a, "x", ["/bin/sh", "-c", "read l; echo got $l; echo oops >&2; exit 3"],
                                     stdin=b"hello\n", tag="t")
        self.assertTrue(first["ok"], first)
        self.assertTrue(first["exec_id"])
        self.assertEqual(first["tag"], "t")
        self.assertEqual((out, err), (b"got hello\n", b"oops\n"))
        self.assertEqual(final, {"ok": True, "exec_id": first["exec_id"], "exit_code": 3, "tag": "t"})

    def test_env_cwd_and_user(self):
        a = self.start_agent()
        data = self.data_dir(a)
        self.ready(a, mounts=[{"source": data, "destination": "/data"}])
        _, final, out, _ = run(a, "x", ["/bin/sh", "-c", "echo $FOO; pwd; id -u; id -g"], env=["FOO=bar"],
                               cwd="/data", user={"uid": 65534, "gid": 65533})
        self.assertEqual(final["exit_code"], 0, final)
        # The fake runs it on the host: /data is the mount's source there.
        self.assertEqual(out.decode().split("\n")[:4], ["bar", os.path.realpath(data), "65534", "65533"])

    def test_a_command_that_cannot_run_is_an_error_naming_args(self):
        a = self.start_agent()
        self.ready(a)
        first, final, _, err = run(a, "x", ["/no/such/program"])
        self.assertTrue(first["ok"], first)
        self.assertFalse(final["ok"], final)
        self.assertEqual((final["error"]["code"], final["error"]["field"]), ("invalid_request", "/args/0"))
        self.assertIn(b"no such file", err)  # runsc's words reach the client's stderr too
        r = sandboxctl(a, "exec", "x", "--", "/no/such/program")
        self.assertEqual(r.returncode, 127, r.stderr)

    def test_timeout_kills_it(self):
        a = self.start_agent()
        self.ready(a)
        marker = "/bin/sleep 3001.25"
        t = time.monotonic()
        _, final, _, _ = run(a, "x", marker.split(), timeout_ms=300)
        self.assertLess(time.monotonic() - t, 5)
        self.assertEqual((final["exit_code"], final["signal"], final["reason"]), (137, 9, "timeout"), final)
        self.assertEqual(pids_with_cmdline("sleep 3001.25"), [])

    def test_a_client_killed_mid_exec_leaves_no_process(self):
        a = self.start_agent()
        self.ready(a)
        client = subprocess.Popen([sys.executable, "-c", f"""
import json, os, socket, time
s = socket.socket(socket.AF_UNIX); s.connect({a.socket_path!r})
socket.send_fds(s, [json.dumps({{"op": "exec", "id": "x", "args": ["/bin/sleep", "3002.5"]}}).encode() + b"\\n"], [0, 1, 2])
print(s.recv(4096).decode(), flush=True)
time.sleep(600)
"""], stdout=subprocess.PIPE, text=True)
        try:
            self.assertIn("exec_id", client.stdout.readline())
            wait_for(lambda: pids_with_cmdline("sleep 3002.5"), what="the exec's process")
            client.kill()
            client.wait()
            wait_for(lambda: not pids_with_cmdline("sleep 3002.5"), timeout=10, what="the process to be killed")
            wait_for(lambda: "client_gone" in a.log(), what="the log line")
        finally:
            client.kill()
            client.wait()

    def test_a_half_closed_client_still_gets_the_exit_code(self):
        a = self.start_agent()
        self.ready(a)
        s = connect(a)
        send(s, {"op": "exec", "id": "x", "args": ["/bin/sh", "-c", "sleep 0.3; exit 7"]}, [0, 1, 2])
        s.shutdown(socket.SHUT_WR)
        got = replies(s, 2)
        s.close()
        self.assertEqual(got[1]["exit_code"], 7, got)

    def test_a_stop_ends_the_execs_of_that_sandbox(self):
        a = self.start_agent()
        self.ready(a)
        s = connect(a)
        send(s, {"op": "exec", "id": "x", "args": ["/bin/sleep", "3003.5"]}, [0, 1, 2])
        self.assertTrue(replies(s, 1)[0]["ok"])
        a.call({"op": "stop", "id": "x"})
        final = replies(s, 1)[0]
        s.close()
        self.assertEqual(final["reason"], "sandbox_stopped", final)
        wait_for(lambda: not pids_with_cmdline("sleep 3003.5"), what="the process to be gone")

    def test_the_agent_stopping_ends_them(self):
        a = self.start_agent()
        self.ready(a)
        s = connect(a)
        send(s, {"op": "exec", "id": "x", "args": ["/bin/sleep", "3004.5"]}, [0, 1, 2])
        self.assertTrue(replies(s, 1)[0]["ok"])
        a.stop()
        s.close()
        self.assertEqual(pids_with_cmdline("sleep 3004.5"), [])

    def test_after_a_crash_the_new_agent_ends_what_execs_left_running(self):
        a = self.start_agent()
        self.ready(a)
        s = connect(a)
        send(s, {"op": "exec", "id": "x", "args": ["/bin/sleep", "3007.5"]}, [0, 1, 2])
        self.assertTrue(replies(s, 1)[0]["ok"])
        wait_for(lambda: len(pids_with_cmdline("sleep 3007.5")) >= 2, what="runsc exec and its process")
        a.kill()  # SIGKILL: its exec's client lost the agent with it
        s.close()
        self.assertTrue(pids_with_cmdline("sleep 3007.5"), "the process died with the agent (nothing to test)")
        a.start()
        wait_for(lambda: not pids_with_cmdline("sleep 3007.5"), what="the process the old agent's exec left")
        wait_for(lambda: "an exec of the previous agent left running" in a.log(), what="the log line")
        self.assertEqual([n for n in os.listdir(os.path.join(a.root, "bundles", "x")) if n.startswith("exec-")], [])

    def test_execs_started_at_once_after_a_restart_are_not_taken_for_the_old_ones(self):
        # Exec ids start again at 1 in a new agent: the pid files the old agent's execs left
        # (exec-N.pid) must be read before a new exec writes its own under the same name.
        a = self.start_agent({"limits": {"max_execs": 32}})
        self.ready(a)
        old = []
        for i in range(12):
            s = connect(a)
            send(s, {"op": "exec", "id": "x", "args": ["/bin/sleep", f"3009.{i}"]}, [0, 1, 2])
            self.assertTrue(replies(s, 1)[0]["ok"])
            old.append(s)
        wait_for(lambda: len(pids_with_cmdline("sleep 3009.")) >= 24, what="the old execs running")
        a.kill()
        for s in old:
            s.close()
        a.start()
        new = []
        for i in range(12):
            s = connect(a)
            send(s, {"op": "exec", "id": "x", "args": ["/bin/sleep", f"4009.{i}"]}, [0, 1, 2])
            self.assertTrue(replies(s, 1)[0]["ok"])
            new.append(s)
        try:
            wait_for(lambda: not pids_with_cmdline("sleep 3009."), what="every process the old execs left")
            time.sleep(0.5)
            self.assertEqual(len([p for p in pids_with_cmdline("sleep 4009.")]), 24, "the new execs all run")
        finally:
            for s in new:
                s.close()
        wait_for(lambda: not pids_with_cmdline("sleep 4009."), what="the new execs ended with their clients")

    def test_execs_at_once_are_bounded(self):
        a = self.start_agent({"limits": {"max_execs": 2}})
        self.ready(a)
        held = []
        for _ in range(2):
            s = connect(a)
            send(s, {"op": "exec", "id": "x", "args": ["/bin/sleep", "3005.5"]}, [0, 1, 2])
            self.assertTrue(replies(s, 1)[0]["ok"])
            held.append(s)
        first, _, _, _ = run(a, "x", ["/bin/true"])
        self.assertEqual(first["error"]["code"], "overloaded", first)
        for s in held:
            s.close()
        wait_for(lambda: not pids_with_cmdline("sleep 3005.5"), what="the held execs to end")
        first, final, _, _ = run(a, "x", ["/bin/true"])
        self.assertEqual(final["exit_code"], 0, (first, final))

    def test_requests_without_their_descriptors_or_in_a_bad_state(self):
        a = self.start_agent()
        self.ready(a)
        a.launch(a.request("slow", env=["FAKE_RUNSC=start=hang"]))
        cases = [
            ({"op": "exec", "id": "x", "args": ["/bin/true"]}, [], "invalid_request", None),
            ({"op": "exec", "id": "x", "args": []}, [0, 1, 2], "invalid_request", "/args"),
            ({"op": "exec", "id": "x", "args": ["/bin/true"], "env": ["NOEQ"]}, [0, 1, 2], "invalid_request", "/env/0"),
            ({"op": "exec", "id": "x", "args": ["/bin/true"], "cwd": "rel"}, [0, 1, 2], "invalid_request", "/cwd"),
            ({"op": "exec", "id": "x", "args": ["/bin/true"], "timeout_ms": 0}, [0, 1, 2], "invalid_request", "/timeout_ms"),
            ({"op": "exec", "id": "x", "args": ["/bin/true"], "tty": True}, [0, 1, 2], "invalid_request", "/tty"),
            ({"op": "exec", "id": "nope", "args": ["/bin/true"]}, [0, 1, 2], "not_found", "/id"),
            ({"op": "exec", "id": "slow", "args": ["/bin/true"]}, [0, 1, 2], "invalid_request", "/id"),
            ({"op": "cp", "id": "x", "direction": "in", "path": "/proc/x"}, [0], "invalid_request", "/path"),
            ({"op": "cp", "id": "x", "direction": "up", "path": "/a"}, [0], "invalid_request", "/direction"),
            ({"op": "cp", "id": "x", "direction": "out", "path": "/a", "mode": 420}, [0], "invalid_request", "/mode"),
            ({"op": "cp", "id": "x", "direction": "out", "path": "/a"}, [0, 1], "invalid_request", None),
        ]
        for msg, fds, code, field in cases:
            s = connect(a)
            devnull = [os.open("/dev/null", os.O_RDWR) for _ in fds]
            send(s, msg, devnull)
            for fd in devnull:
                os.close(fd)
            reply = replies(s, 1)[0]
            s.close()
            self.assertEqual((reply["error"]["code"], reply["error"].get("field")), (code, field), (msg, reply))
        # Four descriptors: refused, and the agent keeps none of them.
        s = connect(a)
        send(s, {"op": "exec", "id": "x", "args": ["/bin/true"]}, [0, 1, 2, 2])
        reply = replies(s, 1)[0]
        s.close()
        self.assertIn("more than 3", reply["error"]["message"])

    def test_descriptors_sent_without_lines_or_with_other_ops_are_not_kept(self):
        a = self.start_agent()
        self.ready(a)
        s = connect(a)
        send(s, {"op": "version"})
        replies(s, 1)
        base = settled_fd_count(a.proc.pid)
        for _ in range(5):
            send(s, {"op": "version"}, [0, 1, 2])
        self.assertEqual(len(replies(s, 5)), 5)
        self.assertEqual(fd_count(a.proc.pid), base)
        # A flood of descriptors on bytes that never end a line: disconnected, nothing kept.
        hostile = connect(a)
        try:
            for _ in range(20):
                socket.send_fds(hostile, [b" "], [0, 1, 2])
        except OSError:
            pass  # the agent hung up on it
        def dropped():
            try:
                return hostile.recv(1) == b""
            except ConnectionResetError:  # closed with our bytes unread
                return True
        wait_for(dropped, what="the hostile client to be dropped")
        hostile.close()
        wait_for(lambda: fd_count(a.proc.pid) == base, what="the agent's descriptors back to where they were")
        self.assertIn("descriptors without request lines", a.log())
        send(s, {"op": "version"})
        self.assertTrue(replies(s, 1)[0]["ok"])
        s.close()

    def test_cp_both_ways_with_a_binary_file(self):
        a = self.start_agent()
        data = self.data_dir(a)
        self.ready(a, mounts=[{"source": data, "destination": "/data"}])
        blob = os.urandom(3 << 20) + b"\0\n\xff"
        src = os.path.join(self.tmp, "blob")
        with open(src, "wb") as f:
            f.write(blob)
        r = sandboxctl(a, "cp", src, "x:/data/blob")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(data, "blob"), "rb") as f:  # where /data/blob is, in the fake
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), hashlib.sha256(blob).hexdigest())
        back = os.path.join(self.tmp, "back")
        r = sandboxctl(a, "--json", "cp", "x:/data/blob", back)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["bytes"], len(blob))
        with open(back, "rb") as f:
            self.assertEqual(f.read(), blob)
        # Into a directory: the same name; from stdin.
        r = sandboxctl(a, "cp", "x:/data/blob", self.tmp + "/")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.exists(os.path.join(self.tmp, "blob")))
        r = subprocess.run([os.environ["SANDBOXCTL"], "--socket", a.socket_path, "cp", "-", "x:/data/piped"],
                           input=b"piped bytes", capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(data, "piped"), "rb") as f:
            self.assertEqual(f.read(), b"piped bytes")

    def test_cp_errors_and_bounds(self):
        a = self.start_agent({"limits": {"max_copy_bytes": 1000}})
        data = self.data_dir(a)
        self.ready(a, mounts=[{"source": data, "destination": "/data"}])
        with open(os.path.join(data, "big"), "wb") as f:
            f.write(b"x" * 5000)
        big = os.path.join(self.tmp, "big")
        with open(big, "wb") as f:
            f.write(b"y" * 5000)
        for args, code, what in (
            (["x:/data/missing", self.tmp + "/m"], 1, "not_found /path"),
            (["x:/data", self.tmp + "/m"], 1, "invalid_request /path"),
            (["x:/data/big", self.tmp + "/m"], 1, "too_large /path"),
            ([big, "x:/data/in-big"], 1, "too_large /path"),
            ([big, "x:/data/no/such/dir/f"], 1, "invalid_request /path"),
            ([big, "nope:/data/f"], 1, "not_found /id"),
            ([big, self.tmp + "/local"], 2, "exactly one of SRC and DST"),
        ):
            r = sandboxctl(a, "cp", *args)
            self.assertEqual(r.returncode, code, (args, r.stderr))
            self.assertIn(what, r.stderr, args)
        # A failed copy leaves nothing behind, on either side.
        self.assertEqual(sorted(os.listdir(data)), ["big"])
        self.assertFalse(os.path.exists(self.tmp + "/m"))
        self.assertEqual([n for n in os.listdir(self.tmp) if "sandboxctl-" in n], [])

    def test_sandboxctl_exec(self):
        a = self.start_agent()
        self.ready(a)
        r = sandboxctl(a, "exec", "x", "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 5")
        self.assertEqual((r.returncode, r.stdout, r.stderr), (5, "out\n", "err\n"))
        r = sandboxctl(a, "exec", "-i", "x", "--", "/bin/cat", input="piped\n")
        self.assertEqual((r.returncode, r.stdout), (0, "piped\n"))
        r = sandboxctl(a, "exec", "x", "--", "/bin/cat", input="not read\n")  # no -i: /dev/null
        self.assertEqual((r.returncode, r.stdout), (0, ""))
        r = sandboxctl(a, "exec", "-e", "A=1", "-u", "65534", "x", "/bin/sh", "-c", "echo $A $(id -u) --json")
        self.assertEqual((r.returncode, r.stdout), (0, "1 65534 --json\n"), r.stderr)
        r = sandboxctl(a, "exec", "--timeout", "200", "x", "--", "/bin/sleep", "3006.5")
        self.assertEqual(r.returncode, 137)
        self.assertIn("timeout", r.stderr)
        r = sandboxctl(a, "exec", "nope", "--", "/bin/true")
        self.assertEqual(r.returncode, 1)
        self.assertIn("not_found /id", r.stderr)


if __name__ == "__main__":
    unittest.main()
