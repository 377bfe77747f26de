"""Slurm tests: a real Slurm 22.05 cluster on this host (scripts/slurm/cluster: own munged,
slurmctld, one slurmd per node name) whose Prolog/Epilog/TaskProlog are the sandbox hooks of
scripts/slurm/, talking to a real sandbox-agent through its spool and socket.

Each test has its own temporary directory (agent root, cluster, templates, hook config);
every wait is bounded; teardown cancels the jobs (their epilogs stop the sandboxes), stops the
cluster's daemons by pid, then the agent, and fails on any process left behind.
"""
import json
import os
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import SANDBOXCTL, AgentTestCase, pids_with_cmdline, wait_for  # noqa: E402

SCRIPTS = os.path.normpath(os.path.join(HERE, "..", "..", "scripts", "slurm"))
CLUSTER = os.path.join(SCRIPTS, "cluster")
NOBODY = 65534
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL")


def run(cmd, timeout=60, check=False, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check, **kw)


class Cluster:
    """scripts/slurm/cluster up/down, and the Slurm client commands against it."""

    def __init__(self, path, nodes, hook_conf=None, hooks="sandbox", cpus=None):
        """hooks: "sandbox" (scripts/slurm/), "true" (/bin/true as Prolog/Epilog) or "none";
        cpus: CPUs each node claims (default 2)."""
        self.path = path
        self.nodes = list(nodes)
        self.env = dict(os.environ, SLURM_CONF=os.path.join(path, "slurm.conf"))
        self.up_env = dict(os.environ)
        if hook_conf:
            self.up_env["SANDBOX_AGENT_SLURM_CONF"] = hook_conf
        if hooks != "sandbox":
            self.up_env["CLUSTER_HOOKS"] = hooks
        if cpus:
            self.up_env["CLUSTER_NODE_CPUS"] = str(cpus)
        self.running = False

    def up(self):
        r = run([CLUSTER, "up", self.path, *self.nodes], timeout=120, env=self.up_env)
        if r.returncode != 0:
            raise AssertionError(f"cluster up failed:\n{r.stdout}\n{r.stderr}")
        self.running = True
        return self

    def down(self):
        if not self.running:
            return ""
        self.running = False
        r = run([CLUSTER, "down", self.path], timeout=300)
        if r.returncode != 0:
            raise AssertionError(f"cluster down failed:\n{r.stdout}\n{r.stderr}")
        return r.stderr

    def cmd(self, *args, timeout=60, check=True, **kw):
        r = run(list(args), timeout=timeout, env=self.env, **kw)
        if check and r.returncode != 0:
            raise AssertionError(f"{shlex.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def sbatch(self, *args, script=None):
        """Submits a batch job; returns its id."""
        r = self.cmd("sbatch", "--parsable", *args, input=script)
        return int(r.stdout.strip().split(";")[0])

    def job(self, job_id):
        """scontrol show job as a dict (one line, Key=Value); None once the job is forgotten."""
        r = self.cmd("scontrol", "show", "job", "-o", str(job_id), check=False)
        if r.returncode != 0:
            return None
        fields = {}
        for word in r.stdout.split():
            if "=" in word:
                k, v = word.split("=", 1)
                fields[k] = v
        return fields

    def ended(self, job_id):
        """The job, once it has ended or is held after a failed launch (a prolog error)."""
        j = self.job(job_id)
        if j and (j.get("JobState") in FINAL_STATES or j.get("Reason") == "launch_failed_requeued_held"):
            return j
        return None

    def wait_done(self, job_id, timeout=120):
        return wait_for(lambda: self.ended(job_id), timeout=timeout, interval=0.1, what=f"job {job_id} to end")

    def node(self, name):
        """(state, reason) of a node, as sinfo prints them."""
        out = self.cmd("sinfo", "-h", "-N", "-n", name, "-o", "%t|%E").stdout.strip()
        state, _, reason = out.partition("|")
        return state, reason

    def wait_node(self, name, state, timeout=60):
        return wait_for(lambda: (n := self.node(name))[0] == state and n, timeout=timeout, interval=0.1,
                        what=f"node {name} to be {state}")

    def slurmd_log(self, node):
        with open(os.path.join(self.path, "log", f"slurmd-{node}.log"), errors="replace") as f:
            return f.read()

    def logs(self):
        # The hooks' own messages first: CI keeps only the start and the end of a failure's output.
        out, hooks = [], []
        logdir = os.path.join(self.path, "log")
        for name in sorted(os.listdir(logdir)) if os.path.isdir(logdir) else []:
            with open(os.path.join(logdir, name), errors="replace") as f:
                text = f.read()
            hooks += [f"{name}: {line}" for line in text.splitlines()
                      if name.endswith(".log") and ("sandbox " in line or "log failed" in line)]
            out.append(f"--- {name} ---\n{text[-6000:]}")
        return "\n".join(["--- what the hooks said ---", *hooks, *out])


class SlurmTestCase(AgentTestCase):
    """An agent (fake runtime unless agent_for() says otherwise), a template directory, the
    hooks' config, and clusters started through start_cluster()."""

    prolog_timeout = 30

    def setUp(self):
        super().setUp()
        os.chmod(self.tmp, 0o755)  # job users reach the hooks, slurm.conf and the sockets
        self.clusters = []
        self.templates = os.path.join(self.tmp, "templates")
        os.makedirs(self.templates)
        self.hook_conf = os.path.join(self.tmp, "slurm-hooks.conf")

    def tearDown(self):
        problems = []
        for c in self.clusters:  # first: the epilogs need the agent
            try:
                left = c.down()
                if left:
                    problems.append(left)
            except Exception as e:  # noqa: BLE001 — keep tearing down
                problems.append(str(e))
        if not self._passed():
            for a in self.agents:  # its warnings before the long logs (CI keeps a failure's start)
                print("--- the agent's warnings ---\n" + "\n".join(
                    line for line in a.log().splitlines() if any(f" {level} " in line for level in ("warning", "error", "critical"))))
            for c in self.clusters:
                print(c.logs())
        self.stop_runtime()
        for a in self.agents:
            a.kill()
            # A fake-runsc CLI the agent started just before may start a daemon after a first
            # kill: kill CLI and daemons until none is left.
            wait_for(lambda: (a.kill_fake_daemon(), not pids_with_cmdline(os.path.join(a.root, "runsc")))[1],
                     timeout=10, what="the fake runtime's processes to go")
        leftovers = wait_for_leftovers(self.processes_under_tmp)
        super().tearDown()
        self.assertEqual(problems, [], "cluster teardown")
        self.assertEqual(leftovers, [], "processes left behind")

    def stop_runtime(self):
        """Hook for the real-runsc tests: remove runsc sandboxes before the agent goes."""

    def processes_under_tmp(self):
        found = []
        for pid in pids_with_cmdline(self.tmp):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        continue
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            found.append((pid, cmd[:160]))
        return found

    def write_hook_conf(self, agent, **extra):
        conf = {"spool": os.path.join(agent.root, "spool"), "socket": agent.socket_path,
                "sandboxctl": os.path.abspath(SANDBOXCTL), "templates": self.templates,
                "prolog_timeout": self.prolog_timeout}
        conf.update(extra)
        with open(self.hook_conf, "w") as f:
            f.write("# written by the test\n")
            for k, v in conf.items():
                f.write(f"{k} = {v}\n")
        os.chmod(self.hook_conf, 0o644)

    def write_template(self, name, request):
        """request: a dict, or text (placeholders like @UID@ stand where JSON numbers go)."""
        text = request if isinstance(request, str) else json.dumps(request, indent=2)
        with open(os.path.join(self.templates, name + ".json"), "w") as f:
            f.write(text)

    @staticmethod
    def docker_template(rootfs, **extra):
        """A Docker sandbox for the job: its user owns the socket; labels name the job."""
        body = {"id": "@ID@", "rootfs": rootfs, "docker": {"enabled": True},
                "labels": {"slurm.job": "@JOB_ID@", "slurm.user": "@USER@", "slurm.node": "@NODE@"}}
        body.update(extra)
        text = json.dumps(body, indent=2)
        return text[:-2] + ',\n  "socket_owner": {"uid": @UID@, "gid": @GID@}\n}'

    def start_cluster(self, nodes, **kw):
        c = Cluster(os.path.join(self.tmp, f"cluster{len(self.clusters)}"), nodes, self.hook_conf, **kw)
        self.clusters.append(c)
        return c.up()

    def job_dir(self):
        """A directory the job user (nobody) can write: job scripts, outputs."""
        d = os.path.join(self.tmp, "jobs")
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o777)
        return d


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def connect_as(uid, gid, path):
    """Connects to a Unix socket as another user; returns 'ok' or the exception's name."""
    code = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
            "try:\n s.connect(sys.argv[1]); print('ok')\n"
            "except OSError as e: print(type(e).__name__, e.errno)\n")
    r = run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "/usr/bin/python3", "-c", code, path],
            timeout=30)
    return (r.stdout + r.stderr).strip()


def wait_for_leftovers(find, timeout=5):
    """What find() still returns after processes had timeout seconds to finish exiting."""
    deadline = time.monotonic() + timeout
    while (left := find()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def elapsed(start):
    return time.monotonic() - start
