"""The Slurm hooks on their own, run the way slurmd runs them (an environment of SLURM_*
variables only, no PATH), against a real agent with the fake runtime: every outcome the
prolog can report, the TaskProlog's line, and the epilog's idempotence."""
import os
import subprocess
import time
import unittest

from slurm_harness import SCRIPTS, SlurmTestCase


class HooksTest(SlurmTestCase):
    prolog_timeout = 10

    def setUp(self):
        super().setUp()
        self.agent = self.start_agent()
        self.write_hook_conf(self.agent)
        self.write_template("default", self.docker_template(self.agent.rootfs))
        self.spool = os.path.join(self.agent.root, "spool")

    def hook(self, name, job=7, node="n1", comment=None, uid=0, gid=0, user="root", conf=None):
        env = {"SLURM_JOB_ID": str(job), "SLURMD_NODENAME": node, "SLURM_JOB_UID": str(uid),
               "SLURM_JOB_GID": str(gid), "SLURM_JOB_USER": user,
               "SANDBOX_AGENT_SLURM_CONF": conf or self.hook_conf}
        if comment is not None:
            env["SLURM_JOB_COMMENT"] = comment
        return subprocess.run([os.path.join(SCRIPTS, name)], env=env, capture_output=True, text=True, timeout=120)

    def spool_files(self, sub):
        """The files of a spool directory, without the dot files writers stage theirs in."""
        return sorted(n for n in os.listdir(os.path.join(self.spool, sub)) if not n.startswith("."))

    def test_prolog_ready_taskprolog_exports_epilog_stops(self):
        r = self.hook("prolog", uid=65534, gid=65534, user="nobody")
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "", ""))
        s = self.agent.status("slurm-7-n1")
        self.assertEqual(s["state"], "ready")
        self.assertEqual(s["labels"], {"slurm.job": "7", "slurm.user": "nobody", "slurm.node": "n1"})
        self.assertEqual(os.stat(os.path.dirname(s["docker_socket"])).st_uid, 65534)

        r = self.hook("taskprolog")
        self.assertEqual((r.returncode, r.stdout), (0, f"export DOCKER_HOST=unix://{s['docker_socket']}\n"))

        r = self.hook("epilog")
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertEqual(self.agent.status("slurm-7-n1")["state"], "stopped")  # --wait: stopped on return
        self.assertEqual(self.hook("taskprolog").stdout, "")  # nothing to export any more
        self.assertEqual(self.hook("epilog").returncode, 0)  # again: already stopped
        self.assertEqual(self.hook("epilog", job=8).returncode, 0)  # never had one

        # A requeued job runs its prolog again on the same node: same names, a fresh sandbox.
        r = self.hook("prolog")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.agent.status("slurm-7-n1")["state"], "ready")
        self.assertEqual(self.hook("epilog").returncode, 0)

    def test_prolog_of_a_job_whose_sandbox_still_runs_here_gives_up(self):
        self.assertEqual(self.hook("prolog").returncode, 0)
        self.write_hook_conf(self.agent, prolog_timeout=1)
        r = self.hook("prolog")  # the same job on the same node again, its sandbox not stopped
        self.assertEqual(r.returncode, 1)
        self.assertIn("sandbox prolog: job 7: the agent still processes an earlier request for this job here "
                      f"({self.spool}/cur/slurm-7.n1.json)", r.stderr)
        self.assertEqual(self.agent.status("slurm-7-n1")["state"], "ready")  # left alone
        self.assertEqual(self.hook("epilog").returncode, 0)

    def test_two_nodes_of_one_host_share_the_spool(self):
        procs = [subprocess.Popen([os.path.join(SCRIPTS, "prolog")], env={
            "SLURM_JOB_ID": "9", "SLURMD_NODENAME": node, "SLURM_JOB_UID": "0", "SLURM_JOB_GID": "0",
            "SLURM_JOB_USER": "root", "SANDBOX_AGENT_SLURM_CONF": self.hook_conf}) for node in ("n1", "n2")]
        self.assertEqual([p.wait(60) for p in procs], [0, 0])
        self.assertEqual(self.spool_files("status"), ["slurm-9.n1.json", "slurm-9.n2.json"])
        for node in ("n1", "n2"):
            self.assertEqual(self.hook("epilog", job=9, node=node).returncode, 0)

    def test_failed_sandbox_reports_reason_and_log_tail(self):
        self.write_template("failing", self.docker_template(self.agent.rootfs, env=["FAKE_RUNSC=create=fail"]))
        r = self.hook("prolog", comment="priority=high sandbox=failing")
        self.assertEqual(r.returncode, 1)
        self.assertIn("sandbox prolog: job 7: sandbox slurm-7-n1 (template failing) failed: runsc_create_failed", r.stderr)
        self.assertIn("  | ", r.stderr)  # the log tail, one line each
        self.assertEqual(self.hook("epilog").returncode, 0)  # failed: gone already

    def test_rejected_request_reports_the_agents_error(self):
        self.write_template("broken", self.docker_template(self.agent.rootfs, resources={"cpus": 5000}))
        r = self.hook("prolog", comment="sandbox=broken")
        self.assertEqual(r.returncode, 1)
        self.assertIn("sandbox prolog: job 7: the agent rejected the request from template broken: "
                      "invalid_request /resources/cpus: ", r.stderr)
        self.assertEqual(self.spool_files("rejected"), ["slurm-7.n1.error.json", "slurm-7.n1.json"])
        # Run again (a requeue): the old rejection is not mistaken for the new one, nor in the way.
        self.write_template("broken", self.docker_template(self.agent.rootfs, colour="blue"))
        r = self.hook("prolog", comment="sandbox=broken")
        self.assertIn("invalid_request /colour: unknown field", r.stderr)
        self.assertEqual(self.spool_files("rejected"), ["slurm-7.n1.error.json", "slurm-7.n1.json"])
        self.assertEqual(self.hook("epilog").returncode, 0)  # the agent never had it

    def test_template_names_are_names_in_the_templates_directory(self):
        for comment, message in [
            ("sandbox=../templates/default", "'../templates/default': not a template name"),
            ("sandbox=/etc/passwd", "'/etc/passwd': not a template name"),
            ("sandbox=absent", f"there is no {self.templates}/absent.json"),
        ]:
            r = self.hook("prolog", comment=comment)
            self.assertEqual(r.returncode, 1, comment)
            self.assertIn(message, r.stderr)
        self.write_template("noid", self.docker_template(self.agent.rootfs).replace("@ID@", "fixed"))
        self.assertIn('noid.json does not say "id": "@ID@": the epilog could not stop the sandbox',
                      self.hook("prolog", comment="sandbox=noid").stderr)
        self.write_template("typo", self.docker_template(self.agent.rootfs).replace("@NODE@", "@NOD@"))
        self.assertIn("unknown placeholder @NOD@", self.hook("prolog", comment="sandbox=typo").stderr)
        self.assertEqual(self.spool_files("new") + self.spool_files("status"), [])
        self.assertEqual(os.listdir(os.path.join(self.spool, "tmp")), [])  # nothing staged left behind

    def test_agent_down_prolog_times_out_and_takes_its_request_back(self):
        self.write_hook_conf(self.agent, prolog_timeout=1)
        self.agent.stop()
        start = time.monotonic()
        r = self.hook("prolog")
        self.assertLess(time.monotonic() - start, 5)
        self.assertEqual(r.returncode, 1)
        self.assertIn("the agent did not take the request within 1s", r.stderr)
        self.assertEqual(self.spool_files("new"), [])
        self.assertEqual(self.hook("epilog").returncode, 0)  # nothing ever ran

    def test_epilog_fails_only_for_a_sandbox_that_may_still_run(self):
        self.assertEqual(self.hook("prolog").returncode, 0)
        self.agent.kill()  # the sandbox keeps running; the status file says ready
        r = self.hook("epilog")
        self.assertEqual(r.returncode, 1)
        # sandboxctl's own words: "cannot connect to …" (or "the agent closed the connection")
        self.assertIn("sandbox epilog: job 7: cannot stop sandbox slurm-7-n1 (last state ready): sandboxctl: ", r.stderr)
        self.agent.start()  # adopts it; now the epilog can stop it
        self.assertEqual(self.hook("epilog").returncode, 0)
        self.assertEqual(self.agent.status("slurm-7-n1")["state"], "stopped")

    def test_config_errors_name_the_line(self):
        bad = os.path.join(self.tmp, "bad.conf")
        with open(bad, "w") as f:
            f.write("# comment\nspool = /x\nprolog_timeout = soon\n")
        r = self.hook("prolog", conf=bad)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"config {bad}:3: prolog_timeout must be a positive integer", r.stderr)
        with open(bad, "w") as f:
            f.write("spool=/x\nrunsc = /usr/bin/runsc\n")
        self.assertIn(f"config {bad}:2: unknown key 'runsc'", self.hook("epilog", conf=bad).stderr)
        self.assertIn("no such file", self.hook("taskprolog", conf=bad + ".missing").stderr)


if __name__ == "__main__":
    unittest.main()
