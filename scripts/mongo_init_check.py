#!/usr/bin/env python3
"""mongo-init-check: the REAL k8s/components/mongodb/init-replica-set.js, run without mongod or mongosh.

Each scenario runs it under node behind a prelude playing mongosh (db, rs, print, printjson, sleep, connect,
process.env) over a simulated replica set with mongod's rules for the calls made: rs.status() throws
NotYetInitialized (94) before replSetInitiate, which needs every member up and then fails AlreadyInitialized; a
primary needs a majority of voters; writes throw NotWritablePrimary off the primary; a reconfig adds at most one
voter (one may be refused: CurrentConfigNotCommittedYet), votes 0 needs priority 0; getUser/getRole give null
when absent, duplicates fail, roles must exist. Members start, sync (STARTUP2), turn SECONDARY on a fake clock
that only sleep() moves: deadlines cost no real time. State (config, users, log of writes) is a JSON file kept
between runs, so re-runs are honest. Proves: syntax; first run (role, users flashsale, flashsale-backup,
flashsale-exporter); idempotent re-run; re-run with member 0 a secondary; members never up (bounded, clear
failure); growing the set (voting and read-only members); bad environment (fails before any command). Each node
run has a 30 s timeout; a runaway loop is stopped after 20,000 commands.

    python3 scripts/mongo_init_check.py [--script PATH]
"""
import argparse, copy, json, os, re, shutil, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRELUDE = r"""
const fs = require("fs"), util = require("util"), vm = require("vm");
const S = JSON.parse(fs.readFileSync(process.env.FAKE_STATE, "utf8"));
const save = () => fs.writeFileSync(process.env.FAKE_STATE, JSON.stringify(S)), clone = (x) => JSON.parse(JSON.stringify(x));
const err = (code, codeName, msg) => Object.assign(new Error(msg), { name: "MongoServerError", code, codeName, errmsg: msg, ok: 0 });
function selectionError() {  // the driver's 30 s serverSelectionTimeoutMS
  S.clock += 30000;
  return Object.assign(new Error("Server selection timed out after 30000 ms"), { name: "MongoServerSelectionError" });
}
const members = () => (S.config ? S.config.members : []);
const votes = (m) => (m.votes === undefined ? 1 : m.votes), prio = (m) => (m.priority === undefined ? 1 : m.priority);
const reachable = (h) => S.startAt[h] != null && S.clock >= S.startAt[h];
function primary() {  // S.primary, once elected (2 s after initiate) and while a majority of voters is up
  if (!S.config || S.primary === null || S.clock < S.electAt) return null;
  const voters = members().filter((m) => votes(m) > 0);
  return voters.filter((m) => reachable(m.host)).length * 2 > voters.length ? S.primary : null;
}
function memberState(h) {  // [health, state, stateStr] as in replSetGetStatus
  if (h === primary()) return [1, 1, "PRIMARY"];
  if (!reachable(h)) return [0, 8, "(not reachable/healthy)"];
  if (h !== S.self && S.clock < Math.max(S.joined[h], S.startAt[h]) + S.syncMs) return [1, 5, "STARTUP2"];
  return [1, 2, "SECONDARY"];
}
function validate(cfg) {
  const bad = (msg) => { throw err(93, "InvalidReplicaSetConfig", msg); };
  if (cfg._id !== S.setName) bad(`Attempting to use a replica set with name ${cfg._id}, but command line reports ${S.setName}`);
  const n = cfg.members.length, voters = cfg.members.filter((m) => votes(m) > 0).length;
  if (new Set(cfg.members.map((m) => m._id)).size < n || new Set(cfg.members.map((m) => m.host)).size < n) bad("duplicate _id or host");
  for (const m of cfg.members) {
    if (typeof m._id !== "number" || typeof m.host !== "string" || ![0, 1].includes(votes(m)) || prio(m) < 0) bad(`bad member ${m.host}`);
    if (votes(m) === 0 && prio(m) !== 0) bad("priority must be 0 when non-voting (votes:0)");
  }
  if (n > 50 || voters < 1 || voters > 7) bad(`Replica set configuration contains ${voters} voting members, but must be at least 1 and at most 7`);
}
function checkRoles(roles) {
  if (!Array.isArray(roles)) throw err(2, "BadValue", 'the command requires a "roles" array');
  const builtin = ["read", "readWrite", "backup", "restore", "root", "clusterMonitor"];
  for (const r of roles) if (!builtin.includes(r.role) && !S.roles[`${r.db}.${r.role}`]) throw err(31, "RoleNotFound", `No role ${r.role}@${r.db}`);
}
function checkPwd(pwd) { if (typeof pwd !== "string" || pwd === "") throw err(2, "BadValue", "Password cannot be empty"); }
const WRITES = ["replSetReconfig", "createUser", "updateUser", "createRole", "updateRole", "grantRolesToUser"];
function command(conn, dbName, cmd) {
  if (++S.calls > 20000) { console.error("fake mongosh: over 20000 commands (a loop without a deadline?)"); save(); process.exit(3); }
  S.clock += 1;
  const name = Object.keys(cmd)[0], node = conn.rs ? primary() : conn.host;
  if (node === null) throw selectionError();
  if (WRITES.includes(name) && node !== primary()) throw err(10107, "NotWritablePrimary", "not primary");
  const healthy = members().filter((m) => memberState(m.host)[1] <= 2).map((m) => m.host);
  const entry = { op: name, node, clock: S.clock, healthy, cmd: clone(cmd) }, logged = WRITES.includes(name) || name === "replSetInitiate";
  try {
    const res = execute(node, dbName, cmd, name);
    if (logged) S.log.push(entry);
    return res;
  } catch (e) {  // a failed write is logged as "failed <op>"
    if (logged) S.log.push(Object.assign(entry, { op: `failed ${name}`, error: e.codeName }));
    throw e;
  }
}
function execute(node, dbName, cmd, name) {
  const key = (n) => `${dbName}.${n}`, user = S.users[key(cmd[name])];
  switch (name) {
    case "hello": {
      if (!S.config) return { isWritablePrimary: false, secondary: false, info: "Does not have a valid replica set config", ok: 1 };
      const p = primary(), r = { setName: S.setName, isWritablePrimary: node === p, secondary: memberState(node)[1] === 2, me: node, ok: 1 };
      const passives = members().filter((m) => prio(m) === 0).map((m) => m.host);
      return Object.assign(r, { hosts: members().filter((m) => prio(m) > 0).map((m) => m.host) }, p ? { primary: p } : {},
        passives.length ? { passives } : {});
    }
    case "replSetGetStatus": case "replSetGetConfig":
      if (!S.config) throw err(94, "NotYetInitialized", "no replset config has been received");
      if (name === "replSetGetConfig") return { config: clone(S.config), ok: 1 };
      return { set: S.setName, date: new Date(S.clock), myState: memberState(node)[1], ok: 1, members: members().map((m) => {
        const [health, state, stateStr] = memberState(m.host);
        return Object.assign({ _id: m._id, name: m.host, health, state, stateStr }, m.host === node ? { self: true } : {});
      }) };
    case "replSetInitiate": {
      if (S.config) throw err(23, "AlreadyInitialized", "already initialized");
      const cfg = clone(cmd.replSetInitiate);
      validate(cfg);
      if (!cfg.members.some((m) => m.host === node)) throw err(93, "InvalidReplicaSetConfig", "No host in the new configuration maps to this node");
      const down = cfg.members.filter((m) => !reachable(m.host)).map((m) => `${m.host} failed with Connection refused`);
      if (down.length) {
        throw err(74, "NodeNotFound", "replSetInitiate quorum check failed because not all proposed set members responded " +
          `affirmatively: ${down.join(", ")}`);
      }
      S.config = Object.assign(cfg, { version: 1, protocolVersion: 1 });
      for (const m of cfg.members) S.joined[m.host] = S.clock;
      S.primary = node; S.electAt = S.clock + 2000;
      return { ok: 1 };
    }
    case "replSetReconfig": {
      const cfg = clone(cmd.replSetReconfig), old = S.config, voters = (c) => c.members.filter((m) => votes(m) > 0).map((m) => m.host);
      if (S.failReconfigs > 0 && S.failReconfigs--) throw err(308, "CurrentConfigNotCommittedYet", "the current config is not committed yet");
      if (!(cfg.version > old.version)) throw err(103, "NewReplicaSetConfigurationIncompatible", "version must be greater than old");
      validate(cfg);
      const a = voters(old), b = voters(cfg);
      if (a.filter((h) => !b.includes(h)).length + b.filter((h) => !a.includes(h)).length > 1) {
        throw err(103, "NewReplicaSetConfigurationIncompatible",
          "Rejecting reconfig where the new config has a voting member set that differs from the old config by more than one node");
      }
      if (a.filter(reachable).length * 2 <= a.length) throw err(74, "NodeNotFound", "Quorum check failed: not enough voting nodes responded");
      for (const m of cfg.members) if (!old.members.some((o) => o.host === m.host)) S.joined[m.host] = S.clock;
      S.config = cfg;
      return { ok: 1 };
    }
    case "usersInfo": {
      const u = S.users[key(cmd.usersInfo.user)];
      return { users: u ? [{ _id: key(u.user), user: u.user, db: u.db, roles: u.roles }] : [], ok: 1 };
    }
    case "rolesInfo": { const r = S.roles[key(cmd.rolesInfo.role)]; return { roles: r ? [clone(r)] : [], ok: 1 }; }
    case "createUser":
      if (user) throw err(51003, "Location51003", `User "${cmd.createUser}@${dbName}" already exists`);
      checkPwd(cmd.pwd); checkRoles(cmd.roles);
      S.users[key(cmd.createUser)] = { user: cmd.createUser, db: dbName, pwd: cmd.pwd, roles: cmd.roles };
      return { ok: 1 };
    case "updateUser": case "grantRolesToUser":
      if (!user) throw err(11, "UserNotFound", `Could not find user "${cmd[name]}" for db "${dbName}"`);
      if (name === "updateUser") {
        if ("pwd" in cmd) checkPwd(cmd.pwd);
        if ("roles" in cmd) checkRoles(cmd.roles);
        Object.assign(user, { pwd: cmd.pwd ?? user.pwd, roles: cmd.roles ?? user.roles });
      } else {
        checkRoles(cmd.roles);
        user.roles.push(...cmd.roles.filter((r) => !user.roles.some((x) => x.role === r.role && x.db === r.db)));
      }
      return { ok: 1 };
    case "createRole": case "updateRole": {
      const role = cmd[name], exists = !!S.roles[key(role)];
      if (exists && name === "createRole") throw err(51002, "Location51002", `Role "${role}@${dbName}" already exists`);
      if (!exists && name === "updateRole") throw err(31, "RoleNotFound", `Role ${role}@${dbName} not found`);
      if (!Array.isArray(cmd.privileges)) throw err(2, "BadValue", '"privileges" must be an array');
      checkRoles(cmd.roles);
      S.roles[key(role)] = { role, db: dbName, privileges: cmd.privileges, roles: cmd.roles };
      return { ok: 1 };
    }
    default: throw err(59, "CommandNotFound", `no such command: '${name}'`);
  }
}
const cmdFor = (field, doc, name) => Object.assign({ [field]: name }, doc, { user: undefined, role: undefined });
class Database {  // the mongosh methods the script uses, each one command as in mongosh
  constructor(conn, name) { this._conn = conn; this._name = name; }
  getSiblingDB(name) { return new Database(this._conn, name); }
  runCommand(cmd) { return command(this._conn, this._name, JSON.parse(JSON.stringify(cmd))); }
  hello() { return this.runCommand({ hello: 1 }); }
  getUser(user) { const r = this.runCommand({ usersInfo: { user, db: this._name } }); return r.users.length ? r.users[0] : null; }
  getRole(role) { const r = this.runCommand({ rolesInfo: { role, db: this._name } }); return r.roles.length ? r.roles[0] : null; }
  createUser(u) { return this.runCommand(cmdFor("createUser", u, u.user)); }
  updateUser(name, u) { return this.runCommand(cmdFor("updateUser", u, name)); }
  createRole(r) { return this.runCommand(cmdFor("createRole", r, r.role)); }
  updateRole(name, r) { return this.runCommand(cmdFor("updateRole", r, name)); }
  grantRolesToUser(name, roles) { return this.runCommand({ grantRolesToUser: name, roles }); }
}
class ReplicaSet {  // as mongosh's; rs.add: the config with version + 1 and the member (_id max + 1), one replSetReconfig
  constructor(db) { this._db = db.getSiblingDB("admin"); }
  initiate(config = {}) { return this._db.runCommand({ replSetInitiate: config }); }
  status() { return this._db.runCommand({ replSetGetStatus: 1 }); }
  conf() { return this._db.runCommand({ replSetGetConfig: 1 }).config; }
  add(hostport, arb) {
    const c = this.conf(), m = typeof hostport === "string" ? Object.assign({ host: hostport }, arb ? { arbiterOnly: true } : {}) : hostport;
    c.version++;
    if (m._id == null) m._id = Math.max(...c.members.map((x) => x._id)) + 1;
    c.members.push(m);
    return this._db.runCommand({ replSetReconfig: c });
  }
}
let current = new Database({ host: S.self }, "admin");  // the Job: mongodb://<member 0>/admin?directConnection=true
Object.defineProperty(globalThis, "db", { get: () => current, set: (d) => { current = d; globalThis.rs = new ReplicaSet(d); } });
globalThis.rs = new ReplicaSet(current);
globalThis.print = (...a) => console.log(a.map((x) => (typeof x === "string" ? x : util.inspect(x))).join(" "));
globalThis.printjson = (x) => console.log(util.inspect(x, { depth: 8 }));
globalThis.sleep = (ms) => { S.clock += ms; };
Date.now = () => S.clock;
globalThis.connect = (uri, user, pwd) => {  // mongosh: connect(uri, user?, pwd?) returns the URI's database
  const m = /^mongodb:\/\/([^/?@]+)\/?([^?]*)(?:\?(.*))?$/.exec(uri);
  if (!m) throw new Error(`MongoParseError: Invalid scheme or URI ${uri}`);
  const opts = Object.fromEntries(new URLSearchParams(m[3] || "")), conn = opts.replicaSet ? { rs: true } : { host: m[1] };
  S.log.push({ op: "connect", uri, user, clock: S.clock });
  if (opts.replicaSet && opts.replicaSet !== S.setName) throw selectionError();
  if (conn.rs ? primary() === null : !reachable(conn.host)) throw selectionError();
  if (user !== S.rootUser || pwd !== S.rootPassword) throw err(18, "AuthenticationFailed", "Authentication failed.");
  return new Database(conn, m[2] || "test");
};
try {
  vm.runInThisContext(fs.readFileSync(process.argv[2], "utf8"), { filename: process.argv[2] });
} catch (e) {
  save(); console.error(`Uncaught ${e.name}: ${e.message}`); process.exit(1);
}
save();
"""
T0, ROOT_PW = 1_700_000_000_000, "root-pw"
SECRETS = {"ROOT_USERNAME": "root", "ROOT_PASSWORD": ROOT_PW, "APP_PASSWORD": "app-1", "BACKUP_PASSWORD": "backup-1", "EXPORTER_PASSWORD": "exp-1"}


