"""Hostile clients and a hostile neighbour, against the real binary (fake runtime): none may
crash the agent, hold its slots, forge its log, or make it touch another agent's sandboxes.
Every loop is bounded in count and time; the sanitizer build runs the same tests."""
import json
import os
import stat
import socket
import subprocess
import threading
import time
import unittest

from harness import AGENT, AgentTestCase, Client, wait_for


def unprivileged_connections(path, n, hold_s, result_fd):
    """In a child running as nobody: open n connections that send nothing; report how many
    got a reply and were closed by the agent within hold_s."""
    pid = os.fork()
    if pid:
        return pid
    try:
        os.setgid(65534)
        os.setuid(65534)
        socks = []
        for _ in range(n):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.settimeout(hold_s)
            socks.append(s)
        answered = closed = 0
        for s in socks:
            data = b""
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        closed += 1
                        break
                    data += chunk
            except OSError:
                pass
            if b'"forbidden"' in data:
                answered += 1
        os.write(result_fd, json.dumps({"answered": answered, "closed": closed}).encode())
    finally:
        os._exit(0)


class HostileClientTest(AgentTestCase):
    def slow_reader(self, sock, chunk, pause, stop):
        """Reads `chunk` bytes every `pause` seconds until told to stop or closed (10 s at most):
        writes to it complete now and then, so a completion can be pending when it is dropped."""
        def run():
            deadline = time.monotonic() + 10
            sock.settimeout(0.5)
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    if not sock.recv(chunk):
                        return
                except socket.timeout:
                    continue
                except OSError:
                    return
                time.sleep(pause)
        t = threading.Thread(target=run)
        t.start()
        return t

    def test_slow_readers_dropped_while_a_write_is_in_flight(self):
        # The write in flight owned the queue's front; dropping the reader cleared the queue
        # under it (double free, found by ASan). Replies smaller than the limit, a reader
        # that keeps reading slowly and keeps asking, many rounds.
        a = self.start_agent({"limits": {"max_output_bytes": 16384}})
        c = a.client()
        for i in range(10):
            self.assertTrue(c.call({"op": "launch", "request": a.request(f"s{i}", labels={"k": "x" * 100})})["ok"])
        c.close()
        list_line = b'{"op":"list"}\n'
        for round_ in range(30):
            slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            slow.connect(a.socket_path)
            stop = threading.Event()
            reader = self.slow_reader(slow, 256 * 1024, 0.002, stop)
            deadline = time.monotonic() + 10
            try:
                while a.log().count("does not read its replies") <= round_ and time.monotonic() < deadline:
                    slow.sendall(list_line * 4)
            except OSError:
                pass  # dropped while we were still asking
            wait_for(lambda: a.log().count("does not read its replies") > round_, timeout=10,
                     what=f"slow reader {round_} dropped")
            stop.set()
            reader.join()
            slow.close()
            self.assertIsNone(a.proc.poll(), "the agent died")
        self.assertTrue(a.call({"op": "version"})["ok"])

    def test_slow_watchers_during_fast_launches(self):
        a = self.start_agent({"limits": {"max_output_bytes": 8192}})
        stop = threading.Event()
        watchers, readers = [], []
        for _ in range(8):
            w = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            w.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            w.connect(a.socket_path)
            w.sendall(b'{"op":"watch"}\n')
            watchers.append(w)
            readers.append(self.slow_reader(w, 4096, 0.1, stop))
        c = a.client()  # pipelined in batches it reads: the launcher itself is not slow
        # Launch until a watcher falls behind (how long that takes is the machine's business;
        # bounded), then a few batches more while others fall behind too.
        dropped = lambda: a.log().count("does not read its replies")  # noqa: E731
        deadline, batch, extra = time.monotonic() + 60, 0, 20
        while time.monotonic() < deadline and (dropped() == 0 or extra > 0):
            if dropped():
                extra -= 1
            for i in range(10):
                c.send({"op": "launch", "request": a.request(f"w{batch}-{i}", labels={"k": "v" * 100})})
            for _ in range(10):
                self.assertTrue(c.read()["ok"])
            batch += 1
        self.assertGreaterEqual(dropped(), 1, "no watcher fell behind: nothing was tested")
        stop.set()
        for r in readers:
            r.join()
        for w in watchers:
            w.close()
        self.assertIsNone(a.proc.poll(), "the agent died")
        self.assertTrue(a.call({"op": "version"})["ok"])

    def test_silent_forbidden_peers_hold_no_slot(self):
        os.chmod(self.tmp, 0o755)
        a = self.start_agent({"socket": {"mode": "0666", "allowed_uids": [0]}, "limits": {"max_connections": 8}})
        r, w = os.pipe()
        pid = unprivileged_connections(a.socket_path, 40, 5.0, w)
        os.close(w)
        data = os.read(r, 4096)
        os.waitpid(pid, 0)
        got = json.loads(data)
        # every one told why and closed at once, though it said nothing
        self.assertEqual(got, {"answered": 40, "closed": 40})
        # and root's own client still gets in
        self.assertTrue(a.call({"op": "version"})["ok"])

    def test_one_reply_larger_than_the_output_limit_is_still_delivered(self):
        # The output limit is for a client that does not read; a `list` of many sandboxes is
        # one reply, and a client that reads it must get it.
        a = self.start_agent({"limits": {"max_output_bytes": 4096}})
        for i in range(8):
            self.assertTrue(a.launch(a.request(f"big-{i}", labels={"note": "x" * 900}))["ok"])
        c = a.client()
        for _ in range(2):
            reply = c.call({"op": "list"})
            self.assertTrue(reply["ok"], reply)
            self.assertEqual(len(reply["sandboxes"]), 8)
        self.assertGreater(len(json.dumps(reply)), 4096 * 1.5)
        c.close()
        self.assertNotIn("does not read its replies", a.log())

    def test_watchers_that_hang_up_give_their_slots_back_without_an_event(self):
        # Nothing happens on this agent, so no event would ever fail to reach them.
        a = self.start_agent({"limits": {"max_watchers": 2}})
        for _ in range(2):
            c = a.client()
            self.assertTrue(c.call({"op": "watch"})["ok"])
            c.close()

        def watch_once():
            c = a.client()
            try:
                return c.call({"op": "watch"}).get("ok")
            finally:
                c.close()
        wait_for(watch_once, timeout=5, what="a watch slot given back")

    def test_a_client_that_never_sends_a_line_is_dropped(self):
        a = self.start_agent({"limits": {"max_connections": 4, "first_line_timeout_ms": 300}})
        silent = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(4)]
        for s in silent:
            s.connect(a.socket_path)
        silent[0].sendall(b'{"op":"vers')  # half a line is still silence
        t0 = time.monotonic()
        for s in silent:
            s.settimeout(5)
            self.assertEqual(s.recv(100), b"")  # closed by the agent
        self.assertLess(time.monotonic() - t0, 4)
        self.assertIn("no request line within 300 ms", a.log())
        # a client that has spoken may stay silent: a watcher keeps its connection
        w = a.client()
        self.assertTrue(w.call({"op": "watch"})["ok"])
        time.sleep(0.6)
        self.assertTrue(a.call({"op": "version"})["ok"])
        w.send({"op": "version"})
        self.assertTrue(w.read()["ok"])

    def test_untrusted_names_cannot_forge_log_lines(self):
        a = self.start_agent()
        forged = "2026-12-01T00:00:00.000000Z critical FORGED"
        spool_new = os.path.join(a.root, "spool", "new")
        with open(os.path.join(spool_new, f"evil\n{forged}.json"), "w") as f:
            f.write("not json")
        c = a.client()
        c.send_raw(b'{"op":"status","id":"x\\n' + forged.encode() + b'"}\n')
        c.read()
        wait_for(lambda: "rejected" in a.log(), timeout=10, what="the spool file rejected")
        for line in a.log().splitlines():
            self.assertFalse(line.startswith(forged[:20]), line)
        self.assertIn("evil\\n" + forged, a.log())  # escaped, on the agent's own line


