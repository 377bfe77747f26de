"""Prometheus metrics from the real agent (fake runtime): the `metrics` op, `sandboxctl
metrics`, and metrics.listen serving GET /metrics on a Unix socket and on a loopback port,
from the same reactor. Debian's promtool (package prometheus) checks the exposition."""
import os
import re
import shutil
import socket
import subprocess
import time
import unittest

from harness import AGENT, AgentProcess, AgentTestCase, sandboxctl, wait_for

PROMTOOL = shutil.which("promtool")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(connect, request, timeout=5):
    """Sends `request` (bytes) on a fresh connection; returns (status, headers, body)."""
    s = connect()
    s.settimeout(timeout)
    try:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    return status, headers, body.decode()


def unix_connect(path):
    def connect():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        return s
    return connect


def tcp_connect(port):
    return lambda: socket.create_connection(("127.0.0.1", port))


GET = b"GET /metrics HTTP/1.1\r\nHost: agent\r\n\r\n"


def samples(text):
    """{'name{labels}': value} of an exposition."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


class MetricsTest(AgentTestCase):
    def make_agent(self, config):
        a = AgentProcess(os.path.join(self.tmp, f"root{len(self.agents)}"), {**self.config, **config})
        self.agents.append(a)
        return a

    @staticmethod
    def argv(a):
        return [os.path.abspath(AGENT), "--root", a.root, "--config", a.config_path, "--runsc", a.runsc]

    def check_with_promtool(self, text):
        if not PROMTOOL:
            self.fail("promtool is missing: scripts/install-deps installs Debian's prometheus package")
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_the_op_counts_what_happened_and_promtool_accepts_it(self):
        a = self.start_agent()
        ready = a.launch(a.request("d1", docker={"enabled": True}), wait=True)
        self.assertEqual(ready["sandbox"]["state"], "ready", ready)
        a.launch(a.request("slow", env=["FAKE_RUNSC=dockerd=never"], docker={"enabled": True, "ready_timeout_ms": 300}))
        a.wait_state("slow", "failed")
        self.assertTrue(a.call({"op": "stop", "id": "d1"})["ok"])
        a.wait_state("d1", "stopped")

        reply = a.call({"op": "metrics", "tag": 7})
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(reply["tag"], 7)
        text = reply["text"]
        self.check_with_promtool(text)
        m = samples(text)
        self.assertEqual(m["sandbox_agent_launches_total"], 2)
        self.assertEqual(m["sandbox_agent_ready_total"], 1)
        self.assertEqual(m['sandbox_agent_failures_total{reason="ready_timeout"}'], 1)
        self.assertEqual(m['sandbox_agent_failures_total{reason="runsc_create_failed"}'], 0)
        self.assertEqual(m['sandbox_agent_stops_total{reason="stop_requested"}'], 1)
        self.assertEqual(m['sandbox_agent_sandboxes{state="stopped"}'], 1)
        self.assertEqual(m['sandbox_agent_sandboxes{state="failed"}'], 1)
        self.assertEqual(m['sandbox_agent_sandboxes{state="ready"}'], 0)
        self.assertEqual(m["sandbox_agent_time_to_ready_seconds_count"], 1)
        self.assertEqual(m['sandbox_agent_time_to_ready_seconds_bucket{le="+Inf"}'], 1)
        self.assertGreater(m["sandbox_agent_time_to_ready_seconds_sum"], 0)
        # one `runsc run --detach` per launch (runsc.launch "run"): no separate create or start
        self.assertGreaterEqual(m['sandbox_agent_runsc_call_duration_seconds_count{verb="run"}'], 2)
        self.assertEqual(m['sandbox_agent_runsc_call_duration_seconds_count{verb="start"}'], 0)
        self.assertGreaterEqual(m["sandbox_agent_probe_attempts_total"], 1)  # d1's (slow's socket never appears)
        self.assertEqual(m["sandbox_agent_runsc_forked_by_agent_total"], 0)  # the spawn helper took every call
        self.assertEqual(m["sandbox_agent_connections_open"], 1)  # this one
        self.assertGreaterEqual(m["sandbox_agent_connections_total"], 5)
        self.assertGreater(m["process_resident_memory_bytes"], 1 << 20)
        self.assertGreater(m["process_open_fds"], 3)
        self.assertAlmostEqual(m["process_start_time_seconds"], time.time(), delta=120)
        self.assertIn('sandbox_agent_info{version="', text)
        # sandboxctl prints the text itself.
        r = sandboxctl(a, "metrics")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("# TYPE sandbox_agent_time_to_ready_seconds histogram", r.stdout)
        self.assertEqual(samples(r.stdout)["sandbox_agent_ready_total"], 1)

    def test_each_state_of_a_life_is_written_once(self):
        # What a launch and a stop cost in durable writes: the intent (accepted), ready,
        # stopping (before the kill), and stopped once torn down (finished). A state written
        # twice is a flush wasted (a disk's fsync and directory commit, each time).
        a = self.start_agent()

        def writes():
            return samples(a.call({"op": "metrics"})["text"])["sandbox_agent_durable_writes_total"]

        def settled(expected):
            wait_for(lambda: writes() >= expected, timeout=10, what=f"{expected} durable writes")
            time.sleep(0.3)  # and no more after them
            return writes()

        self.assertEqual(writes(), 0)
        ready = a.launch(a.request("d1", docker={"enabled": True}), wait=True)
        self.assertEqual(ready["sandbox"]["state"], "ready", ready)
        self.assertEqual(settled(2), 2)
        self.assertTrue(a.call({"op": "stop", "id": "d1"})["ok"])
        a.wait_state("d1", "stopped")
        self.assertEqual(settled(4), 4)

    def test_pools_have_their_gauges(self):
        root = os.path.join(self.tmp, "pooled")
        template = {"rootfs": os.path.join(root, "images", "rootfs"), "args": ["/bin/sleep", "infinity"]}
        a = self.start_agent(root=root, config={"pools": [{"name": "small", "size": 2, "request": template}]})
        wait_for(lambda: samples(a.call({"op": "metrics"})["text"]).get('sandbox_agent_pool_ready{pool="small"}') == 2,
                 timeout=20, what="the pool's two members in the metrics")
        self.assertTrue(a.launch({"pool": "small", "id": "claimed"}, wait=True)["ok"])
        text = a.call({"op": "metrics"})["text"]
        self.check_with_promtool(text)
        m = samples(text)
        self.assertEqual(m['sandbox_agent_pool_size{pool="small"}'], 2)
        self.assertEqual(m['sandbox_agent_pool_claims_total{pool="small"}'], 1)
        self.assertEqual(m["sandbox_agent_pool_claim_seconds_count"], 1)
        self.assertLess(m["sandbox_agent_pool_claim_seconds_sum"], 5)
        # The claim is not a launch that started a sandbox: only members (two, or three once
        # the refill is ready) are in here, as in ready_total.
        self.assertEqual(m["sandbox_agent_time_to_ready_seconds_count"], m["sandbox_agent_ready_total"])
        self.assertIn(m["sandbox_agent_ready_total"], (2, 3))
        self.assertIn('sandbox_agent_pool_failures_in_a_row{pool="small"}', m)

    def test_get_metrics_on_a_unix_socket_and_a_loopback_port(self):
        path = os.path.join(self.tmp, "metrics.sock")
        a = self.start_agent(config={"metrics": {"listen": "unix:" + path}})
        self.assertTrue(a.launch(a.request("x"), wait=True)["ok"])
        st = os.stat(path)
        self.assertEqual((oct(st.st_mode & 0o777), st.st_uid, st.st_gid), (oct(0o660), 0, 0))  # as the agent's socket
        status, headers, body = http(unix_connect(path), GET)
        self.assertEqual(status, 200, body)
        self.assertEqual(headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        self.assertEqual(int(headers["content-length"]), len(body.encode()))
        self.check_with_promtool(body)
        self.assertEqual(samples(body)["sandbox_agent_ready_total"], 1)
        # The same families as the op.
        op_names = set(re.findall(r"^# TYPE (\S+)", a.call({"op": "metrics"})["text"], re.M))
        self.assertEqual(set(re.findall(r"^# TYPE (\S+)", body, re.M)), op_names)
        self.assertEqual(http(unix_connect(path), b"GET / HTTP/1.1\r\n\r\n")[0], 404)
        status, headers, _ = http(unix_connect(path), b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual((status, headers.get("allow")), (405, "GET"))
        self.assertEqual(http(unix_connect(path), b"nonsense\r\n\r\n")[0], 400)
        self.assertEqual(http(unix_connect(path), b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n")[0], 431)
        # A scraper that connects and says nothing holds no one up: the next scrape is served,
        # the socket server too, and the silent one is closed after its 5 s.
        silent = [unix_connect(path)() for _ in range(3)]
        self.assertEqual(http(unix_connect(path), GET)[0], 200)
        self.assertTrue(a.call({"op": "version"})["ok"])
        silent[0].settimeout(10)
        t0 = time.monotonic()
        self.assertEqual(silent[0].recv(100), b"")
        self.assertLess(time.monotonic() - t0, 8)
        for s in silent:
            s.close()
        # Sixteen silent ones (all the slots) cannot lock a scraper out: the oldest makes room.
        silent = [unix_connect(path)() for _ in range(16)]
        time.sleep(0.3)
        self.assertEqual(http(unix_connect(path), GET)[0], 200)
        silent[0].settimeout(5)
        self.assertEqual(silent[0].recv(100), b"")  # the one closed for it
        for s in silent:
            s.close()
        # Stopping the agent removes the socket it made.
        self.assertEqual(a.stop(), 0)
        self.assertFalse(os.path.exists(path))

        port = free_port()
        b = self.start_agent(config={"metrics": {"listen": f"127.0.0.1:{port}"}})
        status, _, body = http(tcp_connect(port), GET)
        self.assertEqual(status, 200)
        self.check_with_promtool(body)
        self.assertIn(f"metrics on http://127.0.0.1:{port}/metrics", b.log())

    def test_a_bad_listen_value_is_refused_naming_the_key(self):
        for value, why in (("0.0.0.0:9464", "loopback"), ("unix:relative", "absolute"), ("127.0.0.1:0", "port")):
            a = self.make_agent(config={"metrics": {"listen": value}})
            r = subprocess.run(self.argv(a) + ["--check-config"], capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
            self.assertIn("/metrics/listen", r.stderr)
            self.assertIn(why, r.stderr)
        # A port something else holds: the agent does not start, and says where.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            a = self.make_agent(config={"metrics": {"listen": f"127.0.0.1:{port}"}})
            a.start(wait=False)
            self.assertNotEqual(a.proc.wait(30), 0)
            self.assertIn(f"127.0.0.1:{port}", a.log())


if __name__ == "__main__":
    unittest.main()
