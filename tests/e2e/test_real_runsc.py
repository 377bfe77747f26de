"""End-to-end: the real agent with a real runsc (gVisor) and the real dockerd inside. Each
test has its own root (its own runsc --root), waits with bounds, and removes every sandbox,
process and mount it started, even when it fails.

E2E_RUNTIME says which runsc this run uses and so what must happen:
  current  the runsc scripts/install-deps builds from gVisor's Go module (the default):
           systrap, overlay2, containers run inside Docker sandboxes
  debian   Debian's runsc 20221219 (the compatibility job): ptrace, vfs, dockerd answers
           through a nested user namespace, `docker run` fails (and the status says so)
"""
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
import harness  # noqa: E402
from harness import AGENT, AgentTestCase, Client, release_log_quotas, wait_for  # noqa: E402

RUNTIME = os.environ.get("E2E_RUNTIME", "current")
RUNSC = {"current": "/usr/local/lib/sandbox-agent/runsc", "debian": "/usr/bin/runsc"}[RUNTIME]
CURRENT = RUNTIME == "current"
DOCKER = "/usr/bin/docker"  # Debian's client (20.10), the same version as dockerd inside
BUSYBOX = "/bin/busybox"    # Debian's busybox-static: an image needs no download


def make_skeleton(path):
    """A root file system without a download: empty directories, merged-usr symlinks; the
    request binds the host's /usr and /etc read-only, so dockerd and its libraries are there."""
    for d in ("usr", "etc", "proc", "sys", "dev", "tmp", "run", "var", "root"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    for link in ("bin", "sbin", "lib", "lib64"):
        if not os.path.lexists(os.path.join(path, link)):
            os.symlink(f"usr/{link}", os.path.join(path, link))


def busybox_image_tar(path):
    """A one-binary image for `docker import`: busybox-static and the applets the tests use."""
    with tarfile.open(path, "w") as tar:
        for d in ("bin", "tmp", "etc"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, "bin/busybox")
        for applet in ("sh", "echo", "cat", "sleep", "true", "ls", "hostname", "id"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        passwd = b"root:x:0:0:root:/:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))


def mounts_under(path, except_runsc_pin=False):
    """Mount points under `path`. Current runsc pins an empty network namespace for its
    gofers at RUNSC_ROOT/null-netns while sandboxes come and go (the agent releases it at
    start-up and shutdown): `except_runsc_pin` leaves that one out."""
    found = harness.mounts_under(path)
    if except_runsc_pin:
        found = [p for p in found if not p.endswith("/runsc/null-netns")]
    return found


def docker(sock, *args, timeout=120, check=True):
    r = subprocess.run([DOCKER, "-H", f"unix://{sock}", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


class RealRunscCase(AgentTestCase):
    """Setup, helpers and the clean-up every real-runsc test needs (no tests of its own)."""

    def setUp(self):
        super().setUp()
        os.chmod(self.tmp, 0o755)

    def tearDown(self):
        for a in self.agents:
            a.kill()
            runsc_root = os.path.join(a.root, "runsc")
            for c in runsc_list(runsc_root):
                subprocess.run([RUNSC, "--root", runsc_root, "kill", c["id"], "KILL"], capture_output=True, timeout=30)
            procs = [subprocess.Popen([RUNSC, "--root", runsc_root, "delete", "--force", c["id"]],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for c in runsc_list(runsc_root)]
            for p in procs:
                p.wait(60)
            # whatever the agent could not release (it was killed): runsc's pinned netns, and
            # the log quota of sandboxes it left running
            pin = os.path.join(runsc_root, "null-netns")
            for _ in range(64):
                if subprocess.run(["umount", "-l", pin], capture_output=True).returncode != 0:
                    break
            release_log_quotas(a.root)
        leftovers = self.leftover_processes()
        mounts = mounts_under(self.tmp)
        super().tearDown()
        self.assertEqual(leftovers, [], "processes left behind")
        self.assertEqual(mounts, [], "mounts left behind")

    def leftover_processes(self):
        found = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if self.tmp in cmd and "strace" not in cmd:
                found.append((int(pid), cmd[:160]))
        return found

    def agent(self, config=None, **kw):
        cfg = {"runsc": {"path": RUNSC, "timeout_ms": 60000},
               "allowed_host_prefixes": ["ROOT/images", "/usr", "/etc"], "allow_host_cgroup_bind": True}
        cfg.update(config or {})
        a = self.start_agent(cfg, runsc=RUNSC, **kw)
        make_skeleton(a.rootfs)
        return a

    def request(self, a, sid, docker=None, args=None):
        r = {"id": sid, "rootfs": a.rootfs,
             "mounts": [{"source": "/usr", "destination": "/usr", "readonly": True},
                        {"source": "/etc", "destination": "/etc", "readonly": True}]}
        if args is not None:
            r["args"] = args
        if docker is not None:
            r["docker"] = docker
        return r

    def stop_and_check_gone(self, a, sid):
        a.call({"op": "stop", "id": sid, "timeout_ms": 5000})
        s = a.wait_state(sid, ("stopped", "failed"), timeout=60)
        self.assertEqual(s["state"], "stopped", s)
        runsc_root = os.path.join(a.root, "runsc")
        self.assertEqual(runsc_list(runsc_root), [])
        self.assertFalse(os.path.exists(os.path.join(a.root, "sockets", sid)))
        self.assertEqual(mounts_under(a.root, except_runsc_pin=True), [])
        return s


class RealRunscTest(RealRunscCase):
    # --- plain sandboxes -------------------------------------------------------------

    def test_rendered_plain_spec_runs_on_real_runsc(self):
        a = self.agent()
        req = os.path.join(self.tmp, "true.json")
        with open(req, "w") as f:
            json.dump(self.request(a, "render-true", args=["/bin/true"]), f)
        bundle = os.path.join(self.tmp, "bundle")
        os.makedirs(bundle)
        spec = subprocess.run([AGENT, "--config", a.config_path, "--root", a.root, "render", req],
                              capture_output=True, text=True, check=True).stdout
        with open(os.path.join(bundle, "config.json"), "w") as f:
            f.write(spec)
        # render names the host directories the agent would create; make them for runsc
        for d in ("sockets", "logs"):
            os.makedirs(os.path.join(a.root, d, "render-true"), exist_ok=True)
        r = subprocess.run([RUNSC, "--root", os.path.join(a.root, "runsc"), "--platform=ptrace", "--network=none",
                            "run", "--bundle", bundle, "render-true"], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_plain_sandbox_ready_then_stopped(self):
        a = self.agent()
        final = a.launch(self.request(a, "plain", args=["/bin/sleep", "30"]), wait=True)
        self.assertEqual(final["state"], "ready", final)
        self.assertEqual([c["status"] for c in runsc_list(os.path.join(a.root, "runsc"))], ["running"])
        s = self.stop_and_check_gone(a, "plain")
        self.assertEqual(s["exit_code"], 143)

    def test_only_a_sandbox_with_limits_gets_a_host_cgroup_and_its_limit_holds(self):
        # runsc.host_cgroups "limited" (the default): runsc's per-sandbox cgroup costs every
        # cold create ~30 ms on cgroup v1; only a sandbox with resources gets one.
        a = self.agent()
        for sid, extra in (("free", {}), ("capped", {"resources": {"memory_mb": 256, "pids": 500}})):
            final = a.launch(dict(self.request(a, sid, args=["/bin/sleep", "60"]), **extra), wait=True)
            self.assertEqual(final["state"], "ready", final)
        pids = {c["id"]: c["pid"] for c in runsc_list(os.path.join(a.root, "runsc"))}

        def memory_cgroup(pid):
            with open(f"/proc/{pid}/cgroup") as f:
                for line in f:
                    _, controllers, path = line.rstrip("\n").split(":", 2)
                    if "memory" in controllers.split(",") or (controllers == "" and not os.path.isdir("/sys/fs/cgroup/memory")):
                        return path
            return None

        def runsc_id(sid):
            with open(os.path.join(a.root, "state", f"{sid}.json")) as f:
                return json.load(f)["runsc_id"]

        mine = memory_cgroup(os.getpid())
        self.assertEqual(memory_cgroup(pids[runsc_id("free")]), mine)  # stayed where the agent is
        capped = memory_cgroup(pids[runsc_id("capped")])
        self.assertTrue(capped.endswith("/" + runsc_id("capped")), capped)
        v1 = os.path.join("/sys/fs/cgroup/memory" + capped, "memory.limit_in_bytes")
        limit_file = v1 if os.path.exists(v1) else os.path.join("/sys/fs/cgroup" + capped, "memory.max")
        with open(limit_file) as f:
            self.assertEqual(int(f.read()), 256 << 20)
        a.call({"op": "stop", "id": "free", "timeout_ms": 5000})
        self.assertEqual(a.wait_state("free", ("stopped", "failed"), timeout=60)["state"], "stopped")
        self.stop_and_check_gone(a, "capped")
        self.assertFalse(os.path.exists(os.path.dirname(limit_file)))  # runsc removed it

    def test_plain_sandbox_exit_is_reported(self):
        a = self.agent()
        a.launch(self.request(a, "short", args=["/bin/sh", "-c", "sleep 1; exit 7"]), wait=True)
        s = a.wait_state("short", "failed", timeout=60)
        self.assertEqual((s["reason"], s["exit_code"]), ("exited", 7))
        wait_for(lambda: runsc_list(os.path.join(a.root, "runsc")) == [], timeout=60, what="runsc list empty")

    def test_a_sandbox_flooding_its_output_and_logs_stops_at_its_quota(self):
        quota = 4 << 20
        a = self.agent({"logs": {"max_bytes_per_sandbox": quota}})
        flood = ("dd if=/dev/zero bs=1M count=64 2>/dev/null; "             # 64 MiB to stdout (runsc.log)
                 "dd if=/dev/zero of=/.sandbox-agent/logs/big bs=1M count=64; "  # and a file in its logs
                 "ln -s /etc/shadow /.sandbox-agent/logs/escape; echo flooded > /dev/null; sleep 600")
        a.launch(self.request(a, "flood", args=["/bin/sh", "-c", flood]), wait=True)
        logs = os.path.join(a.root, "logs", "flood")
        wait_for(lambda: os.path.lexists(os.path.join(logs, "escape")), timeout=60, what="the flood to be done")
        st = os.statvfs(logs)
        self.assertLessEqual((st.f_blocks - st.f_bfree) * st.f_frsize, quota)  # bounded while it lives
        self.assertEqual(a.status("flood")["state"], "ready")  # the sandbox lives on
        self.stop_and_check_gone(a, "flood")  # and no mount is left once it is stopped
        kept = {n: os.path.getsize(os.path.join(logs, n)) for n in os.listdir(logs)}
        self.assertNotIn("escape", kept)
        self.assertLessEqual(sum(kept.values()), quota, kept)
        self.assertIn("runsc.log", kept)

    def test_agent_stop_leaves_no_mount(self):
        a = self.agent()
        for i in range(3):  # creates that race stack runsc's netns pin
            a.launch(self.request(a, f"m-{i}", args=["/bin/sleep", "30"]))
        for i in range(3):
            self.assertEqual(a.wait_state(f"m-{i}", ("ready", "failed"), timeout=60)["state"], "ready")
        for i in range(3):
            a.call({"op": "stop", "id": f"m-{i}", "timeout_ms": 5000})
        for i in range(3):
            self.assertEqual(a.wait_state(f"m-{i}", ("stopped", "failed"), timeout=60)["state"], "stopped")
        self.assertEqual(a.stop(), 0)
        self.assertEqual(mounts_under(a.root), [])

    def test_restart_adopts_a_running_sandbox(self):
        a = self.agent()
        a.launch(self.request(a, "survivor", args=["/bin/sleep", "300"]), wait=True)
        self.assertEqual(a.stop(), 0)  # SIGTERM: sandboxes keep running by default
        self.assertEqual([c["status"] for c in runsc_list(os.path.join(a.root, "runsc"))], ["running"])
        a.start()
        self.assertEqual(a.status("survivor")["state"], "ready")
        self.assertIn("adopted", a.log())
        self.stop_and_check_gone(a, "survivor")

    # --- the runtime the agent found -------------------------------------------------

    def test_the_agent_says_what_the_runtime_can_do(self):
        a = self.agent()
        line = [l for l in a.log().splitlines() if "nested containers:" in l]
        self.assertEqual(len(line), 1, a.log())
        self.assertIn(f"runtime {RUNSC}", line[0])
        self.assertIn("nested containers: yes" if CURRENT else "nested containers: no", line[0])
        self.assertIn("platform systrap" if CURRENT else "platform ptrace", line[0])
        check = subprocess.run([AGENT, "--config", a.config_path, "--root", a.root, "--check-config"],
                               capture_output=True, text=True, timeout=60)
        self.assertEqual(check.returncode, 0, check.stderr)
        self.assertIn("nested containers: yes" if CURRENT else "nested containers: no", check.stdout)

    # --- Docker inside -----------------------------------------------------------------

    def test_docker_sandbox_ready_and_usable_from_the_host(self):
        a = self.agent()
        final = a.launch(self.request(a, "dind", docker={"enabled": True}), wait=True)
        self.assertEqual(final["state"], "ready", final)
        caps = final["sandbox"]["capabilities"]
        self.assertEqual(caps["nested_containers"], CURRENT, caps)
        self.assertEqual(caps["platform"], "systrap" if CURRENT else "ptrace", caps)
        sock = final["sandbox"]["docker_socket"]
        ping = subprocess.run(["curl", "-s", "--max-time", "10", "--unix-socket", sock, "http://x/_ping"],
                              capture_output=True, text=True)
        self.assertEqual(ping.stdout, "OK")
        driver = docker(sock, "info", "--format", "{{.Driver}}", timeout=60).stdout.strip()
        self.assertEqual(driver, "overlay2" if CURRENT else "vfs")
        with open(os.path.join(a.root, "logs", "dind", "init.log")) as f:
            init_log = f.read()
        # current gVisor serves the OCI cgroup mount (devices included): plain dockerd
        self.assertIn("devices cgroup mounted at" if CURRENT else "nested user namespace", init_log)
        with open(os.path.join(a.root, "logs", "dind", "runsc.log")) as f:
            run = [l for l in f if " run --detach " in l][0]
        self.assertIn("--net-raw", run)
        self.assertIn("--platform=systrap" if CURRENT else "--platform=ptrace", run)
        self.stop_and_check_gone(a, "dind")

    def test_plain_sandbox_gets_no_raw_sockets(self):
        a = self.agent()
        a.launch(self.request(a, "plain-raw", args=["/bin/sleep", "30"]), wait=True)
        with open(os.path.join(a.root, "logs", "plain-raw", "runsc.log")) as f:
            run = [l for l in f if " run --detach " in l][0]
        self.assertNotIn("--net-raw", run)
        self.assertFalse(a.status("plain-raw")["capabilities"]["nested_containers"])
        self.stop_and_check_gone(a, "plain-raw")

    def test_cgroup_strategies_record_the_truth_on_this_runsc(self):
        # docs/docker-profile.md has this table; a change here is a change there.
        a = self.agent()
        if CURRENT:
            expected = {"auto": "ready", "sandbox": "ready", "userns": "ready", "host-bind": "failed", "none": "failed"}
        else:
            expected = {"auto": "ready", "userns": "ready", "sandbox": "failed", "host-bind": "failed"}
        for strategy in expected:
            a.launch(self.request(a, f"cg-{strategy}", docker={"enabled": True, "cgroup": strategy}))
        for strategy, state in expected.items():
            s = a.wait_state(f"cg-{strategy}", ("ready", "failed"), timeout=90)
            self.assertEqual(s["state"], state, s)
            if state == "failed":
                # the seed's failure, reproduced and reported, not hidden
                self.assertEqual(s["reason"], "dockerd_exited", s)
                self.assertIn("Devices cgroup isn't mounted", s["log_tail"])
        if CURRENT:
            # dockerd answers in a nested user namespace, but runc inside finds no cgroup
            # mount: userns is Debian's fallback, not a way to run containers
            image = os.path.join(self.tmp, "busybox.tar")
            busybox_image_tar(image)
            sock = a.status("cg-userns")["docker_socket"]
            docker(sock, "import", image, "bb")
            r = docker(sock, "run", "--rm", "bb", "true", check=False)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("no cgroup mount found", r.stderr)

    def test_nested_containers(self):
        """What users launch a Docker sandbox for: images in, containers run, built, exec'd."""
        a = self.agent()
        final = a.launch(self.request(a, "nest", docker={"enabled": True}), wait=True)
        self.assertEqual(final["state"], "ready", final)
        sock = final["sandbox"]["docker_socket"]
        image = os.path.join(self.tmp, "busybox.tar")
        busybox_image_tar(image)
        docker(sock, "import", image, "bb")
        if not CURRENT:
            # Debian's runsc predates Docker-in-gVisor: the status said so, and this is why
            r = docker(sock, "run", "--rm", "bb", "echo", "hi", check=False)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("operation not supported", r.stderr)
            self.assertFalse(final["sandbox"]["capabilities"]["nested_containers"])
            self.stop_and_check_gone(a, "nest")
            return
        # run --rm prints from inside the nested container (its own hostname, its own root)
        out = docker(sock, "run", "--rm", "--hostname", "inner", "bb", "sh", "-c",
                     "echo hello from $(hostname); ls /").stdout.split("\n")
        self.assertEqual(out[0], "hello from inner")
        self.assertNotIn(".sandbox-agent", out)  # the sandbox's own files are not in the container
        # run -d, exec, stop
        cid = docker(sock, "run", "-d", "--name", "svc", "bb", "sleep", "300").stdout.strip()
        self.assertTrue(cid)
        self.assertEqual(docker(sock, "exec", "svc", "cat", "/etc/passwd").stdout.split(":")[0], "root")
        docker(sock, "stop", "-t", "1", "svc")
        state = docker(sock, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "svc").stdout.split()
        self.assertEqual(state[0], "exited")
        # build with a RUN step (the classic builder runs it in a container)
        ctx = os.path.join(self.tmp, "ctx")
        os.makedirs(ctx)
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write('FROM bb\nRUN echo built-in-gvisor > /built.txt\nCMD ["cat", "/built.txt"]\n')
        docker(sock, "build", "-q", "-t", "bb-built", ctx, timeout=180)
        self.assertEqual(docker(sock, "run", "--rm", "bb-built").stdout.strip(), "built-in-gvisor")
        # the sandbox's network, used by a nested container
        self.assertEqual(docker(sock, "run", "--rm", "--network=host", "bb", "echo", "host-net").stdout.strip(),
                         "host-net")
        self.stop_and_check_gone(a, "nest")

    def test_four_docker_sandboxes_at_once(self):
        a = self.agent()
        for i in range(4):
            a.launch(self.request(a, f"many-{i}", docker={"enabled": True}))
        socks = []
        for i in range(4):
            s = a.wait_state(f"many-{i}", ("ready", "failed"), timeout=120)
            self.assertEqual(s["state"], "ready", s)
            socks.append(s["docker_socket"])
        if CURRENT:  # each runs a container of its own, at the same time
            image = os.path.join(self.tmp, "busybox.tar")
            busybox_image_tar(image)
            runs = []
            for i, sock in enumerate(socks):
                docker(sock, "import", image, "bb")
                runs.append(subprocess.Popen([DOCKER, "-H", f"unix://{sock}", "run", "--rm", "bb", "echo", f"in-{i}"],
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            for i, p in enumerate(runs):
                out, err = p.communicate(timeout=120)
                if p.returncode != 0 and "interrupted system call" in err:
                    # runc inside gVisor sometimes gets EINTR opening its exec fifo when four
                    # start at once ("open exec fifo /proc/self/fd/5: interrupted system call",
                    # seen once in ~10 runs on 2 cores): the nested runtime's, not the agent's.
                    # Once more, alone; anything else is a failure.
                    r = docker(socks[i], "run", "--rm", "bb", "echo", f"in-{i}", check=False)
                    p.returncode, out, err = r.returncode, r.stdout, r.stderr
                self.assertEqual((p.returncode, out.strip()), (0, f"in-{i}"), err)
        for i in range(4):
            a.call({"op": "stop", "id": f"many-{i}"})
        for i in range(4):
            self.assertEqual(a.wait_state(f"many-{i}", ("stopped", "failed"), timeout=60)["state"], "stopped")
        wait_for(lambda: runsc_list(os.path.join(a.root, "runsc")) == [], timeout=60, what="runsc list empty")

    def test_dockerd_killed_after_ready_fails_fast(self):
        a = self.agent()
        a.launch(self.request(a, "victim", docker={"enabled": True}), wait=True)
        with open(os.path.join(a.root, "state", "victim.json")) as f:
            runsc_id = json.load(f)["runsc_id"]
        watch = a.client()
        self.assertTrue(watch.call({"op": "watch"})["ok"])
        subprocess.run([RUNSC, "--root", os.path.join(a.root, "runsc"), "exec", runsc_id,
                        "/usr/bin/pkill", "-KILL", "-x", "dockerd"], check=True, capture_output=True, timeout=60)
        killed = time.monotonic()
        watch.sock.settimeout(10)
        event = watch.read()
        noticed = time.monotonic() - killed
        self.assertEqual((event["id"], event["state"], event["reason"]), ("victim", "failed", "dockerd_exited"))
        self.assertLess(noticed, 1.0)
        wait_for(lambda: runsc_list(os.path.join(a.root, "runsc")) == [], timeout=60, what="torn down")


def runsc_list(runsc_root):
    r = subprocess.run([RUNSC, "--root", runsc_root, "list", "--format=json"], capture_output=True, text=True,
                       timeout=60)
    return json.loads(r.stdout or "null") or []


if __name__ == "__main__":
    unittest.main()
