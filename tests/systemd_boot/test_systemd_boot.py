"""sandbox-agent under a real systemd, as PID 1 of a Debian 12 container: debootstrap builds a
minimal tree (once; cached under the build directory), systemd-nspawn --boot runs it with a
network namespace of its own, and the project's .deb (cpack) is installed in it with dpkg.
The test drives the container from outside through nsenter: systemctl, journalctl and
sandboxctl run inside it. Sandboxes use the fake runtime (copied in): the point is systemd.

Proved, in order: the package's postinst enables and starts the units; `systemctl start`
returns only once the agent said READY=1 (its "ready" line comes before systemd's
"Started"); socket activation starts a stopped agent on the first connection; `systemctl
stop` is clean (STOPPING=1, exit 0) and keeps sandboxes running, or stops them with
stop_sandboxes_on_exit; a hung agent (SIGSTOP) is killed by the watchdog and restarted; `systemctl
reload` re-reads the log level; the journal files the agent's lines at their priorities.

Every wait is bounded; the container is powered off (then killed) and its tree removed, also
when a test fails."""
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import wait_for  # noqa: E402


def wait(predicate, timeout, what):
    """Bounded polling, gentler than the harness's default: each check here starts processes."""
    return wait_for(predicate, timeout=timeout, interval=0.2, what=what)


BUILD = os.environ.get("SA_BUILD_DIR", "build")
FAKE_RUNSC = os.environ.get("FAKE_RUNSC", os.path.join(BUILD, "tests", "fake_runsc", "fake-runsc"))
SUITE = "bookworm"
BASE_PACKAGES = ["systemd", "systemd-sysv", "dbus"]
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FAKE_DIR = "/usr/local/lib/fake-runsc"  # inside the container
CONFIG = {"runsc": {"path": FAKE_DIR + "/fake-runsc"}, "allowed_host_prefixes": ["/srv/images"], "log_level": "info"}
# Short enough to wait for: the watchdog and the time a SIGABRT'd agent gets. No start rate
# limit: these tests start and stop the agent more often in 10 s than anyone would.
DROP_IN = "[Unit]\nStartLimitIntervalSec=0\n[Service]\nWatchdogSec=3\nTimeoutAbortSec=3\nLimitCORE=0\n"


def die_with_parent():
    """In the child before exec: SIGKILL when this test process dies (Ctrl-C, a ctest timeout),
    so a container is never left running."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def debian_mirror():
    """The mirror apt uses here (deb822 sources or sources.list), else deb.debian.org."""
    for path in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        m = re.search(r"^URIs:\s*(\S+)", text, re.M) or re.search(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\b", text, re.M)
        if m and "security" not in m.group(1):
            return m.group(1)
    return "http://deb.debian.org/debian"


def installed_provider(name):
    """`name` itself when a package of that name is installed here, else the installed package
    that Provides it (debootstrap cannot resolve virtual names such as libspdlog1.10-fmt9)."""
    listing = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Provides}\t${Status}\n"],
                             capture_output=True, text=True, check=True).stdout
    providers = []
    for line in listing.splitlines():
        package, provides, status = (line.split("\t") + ["", ""])[:3]
        if not status.endswith(" installed"):
            continue
        if package == name:
            return name
        if name in {p.split("(")[0].strip() for p in provides.split(",")}:
            providers.append(package)
    return providers[0] if providers else name


def deb_depends(deb):
    """Real package names of a .deb's Depends (first of each alternative, versions dropped)."""
    field = subprocess.run(["dpkg-deb", "-f", deb, "Depends"], capture_output=True, text=True, check=True).stdout
    names = {part.split("|")[0].split("(")[0].strip() for part in field.split(",") if part.strip()}
    return sorted({installed_provider(n) for n in names})


def build_deb(work):
    out = os.path.join(work, "deb")
    os.makedirs(out)
    r = subprocess.run(["cpack", "-G", "DEB", "-B", out], cwd=BUILD, capture_output=True, text=True, timeout=240)
    if r.returncode != 0:
        raise AssertionError("cpack failed:\n" + r.stdout + r.stderr)
    debs = [f for f in os.listdir(out) if re.match(r"sandbox-agent_.*\.deb$", f)]
    if not debs:
        raise AssertionError("cpack made no sandbox-agent_*.deb:\n" + r.stdout)
    return os.path.join(out, debs[0])


