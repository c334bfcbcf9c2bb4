#!/usr/bin/env bash
# A real, local Kubernetes control plane for the tests and for trying mlrollout by hand.
#
#   bash tests/harness/cluster.sh up   [--dir DIR] [--control-plane-only] [--watch-pid PID]
#   bash tests/harness/cluster.sh down [--dir DIR]
#   bash tests/harness/cluster.sh restart [--dir DIR]
#
# `up` builds (or takes from the cache) etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl and kwok from the Go modules pinned in tests/harness/controlplane,
# starts them on free loopback ports, installs the ModelDeployment CRD, the Gateway API
# standard-channel CRDs, Istio's VirtualService CRD and the Inference Extension's v1
# InferencePool CRD, registers one kwok node (so Pods of
# Deployments become Ready and Job Pods run through the real controllers), and prints
#   export KUBECONFIG=<DIR>/kubeconfig
# on stdout. Without --control-plane-only it also starts MLflow and Prometheus from the
# harness (tests/harness/install.sh) and prints their addresses.
#
# What kwok does with Pods: every Pod becomes Running and Ready. A Job's Pod keeps running
# until it gets the label mlrollout.io/test-outcome=succeeded or =failed; then it ends that way
# and the real Job controller completes or fails the Job.
#
# `down` stops exactly the processes `up` started (their pids are in DIR/pids), nothing else.
# `restart` starts etcd and kube-apiserver again if they are not running (a test killed them):
# the command lines `up` used (DIR/cmd), so the same ports, certificates and etcd data; it waits
# until both answer and updates DIR/pids.
# --watch-pid PID makes `up` also start a watcher that runs `down` when PID exits (the test
# harness passes its own pid, so a killed test run leaves nothing behind).
#
# Every wait has a deadline; a component that does not come up gives one line naming the
# binary and its log file, and `up` exits non-zero after stopping what it started.
set -euo pipefail

log() { printf 'cluster.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

cmd="${1:-}"; shift || true
dir="$repo/target/cluster"
control_plane_only=0
watch_pid=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) dir="$2"; shift 2 ;;
        --control-plane-only) control_plane_only=1; shift ;;
        --watch-pid) watch_pid="$2"; shift 2 ;;
        *) die "unknown argument: $1 (usage: cluster.sh up|down|restart [--dir DIR] [--control-plane-only] [--watch-pid PID])" ;;
    esac
done
if [ "$cmd" = down ] && [ ! -d "$dir" ]; then
    log "nothing to stop: no $dir"
    exit 0
fi
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
pids="$dir/pids"

# ---------------------------------------------------------------------------- down
stop_all() {
    [ -f "$pids" ] || return 0
    local name pid
    # Reverse start order: clients before the API server, the API server before etcd.
    tac "$pids" | while read -r name pid; do
        kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null || true
    done
    local deadline=$(( $(date +%s) + 5 ))
    tac "$pids" | while read -r name pid; do
        while kill -0 "$pid" 2>/dev/null; do
            if [ "$(date +%s)" -ge "$deadline" ]; then
                log "$name (pid $pid) ignored SIGTERM for 5s: SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                # SIGKILL is not instant: wait (briefly) until the process is really gone.
                local n=0
                while kill -0 "$pid" 2>/dev/null && ! grep -q ') Z ' "/proc/$pid/stat" 2>/dev/null \
                        && [ $n -lt 50 ]; do
                    sleep 0.1; n=$((n + 1))
                done
                break
            fi
            sleep 0.1
        done
    done
    # Kept for the record (tests check that what was started is gone).
    mv -f "$pids" "$pids.stopped"
}

if [ "$cmd" = down ]; then
    stop_all
    log "stopped everything listed in $pids"
    exit 0
fi

# setsid: a Ctrl-C in the shell that ran `up` does not reach the cluster. Prints the pid.
launch() {
    local name="$1"; shift
    setsid "$@" >>"$dir/logs/$name.log" 2>&1 < /dev/null &
    echo "$!"
}

pid_of() { awk -v n="$1" '$1 == n {print $2}' "$pids"; }

