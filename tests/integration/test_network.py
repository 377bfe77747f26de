"""Bridge networking with the real CNI plugins and real nftables, the agent running in a test
network namespace (netlab), the runtime faked for speed: the namespace, the plugin chain (ADD
and DEL), the egress rules, ports, failures, and that nothing of a finished sandbox is left,
also after kill -9 of the agent in the middle of launches. Traffic through a real runsc is in
tests/e2e/test_network_real.py."""
import json
import os
import signal
import stat
import subprocess
import sys
import time
import unittest

from harness import AgentTestCase, sandboxctl, wait_for
import netlab

SKIP = netlab.tools_missing()
VALIDATOR = os.path.join(os.path.dirname(__file__), "..", "oci", "validate-oci-spec")


@unittest.skipIf(SKIP, SKIP or "")
class BridgeNetworkTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.lab = netlab.NetLab()
        self.addCleanup(self.lab.close)

    def tearDown(self):
        for a in self.agents:  # a failed test's agent: killed, its pins released
            a.kill()
            self.lab.release_pins(a.root)
        super().tearDown()

    def start(self, config=None, **kw):
        cfg = {"network": {"egress_ceiling": {"allow": ["0.0.0.0/0", netlab.SUBNET]}}}
        cfg.update(config or {})
        env = dict(os.environ, FAKE_RUNSC_PROFILE="current")  # a runsc that can do bridge
        return self.start_agent(cfg, env=env, argv_prefix=self.lab.in_host(), **kw)

    def stop(self, a, sid):
        r = a.call({"op": "stop", "id": sid})
        self.assertTrue(r["ok"], r)
        a.wait_state(sid, "stopped")

    def nft_table(self):
        return subprocess.run(self.lab.in_host("nft", "list", "table", "inet", "sandbox_agent"),
                              capture_output=True, text=True).stdout

    def test_bridge_sandbox_gets_a_namespace_an_address_and_rules_and_leaves_nothing(self):
        a = self.start()
        r = a.launch(a.request("web", network="bridge", ports=[{"host_port": 18080, "sandbox_port": 80}],
                               egress={"allow": ["0.0.0.0/0"], "deny": ["8.8.8.8"]}), wait=True)
        self.assertTrue(r["ok"], r)
        s = a.status("web")
        self.assertEqual(s["state"], "ready", s)
        ip = s["network"]["ip"]
        self.assertTrue(ip.startswith("10.231."), s)
        self.assertEqual(s["network"]["ports"], [{"host_port": 18080, "sandbox_port": 80, "protocol": "tcp"}])
        self.assertIn("network_ms", s["timings"])
        shown = sandboxctl(a, "status", "web").stdout
        self.assertRegex(shown, r"network\s+" + ip.replace(".", r"\.") + r", 0\.0\.0\.0:18080->80/tcp", shown)

        # the spec names the pinned namespace; it is nsfs, holding the sandbox's eth0
        with open(os.path.join(a.root, "bundles", "web", "config.json")) as f:
            spec = json.load(f)
        ns = [n for n in spec["linux"]["namespaces"] if n["type"] == "network"]
        self.assertEqual(len(ns), 1)
        path = ns[0]["path"]
        self.assertTrue(path.startswith(os.path.join(a.root, "network", "netns")), path)
        out = subprocess.run(["nsenter", f"--net={path}", "ip", "-o", "addr", "show", "eth0"],
                             capture_output=True, text=True)
        self.assertIn(ip + "/16", out.stdout, out.stderr)
        self.assertIn({"destination": "/etc/resolv.conf", "type": "bind",
                       "source": os.path.join(a.root, "network", "resolv.conf"), "options": ["rbind", "ro"]},
                      spec["mounts"])
        v = subprocess.run([sys.executable, VALIDATOR, os.path.join(a.root, "bundles", "web", "config.json")],
                           capture_output=True, text=True)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)

        # egress: the sandbox's chain, its allowed ranges (the ceiling, minus the request's deny)
        table = self.nft_table()
        self.assertIn(f"{ip} : jump sb_", table)
        self.assertIn("10.99.0.0/24", table)                   # what the operator opened
        self.assertIn("1.0.0.0-8.8.8.7, 8.8.8.9-", table)      # the request's deny carved out
        self.assertNotIn("169.254.", table)                     # the ceiling's deny stays
        self.assertIn("masquerade", subprocess.run(self.lab.in_host("nft", "list", "table", "ip", "sandbox_agent_nat"),
                                                    capture_output=True, text=True).stdout)
        self.assertTrue(self.lab.leftovers(a.root), "a running sandbox has network state")

        self.stop(a, "web")
        wait_for(lambda: not self.lab.leftovers(a.root), timeout=20, what="the network to be torn down")
        self.assertEqual(self.lab.leftovers(a.root), [])
        with open(os.path.join(a.root, "state", "web.json")) as f:
            self.assertFalse(json.load(f)["network"]["attached"])

    def test_the_sandbox_gets_the_resolv_conf_the_operator_sets(self):
        a = self.start({"network": {"egress_ceiling": {"allow": ["0.0.0.0/0", netlab.SUBNET]},
                                    "dns": ["192.0.2.53", "2001:db8::53"]}})
        with open(os.path.join(a.root, "network", "resolv.conf")) as f:
            self.assertEqual([l for l in f.read().splitlines() if l.startswith("nameserver")],
                             ["nameserver 192.0.2.53", "nameserver 2001:db8::53"])
        own = os.path.join(self.tmp, "resolv.conf")
        with open(own, "w") as f:
            f.write("nameserver 198.51.100.1\noptions ndots:2\n")
        b = self.start({"network": {"resolv_conf": own}})
        self.assertTrue(b.launch(b.request("dns", network="bridge"), wait=True)["ok"])
        with open(os.path.join(b.root, "bundles", "dns", "config.json")) as f:
            mounts = json.load(f)["mounts"]
        self.assertIn({"destination": "/etc/resolv.conf", "type": "bind", "source": own, "options": ["rbind", "ro"]},
                      mounts)
        # without either: the host's, minus loopback resolvers a sandbox cannot reach
        c = self.start({"network": {}})
        with open(os.path.join(c.root, "network", "resolv.conf")) as f:
            text = f.read()
        self.assertNotRegex(text, r"nameserver\s+127\.")
        with open("/etc/resolv.conf") as f:
            for line in f:
                if line.startswith("nameserver") and not line.split()[1].startswith("127."):
                    self.assertIn(line.strip(), text)

    def test_a_host_port_taken_is_that_requests_error_only(self):
        a = self.start()
        self.assertTrue(a.launch(a.request("one", network="bridge", ports=[{"host_port": 18080, "sandbox_port": 80}]),
                                 wait=True)["ok"])
        clash = a.launch(a.request("two", network="bridge", ports=[{"host_port": 18080, "sandbox_port": 81}]))
        self.assertFalse(clash["ok"])
        self.assertEqual(clash["error"]["field"], "/ports/0/host_port")
        self.assertIn("already published by another sandbox", clash["error"]["message"])
        # udp on the same number is another port
        self.assertTrue(a.launch(a.request("three", network="bridge",
                                           ports=[{"host_port": 18080, "sandbox_port": 80, "protocol": "udp"}]))["ok"])
        # something on the host listening
        holder = subprocess.Popen(self.lab.in_host(sys.executable, "-c",
                                  "import socket,time; s=socket.socket(); s.bind(('0.0.0.0',18081)); s.listen(); print('up', flush=True); time.sleep(60)"),
                                  stdout=subprocess.PIPE, text=True)
        self.addCleanup(lambda: (holder.kill(), holder.wait()))
        self.assertEqual(holder.stdout.readline().strip(), "up")
        taken = a.launch(a.request("four", network="bridge", ports=[{"host_port": 18081, "sandbox_port": 80}]))
        self.assertFalse(taken["ok"])
        self.assertIn("18081/tcp is in use on the host", taken["error"]["message"])
        self.assertIsNone(a.status("four"))
        # the first sandbox's port is free again once it is gone
        self.stop(a, "one")
        five = a.launch(a.request("five", network="bridge", ports=[{"host_port": 18080, "sandbox_port": 80}]), wait=True)
        self.assertTrue(five["ok"], five)

    def test_a_failing_plugin_fails_the_launch_with_its_message_and_undoes_the_rest(self):
        plugins = os.path.join(self.tmp, "cni")
        os.makedirs(plugins)
        for p in ("bridge", "host-local", "firewall", "portmap"):
            os.symlink(f"/usr/lib/cni/{p}", os.path.join(plugins, p))
        failing = os.path.join(plugins, "refuse")
        with open(failing, "w") as f:
            f.write('#!/bin/sh\nif [ "$CNI_COMMAND" = ADD ]; then\n'
                    '  echo \'{"cniVersion":"1.0.0","code":7,"msg":"quota exceeded","details":"tenant blue"}\'\n'
                    '  exit 1\nfi\nexit 0\n')
        os.chmod(failing, 0o755)
        conf = os.path.join(self.tmp, "net.conflist")
        ipam = os.path.join(self.tmp, "ipam")
        with open(conf, "w") as f:
            json.dump({"cniVersion": "1.0.0", "name": "sandbox-agent", "plugins": [
                {"type": "bridge", "bridge": "sa-br0", "isGateway": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.232.0.0/24"}]], "dataDir": ipam}},
                {"type": "refuse"}]}, f)
        a = self.start({"network": {"cni_conf": conf, "cni_path": plugins}})
        port = [{"host_port": 18095, "sandbox_port": 80}]
        r = a.launch(a.request("blue", network="bridge", ports=port), wait=True)
        s = a.wait_state("blue", "failed")
        self.assertEqual(s["reason"], "network_setup_failed", s)
        self.assertIn("CNI plugin refuse (ADD): quota exceeded: tenant blue (CNI error 7)", s["log_tail"])
        # the bridge plugin that had succeeded got its DEL: no veth, no lease, no namespace
        self.assertEqual(self.lab.leftovers(a.root), [])
        self.assertEqual([n for n in os.listdir(os.path.join(ipam, "sandbox-agent")) if n[0].isdigit()], [])
        with open(os.path.join(a.root, "logs", "blue", "cni.log")) as f:
            self.assertIn("cni ADD refuse", f.read())
        # The host port blue reserved at launch is free again (it was kept until a restart).
        again = a.launch(a.request("green", network="bridge", ports=port))
        self.assertTrue(again["ok"], again)
        self.assertEqual(a.wait_state("green", "failed")["reason"], "network_setup_failed")

    def test_a_hanging_plugin_is_killed_at_its_deadline(self):
        plugins = os.path.join(self.tmp, "cni")
        os.makedirs(plugins)
        with open(os.path.join(plugins, "hang"), "w") as f:
            f.write('#!/bin/sh\n[ "$CNI_COMMAND" = ADD ] && exec sleep 60\nexit 0\n')
        os.chmod(os.path.join(plugins, "hang"), 0o755)
        conf = os.path.join(self.tmp, "net.conflist")
        with open(conf, "w") as f:
            json.dump({"cniVersion": "1.0.0", "name": "slow", "plugins": [{"type": "hang"}]}, f)
        a = self.start({"network": {"cni_conf": conf, "cni_path": plugins, "plugin_timeout_ms": 300}})
        t0 = time.monotonic()
        a.launch(a.request("slow", network="bridge"))
        s = a.wait_state("slow", "failed", timeout=10)
        self.assertLess(time.monotonic() - t0, 8)
        self.assertIn("CNI plugin hang (ADD): hang did not finish within 300 ms", s["log_tail"])
        self.assertTrue(a.answers())  # the reactor never waited for it
        self.assertEqual(self.lab.leftovers(a.root), [])

    def test_bridge_is_refused_with_the_reason_where_it_cannot_work(self):
        empty = os.path.join(self.tmp, "no-plugins")
        os.makedirs(empty)
        a = self.start({"network": {"cni_path": empty}})
        r = a.launch(a.request("x", network="bridge"))
        self.assertFalse(r["ok"])
        self.assertEqual(r["error"]["field"], "/network")
        self.assertIn("no CNI plugin " + os.path.join(empty, "bridge"), r["error"]["message"])
        self.assertTrue(a.launch(a.request("y"), wait=True)["ok"])  # everything else works
        self.assertIn("bridge networking unavailable", a.log())

    def test_egress_outside_the_ceiling_is_refused_naming_the_field(self):
        a = self.start({"network": {}})  # the default ceiling: private ranges denied
        r = a.launch(a.request("x", network="bridge", egress={"allow": ["10.99.0.0/24"]}))
        self.assertFalse(r["ok"])
        self.assertEqual(r["error"]["field"], "/egress/allow/0")
        self.assertIn("network.egress_ceiling", r["error"]["message"])

    def test_kill_9_in_the_middle_of_20_bridge_launches_leaves_nothing_after_restart(self):
        a = self.start({"runsc": {"max_concurrent": 4}})
        ids = [f"b{i}" for i in range(20)]
        for sid in ids:
            self.assertTrue(a.launch(a.request(sid, network="bridge"))["ok"])
        # some are attached, some are in the middle of their plugin chain, some wait
        wait_for(lambda: sum(1 for sid in ids if (a.status(sid) or {}).get("network")) >= 3, timeout=30,
                 what="a few sandboxes to be attached")
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        a.kill_fake_daemon()  # the fake sandboxes die with their daemon: those records are lost
        a.start()
        states = {}
        for sid in ids:
            states[sid] = a.wait_state(sid, ("ready", "failed"), timeout=60)["state"]
        # the living have exactly one attachment each, and the firewall knows each of them
        living = [sid for sid in ids if states[sid] == "ready"]
        table = self.nft_table()
        for sid in living:
            self.assertIn(a.status(sid)["network"]["ip"] + " : jump sb_", table)
        for sid in living:
            self.stop(a, sid)
        try:
            wait_for(lambda: not self.lab.leftovers(a.root), timeout=60, what="every sandbox's network to go")
        finally:
            self.assertEqual(self.lab.leftovers(a.root), [])


if __name__ == "__main__":
    unittest.main()
