"""scripts/install-runsc: the pinned runsc is built once, a second run does nothing (and needs
no network), and a machine without Go or without the module proxy gets a clear message."""
import os
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "scripts", "install-runsc")
INSTALLED = "/usr/local/lib/sandbox-agent/runsc"


def pinned_version():
    with open(os.path.join(HERE, "..", "..", "scripts", "runsc", "go.mod")) as f:
        for line in f:
            words = line.split()
            if len(words) >= 2 and words[0] == "gvisor.dev/gvisor":
                return words[1]
    raise AssertionError("no gvisor.dev/gvisor in scripts/runsc/go.mod")


def run(env_extra=None, *args):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(["sh", SCRIPT, *args], capture_output=True, text=True, timeout=300, env=env)


class InstallRunscTest(unittest.TestCase):
    def test_the_pinned_runsc_is_installed_and_says_which_it_is(self):
        self.assertEqual(run({}, "--check").returncode, 0)
        out = subprocess.run([INSTALLED, "--version"], capture_output=True, text=True).stdout
        self.assertIn(f"runsc version go-{pinned_version()}", out)
        with open(INSTALLED + ".pin") as f:
            self.assertEqual(f.read().strip(), pinned_version())
        # Debian's stays where it was, and the built one does not shadow it on PATH
        self.assertTrue(os.access("/usr/bin/runsc", os.X_OK))

    def test_a_second_run_does_nothing_and_needs_no_network(self):
        before = os.stat(INSTALLED).st_mtime_ns
        r = run({"GOPROXY": "off", "GOFLAGS": "-mod=mod"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout + r.stderr, "")
        self.assertEqual(os.stat(INSTALLED).st_mtime_ns, before)

    def test_without_go_it_says_so(self):
        with tempfile.TemporaryDirectory() as d:
            r = run({"SANDBOX_AGENT_RUNSC_DIR": d, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
            self.assertEqual(r.returncode, 1)
            self.assertIn("Go is not installed", r.stderr)
            self.assertEqual(os.listdir(d), [])

    def test_without_the_module_proxy_it_says_so(self):
        with tempfile.TemporaryDirectory() as d:
            env = {"SANDBOX_AGENT_RUNSC_DIR": os.path.join(d, "out"), "GOPROXY": "off",
                   "GOMODCACHE": os.path.join(d, "modcache"), "GOCACHE": os.path.join(d, "cache")}
            r = run(env)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn("is the Go module proxy reachable?", r.stderr)
            self.assertFalse(os.path.exists(os.path.join(d, "out", "runsc")))
            subprocess.run(["chmod", "-R", "u+w", d])  # the module cache is read-only


if __name__ == "__main__":
    unittest.main()
