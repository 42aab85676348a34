"""Redis and Sentinel "pods" on loopback: k8s/components/redis's own start scripts (`sh redis-start.sh`,
`sh sentinel-start.sh`, never copies of their logic) with the environment a pod has (the component's
`flashsale-redis-env` literals, its Secret's passwords, its volumes as directories), each on an address of its
own that /etc/hosts maps its pod DNS name to. A pod's data directories outlive its processes, as PVCs do."""

import os
import secrets
import shutil
import signal
import socket
import subprocess

import yaml

from . import Failure, wait

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPONENT = os.path.join(ROOT, "k8s", "components", "redis")
HOSTS, MARKER = "/etc/hosts", "# redis-ha-check"
REDIS_PORT, SENTINEL_PORT = 6379, 26379
PASSWORDS = ("REDIS_SERVICE_PASSWORD", "REDIS_REPLICATION_PASSWORD", "REDIS_SENTINEL_PASSWORD",
             "REDIS_SENTINEL_AUTH_PASSWORD", "REDIS_EXPORTER_PASSWORD")


def generated_literals(name):
    """The KEY=VALUE literals of the component's configMapGenerator `name` (kustomization.yaml)."""
    with open(os.path.join(COMPONENT, "kustomization.yaml")) as f:
        kustomization = yaml.safe_load(f)
    for generator in kustomization.get("configMapGenerator") or []:
        if generator.get("name") == name:
            return dict(literal.split("=", 1) for literal in generator.get("literals") or [])
    raise Failure("k8s/components/redis/kustomization.yaml has no configMapGenerator %s" % name)


def cli(host, port, *args, user=None, password=None, timeout=4.0):
    """`redis-cli --raw` (the password in REDISCLI_AUTH, as the scripts pass it): (exit code, output)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if password:
        env["REDISCLI_AUTH"] = password
    command = ["redis-cli", "-h", host, "-p", str(port), "--raw"] + (["--user", user] if user else []) + list(args)
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "(redis-cli timed out)"
    return done.returncode, (done.stdout + done.stderr).strip()


class Hosts:
    """Adds `address name  # redis-ha-check` lines to /etc/hosts and removes exactly those lines (also lines a
    killed earlier run left). Rewritten in place: /etc/hosts is often a bind mount."""

    def __init__(self, entries):
        self.entries = entries

    def _keep_unmarked(self, extra=""):
        with open(HOSTS) as f:
            lines = f.read().splitlines(keepends=True)
        kept = "".join(line for line in lines if not line.rstrip("\n").endswith(MARKER))
        if kept and not kept.endswith("\n"):
            kept += "\n"
        if kept + extra != "".join(lines):
            with open(HOSTS, "w") as f:
                f.write(kept + extra)

    def add(self):
        with open(HOSTS) as f:
            taken = {name for line in f if not line.rstrip().endswith(MARKER)
                     for name in line.split("#")[0].split()[1:]}
        clash = taken & {name for _, name in self.entries}
        if clash:
            raise Failure("%s already names %s" % (HOSTS, ", ".join(sorted(clash))))
        self._keep_unmarked("".join("%s %s  %s\n" % (address, name, MARKER) for address, name in self.entries))

    def remove(self):
        self._keep_unmarked()


class Pod:
    """One pod: `sh <script>` in a process group of its own (the container), its output in
    <logs>/<pod>.<incarnation>.log."""

    def __init__(self, name, service, address, port, script, env, logs):
        self.name, self.host, self.address, self.port = name, "%s.%s" % (name, service), address, port
        self.script, self.env, self.logs = os.path.join(COMPONENT, script), env, logs
        self.incarnation, self.proc, self.log = 0, None, None

    def start(self):
        self.incarnation += 1
        self.log = os.path.join(self.logs, "%s.%d.log" % (self.name, self.incarnation))
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(["sh", self.script], env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True, cwd=self.logs)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGKILL, timeout=15):
        """Signals the pod's process group and reaps it (SIGKILL after `timeout`)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def tail(self, lines=12):
        return "".join("    %s| %s\n" % (self.name, line) for line in self.text().splitlines()[-lines:])