class HalfCloseTest(AgentTestCase):
    def half_closed_call(self, a, data, replies, timeout=20):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(a.socket_path)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)  # like `printf … | nc -N -U agent.sock`
        buf = b""
        while buf.count(b"\n") < replies:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        rest = s.recv(65536)  # then the agent closes
        s.close()
        return [json.loads(l) for l in buf.splitlines()], rest

    def test_a_held_launch_is_answered_after_a_half_close(self):
        a = self.start_agent()
        line = json.dumps({"op": "launch", "wait": "ready", "request": a.request("hc")}).encode() + b"\n"
        replies, rest = self.half_closed_call(a, line, 1)
        self.assertEqual(len(replies), 1, replies)
        self.assertEqual((replies[0]["ok"], replies[0]["state"], replies[0]["id"]), (True, "ready", "hc"))
        self.assertEqual(rest, b"")

    def test_a_last_line_without_its_newline_is_still_a_request(self):
        a = self.start_agent()
        replies, _ = self.half_closed_call(a, b'{"op":"version","tag":1}\n{"op":"version","tag":2}', 2)
        self.assertEqual([r.get("tag") for r in replies], [1, 2])
        line = json.dumps({"op": "launch", "wait": "ready", "request": a.request("nl")}).encode()
        replies, _ = self.half_closed_call(a, line, 1)
        self.assertEqual((replies[0]["state"], replies[0]["id"]), ("ready", "nl"))

    def test_a_half_closed_watcher_keeps_watching(self):
        a = self.start_agent()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(a.socket_path)
        s.sendall(b'{"op":"watch"}\n')
        s.shutdown(socket.SHUT_WR)
        f = s.makefile("rb")
        self.assertTrue(json.loads(f.readline())["ok"])
        a.launch(a.request("seen"))
        event = json.loads(f.readline())
        self.assertEqual((event["id"], event["state"]), ("seen", "accepted"))
        s.close()


