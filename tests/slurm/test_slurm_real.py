"""Slurm with the real runsc and dockerd: a batch job of an unprivileged user gets a gVisor
sandbox with Docker inside, runs `docker info` and a container in it (current gVisor), and
nobody else may use its socket."""
import os
import subprocess
import sys
import unittest

from slurm_harness import HERE, NOBODY, SlurmTestCase, connect_as, read, wait_for

sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
from test_real_runsc import CURRENT, RUNSC, busybox_image_tar, make_skeleton, mounts_under, runsc_list  # noqa: E402


class SlurmRealRuntimeTest(SlurmTestCase):
    prolog_timeout = 120

    def setUp(self):
        super().setUp()
        self.agent = self.start_agent({"runsc": {"path": RUNSC, "timeout_ms": 60000},
                                       "allowed_host_prefixes": ["ROOT/images", "/usr", "/etc"]}, runsc=RUNSC)
        make_skeleton(self.agent.rootfs)
        self.write_hook_conf(self.agent)
        # The skeleton root file system with the host's /usr and /etc read-only (dockerd is there).
        self.write_template("default", self.docker_template(
            self.agent.rootfs,
            mounts=[{"source": "/usr", "destination": "/usr", "readonly": True},
                    {"source": "/etc", "destination": "/etc", "readonly": True}]))

    def stop_runtime(self):
        # Whatever a failed test left running in runsc goes before the agent does.
        runsc_root = os.path.join(self.agent.root, "runsc")
        for c in runsc_list(runsc_root):
            subprocess.run([RUNSC, "--root", runsc_root, "kill", c["id"], "KILL"], capture_output=True, timeout=30)
        for c in runsc_list(runsc_root):
            subprocess.run([RUNSC, "--root", runsc_root, "delete", "--force", c["id"]], capture_output=True,
                           timeout=60)
        for _ in range(64):  # runsc's pinned gofer netns (the agent releases it only on a clean stop)
            if subprocess.run(["umount", "-l", os.path.join(runsc_root, "null-netns")], capture_output=True).returncode:
                break

    def test_batch_job_of_an_unprivileged_user_runs_docker_in_its_sandbox(self):
        c = self.start_cluster(["n1"])
        jobs = self.job_dir()
        busybox_image_tar(f"{jobs}/bb.tar")
        os.chmod(f"{jobs}/bb.tar", 0o644)
        script = f"""#!/bin/sh
export DOCKER_CONFIG={jobs}/.docker
echo "$DOCKER_HOST" > {jobs}/host
/usr/bin/docker info > {jobs}/info 2>&1
echo $? > {jobs}/info.rc
/usr/bin/docker import {jobs}/bb.tar bb > /dev/null 2>&1 &&
  /usr/bin/docker run --rm bb echo "container of job $SLURM_JOB_ID" > {jobs}/run 2>&1
echo $? > {jobs}/run.rc
i=0; while [ ! -e {jobs}/go ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
"""
        job = c.sbatch("--uid=nobody", "--gid=nogroup", "--chdir", jobs, "-o", os.path.join(jobs, "%j.out"),
                       script=script)
        sid = f"slurm-{job}-n1"
        wait_for(lambda: os.path.exists(f"{jobs}/info.rc") or c.ended(job), timeout=180, interval=0.2,
                 what="docker info in the job")
        self.assertEqual(read(f"{jobs}/info.rc").strip(), "0", read(f"{jobs}/info"))
        self.assertIn("Storage Driver: overlay2" if CURRENT else "Storage Driver: vfs", read(f"{jobs}/info"))
        wait_for(lambda: os.path.exists(f"{jobs}/run.rc") or c.ended(job), timeout=120, interval=0.2,
                 what="docker run in the job")
        if CURRENT:  # the job's own container, inside its gVisor sandbox
            self.assertEqual(read(f"{jobs}/run.rc").strip(), "0", read(f"{jobs}/run"))
            self.assertEqual(read(f"{jobs}/run").strip(), f"container of job {job}")

        # While the job runs: its socket is the job user's, and no one else's.
        s = self.agent.status(sid)
        self.assertEqual(s["state"], "ready", s)
        sock = s["docker_socket"]
        self.assertEqual(read(f"{jobs}/host").strip(), f"unix://{sock}")
        st = os.stat(os.path.dirname(sock))
        self.assertEqual((st.st_uid, st.st_mode & 0o777), (NOBODY, 0o700))
        st = os.stat(sock)
        self.assertEqual((st.st_uid, st.st_mode & 0o777), (NOBODY, 0o660))
        self.assertEqual(connect_as(NOBODY, NOBODY, sock), "ok")
        self.assertEqual(connect_as(65533, 65533, sock), "PermissionError 13")

        open(f"{jobs}/go", "w").close()
        self.assertEqual(c.wait_done(job, timeout=60)["JobState"], "COMPLETED")
        s = self.agent.wait_state(sid, ("stopped", "failed"), timeout=150)  # the epilog's stop
        self.assertEqual((s["state"], s["reason"]), ("stopped", "stop_requested"), s)
        self.assertEqual(runsc_list(os.path.join(self.agent.root, "runsc")), [])
        self.assertFalse(os.path.exists(os.path.dirname(sock)))
        self.assertEqual(mounts_under(self.agent.root, except_runsc_pin=True), [])



if __name__ == "__main__":
    unittest.main()