# wait_for NAME SECONDS PROBE...: polls PROBE until it succeeds; fails naming NAME's log.
wait_for() {
    local name="$1" limit="$2"; shift 2
    local deadline=$(( $(date +%s) + limit ))
    until "$@" >/dev/null 2>&1; do
        if ! kill -0 "$(pid_of "$name")" 2>/dev/null; then
            die "$name exited during startup; see $dir/logs/$name.log: $(tail -n 1 "$dir/logs/$name.log" 2>/dev/null)"
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            die "$name not ready within ${limit}s; see $dir/logs/$name.log"
        fi
        sleep 0.2
    done
}

curl_admin() {
    curl -sf --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key" "$@"
}

if [ "$cmd" = restart ]; then
    [ -f "$pids" ] && [ -f "$dir/cluster.env" ] || die "no cluster in $dir (run 'up' first)"
    env_value() { sed -n "s/^$1=//p" "$dir/cluster.env"; }
    for name in etcd kube-apiserver; do
        if kill -0 "$(pid_of "$name")" 2>/dev/null; then
            log "$name (pid $(pid_of "$name")) is running: left as is"
        else
            [ -f "$dir/cmd/$name" ] || die "no recorded command line for $name in $dir/cmd"
            pid="$(eval "launch $name $(cat "$dir/cmd/$name")")"
            sed -i "s/^$name .*/$name $pid/" "$pids"
            log "$name started again (pid $pid)"
        fi
        if [ "$name" = etcd ]; then
            wait_for etcd 30 curl -sf "$(env_value etcd)/health"
        else
            wait_for kube-apiserver 90 curl_admin "$(env_value server)/readyz"
        fi
    done
    exit 0
fi
[ "$cmd" = up ] || die "usage: cluster.sh up|down|restart [--dir DIR] [--control-plane-only] [--watch-pid PID]"

if [ -f "$pids" ]; then
    log "stopping the processes of an earlier 'up' in $dir"
    stop_all
fi
rm -rf "$dir/etcd" "$dir/pki" "$dir/logs" "$dir/cmd" "$pids.stopped"
mkdir -p "$dir/logs" "$dir/pki" "$dir/cmd"
trap 'rc=$?; if [ $rc -ne 0 ]; then stop_all; fi; exit $rc' EXIT

# MLROLLOUT_CONTROLPLANE_BIN: a folder with the binaries already built (skips the Go build).
bin="${MLROLLOUT_CONTROLPLANE_BIN:-}"
[ -n "$bin" ] || bin="$(bash "$here/controlplane/build.sh")"
export PATH="$bin:$PATH"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start NAME ARGS...: runs a binary in the background, its output in logs/NAME.log; its
# command line is kept in cmd/NAME (for `restart`).
start() {
    local name="$1"; shift
    printf '%q ' "$(command -v "$1")" "${@:2}" >"$dir/cmd/$name"
    printf '%s %s\n' "$name" "$(launch "$name" "$@")" >>"$pids"
}

# ----------------------------------------------------------------------------- PKI
pki="$dir/pki"
(
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 \
        -subj "/CN=mlrollout-test-ca" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
        -subj "/CN=kube-apiserver" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
        -out apiserver.crt -days 30 -extfile apiserver.ext 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr \
        -subj "/O=system:masters/CN=admin" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
        -out admin.crt -days 30 -extfile client.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
)

# --------------------------------------------------------------------------- etcd
etcd_port="$(free_port)"; peer_port="$(free_port)"
start etcd etcd --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="default=http://127.0.0.1:$peer_port" --unsafe-no-fsync=true --log-level=warn \
    --listen-metrics-urls=""
wait_for etcd "${MLROLLOUT_CLUSTER_START_TIMEOUT:-30}" curl -sf "http://127.0.0.1:$etcd_port/health"

# ------------------------------------------------------------------ kube-apiserver
# Every write (who, what, when, answer) goes to logs/audit.log: tests read it to prove who
# wrote and what was refused (leader election, RBAC).
cat >"$dir/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
EOF
api_port="$(free_port)"
server="https://127.0.0.1:$api_port"
start kube-apiserver kube-apiserver --etcd-servers="http://127.0.0.1:$etcd_port" \
    --cert-dir="$pki" --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" --bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
    --secure-port="$api_port" --authorization-mode=RBAC --endpoint-reconciler-type=none \
    --service-account-issuer="$server" --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" --api-audiences="$server" \
    --service-cluster-ip-range=10.96.0.0/16 --allow-privileged=true \
    --disable-admission-plugins=ServiceAccount --enable-priority-and-fairness=false \
    --profiling=false --event-ttl=1h \
    --audit-policy-file="$dir/audit-policy.yaml" --audit-log-path="$dir/logs/audit.log" \
    --audit-log-format=json --audit-log-maxsize=0
