"""The daemon's command line: flags, configuration errors, --check-config, render."""
import json
import os
import subprocess
import unittest

from harness import FAKE_RUNSC, SANDBOXCTL, AGENT, SANDBOX_INIT, AgentTestCase


def run(*args, input=None):
    return subprocess.run([os.path.abspath(AGENT), *args], capture_output=True, text=True, input=input, timeout=30)


class CliTest(AgentTestCase):
    def write(self, name, obj):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(obj if isinstance(obj, str) else json.dumps(obj))
        return path

    def test_version_and_help(self):
        r = run("--version")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "sandbox-agent 0.1.0"))
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        for flag in ("--root", "--config", "--socket", "--spool", "--runsc", "--log-level", "--check-config", "render"):
            self.assertIn(flag, r.stdout)
        # sandboxctl has one too (docker, podman and runsc do), answered without an agent
        r = subprocess.run([os.path.abspath(SANDBOXCTL), "--socket", "/nonexistent.sock", "--version"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "sandboxctl 0.1.0"))

    def test_bad_flags_exit_2_with_a_reason(self):
        for args, text in ((["--frobnicate"], "unknown argument: --frobnicate"),
                           (["--root"], "--root needs a value"),
                           (["render"], "render needs a request file"),
                           (["--log-level", "loud", "--check-config"], "/log_level")):
            r = run(*args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(text, r.stderr)

    def test_bad_config_names_file_field_and_reason(self):
        cases = [
            ('{"runsc": {"timeout_ms": "soon"}}', "/runsc/timeout_ms", "must be an integer"),
            ('{"runsc": {"path": "/usr/bin/runsc", "colour": 1}}', "/runsc/colour", "unknown key"),
            ('{"socket": {"mode": "rwx"}}', "/socket/mode", "octal"),
            ('{"allowed_host_prefixes": ["/"]}', "/allowed_host_prefixes/0", "must not be /"),
            ('{"probe": {"initial_ms": 50, "max_ms": 10}}', "/probe/max_ms", "at least"),
            ('{"limits": {"max_connections": 0}}', "/limits/max_connections", "from 1"),
            ('{"log_level": "info", "log_level": "debug"}', "/log_level", "duplicate key"),
            ('{"stop_sandboxes_on_exit": true} trailing', "", "unexpected content"),
            ('not json', "", ""),
        ]
        for i, (text, field, reason) in enumerate(cases):
            path = self.write(f"bad{i}.json", text)
            r = run("--config", path, "--check-config")
            self.assertEqual(r.returncode, 2, (text, r.stdout, r.stderr))
            self.assertIn(f"bad configuration {path}: {field}", r.stderr)
            self.assertIn(reason, r.stderr)
        r = run("--config", "/nonexistent.json", "--check-config")
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot read", r.stderr)

    def test_flags_override_the_file(self):
        path = self.write("c.json", {"root": "/tmp/from-file", "log_level": "debug", "runsc": {"path": "/bin/false"}})
        r = run("--config", path, "--root", self.tmp, "--runsc", "/usr/bin/runsc", "--check-config")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"root            {self.tmp}", r.stdout)
        self.assertIn(f"socket          {self.tmp}/agent.sock", r.stdout)
        self.assertIn("runsc           /usr/bin/runsc", r.stdout)

    def test_a_missing_sandbox_init_refuses_to_start(self):
        cfg = self.write("c.json", {"sandbox_init": "/nonexistent/sandbox-init"})
        r = run("--config", cfg, "--root", self.tmp, "--runsc", os.path.abspath(FAKE_RUNSC))
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("/sandbox_init: /nonexistent/sandbox-init is missing or not executable", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "agent.sock")))

    def test_the_build_tree_runs_without_a_configuration(self):
        # sandbox-init is built beside sandbox-agent, where the default looks first
        self.assertEqual(os.path.dirname(os.path.abspath(SANDBOX_INIT)), os.path.dirname(os.path.abspath(AGENT)))
        r = run("--root", self.tmp, "--check-config")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"sandbox-init    {os.path.abspath(SANDBOX_INIT)}\n", r.stdout)

    def test_render_prints_the_spec_or_the_error(self):
        images = os.path.join(self.tmp, "images", "img")
        os.makedirs(images)
        cfg = self.write("c.json", {"sandbox_init": os.path.abspath(SANDBOX_INIT)})
        req = self.write("r.json", {"id": "r1", "rootfs": images, "args": ["/bin/true"], "docker": {"enabled": True}})
        r = run("--config", cfg, "--root", self.tmp, "render", req)
        self.assertEqual(r.returncode, 0, r.stderr)
        spec = json.loads(r.stdout)
        self.assertEqual(spec["root"]["path"], images)
        self.assertEqual(spec["process"]["args"][0], "/.sandbox-agent/init")
        self.assertEqual(spec["process"]["args"][-2:], ["--", "/bin/true"])
        r = run("--config", cfg, "--root", self.tmp, "render", "-",
                input=json.dumps({"rootfs": images, "docker": {"cgroup": "bogus"}}))
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.strip(),
                         "invalid_request /docker/cgroup: must be one of auto, sandbox, userns, host-bind, none")

    def test_sighup_reloads_the_log_level(self):
        import signal
        from harness import wait_for
        a = self.start_agent({"log_level": "info"})
        with open(a.config_path) as f:
            cfg = json.load(f)
        cfg["log_level"] = "warn"
        with open(a.config_path, "w") as f:
            json.dump(cfg, f)
        a.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "log level is now warn" in a.log(), what="the reload")
        self.assertTrue(a.call({"op": "version"})["ok"])

    def test_sighup_with_a_fifo_for_a_config_never_blocks(self):
        import signal
        from harness import wait_for
        a = self.start_agent()
        os.unlink(a.config_path)
        os.mkfifo(a.config_path)  # nobody will ever write it: an open for reading would block
        a.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration not reloaded" in a.log(), timeout=10, what="the refused reload")
        self.assertIn("not a regular file", a.log())
        c = a.client()  # the reactor still serves
        c.sock.settimeout(5)
        self.assertTrue(c.call({"op": "version"})["ok"])
        self.assertTrue(a.launch(a.request("after-hup"), wait=True)["state"] == "ready")
        # and at start-up it is a clear configuration error, not a hang
        r = run("--config", a.config_path, "--root", self.tmp, "--check-config")
        self.assertEqual(r.returncode, 2)
        self.assertIn("not a regular file", r.stderr)

    def test_sandboxctl_cp_to_stdout_keeps_json_off_the_copied_bytes(self):
        # --json's reply went to stdout after the file's bytes: the copy came out corrupted.
        a = self.start_agent()
        data = os.path.join(a.root, "images", "data")
        os.makedirs(data)
        blob = b"\x00binary\nbytes\xff" * 1000
        with open(os.path.join(data, "f"), "wb") as f:
            f.write(blob)
        self.assertEqual(a.launch(a.request("x", mounts=[{"source": data, "destination": "/data"}]), wait=True)["state"],
                         "ready")
        r = subprocess.run([os.path.abspath(SANDBOXCTL), "--socket", a.socket_path, "--json", "cp", "x:/data/f", "-"],
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, blob)
        self.assertEqual(json.loads(r.stderr)["bytes"], len(blob))
        # to a file, the reply is still stdout's
        r = subprocess.run([os.path.abspath(SANDBOXCTL), "--socket", a.socket_path, "--json", "cp", "x:/data/f",
                            os.path.join(self.tmp, "back")], capture_output=True, text=True, timeout=30)
        self.assertEqual((r.returncode, json.loads(r.stdout)["bytes"], r.stderr), (0, len(blob), ""))

    def test_sandboxctl_socket_path_too_long_says_so(self):
        path = "/tmp/" + "d" * 120 + "/agent.sock"  # sun_path holds 107 bytes
        for args in (["ps"], ["exec", "x", "--", "true"], ["cp", "x:/f", os.path.join(self.tmp, "f")]):
            r = subprocess.run([os.path.abspath(SANDBOXCTL), "--socket", path, *args], capture_output=True, text=True,
                               timeout=30)
            self.assertEqual((r.returncode, r.stderr),
                             (2, f"sandboxctl: cannot connect to {path}: File name too long\n"), args)


if __name__ == "__main__":
    unittest.main()
