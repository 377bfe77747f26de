"""The `logs` op: the agent hands the client a read-only descriptor of a sandbox's log
(SCM_RIGHTS), never a path it follows; `sandboxctl logs [-f]` prints and follows it."""
import json
import os
import socket
import subprocess
import time
import unittest

from harness import SANDBOXCTL, AgentTestCase, sandboxctl, wait_for


def logs_call(agent, msg):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(agent.socket_path)
    s.sendall((json.dumps(msg) + "\n").encode())
    data, fds, _, _ = socket.recv_fds(s, 65536, 4)
    s.close()
    return json.loads(data.split(b"\n")[0]), fds


class LogsTest(AgentTestCase):
    def test_the_reply_carries_a_read_only_descriptor_of_the_log(self):
        a = self.start_agent()
        a.launch(a.request("d", docker={"enabled": True}), wait=True)
        reply, fds = logs_call(a, {"op": "logs", "id": "d", "tag": 1})
        self.assertTrue(reply["ok"], reply)
        self.assertEqual((reply["id"], reply["source"], reply["tag"]), ("d", "main", 1))
        self.assertEqual(reply["path"], os.path.join(a.root, "logs", "d", "runsc.log"))
        self.assertEqual(len(fds), 1)
        with os.fdopen(fds[0], "rb") as f:
            self.assertIn(b" run --detach --bundle ", f.read())
            with self.assertRaises(OSError):
                os.write(f.fileno(), b"x")
        reply, fds = logs_call(a, {"op": "logs", "id": "d", "source": "dockerd"})
        self.assertTrue(reply["ok"], reply)
        self.assertTrue(reply["path"].endswith("/dockerd.log"))
        for fd in fds:
            os.close(fd)

    def test_a_link_planted_in_the_logs_directory_is_not_followed(self):
        a = self.start_agent()
        a.launch(a.request("evil", docker={"enabled": True}), wait=True)
        log = os.path.join(a.root, "logs", "evil", "dockerd.log")
        if os.path.exists(log):
            os.unlink(log)
        os.symlink("/etc/shadow", log)  # what a sandbox could do through its logs mount
        reply, fds = logs_call(a, {"op": "logs", "id": "evil", "source": "dockerd"})
        self.assertFalse(reply["ok"], reply)
        self.assertEqual(fds, [])
        self.assertEqual(reply["error"]["field"], "/source")

    def test_errors_name_the_field(self):
        a = self.start_agent()
        a.launch(a.request("p"), wait=True)
        for msg, code, field in (({"op": "logs", "id": "nope"}, "not_found", "/id"),
                                 ({"op": "logs", "id": "p", "source": "dockerd"}, "invalid_request", "/source"),
                                 ({"op": "logs", "id": "p", "source": "kernel"}, "invalid_request", "/source"),
                                 ({"op": "logs"}, "invalid_request", "/id")):
            reply, fds = logs_call(a, msg)
            self.assertEqual((reply["error"]["code"], reply["error"]["field"]), (code, field), msg)
            self.assertEqual(fds, [])

    def test_sandboxctl_logs_and_follow(self):
        a = self.start_agent()
        a.launch(a.request("f"), wait=True)
        log = os.path.join(a.root, "logs", "f", "runsc.log")
        r = sandboxctl(a, "logs", "f")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(" run --detach --bundle ", r.stdout)
        follower = subprocess.Popen([SANDBOXCTL, "--socket", a.socket_path, "logs", "-f", "f"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(0.5)
            with open(log, "a") as f:  # what the sandbox prints meanwhile
                f.write("printed-later\n")
            time.sleep(0.5)
            self.assertIsNone(follower.poll(), "logs -f ended while the sandbox runs")
            a.call({"op": "stop", "id": "f"})
            out, err = follower.communicate(timeout=20)  # it ends once the sandbox has
        finally:
            if follower.poll() is None:
                follower.kill()
        self.assertEqual(follower.returncode, 0, err)
        self.assertIn("printed-later", out)
        self.assertEqual(sandboxctl(a, "logs", "nope").returncode, 1)

    def test_sandboxctl_logs_follow_goes_on_across_a_rotation(self):
        # sandbox-init renames dockerd.log to dockerd.log.1 past 8 MiB and starts a new one:
        # a follower holding the old file would go silent for good.
        a = self.start_agent()
        a.launch(a.request("r", docker={"enabled": True}), wait=True)
        log = os.path.join(a.root, "logs", "r", "dockerd.log")
        with open(log, "a") as f:
            f.write("before-the-rotation\n")
        follower = subprocess.Popen([SANDBOXCTL, "--socket", a.socket_path, "logs", "-f", "--source", "dockerd", "r"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(0.5)
            with open(log, "a") as f:
                f.write("last-line-of-the-old-file\n")
            os.rename(log, log + ".1")  # as sandbox-init rotates
            with open(log, "w") as f:
                f.write("first-line-of-the-new-file\n")
            time.sleep(2.5)  # the follower looks for a rotation once a second while idle
            with open(log, "a") as f:
                f.write("later-in-the-new-file\n")
            time.sleep(1.5)
            self.assertIsNone(follower.poll(), "logs -f ended while the sandbox runs")
            a.call({"op": "stop", "id": "r"})
            out, err = follower.communicate(timeout=20)
        finally:
            if follower.poll() is None:
                follower.kill()
        self.assertEqual(follower.returncode, 0, err)
        lines = [l for l in out.splitlines() if "the-" in l or "-the-" in l or "later-" in l]
        self.assertEqual(lines, ["before-the-rotation", "last-line-of-the-old-file", "first-line-of-the-new-file",
                                 "later-in-the-new-file"], out)


if __name__ == "__main__":
    unittest.main()
