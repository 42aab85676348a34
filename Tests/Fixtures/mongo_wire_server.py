#!/usr/bin/env python3
"""In-memory MongoDB stand-in for the Mongo integration tests.

    python mongo_wire_server.py --port P --control-port C [--tls-cert PEM --tls-key PEM]
                                [--replica-set NAME --secondary-port S]

With --replica-set and --secondary-port, two wire ports share one store and
play a replica set NAME: P the primary, S a secondary (`hello` answers setName,
hosts, primary, isWritablePrimary/secondary and lastWrite, so libmongoc
discovers the set and routes by read preference).  The secondary refuses
writes (NotWritablePrimary).  Every journaled command records which member
served it.

With --tls-cert and --tls-key, port P accepts TLS only (the control port stays
plain): clients must negotiate TLS and verify that certificate.

Port P speaks the MongoDB wire protocol (through mockupdb) well enough for
libmongoc's bulk writes, finds and createIndexes: documents live in memory,
keyed by collection name (the database name is ignored).  Port C is a control
channel: one JSON object per line in, one JSON object per line out (relaxed
extended JSON both ways).  Control operations ("op"):

    ping                                   -> {"ok": true}
    documents  collection                  -> {"documents": [...]} (insertion order)
    commands   [name] [role]               -> {"commands": [...]} data-plane journal
                                              (role: primary/secondary: only what it served)
    indexes    collection                  -> {"indexes": [...]} specs as created
    fail       command code errmsg [codeName] [labels] [times=1]
               the next `times` such commands get {ok: 0, code, errmsg, ...}
    writeError command code errmsg [match] [errInfo] [times=1]
               the next `times` insert/update/delete entries whose document
               (insert) or filter (update/delete) has the fields of `match`
               are skipped and reported in writeErrors; the other entries of
               the command are applied regardless of `ordered`
    writeConcernError command [code=64] [errmsg] [labels] [times=1]
               the next `times` such commands are applied and answered with a
               writeConcernError
    hangupAfterWrite command [times=1]
               the next `times` such commands are applied, then the connection
               is closed without a reply
    delayReply command milliseconds [collection] [times=1]
               the next `times` such commands (on `collection` when given) are
               applied, then answered after `milliseconds` (other connections
               are served meanwhile)
    clear      [kind]                      disarm the faults (of that kind) -> {"cleared": n,
                                              "uses": {kind: times a fault of it took effect}}
    down / up  [role]                      hang up on every request (hello included),
                                              on one member with role
    reset                                  clear store, journal, indexes, faults, down
    shutdown                               reply, then exit

`command` may be "*" for every data-plane (journaled) command; `times` < 0
means forever.
Every control reply is {"ok": true, ...} or {"error": "..."}.
Logs go to stderr; nothing is printed to stdout.  SIGTERM/SIGINT exit 0.
"""

import argparse
import copy
import datetime
import logging
import os
import re
import signal
import socketserver
import ssl
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping

import bson
from bson import Int64, ObjectId, json_util
from bson.decimal128 import Decimal128
from bson.max_key import MaxKey
from bson.min_key import MinKey
from bson.regex import Regex
from bson.timestamp import Timestamp
import mockupdb
from mockupdb import OP_MSG_FLAGS, MockupDB, OpMsg

log = logging.getLogger("mongo_wire_server")

# The handshake reply; these values are known to satisfy libmongoc 1.23.
# (No setName and no logicalSessionTimeoutMinutes: drivers see a standalone
# without sessions, so they never retry writes on their own.)
HELLO = {"maxWireVersion": 17, "minWireVersion": 0,
         "isWritablePrimary": True, "ismaster": True}

# Handshake / housekeeping commands that are not journaled (lower case).
NOT_JOURNALED = {
    "hello", "ismaster", "ping", "endsessions", "buildinfo", "saslstart",
    "saslcontinue", "getnonce", "whatsmyuri", "getlog", "getparameter",
    "getcmdlineopts", "hostinfo", "serverstatus", "connectionstatus",
    "getfreemonitoringstatus", "replsetgetstatus", "logout", "authenticate",
}

CODE_NAMES = {
    2: "BadValue", 6: "HostUnreachable", 7: "HostNotFound", 9: "FailedToParse",
    11: "UserNotFound", 13: "Unauthorized", 14: "TypeMismatch",
    26: "NamespaceNotFound", 27: "IndexNotFound", 28: "PathNotViable",
    40: "ConflictingUpdateOperators", 50: "MaxTimeMSExpired",
    59: "CommandNotFound", 64: "WriteConcernFailed", 66: "ImmutableField",
    85: "IndexOptionsConflict", 86: "IndexKeySpecsConflict", 89: "NetworkTimeout",
    91: "ShutdownInProgress", 112: "WriteConflict", 121: "DocumentValidationFailure",
    189: "PrimarySteppedDown", 262: "ExceededTimeLimit", 9001: "SocketException",
    10107: "NotWritablePrimary", 11000: "DuplicateKey", 11600: "InterruptedAtShutdown",
    11602: "InterruptedDueToReplStateChange", 13435: "NotPrimaryNoSecondaryOk",
    13436: "NotPrimaryOrSecondary",
}

JSON_OUT = json_util.RELAXED_JSON_OPTIONS


