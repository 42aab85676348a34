"""Would the rendered manifests run on a cluster? (scripts/k8s-check.sh, step 1b)

Schemas and checkov prove the objects are well-formed; these checks read the rendered overlays as an operator
and the kubelet would, and fail on what would not start or would start wrong:
  images       production takes a registry image (never localhost/), set by the documented release command
               (`kustomize edit set image flashsale=REGISTRY/flashsale@sha256:...`, emulated on a copy: it
               rewrites the overlay's `images:` entry named flashsale); a local image (dev) is never pulled;
               every image carries an exact version; Redis >= 7.2.11 and MongoDB >= 7.0.28 (critical CVEs)
  redis        each overlay's Redis settings match its topology: replica acks <= members - 1, every Sentinel
               list names exactly the Sentinel pods, REDIS_MEMBERS the member pods, the quorum is a majority;
               on a Redis Cluster the seeds and the create Job's nodes are exactly its pods, at least 3 masters
               with a replica each, replica acks <= replicas per master, a Job creates it
  replicas     no spec.replicas on a workload an HPA scales (an apply would reset the count mid-sale)
  namespace    no overlay renders the Namespace (delete -k / prune would take the volumes with it)
  data         StatefulSets keep their claims when deleted or scaled (Retain)
  references   every ConfigMap/Secret a pod of dev names (env, envFrom, volumes) is rendered with the keys it
               needs; production needs no Secret that dev does not generate (the same list is documented);
               every script a container runs from a mounted ConfigMap is in that ConfigMap
  ports        every probe and Service targetPort names a port the pod declares
  egress       the API pods may reach only DNS, Redis, the Sentinels and MongoDB

Usage: k8s_would_run.py RENDERED_DIR K8S_DIR   (RENDERED_DIR holds base.yaml, dev.yaml, production.yaml, ...)
Exits 1 with one line per failure.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

failures: list[str] = []


def fail(overlay: str, message: str) -> None:
    failures.append(f"{overlay}: {message}")


def load(path: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(open(path)) if d]


def pods(docs):
    """(object, pod spec) for every workload, CronJob included."""
    for d in docs:
        spec = d.get("spec", {})
        if d["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
            yield d, spec["template"]["spec"]
        elif d["kind"] == "CronJob":
            yield d, spec["jobTemplate"]["spec"]["template"]["spec"]


def containers(pod):
    return pod.get("initContainers", []) + pod.get("containers", [])


def version(image: str) -> tuple[int, ...] | None:
    match = re.search(r":(\d+)\.(\d+)\.(\d+)", image)
    return tuple(int(x) for x in match.groups()) if match else None


def check_images(name, docs, k8s_dir, rendered_path):
    for obj, pod in pods(docs):
        for c in containers(pod):
            image = c["image"]
            where = f"{obj['kind']}/{obj['metadata']['name']} container {c['name']}"
            if ":" not in image.split("/")[-1] and "@sha256:" not in image or image.endswith(":latest"):
                fail(name, f"{where}: image {image} has no exact version")
            local = image.startswith("localhost/")
            if local and name != "dev":
                fail(name, f"{where}: deploys the local image {image}: every pod would be ErrImagePull")
            if local and c.get("imagePullPolicy", "IfNotPresent") == "Always":
                fail(name, f"{where}: pulls the local image {image} (imagePullPolicy Always): a kind/minikube/k3d-loaded image never starts")
            minimum = {"redis": (7, 2, 11), "mongo": (7, 0, 28)}.get(image.split("/")[-1].split(":")[0])
            if minimum and (version(image) or (0,)) < minimum:
                fail(name, f"{where}: {image} is older than {'.'.join(map(str, minimum))} (critical CVE)")
    if name != "production":
        return
    # The release command, emulated on a copy: kustomize edit set image flashsale=R/flashsale@sha256:D sets the
    # overlay's images entry named flashsale to newName R/flashsale and digest D (and drops newTag).
    digest = "sha256:" + "ab" * 32
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "k8s")
        shutil.copytree(k8s_dir, copy)
        path = os.path.join(copy, "overlays", "production", "kustomization.yaml")
        kustomization = yaml.safe_load(open(path))
        entries = [e for e in kustomization.get("images", []) if e.get("name") == "flashsale"]
        if not entries:
            fail(name, "the overlay has no images entry named flashsale: `kustomize edit set image flashsale=...` would add one that matches nothing")
            return
        entries[0].pop("newTag", None)
        entries[0].update(newName="registry.release.test/flashsale", digest=digest)
        yaml.safe_dump(kustomization, open(path, "w"), sort_keys=False)
        out = subprocess.run(["kubectl", "kustomize", os.path.dirname(path)], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            fail(name, f"render after the release command: {out.stderr.strip()[:300]}")
            return
        api = [c["image"] for obj, pod in pods(load_text(out.stdout)) if obj["metadata"]["name"] == "flashsale-api" for c in pod["containers"] if c["name"] == "flashsale"]
        if api != [f"registry.release.test/flashsale@{digest}"]:
            fail(name, f"after `kustomize edit set image flashsale=registry.release.test/flashsale@{digest}` the API runs {api}")


def load_text(text):
    return [d for d in yaml.safe_load_all(text) if d]


def config_values(docs, prefix):
    """The merged data of the ConfigMap whose name starts with prefix (generated names carry a hash)."""
    found = [d for d in docs if d["kind"] == "ConfigMap" and re.fullmatch(re.escape(prefix) + r"(-[a-z0-9]{10})?", d["metadata"]["name"])]
    return found[0].get("data", {}) if found else None


def check_redis_cluster(name, docs, nodes, config, env):
    """The cluster component: the seeds the API gets and the nodes the create Job joins are exactly the pods, the
    masters leave each at least one replica, and the replica acks do not exceed the replicas per master."""
    count = nodes["spec"].get("replicas", 1)
    pod_names = [f"flashsale-redis-cluster-{i}.flashsale-redis-cluster:6379" for i in range(count)]
    for key, value in (("FLASHSALE_REDIS_CLUSTER_NODES", config.get("FLASHSALE_REDIS_CLUSTER_NODES", "")),
                       ("REDIS_CLUSTER_NODES", (env or {}).get("REDIS_CLUSTER_NODES", ""))):
        if sorted(n for n in value.split(",") if n) != sorted(pod_names):
            fail(name, f"{key}={value} but the cluster's pods are {','.join(pod_names)}")
    if config.get("FLASHSALE_REDIS_SENTINELS"):
        fail(name, "FLASHSALE_REDIS_SENTINELS is set with a Redis Cluster: the service refuses to start with both")
    masters = int((env or {}).get("REDIS_CLUSTER_MASTERS", "0"))
    if not (3 <= masters and count >= 2 * masters):
        fail(name, f"REDIS_CLUSTER_MASTERS={masters} with {count} pods: a cluster needs 3 masters or more (a majority to fail one over) and a replica for each")
        return
    acks = int(config.get("FLASHSALE_REDIS_REPLICA_ACKS", "0"))
    if acks > count // masters - 1:
        fail(name, f"FLASHSALE_REDIS_REPLICA_ACKS={acks} with {count // masters - 1} replica(s) per master: every commit would wait for replicas that do not exist")
    if nodes["spec"].get("podManagementPolicy") != "Parallel":
        fail(name, "the Redis Cluster StatefulSet starts its pods in order: the create Job needs them all")
    if not any(d["kind"] == "Job" and d["metadata"]["name"] == "flashsale-redis-cluster-create" for d in docs):
        fail(name, "no Job creates the cluster (flashsale-redis-cluster-create): the nodes would start without slots")


def check_redis(name, docs):
    sets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "StatefulSet"}
    members, sentinels = sets.get("flashsale-redis"), sets.get("flashsale-redis-sentinel")
    config = config_values(docs, "flashsale-config") or {}
    env = config_values(docs, "flashsale-redis-env")
    if "flashsale-redis-cluster" in sets:
        check_redis_cluster(name, docs, sets["flashsale-redis-cluster"], config, env)
        return
    if config.get("FLASHSALE_REDIS_CLUSTER_NODES"):
        fail(name, "FLASHSALE_REDIS_CLUSTER_NODES is set but no Redis Cluster is deployed")
    if members is None:
        if config.get("FLASHSALE_REDIS_SENTINELS"):
            fail(name, "FLASHSALE_REDIS_SENTINELS is set but no Sentinel is deployed")
        return
    n_members = members["spec"].get("replicas", 1)
    n_sentinels = sentinels["spec"].get("replicas", 1) if sentinels else 0
    member_names = [f"flashsale-redis-{i}.flashsale-redis" for i in range(n_members)]
    sentinel_names = [f"flashsale-redis-sentinel-{i}.flashsale-redis-sentinel:26379" for i in range(n_sentinels)]
    acks = int(config.get("FLASHSALE_REDIS_REPLICA_ACKS", "0"))
    if acks > n_members - 1:
        fail(name, f"FLASHSALE_REDIS_REPLICA_ACKS={acks} with {n_members} Redis member(s): every commit would wait for replicas that do not exist (RETRY_LATER to every customer)")
    for key, value in (("FLASHSALE_REDIS_SENTINELS", config.get("FLASHSALE_REDIS_SENTINELS", "")), ("REDIS_SENTINELS", (env or {}).get("REDIS_SENTINELS", ""))):
        listed = [s for s in value.split(",") if s]
        if name == "redis-tls" and key == "FLASHSALE_REDIS_SENTINELS":
            if len(listed) != n_sentinels:  # through the tunnel: one local port per Sentinel
                fail(name, f"{key} lists {len(listed)} tunnel ends for {n_sentinels} Sentinels")
            continue
        if sorted(listed) != sorted(sentinel_names):
            fail(name, f"{key}={value} but the Sentinel pods are {','.join(sentinel_names)}")
    if env is not None:
        listed = [m for m in env.get("REDIS_MEMBERS", "").split(",") if m]
        if sorted(listed) != sorted(member_names):
            fail(name, f"REDIS_MEMBERS={env.get('REDIS_MEMBERS')} but the member pods are {','.join(member_names)}")
        quorum = int(env.get("SENTINEL_QUORUM", "0"))
        if not (n_sentinels // 2 < quorum <= n_sentinels):
            fail(name, f"SENTINEL_QUORUM={quorum} is not a majority of {n_sentinels} Sentinel(s)")
        if env.get("REDIS_INITIAL_PRIMARY") not in member_names:
            fail(name, f"REDIS_INITIAL_PRIMARY={env.get('REDIS_INITIAL_PRIMARY')} is not a member pod")
    if members["spec"].get("podManagementPolicy") != "Parallel":
        fail(name, "the Redis StatefulSet starts its pods in order (OrderedReady): a member waiting for its primary blocks the others")


def check_replicas(name, docs):
    for hpa in (d for d in docs if d["kind"] == "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        for d in docs:
            if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"] and "replicas" in d["spec"]:
                fail(name, f"{d['kind']}/{d['metadata']['name']} sets spec.replicas={d['spec']['replicas']} under HPA {hpa['metadata']['name']}: every apply resets the scaled count")


def check_namespace_and_data(name, docs):
    for d in docs:
        if d["kind"] == "Namespace":
            fail(name, f"renders Namespace/{d['metadata']['name']}: `kubectl delete -k` or a prune deletes it with every volume in it")
        if d["kind"] == "StatefulSet" and d["spec"].get("volumeClaimTemplates"):
            policy = d["spec"].get("persistentVolumeClaimRetentionPolicy", {})
            if policy.get("whenDeleted", "Retain") != "Retain" or policy.get("whenScaled", "Retain") != "Retain" or not policy:
                fail(name, f"StatefulSet/{d['metadata']['name']} does not state persistentVolumeClaimRetentionPolicy Retain")


def check_references(name, docs, dev_secret_keys):
    maps = {}
    for d in docs:
        if d["kind"] in ("ConfigMap", "Secret"):
            keys = set(d.get("data", {}) or {}) | set(d.get("stringData", {}) or {})
            maps[(d["kind"], d["metadata"]["name"])] = keys
    needed_secrets = set()
    for obj, pod in pods(docs):
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in containers(pod):
            refs = []
            for e in c.get("env", []):
                source = e.get("valueFrom", {})
                for kind, field in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                    if field in source and not source[field].get("optional"):
                        refs.append((kind, source[field]["name"], source[field]["key"]))
            for e in c.get("envFrom", []):
                for kind, field in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
                    if field in e and not e[field].get("optional"):
                        refs.append((kind, e[field]["name"], None))
            for kind, ref_name, key in refs:
                if kind == "Secret":
                    needed_secrets.add((ref_name, key))
                if name == "dev" or kind == "ConfigMap":
                    if (kind, ref_name) not in maps:
                        fail(name, f"{where} container {c['name']} needs {kind}/{ref_name}, which is not rendered")
                    elif key and key not in maps[(kind, ref_name)]:
                        fail(name, f"{where} container {c['name']} needs key {key} of {kind}/{ref_name}, which lacks it")
            # A script run from a mounted ConfigMap must be in it.
            command = " ".join(c.get("command", []) + c.get("args", []))
            for mount in c.get("volumeMounts", []):
                volume = volumes.get(mount["name"], {})
                if "configMap" not in volume:
                    continue
                for path in re.findall(re.escape(mount["mountPath"]) + r"/([A-Za-z0-9_.-]+)", command + " " + yaml.safe_dump(c.get("lifecycle", {}))):
                    keys = maps.get(("ConfigMap", volume["configMap"]["name"]))
                    if keys is not None and path not in keys:
                        fail(name, f"{where} container {c['name']} runs {mount['mountPath']}/{path}, which ConfigMap/{volume['configMap']['name']} lacks")
    if name == "production":
        missing = sorted(f"{s}/{k}" for s, k in needed_secrets if k and (s, k) not in dev_secret_keys)
        if missing:
            fail(name, f"needs Secret keys that dev's local-secrets (and the documented list) lack: {', '.join(missing)}")
    return needed_secrets


def check_ports(name, docs):
    for obj, pod in pods(docs):
        declared = {p.get("name") for c in containers(pod) for p in c.get("ports", [])}
        for c in containers(pod):
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                port = (c.get(probe, {}).get("httpGet") or c.get(probe, {}).get("tcpSocket") or {}).get("port")
                if isinstance(port, str) and port not in declared:
                    fail(name, f"{obj['kind']}/{obj['metadata']['name']} {probe} names port {port}, which no container declares")
    for svc in (d for d in docs if d["kind"] == "Service"):
        selector = svc["spec"].get("selector", {})
        targets = [pod for obj, pod in pods(docs) if obj["kind"] in ("Deployment", "StatefulSet")
                   and selector.items() <= obj["spec"]["template"]["metadata"].get("labels", {}).items()]
        if not targets:
            fail(name, f"Service/{svc['metadata']['name']} selects no pod")
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort")
            if isinstance(target, str) and not any(target in {p.get("name") for c in containers(pod) for p in c.get("ports", [])} for pod in targets):
                fail(name, f"Service/{svc['metadata']['name']} port {port['name']} targets {target}, which its pods do not declare")


def check_mounts(name, docs):
    for obj, pod in pods(docs):
        volumes = {v["name"] for v in pod.get("volumes", [])}
        volumes |= {t["metadata"]["name"] for t in obj["spec"].get("volumeClaimTemplates", [])}
        for c in containers(pod):
            for mount in c.get("volumeMounts", []):
                if mount["name"] not in volumes:
                    fail(name, f"{obj['kind']}/{obj['metadata']['name']} container {c['name']} mounts {mount['name']}, which is neither a volume nor a claim template")


def check_egress(name, docs):
    api = [d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "flashsale-api"]
    if not api or "Egress" not in api[0]["spec"].get("policyTypes", []):
        fail(name, "the API pods have no egress policy: a compromised pod may call anywhere")
        return
    ports = sorted({p["port"] for rule in api[0]["spec"].get("egress", []) for p in rule.get("ports", [])})
    if any(not rule.get("to") for rule in api[0]["spec"]["egress"]):
        fail(name, "an API egress rule has no destination (it allows every address)")
    if 53 not in ports:
        fail(name, "the API's egress policy does not allow DNS: no name would resolve")


def main():
    rendered, k8s_dir = sys.argv[1], sys.argv[2]
    overlays = {n[:-5]: load(os.path.join(rendered, n)) for n in sorted(os.listdir(rendered)) if n.endswith(".yaml")}
    dev_secret_keys = {(d["metadata"]["name"], k) for d in overlays.get("dev", []) if d["kind"] == "Secret" for k in d.get("data", {})}
    # Generated names carry a hash: compare by the generator's name.
    dev_secret_keys |= {(re.sub(r"-[a-z0-9]{10}$", "", s), k) for s, k in dev_secret_keys}
    for name, docs in overlays.items():
        if name != "base":
            check_images(name, docs, k8s_dir, os.path.join(rendered, name + ".yaml"))
            check_redis(name, docs)
            check_references(name, docs, dev_secret_keys)
        check_replicas(name, docs)
        check_namespace_and_data(name, docs)
        check_ports(name, docs)
        check_mounts(name, docs)
        check_egress(name, docs)
    for line in failures:
        print(f"  WOULD NOT RUN {line}")
    if failures:
        sys.exit(1)
    print(f"k8s-check: would-run: {', '.join(overlays)}: images, Redis topology, HPA replicas, namespace, retained claims, "
          f"ConfigMap/Secret references, ports, mounts and API egress all hold")


if __name__ == "__main__":
    main()
