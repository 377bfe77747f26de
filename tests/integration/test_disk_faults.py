"""A failing disk under the agent (fake runtime): its root on a small tmpfs this test mounts,
filled and freed; `state/` made read-only and back (a read-only bind mount: root ignores mode
bits). Nothing may be lost: records and statuses end up saying what the sandboxes are, spool
requests wait in cur/ and go through once the disk recovers. Every mount is undone."""
import json
import os
import subprocess
import time
import unittest

from harness import AgentProcess, AgentTestCase, wait_for


def fill(path):
    """Writes zeros into path until the file system has not one byte left; returns the file."""
    filler = os.path.join(path, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 16, 4096, 512, 1):  # ever smaller: no room is left for a small record
            chunk = b"\0" * size
            while True:
                try:
                    if os.write(fd, chunk) < size:
                        break
                except OSError:
                    break
    finally:
        os.close(fd)
    return filler


class DiskFaultTest(AgentTestCase):
    def small_root(self, size="8m"):
        root = os.path.join(self.tmp, "small")
        os.makedirs(root)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "sa-test", root], check=True)
        self.addCleanup(lambda: subprocess.run(["umount", "-l", root], capture_output=True))
        return root

    def agent_on(self, root):
        """An agent whose root is `root`, logging outside it (its log must survive the fill)."""
        a = AgentProcess(root, dict(self.config))
        a.log_path = os.path.join(self.tmp, "agent-on-small-root.log")
        self.agents.append(a)
        return a.start()

    def read_only(self, path):
        subprocess.run(["mount", "--bind", path, path], check=True)
        subprocess.run(["mount", "-o", "remount,ro,bind", path], check=True)
        undo = lambda: subprocess.run(["umount", "-l", path], capture_output=True)  # noqa: E731
        self.addCleanup(undo)
        return undo

    def record(self, a, sid):
        with open(os.path.join(a.root, "state", f"{sid}.json")) as f:
            return json.load(f)

    def test_a_record_refused_by_a_full_disk_is_written_once_it_has_room(self):
        root = self.small_root()
        a = self.agent_on(root)
        a.launch(a.request("late", docker={"enabled": True}, env=["FAKE_RUNSC=dockerd_delay_ms=1500"]))
        wait_for(lambda: a.status("late")["state"] == "probing", timeout=10, what="probing")
        filler = fill(root)
        wait_for(lambda: a.status("late")["state"] == "ready", timeout=10, what="ready")
        time.sleep(0.3)
        # the disk said no to `ready`; the last record on disk is the intent, `accepted`, which
        # said runsc may hold it (creating, starting and probing have none of their own)
        self.assertEqual((self.record(a, "late")["state"], self.record(a, "late")["runsc_created"]), ("accepted", True))
        self.assertGreaterEqual(a.call({"op": "stats"})["stats"]["records_unwritten"], 1)
        os.unlink(filler)
        wait_for(lambda: self.record(a, "late")["state"] == "ready", timeout=15, what="the record to catch up")
        self.assertEqual(a.call({"op": "stats"})["stats"]["records_unwritten"], 0)
        self.assertIn("state record written (state ready)", a.log())

    def test_spool_drops_wait_out_a_full_disk(self):
        root = self.small_root()
        a = self.agent_on(root)
        spool = os.path.join(root, "spool")
        for i in range(3):  # staged before the disk fills, as a batch system would have
            with open(os.path.join(spool, "tmp", f"full-{i}.json"), "w") as f:
                json.dump(a.request(f"full-{i}"), f)
        filler = fill(root)
        for i in range(3):
            os.rename(os.path.join(spool, "tmp", f"full-{i}.json"), os.path.join(spool, "new", f"full-{i}.json"))
        # each claimed (a rename needs no room) and waiting, none rejected
        wait_for(lambda: a.log().count("waits in cur/ until the host recovers") == 3, timeout=10,
                 what="all three waiting in cur/")
        self.assertEqual(len(os.listdir(os.path.join(spool, "cur"))), 3)
        self.assertEqual(sorted(os.listdir(os.path.join(spool, "rejected"))), [])
        os.unlink(filler)
        for i in range(3):
            wait_for(lambda: (a.status(f"full-{i}") or {}).get("state") == "ready", timeout=20, what=f"full-{i}")
            wait_for(lambda: os.path.exists(os.path.join(spool, "status", f"full-{i}.json")), timeout=20,
                     what=f"full-{i}'s status")
        self.assertEqual(sorted(os.listdir(os.path.join(spool, "rejected"))), [])

    def test_an_invalid_drop_on_a_full_disk_is_rejected_once_there_is_room(self):
        root = self.small_root()
        a = self.agent_on(root)
        spool = os.path.join(root, "spool")
        with open(os.path.join(spool, "tmp", "bad.json"), "w") as f:
            f.write('{"rootfs": 1}')
        filler = fill(root)
        os.rename(os.path.join(spool, "tmp", "bad.json"), os.path.join(spool, "new", "bad.json"))
        wait_for(lambda: "cannot move" in a.log() and "retrying" in a.log(), timeout=10, what="the move refused")
        self.assertEqual(os.listdir(os.path.join(spool, "cur")), ["bad.json"])
        os.unlink(filler)
        err = os.path.join(spool, "rejected", "bad.error.json")
        wait_for(lambda: os.path.exists(err) and os.path.getsize(err) > 0, timeout=20, what="bad.json rejected")
        with open(err) as f:
            self.assertEqual(json.load(f)["error"]["field"], "/rootfs")
        self.assertEqual(os.listdir(os.path.join(spool, "cur")), [])

    def test_a_read_only_state_dir_delays_spool_requests_instead_of_rejecting_them(self):
        a = self.start_agent()
        undo = self.read_only(os.path.join(a.root, "state"))
        spool = os.path.join(a.root, "spool")
        with open(os.path.join(spool, "tmp", "ro.json"), "w") as f:
            json.dump(a.request("ro"), f)
        os.rename(os.path.join(spool, "tmp", "ro.json"), os.path.join(spool, "new", "ro.json"))
        wait_for(lambda: "waits in cur/ until the host recovers" in a.log(), timeout=10, what="the spool to wait")
        # the socket answers at once, with the reason, and loses nothing: the client has it
        r = a.launch(a.request("ro-socket"))
        self.assertEqual(r["error"]["code"], "internal", r)
        self.assertIn("Read-only file system", r["error"]["message"])
        time.sleep(0.5)
        self.assertEqual(os.listdir(os.path.join(spool, "rejected")), [])
        undo()
        wait_for(lambda: (a.status("ro") or {}).get("state") == "ready", timeout=20, what="ro ready")
        self.assertTrue(a.launch(a.request("ro-socket"), wait=True)["state"] == "ready")


if __name__ == "__main__":
    unittest.main()