class SecondAgentTest(AgentTestCase):
    def test_a_second_agent_on_a_live_root_touches_nothing(self):
        a = self.start_agent()
        for i in range(20):
            self.assertTrue(a.launch(a.request(f"live-{i}"))["ok"])
        for i in range(20):
            a.wait_state(f"live-{i}", "ready")
        with open(os.path.join(a.root, "state", "live-0.json")) as f:
            before = f.read()
        # Another socket path, so the socket check cannot be what stops it.
        second = subprocess.run([AGENT, "--root", a.root, "--config", a.config_path, "--runsc", a.runsc,
                                 "--socket", os.path.join(self.tmp, "second.sock")],
                                capture_output=True, text=True, timeout=30)
        self.assertEqual(second.returncode, 1, second.stderr)
        self.assertIn(f"another agent (pid {a.proc.pid}) is running with root {a.root}", second.stderr)
        self.assertNotIn("adopted", second.stderr)
        self.assertNotIn("launching again", second.stderr)
        with open(os.path.join(a.root, "state", "live-0.json")) as f:
            self.assertEqual(f.read(), before)
        self.assertEqual({s["state"] for s in a.call({"op": "list"})["sandboxes"]}, {"ready"})
        self.assertTrue(a.call({"op": "version"})["ok"])
        # once the first is gone, the root is free again
        self.assertEqual(a.stop(), 0)
        a.start()
        self.assertEqual(a.status("live-0")["state"], "ready")


class HostileSandboxTest(AgentTestCase):
    config = {"runsc": {"timeout_ms": 1500}}

    def test_a_sandbox_cannot_answer_runsc_delete_for_it(self):
        # runsc.log is also the sandbox's console. Tear-down takes "does not exist" from
        # `runsc delete` as "already gone"; if that text came from the log, a sandbox could
        # print it while a delete fails, and the agent would forget a runsc sandbox that is
        # still there (its bundle removed, its record finished).
        a = self.start_agent()
        self.assertTrue(a.launch(a.request("liar", env=["FAKE_RUNSC=delete=hang"]))["ok"])
        a.wait_state("liar", "ready")
        log = os.path.join(a.root, "logs", "liar", "runsc.log")
        c = a.client()
        c.send({"op": "stop", "id": "liar", "timeout_ms": 1000})

        def deleting():
            with open(log) as f:
                return "delete --force" in f.read()
        wait_for(deleting, timeout=10, what="runsc delete running")
        with open(log, "a") as f:  # what the sandbox's console would write meanwhile
            f.write('loading container "liar": file does not exist\n')
        wait_for(lambda: "runsc delete failed" in a.log(), timeout=10, what="the failed delete logged")
        self.assertIn("timed out", a.log())
        status = a.status("liar")
        self.assertEqual(status["state"], "stopped")
        with open(os.path.join(a.root, "state", "liar.json")) as f:
            record = json.load(f)
        self.assertTrue(record["runsc_created"], "runsc may still hold it: the record must say so")
        self.assertFalse(record["finished"])
        self.assertTrue(os.path.isdir(os.path.join(a.root, "bundles", "liar")))
        c.close()

    def test_the_docker_socket_gets_its_owner_and_a_planted_link_is_not_followed(self):
        # sockets/ID is the sandbox's to write in: the agent gives docker.sock its owner by
        # path, so it must look at the last component only as itself, never through a link.
        a = self.start_agent()
        owner = {"uid": 4242, "gid": 4343}
        r = a.launch(a.request("own", docker={"enabled": True}, socket_owner=owner), wait=True)
        self.assertEqual(r["state"], "ready", r)
        st = os.lstat(r["sandbox"]["docker_socket"])
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o7777), (4242, 4343, 0o660))

        victim = os.path.join(self.tmp, "victim")
        with open(victim, "w") as f:
            f.write("the host's\n")
        os.chmod(victim, 0o600)
        self.assertTrue(a.launch(a.request("liar", docker={"enabled": True}, socket_owner=owner,
                                           env=["FAKE_RUNSC=dockerd=never"]))["ok"])
        a.wait_state("liar", "probing")
        os.symlink(victim, os.path.join(a.root, "sockets", "liar", "docker.sock"))
        deadline = time.monotonic() + 10  # the agent's inotify watch sees the link at once
        while "docker.sock is not a socket" not in a.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        st = os.stat(victim)
        self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o7777), (0, 0, 0o600))
        self.assertIn("docker.sock is not a socket", a.log())
        self.assertEqual(a.status("liar")["state"], "probing")


if __name__ == "__main__":
    unittest.main()
