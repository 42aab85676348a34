// Run by the flashsale-mongodb-init Job (init-job.yaml) with mongosh, as the root user, connected directly to
// member 0 (mongodb://<first of MONGO_HOSTS>/admin?directConnection=true). Safe to re-run; the Job retries it:
//   1. validates its environment and fails at once with a clear message;
//   2. initiates the replica set only if member 0 answers NotYetInitialized (code 94), never again;
//   3. waits for a primary; if member 0 is not it (a re-run after a failover), reconnects through the replica
//      set (connect() with replicaSet=) so every write goes to the primary;
//   4. adds the configured hosts that the set lacks with rs.add, one per reconfig (MONGO_MEMBERS raised, or
//      read-only members added); never removes or changes a member, never re-initiates;
//   5. waits until every configured member is healthy (PRIMARY or SECONDARY);
//   6. creates or updates the flashsale-oplog-replay role (granted to the root user) and the users flashsale
//      (readWrite on flashsale), flashsale-backup (backup + restore) and, with EXPORTER_PASSWORD,
//      flashsale-exporter (clusterMonitor + read on local, for the mongodb_exporter sidecars): a re-run sets
//      their passwords.
// Every wait shares one deadline, MONGO_INIT_DEADLINE_SECONDS, and throws an Error naming what it waited for.
// Environment (ConfigMap flashsale-mongodb-env and Secret flashsale-mongodb-auth):
//   MONGO_REPLICA_SET            replica-set name (mongod --replSet)
//   MONGO_HOSTS                  comma-separated host:port of the members, member 0 first
//   MONGO_MEMBERS                the members: the first MONGO_MEMBERS hosts (at most 7 of them voting)
//   MONGO_READONLY_MEMBERS       default 0: how many of the last members are read-only (priority 0, votes 0:
//                                analytics / read scaling; never primary, no vote, not in w:majority); the
//                                others vote, member 0 with priority 2 (preferred primary), the rest 1
//   MONGO_INIT_DEADLINE_SECONDS  default 300
//   ROOT_USERNAME, ROOT_PASSWORD, APP_PASSWORD, BACKUP_PASSWORD; EXPORTER_PASSWORD optional
// Checked without mongod by scripts/mongo_init_check.py: it runs this file under node in a fake mongosh over a
// simulated replica set (fresh set, re-run, failover, members that never come up, growing set, bad environment).
const env = process.env;
function fail(message) { throw new Error("mongodb-init: " + message); }
function intEnv(name, fallback, min, max) {
  const raw = env[name] === undefined || env[name] === "" ? fallback : env[name];
  if (!/^\d+$/.test(String(raw)) || Number(raw) < min || Number(raw) > max) {
    fail(`${name} must be an integer from ${min} to ${max}, got "${raw === undefined ? "" : raw}"`);
  }
  return Number(raw);
}

const setName = env.MONGO_REPLICA_SET || "";
if (!/^[A-Za-z0-9._-]+$/.test(setName)) fail(`MONGO_REPLICA_SET must be a replica-set name, got "${setName}"`);
const hosts = (env.MONGO_HOSTS || "").split(",").map((h) => h.trim()).filter((h) => h !== "");
if (hosts.length === 0 || new Set(hosts).size !== hosts.length) fail(`MONGO_HOSTS must list distinct host:port, got "${env.MONGO_HOSTS || ""}"`);
const count = intEnv("MONGO_MEMBERS", undefined, 1, 50);
if (count > hosts.length) fail(`MONGO_MEMBERS (${count}) is more than the ${hosts.length} hosts of MONGO_HOSTS`);
const voting = count - intEnv("MONGO_READONLY_MEMBERS", "0", 0, count - 1);
if (voting > 7) fail(`MONGO_MEMBERS - MONGO_READONLY_MEMBERS gives ${voting} voting members: at most 7`);
const deadlineSeconds = intEnv("MONGO_INIT_DEADLINE_SECONDS", "300", 1, 86400);
for (const name of ["ROOT_USERNAME", "ROOT_PASSWORD", "APP_PASSWORD", "BACKUP_PASSWORD"]) {
  if (!env[name]) fail(`${name} is empty or unset`);
}
const wanted = hosts.slice(0, count).map((host, i) =>
  i < voting ? { _id: i, host: host, priority: i === 0 ? 2 : 1, votes: 1 } : { _id: i, host: host, priority: 0, votes: 0 });

