#!/usr/bin/env bash
# The Kubernetes checks (`make test`), each bounded in time:
#   1. render: every kustomization (base, overlays/dev, overlays/production, overlays/redis-tls, overlays/redis-cluster) renders with
#      `kubectl kustomize` (dev with throwaway files for its local-secrets component, in a temp copy of k8s/);
#   1b. would it run: scripts/k8s_would_run.py reads the rendered overlays as the kubelet would (the release
#      image command, local images, Redis settings against the topology, HPA targets without replicas, no
#      Namespace, retained claims, every referenced ConfigMap/Secret key, ports, API egress);
#   2. secrets: no Secret is rendered from committed files (base, production, redis-tls and redis-cluster render none; git
#      tracks no file under a secrets/ directory);
#   3. validate: every rendered object, and k8s/jobs/*, against the Kubernetes 1.32 schemas
#      (kubernetes-validate --strict); the Prometheus Operator CRDs (ServiceMonitor, PrometheusRule) have
#      no bundled schema and get a structural check here instead;
#   4. checkov: no failed check on the rendered overlays and jobs (the base alone is never applied), skips only
#      those in k8s/.checkov.yaml and the one annotated in overlays/dev (its locally loaded image is not pulled);
#   5. promtool: the PrometheusRule's groups, extracted into a plain rule file, pass `promtool check rules`
#      and the unit tests k8s/components/monitoring/tests/alerts-test.yaml (`promtool test rules`);
#   6. live: Prometheus scrapes a running `flashsale serve` (its own redis-server WITHOUT AOF, no MongoDB)
#      with the ServiceMonitor's path and interval and the repository's rules; every metric the rules and
#      the dashboard use is served, and FlashSaleLedgerNotDurable must fire within 150 s. /metrics is served on
#      FLASHSALE_METRICS_PORT only (the port the ServiceMonitor names), the request-duration histogram carries
#      the route template, method and status class, and the SLO's recording rules evaluate on it;
#   6b. rehearsal: k8s/jobs/load-rehearsal.yaml's own arguments run on all its shards against the live instance,
#      and `flashsale load merge` of their logs accounts for every customer and finds no oversell;
#   7. runbooks: every alert's runbook_url names a section of docs/alerts.md, and every alert has a promtool test
#      in which it fires.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  echo "k8s-check: installing prometheus (promtool)"
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
command -v kubectl >/dev/null || { echo "k8s-check: kubectl (with kustomize) is not installed" >&2; exit 1; }
for tool in kubernetes-validate checkov python; do
  [ -x ".venv/bin/$tool" ] || { echo "k8s-check: .venv/bin/$tool is missing (scripts/bootstrap.sh installs it)" >&2; exit 1; }
done
PY=.venv/bin/python

