"""Network namespaces for bridge tests: a test "host" namespace the agent runs in (its bridge,
NAT and nftables rules live and die there) and a "remote" namespace on a veth link, where test
servers (a registry) listen. Traffic never leaves these namespaces: the host namespace has no
route but to the remote one. Everything is torn down by close(), even after a failure.

Also: what a bridge sandbox leaves behind, listed by name, for leak checks."""
import json
import os
import re
import secrets
import subprocess

from harness import unmount_under

HOST_IP, REMOTE_IP = "10.99.0.1", "10.99.0.2"
SUBNET = "10.99.0.0/24"
# Chains the CNI plugins share between sandboxes (created once, never per sandbox).
SHARED_CNI_CHAINS = {"CNI-ADMIN", "CNI-FORWARD", "CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ",
                     "CNI-HOSTPORT-SETMARK"}


def run(*argv, check=True, timeout=30, **kw):
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def tools_missing():
    """Why bridge tests cannot run here, or None."""
    for tool in ("/usr/sbin/ip", "/usr/bin/nsenter", "/usr/sbin/nft", "/usr/sbin/iptables-save"):
        if not os.path.exists(tool):
            return f"{tool} is missing (scripts/install-deps installs it)"
    for plugin in ("bridge", "host-local", "firewall", "portmap"):
        if not os.path.exists(f"/usr/lib/cni/{plugin}"):
            return f"/usr/lib/cni/{plugin} is missing (containernetworking-plugins)"
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    return None


class NetLab:
    def __init__(self):
        tag = secrets.token_hex(3)
        self.host, self.remote = f"sa-h-{tag}", f"sa-r-{tag}"
        self.veth_host, self.veth_remote = f"sah{tag}", f"sar{tag}"
        self.procs = []
        try:
            run("ip", "netns", "add", self.host)
            run("ip", "netns", "add", self.remote)
            run("ip", "link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_remote)
            run("ip", "link", "set", self.veth_host, "netns", self.host)
            run("ip", "link", "set", self.veth_remote, "netns", self.remote)
            for ns, dev, ip in ((self.host, self.veth_host, HOST_IP), (self.remote, self.veth_remote, REMOTE_IP)):
                run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
                run("ip", "-n", ns, "link", "set", dev, "up")
                run("ip", "-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def ns_path(self, ns):
        return f"/run/netns/{ns}"

    def in_host(self, *argv):
        """argv run inside the test host namespace (nsenter does not remount /sys, which runsc needs)."""
        return ["nsenter", f"--net={self.ns_path(self.host)}", *argv]

    def in_remote(self, *argv):
        return ["nsenter", f"--net={self.ns_path(self.remote)}", *argv]

    def spawn_remote(self, argv, **kw):
        p = subprocess.Popen(self.in_remote(*argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        self.procs.append(p)
        return p

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        for ns in (self.host, self.remote):
            # every process still in it (a sandbox a failed test left) goes with it
            pids = run("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            run("ip", "netns", "del", ns, check=False)

    @staticmethod
    def release_pins(root):
        """Unmounts what a killed agent left pinned under ROOT/network (a failed test's)."""
        unmount_under(os.path.join(root, "network", "netns"))

    # ---- what a bridge sandbox leaves behind ----

    def leftovers(self, root, bridge="sa-br0"):
        """Per-sandbox network state still present, by name: interfaces on the bridge, nftables
        chains and map entries of the agent, per-sandbox iptables chains and rules of the CNI
        plugins, IPAM leases, pinned namespaces. Shared things (the bridge itself, the agent's
        base tables, the plugins' shared chains) are not leftovers."""
        found = []
        links = run(*self.in_host("ip", "-o", "link", "show", "master", bridge), check=False).stdout
        found += [f"bridge port {l.split(':')[1].strip()}" for l in links.splitlines() if l.strip()]
        table = run(*self.in_host("nft", "-j", "list", "table", "inet", "sandbox_agent"), check=False).stdout
        if table:
            for item in json.loads(table)["nftables"]:
                if "chain" in item and item["chain"]["name"].startswith("sb_"):
                    found.append(f"nft chain {item['chain']['name']}")
                if "map" in item and item["map"].get("elem"):
                    found.append(f"nft map {item['map']['name']} entries {item['map']['elem']}")
        rules = run(*self.in_host("iptables-save"), check=False).stdout
        for line in rules.splitlines():
            m = re.match(r":(CNI-\S+)", line)
            if m and m.group(1) not in SHARED_CNI_CHAINS:
                found.append(f"iptables chain {m.group(1)}")
            if line.startswith("-A CNI-FORWARD") and "CNI-ADMIN" not in line:
                found.append(f"iptables rule {line}")
            if line.startswith("-A CNI-HOSTPORT-DNAT") or line.startswith("-A POSTROUTING -s 10."):
                found.append(f"iptables rule {line}")
        ipam = os.path.join(root, "network", "ipam", "sandbox-agent")
        if os.path.isdir(ipam):
            found += [f"IPAM lease {n}" for n in os.listdir(ipam) if n not in ("lock",) and not n.startswith("last_reserved_ip")]
        netns_dir = os.path.join(root, "network", "netns")
        if os.path.isdir(netns_dir):
            found += [f"netns {n}" for n in os.listdir(netns_dir)]
        with open("/proc/self/mountinfo") as f:
            found += [f"mount {l.split()[4]}" for l in f if l.split()[4].startswith(os.path.join(root, "network"))]
        return found
