"""The start-up runtime probe, through the real binary: what the agent finds the runtime to
be decides the flags every runsc call gets, the Docker profile, and what statuses say. The
fake runsc answers the probe like Debian's runsc, or (FAKE_RUNSC_PROFILE=current) like
current gVisor."""
import json
import os
import subprocess
import unittest

from harness import AGENT, AgentTestCase, FAKE_RUNSC, process_children, spawn_helper_of, wait_for


def runsc_calls(agent, sid, verb):
    with open(os.path.join(agent.root, "logs", sid, "runsc.log")) as f:
        return [line for line in f if f" {verb} " in line]


class RuntimeProbeTest(AgentTestCase):
    def start_with(self, profile, config=None):
        env = dict(os.environ, FAKE_RUNSC_PROFILE=profile)
        return self.start_agent(config, env=env)

    def probe_line(self, agent):
        lines = [l for l in agent.log().splitlines() if "nested containers:" in l]
        self.assertEqual(len(lines), 1, agent.log())
        return lines[0]

    def test_current_gvisor_gets_systrap_raw_sockets_for_docker_and_overlay2(self):
        a = self.start_with("current")
        line = self.probe_line(a)
        self.assertIn("version fake-current, OCI 1.2.1", line)
        self.assertIn("platform systrap (auto; offers kvm, ptrace, systrap)", line)
        self.assertIn("nested containers: yes", line)
        d = a.launch(a.request("dock", docker={"enabled": True}), wait=True)
        self.assertEqual(d["state"], "ready", d)
        self.assertEqual(d["sandbox"]["capabilities"],
                         {"runtime_version": "fake-current", "platform": "systrap", "nested_containers": True})
        with open(os.path.join(a.root, "bundles", "dock", "config.json")) as f:
            args = json.load(f)["process"]["args"]
        self.assertIn("--dockerd-arg=--storage-driver=overlay2", args)
        # one `runsc run --detach` creates and starts it (runsc.launch "run", the default)
        self.assertEqual(runsc_calls(a, "dock", "create") + runsc_calls(a, "dock", "start"), [])
        run = runsc_calls(a, "dock", "run")[0]
        self.assertIn(" run --detach --bundle ", run)
        for flag in ("--network=none", "--platform=systrap", "--host-uds=create", "--net-raw"):
            self.assertIn(flag, run)
        # Debian's dockerd (20.10) does not need packet-socket writes: not asked for
        self.assertNotIn("--allow-packet-socket-write", run)
        # every other call gets the common flags, never the Docker-only ones
        a.call({"op": "stop", "id": "dock"})
        a.wait_state("dock", ("stopped",))
        delete = runsc_calls(a, "dock", "delete")[0]
        self.assertIn("--platform=systrap", delete)
        self.assertNotIn("--net-raw", delete)
        # a plain sandbox: no raw sockets, not nested-capable
        p = a.launch(a.request("plain"), wait=True)
        self.assertFalse(p["sandbox"]["capabilities"]["nested_containers"])
        self.assertNotIn("--net-raw", runsc_calls(a, "plain", "run")[0])

    def test_create_then_start_when_configured(self):
        # runsc.launch "create_start": the two calls of before, the Docker flags on create only
        a = self.start_with("current", {"runsc": {"launch": "create_start"}})
        d = a.launch(a.request("dock", docker={"enabled": True}), wait=True)
        self.assertEqual(d["state"], "ready", d)
        self.assertEqual(runsc_calls(a, "dock", "run"), [])
        create, start = runsc_calls(a, "dock", "create")[0], runsc_calls(a, "dock", "start")[0]
        self.assertIn("--net-raw", create)
        self.assertIn("--platform=systrap", start)
        self.assertNotIn("--net-raw", start)

    def test_only_a_sandbox_with_resources_limits_gets_a_host_cgroup(self):
        # runsc.host_cgroups "limited" (the default): the cgroup runsc would make for every
        # sandbox costs each cold start ~30 ms; only a sandbox with limits to enforce gets one.
        a = self.start_with("current", {"runsc": {"launch": "create_start"}})
        self.assertIn("--ignore-cgroups (sandboxes without resources limits)", self.probe_line(a))
        a.launch(a.request("free"), wait=True)
        a.launch(a.request("capped", resources={"memory_mb": 256}), wait=True)
        # create and start say the same; other calls never carry it
        for verb in ("create", "start"):
            self.assertIn(" --ignore-cgroups ", runsc_calls(a, "free", verb)[0])
            self.assertNotIn("--ignore-cgroups", runsc_calls(a, "capped", verb)[0])
        a.call({"op": "stop", "id": "free"})
        a.wait_state("free", ("stopped",))
        self.assertNotIn("--ignore-cgroups", runsc_calls(a, "free", "delete")[0])
        # "always": every sandbox gets one, as before
        b = self.start_with("current", {"runsc": {"host_cgroups": "always"}})
        self.assertNotIn("--ignore-cgroups", self.probe_line(b))
        b.launch(b.request("free"), wait=True)
        self.assertNotIn("--ignore-cgroups", runsc_calls(b, "free", "run")[0])
        # the default one-call launch carries it on `runsc run`
        c = self.start_with("current")
        c.launch(c.request("free"), wait=True)
        c.launch(c.request("capped", resources={"pids": 100}), wait=True)
        self.assertIn(" --ignore-cgroups ", runsc_calls(c, "free", "run")[0])
        self.assertNotIn("--ignore-cgroups", runsc_calls(c, "capped", "run")[0])

    def test_runsc_calls_are_forked_by_the_spawn_helper_and_killed_through_it(self):
        a = self.start_agent({"runsc": {"timeout_ms": 1500}})
        helper = spawn_helper_of(a.proc.pid)
        self.assertIsNotNone(helper, a.log())
        a.launch(a.request("hung", env=["FAKE_RUNSC=create=hang"]))
        wait_for(lambda: a.status("hung")["state"] == "creating", timeout=10, what="runsc create in flight")
        # the agent's only child is the helper; the call is the helper's
        self.assertEqual([p for p, _ in process_children(a.proc.pid)], [helper])
        self.assertTrue(process_children(helper))
        # past its deadline the call is killed through the helper, which reaps it
        final = a.wait_state("hung", "failed", timeout=15)
        self.assertEqual((final["reason"], final["log_tail"]), ("runsc_timeout", "runsc run: timed out and was killed"))
        wait_for(lambda: not process_children(helper), timeout=10, what="the hung call killed and reaped")
        self.assertEqual(a.launch(a.request("fine", docker={"enabled": True}), wait=True)["state"], "ready")
        # runsc.spawn_helper false: the agent forks runsc itself
        b = self.start_agent({"runsc": {"spawn_helper": False}})
        self.assertIsNone(spawn_helper_of(b.proc.pid))
        self.assertNotIn("spawn helper up", b.log())
        self.assertEqual(b.launch(b.request("direct", docker={"enabled": True}), wait=True)["state"], "ready")

    def test_debian_runsc_gets_ptrace_vfs_and_says_no_nested_containers(self):
        a = self.start_with("debian")
        line = self.probe_line(a)
        self.assertIn("platform ptrace (auto; offers kvm, ptrace)", line)
        self.assertIn("nested containers: no", line)
        d = a.launch(a.request("dock", docker={"enabled": True}), wait=True)
        self.assertEqual(d["state"], "ready", d)  # works as before...
        self.assertFalse(d["sandbox"]["capabilities"]["nested_containers"])  # ...and says what it cannot do
        self.assertEqual(d["sandbox"]["capabilities"]["platform"], "ptrace")
        run = runsc_calls(a, "dock", "run")[0]
        self.assertIn("--platform=ptrace", run)
        self.assertIn("--net-raw", run)
        with open(os.path.join(a.root, "bundles", "dock", "config.json")) as f:
            args = json.load(f)["process"]["args"]
        self.assertNotIn("--dockerd-arg=--storage-driver=overlay2", args)
        # sandboxctl status shows it to people too
        r = subprocess.run([os.environ.get("SANDBOXCTL", "build/sandboxctl"), "--socket", a.socket_path,
                            "status", "dock"], capture_output=True, text=True, timeout=30)
        self.assertIn("nested containers: no", r.stdout)

    def test_capabilities_survive_a_restart(self):
        a = self.start_with("current")
        a.launch(a.request("keep", docker={"enabled": True}), wait=True)
        self.assertEqual(a.stop(), 0)
        a.env = dict(os.environ, FAKE_RUNSC_PROFILE="debian")  # the runtime changed meanwhile
        a.start()
        # the sandbox was made by the runtime that was there then: its status keeps saying so
        caps = a.status("keep")["capabilities"]
        self.assertEqual((caps["platform"], caps["nested_containers"]), ("systrap", True))

    def test_operator_flags_win(self):
        a = self.start_with("current", {"runsc": {"flags": ["--network=none", "--platform=ptrace"],
                                                  "platform": "systrap"}})
        self.assertIn("platform ptrace (runsc.flags", self.probe_line(a))
        self.assertIn("runsc.flags sets --platform=ptrace; runsc.platform (systrap) is ignored", a.log())
        a.launch(a.request("p"), wait=True)
        run = runsc_calls(a, "p", "run")[0]
        self.assertEqual(run.count("--platform="), 1)
        self.assertIn("--platform=ptrace", run)

    def test_a_runsc_that_cannot_be_asked_is_said_and_launches_still_fail_clearly(self):
        a = self.start_agent(runsc="/nonexistent/runsc")
        self.assertIn("not probed: cannot run /nonexistent/runsc", self.probe_line(a))
        s = a.launch(a.request("x"), wait=True)
        self.assertEqual((s["state"], s["sandbox"]["reason"]), ("failed", "runsc_create_failed"), s)

    def test_check_config_prints_what_the_runtime_can_do(self):
        env = dict(os.environ, FAKE_RUNSC_PROFILE="current")
        r = subprocess.run([AGENT, "--root", self.tmp, "--runsc", os.path.abspath(FAKE_RUNSC), "--check-config"],
                           capture_output=True, text=True, timeout=30, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("nested containers: yes", r.stdout)
        r = subprocess.run([AGENT, "--root", self.tmp, "--runsc", os.path.abspath(FAKE_RUNSC), "--check-config"],
                           capture_output=True, text=True, timeout=30)
        self.assertIn("nested containers: no", r.stdout)
        self.assertIn("platform ptrace", r.stdout)


if __name__ == "__main__":
    unittest.main()