class MongoFailure(Exception):
    """A server-side error: a command error, or a write error for one entry."""

    def __init__(self, code, errmsg, **extra):
        super().__init__(errmsg)
        self.code = code
        self.errmsg = errmsg
        self.extra = extra

    def write_error(self, index):
        entry = OrderedDict([("index", index), ("code", self.code), ("errmsg", self.errmsg)])
        entry.update(self.extra)
        return entry


def command_error(code, errmsg, code_name=None, labels=None):
    reply = OrderedDict([("ok", 0.0), ("errmsg", errmsg), ("code", code)])
    code_name = code_name or CODE_NAMES.get(code)
    if code_name:
        reply["codeName"] = code_name
    if labels:
        reply["errorLabels"] = list(labels)
    return reply


# --- BSON value comparison (MongoDB's cross-type order, roughly) -------------

def _is_number(value):
    return isinstance(value, (int, float, Decimal128)) and not isinstance(value, bool)


def _rank(value):
    if isinstance(value, MinKey):
        return 0
    if value is None:
        return 1
    if isinstance(value, bool):
        return 8
    if _is_number(value):
        return 2
    if isinstance(value, str):
        return 3
    if isinstance(value, Mapping):
        return 4
    if isinstance(value, list):
        return 5
    if isinstance(value, bytes):
        return 6
    if isinstance(value, ObjectId):
        return 7
    if isinstance(value, datetime.datetime):
        return 9
    if isinstance(value, Timestamp):
        return 10
    if isinstance(value, (Regex, re.Pattern)):
        return 11
    if isinstance(value, MaxKey):
        return 127
    return 50


def _key(value):
    """A sort key; keys of values of different types never compare equal."""
    rank = _rank(value)
    if rank == 2:
        norm = value.to_decimal() if isinstance(value, Decimal128) else value
    elif rank in (3, 8):
        norm = value
    elif rank == 4:
        norm = tuple((k, _key(v)) for k, v in value.items())
    elif rank == 5:
        norm = tuple(_key(v) for v in value)
    elif rank == 6:
        norm = (len(value), getattr(value, "subtype", 0), bytes(value))
    elif rank == 7:
        norm = value.binary
    elif rank == 9:
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        norm = value
    elif rank == 10:
        norm = (value.time, value.inc)
    elif rank == 11:
        norm = (value.pattern, str(getattr(value, "flags", "")))
    elif rank == 50:
        norm = repr(value)
    else:
        norm = 0
    return (rank, norm)


def _eq(a, b):
    return _key(a) == _key(b)


def _compare(a, b):
    """-1/0/1, or None when the types are not comparable (as for $gt etc.)."""
    ka, kb = _key(a), _key(b)
    if ka[0] != kb[0]:
        return None
    return (ka > kb) - (ka < kb)


# --- Dotted paths ------------------------------------------------------------

def _get(doc, path):
    """(found, value) for a dotted path."""
    current = doc
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return False, None
    return True, current


def _set(doc, path, value):
    parts = path.split(".")
    current = doc
    for part in parts[:-1]:
        if isinstance(current, list) and part.isdigit():
            index = int(part)
            while len(current) <= index:
                current.append(None)
            if not isinstance(current[index], (Mapping, list)):
                current[index] = OrderedDict()
            current = current[index]
        elif isinstance(current, Mapping):
            if part not in current:
                current[part] = OrderedDict()
            elif not isinstance(current[part], (Mapping, list)):
                raise MongoFailure(28, "Cannot create field '%s' in element {%s: %r}"
                                   % (parts[-1], part, current[part]))
            current = current[part]
        else:
            raise MongoFailure(28, "Cannot create field '%s'" % part)
    last = parts[-1]
    if isinstance(current, list) and last.isdigit():
        index = int(last)
        while len(current) <= index:
            current.append(None)
        current[index] = value
    elif isinstance(current, Mapping):
        current[last] = value
    else:
        raise MongoFailure(28, "Cannot create field '%s'" % last)


def _unset(doc, path):
    parts = path.split(".")
    found, parent = _get(doc, ".".join(parts[:-1])) if len(parts) > 1 else (True, doc)
    if not found:
        return
    if isinstance(parent, Mapping):
        parent.pop(parts[-1], None)
    elif isinstance(parent, list) and parts[-1].isdigit() and int(parts[-1]) < len(parent):
        parent[int(parts[-1])] = None


def _id_first(doc):
    """MongoDB stores _id as the first field; generate one if missing."""
    if "_id" not in doc:
        return OrderedDict([("_id", ObjectId())] + list(doc.items()))
    if next(iter(doc)) != "_id":
        return OrderedDict([("_id", doc["_id"])] + [(k, v) for k, v in doc.items() if k != "_id"])
    return doc


# --- Query filters -----------------------------------------------------------

def _is_operator_doc(cond):
    return isinstance(cond, Mapping) and len(cond) > 0 and all(k.startswith("$") for k in cond)


def _candidates(value):
    """A field matches when it or, for arrays, one of its elements does."""
    return [value] + (list(value) if isinstance(value, list) else [])


def _match_eq(found, value, target):
    if not found:
        return target is None
    return any(_eq(c, target) for c in _candidates(value))


_ORDER_OPS = {"$gt": lambda c: c > 0, "$gte": lambda c: c >= 0,
              "$lt": lambda c: c < 0, "$lte": lambda c: c <= 0}


