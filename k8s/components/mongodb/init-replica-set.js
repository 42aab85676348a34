// Run by the flashsale-mongodb-init Job with mongosh against member 0 (root user, directConnection).
// Idempotent: initiates the replica set once, waits for a primary, creates the users once.
const set = process.env.MONGO_REPLICA_SET;
const hosts = process.env.MONGO_HOSTS.split(",");
const members = parseInt(process.env.MONGO_MEMBERS, 10);

let initiated = true;
try {
  rs.status();
} catch (e) {
  if (e.codeName !== "NotYetInitialized") throw e;
  initiated = false;
}
if (!initiated) {
  const config = { _id: set, members: hosts.slice(0, members).map((host, i) => ({ _id: i, host: host, priority: i === 0 ? 2 : 1 })) };
  print("initiating " + JSON.stringify(config));
  rs.initiate(config);
}
for (let i = 0; i < 120 && !db.hello().isWritablePrimary; i++) sleep(1000);
if (!db.hello().isWritablePrimary) throw new Error("member 0 did not become primary");

const admin = db.getSiblingDB("admin");
function ensureUser(name, password, roles) {
  if (admin.getUser(name)) { admin.updateUser(name, { pwd: password, roles: roles }); print("updated user " + name); }
  else { admin.createUser({ user: name, pwd: password, roles: roles }); print("created user " + name); }
}
// mongorestore --oplogReplay (the restore procedure) needs anyAction on anyResource: the root user gets it.
if (!admin.getRole("flashsale-oplog-replay")) {
  admin.createRole({ role: "flashsale-oplog-replay", privileges: [{ resource: { anyResource: true }, actions: ["anyAction"] }], roles: [] });
}
admin.grantRolesToUser(process.env.ROOT_USERNAME, [{ role: "flashsale-oplog-replay", db: "admin" }]);
ensureUser("flashsale", process.env.APP_PASSWORD, [{ role: "readWrite", db: "flashsale" }]);
ensureUser("flashsale-backup", process.env.BACKUP_PASSWORD, [{ role: "backup", db: "admin" }, { role: "restore", db: "admin" }]);
printjson(rs.status().members.map((m) => ({ name: m.name, state: m.stateStr })));
