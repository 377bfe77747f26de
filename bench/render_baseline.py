#!/usr/bin/env python3
"""The Python baseline of bench/render_bench: the same launch request, parsed with Python's
json, validated (the same rules for the fields this request uses, realpath policy included),
turned into the same OCI spec as a dict, and serialised with json.dumps. One core, like
render_bench. `--check` first verifies that the dict equals what `sandbox-agent render`
prints for the request, so the two do the same work.

    python3 bench/render_baseline.py [SECONDS] [--check]
Prints: `specs_per_s N cpu_s C wall_s W count K` (and `equivalent yes|no` with --check).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")
LABEL_RE = re.compile(r"^[A-Za-z0-9._/-]{1,128}$")
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CAPS = ["CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_MKNOD",
        "CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
        "CAP_SETUID", "CAP_SYS_ADMIN", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_RESOURCE"]
REQUEST_KEYS = {"id", "rootfs", "args", "env", "cwd", "user", "hostname", "mounts", "resources", "network", "docker",
                "labels", "socket_owner"}


class Invalid(Exception):
    pass


def host_path(p, prefixes, field):
    if not isinstance(p, str) or not p.startswith("/") or os.path.normpath(p) != p:
        raise Invalid(field)
    real = os.path.realpath(p)
    if not os.path.isdir(real) or not any(real == x or real.startswith(x + "/") for x in prefixes):
        raise Invalid(field)
    return real


def parse(text, prefixes):
    r = json.loads(text)
    if not isinstance(r, dict) or set(r) - REQUEST_KEYS:
        raise Invalid("/")
    sid = r.get("id")
    if not isinstance(sid, str) or not ID_RE.match(sid):
        raise Invalid("/id")
    rootfs = host_path(r.get("rootfs"), prefixes, "/rootfs")
    args = r.get("args", [])
    if not all(isinstance(a, str) for a in args) or (args and not args[0]):
        raise Invalid("/args")
    env = r.get("env", [])
    if not all(isinstance(e, str) and "=" in e[1:] for e in env):
        raise Invalid("/env")
    cwd = r.get("cwd", "/")
    if not cwd.startswith("/"):
        raise Invalid("/cwd")
    user = r.get("user", {"uid": 0, "gid": 0})
    hostname = r.get("hostname", sid)
    if not HOST_RE.match(hostname):
        raise Invalid("/hostname")
    mounts = []
    for i, m in enumerate(r.get("mounts", [])):
        dst = m["destination"]
        if not dst.startswith("/") or dst == "/" or dst.startswith(("/proc", "/sys", "/dev", "/.sandbox-agent")):
            raise Invalid(f"/mounts/{i}/destination")
        mounts.append((host_path(m["source"], prefixes, f"/mounts/{i}/source"), dst, bool(m.get("readonly"))))
    res = r.get("resources", {})
    if "cpus" in res and not 0.01 <= res["cpus"] <= 1024:
        raise Invalid("/resources/cpus")
    if "memory_mb" in res and not 16 <= res["memory_mb"] <= 16777216:
        raise Invalid("/resources/memory_mb")
    if "pids" in res and not 1 <= res["pids"] <= 4194304:
        raise Invalid("/resources/pids")
    if r.get("network", "none") not in ("none", "host"):
        raise Invalid("/network")
    docker = r.get("docker", {})
    if docker.get("cgroup", "auto") not in ("auto", "sandbox", "userns", "host-bind", "none"):
        raise Invalid("/docker/cgroup")
    labels = r.get("labels", {})
    if not all(LABEL_RE.match(k) and isinstance(v, str) and len(v) <= 1024 for k, v in labels.items()):
        raise Invalid("/labels")
    return dict(id=sid, rootfs=rootfs, args=args, env=env, cwd=cwd, user=user, hostname=hostname, mounts=mounts,
                resources=res, network=r.get("network", "none"), docker=docker, labels=labels)


def tmpfs(dst, *opts):
    return {"destination": dst, "type": "tmpfs", "source": "tmpfs", "options": list(opts)}


def render(q, init, sockets, logs, dockerd="dockerd"):
    d = q["docker"]
    args = list(q["args"])
    if d.get("enabled"):
        args = (["/.sandbox-agent/init", "--status-dir", "/.sandbox-agent/sockets", "--log-dir", "/.sandbox-agent/logs",
                 "--dockerd", dockerd, "--cgroup", d.get("cgroup", "auto"), "--dockerd-socket", "/run/docker.sock",
                 "--relay-socket", "/.sandbox-agent/sockets/docker.sock", "--containerd", "containerd",
                 "--dockerd-arg=--iptables=false",
                 "--dockerd-arg=--ip6tables=false", "--dockerd-arg=--bridge=none"]
                + [f"--dockerd-arg={a}" for a in d.get("dockerd_args", [])] + ["--"] + args)
    env = list(q["env"])
    if d.get("enabled") and not any(e.startswith("DOCKER_HOST=") for e in env):
        env.insert(0, "DOCKER_HOST=unix:///run/docker.sock")
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, PATH_ENV)
    mounts = [{"destination": "/proc", "type": "proc", "source": "proc"},
              tmpfs("/dev", "nosuid", "strictatime", "mode=755", "size=65536k"),
              {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
              tmpfs("/dev/shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
              {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
              {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
              tmpfs("/tmp", "nosuid", "nodev", "mode=1777"), tmpfs("/run", "nosuid", "nodev", "mode=755")]
    if d.get("enabled"):
        mounts += [tmpfs("/var/lib/docker", "nosuid", "nodev", "mode=711"), tmpfs("/etc/docker", "nosuid", "nodev", "mode=755"),
                   tmpfs("/var/run", "nosuid", "nodev", "mode=755")]
        if d.get("cgroup", "auto") in ("auto", "sandbox"):
            mounts.append({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                           "options": ["nosuid", "noexec", "nodev", "rw"]})
    mounts += [{"destination": dst, "type": "bind", "source": src, "options": ["rbind", "ro" if ro else "rw"]}
               for src, dst, ro in q["mounts"]]
    mounts.append({"destination": "/.sandbox-agent/init", "type": "bind", "source": init, "options": ["bind", "ro"]})
    if d.get("enabled"):
        mounts += [{"destination": "/.sandbox-agent/sockets", "type": "bind", "source": sockets, "options": ["rbind", "rw"]},
                   {"destination": "/.sandbox-agent/logs", "type": "bind", "source": logs, "options": ["rbind", "rw"]}]
    res, linux_res = q["resources"], {}
    if "cpus" in res:
        linux_res["cpu"] = {"quota": int(round(res["cpus"] * 100000)), "period": 100000}
    if "memory_mb" in res:
        linux_res["memory"] = {"limit": res["memory_mb"] * 1024 * 1024}
    if "pids" in res:
        linux_res["pids"] = {"limit": res["pids"]}
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if q["network"] == "none":
        namespaces.append({"type": "network"})
    annotations = {"dev.sandbox-agent.id": q["id"]}
    annotations.update({f"dev.sandbox-agent.label.{k}": v for k, v in q["labels"].items()})
    caps = list(CAPS)
    spec = {"ociVersion": "1.0.2",
            "process": {"terminal": False, "user": {"uid": q["user"]["uid"], "gid": q["user"]["gid"]}, "args": args,
                        "env": env, "cwd": q["cwd"],
                        "capabilities": {"bounding": caps, "effective": caps, "inheritable": caps, "permitted": caps},
                        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576}],
                        "noNewPrivileges": not d.get("enabled")},
            "root": {"path": q["rootfs"], "readonly": True}, "hostname": q["hostname"], "mounts": mounts,
            "annotations": annotations, "linux": {"namespaces": namespaces, "resources": linux_res}}
    return json.dumps(spec, separators=(",", ":"))


def bench_request(images):
    """The request render_bench uses, byte for byte."""
    return ('{"id":"job-42","rootfs":"' + images + '/ubuntu","args":["/bin/sleep","infinity"],'
            '"env":["LANG=C.UTF-8"],"cwd":"/","user":{"uid":0,"gid":0},"hostname":"job-42",'
            '"mounts":[{"source":"' + images + '/data","destination":"/data","readonly":true}],'
            '"resources":{"cpus":1.0,"memory_mb":2048,"pids":4096},"network":"none",'
            '"docker":{"enabled":true,"cgroup":"auto","dockerd_args":[],"ready_timeout_ms":30000},'
            '"labels":{"batch-job":"1234"},"socket_owner":{"uid":1000,"gid":1000}}')


INIT = "/usr/lib/sandbox-agent/sandbox-init"
SOCKETS, LOGS = "/var/lib/sandbox-agent/sockets/job-42", "/var/lib/sandbox-agent/logs/job-42"


def check(tmp, images, request):
    """Our spec == `sandbox-agent render`'s for the same request and context."""
    with open(os.path.join(tmp, "req.json"), "w") as f:
        f.write(request)
    with open(os.path.join(tmp, "config.json"), "w") as f:
        # Debian's runsc: the portable Docker profile (current gVisor adds --storage-driver=overlay2)
        json.dump({"sandbox_init": INIT, "allowed_host_prefixes": [images], "runsc": {"path": "/usr/bin/runsc"}}, f)
    out = subprocess.run([bl.AGENT, "--config", os.path.join(tmp, "config.json"), "--root", "/var/lib/sandbox-agent",
                          "render", os.path.join(tmp, "req.json")], capture_output=True, text=True)
    if out.returncode != 0:
        return False
    ours = json.loads(render(parse(request, [images]), INIT, SOCKETS, LOGS))
    return ours == json.loads(out.stdout)


def main():
    argv = [a for a in sys.argv[1:] if not a.startswith("--")]
    seconds = float(argv[0]) if argv else 2.0
    tmp = tempfile.mkdtemp(prefix="render-baseline-")
    try:
        images = os.path.join(tmp, "images")
        os.makedirs(os.path.join(images, "ubuntu"))
        os.makedirs(os.path.join(images, "data"))
        request = bench_request(images)
        prefixes = [images]
        if "--check" in sys.argv:
            print("equivalent", "yes" if check(tmp, images, request) else "no")
        count = 0
        w0, c0 = time.perf_counter(), time.process_time()
        end = w0 + seconds
        while time.perf_counter() < end:
            for _ in range(100):
                render(parse(request, prefixes), INIT, SOCKETS, LOGS)
            count += 100
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        print(f"specs_per_s {count / wall:.0f} cpu_s {cpu:.3f} wall_s {wall:.3f} count {count}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