def _match_op(found, value, op, arg):
    if op == "$eq":
        return _match_eq(found, value, arg)
    if op == "$ne":
        return not _match_eq(found, value, arg)
    if op in ("$in", "$nin"):
        if not isinstance(arg, list):
            raise MongoFailure(2, "%s needs an array" % op)
        hit = any(_match_eq(found, value, target) for target in arg)
        return hit if op == "$in" else not hit
    if op in _ORDER_OPS:
        if not found:
            return False
        test = _ORDER_OPS[op]
        for candidate in _candidates(value):
            order = _compare(candidate, arg)
            if order is not None and test(order):
                return True
        return False
    if op == "$exists":
        return found == bool(arg)
    if op == "$not":
        return not _match_cond(found, value, arg)
    raise MongoFailure(2, "unknown operator: %s" % op)


def _match_cond(found, value, cond):
    if _is_operator_doc(cond):
        return all(_match_op(found, value, op, arg) for op, arg in cond.items())
    return _match_eq(found, value, cond)


def matches(doc, filt):
    for key, cond in (filt or {}).items():
        if key == "$and":
            if not all(matches(doc, sub) for sub in cond):
                return False
        elif key == "$or":
            if not any(matches(doc, sub) for sub in cond):
                return False
        elif key == "$nor":
            if any(matches(doc, sub) for sub in cond):
                return False
        elif key == "$comment":
            continue
        elif key.startswith("$"):
            raise MongoFailure(2, "unknown top level operator: %s" % key)
        else:
            found, value = _get(doc, key)
            if not _match_cond(found, value, cond):
                return False
    return True


def _equality_fields(filt):
    """The field: value pairs an upsert copies from its filter."""
    fields = OrderedDict()
    for key, cond in (filt or {}).items():
        if key == "$and":
            for sub in cond:
                fields.update(_equality_fields(sub))
        elif key.startswith("$"):
            continue
        elif _is_operator_doc(cond):
            if "$eq" in cond:
                fields[key] = cond["$eq"]
        else:
            fields[key] = cond
    return fields


# --- Updates -----------------------------------------------------------------

def _add(a, b):
    if isinstance(a, Decimal128) or isinstance(b, Decimal128):
        return Decimal128(_key(a)[1] + _key(b)[1])
    if isinstance(a, float) or isinstance(b, float):
        return float(a) + float(b)
    if isinstance(a, Int64) or isinstance(b, Int64):
        return Int64(int(a) + int(b))
    return int(a) + int(b)  # bson widens to int64 if it no longer fits int32


def _is_replacement(update):
    return not any(k.startswith("$") for k in update)


def apply_operators(doc, update, inserting):
    """A copy of doc with $set/$setOnInsert/$inc/$unset applied.

    Like MongoDB 5.0+, fields are processed in lexicographic order of their
    paths, and one path touched by two operators is an error.
    """
    steps = []
    for op, fields in update.items():
        if op not in ("$set", "$setOnInsert", "$inc", "$unset"):
            raise MongoFailure(9, "Unknown modifier: %s. Expected a valid update modifier or pipeline-style update specified as an array" % op)
        if not isinstance(fields, Mapping):
            raise MongoFailure(9, "Modifiers operate on fields but we found another type instead")
        steps.extend((path, op, arg) for path, arg in fields.items())
    steps.sort(key=lambda step: step[0])
    for (before, _, _), (after, _, _) in zip(steps, steps[1:]):
        if after == before or after.startswith(before + "."):
            raise MongoFailure(40, "Updating the path '%s' would create a conflict at '%s'" % (after, before))
    new = copy.deepcopy(doc)
    for path, op, arg in steps:
        if op == "$set" or (op == "$setOnInsert" and inserting):
            _set(new, path, copy.deepcopy(arg))
        elif op == "$unset":
            _unset(new, path)
        elif op == "$inc":
            if not _is_number(arg):
                raise MongoFailure(14, "Cannot increment with non-numeric argument: {%s: %r}" % (path, arg))
            found, current = _get(new, path)
            if found and not _is_number(current):
                raise MongoFailure(14, "Cannot apply $inc to a value of non-numeric type. {_id: %r} has the field '%s' of non-numeric type" % (new.get("_id"), path))
            _set(new, path, _add(current, arg) if found else arg)
    if not inserting and not _eq(new.get("_id"), doc.get("_id")):
        raise MongoFailure(66, "Performing an update on the path '_id' would modify the immutable field '_id'")
    return new


def replace_document(doc, replacement):
    new = OrderedDict([("_id", doc["_id"])])
    for key, value in replacement.items():
        if key == "_id":
            if not _eq(value, doc["_id"]):
                raise MongoFailure(66, "After applying the update, the (immutable) field '_id' was found to have been altered to _id: %r" % (value,))
            continue
        new[key] = copy.deepcopy(value)
    return new


def upsert_document(query, update):
    equality = _equality_fields(query)
    if _is_replacement(update):
        new = OrderedDict()
        if "_id" in equality and "_id" not in update:
            new["_id"] = copy.deepcopy(equality["_id"])
        new.update(copy.deepcopy(update))
    else:
        new = OrderedDict()
        for path, value in equality.items():
            _set(new, path, copy.deepcopy(value))
        new = apply_operators(new, update, inserting=True)
    return _id_first(new)


