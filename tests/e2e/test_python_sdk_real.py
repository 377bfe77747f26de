"""docs/python.md's first example, run as written on the real runsc: the Python SDK launches a
Docker sandbox, a nested container prints a line, the sandbox is stopped. Only the two paths
(the root file system, the image) are replaced with this test's own."""
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from test_real_runsc import CURRENT, RealRunscCase, busybox_image_tar, runsc_list  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def seed_block():
    with open(os.path.join(ROOT, "docs", "python.md")) as f:
        return re.search(r"```python seed\n(.*?)```", f.read(), re.S).group(1)


class PythonSdkRealTest(RealRunscCase):
    @unittest.skipUnless(CURRENT, "Debian's runsc cannot run containers inside a Docker sandbox")
    def test_the_docs_example_runs_a_nested_container(self):
        a = self.agent()
        image = os.path.join(self.tmp, "busybox.tar")
        busybox_image_tar(image)
        code = seed_block()
        request = {"rootfs": a.rootfs, "docker": {"enabled": True},
                   "mounts": [{"source": "/usr", "destination": "/usr", "readonly": True},
                              {"source": "/etc", "destination": "/etc", "readonly": True}]}
        for old, new in (('{"rootfs": "/srv/images/ubuntu-docker", "docker": {"enabled": True}}', repr(request)),
                         ("/srv/images/busybox.tar", image)):
            self.assertIn(old, code)
            code = code.replace(old, new)
        env = dict(os.environ, SANDBOX_AGENT_SOCKET=a.socket_path, PYTHONPATH=os.path.join(ROOT, "python"),
                   PATH="/usr/bin:/usr/sbin:/bin:/sbin")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "hello from a nested container")
        # the with block stopped it
        (sb,) = a.call({"op": "list"})["sandboxes"]
        self.assertEqual(sb["state"], "stopped")
        self.assertEqual(runsc_list(os.path.join(a.root, "runsc")), [])


if __name__ == "__main__":
    unittest.main()