wait_for kube-apiserver "${MLROLLOUT_CLUSTER_START_TIMEOUT:-90}" curl_admin "$server/readyz"

kubeconfig="$dir/kubeconfig"
cat >"$kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: mlrollout-test
  cluster:
    server: $server
    certificate-authority: $pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $pki/admin.crt
    client-key: $pki/admin.key
contexts:
- name: mlrollout-test
  context: {cluster: mlrollout-test, user: admin, namespace: default}
current-context: mlrollout-test
EOF
export KUBECONFIG="$kubeconfig"

# --------------------------------------------------------- controllers, scheduler, kwok
crd_cache="$(cd "$here/controlplane" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go env GOMODCACHE)"
module_dir() {
    (cd "$here/controlplane" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "$1" \
        | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
}
start kube-controller-manager kube-controller-manager --kubeconfig="$kubeconfig" \
    --authentication-kubeconfig="$kubeconfig" --authorization-kubeconfig="$kubeconfig" \
    --leader-elect=false --secure-port=0 --use-service-account-credentials=false \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --controllers='*' --concurrent-deployment-syncs=10 --concurrent-job-syncs=10
start kube-scheduler kube-scheduler --kubeconfig="$kubeconfig" \
    --authentication-kubeconfig="$kubeconfig" --authorization-kubeconfig="$kubeconfig" \
    --leader-elect=false --secure-port=0

kwok_ok=0
if [ -x "$bin/kwok" ]; then
    kwok_port="$(free_port)"
    kwok_dir="$(module_dir sigs.k8s.io/kwok@v0.8.0)"
    {
        sed "s/@NODE_PORT@/$kwok_port/" "$here/kwok.yaml"
        for stage in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
                     pod/fast/pod-ready pod/fast/pod-delete; do
            echo "---"
            cat "$kwok_dir/kustomize/stage/$stage.yaml"
        done
    } >"$dir/kwok.yaml"
    start kwok kwok --kubeconfig="$kubeconfig" --config="$dir/kwok.yaml" \
        --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
        --node-ip=127.0.0.1 --server-address="127.0.0.1:$kwok_port"
    kwok_ok=1
fi

# ------------------------------------------------------------------------------ CRDs
gateway_dir="$(module_dir sigs.k8s.io/gateway-api@v1.6.3)"
istio_dir="$(module_dir istio.io/api@v1.32.0)"
# The Gateway API Inference Extension's v1 InferencePool (spec.traffic.backend.kind InferencePool).
inference_dir="$(module_dir sigs.k8s.io/gateway-api-inference-extension@v1.6.0)"
[ -d "$gateway_dir" ] || die "Gateway API CRDs not found (go mod download sigs.k8s.io/gateway-api@v1.6.3, cache $crd_cache)"
[ -d "$istio_dir" ] || die "Istio CRDs not found (go mod download istio.io/api@v1.32.0, cache $crd_cache)"
inference_crd="$inference_dir/config/crd/bases/inference.networking.k8s.io_inferencepools.yaml"
[ -f "$inference_crd" ] || die "InferencePool CRD not found (go mod download sigs.k8s.io/gateway-api-inference-extension@v1.6.0, cache $crd_cache; expected $inference_crd)"
python3 - "$istio_dir/kubernetes/customresourcedefinitions.gen.yaml" >"$dir/virtualservice-crd.yaml" <<'PY'
import sys
text = open(sys.argv[1]).read()
for doc in text.split("\n---\n"):
    if "name: virtualservices.networking.istio.io" in doc:
        print(doc)
        break
else:
    sys.exit("virtualservices.networking.istio.io not in " + sys.argv[1])
PY
kubectl apply --server-side --field-manager=mlrollout-harness -f "$repo/crds/modeldeployment.yaml" \
    -f "$gateway_dir/config/crd/standard/gateway.networking.k8s.io_gatewayclasses.yaml" \
    -f "$gateway_dir/config/crd/standard/gateway.networking.k8s.io_gateways.yaml" \
    -f "$gateway_dir/config/crd/standard/gateway.networking.k8s.io_httproutes.yaml" \
    -f "$gateway_dir/config/crd/standard/gateway.networking.k8s.io_referencegrants.yaml" \
    -f "$dir/virtualservice-crd.yaml" -f "$inference_crd" >"$dir/logs/crds.log" 2>&1 \
    || die "installing CRDs failed; see $dir/logs/crds.log"
kubectl wait --for=condition=Established --timeout=60s crd --all >>"$dir/logs/crds.log" 2>&1 \
    || die "CRDs not established within 60s; see $dir/logs/crds.log"

if [ "$kwok_ok" = 1 ]; then
    kubectl apply --server-side --field-manager=mlrollout-harness -f "$here/kwok-node.yaml" >>"$dir/logs/kwok.log" 2>&1 \
        || die "registering the kwok node failed; see $dir/logs/kwok.log"
    node_ready() {
        [ "$(kubectl get node kwok-node-0 -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
    }
    wait_for kwok 60 node_ready
fi
# The controller-manager makes the default ServiceAccount of each namespace; wait for it in
# `default` so the controllers are known to be running.
wait_for kube-controller-manager 60 kubectl get serviceaccount default -n default
pid_of kube-scheduler | xargs kill -0 2>/dev/null || die "kube-scheduler exited; see $dir/logs/kube-scheduler.log"

{
    echo "kubeconfig=$kubeconfig"
    echo "server=$server"
    echo "etcd=http://127.0.0.1:$etcd_port"
    echo "kwok=$kwok_ok"
    echo "bin=$bin"
    echo "audit_log=$dir/logs/audit.log"
    echo "ca=$pki/ca.crt"
    echo "ca_key=$pki/ca.key"
} >"$dir/cluster.env"

if [ "$control_plane_only" = 0 ]; then
    eval "$(bash "$here/install.sh")"
    mlflow_port="$(free_port)"; prom_port="$(free_port)"
    mkdir -p "$dir/mlflow" "$dir/prometheus"
    start mlflow "$MLROLLOUT_MLFLOW_BIN" server --host 127.0.0.1 --port "$mlflow_port" \
        --backend-store-uri "sqlite:///$dir/mlflow/mlflow.db" --default-artifact-root "$dir/mlflow/artifacts"
    printf 'global: {scrape_interval: 5s}\nscrape_configs: []\n' >"$dir/prometheus/prometheus.yml"
    start prometheus "$MLROLLOUT_PROMETHEUS_BIN" --config.file="$dir/prometheus/prometheus.yml" \
        --storage.tsdb.path="$dir/prometheus/data" --web.listen-address="127.0.0.1:$prom_port"
    wait_for mlflow 120 curl -sf "http://127.0.0.1:$mlflow_port/health"
    wait_for prometheus 60 curl -sf "http://127.0.0.1:$prom_port/-/ready"
    mlflow_url="http://127.0.0.1:$mlflow_port"
    # The bundled example serves `fraud-detector@champion`: register a first version of it.
    log "registering fraud-detector v1 (champion) in MLflow"
    "$MLROLLOUT_PYTHON" "$here/../scripts/train_models.py" --tracking-uri "$mlflow_url" \
        --model-name fraud-detector --seed 1 >"$dir/logs/train.log" 2>&1 \
        || die "registering the example model failed; see $dir/logs/train.log"
    curl -sf -X POST -H 'Content-Type: application/json' \
        -d '{"name": "fraud-detector", "alias": "champion", "version": "1"}' \
        "$mlflow_url/api/2.0/mlflow/registered-models/alias" >/dev/null \
        || die "setting the champion alias failed (MLflow at $mlflow_url)"
    echo "export MLFLOW_TRACKING_URI=$mlflow_url"
    echo "export PROMETHEUS_URL=http://127.0.0.1:$prom_port"
fi

if [ -n "$watch_pid" ]; then
    # Runs `down` for this directory once the watched process is gone.
    setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec bash "$2" down --dir "$3"' \
        _ "$watch_pid" "$here/cluster.sh" "$dir" >"$dir/logs/watcher.log" 2>&1 < /dev/null &
fi

log "up: API server $server, kwok $([ "$kwok_ok" = 1 ] && echo on || echo off), logs in $dir/logs"
echo "export KUBECONFIG=$kubeconfig"
echo "export PATH=$bin:\$PATH"
