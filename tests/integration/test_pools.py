"""Warm pools (config `pools`, `launch` with `pool`, the `pools` op) against the real agent and
the fake runtime: claims, refills, a broken template backing off, the empty-pool fallback,
restarts, and the configuration's checks."""
import json
import os
import time
import unittest

from harness import AgentTestCase, sandboxctl, wait_for


class PoolsTest(AgentTestCase):
    def pool_agent(self, size=2, name="p", template=None, config=None, root=None, **kw):
        root = root or os.path.join(self.tmp, f"root{len(self.agents)}")
        rootfs = os.path.join(root, "images", "rootfs")
        os.makedirs(rootfs, exist_ok=True)
        request = {"rootfs": rootfs, "args": ["/bin/sleep", "infinity"], "docker": {"enabled": True},
                   "labels": {"from": "template"}}
        request.update(template or {})
        cfg = {"pools": [{"name": name, "size": size, "request": request}]}
        cfg.update(config or {})
        return self.start_agent(cfg, root=root, **kw)

    def pools(self, a):
        reply = a.call({"op": "pools"})
        self.assertTrue(reply["ok"], reply)
        return {p["name"]: p for p in reply["pools"]}

    def wait_ready(self, a, name="p", n=2):
        wait_for(lambda: self.pools(a)[name]["ready"] == n, timeout=20, what=f"{n} ready in pool {name}")

    def members(self, a, name="p"):
        return sorted(s["id"] for s in a.call({"op": "list"})["sandboxes"]
                      if s["id"].startswith(f"pool-{name}-") and s["state"] not in ("stopped", "failed"))

    def test_a_claim_is_ready_at_once_with_the_callers_fields(self):
        a = self.pool_agent()
        self.wait_ready(a)
        members = self.members(a)
        self.assertEqual(len(members), 2)
        status = a.call({"op": "status", "id": members[0]})["sandbox"]
        self.assertEqual((status["pool"], status["pool_start"], status["labels"]), ("p", "waiting", {"from": "template"}))
        self.assertNotIn("ttl_deadline", status)
        t = time.monotonic()
        reply = a.launch({"pool": "p", "id": "mine", "labels": {"job": "42"}, "ttl_ms": 60000}, wait=True)
        took = time.monotonic() - t
        self.assertEqual((reply["id"], reply["state"]), ("mine", "ready"), reply)
        sb = reply["sandbox"]
        self.assertEqual((sb["pool"], sb["pool_start"], sb["labels"]), ("p", "warm", {"job": "42"}))
        self.assertIn("ttl_deadline", sb)
        self.assertTrue(sb["docker_socket"].endswith("/docker.sock"))
        self.assertLess(took, 2)
        # The member it was is gone by that name; its record (same file) now says "mine".
        taken = [m for m in members if m not in self.members(a)]
        self.assertEqual(len(taken), 1)
        with open(os.path.join(a.root, "state", taken[0] + ".json")) as f:
            self.assertEqual(json.load(f)["id"], "mine")
        # The pool refills; the claimed sandbox is the caller's (stop, logs, exec by its id).
        self.wait_ready(a)
        self.assertEqual(len(self.members(a)), 2)
        self.assertTrue(a.call({"op": "logs", "id": "mine"})["ok"])
        self.assertEqual(a.call({"op": "stop", "id": "mine"})["state"], "stopping")
        a.wait_state("mine", ("stopped",))
        self.assertEqual(self.pools(a)["p"]["failed_in_a_row"], 0)

    def test_a_claimed_members_pool_name_cannot_be_launched_again(self):
        # The claimed sandbox lives on under the member's directories and record: a launch
        # by that name would take them over (and its stop would remove them).
        a = self.pool_agent(size=1)
        self.wait_ready(a, n=1)
        [member] = self.members(a)
        self.assertEqual(a.launch({"pool": "p", "id": "mine"}, wait=True)["state"], "ready")
        reply = a.launch(a.request(member))
        self.assertEqual(reply["error"]["code"], "exists", reply)
        self.assertEqual(reply["error"]["field"], "/id")
        self.assertIn("mine", reply["error"]["message"])
        with open(os.path.join(a.root, "state", member + ".json")) as f:
            self.assertEqual(json.load(f)["id"], "mine")
        self.assertTrue(os.path.isdir(os.path.join(a.root, "bundles", member)))
        self.assertEqual(a.status("mine")["state"], "ready")

    def test_an_empty_pool_falls_back_to_a_cold_launch(self):
        a = self.pool_agent(size=0)
        reply = a.launch({"pool": "p", "id": "cold-one"}, wait=True)
        self.assertEqual(reply["state"], "ready", reply)
        self.assertEqual((reply["sandbox"]["pool"], reply["sandbox"]["pool_start"]), ("p", "cold"))
        self.assertEqual(reply["sandbox"]["labels"], {"from": "template"})
        self.assertIn("no sandbox ready: launching its template cold", a.log())

    def test_a_broken_template_backs_off_and_says_why(self):
        a = self.pool_agent(size=3, name="bad", template={"env": ["FAKE_RUNSC=start=fail"]})
        time.sleep(3)
        info = self.pools(a)["bad"]
        self.assertGreaterEqual(info["failed_in_a_row"], 2, info)
        self.assertIn("start=fail", info["last_error"])
        self.assertIn("retry_at", info)
        self.assertEqual(info["ready"], 0)
        # 0.5 s, 1 s, 2 s between attempts, one member at a time: a handful, not a spin.
        tried = [s for s in a.call({"op": "list"})["sandboxes"] if s["id"].startswith("pool-bad-")]
        self.assertLessEqual(len(tried), 5, [s["id"] for s in tried])
        self.assertIn("failures in a row, next member in", a.log())
        r = sandboxctl(a, "pools")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("retrying at", r.stdout)
        # A claim meanwhile is a cold launch of the broken template: it fails, and says so.
        reply = a.launch({"pool": "bad", "id": "unlucky"}, wait=True)
        self.assertEqual(reply["state"], "failed", reply)

    def test_members_and_claims_survive_a_restart(self):
        a = self.pool_agent()
        self.wait_ready(a)
        a.launch({"pool": "p", "id": "kept"}, wait=True)
        self.wait_ready(a)
        before = self.members(a)
        a.kill()
        a.start()
        self.wait_ready(a)
        self.assertEqual(self.members(a), before, "the restart launched new members instead of adopting")
        kept = a.call({"op": "status", "id": "kept"})["sandbox"]
        self.assertEqual((kept["state"], kept["pool_start"]), ("ready", "warm"))
        reply = a.launch({"pool": "p", "id": "after"}, wait=True)
        self.assertEqual(reply["sandbox"]["pool_start"], "warm", reply)

    def test_a_changed_template_or_size_replaces_the_members(self):
        root = os.path.join(self.tmp, "changing")
        a = self.pool_agent(size=2, root=root)
        self.wait_ready(a)
        old = set(self.members(a))
        a.stop()  # sandboxes are kept over the restart
        b = self.pool_agent(size=1, root=root, template={"args": ["/bin/sleep", "100000"]})
        self.wait_ready(b, n=1)
        # the old members go through `stopping` (TERM, runsc delete) before they are gone
        wait_for(lambda: len(self.members(b)) == 1, timeout=20, what="one member left in pool p")
        now = set(self.members(b))
        self.assertFalse(now & old, "a member of the old template is still offered")
        self.assertIn("is not wanted by this configuration", b.log())

    def test_requests_naming_a_pool_and_bad_configurations(self):
        a = self.pool_agent(size=0, template={"docker": {"enabled": False}})
        for request, field in (({"pool": "p", "rootfs": "/x"}, "/rootfs"),
                               ({"pool": "p", "args": ["x"]}, "/args"),
                               ({"pool": "nope"}, "/pool"),
                               ({"pool": "bad name"}, "/pool"),
                               ({"pool": "p", "socket_owner": {"uid": 1, "gid": 1}}, "/socket_owner")):
            reply = a.call({"op": "launch", "request": request})
            self.assertFalse(reply["ok"], (request, reply))
            self.assertEqual((reply["error"]["code"], reply["error"]["field"]), ("invalid_request", field), request)
        rootfs = os.path.join(a.root, "images", "rootfs")
        for pools, field in (([{"name": "x", "size": 1, "request": {"rootfs": rootfs, "id": "a"}}], "/pools/0/request/id"),
                             ([{"name": "x", "size": 1, "request": {"rootfs": rootfs, "ports": [
                                 {"host_port": 8080, "sandbox_port": 80}]}}], "/pools/0/request/ports"),
                             ([{"name": "x", "size": 1, "request": {"rootfs": "/nowhere"}}], "/pools/0/request/rootfs"),
                             ([{"name": "x", "size": 1}], "/pools/0/request"),
                             ([{"name": "x", "size": 1001, "request": {"rootfs": rootfs}}], "/pools/0/size"),
                             ([{"name": "x", "size": 1, "request": {"rootfs": rootfs}},
                               {"name": "x", "size": 1, "request": {"rootfs": rootfs}}], "/pools/1/name")):
            path = os.path.join(self.tmp, "bad.json")
            with open(path, "w") as f:
                json.dump({"root": os.path.join(self.tmp, "unused"), "pools": pools,
                           "allowed_host_prefixes": [os.path.join(a.root, "images")]}, f)
            import subprocess
            r = subprocess.run([os.environ["SANDBOX_AGENT"], "--config", path, "--check-config"],
                               capture_output=True, text=True, timeout=30)
            self.assertNotEqual(r.returncode, 0, pools)
            self.assertIn(field, r.stderr, (pools, r.stderr))

    def test_a_spool_file_can_take_from_a_pool(self):
        a = self.pool_agent(size=1)
        self.wait_ready(a, n=1)
        spool = os.path.join(a.root, "spool")
        with open(os.path.join(spool, "tmp", "job.json"), "w") as f:
            json.dump({"pool": "p", "id": "spooled"}, f)
        os.rename(os.path.join(spool, "tmp", "job.json"), os.path.join(spool, "new", "job.json"))
        status = os.path.join(spool, "status", "job.json")

        def ready():
            try:
                with open(status) as f:
                    s = json.load(f)
            except (OSError, ValueError):
                return None
            return s if s.get("state") == "ready" else None
        s = wait_for(ready, what="the status file to say ready")
        self.assertEqual((s["id"], s["pool_start"]), ("spooled", "warm"))

    def test_sandboxctl_pools_and_launch_from_a_pool(self):
        a = self.pool_agent(size=1)
        self.wait_ready(a, n=1)
        r = sandboxctl(a, "pools")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"\np\s+1\s+1\s+0\s+0")
        r = sandboxctl(a, "launch", "--pool", "p", "--id", "via-ctl", "--ttl", "60000", "--wait")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("p (warm)", r.stdout)
        self.assertIn("deadline", r.stdout)


if __name__ == "__main__":
    unittest.main()
