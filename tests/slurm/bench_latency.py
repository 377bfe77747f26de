"""What the sandbox hooks add to a Slurm job, measured (docs/fleet.md quotes it). As root:

  /usr/bin/python3 tests/slurm/bench_latency.py BUILD_DIR fake 30 [K]
  /usr/bin/python3 tests/slurm/bench_latency.py BUILD_DIR real 8 [K]

Prints, for the runtime given (the fake runsc, or the real runsc + dockerd):
  1. the prolog alone (run as slurmd runs it) until the sandbox is ready, and the epilog
     alone until it is stopped: p50 / p90 / max over N jobs, one after another;
  2. `srun -N1 true` on a one-node cluster with the sandbox hooks, with /bin/true as Prolog
     and Epilog, and with no hooks (same host, same Slurm), each started on an idle node: the wall time a user sees per job. (Jobs
     back to back also wait for the previous job's epilog: the node is COMPLETING meanwhile.)
  3. with K: K one-CPU jobs submitted at once (a job array) to one node claiming K CPUs, with
     and without the hooks: the wall time until all have finished, epilogs included.
Everything runs under a temporary directory that is removed at the end.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def line(what, values):
    ms = [v * 1000 for v in values]
    print(f"{what:<44} n={len(ms):<3} p50 {pct(ms, 50):7.0f} ms  p90 {pct(ms, 90):7.0f} ms  "
          f"max {max(ms):7.0f} ms  mean {statistics.mean(ms):7.0f} ms")


def main():
    if len(sys.argv) not in (4, 5) or sys.argv[2] not in ("fake", "real"):
        sys.exit(__doc__)
    build, runtime, n = os.path.abspath(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    k = int(sys.argv[4]) if len(sys.argv) == 5 else 0
    os.environ.update(SANDBOX_AGENT=f"{build}/sandbox-agent", SANDBOXCTL=f"{build}/sandboxctl",
                      SANDBOX_INIT=f"{build}/sandbox-init",
                      FAKE_RUNSC=f"{build}/tests/fake_runsc/fake-runsc")
    sys.path.insert(0, HERE)
    sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
    from slurm_harness import SCRIPTS, Cluster, SlurmTestCase  # noqa: E402
    from harness import AgentProcess, wait_for  # noqa: E402

    tmp = tempfile.mkdtemp(prefix="sa-bench-")
    os.chmod(tmp, 0o755)
    agent = clusters = None
    try:
        root = os.path.join(tmp, "root")
        if runtime == "real":
            from test_real_runsc import RUNSC, make_skeleton
            agent = AgentProcess(root, {"runsc": {"path": RUNSC},
                                        "allowed_host_prefixes": ["ROOT/images", "/usr", "/etc"]}, runsc=RUNSC)
            make_skeleton(agent.rootfs)
            extra = {"mounts": [{"source": "/usr", "destination": "/usr", "readonly": True},
                                {"source": "/etc", "destination": "/etc", "readonly": True}]}
        else:
            agent = AgentProcess(root)
            extra = {}
        agent.start()
        templates = os.path.join(tmp, "templates")
        os.makedirs(templates)
        with open(os.path.join(templates, "default.json"), "w") as f:
            f.write(SlurmTestCase.docker_template(agent.rootfs, **extra))
        conf = os.path.join(tmp, "hooks.conf")
        with open(conf, "w") as f:
            f.write(f"spool = {root}/spool\nsocket = {agent.socket_path}\nsandboxctl = {build}/sandboxctl\n"
                    f"templates = {templates}\n")
        os.chmod(conf, 0o644)

        print(f"runtime {runtime}, {n} jobs each, on {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
        prolog, epilog = [], []
        for job in range(1, n + 1):
            env = {"SLURM_JOB_ID": str(job), "SLURMD_NODENAME": "n1", "SLURM_JOB_UID": "0", "SLURM_JOB_GID": "0",
                   "SLURM_JOB_USER": "root", "SANDBOX_AGENT_SLURM_CONF": conf}
            for name, into in (("prolog", prolog), ("epilog", epilog)):
                start = time.monotonic()
                r = subprocess.run([os.path.join(SCRIPTS, name)], env=env, capture_output=True, text=True,
                                   timeout=300)
                into.append(time.monotonic() - start)
                if r.returncode != 0:
                    sys.exit(f"{name} of job {job} failed: {r.stderr}")
        line("prolog until ready (hook alone)", prolog)
        line("epilog until stopped (hook alone)", epilog)

        results = {}
        clusters = []
        for hooks in ("none", "true", "sandbox"):
            c = Cluster(os.path.join(tmp, f"cluster-{hooks}"), ["n1"], conf, hooks=hooks)
            clusters.append(c)
            c.up()
            times = []
            for _ in range(n):
                c.wait_node("n1", "idle")  # the last job's epilog is done (not timed)
                start = time.monotonic()
                c.cmd("srun", "-N1", "true", timeout=300)
                times.append(time.monotonic() - start)
            c.down()
            results[hooks] = times
        line("srun -N1 true, no hooks", results["none"])
        line("srun -N1 true, Prolog=/bin/true", results["true"])
        line("srun -N1 true, sandbox hooks", results["sandbox"])
        print(f"added per job by the sandbox hooks (p50): "
              f"{1000 * (pct(results['sandbox'], 50) - pct(results['none'], 50)):.0f} ms over no hooks, "
              f"{1000 * (pct(results['sandbox'], 50) - pct(results['true'], 50)):.0f} ms over /bin/true")

        for hooks in ("none", "sandbox") if k else ():
            c = Cluster(os.path.join(tmp, f"array-{hooks}"), ["n1"], conf, hooks=hooks, cpus=k)
            clusters.append(c)
            c.up()
            start = time.monotonic()
            c.sbatch(f"--array=1-{k}", "-n1", "-o", "/dev/null", "--wrap", "true")
            wait_for(lambda: c.cmd("squeue", "-h").stdout.strip() == "", timeout=600, interval=0.05,
                     what="the array to finish")
            print(f"{k} jobs at once on one node, {hooks + ':':<8} all done after {time.monotonic() - start:6.1f} s")
            c.down()
    finally:
        for c in clusters or []:
            try:
                c.down()
            except Exception as e:  # noqa: BLE001
                print(e, file=sys.stderr)
        if agent:
            agent.kill()
            agent.kill_fake_daemon()
            if runtime == "real":
                from test_real_runsc import RUNSC, runsc_list
                rr = os.path.join(agent.root, "runsc")
                for s in runsc_list(rr):
                    subprocess.run([RUNSC, "--root", rr, "delete", "--force", s["id"]], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
