#!/usr/bin/env python3
"""Checks the Helm chart in charts/mlrollout with the real tooling; used by tests/chart.rs and
tests/rbac.rs.

  - lint: helm_python.lint(strict=True) (Helm v4's linter, warnings are errors), with the
    default values and with every scenario's values;
  - render: Config().install(..., dry_run="client") (what `helm install --dry-run=client`
    renders) for several value sets, and the chart's crds/ via Chart.crds();
  - values that must be refused (schema violations, contradictory settings) must fail;
  - validate: every rendered object and the CRD with kubernetes-validate (strict schemas, no
    unknown fields) for the chart's minimum Kubernetes version and the newest one the library
    knows. Kinds it has no schema for (the prometheus-operator ServiceMonitor) are skipped
    explicitly and listed under "skipped";
  - checks: security context, probes, ports, args and env, RBAC rule comments, bindings.

Usage: chart_check.py [--rbac-only [--release NAME] [--namespace NS] [--watch-namespaces A,B]].
Prints ONE JSON document on stdout; "failures" lists every problem and "ok" is true when there is
none. Exit status 0 unless the script itself broke.

--rbac-only renders the "default" and "namespaced" scenarios only and prints, per scenario, the
RBAC objects in a compact form ("rbac") and the rendered ServiceAccount and RBAC manifests as
they are ("manifests", for tests/rbac.rs to apply to a real API server). --release and
--namespace set the release name and namespace (so that cluster-scoped names are unique on a
shared test cluster); --watch-namespaces replaces the namespaced scenario's watchNamespaces.
"""

import hashlib
import json
import os
import re
import sys
import traceback

import yaml

import helm_python as helm
import kubernetes_validate
from kubernetes_validate import utils as kv_utils

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(REPO, "charts", "mlrollout")
REPO_CRD = os.path.join(REPO, "crds", "modeldeployment.yaml")
RELEASE = "mlrollout"
NAMESPACE = "mlrollout-system"
# The chart's kubeVersion floor and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ["1.28.0", kv_utils.latest_version()]

SCENARIOS = {
    # Chart defaults: all namespaces, two replicas with leader election.
    "default": {},
    # Everything that can differ, differs.
    "namespaced": {
        "replicaCount": 3,
        "watchNamespaces": ["team-a", "team-b"],
        "image": {
            "repository": "registry.example.com/ml/mlrollout",
            "digest": "sha256:" + "ab" * 32,
            "pullPolicy": "Always",
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "leaderElection": {
            "leaseName": "ml-operator-lock",
            "leaseDurationSeconds": 20,
            "renewDeadlineSeconds": 12,
            "retryPeriodSeconds": 3,
        },
        "logging": {"level": "info,mlrollout=debug", "format": "text"},
        "mlflow": {"timeoutSeconds": 30},
        "driftData": {
            "allowedHosts": ["data.example.com", "*.lake.example.com"],
            "volume": {"persistentVolumeClaim": {"claimName": "drift-data"}},
            "mountPath": "/datasets",
        },
        "prometheus": {"timeoutSeconds": 5},
        "metrics": {
            "port": 9090,
            "service": {"port": 9091, "annotations": {"example.com/scrape": "true"}},
            "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}},
            "grafanaDashboard": {
                "namespace": "monitoring",
                "labels": {"grafana_dashboard": "mlrollout"},
                "annotations": {"grafana_folder": "MLOps"},
            },
        },
        "serviceAccount": {"name": "ml-operator", "annotations": {"example.com/role": "ops"}},
        "extraEnv": [{"name": "RUST_LOG", "value": "info"}],
        "podAnnotations": {"example.com/team": "ml"},
        "podLabels": {"team": "ml"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}],
        "priorityClassName": "system-cluster-critical",
        "registryWebhook": {
            "enabled": True,
            "secret": {"name": "mlflow-webhook", "key": "hmac"},
            "port": 8443,
            "maxAge": "2m",
            "service": {"port": 443},
        },
        "notifications": {
            "defaultSinks": [
                {
                    "name": "platform",
                    "webhook": {
                        "url": "https://events.example.com/mlrollout",
                        "secretRef": {"name": "mlrollout-notifications", "key": "hmac"},
                    },
                },
                {
                    "name": "ml-team",
                    "slack": {"urlSecretRef": {"name": "mlrollout-notifications", "key": "slack-url"}},
                    "events": ["promoted", "rolledBack"],
                },
                {
                    "name": "audit",
                    "webhook": {
                        "url": "http://audit.ops:8080/",
                        "secretRef": {"name": "audit-hmac", "key": "key"},
                    },
                },
            ],
            "timeout": "5s",
            "attempts": 4,
            "queueSize": 200,
        },
    },
    # One replica without leader election, no metrics Service.
    "single": {
        "replicaCount": 1,
        "leaderElection": {"enabled": False},
        "metrics": {"service": {"enabled": False}, "grafanaDashboard": {"enabled": False}},
    },
}