# --- The server state --------------------------------------------------------

class Store:
    """Collections, indexes, journal and faults; every access holds self.lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.reset()

    def reset(self):
        replica_set = getattr(self, "replica_set", None)
        self.collections = {}   # name -> [document, ...] in insertion order
        self.id_positions = {}  # name -> [list, generation, {_id key: position}, positions indexed] (see by_id)
        self.generation = 0     # bumped when documents are removed (positions shift)
        self.indexes = {}       # name -> [spec, ...] as created
        self.journal = []       # data-plane commands as received
        self.served = []        # the member (role) that received each journal entry
        self.down_roles = set() # members that hang up on everything
        self.replica_set = replica_set  # (name, primary "host:port", secondary "host:port") in replica-set mode
        self.faults = []        # armed fault dicts, oldest first
        self.fault_uses = {}    # kind -> how many times a fault of that kind took effect
        self.down = False

    # Faults ----------------------------------------------------------------

    @staticmethod
    def _aims_at(fault, name):
        """A fault names one command, or "*" for every data-plane command."""
        return fault["command"] == name or (fault["command"] == "*" and name not in NOT_JOURNALED)

    def armed(self, kind, name):
        return any(f["kind"] == kind and self._aims_at(f, name) for f in self.faults)

    def take_fault(self, kind, name, predicate=None):
        """Consume one use of the first armed fault of `kind` for command `name`."""
        for fault in self.faults:
            if fault["kind"] != kind or not self._aims_at(fault, name):
                continue
            if predicate is not None and not predicate(fault):
                continue
            self.fault_uses[kind] = self.fault_uses.get(kind, 0) + 1
            if fault["times"] > 0:
                fault["times"] -= 1
                if fault["times"] == 0:
                    self.faults.remove(fault)
            return fault
        return None

    def injected_write_error(self, name, target, index):
        def hits(fault):
            return all(_get(target, k)[0] and _eq(_get(target, k)[1], v)
                       for k, v in (fault.get("match") or {}).items())
        fault = self.take_fault("writeError", name, hits)
        if fault is None:
            return None
        entry = OrderedDict([("index", index), ("code", fault["code"]), ("errmsg", fault["errmsg"])])
        if fault.get("errInfo") is not None:
            entry["errInfo"] = fault["errInfo"]
        return entry

    # Wire requests ---------------------------------------------------------

    def reply_delay(self, name, cmd):
        """Seconds to hold the reply of this command (a delayReply fault), 0 for none."""
        def hits(fault):
            return fault.get("collection") is None or cmd.get(name) == fault["collection"]
        fault = self.take_fault("delayReply", name.lower(), hits)
        return fault["milliseconds"] / 1000.0 if fault is not None else 0

    WRITES = {"insert", "update", "delete", "findandmodify", "createindexes", "dropindexes", "drop", "create"}

    def execute(self, name, cmd, db, role="primary"):
        """Run one command; answers (reply document, hang up instead of replying)."""
        lname = name.lower()
        if lname not in NOT_JOURNALED:
            self.journal.append(copy.deepcopy(cmd))
            self.served.append(role)
        self.role = role  # the member serving this request (execute runs under self.lock)
        if role == "secondary" and lname in self.WRITES:
            return command_error(10107, "not primary", "NotWritablePrimary"), False
        fault = self.take_fault("fail", lname)
        if fault is not None:
            return command_error(fault["code"], fault["errmsg"], fault.get("codeName"), fault.get("labels")), False
        hangup = self.take_fault("hangupAfterWrite", lname) is not None
        handler = getattr(self, "cmd_" + lname, None)
        try:
            reply = handler(cmd, db) if handler else OrderedDict()
        except MongoFailure as failure:
            return command_error(failure.code, failure.errmsg), hangup
        reply.setdefault("ok", 1.0)
        concern = self.take_fault("writeConcernError", lname)
        if concern is not None:
            wce = OrderedDict([("code", concern.get("code", 64)),
                               ("codeName", concern.get("codeName") or CODE_NAMES.get(concern.get("code", 64), "")),
                               ("errmsg", concern.get("errmsg", "waiting for replication timed out"))])
            reply["writeConcernError"] = wce
            if concern.get("labels"):
                reply["errorLabels"] = list(concern["labels"])
        return copy.deepcopy(reply), hangup

    def _collection(self, cmd, name):
        coll = cmd.get(name)
        if not isinstance(coll, str) or not coll:
            raise MongoFailure(2, "collection name has invalid type")
        return coll

    def by_id(self, coll, value):
        """(document, position) of the document of `coll` whose _id equals `value`, or (None, -1), without a scan:
        positions are indexed as the collection's list grows (inserts and upserts only append; a replacement keeps
        its position and its _id) and indexed anew after a removal or for a new list."""
        docs = self.collections.get(coll)
        if docs is None:
            return None, -1
        state = self.id_positions.get(coll)
        if state is None or state[0] is not docs or state[1] != self.generation or state[3] > len(docs):
            state = self.id_positions[coll] = [docs, self.generation, {}, 0]
        for position in range(state[3], len(docs)):
            state[2][(_rank(docs[position].get("_id")), _key(docs[position].get("_id")))] = position
        state[3] = len(docs)
        position = state[2].get((_rank(value), _key(value)))
        if position is None or not _eq(docs[position].get("_id"), value):
            return None, -1
        return docs[position], position

    @staticmethod
    def only_id(query):
        """The _id a filter names by equality and nothing else, or a marker that it does not."""
        if isinstance(query, Mapping) and list(query) == ["_id"] and not _is_operator_doc(query["_id"]) \
                and not isinstance(query["_id"], (Mapping, list)):
            return query["_id"]
        return Store.only_id

    def check_unique(self, db, coll, doc, exclude=None):
        """Raise E11000 if doc collides with another document on a unique index."""
        specs = [{"name": "_id_", "key": {"_id": 1}}]
        specs += [s for s in self.indexes.get(coll, []) if s.get("unique")]
        for spec in specs:
            key = self._index_key(spec, doc)
            if key is None:
                continue
            if spec["name"] == "_id_":
                other, _ = self.by_id(coll, key[0])
                candidates = [other] if other is not None else []
            else:
                candidates = self.collections.get(coll, [])
            for other in candidates:
                if other is exclude:
                    continue
                other_key = self._index_key(spec, other)
                if other_key is not None and all(_eq(a, b) for a, b in zip(key, other_key)):
                    fields = list(spec["key"].keys())
                    shown = ", ".join("%s: %s" % (f, json_util.dumps(v)) for f, v in zip(fields, key))
                    raise MongoFailure(
                        11000, "E11000 duplicate key error collection: %s.%s index: %s dup key: { %s }"
                        % (db, coll, spec["name"], shown),
                        keyPattern=OrderedDict(spec["key"]),
                        keyValue=OrderedDict(zip(fields, copy.deepcopy(key))))

    @staticmethod
    def _index_options(spec):
        return (bool(spec.get("unique")), bool(spec.get("sparse")), _key(spec.get("partialFilterExpression")))

    @staticmethod
    def _index_key(spec, doc):
        """The unique-index key of doc, or None when the index skips doc."""
        if "partialFilterExpression" in spec and not matches(doc, spec["partialFilterExpression"]):
            return None
        lookups = [_get(doc, field) for field in spec["key"]]
        if spec.get("sparse") and not any(found for found, _ in lookups):
            return None
        return [value for _, value in lookups]

    def cmd_insert(self, cmd, db):
        coll = self._collection(cmd, "insert")
        docs = self.collections.setdefault(coll, [])
        ordered = cmd.get("ordered", True)
        inserted, errors = 0, []
        for index, doc in enumerate(cmd.get("documents") or []):
            injected = self.injected_write_error("insert", doc, index)
            if injected is not None:
                errors.append(injected)
                continue
            try:
                new = _id_first(copy.deepcopy(doc))
                self.check_unique(db, coll, new)
                docs.append(new)
                inserted += 1
            except MongoFailure as failure:
                errors.append(failure.write_error(index))
                if ordered:
                    break
        reply = OrderedDict([("n", inserted)])
        if errors:
            reply["writeErrors"] = errors
        return reply

    def _update_entry(self, db, coll, entry):
        """Apply one update statement; answers (matched, modified, upserted _id or None)."""
        query, update = entry.get("q") or {}, entry.get("u")
        if isinstance(update, list):
            raise MongoFailure(9, "pipeline-style updates are not supported by this stand-in")
        if not isinstance(update, Mapping):
            raise MongoFailure(9, "Update argument must be a document")
        replacement = _is_replacement(update)
        if replacement and entry.get("multi"):
            raise MongoFailure(9, "multi update is not supported for replacement-style update")
        docs = self.collections.get(coll, [])
        wanted = self.only_id(query)
        if wanted is not Store.only_id:
            found, _ = self.by_id(coll, wanted)
            targets = [found] if found is not None else []
        else:
            targets = [d for d in docs if matches(d, query)]
        if not entry.get("multi"):
            targets = targets[:1]
        if not targets:
            if not entry.get("upsert"):
                return 0, 0, None
            new = upsert_document(query, update)
            self.check_unique(db, coll, new)
            self.collections.setdefault(coll, []).append(new)
            return 0, 0, new["_id"]
        modified = 0
        for doc in targets:
            new = replace_document(doc, update) if replacement else apply_operators(doc, update, False)
            if _eq(new, doc):
                continue
            self.check_unique(db, coll, new, exclude=doc)
            _, position = self.by_id(coll, doc.get("_id"))
            if position < 0 or docs[position] is not doc:
                position = next(i for i, d in enumerate(docs) if d is doc)
            docs[position] = new
            modified += 1
        return len(targets), modified, None

    def cmd_update(self, cmd, db):
        coll = self._collection(cmd, "update")
        ordered = cmd.get("ordered", True)
        n, modified, upserted, errors = 0, 0, [], []
        for index, entry in enumerate(cmd.get("updates") or []):
            injected = self.injected_write_error("update", entry.get("q") or {}, index)
            if injected is not None:
                errors.append(injected)
                continue
            try:
                matched, changed, upserted_id = self._update_entry(db, coll, entry)
            except MongoFailure as failure:
                errors.append(failure.write_error(index))
                if ordered:
                    break
                continue
            n += matched
            modified += changed
            if upserted_id is not None:
                n += 1
                upserted.append(OrderedDict([("index", index), ("_id", upserted_id)]))
        reply = OrderedDict([("n", n), ("nModified", modified)])
        if upserted:
            reply["upserted"] = upserted
        if errors:
            reply["writeErrors"] = errors
        return reply

    def cmd_delete(self, cmd, db):
        coll = self._collection(cmd, "delete")
        ordered = cmd.get("ordered", True)
        docs = self.collections.get(coll, [])
        n, errors = 0, []
        for index, entry in enumerate(cmd.get("deletes") or []):
            query = entry.get("q") or {}
            injected = self.injected_write_error("delete", query, index)
            if injected is not None:
                errors.append(injected)
                continue
            try:
                doomed = [d for d in docs if matches(d, query)]
            except MongoFailure as failure:
                errors.append(failure.write_error(index))
                if ordered:
                    break
                continue
            if entry.get("limit"):
                doomed = doomed[:1]
            gone = {id(d) for d in doomed}
            docs[:] = [d for d in docs if id(d) not in gone]
            if doomed:
                self.generation += 1
            n += len(doomed)
        reply = OrderedDict([("n", n)])
        if errors:
            reply["writeErrors"] = errors
        return reply

    def _select(self, coll, cmd, filter_key):
        wanted = self.only_id(cmd.get(filter_key) or {})
        if wanted is not Store.only_id:
            found, _ = self.by_id(coll, wanted)
            docs = [found] if found is not None else []
        else:
            docs = [d for d in self.collections.get(coll, []) if matches(d, cmd.get(filter_key) or {})]
        sort = cmd.get("sort") or {}
        for field, direction in reversed(list(sort.items())):
            if isinstance(direction, Mapping):  # {$meta: ...}: no text scores here
                continue
            docs.sort(key=lambda d, f=field: _key(_get(d, f)[1]), reverse=direction < 0)
        skip = int(cmd.get("skip") or 0)
        limit = abs(int(cmd.get("limit") or 0))
        docs = docs[skip:]
        return docs[:limit] if limit else docs

    @staticmethod
    def _cursor(db, coll, batch, first=True):
        return OrderedDict([("cursor", OrderedDict([
            ("id", Int64(0)), ("ns", "%s.%s" % (db, coll)),
            ("firstBatch" if first else "nextBatch", batch)]))])

    def cmd_find(self, cmd, db):
        coll = self._collection(cmd, "find")
        return self._cursor(db, coll, self._select(coll, cmd, "filter"))

    def cmd_count(self, cmd, db):
        coll = self._collection(cmd, "count")
        return OrderedDict([("n", len(self._select(coll, cmd, "query")))])

    def cmd_getmore(self, cmd, db):
        return self._cursor(db, cmd.get("collection", ""), [], first=False)

    def cmd_killcursors(self, cmd, db):
        return OrderedDict([("cursorsKilled", list(cmd.get("cursors") or [])),
                            ("cursorsNotFound", []), ("cursorsAlive", []), ("cursorsUnknown", [])])

    def cmd_createindexes(self, cmd, db):
        coll = self._collection(cmd, "createIndexes")
        created = coll not in self.collections
        docs = self.collections.get(coll, [])
        specs = list(self.indexes.get(coll, []))  # committed only if every spec is accepted
        before = len(specs) + 1
        for spec in cmd.get("indexes") or []:
            name, key = spec.get("name"), spec.get("key")
            if not isinstance(name, str) or not isinstance(key, Mapping) or not key:
                raise MongoFailure(9, "index specification needs a name and a non-empty key")
            if name == "_id_":
                continue
            same_name = next((s for s in specs if s["name"] == name), None)
            if same_name is not None:
                if not _eq(same_name["key"], key):
                    raise MongoFailure(86, "An existing index has the same name as the requested index but a different key. Requested index: %s, existing index: %s" % (json_util.dumps(spec), json_util.dumps(same_name)))
                if self._index_options(same_name) != self._index_options(spec):
                    raise MongoFailure(85, "An equivalent index already exists with the same name but different options. Requested index: %s" % json_util.dumps(spec))
                continue  # identical: a no-op, as on a real server
            same_key = next((s for s in specs if _eq(s["key"], key)), None)
            if same_key is not None:
                raise MongoFailure(85, "Index already exists with a different name: %s" % same_key["name"])
            if spec.get("unique"):  # refuse, like MongoDB, when existing data collides
                seen = []
                for doc in docs:
                    k = self._index_key(spec, doc)
                    if k is None:
                        continue
                    if any(all(_eq(a, b) for a, b in zip(k, other)) for other in seen):
                        raise MongoFailure(11000, "E11000 duplicate key error collection: %s.%s index: %s" % (db, coll, name))
                    seen.append(k)
            specs.append(copy.deepcopy(spec))
        self.collections.setdefault(coll, [])
        self.indexes[coll] = specs
        return OrderedDict([("createdCollectionAutomatically", created),
                            ("numIndexesBefore", before), ("numIndexesAfter", len(specs) + 1)])

    def cmd_listindexes(self, cmd, db):
        coll = self._collection(cmd, "listIndexes")
        if coll not in self.collections:
            raise MongoFailure(26, "ns does not exist: %s.%s" % (db, coll))
        batch = [OrderedDict([("v", 2), ("key", OrderedDict([("_id", 1)])), ("name", "_id_")])]
        for spec in self.indexes.get(coll, []):
            batch.append(OrderedDict([("v", 2)] + [(k, v) for k, v in spec.items() if k != "v"]))
        return self._cursor(db, coll, batch)

    def cmd_dropindexes(self, cmd, db):
        coll = self._collection(cmd, "dropIndexes")
        wanted = cmd.get("index")
        specs = self.indexes.get(coll, [])
        if wanted == "*":
            specs.clear()
        else:
            keep = [s for s in specs if s["name"] != wanted and not (isinstance(wanted, Mapping) and _eq(s["key"], wanted))]
            if len(keep) == len(specs):
                raise MongoFailure(27, "index not found with name [%s]" % (wanted,))
            specs[:] = keep
        return OrderedDict()

    def cmd_drop(self, cmd, db):
        coll = self._collection(cmd, "drop")
        self.collections.pop(coll, None)
        self.indexes.pop(coll, None)
        return OrderedDict()

    def cmd_dropdatabase(self, cmd, db):
        self.collections.clear()
        self.indexes.clear()
        return OrderedDict()

    def cmd_listcollections(self, cmd, db):
        wanted = (cmd.get("filter") or {}).get("name")
        batch = [OrderedDict([("name", name), ("type", "collection"), ("options", {}),
                              ("info", {"readOnly": False})])
                 for name in self.collections if wanted is None or name == wanted]
        return self._cursor(db, "$cmd.listCollections", batch)

    def cmd_hello(self, cmd, db):
        return self.hello(getattr(self, "role", "primary"))

    cmd_ismaster = cmd_hello

    def hello(self, role):
        """The handshake: a standalone, or one member of the replica set."""
        reply = OrderedDict(HELLO)
        if self.replica_set is None:
            return reply
        name, primary, secondary = self.replica_set
        now = datetime.datetime.now(datetime.timezone.utc)
        reply.update(setName=name, setVersion=1, hosts=[primary, secondary], primary=primary,
                     me=primary if role == "primary" else secondary,
                     isWritablePrimary=role == "primary", ismaster=role == "primary", secondary=role == "secondary",
                     lastWrite={"lastWriteDate": now, "opTime": {"ts": Timestamp(int(now.timestamp()), 1), "t": Int64(1)}},
                     electionId=ObjectId("7fffffff0000000000000001"))
        return reply

    # Control requests ------------------------------------------------------

    def control(self, msg):
        op = msg.get("op")
        if op == "ping":
            return {"ok": True}
        if op == "documents":
            return {"ok": True, "documents": copy.deepcopy(self.collections.get(msg.get("collection"), []))}
        if op == "commands":
            name = (msg.get("name") or "").lower()
            role = msg.get("role")
            return {"ok": True, "commands": [c for c, r in zip(self.journal, self.served)
                                             if (not name or next(iter(c), "").lower() == name) and (not role or r == role)]}
        if op == "indexes":
            return {"ok": True, "indexes": copy.deepcopy(self.indexes.get(msg.get("collection"), []))}
        if op in ("fail", "writeError", "writeConcernError", "hangupAfterWrite", "delayReply"):
            command = msg.get("command")
            if not isinstance(command, str) or not command:
                return {"error": "%s needs a command name" % op}
            times = int(msg.get("times", 1))
            fault = {"kind": op, "command": command.lower(), "times": times}
            if op in ("fail", "writeError"):
                code = msg.get("code")
                if not _is_number(code) or int(code) != code:
                    return {"error": "%s needs an integer code" % op}
                fault["code"] = int(code)
                fault["errmsg"] = msg.get("errmsg") or CODE_NAMES.get(int(code), "injected failure")
            if op == "delayReply":
                delay = msg.get("milliseconds")
                if not _is_number(delay) or delay < 0:
                    return {"error": "delayReply needs milliseconds >= 0"}
                fault["milliseconds"] = delay
            for key in ("codeName", "match", "errInfo", "collection"):
                if msg.get(key) is not None:
                    fault[key] = msg[key]
            if op == "writeConcernError":
                for key in ("code", "errmsg"):
                    if msg.get(key) is not None:
                        fault[key] = msg[key]
            labels = msg.get("labels", msg.get("errorLabels"))
            if labels:
                fault["labels"] = list(labels)
            if times != 0:
                self.faults.append(fault)
            return {"ok": True}
        if op == "clear":
            kind = msg.get("kind")
            cleared = [f for f in self.faults if kind in (None, f["kind"])]
            self.faults = [f for f in self.faults if f not in cleared]
            return {"ok": True, "cleared": len(cleared), "uses": dict(self.fault_uses)}
        if op == "down":
            if msg.get("role"):
                self.down_roles.add(msg["role"])
            else:
                self.down = True
            return {"ok": True}
        if op == "up":
            if msg.get("role"):
                self.down_roles.discard(msg["role"])
            else:
                self.down = False
            return {"ok": True}
        if op == "reset":
            self.reset()
            return {"ok": True}
        if op == "shutdown":  # the control handler stops the process once it has replied
            return {"ok": True}
        return {"error": "unknown op %r" % (op,)}


# --- Wire protocol glue (mockupdb) -------------------------------------------

def _hang_up(request):
    try:
        request.hangup()
    except OSError:
        pass
    return True


def make_wire_handler(store, role="primary"):
    def handle(request):
        """mockupdb responder for every request; False lets auto_ismaster answer."""
        try:
            with store.lock:
                if store.down or role in store.down_roles:
                    return _hang_up(request)
                if not request.is_command:  # legacy opcodes: nothing we speak
                    log.warning("hanging up on legacy request %r", request)
                    return _hang_up(request)
                cmd = request.doc
                name = request.command_name or ""
                db = cmd.get("$db") or request.namespace or "admin"
                if name.lower() == "ismaster" and not store.armed("fail", "ismaster") and store.replica_set is None:
                    return False
                reply, hangup = store.execute(name, cmd, db, role)
                delay = store.reply_delay(name, cmd)
            if delay:
                time.sleep(delay)
            if hangup:
                return _hang_up(request)
            if isinstance(request, OpMsg) and request.flags & OP_MSG_FLAGS["moreToCome"]:
                return True  # unacknowledged write: no reply expected
            request.replies(reply)
            return True
        except OSError:
            return _hang_up(request)
        except Exception:
            log.exception("failed to handle %r", request)
            try:
                request.replies(command_error(8, "mongo_wire_server internal error"))
            except Exception:
                _hang_up(request)
            return True
    return handle


# --- Control channel ---------------------------------------------------------

class ControlServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address, store):
        self.store = store
        super().__init__(address, ControlHandler)


class ControlHandler(socketserver.StreamRequestHandler):
    def handle(self):
        store = self.server.store
        try:
            for line in self.rfile:
                if not line.strip():
                    continue
                msg = None
                try:
                    msg = json_util.loads(line.decode("utf-8"))
                    if not isinstance(msg, dict):
                        raise ValueError("expected a JSON object")
                    with store.lock:
                        reply = json_util.dumps(store.control(msg), json_options=JSON_OUT)
                except Exception as error:
                    reply = json_util.dumps({"error": "%s: %s" % (type(error).__name__, error)})
                self.wfile.write(reply.encode("utf-8") + b"\n")
                if isinstance(msg, dict) and msg.get("op") == "shutdown":
                    store.stopping.set()
                    return
        except OSError:
            pass


# --- TLS ---------------------------------------------------------------------

def serve_tls(cert_file, key_file):
    """Make MockupDB's listening socket a TLS one (its own `ssl` option only knows a bundled certificate).

    The handshake runs on a connection's first read, in that connection's thread, so a client that never
    completes it cannot stall the accept loop."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    bind = mockupdb.bind_tcp_socket

    def bind_tls(address):
        sock, bound = bind(address)
        return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), bound

    mockupdb.bind_tcp_socket = bind_tls


