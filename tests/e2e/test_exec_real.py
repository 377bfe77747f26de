"""End-to-end exec and cp on current gVisor: the real agent, runsc exec, sandbox-init's copy.
The output goes from the process to the client's descriptors; the agent's memory must not grow
with it, and nothing a client, a timeout or a stop leaves behind may keep running."""
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
from test_real_runsc import CURRENT, RealRunscCase, busybox_image_tar, docker  # noqa: E402
from harness import SANDBOXCTL, sandboxctl, wait_for  # noqa: E402

import sandbox_agent as sa  # noqa: E402


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@unittest.skipUnless(CURRENT, "exec and cp are checked on current gVisor")
class ExecRealTest(RealRunscCase):
    def plain(self, a, sid="x"):
        reply = a.launch(self.request(a, sid, args=["/bin/sleep", "infinity"]), wait=True)
        self.assertEqual(reply["state"], "ready", reply)
        return sa.Agent(root=a.root).get(sid)

    def inside(self, sb, pattern):
        """Processes in the sandbox whose command line has `pattern` (ps runs in there)."""
        r = sb.exec(["/usr/bin/ps", "-eo", "args"])
        return [l for l in r.stdout.decode().splitlines() if pattern in l and "ps -eo" not in l]

    def test_output_codes_stdin_files_and_errors(self):
        a = self.agent()
        sb = self.plain(a)
        r = sb.exec(["/bin/sh", "-c", "cat; echo oops >&2; exit 3"], input=b"through stdin\n")
        self.assertEqual((r.exit_code, r.stdout, r.stderr), (3, b"through stdin\n", b"oops\n"))
        r = sb.exec("id -u; pwd; echo $X", env={"X": "set"}, cwd="/tmp", user=(65534, 65534))
        self.assertEqual(r.stdout, b"65534\n/tmp\nset\n")
        # > file: gVisor writes a regular file at its own offset, sandboxctl relays it.
        out = os.path.join(self.tmp, "out.txt")
        with open(out, "w") as f:
            subprocess.run(["/bin/sh", "-c", f"echo before; {SANDBOXCTL} --socket {a.socket_path} exec x -- "
                            f"/bin/sh -c 'echo inside; echo err >&2'; echo after"],
                           stdout=f, stderr=subprocess.STDOUT, timeout=60)
        with open(out) as f:
            self.assertEqual(f.read(), "before\ninside\nerr\nafter\n")
        r = sandboxctl(a, "exec", "x", "--", "/no/such/program")
        self.assertEqual(r.returncode, 127, r.stderr)
        self.assertIn("no such file", r.stderr)
        r = sandboxctl(a, "exec", "-i", "x", "--", "/bin/sh", "-c", "tr a-z A-Z; exit 9", input="shout\n")
        self.assertEqual((r.returncode, r.stdout), (9, "SHOUT\n"))

    def test_100_mb_of_output_do_not_grow_the_agent(self):
        a = self.agent()
        sb = self.plain(a)
        sb.exec("true")  # the first exec's one-off costs, before the baseline
        before = rss_kib(a.proc.pid)
        peak = before
        with sb.start_exec(["/bin/sh", "-c", "head -c 100000000 /dev/zero"], stdout=sa.PIPE) as p:
            total = 0
            t = time.monotonic()
            while True:
                chunk = p.stdout.read(1 << 20)
                if not chunk:
                    break
                total += len(chunk)
                peak = max(peak, rss_kib(a.proc.pid))
            self.assertEqual(p.wait(timeout=60), 0)
            took = time.monotonic() - t
        after = rss_kib(a.proc.pid)
        print(f"\n100 MB exec: {total} bytes in {took:.2f} s ({total / took / 1e6:.0f} MB/s); agent RSS "
              f"{before} KiB before, {peak} KiB peak, {after} KiB after", file=sys.stderr)
        self.assertEqual(total, 100_000_000)
        self.assertLess(peak - before, 4096, "the agent's RSS grew with the stream")

    def test_a_terminal(self):
        a = self.agent()
        sb = self.plain(a)
        with sb.start_exec(["/bin/sh", "-c", "test -t 0 && test -t 1 && echo tty; stty size"], tty=True) as p:
            self.assertEqual(p.wait(timeout=30), 0)
            self.assertIn(b"tty", p.pty.read(256))
        r = subprocess.run(["script", "-qec", f"{SANDBOXCTL} --socket {a.socket_path} exec -t x -- "
                            "/bin/sh -c 'test -t 0 && echo on-a-tty; exit 4'", "/dev/null"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn("on-a-tty", r.stdout)

    def test_a_client_killed_mid_exec_or_a_timeout_leaves_no_process(self):
        a = self.agent()
        sb = self.plain(a)
        client = subprocess.Popen([SANDBOXCTL, "--socket", a.socket_path, "exec", "x", "--", "/bin/sleep", "3100"])
        try:
            wait_for(lambda: self.inside(sb, "sleep 3100"), timeout=30, what="the exec to run")
            client.kill()
            client.wait()
            wait_for(lambda: not self.inside(sb, "sleep 3100"), timeout=15, what="the process to be killed")
        finally:
            client.kill()
            client.wait()
        t = time.monotonic()
        r = sb.exec(["/bin/sleep", "3101"], timeout=0.5)
        self.assertLess(time.monotonic() - t, 10)
        self.assertEqual((r.exit_code, r.reason), (137, "timeout"))
        self.assertEqual(self.inside(sb, "sleep 3101"), [])
        # A stop ends the rest; nothing is left on the host either (tearDown checks).
        p = sb.start_exec(["/bin/sleep", "3102"])
        sb.stop()
        self.assertEqual(p.wait(timeout=30), p.result.exit_code)
        self.assertEqual(p.result.reason, "sandbox_stopped")

    def test_cp_a_binary_file_both_ways(self):
        a = self.agent()
        sb = self.plain(a)
        blob = os.urandom(8 << 20) + bytes(range(256))
        src = os.path.join(self.tmp, "blob")
        with open(src, "wb") as f:
            f.write(blob)
        want = hashlib.sha256(blob).hexdigest()
        r = sandboxctl(a, "cp", src, "x:/tmp/blob")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sb.exec("sha256sum /tmp/blob").stdout.split()[0].decode(), want)
        back = os.path.join(self.tmp, "back")
        r = sandboxctl(a, "cp", "x:/tmp/blob", back)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(back, "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), want)
        self.assertEqual(sb.download("/tmp/blob"), blob)
        self.assertEqual(sb.upload(b"small", "/tmp/small", mode=0o600), 5)
        self.assertEqual(sb.exec("stat -c %a /tmp/small; cat /tmp/small").stdout, b"600\nsmall")
        with self.assertRaises(sa.AgentError) as e:
            sb.download("/tmp/none")
        self.assertEqual((e.exception.code, e.exception.field), ("not_found", "/path"))

    def test_docker_through_exec_and_cp(self):
        """What users do: put an image in, run a container, all through the agent."""
        a = self.agent()
        reply = a.launch(self.request(a, "d", docker={"enabled": True}), wait=True)
        self.assertEqual(reply["state"], "ready", reply)
        sb = sa.Agent(root=a.root).get("d")
        tar = os.path.join(self.tmp, "busybox.tar")
        busybox_image_tar(tar)
        self.assertGreater(sb.upload(tar, "/tmp/busybox.tar"), 0)
        r = sb.exec(["docker", "import", "/tmp/busybox.tar", "bb:1"], timeout=120)
        self.assertEqual(r.exit_code, 0, r.stderr)
        r = sb.exec(["docker", "run", "--rm", "bb:1", "/bin/echo", "from a container, through exec"], timeout=120)
        self.assertEqual(r.exit_code, 0, r.stderr)
        self.assertEqual(r.stdout, b"from a container, through exec\n")


if __name__ == "__main__":
    unittest.main()
