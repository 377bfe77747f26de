"""Durability: kill the agent anywhere (SIGKILL) while requests arrive on both intakes, and
lose nothing; run out of disk and recover."""
import json
import os
import random
import signal
import subprocess
import threading
import time
import unittest

from harness import FAKE_RUNSC, AgentTestCase, Client, process_children, spawn_helper_of, wait_for


def drop(spool, name, request):
    tmp = os.path.join(spool, "tmp", name)
    with open(tmp, "w") as f:
        json.dump(request, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, os.path.join(spool, "new", name))


class CrashTest(AgentTestCase):
    def test_thousand_launches_survive_twenty_sigkills(self):
        total, kills = 1000, 20
        a = self.start_agent({"probe": {"attempt_timeout_ms": 2000}, "runsc": {"max_concurrent": 8}})
        spool = os.path.join(a.root, "spool")
        socket_ids = [f"sock-{i}" for i in range(0, total, 2)]
        spool_ids = [f"spool-{i}" for i in range(1, total, 2)]
        accepted = set()
        done = threading.Event()

        def submit_over_socket():
            pending = list(socket_ids)
            while pending and not done.is_set():
                sid = pending[0]
                try:
                    c = Client(a.socket_path, timeout=5)
                    reply = c.call({"op": "launch", "request": a.request(sid, docker={"enabled": sid.endswith("0")})})
                    c.close()
                except (OSError, ValueError, ConnectionError):
                    time.sleep(0.02)  # the agent is down: try again, as a real client would
                    continue
                # exists: an earlier attempt was recorded before the agent died unanswered
                if reply.get("ok") or reply["error"]["code"] == "exists":
                    accepted.add(sid)
                    pending.pop(0)
                elif reply["error"]["code"] in ("overloaded", "internal"):
                    time.sleep(0.02)
                else:
                    raise AssertionError(reply)

        def submit_to_spool():
            for n, sid in enumerate(spool_ids):
                drop(spool, f"{sid}.json", a.request(sid, docker={"enabled": n % 3 == 0}))
                time.sleep(0.002)

        threads = [threading.Thread(target=submit_over_socket), threading.Thread(target=submit_to_spool)]
        for t in threads:
            t.start()
        rng = random.Random(1234)
        for _ in range(kills):
            time.sleep(rng.uniform(0.05, 0.6))
            a.kill()
            time.sleep(rng.uniform(0, 0.05))
            a.start(wait=False)
            wait_for(a.answers, timeout=60, what="the agent to come back")
        for t in threads:
            t.join(300)
        done.set()
        self.assertEqual(accepted, set(socket_ids))

        # Everything settles: each request reached a final word exactly once.
        every = socket_ids + spool_ids

        def settled():
            listed = {s["id"]: s for s in a.call({"op": "list"})["sandboxes"]}
            if not all(sid in listed for sid in every):
                return False
            return all(listed[sid]["state"] in ("ready", "failed") for sid in every) and listed

        listed = wait_for(settled, timeout=300, interval=0.5, what="every request to settle")
        states = {}
        for sid in every:
            s = listed[sid]
            states.setdefault((s["state"], s.get("reason", "")), []).append(sid)
            if s["state"] == "failed":
                # only a sandbox that may have run before a crash is given up on
                self.assertEqual(s["reason"], "agent_restart", s)
        print("\nfinal states:", {k: len(v) for k, v in states.items()})
        why = {}
        for sid in states.get(("failed", "agent_restart"), []):
            why[listed[sid].get("log_tail", "")] = why.get(listed[sid].get("log_tail", ""), 0) + 1
        print("given up after a restart:", why)
        # Giving up is for sandboxes that may have run; with this runtime nearly none may.
        self.assertGreaterEqual(len(states.get(("ready", ""), [])), total * 95 // 100)

        # No spool file lost or duplicated: each is in exactly one place, under its own name.
        where = {}
        for sub in ("new", "cur", "done", "rejected"):
            for name in os.listdir(os.path.join(spool, sub)):
                where.setdefault(name, []).append(sub)
        self.assertEqual(sorted(where), sorted(f"{sid}.json" for sid in spool_ids))
        self.assertTrue(all(len(v) == 1 and v[0] in ("cur", "done") for v in where.values()), where)
        for sid in spool_ids:
            with open(os.path.join(spool, "status", f"{sid}.json")) as f:
                self.assertEqual(json.load(f)["state"], listed[sid]["state"])

        # No orphan in the runtime, no sandbox run twice: what runs is exactly the ready set.
        def runtime_matches():
            running = fake_list(a)
            ready_runsc_ids = set()
            for sid in every:
                if listed[sid]["state"] == "ready":
                    with open(os.path.join(a.root, "state", f"{sid}.json")) as f:
                        ready_runsc_ids.add(json.load(f)["runsc_id"])
            return sorted(c["id"] for c in running) == sorted(ready_runsc_ids)

        wait_for(runtime_matches, timeout=120, interval=0.5, what="the runtime to hold exactly the ready sandboxes")

    def test_a_launch_killed_before_runsc_create_is_launched_again_from_its_intent_record(self):
        self.kill_a_queued_launch_and_restart()

    def test_a_queued_launch_with_a_reused_id_and_a_large_old_runsc_log_is_launched_again(self):
        # The id's earlier sandbox left logs/ID/runsc.log (logs are kept), larger than anything
        # the agent would read whole: a quota above 16 MiB allows it. No line of it is a call
        # for the new sandbox, so the new one still never reached runsc.
        self.kill_a_queued_launch_and_restart(old_log_mib=24)

    def test_runsc_is_not_asked_to_create_a_sandbox_whose_call_cannot_be_logged(self):
        # Recovery tells whether a sandbox reached runsc by its call line in runsc.log; a call
        # that could not be written there would be made again after a crash. Here (no log
        # quota, so no fresh tmpfs) runsc.log is a directory: the launch fails instead.
        a = self.start_agent({"logs": {"max_bytes_per_sandbox": 0}})
        os.makedirs(os.path.join(a.root, "logs", "unlogged", "runsc.log"))
        final = a.launch(a.request("unlogged"), wait=True)
        self.assertEqual(final["state"], "failed", final)
        self.assertIn("cannot write the call to " + os.path.join(a.root, "logs", "unlogged", "runsc.log"),
                      final["sandbox"]["log_tail"])
        self.assertEqual(final["sandbox"]["reason"], "runsc_create_failed")
        self.assertEqual(fake_list(a), [])
        self.assertEqual(a.launch(a.request("logged"), wait=True)["state"], "ready")

    def test_the_agent_exits_when_its_spawn_helper_dies_and_the_next_start_recovers(self):
        # The helper forks and reaps runsc for the agent; killed, the ends of the calls in
        # flight are unknown: the agent exits as if it had crashed, and recovery decides.
        a = self.start_agent({"runsc": {"timeout_ms": 8000}})
        helper = spawn_helper_of(a.proc.pid)
        self.assertIsNotNone(helper, a.log())
        self.assertIn(f"spawn helper up (pid {helper})", a.log())
        self.assertEqual(a.launch(a.request("before", docker={"enabled": True}), wait=True)["state"], "ready")
        a.launch(a.request("inflight", env=["FAKE_RUNSC=create=hang"]))
        wait_for(lambda: a.status("inflight")["state"] == "creating", timeout=10, what="a runsc call in flight")
        # `creating` is published just before the call goes to the helper: wait for its fork.
        wait_for(lambda: process_children(helper), timeout=10, what="the runsc call as the helper's child")
        os.kill(helper, signal.SIGKILL)
        self.assertEqual(a.proc.wait(10), 70)
        self.assertIn("the spawn helper has gone (it exited): the ends of the runsc calls in flight are unknown",
                      a.log())
        a.start()
        self.assertEqual(a.wait_state("inflight", ("ready", "failed"), timeout=30)["reason"], "agent_restart")
        self.assertEqual(a.status("before")["state"], "ready")  # adopted
        new_helper = spawn_helper_of(a.proc.pid)
        self.assertNotIn(new_helper, (None, helper))
        self.assertEqual(a.launch(a.request("after", docker={"enabled": True}), wait=True)["state"], "ready")

    def test_a_stop_cut_short_by_a_crash_ends_stopped(self):
        # The agent dies after the TERM took the sandbox down but before `runsc delete` came
        # back: the record says stopping, runsc lists the sandbox stopped. The stop was asked
        # for and happened: `stopped`, not `failed`/`agent_restart`.
        self.cut_a_stop_short(ttl_ms=None, reason="stop_requested")

    def test_a_ttl_stop_cut_short_by_a_crash_keeps_its_reason(self):
        self.cut_a_stop_short(ttl_ms=300, reason="ttl_expired")

    def test_a_runsc_that_cannot_list_is_asked_again_and_never_taken_for_empty(self):
        # Recovery decides every record's fate from `runsc list`. A list that fails must not
        # read as "nothing runs": every running sandbox would be failed and deleted.
        a = self.start_agent({"runsc": {"timeout_ms": 3000}})
        self.assertEqual(a.launch(a.request("kept"), wait=True)["state"], "ready")
        a.kill()
        mode = os.path.join(self.tmp, "list-fails")
        wrapper = refusing_runsc(self.tmp, a.runsc, "list", mode)
        fake = a.runsc
        a.runsc = wrapper
        with open(mode, "w") as f:
            f.write("always")
        a.start(wait=False)
        self.assertEqual(a.proc.wait(30), 1, a.log())
        self.assertIn("runsc list failed 3 times (exit code 1: runsc: list refused", a.log())
        a.runsc = fake
        self.assertEqual([c["status"] for c in fake_list(a)], ["running"], "nothing was torn down")
        a.runsc = wrapper
        with open(mode, "w") as f:
            f.write("once")
        a.start()
        self.assertEqual(a.wait_state("kept", ("ready", "failed"))["state"], "ready")
        self.assertIn("runsc list failed (attempt 1 of 3)", a.log())

    def refused_delete(self):
        """An agent whose runsc refuses `delete` until told otherwise, and a sandbox it stopped
        that runsc therefore still holds."""
        mode = os.path.join(self.tmp, "delete-fails")
        with open(mode, "w") as f:
            f.write("always")
        fake = os.path.abspath(FAKE_RUNSC)
        a = self.start_agent({"runsc": {"timeout_ms": 3000}}, runsc=refusing_runsc(self.tmp, fake, "delete", mode))
        self.assertEqual(a.launch(a.request("stuck"), wait=True)["state"], "ready")
        self.assertTrue(a.call({"op": "stop", "id": "stuck", "timeout_ms": 2000})["ok"])
        a.wait_state("stuck", "stopped")
        wait_for(lambda: "stuck runsc delete failed" in a.log(), timeout=10, what="the refused delete logged")
        wait_for(lambda: self.record(a, "stuck")["state"] == "stopped", timeout=10, what="the stopped record")
        return a, mode

    def record(self, a, sid):
        with open(os.path.join(a.root, "state", sid + ".json")) as f:
            return json.load(f)

    def test_a_delete_runsc_refused_is_tried_again_until_it_goes(self):
        # A sandbox runsc would not delete is not finished on disk, keeps its bundle, and is
        # tried again: before, it was recorded finished and forgotten, runsc holding it.
        a, mode = self.refused_delete()
        rec = self.record(a, "stuck")
        self.assertEqual((rec["state"], rec["runsc_created"], rec["finished"]), ("stopped", True, False))
        self.assertTrue(os.path.isdir(os.path.join(a.root, "bundles", "stuck")))
        self.assertEqual(len(fake_list(a)), 1)
        again = a.launch(a.request("stuck"))
        self.assertEqual(again["error"]["code"], "exists", again)
        self.assertIn("runsc has not deleted it yet", again["error"]["message"])
        with open(mode, "w") as f:
            f.write("")
        wait_for(lambda: fake_list(a) == [], timeout=20, what="a later delete")
        wait_for(lambda: self.record(a, "stuck")["finished"], timeout=10, what="the record finished")
        self.assertFalse(os.path.exists(os.path.join(a.root, "bundles", "stuck")))
        self.assertIn("stuck runsc let go of it on a later try", a.log())
        self.assertEqual(a.launch(a.request("stuck"), wait=True)["state"], "ready")

    def test_a_delete_refused_before_a_restart_is_done_by_the_next_start(self):
        a, mode = self.refused_delete()
        a.kill()
        with open(mode, "w") as f:
            f.write("")
        a.start()
        wait_for(lambda: fake_list(a) == [], timeout=20, what="the next start's delete")
        wait_for(lambda: self.record(a, "stuck")["finished"], timeout=10, what="the record finished")
        self.assertEqual(a.status("stuck")["state"], "stopped")

    def cut_a_stop_short(self, ttl_ms, reason):
        a = self.start_agent({"runsc": {"timeout_ms": 3000}})
        req = a.request("s", env=["FAKE_RUNSC=delete=hang"])
        if ttl_ms:
            req["ttl_ms"] = ttl_ms
        self.assertEqual(a.launch(req, wait=True)["state"], "ready")
        if not ttl_ms:
            self.assertTrue(a.call({"op": "stop", "id": "s", "timeout_ms": 5000})["ok"])
        wait_for(lambda: [c["status"] for c in fake_list(a)] == ["stopped"], timeout=10, what="the sandbox to be down")
        time.sleep(0.2)  # the delete is running, and hangs
        with open(os.path.join(a.root, "state", "s.json")) as f:
            self.assertEqual(json.load(f)["state"], "stopping")
        a.kill()
        a.start()
        s = a.wait_state("s", ("stopped", "failed"), timeout=30)
        self.assertEqual((s["state"], s["reason"]), ("stopped", reason), s)

    def kill_a_queued_launch_and_restart(self, old_log_mib=0):
        # One runsc slot, held by a create that hangs: the second launch waits for it. Its
        # only record is the intent, which (no bridge network) already says runsc may hold it.
        a = self.start_agent({"runsc": {"max_concurrent": 1, "timeout_ms": 8000}})
        if old_log_mib:
            logs = os.path.join(a.root, "logs", "queued")
            os.makedirs(logs, exist_ok=True)
            line = b"console output of the earlier sandbox, with runsc create --bundle in it\n"
            with open(os.path.join(logs, "runsc.log"), "wb") as f:
                f.write(line * (old_log_mib * (1 << 20) // len(line) + 1))
        a.launch(a.request("holder", env=["FAKE_RUNSC=create=hang"]))
        wait_for(lambda: a.status("holder")["state"] == "creating", timeout=10, what="the slot to be held")
        a.launch(a.request("queued", docker={"enabled": True}))
        time.sleep(0.3)
        self.assertEqual(a.status("queued")["state"], "accepted")
        with open(os.path.join(a.root, "state", "queued.json")) as f:
            record = json.load(f)
        self.assertEqual((record["state"], record["runsc_created"]), ("accepted", True))
        self.assertIn("capabilities", record)
        a.kill()
        a.start()
        # runsc.log has no `create` of it: never called, so it runs now, once.
        self.assertEqual(a.wait_state("queued", ("ready", "failed"), timeout=30)["state"], "ready")
        self.assertIn("queued recovered: never reached runsc, launching again", a.log())
        self.assertIn("capabilities", a.status("queued"))
        with open(os.path.join(a.root, "state", "queued.json")) as f:
            rid = json.load(f)["runsc_id"]
        self.assertEqual([c["id"] for c in fake_list(a) if c["id"] == rid], [rid])
        # the one that was in runsc create when the agent died may have run: given up on
        self.assertEqual(a.wait_state("holder", ("ready", "failed"), timeout=30)["reason"], "agent_restart")


def refusing_runsc(tmp, runsc, verb, mode_file):
    """A runsc that refuses `verb` while mode_file says "always" (or once, for "once")."""
    wrapper = os.path.join(tmp, f"runsc-refusing-{verb}")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\n"
                f'for a in "$@"; do if [ "$a" = {verb} ] && [ -s {mode_file} ]; then\n'
                f'  [ "$(cat {mode_file})" = once ] && : > {mode_file}\n'
                f'  echo "runsc: {verb} refused" >&2; exit 1\n'
                "fi; done\n"
                f'exec {runsc} "$@"\n')
    os.chmod(wrapper, 0o755)
    return wrapper


def fake_list(agent):
    r = subprocess.run([agent.runsc, "--root", os.path.join(agent.root, "runsc"), "list", "--format=json"],
                       capture_output=True, text=True, timeout=60)
    return json.loads(r.stdout or "null") or []


class DiskTroubleTest(AgentTestCase):
    def test_full_state_disk_fails_launches_clearly_and_recovers(self):
        root = os.path.join(self.tmp, "root")
        state = os.path.join(root, "state")
        os.makedirs(state)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", state], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", state])
        a = self.start_agent(root=root)
        self.assertEqual(a.launch(a.request("before"), wait=True)["state"], "ready")

        def recorded_ready():
            try:
                with open(os.path.join(state, "before.json")) as f:
                    return json.load(f)["state"] == "ready"
            except (OSError, ValueError):
                return False

        # Fill the disk only once no write is in flight (a rename landing later frees a page).
        wait_for(recorded_ready, what="the ready record on disk")
        filler = os.path.join(state, "filler")
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k", "count=1000"], capture_output=True)
        reply = a.launch(a.request("during"))
        self.assertFalse(reply["ok"])
        self.assertEqual(reply["error"]["code"], "internal")
        self.assertIn("No space left on device", reply["error"]["message"])
        self.assertTrue(a.call({"op": "version"})["ok"])  # still up
        self.assertIsNone(a.status("during"))
        os.unlink(filler)
        self.assertEqual(a.launch(a.request("after"), wait=True)["state"], "ready")
        self.assertEqual(a.status("before")["state"], "ready")

    def test_read_only_state_disk(self):
        root = os.path.join(self.tmp, "root")
        state = os.path.join(root, "state")
        os.makedirs(state)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", state], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", state])
        a = self.start_agent(root=root)
        subprocess.run(["mount", "-o", "remount,ro", state], check=True)
        reply = a.launch(a.request("ro"))
        self.assertEqual(reply["error"]["code"], "internal")
        self.assertIn("Read-only file system", reply["error"]["message"])
        subprocess.run(["mount", "-o", "remount,rw", state], check=True)
        self.assertEqual(a.launch(a.request("rw"), wait=True)["state"], "ready")


if __name__ == "__main__":
    unittest.main()