def ensure_tree(packages):
    """A debootstrapped tree with `packages`, built once per package set and kept."""
    key = hashlib.sha256(" ".join([SUITE] + sorted(packages)).encode()).hexdigest()[:12]
    cache = os.path.join(BUILD, "systemd-boot")
    tree = os.path.join(cache, f"{SUITE}-{key}")
    if os.path.exists(os.path.join(tree, ".complete")):
        return tree
    os.makedirs(cache, exist_ok=True)
    for name in os.listdir(cache):  # what an interrupted or older run left
        path = os.path.join(cache, name)
        if name.endswith(".partial") or not os.path.exists(os.path.join(path, ".complete")):
            # A debootstrap killed mid-way leaves proc/ and sys/ mounted inside its tree.
            subprocess.run(["umount", "-R", "-l", os.path.join(path, "proc")], capture_output=True)
            subprocess.run(["umount", "-R", "-l", os.path.join(path, "sys")], capture_output=True)
            if subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True).stdout.find(path) < 0:
                shutil.rmtree(path, ignore_errors=True)
    partial = tree + ".partial"
    print(f"debootstrap {SUITE} into {tree} ({len(packages)} packages; takes a few minutes once)", flush=True)
    cmd = ["debootstrap", "--variant=minbase", "--include=" + ",".join(sorted(packages)), SUITE, partial, debian_mirror()]
    # Bounded so that cpack + this + the copy + the tests stay inside ctest's 1500 s.
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise AssertionError("debootstrap failed:\n" + r.stdout[-4000:] + r.stderr[-4000:])
    open(os.path.join(partial, ".complete"), "w").close()
    os.rename(partial, tree)
    return tree


