"""The socket API against the real agent binary with the fake runtime: every op, every
error code, concurrency, framing, slow clients, failing runtimes, and no leaks."""
import json
import os
import socket
import threading
import time
import unittest

from harness import AgentTestCase, Client, agent_children, fd_count, mounts_under, sandboxctl, wait_for


class SocketApiTest(AgentTestCase):
    config = {"runsc": {"timeout_ms": 1500}}

    def test_ops_round_trip(self):
        a = self.start_agent()
        c = a.client()
        self.assertEqual(c.call({"op": "version", "tag": "v"}), {"ok": True, "version": "0.1.0", "tag": "v"})
        reply = c.call({"op": "launch", "tag": 7, "request": a.request("plain-1", labels={"job": "42"})})
        self.assertEqual(reply, {"ok": True, "id": "plain-1", "state": "accepted", "tag": 7})
        s = a.wait_state("plain-1", "ready")
        self.assertEqual(s["labels"], {"job": "42"})
        self.assertIn("create_ms", s["timings"])
        self.assertIn("ready_ms", s["timings"])
        self.assertRegex(s["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
        self.assertNotIn("docker_socket", s)

        final = c.call({"op": "launch", "wait": "ready",
                        "request": a.request("dock-1", docker={"enabled": True})})
        self.assertTrue(final["ok"])
        self.assertEqual(final["state"], "ready")
        sock = final["sandbox"]["docker_socket"]
        self.assertEqual(sock, os.path.join(a.root, "sockets", "dock-1", "docker.sock"))
        self.assertEqual(os.stat(sock).st_mode & 0o777, 0o660)

        listed = c.call({"op": "list"})
        self.assertEqual(sorted(s["id"] for s in listed["sandboxes"]), ["dock-1", "plain-1"])
        stats = c.call({"op": "stats"})["stats"]
        self.assertEqual((stats["accepted"], stats["ready"], stats["in_flight"]), (2, 2, 2))
        self.assertEqual(stats["time_to_ready_ms"]["samples"], 2)

        self.assertEqual(c.call({"op": "stop", "id": "dock-1", "timeout_ms": 2000}),
                         {"ok": True, "id": "dock-1", "state": "stopping"})
        s = a.wait_state("dock-1", "stopped")
        self.assertEqual(s["reason"], "stop_requested")
        self.assertEqual(s["exit_code"], 143)
        self.assertNotIn("docker_socket", s)
        self.assertFalse(os.path.exists(os.path.join(a.root, "sockets", "dock-1")))
        self.assertFalse(os.path.exists(os.path.join(a.root, "bundles", "dock-1")))
        self.assertTrue(os.path.exists(os.path.join(a.root, "logs", "dock-1", "runsc.log")))
        # stopping again is harmless and says where it is
        self.assertEqual(c.call({"op": "stop", "id": "dock-1"})["state"], "stopped")

    def test_watch_streams_every_transition(self):
        a = self.start_agent()
        w = a.client()
        self.assertEqual(w.call({"op": "watch"}), {"ok": True})
        a.launch(a.request("w1", docker={"enabled": True}))
        states = []
        while not states or states[-1] != "ready":
            e = w.read()
            self.assertEqual(e["event"], "state")
            self.assertEqual(e["id"], "w1")
            states.append(e["state"])
        self.assertEqual(states, ["accepted", "creating", "starting", "probing", "ready"])
        a.call({"op": "stop", "id": "w1"})
        self.assertEqual([w.read()["state"] for _ in range(2)], ["stopping", "stopped"])

    def test_one_runsc_run_still_reports_create_and_start_apart(self):
        # One `runsc run --detach` creates and starts the sandbox. `starting` is stamped when its
        # create half ended (the pid file runsc writes then), not when the call returned, and
        # the timings split the call at that moment.
        a = self.start_agent({"runsc": {"timeout_ms": 5000}})
        w = a.client()
        self.assertEqual(w.call({"op": "watch"}), {"ok": True})
        a.launch(a.request("slow", docker={"enabled": True}, env=["FAKE_RUNSC=start_delay_ms=600"]))
        stamps = {}
        while "ready" not in stamps:
            e = w.read()
            stamps[e["state"]] = _unix_us(e["ts"])
        self.assertEqual(list(stamps), ["accepted", "creating", "starting", "probing", "ready"])
        self.assertGreaterEqual(stamps["probing"] - stamps["starting"], 600_000)
        self.assertLessEqual(stamps["creating"], stamps["starting"])
        timings = a.status("slow")["timings"]
        self.assertGreaterEqual(timings["start_ms"], 600)
        self.assertLess(timings["create_ms"], 600)
        with open(os.path.join(a.root, "logs", "slow", "runsc.log")) as f:
            calls = [line for line in f if " --root " in line]
        self.assertEqual(len(calls), 1, calls)
        self.assertIn(" run --detach --bundle ", calls[0])

    def test_every_error_code_and_the_connection_lives_on(self):
        a = self.start_agent({"limits": {"max_pending_launches": 2}})
        c = a.client()

        def expect(line, code, field=None):
            c.send_raw(line if isinstance(line, bytes) else json.dumps(line).encode() + b"\n")
            reply = c.read()
            self.assertFalse(reply["ok"], reply)
            self.assertEqual(reply["error"]["code"], code, reply)
            if field is not None:
                self.assertEqual(reply["error"].get("field"), field, reply)
            self.assertTrue(reply["error"]["message"])
            # an error never closes the connection
            self.assertTrue(c.call({"op": "version"})["ok"])
            return reply

        expect(b"{not json\n", "invalid_json")
        expect(b"[1,2]\n", "invalid_request")
        expect({"op": "launch", "request": a.request(docker={"cgroup": "bogus"})}, "invalid_request", "/docker/cgroup")
        expect({"op": "launch", "request": a.request(color="red")}, "invalid_request", "/color")
        expect({"op": "launch", "request": {"rootfs": "/etc"}}, "invalid_request", "/rootfs")
        expect({"op": "launch"}, "invalid_request", "/request")
        expect({"op": "status"}, "invalid_request", "/id")
        expect({"op": "list", "id": "x"}, "invalid_request", "/id")
        expect({"op": "frobnicate"}, "unknown_op", "/op")
        expect({"op": "status", "id": "nope"}, "not_found")
        expect({"op": "stop", "id": "nope"}, "not_found")
        reply = expect({"tag": "t1", "op": "frobnicate"}, "unknown_op")
        self.assertEqual(reply["tag"], "t1")
        reply = expect({"op": "frobnicate", "tag": 5}, "unknown_op")
        self.assertEqual(reply["tag"], 5)

        self.assertTrue(c.call({"op": "launch", "request": a.request("dup", env=["FAKE_RUNSC=create=hang"])})["ok"])
        expect({"op": "launch", "request": a.request("dup")}, "exists", "/id")
        self.assertTrue(c.call({"op": "launch", "request": a.request("hang2", env=["FAKE_RUNSC=create=hang"])})["ok"])
        expect({"op": "launch", "request": a.request("third")}, "overloaded")

    def test_forbidden_peer(self):
        os.chmod(self.tmp, 0o755)  # let the unprivileged client reach the socket file
        a = self.start_agent({"socket": {"mode": "0666", "allowed_uids": [0]}})
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # an unprivileged client
            try:
                os.setgid(65534)
                os.setuid(65534)
                c = Client(a.socket_path, timeout=10)
                c.send({"op": "list"})
                os.write(w, json.dumps(c.read()).encode())
            finally:
                os._exit(0)
        os.close(w)
        data = os.read(r, 65536)
        os.waitpid(pid, 0)
        reply = json.loads(data)
        self.assertEqual(reply["error"]["code"], "forbidden")
        self.assertIn("uid 65534", a.log())
        self.assertTrue(a.call({"op": "version"})["ok"])

    def test_too_large_closes_only_that_connection(self):
        a = self.start_agent({"limits": {"max_request_bytes": 4096}})
        c = a.client()
        c.send_raw(b'{"op":"launch","request":{"rootfs":"' + b"a" * (200 * 1024))
        reply = c.read()
        self.assertEqual(reply.get("error", {}).get("code"), "too_large", reply)
        self.assertTrue(c.closed_by_peer())
        self.assertTrue(a.call({"op": "version"})["ok"])
        # a request over the limit inside a normal-sized line: too_large, connection kept
        c2 = a.client()
        reply = c2.call({"op": "launch", "request": a.request(env=["X=" + "y" * 5000])})
        self.assertEqual(reply.get("error", {}).get("code"), "too_large", reply)
        self.assertTrue(c2.call({"op": "version"})["ok"])

    def test_partial_lines_and_pipelining(self):
        a = self.start_agent()
        c = a.client()
        line = json.dumps({"op": "version", "tag": "slow"}).encode() + b"\n"
        for b in line:
            c.send_raw(bytes([b]))
            time.sleep(0.001)
        self.assertEqual(c.read()["tag"], "slow")
        burst = b"".join(json.dumps({"op": "version", "tag": i}).encode() + b"\n" for i in range(50))
        c.send_raw(b"\n  \n" + burst.replace(b"\n", b"\r\n", 3))
        self.assertEqual([c.read()["tag"] for _ in range(50)], list(range(50)))

    def test_concurrent_clients(self):
        a = self.start_agent()
        errors = []

        def client(n):
            try:
                c = a.client()
                for i in range(5):
                    r = c.call({"op": "launch", "request": a.request(f"c{n}-{i}")})
                    if not r["ok"]:
                        errors.append(r)
                c.close()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        wait_for(lambda: a.call({"op": "stats"})["stats"]["ready"] == 200, timeout=60, what="200 ready")

    def test_slow_watcher_is_dropped_not_waited_for(self):
        a = self.start_agent({"limits": {"max_output_bytes": 4096}})
        lazy = a.client()
        self.assertTrue(lazy.call({"op": "watch"})["ok"])
        lazy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        for i in range(100):  # ~500 events, far more than the lazy client's socket + 4 KiB
            a.launch(a.request(f"s{i}", labels={"pad": "x" * 200}))
        wait_for(lambda: a.call({"op": "stats"})["stats"]["ready"] == 100, timeout=60, what="100 ready")
        self.assertIn("does not read its replies", a.log())
        self.assertTrue(lazy.closed_by_peer(timeout=10))

    def test_failing_runtimes_end_failed_with_the_reason(self):
        self.check_failing_runtimes({"timeout_ms": 3000})

    def test_failing_runtimes_with_create_then_start(self):
        # runsc.launch "create_start": the same reasons from two calls instead of one
        self.check_failing_runtimes({"timeout_ms": 3000, "launch": "create_start"})

    def check_failing_runtimes(self, runsc_config):
        # Deadlines short enough for a quick test, long enough that a loaded machine (the
        # sanitizer build) never turns a healthy runsc call into a timeout.
        a = self.start_agent({"runsc": runsc_config})
        cases = {
            "cfail": ({"env": ["FAKE_RUNSC=create=fail"]}, "runsc_create_failed"),
            "chang": ({"env": ["FAKE_RUNSC=create=hang"]}, "runsc_timeout"),
            "sfail": ({"env": ["FAKE_RUNSC=start=fail"]}, "runsc_start_failed"),
            "shang": ({"env": ["FAKE_RUNSC=start=hang"]}, "runsc_timeout"),
            "exit3": ({"env": ["FAKE_RUNSC=exit_after_ms=100,exit_code=3"]}, "exited"),
            "never": ({"env": ["FAKE_RUNSC=dockerd=never"], "docker": {"enabled": True, "ready_timeout_ms": 300}},
                      "ready_timeout"),
            "perr": ({"env": ["FAKE_RUNSC=ping=error"], "docker": {"enabled": True, "ready_timeout_ms": 1000}},
                     "ready_timeout"),
            "dexit": ({"env": ["FAKE_RUNSC=dockerd_exit_after_ms=100"], "docker": {"enabled": True}},
                      "dockerd_exited"),
        }
        for sid, (kw, _) in cases.items():
            self.assertTrue(a.launch(a.request(sid, **kw))["ok"])
        for sid, (_, reason) in cases.items():
            s = a.wait_state(sid, "failed")
            self.assertEqual(s["reason"], reason, s)
        self.assertIn("fake", a.status("cfail")["log_tail"])
        self.assertEqual(a.status("exit3")["exit_code"], 3)
        self.assertIn("HTTP 500", a.status("perr")["log_tail"])
        self.assertIn("Devices cgroup isn't mounted", a.status("dexit")["log_tail"])
        # every failed sandbox is torn down: nothing left in the runtime
        wait_for(lambda: json.loads(runsc_list(a)) in ([], None), timeout=20, what="runsc list to empty")

    def test_ready_then_dockerd_dies_fails_fast(self):
        a = self.start_agent()
        final = a.launch(a.request("dd", env=["FAKE_RUNSC=dockerd_exit_after_ms=400"], docker={"enabled": True}),
                         wait=True)
        self.assertEqual(final["state"], "ready")
        s = a.wait_state("dd", "failed", timeout=5)
        self.assertEqual(s["reason"], "dockerd_exited")

    def test_stop_while_launching(self):
        a = self.start_agent()
        a.launch(a.request("p", env=["FAKE_RUNSC=dockerd=never"], docker={"enabled": True}))
        a.wait_state("p", "probing")
        a.call({"op": "stop", "id": "p"})
        self.assertEqual(a.wait_state("p", ("stopped", "failed"))["state"], "stopped")

    def test_a_launch_waiting_for_runsc_holds_nothing_on_the_host(self):
        # One runsc slot, held by a create that hangs until runsc.timeout_ms.
        a = self.start_agent({"runsc": {"max_concurrent": 1, "timeout_ms": 8000}})
        # "again" runs once and stops: its logs stay in logs/again/ for its next launch to find.
        self.assertEqual(a.launch(a.request("again"), wait=True)["state"], "ready")
        a.call({"op": "stop", "id": "again"})
        a.wait_state("again", "stopped")
        a.launch(a.request("holder", env=["FAKE_RUNSC=create=hang"]))
        a.wait_state("holder", "creating")

        def host_side(sid):
            dirs = [d for d in ("bundles", "logs", "sockets") if os.path.exists(os.path.join(a.root, d, sid))]
            return dirs, mounts_under(os.path.join(a.root, "logs", sid))

        for sid in ("queued", "dropped", "again"):
            a.launch(a.request(sid, docker={"enabled": True}))
        time.sleep(0.3)
        for sid in ("queued", "dropped"):
            self.assertEqual(a.status(sid)["state"], "accepted")
            self.assertEqual(host_side(sid), ([], []), f"{sid} waits for its turn with directories or mounts")
        # Not the earlier "again"'s log: none yet.
        reply = a.call({"op": "logs", "id": "again"})
        self.assertFalse(reply["ok"], reply)
        self.assertEqual(reply["error"]["code"], "not_found", reply)
        self.assertIn("waiting for its turn", reply["error"]["message"])
        # Stopped while it waits: it never had anything to take down.
        a.call({"op": "stop", "id": "dropped"})
        self.assertEqual(a.wait_state("dropped", ("stopped", "failed"))["state"], "stopped")
        self.assertEqual(host_side("dropped"), ([], []))
        # ... at once: it gave up its place in the queue, it did not wait for a turn first.
        self.assertEqual(a.status("holder")["state"], "creating", "the stop waited for the slot")
        # Its turn comes once the holder's create times out: made, launched, ready.
        self.assertEqual(a.wait_state("holder", ("ready", "failed"))["reason"], "runsc_timeout")
        self.assertEqual(a.wait_state("queued", ("ready", "failed"))["state"], "ready")
        self.assertEqual(host_side("queued"), (["bundles", "logs", "sockets"], [os.path.join(a.root, "logs", "queued")]))
        self.assertEqual(a.wait_state("again", ("ready", "failed"))["state"], "ready")
        self.assertTrue(a.call({"op": "logs", "id": "again"})["ok"])

    def test_wait_reports_failure(self):
        a = self.start_agent()
        final = a.launch(a.request("wf", env=["FAKE_RUNSC=create=fail"]), wait=True)
        self.assertTrue(final["ok"])
        self.assertEqual(final["state"], "failed")
        self.assertEqual(final["sandbox"]["reason"], "runsc_create_failed")

    def test_thousand_sandboxes_ready_then_stopped_without_leaks(self):
        a = self.start_agent({"probe": {"attempt_timeout_ms": 2000}})
        # warm up so lazily opened descriptors (durable writer dirs) are in the baseline
        a.launch(a.request("warm", docker={"enabled": True}), wait=True)
        a.call({"op": "stop", "id": "warm"})
        a.wait_state("warm", "stopped")
        wait_for(lambda: not agent_children(a.proc.pid), timeout=20, what="no children")
        fds_before = fd_count(a.proc.pid)

        c = a.client()
        for i in range(1000):
            c.send({"op": "launch", "request": a.request(f"k{i}", docker={"enabled": i % 2 == 0})})
        replies = [c.read() for _ in range(1000)]
        self.assertTrue(all(r["ok"] for r in replies))
        wait_for(lambda: a.call({"op": "stats"})["stats"]["ready"] == 1001, timeout=300, interval=0.2,
                 what="1000 sandboxes ready")
        for i in range(1000):
            c.send({"op": "stop", "id": f"k{i}"})
        self.assertTrue(all(c.read()["ok"] for _ in range(1000)))
        wait_for(lambda: a.call({"op": "stats"})["stats"]["stopped"] == 1001, timeout=300, interval=0.2,
                 what="1000 sandboxes stopped")
        c.close()
        wait_for(lambda: not agent_children(a.proc.pid), timeout=30, what="every child reaped")
        wait_for(lambda: fd_count(a.proc.pid) <= fds_before, timeout=30,
                 what=f"fds back to {fds_before} (now {fd_count(a.proc.pid)})")
        self.assertEqual(json.loads(runsc_list(a)) or [], [])

    def test_restart_adopts_running_sandboxes(self):
        a = self.start_agent()
        a.launch(a.request("keep", docker={"enabled": True}), wait=True)
        a.launch(a.request("plain"), wait=True)
        a.kill()  # SIGKILL: no goodbye
        a.start()
        self.assertEqual(a.status("keep")["state"], "ready")
        self.assertEqual(a.status("plain")["state"], "ready")
        self.assertIn("adopted", a.log())
        a.call({"op": "stop", "id": "keep"})
        self.assertEqual(a.wait_state("keep", "stopped")["exit_code"], 143)

    def test_sigterm_leaves_sandboxes_running_by_default(self):
        a = self.start_agent()
        a.launch(a.request("stay"), wait=True)
        self.assertEqual(a.stop(), 0)
        self.assertFalse(os.path.exists(a.socket_path))
        self.assertEqual([c["status"] for c in json.loads(runsc_list(a))], ["running"])


    def test_no_sandbox_is_ready_before_its_own_dockerd_answers(self):
        # Many probes whose attempts time out every 5 ms, then one answer per sandbox: each
        # sandbox must be reported ready only from its own dockerd's reply. (A descriptor
        # closed while Asio still had an operation queued for it was reused by another
        # probe's socket, and a sandbox was reported ready from its neighbour's reply.)
        a = self.start_agent({"probe": {"attempt_timeout_ms": 5, "initial_ms": 5, "max_ms": 50}})
        ids = [f"own{i}" for i in range(120)]
        c = a.client()
        for sid in ids:
            c.send({"op": "launch", "request": a.request(
                sid, env=["FAKE_RUNSC=dockerd_delay_ms=20,answer_delay_ms=600"], docker={"enabled": True})})
        for _ in ids:
            self.assertTrue(c.read()["ok"])
        c.close()
        for sid in ids:
            self.assertEqual(a.wait_state(sid, ("ready", "failed"), timeout=60)["state"], "ready")
        answered = _fake_dockerd_answered(a)
        early = []
        for sid in ids:
            rid = _runsc_id(a, sid)
            ready_at = _unix_us(a.status(sid)["ready_at"])
            if rid not in answered:  # ready, and its dockerd has not even begun to answer
                early.append((sid, "before any answer"))
            elif ready_at < answered[rid]:
                early.append((sid, (answered[rid] - ready_at) / 1000))
        self.assertEqual(early, [], "ready before its own dockerd answered (ms early)")

    def test_a_socket_that_refuses_as_it_appears_is_retried_at_once(self):
        # sandbox-init's relay binds its socket before it listens, so the first connect after
        # the socket appears can be refused. The waits while the socket was absent must not
        # set the retry's pace: they had grown to the 250 ms maximum, and ready came that
        # long after dockerd answered.
        a = self.start_agent()
        ids = [f"gap{i}" for i in range(5)]
        for sid in ids:
            a.launch(a.request(sid, env=["FAKE_RUNSC=dockerd_delay_ms=800,listen_gap_ms=10"],
                               docker={"enabled": True}))
        for sid in ids:
            self.assertEqual(a.wait_state(sid, ("ready", "failed"), timeout=30)["state"], "ready")
        answered = _fake_dockerd_answered(a)
        late = [(_unix_us(a.status(sid)["ready_at"]) - answered[_runsc_id(a, sid)]) / 1000 for sid in ids]
        late.sort()
        self.assertLess(late[len(late) // 2], 100, f"ms from dockerd answering to ready: {late}")


def _fake_dockerd_answered(agent):
    """{runsc id: UNIX µs when its fake dockerd first could answer} (fake-runsc's log)."""
    answered = {}
    with open(os.path.join(agent.root, "runsc", "fake-dockerd-ready.log")) as f:
        for line in f:
            rid, at = line.split()
            answered.setdefault(rid, int(at))
    return answered


def _runsc_id(agent, sid):
    with open(os.path.join(agent.root, "state", sid + ".json")) as f:
        return json.load(f)["runsc_id"]


def _unix_us(rfc3339):
    """'2026-11-29T09:11:20.123456Z' -> UNIX microseconds (exact, no float rounding)."""
    import calendar
    main, _, frac = rfc3339.rstrip("Z").partition(".")
    seconds = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1_000_000 + int((frac + "000000")[:6])


def runsc_list(agent):
    import subprocess
    return subprocess.run([agent.runsc, "--root", os.path.join(agent.root, "runsc"), "list", "--format=json"],
                          capture_output=True, text=True, timeout=30).stdout or "null"


class SandboxctlTest(AgentTestCase):
    def test_commands_and_exit_codes(self):
        a = self.start_agent()
        req = json.dumps(a.request("ctl-1", docker={"enabled": True}))
        r = sandboxctl(a, "launch", "-", "--wait", input=req)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("ready", r.stdout)
        self.assertIn("docker socket", r.stdout)
        r = sandboxctl(a, "--json", "status", "ctl-1")
        self.assertEqual(json.loads(r.stdout)["sandbox"]["state"], "ready")
        r = sandboxctl(a, "ps")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"(?m)^ID\s+STATE")
        self.assertRegex(r.stdout, r"(?m)^ctl-1\s+ready")
        r = sandboxctl(a, "stats")
        self.assertIn("ready 1", r.stdout)
        r = sandboxctl(a, "stop", "ctl-1", "--timeout", "3000", "--wait")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "ctl-1 stopped"))

        r = sandboxctl(a, "status", "missing")
        self.assertEqual(r.returncode, 1)
        self.assertIn("not_found", r.stderr)
        r = sandboxctl(a, "launch", "-", input='{"rootfs": "/etc"}')
        self.assertEqual(r.returncode, 1)
        self.assertIn("invalid_request /rootfs", r.stderr)
        r = sandboxctl(a, "launch", "-", "--wait", input=json.dumps(a.request("bad", env=["FAKE_RUNSC=create=fail"])))
        self.assertEqual(r.returncode, 1)
        self.assertIn("runsc_create_failed", r.stdout)
        r = sandboxctl(a, "frob")
        self.assertEqual(r.returncode, 2)
        import subprocess
        from harness import SANDBOXCTL
        r = subprocess.run([SANDBOXCTL, "--socket", "/nonexistent.sock", "ps"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot connect", r.stderr)

    def scripted(self, cmd, answers):
        """Runs `sandboxctl CMD…` against a scripted agent that answers its n-th request line
        with answers[n] (bytes), then closes: (the ops it got, (returncode, stdout, stderr))."""
        import socket
        import subprocess
        import threading
        from harness import SANDBOXCTL
        path = os.path.join(self.tmp, "scripted.sock")
        if os.path.exists(path):
            os.unlink(path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(1)
        server.settimeout(30)
        got = []
        self.requests = []  # the request lines, parsed

        def agent():
            conn, _ = server.accept()
            with conn, conn.makefile("rb") as lines:
                try:
                    for answer in answers:
                        self.requests.append(json.loads(lines.readline()))
                        got.append(self.requests[-1]["op"])
                        conn.sendall(answer)
                    conn.shutdown(socket.SHUT_WR)
                    lines.read()
                except (OSError, ValueError):
                    pass  # sandboxctl went before the script's end

        t = threading.Thread(target=agent)
        t.start()
        try:
            r = subprocess.run([SANDBOXCTL, "--socket", path, *cmd], capture_output=True, text=True, timeout=30)
        finally:
            t.join(timeout=30)
            server.close()
        return got, (r.returncode, r.stdout, r.stderr)

    def test_stop_wait_reads_past_other_sandboxes_events_to_its_reply(self):
        # stop --wait watches before it stops, so another sandbox's event can come before the
        # stop's reply (two Slurm epilogs at once did this in CI, and sandboxctl crashed).
        ops, result = self.scripted(["stop", "mine", "--wait"], [
            b'{"ok":true}\n{"event":"state","id":"other","state":"stopping","ts":"t"}\n',
            b'{"event":"state","id":"other","state":"stopped","reason":"stop_requested","ts":"t"}\n'
            b'{"ok":true,"id":"mine","state":"stopping"}\n'
            b'{"event":"state","id":"mine","state":"stopped","reason":"stop_requested","ts":"t"}\n'])
        self.assertEqual(ops, ["watch", "stop"])
        self.assertEqual(result, (0, "mine stopped\n", ""))

    def test_stop_wait_with_its_watch_refused_still_stops_and_waits_by_polling(self):
        # The stop is sent with the watch: with the watch refused (limits.max_watchers) it was
        # exiting 1 "overloaded" while the sandbox stopped, and the Slurm epilog took that for
        # a failed stop. It now asks `status` until the sandbox has ended.
        refused = b'{"ok":false,"error":{"code":"overloaded","message":"too many watchers (limits.max_watchers)"}}\n'
        ops, result = self.scripted(["stop", "mine", "--wait"], [
            refused,
            b'{"ok":true,"id":"mine","state":"stopping"}\n',
            b'{"ok":true,"sandbox":{"id":"mine","state":"stopping"}}\n',
            b'{"ok":true,"sandbox":{"id":"mine","state":"stopped","reason":"stop_requested"}}\n'])
        self.assertEqual(ops, ["watch", "stop", "status", "status"])
        self.assertEqual(result, (0, "mine stopped\n", ""))
        # --json: the final status object (id, state, reason at the top, like the event's)
        ops, result = self.scripted(["--json", "stop", "mine", "--wait"], [
            refused, b'{"ok":true,"id":"mine","state":"stopping"}\n',
            b'{"ok":true,"sandbox":{"id":"mine","state":"failed","reason":"exited"}}\n'])
        self.assertEqual(ops, ["watch", "stop", "status"])
        self.assertEqual((result[0], json.loads(result[1])), (0, {"id": "mine", "state": "failed", "reason": "exited"}))
        # a stop the agent refuses is still that error, and nothing is polled
        ops, result = self.scripted(["stop", "gone", "--wait"], [
            refused, b'{"ok":false,"error":{"code":"not_found","message":"no sandbox gone","field":"/id"}}\n'])
        self.assertEqual(ops, ["watch", "stop"])
        self.assertEqual(result, (1, "", "not_found /id: no sandbox gone\n"))

    def test_stop_wait_on_an_agent_with_no_watch_slots_left(self):
        a = self.start_agent({"limits": {"max_watchers": 0}})
        a.launch(a.request("nw"), wait=True)
        r = sandboxctl(a, "stop", "nw", "--timeout", "3000", "--wait")
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "nw stopped\n", ""))
        self.assertEqual(a.status("nw")["state"], "stopped")

    def test_a_request_past_the_line_limit_is_reported_as_the_agents_too_large(self):
        # The agent answers too_large and closes while sandboxctl is still sending: that was
        # "cannot send …: Broken pipe", exit 2, as if the agent were unreachable.
        a = self.start_agent()
        big = json.dumps(a.request("big", labels={"x": "y" * (4 << 20)}))
        r = sandboxctl(a, "launch", "-", input=big)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertRegex(r.stderr, r"^too_large: line longer than \d+ bytes\n$")
        r = sandboxctl(a, "--json", "launch", "-", input=big)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(json.loads(r.stdout)["error"]["code"], "too_large")
        # exec's request line too (its arguments)
        r = sandboxctl(a, "exec", "big", "--", "/bin/echo", *["z" * 100000] * 16)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertRegex(r.stderr, r"^too_large: line longer than \d+ bytes\n$")
        self.assertTrue(a.answers())

    def test_launch_options_in_any_order(self):
        accepted = b'{"ok":true,"id":"z","state":"accepted"}\n'
        req = os.path.join(self.tmp, "req.json")
        with open(req, "w") as f:
            json.dump({"id": "z", "rootfs": "/r"}, f)
        for cmd in (["launch", "--wait", req], ["launch", req, "--wait"]):
            ops, result = self.scripted(cmd, [b'{"ok":true,"state":"ready","sandbox":{"id":"z","state":"ready"}}\n'])
            self.assertEqual((ops, result[0]), (["launch"], 0), (cmd, result))
            self.assertEqual(self.requests[0], {"op": "launch", "wait": "ready", "request": {"id": "z", "rootfs": "/r"}})
        for cmd in (["launch", "--id", "z", "--pool", "p", "--ttl", "5"], ["launch", "--ttl=5", "--pool=p", "--id=z"]):
            ops, result = self.scripted(cmd, [accepted])
            self.assertEqual(result, (0, "z accepted\n", ""), cmd)
            self.assertEqual(self.requests[0], {"op": "launch", "request": {"pool": "p", "id": "z", "ttl_ms": 5}})
        _, result = self.scripted(["launch", "--wait", "--pool", "p"], [accepted])
        self.assertEqual(self.requests[0], {"op": "launch", "wait": "ready", "request": {"pool": "p"}})
        # real mistakes: each a usage error that says what is wrong, and nothing sent
        for cmd, why in ((["launch"], "launch needs a request file (or -), or --pool NAME"),
                         (["launch", req, "-"], f"launch takes one request file (got {req} and -)"),
                         (["launch", "--pool", "p", req], "launch takes a request file or --pool NAME, not both"),
                         (["launch", "--id", "z", req], "--id and --ttl go with --pool (a request file has its own id and ttl_ms)"),
                         (["launch", req, "--pool"], "--pool needs a value"),
                         (["launch", "--pool", "p", "--ttl", "soon"], "--ttl takes milliseconds"),
                         (["launch", "--frob", req], "unknown launch option --frob")):
            import subprocess
            from harness import SANDBOXCTL
            r = subprocess.run([SANDBOXCTL, "--socket", "/nonexistent.sock", *cmd], capture_output=True, text=True,
                               timeout=30)
            self.assertEqual((r.returncode, r.stderr.splitlines()[0]), (2, "sandboxctl: " + why), cmd)

    def test_replies_missing_their_objects_print_blanks_not_a_crash(self):
        # An agent of another version may leave out what this sandboxctl expects.
        bare = b'{"ok":true,"sandboxes":[{"id":"x"},7]}\n'
        results = [self.scripted(cmd, [bare])[1][0] for cmd in (["status", "x"], ["inspect", "x"], ["stats"], ["ps"])]
        self.assertEqual(results, [0, 0, 0, 0])

    def test_stop_wait_of_many_sandboxes_at_once(self):
        # The same race on the real agent: each stop --wait sees the others' events.
        import subprocess
        from harness import SANDBOXCTL
        a = self.start_agent()
        ids = [f"many-{i}" for i in range(8)]
        for i in ids:
            a.launch(a.request(i))
        for i in ids:
            a.wait_state(i, "ready")
        stops = [subprocess.Popen([SANDBOXCTL, "--socket", a.socket_path, "stop", i, "--wait"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in ids]
        results = [(p.communicate(timeout=60), p.returncode) for p in stops]
        self.assertEqual(results, [((f"{i} stopped\n", ""), 0) for i in ids])

    def test_watch_prints_events(self):
        import subprocess
        from harness import SANDBOXCTL
        a = self.start_agent()
        p = subprocess.Popen([SANDBOXCTL, "--socket", a.socket_path, "watch"], stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.3)
            a.launch(a.request("wx"), wait=True)
            lines = [p.stdout.readline() for _ in range(4)]
            self.assertRegex(lines[-1], r"wx\s+ready")
        finally:
            p.kill()
            p.wait()


if __name__ == "__main__":
    unittest.main()
