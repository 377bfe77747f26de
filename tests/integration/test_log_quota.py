"""The per-sandbox log quota (logs.max_bytes_per_sandbox): while a sandbox lives its logs/ID is
a tmpfs of that size, so whatever it writes there (through /.sandbox-agent/logs, or as its
stdout into runsc.log) stops at the quota and never reaches the host's disk; at tear-down the
regular files are kept on the disk and the tmpfs goes, also across agent restarts. The fake
runtime does not run the sandbox's processes, so the test writes into logs/ID itself, as the
sandbox's writes land there (tests/e2e/test_real_runsc.py has the real sandbox doing it)."""
import errno
import os
import signal
import unittest

from harness import AgentTestCase, mounts_under, wait_for

QUOTA = 1 << 20


def is_mount(path):
    return path in mounts_under(path)


def fill(path, chunk=64 << 10):
    """Writes until the file system refuses; returns (bytes written, the errno that stopped it)."""
    written = 0
    with open(path, "ab", buffering=0) as f:
        try:
            for _ in range(4096):
                written += f.write(b"x" * chunk)
        except OSError as e:
            return written, e.errno
    return written, None


class LogQuotaTest(AgentTestCase):
    config = {"logs": {"max_bytes_per_sandbox": QUOTA}}

    def logs(self, a, sid):
        return os.path.join(a.root, "logs", sid)

    def stop(self, a, sid):
        self.assertTrue(a.call({"op": "stop", "id": sid})["ok"])
        return a.wait_state(sid, "stopped")

    def test_a_sandbox_cannot_write_past_its_quota_and_its_logs_are_kept(self):
        a = self.start_agent()
        self.assertTrue(a.launch(a.request("noisy"), wait=True)["ok"])
        logs = self.logs(a, "noisy")
        self.assertTrue(is_mount(logs), "logs/ID is not a mount while the sandbox lives")
        st = os.statvfs(logs)
        self.assertLessEqual(st.f_blocks * st.f_frsize, QUOTA)
        # what a sandbox would do: plant a link, make a directory, flood a file
        os.symlink("/etc/shadow", os.path.join(logs, "escape"))
        os.mkdir(os.path.join(logs, "junk"))
        with open(os.path.join(logs, "junk", "more"), "wb") as f:
            f.write(b"y" * 100)
        written, err = fill(os.path.join(logs, "dockerd.log"))
        self.assertEqual(err, errno.ENOSPC)
        self.assertLess(written, QUOTA)
        # the agent's own writes there are bounded too, and the agent is fine
        self.assertTrue(a.answers())

        self.stop(a, "noisy")
        wait_for(lambda: not is_mount(logs), timeout=10, what="the quota tmpfs to go")
        kept = sorted(os.listdir(logs))
        self.assertIn("dockerd.log", kept)
        self.assertIn("runsc.log", kept)
        self.assertNotIn("escape", kept)  # links are not kept
        self.assertNotIn("junk", kept)    # nor directories
        self.assertEqual(os.path.getsize(os.path.join(logs, "dockerd.log")), written)
        with open(os.path.join(logs, "runsc.log")) as f:
            self.assertIn(" run --detach --bundle ", f.read())
        total = sum(os.path.getsize(os.path.join(logs, n)) for n in kept)
        self.assertLessEqual(total, QUOTA)

    def test_logs_survive_a_restart_whether_the_sandbox_lives_on_or_ended_meanwhile(self):
        a = self.start_agent()
        for sid in ("lives", "ends"):
            self.assertTrue(a.launch(a.request(sid), wait=True)["ok"])
            with open(os.path.join(self.logs(a, sid), "init.log"), "a") as f:
                f.write(f"{sid} was here\n")
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        # the agent is gone: the quota mounts stay (a sandbox may live on)
        self.assertTrue(is_mount(self.logs(a, "lives")))
        a.start()
        self.assertEqual(a.wait_state("lives", "ready")["state"], "ready")
        self.assertTrue(is_mount(self.logs(a, "lives")))
        self.stop(a, "lives")
        # "ends": its sandbox goes while the agent is down (its fake daemon killed, then the agent)
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        a.kill_fake_daemon()
        a.start()
        self.assertEqual(a.wait_state("ends", "failed")["reason"], "agent_restart")
        for sid in ("lives", "ends"):
            logs = self.logs(a, sid)
            wait_for(lambda: not is_mount(logs), timeout=10, what=f"{sid}'s quota tmpfs to go")
            with open(os.path.join(logs, "init.log")) as f:
                self.assertIn(f"{sid} was here", f.read())

    def test_no_quota_when_it_is_turned_off(self):
        a = self.start_agent({"logs": {"max_bytes_per_sandbox": 0}})
        self.assertTrue(a.launch(a.request("plain"), wait=True)["ok"])
        self.assertFalse(is_mount(self.logs(a, "plain")))
        self.stop(a, "plain")
        self.assertTrue(os.path.exists(os.path.join(self.logs(a, "plain"), "runsc.log")))


if __name__ == "__main__":
    unittest.main()