# Values the chart must refuse, with a substring expected in the error.
MUST_FAIL = {
    "replicas_without_leader_election": (
        {"replicaCount": 2, "leaderElection": {"enabled": False}},
        "leaderElection.enabled",
    ),
    "service_monitor_without_service": (
        {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}},
        "metrics.service.enabled",
    ),
    "unknown_log_format": ({"logging": {"format": "xml"}}, "format"),
    "misspelled_key": ({"replicas": 3}, "replicas"),
    "renew_deadline_not_shorter": (
        {"leaderElection": {"leaseDurationSeconds": 10, "renewDeadlineSeconds": 10}},
        "renewDeadlineSeconds",
    ),
    "bad_namespace_name": ({"watchNamespaces": ["Team_A"]}, "watchNamespaces"),
    "registry_webhook_without_secret": ({"registryWebhook": {"enabled": True}}, "registryWebhook.secret.name"),
    "sink_with_webhook_and_slack": (
        {
            "notifications": {
                "defaultSinks": [
                    {
                        "name": "both",
                        "webhook": {"url": "https://x.example.com/"},
                        "slack": {"urlSecretRef": {"name": "s", "key": "k"}},
                    }
                ]
            }
        },
        "defaultSinks",
    ),
    "sink_with_unknown_event": (
        {"notifications": {"defaultSinks": [{"name": "x", "webhook": {"url": "https://x/"}, "events": ["all"]}]}},
        "defaultSinks",
    ),
}


def merged(values):
    """Chart defaults coalesced with `values` (as Helm does)."""
    return helm.Chart.load(CHART).merge_values(values)


def render(values, release_name=RELEASE, namespace=NAMESPACE):
    """(manifest text by source template, objects) of `helm install --dry-run=client`."""
    with helm.Config(namespace=namespace, storage_driver="memory") as config:
        release = config.install(CHART, release_name, values, namespace=namespace, dry_run="client")
    manifest = release["manifest"]
    sources = {}
    objects = []
    for chunk in re.split(r"^---\s*$", manifest, flags=re.M):
        match = re.search(r"^# Source: (\S+)", chunk, flags=re.M)
        doc = yaml.safe_load(chunk)
        if not doc:
            continue
        source = match.group(1) if match else "?"
        sources.setdefault(source, []).append(chunk)
        objects.append({"source": source, "text": chunk, "object": doc})
    return release, objects


def validate(obj):
    """kubernetes-validate result per version: "ok", "skipped: ..." or an error."""
    out = {}
    for version in KUBE_VERSIONS:
        try:
            out[version] = "ok (schemas %s)" % kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError as e:
            out[version] = "skipped: kubernetes-validate has no schema for %s %s (%s)" % (
                obj.get("apiVersion"),
                obj.get("kind"),
                e.message,
            )
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            out[version] = "error: %s: %s" % (path, e.message)
    return out


def rules_have_comments(text):
    """Names of the rules (apiGroups/resources) in `text` with no comment line right above."""
    lines = text.splitlines()
    missing = []
    for i, line in enumerate(lines):
        if re.match(r"^\s*- apiGroups:", line):
            previous = next((l for l in reversed(lines[:i]) if l.strip()), "")
            if not previous.strip().startswith("#"):
                missing.append(" ".join(l.strip() for l in lines[i : i + 2]))
    return missing


def containers_of(obj):
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return spec, spec.get("containers", []) + spec.get("initContainers", [])