// Polls pending() every 2 s until it returns "" (done) or the deadline passes; pending() says what is missing.
const deadline = Date.now() + deadlineSeconds * 1000;
function waitFor(what, pending) {
  for (;;) {
    let missing;
    try { missing = pending(); } catch (e) { missing = e.message; }
    if (!missing) return;
    if (Date.now() >= deadline) fail(`gave up after ${deadlineSeconds} s (MONGO_INIT_DEADLINE_SECONDS) waiting for ${what}: ${missing}`);
    sleep(2000);
  }
}

let initiated = true;
try {
  rs.status();
} catch (e) {
  if (e.code !== 94 && e.codeName !== "NotYetInitialized") throw e;
  initiated = false;
}
if (!initiated) {
  const config = { _id: setName, members: wanted };
  print("initiating " + JSON.stringify(config));
  // replSetInitiate fails until every member answers (pods start in parallel): retry until the deadline.
  waitFor("every member to answer rs.initiate", () => {
    try { rs.initiate(config); } catch (e) { if (e.codeName !== "AlreadyInitialized") throw e; }
    return "";
  });
}

waitFor("a primary", () => (db.hello().primary ? "" : "no primary elected yet"));
const hello = db.hello();
if (!hello.isWritablePrimary) {
  print(`member 0 is not the primary: connecting to the primary ${hello.primary} through replica set ${setName}`);
  db = connect(`mongodb://${hello.primary}/admin?replicaSet=${setName}&authSource=admin`, env.ROOT_USERNAME, env.ROOT_PASSWORD);
}

const present = rs.conf().members.map((m) => m.host);
for (const member of wanted) {
  if (present.includes(member.host)) continue;
  const add = { host: member.host, priority: member.priority, votes: member.votes };
  print("adding " + JSON.stringify(add));
  // A reconfig may be refused while the previous one is not committed yet: retry, unless it did get in.
  waitFor(`rs.add(${member.host})`, () => {
    if (!rs.conf().members.some((m) => m.host === member.host)) rs.add(add);
    return "";
  });
}
for (const host of present) {
  if (!wanted.some((m) => m.host === host)) print(`leaving ${host} in the set: not configured, but never removed here`);
}

waitFor(`all ${wanted.length} members to be healthy (PRIMARY or SECONDARY)`, () => {
  const status = rs.status().members;
  const missing = [];
  for (const member of wanted) {
    const s = status.find((m) => m.name === member.host);
    if (!s || s.health !== 1 || (s.state !== 1 && s.state !== 2)) missing.push(`${member.host} is ${s ? s.stateStr : "not in the set yet"}`);
  }
  return missing.join(", ");
});

const admin = db.getSiblingDB("admin");
function ensureUser(name, password, roles) {
  if (admin.getUser(name)) { admin.updateUser(name, { pwd: password, roles: roles }); print("updated user " + name); }
  else { admin.createUser({ user: name, pwd: password, roles: roles }); print("created user " + name); }
}
// mongorestore --oplogReplay (the restore procedure) needs anyAction on anyResource: the root user gets it.
const replayRole = { privileges: [{ resource: { anyResource: true }, actions: ["anyAction"] }], roles: [] };
if (admin.getRole("flashsale-oplog-replay")) admin.updateRole("flashsale-oplog-replay", replayRole);
else admin.createRole(Object.assign({ role: "flashsale-oplog-replay" }, replayRole));
admin.grantRolesToUser(env.ROOT_USERNAME, [{ role: "flashsale-oplog-replay", db: "admin" }]);
ensureUser("flashsale", env.APP_PASSWORD, [{ role: "readWrite", db: "flashsale" }]);
ensureUser("flashsale-backup", env.BACKUP_PASSWORD, [{ role: "backup", db: "admin" }, { role: "restore", db: "admin" }]);
if (env.EXPORTER_PASSWORD) {
  ensureUser("flashsale-exporter", env.EXPORTER_PASSWORD, [{ role: "clusterMonitor", db: "admin" }, { role: "read", db: "local" }]);
}
printjson(rs.status().members.map((m) => ({ name: m.name, state: m.stateStr })));
