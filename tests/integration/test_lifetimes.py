"""Sandbox lifetimes: `ttl_ms` (stopped with reason ttl_expired that long after ready), `extend`
(the deadline moved, sooner or later), both across an agent restart (the deadline is in the
record), and `sandboxctl extend` / `inspect`. Fake runtime."""
import datetime
import json
import signal
import time
import unittest

from harness import AgentTestCase, sandboxctl, wait_for


def parse_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class LifetimeTest(AgentTestCase):
    def record(self, a, sid):
        try:
            with open(f"{a.root}/state/{sid}.json") as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def test_a_sandbox_is_stopped_when_its_ttl_runs_out(self):
        a = self.start_agent()
        t0 = time.time()
        final = a.launch(a.request("short", ttl_ms=800), wait=True)
        self.assertEqual(final["state"], "ready", final)
        s = final["sandbox"]
        deadline = parse_time(s["ttl_deadline"])
        self.assertAlmostEqual(deadline - parse_time(s["ready_at"]), 0.8, delta=0.01)
        s = a.wait_state("short", "stopped", timeout=20)
        self.assertEqual(s["reason"], "ttl_expired")
        self.assertGreaterEqual(time.time() - t0, 0.8)
        # a sandbox without ttl_ms is not touched
        self.assertTrue(a.launch(a.request("long"), wait=True)["ok"])
        self.assertNotIn("ttl_deadline", a.status("long"))

    def test_extend_moves_the_deadline_later_and_sooner(self):
        a = self.start_agent()
        a.launch(a.request("x", ttl_ms=1500), wait=True)
        r = a.call({"op": "extend", "id": "x", "ttl_ms": 60000})
        self.assertTrue(r["ok"], r)
        self.assertAlmostEqual(parse_time(r["ttl_deadline"]), time.time() + 60, delta=2)
        time.sleep(2)  # past the first deadline: still alive
        self.assertEqual(a.status("x")["state"], "ready")
        self.assertEqual(a.status("x")["ttl_deadline"], r["ttl_deadline"])
        # sooner: a sandbox that had no deadline gets one too
        a.launch(a.request("y"), wait=True)
        for sid in ("x", "y"):
            self.assertTrue(a.call({"op": "extend", "id": sid, "ttl_ms": 300})["ok"])
        for sid in ("x", "y"):
            self.assertEqual(a.wait_state(sid, "stopped", timeout=20)["reason"], "ttl_expired")
        # on what is gone or unknown, and with bad arguments
        gone = a.call({"op": "extend", "id": "x", "ttl_ms": 1000})
        self.assertEqual((gone["error"]["code"], gone["error"]["field"]), ("invalid_request", "/id"))
        self.assertEqual(a.call({"op": "extend", "id": "nope", "ttl_ms": 1000})["error"]["code"], "not_found")
        for bad, field in (({"id": "y"}, "/ttl_ms"), ({"id": "y", "ttl_ms": 0}, "/ttl_ms"),
                           ({"id": "y", "ttl_ms": "1s"}, "/ttl_ms"), ({"ttl_ms": 5}, "/id")):
            r = a.call({"op": "extend", **bad})
            self.assertEqual((r["error"]["code"], r["error"]["field"]), ("invalid_request", field), bad)

    def test_the_deadline_survives_an_agent_restart(self):
        a = self.start_agent()
        a.launch(a.request("kept", ttl_ms=3000), wait=True)
        deadline = a.status("kept")["ttl_deadline"]
        # (records are written behind the replies: kill only once the ready one is on disk)
        wait_for(lambda: "ttl_deadline_us" in self.record(a, "kept"), timeout=10, what="the ready record")
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        a.start()
        s = a.wait_state("kept", "ready")
        self.assertEqual(s["ttl_deadline"], deadline)
        s = a.wait_state("kept", "stopped", timeout=20)
        self.assertEqual(s["reason"], "ttl_expired")
        # it was stopped at its deadline, not at the restart nor long after
        with open(f"{a.root}/state/kept.json") as f:
            self.assertEqual(json.load(f)["reason"], "ttl_expired")
        # a deadline that passed while the agent was down stops it at once after the restart
        a.launch(a.request("late", ttl_ms=500), wait=True)
        wait_for(lambda: "ttl_deadline_us" in self.record(a, "late"), timeout=10, what="the ready record")
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        time.sleep(1)
        a.start()
        self.assertEqual(a.wait_state("late", "stopped", timeout=20)["reason"], "ttl_expired")

    def test_sandboxctl_extend_and_inspect(self):
        a = self.start_agent()
        a.launch(a.request("c", ttl_ms=600000), wait=True)
        r = sandboxctl(a, "extend", "c", "120000")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^c ttl_deadline \d{4}-\d\d-\d\dT")
        r = sandboxctl(a, "inspect", "c")
        self.assertEqual(r.returncode, 0, r.stderr)
        status = json.loads(r.stdout)
        self.assertEqual((status["id"], status["state"]), ("c", "ready"))
        self.assertIn("ttl_deadline", status)
        self.assertIn("deadline", sandboxctl(a, "status", "c").stdout)
        self.assertEqual(sandboxctl(a, "extend", "c", "soon").returncode, 2)
        r = sandboxctl(a, "extend", "nope", "1000")
        self.assertEqual(r.returncode, 1)
        self.assertIn("not_found", r.stderr)
        self.assertEqual(sandboxctl(a, "inspect", "nope").returncode, 1)


if __name__ == "__main__":
    unittest.main()