def check_deployment(obj, values, failures, where):
    """Security context, probes, ports, args and env of the operator Deployment."""
    pod, containers = containers_of(obj)
    psc = pod.get("securityContext", {})
    report = {"containers": [], "volumes": pod.get("volumes", [])}
    if len(containers) != 1:
        failures.append("%s: expected one container, found %d" % (where, len(containers)))
    for c in containers:
        sc = c.get("securityContext", {})
        name = "%s container %s" % (where, c.get("name"))
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        run_as_non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        run_as_user = sc.get("runAsUser", psc.get("runAsUser"))
        drops = (sc.get("capabilities") or {}).get("drop") or []
        facts = {
            "name": c.get("name"),
            "image": c.get("image"),
            "runAsNonRoot": run_as_non_root,
            "runAsUser": run_as_user,
            "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem"),
            "allowPrivilegeEscalation": sc.get("allowPrivilegeEscalation"),
            "privileged": sc.get("privileged", False),
            "capabilitiesDrop": drops,
            "capabilitiesAdd": (sc.get("capabilities") or {}).get("add") or [],
            "seccompProfile": seccomp,
            "args": c.get("args", []),
            "env": c.get("env", []),
            "ports": c.get("ports", []),
            "volumeMounts": c.get("volumeMounts", []),
            "livenessProbe": c.get("livenessProbe"),
            "readinessProbe": c.get("readinessProbe"),
        }
        report["containers"].append(facts)
        expect = [
            (run_as_non_root is True, "runAsNonRoot is not true"),
            (isinstance(run_as_user, int) and run_as_user != 0, "runAsUser is root or unset"),
            (sc.get("readOnlyRootFilesystem") is True, "root filesystem is writable"),
            (sc.get("allowPrivilegeEscalation") is False, "privilege escalation is allowed"),
            (sc.get("privileged", False) is False, "privileged"),
            ("ALL" in drops, "capabilities are not all dropped"),
            (not facts["capabilitiesAdd"], "capabilities are added"),
            (seccomp == "RuntimeDefault", "seccomp profile is not RuntimeDefault"),
        ]
        for ok, message in expect:
            if not ok:
                failures.append("%s: %s" % (name, message))
        ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
        port = values["metrics"]["port"]
        if ports.get("metrics") != port:
            failures.append("%s: port metrics is %s, values say %s" % (name, ports.get("metrics"), port))
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = (c.get(probe) or {}).get("httpGet") or {}
            if get.get("path") != path:
                failures.append("%s: %s path is %s, not %s" % (name, probe, get.get("path"), path))
            if get.get("port") not in ("metrics", port):
                failures.append("%s: %s port %s is not the metrics port" % (name, probe, get.get("port")))
        args = c.get("args", [])
        if not args or args[0] != "run":
            failures.append("%s: args do not start with the run subcommand: %s" % (name, args))
        if "--metrics-addr=0.0.0.0:%s" % port not in args:
            failures.append("%s: --metrics-addr does not use port %s: %s" % (name, port, args))
        env = {e["name"]: e for e in c.get("env", [])}
        for var, field in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
            got = ((env.get(var) or {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
            if got != field:
                failures.append("%s: env %s is not the downward API's %s" % (name, var, field))
    if obj["spec"].get("replicas") != values["replicaCount"]:
        failures.append("%s: replicas %s != %s" % (where, obj["spec"].get("replicas"), values["replicaCount"]))
    return report


def rbac_of(objects):
    """RBAC objects in a compact form."""
    out = {"cluster_roles": [], "roles": [], "cluster_role_bindings": [], "role_bindings": []}
    key = {
        "ClusterRole": "cluster_roles",
        "Role": "roles",
        "ClusterRoleBinding": "cluster_role_bindings",
        "RoleBinding": "role_bindings",
    }
    for item in objects:
        obj = item["object"]
        if obj.get("kind") not in key:
            continue
        meta = obj.get("metadata", {})
        entry = {"name": meta.get("name"), "namespace": meta.get("namespace")}
        if "rules" in obj or obj["kind"].endswith("Role"):
            entry["rules"] = obj.get("rules") or []
        else:
            entry["roleRef"] = obj.get("roleRef")
            entry["subjects"] = obj.get("subjects") or []
        out[key[obj["kind"]]].append(entry)
    return out


def check_scenario(name, values, failures):
    effective = merged(values)
    release, objects = render(values)
    report = {
        "values": values,
        "objects": [],
        "skipped": [],
        "notes": release.get("notes", ""),
        "rbac": rbac_of(objects),
        "deployment": None,
        "uncommented_rules": [],
    }
    kinds = {}
    for item in objects:
        obj = item["object"]
        kinds.setdefault(obj["kind"], []).append(obj)
        where = "%s: %s %s" % (name, obj["kind"], obj["metadata"].get("name"))
        validation = validate(obj)
        for version, result in validation.items():
            if result.startswith("error"):
                failures.append("%s: invalid for Kubernetes %s: %s" % (where, version, result))
            elif result.startswith("skipped") and obj["kind"] not in ("ServiceMonitor",):
                failures.append("%s: unexpectedly skipped: %s" % (where, result))
            elif result.startswith("skipped"):
                report["skipped"].append("%s (%s): %s" % (where, version, result))
        report["objects"].append(
            {
                "kind": obj["kind"],
                "apiVersion": obj["apiVersion"],
                "name": obj["metadata"].get("name"),
                "namespace": obj["metadata"].get("namespace"),
                "source": item["source"],
                "validation": validation,
            }
        )
        if obj["kind"] in ("ClusterRole", "Role"):
            missing = rules_have_comments(item["text"])
            report["uncommented_rules"].extend(missing)
            for rule in missing:
                failures.append("%s: rule without a comment saying why: %s" % (where, rule))
        if obj["kind"] in ("Deployment",):
            report["deployment"] = check_deployment(obj, effective, failures, where)
    # Namespaced objects of the release go to the release namespace; Roles to watched ones.
    for item in objects:
        obj = item["object"]
        ns = obj["metadata"].get("namespace")
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            if ns:
                failures.append("%s: cluster-scoped %s has a namespace" % (name, obj["kind"]))
        elif ns is None:
            failures.append("%s: %s %s has no namespace" % (name, obj["kind"], obj["metadata"]["name"]))
    # Bindings name the rendered ServiceAccount (or the configured existing one).
    sa_name = effective["serviceAccount"]["name"] or RELEASE
    for binding in kinds.get("ClusterRoleBinding", []) + kinds.get("RoleBinding", []):
        subjects = binding.get("subjects") or []
        if subjects != [{"kind": "ServiceAccount", "name": sa_name, "namespace": NAMESPACE}]:
            failures.append("%s: %s %s binds %s" % (name, binding["kind"], binding["metadata"]["name"], subjects))
    if effective["serviceAccount"]["create"]:
        names = [o["metadata"]["name"] for o in kinds.get("ServiceAccount", [])]
        if names != [sa_name]:
            failures.append("%s: ServiceAccounts %s, expected [%s]" % (name, names, sa_name))
    # Watch scope: ClusterRole for all namespaces, one Role per watched namespace otherwise.
    watched = effective["watchNamespaces"]
    cluster_roles = [o["metadata"]["name"] for o in kinds.get("ClusterRole", [])]
    operator_roles = sorted(
        o["metadata"]["namespace"]
        for o in kinds.get("Role", [])
        if not o["metadata"]["name"].endswith("-leader-election")
    )
    if watched:
        if cluster_roles or kinds.get("ClusterRoleBinding"):
            failures.append("%s: cluster-wide RBAC although namespaces are listed" % name)
        if operator_roles != sorted(watched):
            failures.append("%s: Roles in %s, watched %s" % (name, operator_roles, watched))
    elif not cluster_roles or operator_roles:
        failures.append("%s: watching all namespaces needs a ClusterRole only" % name)
    lease_roles = [o for o in kinds.get("Role", []) if o["metadata"]["name"].endswith("-leader-election")]
    if effective["leaderElection"]["enabled"] != bool(lease_roles):
        failures.append("%s: leader-election Role present=%s" % (name, bool(lease_roles)))
    for role in lease_roles:
        if role["metadata"]["namespace"] != NAMESPACE:
            failures.append("%s: the Lease Role is not in the release namespace" % name)
    # Metrics Service and ServiceMonitor agree on the port name.
    services = [s for s in kinds.get("Service", []) if s["metadata"]["name"].endswith("-metrics")]
    monitor = kinds.get("ServiceMonitor", [])
    # The registry webhook: its Service, container port and secret reference agree with the values.
    hooks = [s for s in kinds.get("Service", []) if s["metadata"]["name"].endswith("-webhook")]
    hook = effective["registryWebhook"]
    if hook["enabled"]:
        want = hook["service"].get("port") or hook["port"]
        if len(hooks) != 1 or hooks[0]["spec"]["ports"][0].get("targetPort") != "webhook" or hooks[0]["spec"]["ports"][0].get("port") != want:
            failures.append("%s: expected one webhook Service on port %s to targetPort webhook" % (name, want))
        container = (report["deployment"] or {"containers": [{}]})["containers"][0]
        ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
        if ports.get("webhook") != hook["port"]:
            failures.append("%s: container port webhook is %s, values say %s" % (name, ports.get("webhook"), hook["port"]))
        env = {e["name"]: e for e in container.get("env", [])}
        ref = ((env.get("MLROLLOUT_REGISTRY_WEBHOOK_SECRET") or {}).get("valueFrom") or {}).get("secretKeyRef")
        if ref != {"name": hook["secret"]["name"], "key": hook["secret"]["key"]}:
            failures.append("%s: the webhook secret is not read from the values' Secret: %s" % (name, ref))
    elif hooks:
        failures.append("%s: a webhook Service although disabled" % name)
    if effective["metrics"]["service"]["enabled"]:
        if len(services) != 1:
            failures.append("%s: expected one metrics Service" % name)
        else:
            port = services[0]["spec"]["ports"][0]
            if port.get("targetPort") != "metrics" or port.get("port") != effective["metrics"]["service"]["port"]:
                failures.append("%s: metrics Service port %s" % (name, port))
    elif services:
        failures.append("%s: a metrics Service although disabled" % name)
    if effective["metrics"]["serviceMonitor"]["enabled"]:
        if len(monitor) != 1 or monitor[0]["spec"]["endpoints"][0]["port"] != "metrics":
            failures.append("%s: ServiceMonitor missing or on the wrong port" % name)
    elif monitor:
        failures.append("%s: a ServiceMonitor although disabled" % name)
    # The Grafana dashboard ConfigMap: the sidecar's label, and the dashboard file as it is.
    dashboards = [o for o in kinds.get("ConfigMap", []) if o["metadata"]["name"].endswith("-dashboard")]
    wanted = effective["metrics"]["grafanaDashboard"]
    if wanted["enabled"]:
        if len(dashboards) != 1:
            failures.append("%s: expected one dashboard ConfigMap" % name)
        else:
            cm = dashboards[0]
            for key, value in wanted["labels"].items():
                if cm["metadata"]["labels"].get(key) != value:
                    failures.append("%s: dashboard ConfigMap lacks label %s=%s" % (name, key, value))
            with open(os.path.join(CHART, "dashboards", "mlrollout.json")) as f:
                if json.loads(cm["data"]["mlrollout.json"]) != json.load(f):
                    failures.append("%s: the ConfigMap's dashboard differs from dashboards/mlrollout.json" % name)
            if cm["metadata"]["namespace"] != (wanted.get("namespace") or NAMESPACE):
                failures.append("%s: dashboard ConfigMap in %s" % (name, cm["metadata"]["namespace"]))
    elif dashboards:
        failures.append("%s: a dashboard ConfigMap although disabled" % name)
    if not report["notes"].strip():
        failures.append("%s: NOTES.txt rendered empty" % name)
    report["kinds"] = sorted(kinds)
    return report


def check_crds(failures):
    chart = helm.Chart.load(CHART)
    crds = chart.crds
    out = {"files": [], "equal_to_repo": False}
    with open(REPO_CRD, "rb") as f:
        repo_bytes = f.read()
    out["repo_sha256"] = hashlib.sha256(repo_bytes).hexdigest()
    for crd in crds:
        data = crd["data"]
        raw = data.encode() if isinstance(data, str) else bytes(data)
        obj = yaml.safe_load(raw)
        validation = validate(obj)
        for version, result in validation.items():
            if not result.startswith("ok"):
                failures.append("CRD %s: Kubernetes %s: %s" % (crd.get("filename"), version, result))
        out["files"].append(
            {
                "filename": crd.get("filename"),
                "name": obj["metadata"]["name"],
                "sha256": hashlib.sha256(raw).hexdigest(),
                "validation": validation,
            }
        )
    if len(crds) != 1:
        failures.append("expected one CRD under charts/mlrollout/crds, found %d" % len(crds))
    out["equal_to_repo"] = len(out["files"]) == 1 and out["files"][0]["sha256"] == out["repo_sha256"]
    if not out["equal_to_repo"]:
        failures.append(
            "the CRD Helm loads from charts/mlrollout/crds is not crds/modeldeployment.yaml "
            "(the chart's file is a link to it: ln -sf ../../../crds/modeldeployment.yaml "
            "charts/mlrollout/crds/modeldeployment.yaml)"
        )
    return out


def lint(failures):
    out = {}
    for name, values in [("default", None)] + [(k, v) for k, v in SCENARIOS.items() if v]:
        report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
        out[name] = report
        for message in report.get("messages", []):
            if message.get("severity", 0) >= 2:
                failures.append("lint (%s): %s: %s" % (name, message.get("path"), message.get("error")))
        for error in report.get("errors", []):
            failures.append("lint (%s): %s" % (name, error))
    return out


def must_fail(failures):
    out = {}
    for name, (values, expected) in MUST_FAIL.items():
        try:
            render(values)
        except helm.HelmError as e:
            message = str(e)
            out[name] = {"refused": True, "error": message}
            if expected not in message:
                failures.append("values %s were refused, but the error does not name %r: %s" % (name, expected, message))
        else:
            out[name] = {"refused": False}
            failures.append("values %s were accepted: %s" % (name, values))
    return out


RBAC_MANIFEST_KINDS = ("ServiceAccount", "ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding")


def option(flag, default):
    """The value after `flag` on the command line, else `default`."""
    args = sys.argv[1:]
    if flag in args:
        i = args.index(flag)
        if i + 1 >= len(args):
            raise SystemExit("%s needs a value" % flag)
        return args[i + 1]
    return default


def main():
    failures = []
    result = {
        "helm_sdk": helm.helm_sdk_version(),
        "helm_python": helm.__version__,
        "kubernetes_validate": kubernetes_validate.__version__,
        "kubernetes_versions": KUBE_VERSIONS,
    }
    if "--rbac-only" in sys.argv[1:]:
        release_name = option("--release", RELEASE)
        namespace = option("--namespace", NAMESPACE)
        watch = option("--watch-namespaces", None)
        result["release"] = release_name
        result["namespace"] = namespace
        result["scenarios"] = {}
        for name in ("default", "namespaced"):
            values = dict(SCENARIOS[name])
            if name == "namespaced" and watch is not None:
                values["watchNamespaces"] = [n for n in watch.split(",") if n]
            _, objects = render(values, release_name, namespace)
            result["scenarios"][name] = {
                "values": values,
                "rbac": rbac_of(objects),
                "manifests": [
                    item["object"]
                    for item in objects
                    if item["object"].get("kind") in RBAC_MANIFEST_KINDS
                ],
                # The operator's Deployment as rendered (tests/pod_security.rs admits its Pod).
                "deployment": next(
                    item["object"] for item in objects if item["object"].get("kind") == "Deployment"
                ),
                # What the operator container runs (`run --lease-name=... --namespace=...`).
                "args": [
                    arg
                    for item in objects
                    if item["object"].get("kind") == "Deployment"
                    for container in containers_of(item["object"])[1]
                    for arg in container.get("args", [])
                ],
            }
    else:
        result["lint"] = lint(failures)
        result["scenarios"] = {name: check_scenario(name, values, failures) for name, values in SCENARIOS.items()}
        result["crds"] = check_crds(failures)
        result["must_fail"] = must_fail(failures)
    result["failures"] = failures
    result["ok"] = not failures
    json.dump(result, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc()
        sys.exit(2)
