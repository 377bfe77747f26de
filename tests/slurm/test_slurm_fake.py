"""Slurm with the fake runtime (fast): one agent, one spool, serving the prologs of two slurmd
on this host; a bad template drains a node, which is resumed and runs a good job."""
import os
import time
import unittest

from slurm_harness import NOBODY, SlurmTestCase, connect_as, read, wait_for


class SlurmFakeRuntimeTest(SlurmTestCase):
    def setUp(self):
        super().setUp()
        self.agent = self.start_agent()
        self.write_hook_conf(self.agent)
        self.write_template("default", self.docker_template(self.agent.rootfs))

    def test_every_node_of_a_job_gets_its_docker_sandbox(self):
        c = self.start_cluster(["n1", "n2"])
        out = os.path.join(self.job_dir(), "ping-%j.out")
        # As the job user nobody: the TaskProlog's DOCKER_HOST names a socket it may use.
        job = c.sbatch("--uid=nobody", "--gid=nogroup", "-N2", "--chdir", self.job_dir(), "-o", out,
                       script="#!/bin/sh\nsrun -N2 --ntasks-per-node=1 sh -c "
                              "'echo \"$SLURMD_NODENAME $(curl -s --max-time 10 --unix-socket "
                              "${DOCKER_HOST#unix://} http://x/_ping) $(id -u)\"'\n")
        out = out.replace("%j", str(job))
        j = c.wait_done(job, timeout=60)
        self.assertEqual(j["JobState"], "COMPLETED", j)
        lines = sorted(read(out).split("\n"))
        self.assertEqual([line for line in lines if line], [f"n1 OK {NOBODY}", f"n2 OK {NOBODY}"])

        for node in ("n1", "n2"):
            sid = f"slurm-{job}-{node}"
            s = self.agent.wait_state(sid, "stopped", timeout=30)  # the epilog stopped it
            self.assertEqual(s["reason"], "stop_requested")
            self.assertEqual(s["labels"], {"slurm.job": str(job), "slurm.user": "nobody", "slurm.node": node})
            status = read(os.path.join(self.agent.root, "spool", "status", f"slurm-{job}.{node}.json"))
            self.assertIn('"state":"stopped"', status)
        self.assertEqual(c.node("n1")[0], "idle")
        self.assertEqual(c.node("n2")[0], "idle")

    def test_socket_belongs_to_the_job_user_only(self):
        c = self.start_cluster(["n1"])
        jobs = self.job_dir()
        job = c.sbatch("--uid=nobody", "--gid=nogroup", "--chdir", jobs, "-o", os.path.join(jobs, "%j.out"),
                       script=f"#!/bin/sh\necho \"$DOCKER_HOST\" > {jobs}/host\n"
                              f"i=0; while [ ! -e {jobs}/go ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n")
        host = wait_for(lambda: os.path.exists(f"{jobs}/host") and read(f"{jobs}/host").strip(), timeout=60,
                        what="the job to print DOCKER_HOST")
        sock = host.removeprefix("unix://")
        self.assertEqual(sock, os.path.join(self.agent.root, "sockets", f"slurm-{job}-n1", "docker.sock"))
        st = os.stat(os.path.dirname(sock))
        self.assertEqual((st.st_uid, st.st_mode & 0o777), (NOBODY, 0o700))
        self.assertEqual(connect_as(NOBODY, NOBODY, sock), "ok")
        self.assertEqual(connect_as(65533, 65533, sock), "PermissionError 13")
        open(f"{jobs}/go", "w").close()
        self.assertEqual(c.wait_done(job, timeout=60)["JobState"], "COMPLETED")
        self.agent.wait_state(f"slurm-{job}-n1", "stopped", timeout=30)

    def test_bad_template_drains_the_node_and_resume_brings_it_back(self):
        # An unknown field: the agent rejects the request and says which field.
        self.write_template("broken", self.docker_template(self.agent.rootfs, colour="blue"))
        c = self.start_cluster(["n1"])
        jobs = self.job_dir()
        bad = c.sbatch("--comment=sandbox=broken", "--chdir", jobs, "-o", os.path.join(jobs, "%j.out"),
                       script="#!/bin/sh\necho never\n")
        state, reason = c.wait_node("n1", "drain", timeout=60)
        self.assertEqual(reason, "Prolog error")
        log = wait_for(lambda: "rejected the request" in (text := c.slurmd_log("n1")) and text, timeout=10,
                       what="the prolog's message in the slurmd log")
        self.assertIn(f"sandbox prolog: job {bad}: the agent rejected the request from template broken: "
                      "invalid_request /colour: unknown field", log)
        j = c.wait_done(bad, timeout=30)
        self.assertEqual((j["JobState"], j["Reason"]), ("PENDING", "launch_failed_requeued_held"))
        self.assertTrue(self.agent.answers())  # the agent is still up
        self.assertEqual(self.agent.call({"op": "list"})["sandboxes"], [])
        self.assertFalse(os.path.exists(os.path.join(jobs, f"{bad}.out")))  # the job never ran

        c.cmd("scancel", str(bad))
        c.cmd("scontrol", "update", "nodename=n1", "state=resume")
        c.wait_node("n1", "idle", timeout=60)
        good = c.sbatch("--chdir", jobs, "-o", os.path.join(jobs, "%j.out"),
                        script="#!/bin/sh\ncurl -s --max-time 10 --unix-socket ${DOCKER_HOST#unix://} http://x/_ping\n")
        self.assertEqual(c.wait_done(good, timeout=90)["JobState"], "COMPLETED")
        self.assertEqual(read(os.path.join(jobs, f"{good}.out")), "OK")
        self.agent.wait_state(f"slurm-{good}-n1", "stopped", timeout=30)
        self.assertEqual(c.node("n1")[0], "idle")


if __name__ == "__main__":
    unittest.main()