WORK=$(mktemp -d /tmp/flashsale-k8s-check.XXXXXX)
REDIS_PORT=$(free_port)
SERVER=
PROM=
cleanup() {
  if [ -n "$PROM" ]; then stop_process "$PROM"; fi
  stop_servers
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 143' TERM INT
fail() { echo "k8s-check: FAIL: $*" >&2; exit 1; }
t0=$(date +%s)

# 1. Render.
cp -r k8s "$WORK/k8s"
secrets=$WORK/k8s/components/local-secrets/secrets
rm -rf "$secrets"; mkdir -p "$secrets"
for f in jwt-secret data-key mongodb-keyfile mongodb-root-username mongodb-root-password mongodb-app-password mongodb-backup-password \
         mongodb-exporter-password redis-service-password redis-replication-password redis-sentinel-password \
         redis-sentinel-auth-password redis-exporter-password; do
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$secrets/$f"
done
mkdir -p "$WORK/rendered"
for target in base overlays/dev overlays/production overlays/redis-tls overlays/redis-cluster; do
  name=${target##*/}
  timeout 60 kubectl kustomize "$WORK/k8s/$target" > "$WORK/rendered/$name.yaml" || fail "kubectl kustomize k8s/$target"
  echo "k8s-check: render k8s/$target: $("$PY" - "$WORK/rendered/$name.yaml" <<'PYEOF'
import collections, sys, yaml
kinds = collections.Counter(d["kind"] for d in yaml.safe_load_all(open(sys.argv[1])) if d)
print(f"{sum(kinds.values())} objects (" + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + ")")
PYEOF
)"
done

# 1b. Would it run.
"$PY" scripts/k8s_would_run.py "$WORK/rendered" "$WORK/k8s" || fail "the rendered manifests would not run (above)"

# 2. No secret from the repository.
for name in base production redis-tls redis-cluster; do
  ! grep -q '^kind: Secret$' "$WORK/rendered/$name.yaml" || fail "k8s/$name renders a Secret from committed files"
done
tracked=$(git ls-files k8s | grep -E '(^|/)secrets/' || true)
[ -z "$tracked" ] || fail "git tracks secret material: $tracked"
echo "k8s-check: secrets: base, production, redis-tls and redis-cluster render no Secret; dev's come from untracked files; git tracks none"

# Split every rendered object into its own file (checkov and kubernetes-validate read them one by one).
"$PY" - "$WORK" <<'PYEOF'
import os, sys, yaml
work = sys.argv[1]
out = os.path.join(work, "objects"); os.makedirs(out)
crd = os.path.join(work, "crd"); os.makedirs(crd)
sources = [(n, os.path.join(work, "rendered", n + ".yaml")) for n in ("base", "dev", "production", "redis-tls", "redis-cluster")]
sources += [("jobs", os.path.join(work, "k8s", "jobs", f)) for f in sorted(os.listdir(os.path.join(work, "k8s", "jobs")))]
for overlay, path in sources:
    for i, doc in enumerate(d for d in yaml.safe_load_all(open(path)) if d):
        target = crd if doc["apiVersion"].startswith("monitoring.coreos.com/") else out
        with open(os.path.join(target, f"{overlay}-{i:02d}-{doc['kind']}-{doc['metadata']['name']}.yaml"), "w") as f:
            yaml.safe_dump(doc, f)
PYEOF

# 3. Schemas.
objects=$(ls "$WORK/objects" | wc -l)
timeout 120 .venv/bin/kubernetes-validate --strict --quiet -k 1.32.0 "$WORK"/objects/*.yaml > "$WORK/validate.log" 2>&1 \
  || { cat "$WORK/validate.log" >&2; fail "kubernetes-validate"; }
"$PY" - "$WORK/crd" <<'PYEOF' || fail "the ServiceMonitor/PrometheusRule structure"
import os, sys, yaml
for name in sorted(os.listdir(sys.argv[1])):
    doc = yaml.safe_load(open(os.path.join(sys.argv[1], name)))
    assert set(doc) <= {"apiVersion", "kind", "metadata", "spec"}, name
    if doc["kind"] == "ServiceMonitor":
        selector = doc["spec"]["selector"]
        assert (selector.get("matchLabels") or selector.get("matchExpressions")) and doc["spec"]["endpoints"], name
        assert doc["metadata"]["labels"].get("release"), f"{name}: no release label (a kube-prometheus-stack selects on it)"
        for e in doc["spec"]["endpoints"]:
            assert set(e) <= {"port", "path", "interval", "scrapeTimeout", "scheme", "relabelings", "metricRelabelings"}, name
    elif doc["kind"] == "PrometheusRule":
        assert doc["metadata"]["labels"].get("release"), f"{name}: no release label (a kube-prometheus-stack selects on it)"
        for g in doc["spec"]["groups"]:
            assert set(g) <= {"name", "interval", "rules"}, name
            for r in g["rules"]:
                assert set(r) <= {"alert", "record", "expr", "for", "labels", "annotations"}, name
    else:
        raise SystemExit(f"unexpected CRD object {name}")
PYEOF
echo "k8s-check: validate: $objects objects pass kubernetes-validate --strict (Kubernetes 1.32); $(ls "$WORK/crd" | wc -l) CRD objects (ServiceMonitor, PrometheusRule: no bundled schema) checked structurally"

# 4. checkov.
# The base alone is not deployed (its image is named by the overlays): checkov reads what would be applied.
mkdir -p "$WORK/deployable"
for f in "$WORK"/objects/*.yaml; do case $(basename "$f") in base-*) ;; *) cp "$f" "$WORK/deployable/" ;; esac; done
timeout 180 .venv/bin/checkov -d "$WORK/deployable" -d "$WORK/crd" --config-file k8s/.checkov.yaml --skip-download -o json \
  > "$WORK/checkov.json" 2>"$WORK/checkov.err" || true
"$PY" - "$WORK/checkov.json" <<'PYEOF' || { tail -20 "$WORK/checkov.err" >&2; fail "checkov"; }
import json, sys, yaml
# One JSON document per scanned directory (or a list of them).
text, reports, at = open(sys.argv[1]).read(), [], 0
decoder = json.JSONDecoder()
while text[at:].strip():
    at += len(text[at:]) - len(text[at:].lstrip())
    doc, at = decoder.raw_decode(text, at)
    reports += doc if isinstance(doc, list) else [doc]
summary = {"passed": 0, "failed": 0, "skipped": 0, "parsing_errors": 0, "resource_count": 0}
failed = []
for r in reports:
    for k in summary: summary[k] += r.get("summary", {}).get(k, 0)
    failed += r.get("results", {}).get("failed_checks", [])
skips = yaml.safe_load(open("k8s/.checkov.yaml"))["skip-check"]
print(f"k8s-check: checkov: {summary['resource_count']} resources, {summary['passed']} passed, {summary['failed']} failed, "
      f"{summary['parsing_errors']} parsing errors; skipped by k8s/.checkov.yaml: {', '.join(skips)}")
for c in failed:
    print(f"  FAILED {c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']})")
sys.exit(1 if failed or summary["parsing_errors"] or summary["passed"] == 0 else 0)
PYEOF

# 5. promtool.
mkdir -p "$WORK/rules"
"$PY" - "$WORK/rendered/production.yaml" "$WORK/rules/flashsale-alerts.rules.yaml" <<'PYEOF'
import sys, yaml
rules = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "PrometheusRule"]
assert len(rules) == 1
yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}, open(sys.argv[2], "w"), sort_keys=False)
PYEOF
cp k8s/components/monitoring/tests/alerts-test.yaml "$WORK/rules/"
timeout 30 promtool check rules "$WORK/rules/flashsale-alerts.rules.yaml" > "$WORK/promtool-check.log" 2>&1 \
  || { cat "$WORK/promtool-check.log" >&2; fail "promtool check rules"; }
timeout 60 promtool test rules "$WORK/rules/alerts-test.yaml" > "$WORK/promtool-test.log" 2>&1 \
  || { cat "$WORK/promtool-test.log" >&2; fail "promtool test rules"; }
rules_count=$(grep -o '[0-9]* rules found' "$WORK/promtool-check.log")
tests_count=$(grep -c '^  - interval' k8s/components/monitoring/tests/alerts-test.yaml)
echo "k8s-check: promtool: check rules SUCCESS ($rules_count); test rules SUCCESS ($tests_count test groups)"

# 6. Live: Prometheus scrapes a running instance; its ledger's Redis runs without AOF, so the instance
# reports flashsale_ledger_durable 0 and FlashSaleLedgerNotDurable (for: 1m) must fire.
BINARY=${FLASHSALE_BIN:-}
if [ -z "$BINARY" ]; then
  for candidate in .build/release/flashsale .build/debug/flashsale; do
    if [ -x "$candidate" ]; then BINARY=$candidate; break; fi
  done
fi
[ -n "$BINARY" ] || fail "no flashsale binary (.build/release or .build/debug): build first"
mkdir -p "$WORK/redis" "$WORK/prometheus"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK/redis" --save "" --appendonly no \
  --daemonize yes --pidfile "$WORK/redis/redis.pid" --logfile "$WORK/redis/redis.log"
PORT=$(free_port)
FLASHSALE_JWT_SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export FLASHSALE_JWT_SECRET
export FLASHSALE_SHUTDOWN_DELAY_SECONDS=0
METRICS_PORT=$(free_port)
FLASHSALE_HOST=127.0.0.1 FLASHSALE_PORT=$PORT FLASHSALE_METRICS_PORT=$METRICS_PORT FLASHSALE_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
  FLASHSALE_DATA_KEY="$(head -c 32 /dev/urandom | base64)" FLASHSALE_INSTANCE_ID=k8s-check \
  "$BINARY" serve >"$WORK/serve.log" 2>&1 &
SERVER=$!
wait_ready "http://127.0.0.1:$PORT/readyz" || { tail -20 "$WORK/serve.log" >&2; fail "flashsale serve did not become ready"; }
# A sale of one unit and two orders: flashsale_orders_total{result="confirmed"} and {result="SOLD_OUT"}.
admin=$("$BINARY" token --sub k8s-check-admin --admin)
customer=$("$BINARY" token --sub k8s-check-customer)
curl -fs -o /dev/null -X POST "http://127.0.0.1:$PORT/admin/sales" -H "Authorization: Bearer $admin" \
  -H 'Content-Type: application/json' \
  -d "{\"id\":\"k8s-check\",\"name\":\"k8s check\",\"stock\":1,\"startsAt\":\"$(date -u -d '-2 seconds' +%Y-%m-%dT%H:%M:%SZ)\",\"durationSeconds\":600,\"perCustomerLimit\":2}" \
  || fail "could not create the sale"
answers=
for _ in 1 2; do
  answers+=$(curl -s -o /dev/null -w '%{http_code} ' -X POST "http://127.0.0.1:$PORT/sales/k8s-check/orders" \
    -H "Authorization: Bearer $customer" -H 'Content-Type: application/json' \
    -d '{"quantity":1,"delivery":{"name":"Ada","phone":"5550100","address":"1 Main St"}}')
done
[ "$answers" = "201 409 " ] || fail "orders answered $answers, expected 201 then 409"
# /metrics lives on the metrics port only: the API port (open to the ingress) answers 404 for it.
main_metrics=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/metrics")
[ "$main_metrics" = 404 ] || fail "GET /metrics on the API port answered $main_metrics with FLASHSALE_METRICS_PORT set (expected 404)"
curl -fs "http://127.0.0.1:$METRICS_PORT/metrics" | grep -q '^flashsale_http_request_duration_seconds_bucket{.*route="[^"]*orders",.*method="POST",.*status_class="2xx"' \
  || fail "the metrics port does not serve flashsale_http_request_duration_seconds by route template, method and status class"
PROM_PORT=$(free_port)
"$PY" - "$WORK/rendered/production.yaml" "$WORK/prometheus/prometheus.yml" "$WORK/rules/flashsale-alerts.rules.yaml" "127.0.0.1:$METRICS_PORT" <<'PYEOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
endpoint = monitor["spec"]["endpoints"][0]
service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["labels"].items() >= monitor["spec"]["selector"]["matchLabels"].items()
               and d["spec"].get("clusterIP") != "None")
config = {
    "global": {"scrape_interval": endpoint["interval"], "evaluation_interval": endpoint["interval"]},
    "rule_files": [sys.argv[3]],
    "scrape_configs": [{
        # The Prometheus Operator names the job after the Service the ServiceMonitor selects.
        "job_name": service["metadata"]["name"],
        "metrics_path": endpoint["path"],
        "scrape_interval": endpoint["interval"],
        "scrape_timeout": endpoint["scrapeTimeout"],
        "static_configs": [{"targets": [sys.argv[4]], "labels": {"namespace": "flashsale", "pod": "flashsale-api-k8s-check"}}],
    }],
}
yaml.safe_dump(config, open(sys.argv[2], "w"), sort_keys=False)
PYEOF
timeout 30 promtool check config "$WORK/prometheus/prometheus.yml" >/dev/null || fail "promtool check config"
prometheus --config.file="$WORK/prometheus/prometheus.yml" --storage.tsdb.path="$WORK/prometheus/data" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$WORK/prometheus/prometheus.log" 2>&1 &
PROM=$!
prom_started=$(date +%s)
wait_ready "http://127.0.0.1:$PROM_PORT/-/ready" || { tail -20 "$WORK/prometheus/prometheus.log" >&2; fail "prometheus did not start"; }
fired=
while [ $(( $(date +%s) - prom_started )) -lt 150 ]; do
  kill -0 "$SERVER" 2>/dev/null || fail "flashsale serve exited"
  # Traffic for the request-duration histogram and the SLO rules: a read and a refused order per second.
  curl -s -o /dev/null -H "Authorization: Bearer $customer" "http://127.0.0.1:$PORT/sales/k8s-check" || true
  curl -s -o /dev/null -X POST "http://127.0.0.1:$PORT/sales/k8s-check/orders" -H "Authorization: Bearer $customer" \
    -H 'Content-Type: application/json' -d '{"quantity":1,"delivery":{"name":"Ada","phone":"5550100","address":"1 Main St"}}' || true
  if curl -fs "http://127.0.0.1:$PROM_PORT/api/v1/alerts" | "$PY" -c '
import json, sys
alerts = json.load(sys.stdin)["data"]["alerts"]
sys.exit(0 if any(a["labels"]["alertname"] == "FlashSaleLedgerNotDurable" and a["state"] == "firing" for a in alerts) else 1)'; then
    fired=$(( $(date +%s) - prom_started )); break
  fi
  sleep 1
done
[ -n "$fired" ] || { curl -s "http://127.0.0.1:$PROM_PORT/api/v1/alerts" >&2; fail "FlashSaleLedgerNotDurable did not fire within 150 s"; }
# Every metric the rules and the dashboard name is served by the instance (a typo would silence an alert).
curl -fs "http://127.0.0.1:$PROM_PORT/api/v1/label/__name__/values" > "$WORK/names.json"
curl -fs "http://127.0.0.1:$PROM_PORT/api/v1/alerts" > "$WORK/alerts.json"
"$PY" - "$WORK/names.json" "$WORK/rules/flashsale-alerts.rules.yaml" k8s/components/monitoring/grafana-dashboard.json "$WORK/alerts.json" <<'PYEOF' || fail "metric names or unexpected alerts"
import json, re, sys
served = set(json.load(open(sys.argv[1]))["data"])
used = set()
for path in sys.argv[2:4]:
    for name in re.findall(r"\bflashsale_[a-z_]+", open(path).read()):
        used.add(re.sub(r"_(bucket|sum|count)$", "", name) if name.endswith(("_bucket", "_sum", "_count")) and not name.startswith("flashsale_outbox") else name)
families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in served} | served
missing = sorted(n for n in used if n not in families and n not in ("flashsale_http_requests_per_second",))
if missing:
    print("metrics used but not served:", missing); sys.exit(1)
firing = sorted({a["labels"]["alertname"] for a in json.load(open(sys.argv[4]))["data"]["alerts"] if a["state"] == "firing"})
if firing != ["FlashSaleLedgerNotDurable"]:
    print("firing alerts:", firing); sys.exit(1)
print(f"k8s-check: live: {len(used)} flashsale metric names used by the rules and the dashboard are all served; firing: {', '.join(firing)}")
PYEOF
# The SLO's recording rules evaluate on the instance's histogram: a p95 and a 5xx ratio (0 here), by namespace.
slo=
for _ in $(seq 1 30); do
  slo=$(curl -fs "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode 'query=flashsale:http_request_duration_seconds:p95_5m' --data-urlencode 'time='"$(date +%s)" | "$PY" -c '
import json, math, sys
r = json.load(sys.stdin)["data"]["result"]
ok = [float(x["value"][1]) for x in r if not math.isnan(float(x["value"][1]))]
print(f"{ok[0]:.4f}" if ok else "")') || true
  [ -z "$slo" ] || break
  sleep 2
done
[ -n "$slo" ] || fail "flashsale:http_request_duration_seconds:p95_5m has no value on the live instance"
errors=$(curl -fs "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode 'query=flashsale:http_errors:ratio_rate5m' | "$PY" -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(r[0]["value"][1] if r else "none")')
[ "$errors" = 0 ] || fail "flashsale:http_errors:ratio_rate5m is $errors on a healthy instance (expected 0)"
echo "k8s-check: live: /metrics only on the metrics port; SLO rules on the histogram: p95 ${slo} s, 5xx ratio ${errors}"

# 6b. The rehearsal Job would run: its own arguments (k8s/jobs/load-rehearsal.yaml), with this instance's URL, a
# fresh sale and its opening, a small crowd, on every shard at once (JOB_COMPLETION_INDEX as the Job sets it), then
# `flashsale load merge` of their logs must account for every shard's customers and find no oversell.
opens=$(date -u -d '+6 seconds' +%Y-%m-%dT%H:%M:%SZ)
curl -fs -o /dev/null -X POST "http://127.0.0.1:$PORT/admin/sales" -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
  -d "{\"id\":\"k8s-rehearsal\",\"name\":\"rehearsal\",\"stock\":40,\"startsAt\":\"$opens\",\"durationSeconds\":600,\"perCustomerLimit\":2}" \
  || fail "could not create the rehearsal sale"
mapfile -t job_args < <("$PY" - k8s/jobs/load-rehearsal.yaml "http://127.0.0.1:$PORT" "$opens" "$WORK/rehearsal" <<'PYEOF'
import sys, yaml
job = yaml.safe_load(open(sys.argv[1]))
spec = job["spec"]
command = spec["template"]["spec"]["containers"][0]["command"]
shards = int(command[command.index("--shard-count") + 1])
assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == shards, "completions, parallelism and --shard-count must agree"
local = {"--url": sys.argv[2], "--sale": "k8s-rehearsal", "--opens-at": sys.argv[3], "--customers": "80", "--max-seconds": "60", "--report": sys.argv[4]}
args = command[1:]
for i, a in enumerate(args[:-1]):
    if a in local: args[i + 1] = local[a]
print(shards)
print("\n".join(args))
PYEOF
) || fail "k8s/jobs/load-rehearsal.yaml: the Job's shape"
shards=${job_args[0]}
rehearsal_pids=()
for ((i = 0; i < shards; i++)); do
  JOB_COMPLETION_INDEX=$i timeout 90 "$BINARY" "${job_args[@]:1}" > "$WORK/rehearsal-$i.log" 2>&1 & rehearsal_pids+=($!)
done
for ((i = 0; i < shards; i++)); do
  wait "${rehearsal_pids[$i]}" || { tail -20 "$WORK/rehearsal-$i.log" >&2; fail "the rehearsal Job's command failed on shard $i"; }
done
"$BINARY" load merge "$WORK"/rehearsal-*.log --report "$WORK/rehearsal-merged" > "$WORK/merge.log" 2>&1 \
  || { cat "$WORK/merge.log" >&2; fail "flashsale load merge"; }
"$PY" - "$WORK/rehearsal-merged.json" "$shards" <<'PYEOF' || fail "the merged rehearsal report"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["shard"] == f"merged {sys.argv[2]}", r["shard"]
assert r["customers"] == 80, f"{r['customers']} customers merged, 80 expected"
assert r["ordersConfirmed"] > 0 and r["oversell"] and not r["oversell"]["oversold"] and r["oversell"]["invariantHolds"], r["oversell"]
assert r["oversell"]["soldSeenByCustomers"] == r["oversell"]["sold"] == 40, r["oversell"]
assert sum(r["requestResults"].values()) == r["requests"] and r["fcfsPrecision"] is not None
print(f"k8s-check: rehearsal: the Job's command on {sys.argv[2]} shards, merged: {r['customers']} customers, {r['requests']} requests, "
      f"{r['ordersConfirmed']} orders, sold {r['oversell']['sold']}/{r['oversell']['stock']}, p95 {r['latency']['p95Milliseconds']:.1f} ms, FCFS {r['fcfsPrecision']:.3f}")
PYEOF

# 7. Runbooks and tests: every alert links a section of docs/alerts.md and fires in some promtool test.
"$PY" - "$WORK/rules/flashsale-alerts.rules.yaml" docs/alerts.md k8s/components/monitoring/tests/alerts-test.yaml <<'PYEOF' || fail "runbooks or alert tests"
import re, sys, yaml
alerts = [r for g in yaml.safe_load(open(sys.argv[1]))["groups"] for r in g["rules"] if "alert" in r]
anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", open(sys.argv[2]).read(), re.M)}
tests = yaml.safe_load(open(sys.argv[3]))["tests"]
fired = {t["alertname"] for test in tests for t in test.get("alert_rule_test", []) if t.get("exp_alerts")}
problems = []
for a in alerts:
    url = a.get("annotations", {}).get("runbook_url", "")
    if not url.startswith("docs/alerts.md#") or url.split("#", 1)[1] not in anchors:
        problems.append(f"{a['alert']}: runbook_url {url!r} names no section of docs/alerts.md")
    if a["alert"] not in fired:
        problems.append(f"{a['alert']}: no promtool test in which it fires")
for p in problems: print("  " + p)
sys.exit(1 if problems else 0)
PYEOF
echo "k8s-check: runbooks: every alert ($(grep -c '^ *- alert:' "$WORK/rules/flashsale-alerts.rules.yaml")) links its docs/alerts.md section and fires in a promtool test"
echo "k8s-check: live: FlashSaleLedgerNotDurable fired ${fired} s after Prometheus started (scrape/evaluation every $(grep -m1 scrape_interval "$WORK/prometheus/prometheus.yml" | awk '{print $2}'), for: 1m)"
echo "k8s-check: PASS ($(( $(date +%s) - t0 )) s)"