class Container:
    """A booted copy of the tree. run() executes a shell command inside it."""

    def __init__(self, tree, work):
        self.root = os.path.join(work, "root")
        subprocess.run(["cp", "-a", "--reflink=auto", tree, self.root], check=True, timeout=120)
        self.console_path = os.path.join(work, "console.log")
        self.proc = None
        self.leader = None

    def boot(self):
        console = open(self.console_path, "wb")
        # --keep-unit --register=no: no host systemd or D-Bus to ask for a scope.
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "--quiet", "-D", self.root, "--boot", "--register=no", "--keep-unit",
             "--private-network", "--machine=sa-boot-test"],
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent)
        console.close()
        self.leader = wait(self._find_leader, 30, "the container's systemd")
        wait(lambda: self.run("systemctl is-system-running", check=False).stdout.strip() in ("running", "degraded"),
                 90, "the container to finish booting")

    def _find_leader(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"systemd-nspawn exited with {self.proc.returncode}:\n{self.console()}")
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            if ppid == self.proc.pid and comm == "systemd":
                return int(pid)
        return None

    def run(self, command, check=True, timeout=60, input=None):
        # A session of its own: nothing the command signals reaches this test, and a timeout
        # kills all of it (a grandchild holding the pipes would otherwise hang us).
        p = subprocess.Popen(["nsenter", "-t", str(self.leader), "-a", "-r", "-w", "env", "-i", "PATH=" + PATH,
                              "LANG=C.UTF-8", "SYSTEMD_PAGER=", "/bin/sh", "-c", command],
                             stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = p.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate(timeout=10)
            raise AssertionError(f"in the container: {command!r} did not end within {timeout} s")
        r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        if check and r.returncode != 0:
            raise AssertionError(f"in the container: {command!r} exited {r.returncode}:\n{r.stdout}{r.stderr}")
        return r

    def write(self, path, text):
        full = os.path.join(self.root, path.lstrip("/"))
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)

    def console(self):
        try:
            with open(self.console_path, errors="replace") as f:
                return f.read()[-8000:]
        except OSError:
            return ""

    def poweroff(self):
        if not self.proc or self.proc.poll() is not None:
            return
        try:
            if self.leader:
                self.run("systemctl poweroff", check=False, timeout=30)
            self.proc.wait(60)
        except (AssertionError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the container's init dies with nspawn: all of it ends
                self.proc.wait(30)


class SystemdBootTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for tool in ("debootstrap", "systemd-nspawn", "nsenter", "cpack", "dpkg-deb"):
            if not shutil.which(tool):
                raise AssertionError(f"{tool} is missing: scripts/install-deps installs it")
        cls.work = tempfile.mkdtemp(prefix="sa-boot.")
        cls.box = None
        try:
            deb = build_deb(cls.work)
            tree = ensure_tree(BASE_PACKAGES + deb_depends(deb))
            cls.box = Container(tree, cls.work)
            # The fake runtime (its CLI and its daemon, kept together) and an image directory.
            fake_dir = os.path.join(cls.box.root, FAKE_DIR.lstrip("/"))
            os.makedirs(fake_dir)
            for name in ("fake-runsc", "fake-runsc-daemon"):
                shutil.copy2(os.path.join(os.path.dirname(FAKE_RUNSC), name), fake_dir)
            os.makedirs(os.path.join(cls.box.root, "srv/images/rootfs"))
            shutil.copy2(deb, os.path.join(cls.box.root, "root", "sandbox-agent.deb"))
            cls.box.boot()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.box:
            cls.box.poweroff()
        shutil.rmtree(cls.work, ignore_errors=True)

    def setUp(self):
        # Each test after the first starts from a running agent with the test configuration,
        # whatever the one before it left.
        if self._testMethodName.startswith("test_1_"):
            return
        self.sh("cat > /etc/sandbox-agent/config.json", input=json.dumps(CONFIG))
        self.sh("systemctl reset-failed sandbox-agent.service sandbox-agent.socket; "
                "systemctl start sandbox-agent.socket sandbox-agent.service")

    def tearDown(self):
        if hasattr(self, "_outcome") and not all(t is not self for t, _ in self._outcome.result.errors +
                                                  self._outcome.result.failures):
            r = self.box.run("journalctl --no-pager -n 80 -o short-monotonic", check=False)
            print("--- the container's journal ---\n" + r.stdout + r.stderr, file=sys.stderr)

    # Helpers -------------------------------------------------------------------------------

    def sh(self, command, **kw):
        return self.box.run(command, **kw)

    def show(self, unit, *props):
        out = self.sh(f"systemctl show {unit} -p {','.join(props)}").stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, since=0, unit="sandbox-agent.service", priority=None):
        """The unit's entries after the mark `since`. Not --after-cursor: combined with a
        match, journalctl 252 drops the first matching entry after the cursor."""
        cmd = f"journalctl --no-pager -o json -u {unit}" + (f" -p {priority}" if priority else "")
        entries = [json.loads(l) for l in self.sh(cmd).stdout.splitlines() if l.strip()]
        return [e for e in entries if int(e["__REALTIME_TIMESTAMP"]) > since]

    def cursor(self):
        """A mark in the journal: the time of its last entry (µs)."""
        r = self.sh("journalctl --no-pager -n 1 -o json")
        lines = [l for l in r.stdout.splitlines() if l.strip()]
        return int(json.loads(lines[-1])["__REALTIME_TIMESTAMP"]) if lines else 0

    def ctl(self, args, check=True, input=None):
        return self.sh("sandboxctl " + args, check=check, input=input)

    def launch(self, sid):
        request = json.dumps({"id": sid, "rootfs": "/srv/images/rootfs", "args": ["/bin/sleep", "infinity"]})
        self.ctl("launch - --wait", input=request)

    def main_pid(self):
        return int(self.show("sandbox-agent.service", "MainPID")["MainPID"])

    def record(self, sid):
        with open(os.path.join(self.box.root, f"var/lib/sandbox-agent/state/{sid}.json")) as f:
            return json.load(f)

    def fake_sandbox_alive(self, sid):
        # The fake runtime's daemon answers `state` for the containers it runs.
        runsc_id = self.record(sid)["runsc_id"]
        r = self.sh(f"{FAKE_DIR}/fake-runsc --root /var/lib/sandbox-agent/runsc state {runsc_id}", check=False)
        return r.returncode == 0 and '"running"' in r.stdout

    # The tests, in order (unittest sorts them by name) ---------------------------------------

    def test_1_the_package_installs_and_starts_the_units(self):
        self.sh("DEBIAN_FRONTEND=noninteractive dpkg -i /root/sandbox-agent.deb", timeout=120)
        wait(lambda: self.sh("systemctl is-active sandbox-agent.socket sandbox-agent.service",
                                 check=False).stdout.split() == ["active", "active"], 30, "both units active")
        self.assertEqual(self.sh("systemctl is-enabled sandbox-agent.socket sandbox-agent.service").stdout.split(),
                         ["enabled", "enabled"])
        # Our configuration from now on: the fake runtime, an image directory, and the drop-in.
        self.sh(f"cat > /etc/sandbox-agent/config.json", input=json.dumps(CONFIG))
        self.box.write("/etc/systemd/system/sandbox-agent.service.d/test.conf", DROP_IN)
        self.sh("systemctl daemon-reload && systemctl restart sandbox-agent.service")
        self.assertEqual(self.ctl("version").stdout.strip(), "0.1.0")

    def test_2_start_returns_only_after_ready(self):
        self.sh("systemctl stop sandbox-agent.service")
        cursor = self.cursor()
        self.sh("systemctl start sandbox-agent.service")
        props = self.show("sandbox-agent.service", "ActiveState", "SubState", "StatusText", "Type")
        self.assertEqual((props["Type"], props["ActiveState"], props["SubState"]), ("notify", "active", "running"))
        self.assertRegex(props["StatusText"], r"^in flight \d+, ready \d+")  # the agent's STATUS= line
        # The agent's own "ready" (said with READY=1) is in the journal before systemd's "Started".
        entries = self.journal(cursor)
        messages = [e.get("MESSAGE", "") for e in entries]
        ready = [i for i, m in enumerate(messages) if re.search(r"\bready$", m) and e_pid(entries[i]) == self.main_pid()]
        started = [i for i, m in enumerate(messages) if m.startswith("Started sandbox-agent.service")]
        self.assertTrue(ready and started, messages)
        self.assertLess(ready[0], started[0], messages)

    def test_3_socket_activation_starts_a_stopped_agent(self):
        self.sh("systemctl stop sandbox-agent.service")
        self.assertEqual(self.sh("systemctl is-active sandbox-agent.service", check=False).stdout.strip(), "inactive")
        self.assertEqual(self.sh("systemctl is-active sandbox-agent.socket").stdout.strip(), "active")
        # The first client's connection starts it; its request waits in the backlog, not refused.
        self.assertEqual(self.ctl("version").stdout.strip(), "0.1.0")
        self.assertEqual(self.sh("systemctl is-active sandbox-agent.service").stdout.strip(), "active")

    def test_4_stop_is_clean_and_keeps_or_stops_sandboxes_as_configured(self):
        self.launch("kept")
        self.assertTrue(self.fake_sandbox_alive("kept"))
        cursor = self.cursor()
        self.sh("systemctl stop sandbox-agent.service sandbox-agent.socket")
        props = self.show("sandbox-agent.service", "Result", "ExecMainStatus", "ExecMainCode", "ActiveState")
        self.assertEqual((props["ActiveState"], props["Result"], props["ExecMainStatus"]), ("inactive", "success", "0"))
        self.assertEqual(props["ExecMainCode"], "1")  # CLD_EXITED: it exited, no signal killed it
        messages = [e.get("MESSAGE", "") for e in self.journal(cursor)]
        self.assertTrue(any(m.startswith("Stopping sandbox-agent.service") for m in messages), messages)
        self.assertTrue(any(re.match(r"info Terminated: shutting down", m) for m in messages), messages)
        self.assertIn("info stopped", messages)
        # KillMode=process and stop_sandboxes_on_exit false: the sandbox kept running, and the
        # next start adopts it.
        self.assertTrue(self.fake_sandbox_alive("kept"))
        self.sh("systemctl start sandbox-agent.socket sandbox-agent.service")
        status = json.loads(self.ctl("--json status kept").stdout)
        self.assertEqual(status["sandbox"]["state"], "ready", status)

        # With stop_sandboxes_on_exit the agent stops them on its way out.
        self.sh("cat > /etc/sandbox-agent/config.json", input=json.dumps({**CONFIG, "stop_sandboxes_on_exit": True}))
        self.sh("systemctl restart sandbox-agent.service")
        self.sh("systemctl stop sandbox-agent.service")
        self.assertEqual(self.show("sandbox-agent.service", "Result")["Result"], "success")
        self.assertEqual(self.record("kept")["state"], "stopped")
        self.assertFalse(self.fake_sandbox_alive("kept"))

    def test_5_the_watchdog_restarts_a_hung_agent(self):
        before = self.show("sandbox-agent.service", "MainPID", "NRestarts", "WatchdogUSec")
        self.assertEqual(before["WatchdogUSec"], "3s")
        pid = int(before["MainPID"])
        self.assertGreater(pid, 1, before)
        cursor = self.cursor()
        self.sh(f"kill -STOP {pid}")
        # 3 s without WATCHDOG=1, SIGABRT, RestartSec=2: a new agent well within 30 s.
        wait(lambda: self.show("sandbox-agent.service", "NRestarts")["NRestarts"] != before["NRestarts"] and
                 self.main_pid() not in (0, pid) and
                 self.sh("systemctl is-active sandbox-agent.service", check=False).stdout.strip() == "active",
                 40, "systemd to restart the hung agent")
        self.assertTrue(any("Watchdog timeout" in e.get("MESSAGE", "") for e in self.journal(cursor)))
        self.assertFalse(_ns_pid_alive(self.box, pid))
        self.assertEqual(self.ctl("version").stdout.strip(), "0.1.0")

    def test_6_reload_rereads_the_log_level(self):
        self.sh("cat > /etc/sandbox-agent/config.json", input=json.dumps({**CONFIG, "log_level": "debug"}))
        cursor = self.cursor()
        pid = self.main_pid()
        self.sh("systemctl reload sandbox-agent.service")
        wait(lambda: any("log level is now debug" in e.get("MESSAGE", "") for e in self.journal(cursor)),
                 15, "the agent to say it re-read the log level")
        self.assertEqual(self.main_pid(), pid)  # reloaded, not restarted
        # A Docker sandbox becoming ready logs its probe attempts at debug.
        request = json.dumps({"id": "dbg", "rootfs": "/srv/images/rootfs", "args": ["/bin/sleep", "infinity"],
                              "docker": {"enabled": True}})
        self.ctl("launch - --wait", input=request)
        wait(lambda: any(e.get("PRIORITY") == "7" and "dbg dockerd answered" in e.get("MESSAGE", "")
                         for e in self.journal(cursor)), 15, "a debug line")

    def test_7_the_journal_has_the_agents_priorities(self):
        cursor = self.cursor()
        request = json.dumps({"id": "slow", "rootfs": "/srv/images/rootfs", "args": ["/bin/sleep", "infinity"],
                              "env": ["FAKE_RUNSC=dockerd=never"], "docker": {"enabled": True, "ready_timeout_ms": 300}})
        r = self.ctl("launch - --wait", input=request, check=False)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        entries = wait(lambda: (es := self.journal(cursor)) and any("failing" in e.get("MESSAGE", "") for e in es) and es,
                           15, "the failure in the journal")
        by_message = {e["MESSAGE"]: e.get("PRIORITY") for e in entries if isinstance(e.get("MESSAGE"), str)}
        failing = [m for m in by_message if re.match(r"warning slow failing \(ready_timeout\)", m)]
        self.assertTrue(failing, list(by_message))
        self.assertEqual(by_message[failing[0]], "4")
        accepted = [m for m in by_message if re.match(r"info slow accepted", m)]
        self.assertTrue(accepted, list(by_message))
        self.assertEqual(by_message[accepted[0]], "6")
        # No timestamps of our own: journald has them.
        self.assertFalse([m for m in by_message if re.match(r"\d{4}-\d\d-\d\dT", m)])
        # journalctl -p warning shows the warnings and not the info lines.
        warnings = "\n".join(e.get("MESSAGE", "") for e in self.journal(cursor, priority="warning"))
        self.assertIn("slow failing", warnings)
        self.assertNotIn("slow accepted", warnings)


def e_pid(entry):
    try:
        return int(entry.get("_PID", 0))
    except ValueError:
        return 0


def _ns_pid_alive(box, pid):
    """Whether `pid` (in the container's pid namespace) still runs there."""
    return box.run(f"kill -0 {pid}", check=False).returncode == 0


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("skipped: needs root (debootstrap, systemd-nspawn)")
        sys.exit(77)  # ctest's SKIP_RETURN_CODE: reported as skipped, not passed
    unittest.main()
