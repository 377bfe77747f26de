"""The Python SDK against the real agent over its real socket (fake runtime for speed; the
e2e suite runs the docs/python.md example on the real runsc)."""
import os
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))
from harness import AgentProcess, release_log_quotas  # noqa: E402

import sandbox_agent as sa  # noqa: E402


@pytest.fixture
def pooled(tmp_path):
    root = tmp_path / "pooled"
    rootfs = root / "images" / "rootfs"
    rootfs.mkdir(parents=True)
    proc = AgentProcess(str(root), config={"pools": [{"name": "small", "size": 1, "request": {
        "rootfs": str(rootfs), "args": ["/bin/sleep", "infinity"], "docker": {"enabled": True}}}]})
    proc.start()
    yield proc
    proc.kill()
    proc.kill_fake_daemon()
    release_log_quotas(proc.root)


@pytest.fixture
def agent(tmp_path):
    proc = AgentProcess(str(tmp_path / "root"))
    proc.start()
    yield proc
    proc.kill()
    proc.kill_fake_daemon()
    release_log_quotas(proc.root)


def request(proc, **kw):
    r = {"rootfs": proc.rootfs, "args": ["/bin/sleep", "infinity"]}
    r.update(kw)
    return r


def test_launch_waits_for_ready_and_stop_waits_for_stopped(agent):
    client = sa.Agent(root=agent.root)
    assert client.version()
    sb = client.launch(request(agent, id="one", labels={"job": "7"}))
    assert (sb.id, sb.state) == ("one", "ready")
    assert sb.status["labels"] == {"job": "7"}
    assert [s.id for s in client.list()] == ["one"]
    assert sb.stop().state == "stopped"
    assert sb.reason == "stop_requested"
    assert client.stats()["stopped"] == 1


def test_docker_sandbox_gives_a_docker_host(agent):
    client = sa.Agent(socket=agent.socket_path)
    sb = client.launch(request(agent, id="d", docker={"enabled": True}))
    assert sb.docker_host == "unix://" + os.path.join(agent.root, "sockets", "d", "docker.sock")
    sb.stop()


def test_errors_are_exceptions_with_the_agents_code_and_field(agent):
    client = sa.Agent(root=agent.root)
    with pytest.raises(sa.AgentError) as e:
        client.launch(request(agent, docker={"enabled": True, "cgroup": "systemd"}))
    assert (e.value.code, e.value.field) == ("invalid_request", "/docker/cgroup")
    assert "must be one of" in e.value.message
    with pytest.raises(sa.AgentError) as e:
        client.get("nope")
    assert e.value.code == "not_found"
    with pytest.raises(sa.AgentUnreachable):
        sa.Agent(socket=os.path.join(agent.root, "no.sock")).version()


def test_a_failed_launch_raises_with_the_sandbox(agent):
    client = sa.Agent(root=agent.root)
    with pytest.raises(sa.SandboxFailed) as e:
        # the fake runtime fails this sandbox's runsc create (a directive in its env)
        client.launch(request(agent, id="bad", env=["FAKE_RUNSC=create=fail"]))
    assert e.value.sandbox.id == "bad"
    assert e.value.sandbox.state == "failed"
    assert e.value.code == "runsc_create_failed"


def test_a_sandbox_is_stopped_when_its_with_block_ends(agent):
    client = sa.Agent(root=agent.root)
    with client.launch(request(agent, id="ctx")) as sb:
        assert sb.state == "ready"
    assert client.get("ctx").state == "stopped"


def test_extend_and_ttl(agent):
    client = sa.Agent(root=agent.root)
    sb = client.launch(request(agent, id="t", ttl_ms=600000))
    first = sb.status["ttl_deadline"]
    deadline = sb.extend(200)
    assert deadline < first
    assert sb.wait("stopped", timeout=20).reason == "ttl_expired"


def test_watch_yields_state_changes(agent):
    client = sa.Agent(root=agent.root)
    seen = []

    def follow():
        for e in client.watch():
            seen.append(e)
            if e.id == "w" and e.state == "stopped":
                return

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    # the subscription is in place once the agent answered it; a launch after that is seen
    time.sleep(0.3)
    sb = client.launch(request(agent, id="w"))
    sb.stop()
    t.join(20)
    states = [e.state for e in seen if e.id == "w"]
    assert states[0] == "accepted"
    assert "ready" in states and states[-1] == "stopped"
    assert all(isinstance(e, sa.Event) for e in seen)