class Fail(Exception):
    pass


def expect(cond, what, out=""):
    if not cond:
        raise Fail(what + ("\n--- script output ---\n" + out[-3000:] if out else ""))


def ensure_node():
    if not shutil.which("node"):
        expect(os.geteuid() == 0, "node is not installed and this is not root: install it with `apt-get install -y nodejs`")
        print("mongo-init-check: installing nodejs", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["install", "-y", "-qq", "nodejs"], ["update", "-qq"], ["install", "-y", "-qq", "nodejs"]):
            if subprocess.run(["apt-get", *cmd], env=env).returncode == 0 and shutil.which("node"):
                break
        expect(shutil.which("node"), "`apt-get install -y nodejs` gave no node binary")
    return shutil.which("node")


class Checker:
    def __init__(self, node, script, tmp, set_name):
        self.node, self.script, self.set, self.runs = node, script, set_name, 0
        self.prelude, self.state_path = os.path.join(tmp, "prelude.js"), os.path.join(tmp, "state.json")
        with open(self.prelude, "w") as f:
            f.write(PRELUDE)

    def state(self, hosts, start=10_000, never=(), members=None):
        """A fresh set (member 0 up at T0, the others at T0 + start ms; `never` never) or one initiated with `members`."""
        st = {"setName": self.set, "self": hosts[0], "clock": T0, "syncMs": 4000, "config": None, "primary": None, "electAt": 0,
              "startAt": {h: None if h in never else T0 + (i and start) for i, h in enumerate(hosts)}, "joined": {}, "calls": 0,
              "log": [], "roles": {}, "rootUser": "root", "rootPassword": ROOT_PW,
              "users": {"admin.root": {"user": "root", "db": "admin", "pwd": ROOT_PW, "roles": [{"role": "root", "db": "admin"}]}}}
        if members:
            st.update(config={"_id": self.set, "version": 1, "protocolVersion": 1, "members": members}, primary=hosts[0])
            for m in members:
                st["joined"][m["host"]] = T0 - 3_600_000
                st["startAt"][m["host"]] = None if m["host"] in never else T0 - 3_600_000
        return st

    def run(self, st, env):
        self.runs += 1
        with open(self.state_path, "w") as f:
            json.dump(st, f)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "FAKE_STATE": self.state_path, **{k: v for k, v in env.items() if v is not None}}
        try:
            p = subprocess.run([self.node, self.prelude, self.script], env=env, capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            raise Fail("the script did not finish within 30 s of real time (a wait without a deadline?)")
        with open(self.state_path) as f:
            return p.returncode, p.stdout + p.stderr, json.load(f)


def ops(st, *names, since=0):
    return [e for e in st["log"][since:] if e["op"] in names]


def wrote(st):  # successful writes (failed ones are logged as "failed <op>")
    return [e for e in st["log"] if not e["op"].startswith("failed")]


def secs(entry):
    return f"{(entry['clock'] - T0) / 1000:.0f}"


def users_ok(st, app, backup, out, exporter="exp-1"):
    u, role = st["users"], st["roles"].get("admin.flashsale-oplog-replay", {})
    expect(u.get("admin.flashsale", {}).get("roles") == [{"role": "readWrite", "db": "flashsale"}] and u["admin.flashsale"]["pwd"] == app,
           "user flashsale wrong", out)
    expect(u.get("admin.flashsale-backup", {}).get("roles") == [{"role": "backup", "db": "admin"}, {"role": "restore", "db": "admin"}]
           and u["admin.flashsale-backup"]["pwd"] == backup, "user flashsale-backup wrong", out)
    expect(u.get("admin.flashsale-exporter", {}).get("roles") == [{"role": "clusterMonitor", "db": "admin"}, {"role": "read", "db": "local"}]
           and u["admin.flashsale-exporter"]["pwd"] == exporter, "user flashsale-exporter wrong", out)
    expect({"role": "flashsale-oplog-replay", "db": "admin"} in u["admin.root"]["roles"], "root lacks flashsale-oplog-replay", out)
    expect(role.get("privileges") == [{"resource": {"anyResource": True}, "actions": ["anyAction"]}], "role privileges wrong", out)


def main():
    ap = argparse.ArgumentParser(description="mongo-init-check")
    ap.add_argument("--script", default=os.path.join(ROOT, "k8s/components/mongodb/init-replica-set.js"))
    args, started, checks = ap.parse_args(), time.monotonic(), []
    with open(os.path.join(ROOT, "k8s/components/mongodb/kustomization.yaml")) as f:  # the Job's ConfigMap
        literals = dict(re.findall(r"^\s*-\s*(MONGO_\w+)=(\S*)\s*$", f.read(), re.M))
    hosts3 = literals["MONGO_HOSTS"].split(",")
    hosts5 = hosts3 + [re.sub(r"-\d+\.", f"-{i}.", hosts3[0], count=1) for i in range(len(hosts3), 5)]
    env3 = {**SECRETS, **literals}
    env5 = {**env3, "MONGO_HOSTS": ",".join(hosts5), "MONGO_MEMBERS": "5"}
    vote = lambda i, h: {"_id": i, "host": h, "priority": 2 if i == 0 else 1, "votes": 1}
    three = [vote(i, h) for i, h in enumerate(hosts5[:3])]

    def ok(name, detail):
        checks.append(name)
        print(f"mongo-init-check: ok  {name}: {detail}", flush=True)

    with tempfile.TemporaryDirectory(prefix="mongo-init-check.") as tmp:
        c = Checker(ensure_node(), args.script, tmp, literals["MONGO_REPLICA_SET"])
        p = subprocess.run([c.node, "--check", args.script], capture_output=True, text=True, timeout=30)
        expect(p.returncode == 0, "node --check failed", p.stderr)
        ok("syntax", "node --check passes")

        rc, out, st = c.run(c.state(hosts3), env3)
        init, first = ops(st, "replSetInitiate"), ops(st, *["createRole", "createUser", "updateUser", "grantRolesToUser"])
        expect(rc == 0 and len(init) == 1, f"first run: exit {rc}, {len(init)} replSetInitiate", out)
        expect(init[0]["cmd"]["replSetInitiate"] == {"_id": c.set, "members": [vote(i, h) for i, h in enumerate(hosts3)]}, "initiate config", out)
        expect(not ops(st, "replSetReconfig") and set(first[0]["healthy"]) == set(hosts3), "reconfigured, or wrote before all were healthy", out)
        expect(len(ops(st, "createRole")) == 1 and len(ops(st, "createUser")) == 3 and not ops(st, "updateUser"), "want 1 role, 3 users", out)
        users_ok(st, "app-1", "backup-1", out)
        retries = ops(st, "failed replSetInitiate")
        expect(retries and all(e["error"] == "NodeNotFound" for e in retries), f"initiate attempts before all were up: {retries}", out)
        ok("first run", f"initiated once (after {len(retries)} NodeNotFound retries, +{secs(init[0])} s) with priorities "
           f"{[m['priority'] for m in init[0]['cmd']['replSetInitiate']['members']]}; role + 3 users once all healthy (+{secs(first[0])} s)")

        n = len(st["log"])
        rc, out, st2 = c.run(st, {**env3, "APP_PASSWORD": "app-2", "BACKUP_PASSWORD": "backup-2", "EXPORTER_PASSWORD": "exp-2"})
        expect(rc == 0, f"second run exited {rc}", out)
        again = [e["op"] for e in st2["log"][n:] if re.search(r"Initiate|Reconfig|create", e["op"])]
        expect(not again, f"second run tried to initiate, reconfigure or create: {again}", out)
        expect(len(ops(st2, "updateUser", since=n)) == 3 and len(ops(st2, "updateRole", since=n)) == 1 and st2["config"] == st["config"],
               "second run: want 3 updateUser, 1 updateRole, the config unchanged", out)
        users_ok(st2, "app-2", "backup-2", out, "exp-2")
        ok("second run", "no initiate, no reconfig, nothing created twice; the role and the 3 users updated (new passwords)")

        n, st3 = len(st2["log"]), copy.deepcopy(st2)
        st3["primary"] = hosts3[1]
        rc, out, st3 = c.run(st3, env3)
        conns, writes = ops(st3, "connect", since=n), ops(st3, "updateUser", "updateRole", "grantRolesToUser", since=n)
        expect(rc == 0 and len(conns) == 1 and f"replicaSet={c.set}" in conns[0]["uri"], f"failover re-run: exit {rc}, connects {conns}", out)
        expect(writes and all(e["node"] == hosts3[1] for e in writes), "writes did not go to the primary", out)
        ok("failover re-run", f"member 0 secondary: connect({conns[0]['uri']}), {len(writes)} writes on the primary")

        rc, out, st = c.run(c.state(hosts3, never=[hosts3[2]]), env3)
        waited = (st["clock"] - T0) / 1000
        expect(rc != 0 and "gave up after 300 s" in out and "rs.initiate" in out and hosts3[2] in out, "dead member, fresh set: unclear failure", out)
        expect(300 <= waited <= 305 and not wrote(st), f"dead member, fresh set: failed after {waited} s, log {st['log'][:2]}", out)
        rc, out, st = c.run(c.state(hosts3, never=[hosts3[2]], members=three), {**env3, "MONGO_INIT_DEADLINE_SECONDS": "60"})
        waited, msg = (st["clock"] - T0) / 1000, out.strip().splitlines()[-1].replace("Uncaught Error: ", "")
        expect(rc != 0 and "gave up after 60 s" in out and "to be healthy" in out and hosts3[2] in out, "dead member: unclear failure", out)
        expect(60 <= waited <= 65 and not wrote(st), f"dead member: failed after {waited} s, log {st['log'][:2]}", out)
        rc, out2, st = c.run(c.state(hosts3, never=hosts3[1:], members=three), env3)
        expect(rc != 0 and "waiting for a primary" in out2 and 300 <= (st["clock"] - T0) / 1000 <= 305, "majority down: unclear failure", out2)
        ok("members never up", f"fresh set: fails at +300 s (default deadline), so does a set with a majority down (no primary); "
           f"initiated set, 60 s deadline: fails at +{waited:.0f} s: {msg}")

        for name, extra, want in [("grow 3 -> 5", {}, (1, 1)), ("read-only members", {"MONGO_READONLY_MEMBERS": "2"}, (0, 0))]:
            rc, out, st = c.run({**c.state(hosts5, members=copy.deepcopy(three)), "failReconfigs": 1}, {**env5, **extra})
            rcs, new = ops(st, "replSetReconfig"), st["config"]["members"][3:]
            expect([e["error"] for e in ops(st, "failed replSetReconfig")] == ["CurrentConfigNotCommittedYet"], "no refused reconfig", out)
            expect(rc == 0 and not ops(st, "replSetInitiate") and len(rcs) == 2, f"{name}: exit {rc}, want no initiate and 2 reconfigs", out)
            expect(all({m["host"] for m in e["cmd"]["replSetReconfig"]["members"]} >= set(hosts5[:3]) for e in rcs), "a member was removed", out)
            expect(st["config"]["members"][:3] == three and [(m["host"], m["priority"], m["votes"]) for m in new] == [(h, *want) for h in hosts5[3:]],
                   f"{name}: config {st['config']['members']}", out)
            expect(set(ops(st, "grantRolesToUser")[0]["healthy"]) == set(hosts5), "users written before the new members were healthy", out)
            ok(name, f"2 x rs.add with priority {want[0]}, votes {want[1]} (a refused reconfig retried); the 3 members unchanged, "
               "none removed; users after the new ones were healthy")
        rc, out, st = c.run(c.state(hosts5), {**env5, "MONGO_READONLY_MEMBERS": "2", "EXPORTER_PASSWORD": None})
        cfg = ops(st, "replSetInitiate")[-1]["cmd"]["replSetInitiate"]["members"] if rc == 0 else []
        expect([(m["priority"], m["votes"]) for m in cfg] == [(2, 1), (1, 1), (1, 1), (0, 0), (0, 0)], f"fresh set with read-only: {cfg}", out)
        expect("admin.flashsale-exporter" not in st["users"], "flashsale-exporter created without EXPORTER_PASSWORD", out)
        ok("fresh set, read-only", "initiates with priorities/votes (2,1) (1,1) (1,1) (0,0) (0,0); no EXPORTER_PASSWORD, no exporter user")

        eight = ",".join(f"m{i}:27017" for i in range(8))
        bad = [({"MONGO_MEMBERS": "0"}, "MONGO_MEMBERS must be an integer from 1 to 50"), ({"MONGO_READONLY_MEMBERS": "3"}, "MONGO_READONLY_MEMBERS"),
               ({"MONGO_MEMBERS": "8", "MONGO_HOSTS": eight}, "gives 8 voting members: at most 7"),
               ({"MONGO_MEMBERS": "three"}, "MONGO_MEMBERS"), ({"MONGO_MEMBERS": "4"}, "(4) is more than the 3 hosts of MONGO_HOSTS"),
               ({"APP_PASSWORD": ""}, "APP_PASSWORD is empty or unset"), ({"BACKUP_PASSWORD": None}, "BACKUP_PASSWORD is empty or unset"),
               ({"MONGO_REPLICA_SET": ""}, "MONGO_REPLICA_SET"), ({"MONGO_READONLY_MEMBERS": "-1"}, "MONGO_READONLY_MEMBERS"),
               ({"MONGO_INIT_DEADLINE_SECONDS": "0"}, "MONGO_INIT_DEADLINE_SECONDS"), ({"MONGO_HOSTS": ""}, "MONGO_HOSTS")]
        for over, want in bad:
            rc, out, st = c.run(c.state(hosts3), {**env3, **over})
            expect(rc != 0 and want in out and st["calls"] == 0, f"bad environment {over}: want {want!r} before any command", out)
        ok("bad environment", f"{len(bad)} cases (MONGO_MEMBERS=0, missing password, ...) fail before any command, naming the variable")
        print(f"mongo-init-check: PASS ({len(checks)} checks, {c.runs} runs of the real script, {time.monotonic() - started:.1f} s)")


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        print(f"mongo-init-check: FAIL: {e}", file=sys.stderr)
        sys.exit(1)