# --- Main --------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="MongoDB wire-protocol port")
    parser.add_argument("--control-port", type=int, required=True, help="JSON-lines control port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--verbose", action="store_true", help="log to stderr at INFO")
    parser.add_argument("--tls-cert", help="PEM certificate (chain): the wire port accepts TLS only")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--replica-set", help="play a replica set of this name (with --secondary-port)")
    parser.add_argument("--secondary-port", type=int, help="the secondary member's wire port")
    args = parser.parse_args(argv)
    if bool(args.replica_set) != bool(args.secondary_port):
        parser.error("--replica-set and --secondary-port go together")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    logging.basicConfig(stream=sys.stderr, level=logging.INFO if args.verbose else logging.WARNING,
                        format="mongo_wire_server: %(levelname)s %(message)s")

    if args.tls_cert:
        serve_tls(args.tls_cert, args.tls_key)
    store = Store()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: store.stopping.set())
    if args.replica_set:
        store.replica_set = (args.replica_set, "%s:%d" % (args.host, args.port), "%s:%d" % (args.host, args.secondary_port))
    mongo = MockupDB(port=args.port, auto_ismaster=dict(HELLO), request_timeout=int(1e6))
    mongo._address = (args.host, args.port)  # MockupDB would bind "localhost"
    mongo.autoresponds(make_wire_handler(store))  # newest responder: consulted before auto_ismaster
    mongo.run()
    members = [mongo]
    if args.secondary_port:
        secondary = MockupDB(port=args.secondary_port, auto_ismaster=dict(HELLO), request_timeout=int(1e6))
        secondary._address = (args.host, args.secondary_port)
        secondary.autoresponds(make_wire_handler(store, "secondary"))
        secondary.run()
        members.append(secondary)

    control = ControlServer((args.host, args.control_port), store)
    threading.Thread(target=control.serve_forever, kwargs={"poll_interval": 0.1},
                     name="control", daemon=True).start()
    log.info("wire %s:%d, control %s:%d", args.host, mongo.port, args.host, control.server_address[1])

    while not store.stopping.is_set():
        time.sleep(0.05)

    # Close the listeners and client sockets now; mockupdb's accept loop polls
    # once a second, so give stop() a moment, then leave (threads are daemons).
    control.shutdown()
    control.server_close()
    stoppers = [threading.Thread(target=member.stop, daemon=True) for member in members]
    for stopper in stoppers:
        stopper.start()
    for stopper in stoppers:
        stopper.join(0.25)
    log.info("stopped")
    logging.shutdown()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