def test_logs_hands_over_a_read_only_file(agent):
    client = sa.Agent(root=agent.root)
    sb = client.launch(request(agent, id="l", docker={"enabled": True}))
    with sb.logs() as f:  # main: the console, runsc.log
        text = f.read().decode()
        assert " run --detach --bundle " in text
        with pytest.raises(OSError):
            os.write(f.fileno(), b"x")  # read-only
    with sb.logs("dockerd") as f:
        assert f.read() is not None
    with pytest.raises(sa.AgentError) as e:
        sb.logs("kernel")
    assert (e.value.code, e.value.field) == ("invalid_request", "/source")
    plain = client.launch(request(agent, id="p"))
    with pytest.raises(sa.AgentError) as e:
        plain.logs("dockerd")
    assert e.value.field == "/source"


def data_mount(agent):
    d = os.path.join(agent.root, "images", "data")
    os.makedirs(d, exist_ok=True)
    return d, [{"source": d, "destination": "/data"}]


def test_exec_returns_output_and_exit_code(agent):
    sb = sa.Agent(root=agent.root).launch(request(agent, id="x"))
    r = sb.exec(["/bin/sh", "-c", "cat; echo $GREETING >&2; exit 4"], input="to stdin\n", env={"GREETING": "hi"})
    assert (r.exit_code, r.stdout, r.stderr, r.ok) == (4, b"to stdin\n", b"hi\n", False)
    assert sb.exec("echo one line for sh").stdout == b"one line for sh\n"
    big = sb.exec(["/bin/sh", "-c", "head -c 3000000 /dev/zero; head -c 2000000 /dev/zero >&2"])
    assert (len(big.stdout), len(big.stderr)) == (3000000, 2000000)
    with pytest.raises(sa.AgentError) as e:
        sb.exec(["/no/such/thing"])
    assert (e.value.code, e.value.field) == ("invalid_request", "/args/0")
    with pytest.raises(TypeError):
        sb.exec([])


def test_exec_timeout_is_reported(agent):
    sb = sa.Agent(root=agent.root).launch(request(agent, id="x"))
    t = time.monotonic()
    r = sb.exec(["/bin/sleep", "3010.5"], timeout=0.2)
    assert time.monotonic() - t < 5
    assert (r.exit_code, r.signal, r.reason) == (137, 9, "timeout")


def test_start_exec_streams_and_kill_ends_it(agent):
    sb = sa.Agent(root=agent.root).launch(request(agent, id="x"))
    with sb.start_exec(["/bin/sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.05; done"], stdout=sa.PIPE) as p:
        assert p.exec_id
        assert list(p.stdout) == [b"1\n", b"2\n", b"3\n"]
        assert p.wait(timeout=10) == 0
    with sb.start_exec(["/bin/cat"], stdin=sa.PIPE, stdout=sa.PIPE) as p:
        p.stdin.write(b"echoed")
        p.stdin.close()
        assert p.stdout.read() == b"echoed"
        assert p.wait() == 0
    p = sb.start_exec(["/bin/sleep", "3011.5"])
    with pytest.raises(TimeoutError):
        p.wait(timeout=0.2)
    p.kill()
    deadline = time.monotonic() + 10
    while any(b"3011.5" in open(f"/proc/{pid}/cmdline", "rb").read() for pid in os.listdir("/proc") if pid.isdigit()
              and os.path.exists(f"/proc/{pid}/cmdline")):
        assert time.monotonic() < deadline, "the process outlived its client"
        time.sleep(0.05)


def test_exec_with_a_terminal(agent):
    sb = sa.Agent(root=agent.root).launch(request(agent, id="x"))
    with sb.start_exec(["/bin/sh", "-c", "test -t 0 && test -t 1 && echo is-a-tty"], tty=True) as p:
        assert p.wait(timeout=10) == 0
        assert p.pty.read(64).strip() == b"is-a-tty"


