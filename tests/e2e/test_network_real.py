"""End-to-end bridge networking on the real runsc: the seed's scenario (a Docker sandbox pulls
an image from a registry and runs it), egress, isolation between sandboxes, published ports,
and no leftovers. The agent runs in a test network namespace and the registry in another one
linked to it (tests/integration/netlab.py): no traffic leaves them.

On Debian's runsc (E2E_RUNTIME=debian) bridge cannot work; the agent must refuse it and say why."""
import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from harness import wait_for  # noqa: E402
import netlab  # noqa: E402
from test_real_runsc import CURRENT, RealRunscCase, busybox_image_tar, docker, runsc_list  # noqa: E402

SKIP = netlab.tools_missing() or (None if os.path.exists("/usr/bin/docker-registry") else
                                  "/usr/bin/docker-registry is missing (scripts/install-deps installs it)")
REGISTRY = f"{netlab.REMOTE_IP}:5000"
SANDBOX_SUBNET = "10.231.0.0/16"


@unittest.skipIf(SKIP, SKIP or "")
class BridgeRealTest(RealRunscCase):
    def setUp(self):
        super().setUp()
        self.lab = netlab.NetLab()
        self.addCleanup(self.lab.close)  # after tearDown has removed every sandbox
        self.www = os.path.join(self.tmp, "www")
        os.makedirs(self.www)
        with open(os.path.join(self.www, "index.html"), "w") as f:
            f.write("served-from-the-sandbox\n")

    def tearDown(self):
        # The registry and whatever a failed test left pinned go before the base class checks
        # for leftover processes and mounts (a passing test checks its own network leftovers).
        for p in self.lab.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        for a in self.agents:
            a.kill()
            self.lab.release_pins(a.root)
        super().tearDown()

    def bridge_agent(self, ceiling_allow=(netlab.SUBNET,)):
        return self.agent({"allowed_host_prefixes": ["ROOT/images", "/usr", "/etc", self.www],
                           "network": {"egress_ceiling": {"allow": ["0.0.0.0/0", *ceiling_allow]}}},
                          argv_prefix=self.lab.in_host())

    def start_registry(self):
        data = os.path.join(self.tmp, "registry")
        os.makedirs(data)
        conf = os.path.join(self.tmp, "registry.yml")
        with open(conf, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {data}\n"
                    f"http:\n  addr: {REGISTRY}\n")
        self.lab.spawn_remote(["/usr/bin/docker-registry", "serve", conf])
        wait_for(lambda: subprocess.run(self.lab.in_host("curl", "-s", "-m", "1", f"http://{REGISTRY}/v2/"),
                                        capture_output=True, text=True).stdout.strip() == "{}",
                 timeout=20, what="the registry to answer")

    def docker_sandbox(self, a, sid, **kw):
        r = self.request(a, sid, docker={"enabled": True, "dockerd_args": [f"--insecure-registry={REGISTRY}"]})
        r.update(network="bridge", **kw)
        final = a.launch(r, wait=True)
        self.assertEqual(final.get("state"), "ready", final)
        return a.status(sid)

    def plain_sandbox(self, a, sid, args, **kw):
        r = self.request(a, sid, args=args)
        r["mounts"].append({"source": self.www, "destination": "/www", "readonly": True})
        r.update(network="bridge", **kw)
        final = a.launch(r, wait=True)
        self.assertEqual(final.get("state"), "ready", final)
        return a.status(sid)

    def console(self, a, sid):
        with open(os.path.join(a.root, "logs", sid, "runsc.log"), errors="replace") as f:
            return f.read()

    def stop_all_and_check_nothing_left(self, a, ids):
        for sid in ids:
            a.call({"op": "stop", "id": sid, "timeout_ms": 5000})
        for sid in ids:
            self.assertEqual(a.wait_state(sid, ("stopped", "failed"), timeout=60)["state"], "stopped")
        self.assertEqual(runsc_list(os.path.join(a.root, "runsc")), [])
        wait_for(lambda: not self.lab.leftovers(a.root), timeout=30, what="every sandbox's network to go")
        self.assertEqual(self.lab.leftovers(a.root), [])

    @unittest.skipUnless(CURRENT, "Debian's runsc cannot run a sandbox in its own network namespace")
    def test_docker_sandbox_pulls_from_a_registry_and_runs_the_image(self):
        """The seed's scenario: push an image to a registry, pull it in a bridge Docker sandbox, run it."""
        self.start_registry()
        a = self.bridge_agent()
        tar = os.path.join(self.tmp, "bb.tar")
        busybox_image_tar(tar)

        pusher = self.docker_sandbox(a, "push")
        docker(pusher["docker_socket"], "import", tar, f"{REGISTRY}/bb:1")
        docker(pusher["docker_socket"], "push", f"{REGISTRY}/bb:1", timeout=120)

        puller = self.docker_sandbox(a, "pull")
        self.assertTrue(puller["network"]["ip"].startswith("10.231."), puller)
        self.assertNotEqual(puller["network"]["ip"], pusher["network"]["ip"])
        sock = puller["docker_socket"]
        pulled = docker(sock, "pull", f"{REGISTRY}/bb:1", timeout=120)
        self.assertIn("Downloaded newer image", pulled.stdout)
        ran = docker(sock, "run", "--rm", f"{REGISTRY}/bb:1", "echo", "hello-from-the-registry")
        self.assertEqual(ran.stdout.strip(), "hello-from-the-registry")
        # a nested container on the sandbox's own network reaches the registry too
        nested = docker(sock, "run", "--rm", "--network=host", f"{REGISTRY}/bb:1",
                        "sh", "-c", f"wget -q -O- http://{REGISTRY}/v2/")
        self.assertEqual(nested.stdout.strip(), "{}")
        self.stop_all_and_check_nothing_left(a, ["push", "pull"])

    @unittest.skipUnless(CURRENT, "Debian's runsc cannot run a sandbox in its own network namespace")
    def test_egress_denied_fails_fast_and_allowed_works(self):
        self.start_registry()
        a = self.bridge_agent()
        probe = f"t0=$(date +%s); wget -q -O- http://{REGISTRY}/v2/; echo \"wget=$? after $(( $(date +%s) - t0 ))s\"; sleep 60"
        self.plain_sandbox(a, "denied", ["/bin/sh", "-c", probe],
                           egress={"allow": ["0.0.0.0/0", netlab.SUBNET], "deny": [netlab.REMOTE_IP]})
        self.plain_sandbox(a, "allowed", ["/bin/sh", "-c", probe], egress={"allow": [netlab.SUBNET]})
        wait_for(lambda: "wget=" in self.console(a, "denied") and "wget=" in self.console(a, "allowed"),
                 timeout=30, what="both probes to finish")
        denied, allowed = self.console(a, "denied"), self.console(a, "allowed")
        self.assertRegex(denied, r"wget=[1-9][0-9]* after [0-2]s", denied[-600:])  # rejected at once, no timeout
        self.assertIn("{}", allowed)
        self.assertIn("wget=0", allowed)
        self.stop_all_and_check_nothing_left(a, ["denied", "allowed"])

    @unittest.skipUnless(CURRENT, "Debian's runsc cannot run a sandbox in its own network namespace")
    def test_sandboxes_reach_each_other_only_when_allowed_and_published_ports_reach_inside(self):
        a = self.bridge_agent(ceiling_allow=(netlab.SUBNET, SANDBOX_SUBNET))
        server = self.plain_sandbox(a, "server", ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"],
                                    ports=[{"host_port": 18080, "sandbox_port": 80}])
        ip = server["network"]["ip"]
        fetch = f"sleep 1; wget -q -T 5 -O- http://{ip}/ && echo fetched || echo refused; sleep 60"
        self.plain_sandbox(a, "stranger", ["/bin/sh", "-c", fetch], egress={"allow": [netlab.SUBNET]})
        self.plain_sandbox(a, "friend", ["/bin/sh", "-c", fetch], egress={"allow": [SANDBOX_SUBNET]})
        tried = lambda sid: "fetched" in self.console(a, sid) or "refused" in self.console(a, sid)  # noqa: E731
        wait_for(lambda: tried("stranger") and tried("friend"), timeout=30, what="both neighbours to try")
        self.assertIn("refused", self.console(a, "stranger"))
        self.assertNotIn("served-from-the-sandbox", self.console(a, "stranger"))
        self.assertIn("served-from-the-sandbox", self.console(a, "friend"))
        # the published port, from the test host namespace and from the remote one
        for where in (self.lab.in_host, self.lab.in_remote):
            got = subprocess.run(where("curl", "-s", "-m", "5", f"http://{netlab.HOST_IP}:18080/"),
                                 capture_output=True, text=True)
            self.assertEqual(got.stdout.strip(), "served-from-the-sandbox", got.stderr)
        self.assertEqual(a.status("server")["network"]["ports"],
                         [{"host_port": 18080, "sandbox_port": 80, "protocol": "tcp"}])
        self.stop_all_and_check_nothing_left(a, ["server", "stranger", "friend"])
        # and once it is gone, the port leads nowhere
        gone = subprocess.run(self.lab.in_host("curl", "-s", "-m", "2", f"http://{netlab.HOST_IP}:18080/"),
                              capture_output=True, text=True)
        self.assertNotEqual(gone.returncode, 0)

    @unittest.skipUnless(CURRENT, "Debian's runsc cannot run a sandbox in its own network namespace")
    def test_kill_9_in_the_middle_of_20_bridge_launches_then_restart_leaves_nothing(self):
        a = self.bridge_agent()
        ids = [f"k{i}" for i in range(20)]
        for sid in ids:
            r = a.launch(self.request(a, sid, args=["/bin/sleep", "600"]) | {"network": "bridge"})
            self.assertTrue(r["ok"], r)
        # some ready, some attached and in runsc, some still in their plugin chain or waiting
        wait_for(lambda: sum(1 for sid in ids if (a.status(sid) or {}).get("state") == "ready") >= 3,
                 timeout=60, what="a few sandboxes to be ready")
        a.proc.send_signal(9)
        a.proc.wait()
        a.start()
        final = {sid: a.wait_state(sid, ("ready", "failed"), timeout=120) for sid in ids}
        living = [sid for sid, s in final.items() if s["state"] == "ready"]
        self.assertGreaterEqual(len(living), 3, final)
        # each living sandbox still has its address and its rules after the restart
        table = subprocess.run(self.lab.in_host("nft", "list", "table", "inet", "sandbox_agent"),
                               capture_output=True, text=True).stdout
        for sid in living:
            self.assertIn(final[sid]["network"]["ip"] + " : jump sb_", table)
        self.stop_all_and_check_nothing_left(a, living)

    @unittest.skipIf(CURRENT, "current gVisor can run bridge sandboxes")
    def test_bridge_is_refused_on_a_runsc_that_cannot_do_it(self):
        a = self.bridge_agent()
        r = a.launch(self.request(a, "x", args=["/bin/true"]) | {"network": "bridge"})
        self.assertFalse(r["ok"], r)
        self.assertEqual(r["error"]["field"], "/network")
        self.assertIn("predates isolated networking", r["error"]["message"])


if __name__ == "__main__":
    unittest.main()