class Cluster:
    """3 Redis pods and 3 Sentinel pods, with random ACL passwords for the run."""

    def __init__(self, work):
        self.env = generated_literals("flashsale-redis-env")
        self.master = self.env["REDIS_MASTER_NAME"]
        self.passwords = {name: secrets.token_hex(16) for name in PASSWORDS}
        files, logs, bindir = (os.path.join(work, d) for d in ("files", "logs", "bin"))
        for d in (files, logs, bindir):
            os.makedirs(d)
        shutil.copy(os.path.join(COMPONENT, "redis.conf"), files)
        path = os.environ.get("PATH", "/usr/bin:/bin")
        for tool in ("redis-server", "redis-cli"):
            if not shutil.which(tool):
                raise Failure("%s is not installed" % tool)
        if not shutil.which("redis-sentinel"):
            # Debian ships redis-sentinel in a package of its own; it is redis-server started under that name.
            os.symlink(shutil.which("redis-server"), os.path.join(bindir, "redis-sentinel"))
            path = bindir + ":" + path
        self.redis, self.sentinels = [], []
        for i in range(3):
            data = {d: os.path.join(work, "pv", "redis-%d" % i, d) for d in ("data", "run")}
            sdata = os.path.join(work, "pv", "sentinel-%d" % i)
            for d in list(data.values()) + [sdata]:
                os.makedirs(d)
            # The Secret's keys each StatefulSet maps into its pods (redis.yaml, sentinel.yaml).
            common = dict(self.env, PATH=path, REDIS_FILES_DIR=files, REDIS_START_DEADLINE_SECONDS="60",
                          SENTINEL_DOWN_AFTER_MS="2000")
            self.redis.append(Pod("flashsale-redis-%d" % i, "flashsale-redis", "127.0.10.%d" % (i + 1), REDIS_PORT,
                                  "redis-start.sh", dict(common, POD_NAME="flashsale-redis-%d" % i,
                                  REDIS_DATA_DIR=data["data"], REDIS_RUN_DIR=data["run"],
                                  REDIS_BIND="127.0.10.%d" % (i + 1), **self.passwords), logs))
            self.sentinels.append(Pod("flashsale-redis-sentinel-%d" % i, "flashsale-redis-sentinel",
                                      "127.0.11.%d" % (i + 1), SENTINEL_PORT, "sentinel-start.sh",
                                      dict(common, POD_NAME="flashsale-redis-sentinel-%d" % i, SENTINEL_DATA_DIR=sdata,
                                           SENTINEL_BIND="127.0.11.%d" % (i + 1),
                                           **{k: self.passwords[k] for k in PASSWORDS if "SENTINEL" in k}), logs))
        self.pods = self.redis + self.sentinels
        self.hosts = Hosts([(pod.address, pod.host) for pod in self.pods])

    def check_free(self):
        for pod in self.pods:
            with socket.socket() as probe:
                probe.settimeout(1)
                if probe.connect_ex((pod.address, pod.port)) == 0:
                    raise Failure("something already listens on %s:%d" % (pod.address, pod.port))

    def by_host(self, host):
        return next(pod for pod in self.redis if pod.host == host)

    def role(self, pod):
        """ROLE as the replication user (what the scripts ask): its lines, [] when it does not answer."""
        code, out = cli(pod.host, REDIS_PORT, "role", user="replica", password=self.passwords["REDIS_REPLICATION_PASSWORD"])
        lines = out.splitlines()
        return lines if code == 0 and lines[:1] in (["master"], ["slave"]) else []

    def replica_of(self, pod, primary):
        role = self.role(pod)
        return len(role) >= 4 and role[0] == "slave" and role[1] == primary.host and role[3] == "connected"

    def named(self, sentinel):
        """The primary a Sentinel names (get-master-addr-by-name), or its error text."""
        code, out = cli(sentinel.host, SENTINEL_PORT, "sentinel", "get-master-addr-by-name", self.master,
                        password=self.passwords["REDIS_SENTINEL_AUTH_PASSWORD"])
        return out.splitlines()[0] if out else "(no answer)"

    def agreed(self):
        """The primary all three Sentinels name, or None."""
        names = {self.named(s) for s in self.sentinels}
        return self.by_host(names.pop()) if len(names) == 1 and names <= {p.host for p in self.redis} else None

    def successor(self, old):
        """The member every Sentinel names instead of `old`, once it answers ROLE master; else None."""
        named = self.agreed()
        return named if named not in (None, old) and self.role(named)[:1] == ["master"] else None

    def sentinel_sees(self, sentinel, primary):
        """The Sentinel knows the 2 other Sentinels and sees every other member as a replica of `primary`, up
        with its link ok: it can then reconfigure them all at the next failover (a replica a Sentinel has not
        seen yet, which its INFO of the primary shows within 10 s, would wait for failover-timeout, 30 s)."""
        password = self.passwords["REDIS_SENTINEL_AUTH_PASSWORD"]
        _, out = cli(sentinel.host, SENTINEL_PORT, "sentinel", "master", self.master, password=password)
        master = dict(zip(*[iter(out.splitlines())] * 2))
        _, out = cli(sentinel.host, SENTINEL_PORT, "sentinel", "replicas", self.master, password=password)
        replicas, lines = [], out.splitlines()
        for key, value in zip(lines[::2], lines[1::2]):
            if key == "name":
                replicas.append({})
            if replicas:
                replicas[-1][key] = value
        up = {r.get("ip") for r in replicas if r.get("flags") == "slave" and r.get("master-link-status") == "ok"
              and r.get("master-host") == primary.host}
        return master.get("num-other-sentinels") == "2" and up >= {p.host for p in self.redis if p is not primary}

    def healthy(self, primary):
        """primary answers ROLE master, every other member is its connected replica, every Sentinel names it
        and sees those replicas."""
        return (self.role(primary)[:1] == ["master"] and self.agreed() is primary
                and all(self.replica_of(p, primary) for p in self.redis if p is not primary)
                and all(self.sentinel_sees(s, primary) for s in self.sentinels))

    def describe(self):
        return "; ".join(["%s: %s" % (p.name, " ".join(self.role(p)[:2]) or "no answer") for p in self.redis] +
                         ["%s names %s" % (s.name, self.named(s)) for s in self.sentinels])

    def wait(self, what, predicate, timeout):
        """Polls `predicate` until it answers truthy (then returns that and the seconds it took) or fails."""
        return wait(what, predicate, timeout, self.describe)

    def stop_all(self):
        for pod in self.pods:
            pod.stop()