def test_upload_and_download(agent, tmp_path):
    d, mounts = data_mount(agent)
    sb = sa.Agent(root=agent.root).launch(request(agent, id="x", mounts=mounts))
    blob = os.urandom(1 << 20) + b"\0\xff"
    assert sb.upload(blob, "/data/blob") == len(blob)
    assert sb.download("/data/blob") == blob
    local = tmp_path / "from-file"
    local.write_bytes(b"a file")
    os.chmod(local, 0o600)
    assert sb.upload(str(local), "/data/copy") == 6
    assert os.stat(os.path.join(d, "copy")).st_mode & 0o777 == 0o600
    assert sb.download("/data/copy", str(tmp_path)) == 6
    assert (tmp_path / "copy").read_bytes() == b"a file"
    with pytest.raises(sa.AgentError) as e:
        sb.download("/data/missing")
    assert (e.value.code, e.value.field) == ("not_found", "/path")
    with pytest.raises(sa.AgentError):
        sb.download("/data/missing", str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()
    assert [n for n in os.listdir(tmp_path) if n.startswith(".sandbox-agent-")] == []


def test_a_sandbox_from_a_pool(pooled):
    client = sa.Agent(root=pooled.root)
    deadline = time.monotonic() + 20
    while client.pools()[0]["ready"] < 1:
        assert time.monotonic() < deadline, client.pools()
        time.sleep(0.05)
    with client.launch({"pool": "small", "id": "mine", "labels": {"k": "v"}}) as sb:
        assert (sb.id, sb.state, sb.status["pool_start"]) == ("mine", "ready", "warm")
        assert sb.docker_host.endswith("/docker.sock")
    with pytest.raises(sa.AgentError) as e:
        client.launch({"pool": "nope"})
    assert (e.value.code, e.value.field) == ("invalid_request", "/pool")


def test_launch_waits_as_long_as_the_agent_does(agent):
    # a per-reply timeout shorter than the sandbox takes to be ready: launch waits anyway
    client = sa.Agent(root=agent.root, timeout=0.5)
    slow = request(agent, id="slow", docker={"enabled": True}, env=["FAKE_RUNSC=dockerd_delay_ms=1500"])
    t = time.monotonic()
    sb = client.launch(slow)
    assert (sb.id, sb.state) == ("slow", "ready")
    assert time.monotonic() - t >= 1.0
    # the caller's own timeout: a TimeoutError naming the sandbox, which still comes up
    slower = request(agent, id="slower", docker={"enabled": True}, env=["FAKE_RUNSC=dockerd_delay_ms=2000"])
    with pytest.raises(TimeoutError) as e:
        client.launch(slower, timeout=0.3)
    assert isinstance(e.value, sa.LaunchTimeout)
    assert e.value.sandbox_id == "slower"
    assert "slower" in str(e.value)
    assert client.get("slower").wait("ready", timeout=10).state == "ready"
    sb.stop()
    client.get("slower").stop()


def test_wait_raises_at_once_when_the_sandbox_ended_otherwise(agent):
    client = sa.Agent(root=agent.root)
    bad = client.launch(request(agent, id="bad", env=["FAKE_RUNSC=create=fail"]), wait=False)
    t = time.monotonic()
    with pytest.raises(sa.SandboxFailed) as e:
        bad.wait("ready", timeout=4)
    assert time.monotonic() - t < 2
    assert (e.value.code, e.value.sandbox.state) == ("runsc_create_failed", "failed")
    done = client.launch(request(agent, id="done"))
    done.stop()
    t = time.monotonic()
    with pytest.raises(sa.SandboxFailed) as e:
        done.wait("ready", timeout=4)
    assert time.monotonic() - t < 2
    assert (e.value.code, e.value.sandbox.state) == ("stop_requested", "stopped")
    assert done.wait(timeout=4).state == "stopped"  # a wanted terminal state is no failure


def test_an_oversized_request_raises_the_agents_too_large(agent):
    client = sa.Agent(root=agent.root)
    big = "x" * (3 << 20)  # over the 1 MiB request limit
    with pytest.raises(sa.AgentError) as e:
        client.launch(request(agent, labels={"big": big}))
    assert e.value.code == "too_large"
    sb = client.launch(request(agent, id="x"))  # the agent is fine, and so is the next connection
    with pytest.raises(sa.AgentError) as e:
        sb.exec(["/bin/echo", big])
    assert e.value.code == "too_large"
    sb.stop()
