#!/usr/bin/env bash
# What the data-plane proxy adds to a request: the same model server hit directly and through
# `mlrollout proxy` (release build, capture on at 10 % to a local path), at a constant 2,000
# requests/s from vegeta on the same 2 cores. The model server is nginx answering a fixed
# MLflow-style prediction (a real MLflow server cannot take 2,000 requests/s on two cores, and
# its own latency would hide the proxy's). Rounds alternate direct / proxied; the table gives
# medians over rounds, and the proxy's peak RSS.
#   ROUNDS (3), SECONDS_PER_ROUND (15), RATE (2000)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds="${ROUNDS:-3}"; seconds="${SECONDS_PER_ROUND:-15}"; rate="${RATE:-2000}"

if ! command -v nginx >/dev/null 2>&1; then
    echo "proxy_overhead.sh: installing nginx-light (apt)" >&2
    apt-get install -y --no-install-recommends nginx-light >&2 || { apt-get update >&2; apt-get install -y --no-install-recommends nginx-light >&2; }
fi
vegeta="$(bash bench/loadgen/build.sh)"
cargo build --release --quiet
bin="${MLROLLOUT_BIN:-$PWD/target/release/mlrollout}"

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
model_port=$(free_port); proxy_port=$(free_port); metrics_port=$(free_port)

cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/body;
    server {
        listen 127.0.0.1:$model_port;
        keepalive_requests 1000000;
        location / {
            default_type application/json;
            return 200 '{"predictions": [0.42]}';
        }
    }
}
CONF
nginx -c "$work/nginx.conf" -g 'daemon off;' & pids+=($!)
"$bin" proxy --listen "127.0.0.1:$proxy_port" --metrics-listen "127.0.0.1:$metrics_port" \
    --upstream "http://127.0.0.1:$model_port" --pod bench --threads "${PROXY_THREADS:-1}" \
    --capture-uri "$work/capture" --capture-fraction 0.1 >"$work/proxy.log" 2>&1 & proxy_pid=$!; pids+=($proxy_pid)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$metrics_port/healthz" >/dev/null && curl -sf "http://127.0.0.1:$model_port/" >/dev/null && break; sleep 0.1; done

body='{"dataframe_split": {"columns": ["f0","f1","f2","f3","f4","f5","f6","f7","f8","f9"], "data": [[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0]]}}'
printf '%s' "$body" > "$work/body.json"
attack() {  # attack <port> <label>: prints "p50_ms p99_ms success"
    printf 'POST http://127.0.0.1:%s/invocations\nContent-Type: application/json\n@%s\n' "$1" "$work/body.json" > "$work/target.txt"
    "$vegeta" attack -targets "$work/target.txt" -rate "$rate/s" -duration "${seconds}s" -keepalive -connections 64 -max-workers 256 \
        | "$vegeta" report -type json \
        | python3 -c 'import json,sys; r=json.load(sys.stdin); l=r["latencies"]; print("%.3f %.3f %.4f" % (l["50th"]/1e6, l["99th"]/1e6, r["success"]))'
}
attack "$model_port" warmup >/dev/null; attack "$proxy_port" warmup >/dev/null
: > "$work/direct"; : > "$work/proxied"
for r in $(seq "$rounds"); do
    attack "$model_port" direct >> "$work/direct"
    attack "$proxy_port" proxied >> "$work/proxied"
    echo "round $r: direct $(tail -1 "$work/direct") | proxied $(tail -1 "$work/proxied")" >&2
done
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$proxy_pid/status")
windows_metric=$(curl -s "http://127.0.0.1:$metrics_port/metrics" | awk '/^mlrollout_proxy_capture_dropped_requests_total/ {s+=$2} END {print s+0}')
python3 - "$work/direct" "$work/proxied" "$rss_kib" "$rate" "$windows_metric" <<'PY'
import statistics, sys
def load(path):
    rows = [list(map(float, line.split())) for line in open(path) if line.strip()]
    return [statistics.median(col) for col in zip(*rows)]
direct, proxied = load(sys.argv[1]), load(sys.argv[2])
rss, rate, dropped = int(sys.argv[3]) / 1024, sys.argv[4], sys.argv[5]
print(f"| at {rate} req/s | direct | through the proxy | added | target |")
print("|---|---:|---:|---:|---|")
print(f"| p50 latency | {direct[0]:.3f} ms | {proxied[0]:.3f} ms | {proxied[0]-direct[0]:.3f} ms | ≤ 0.2 ms |")
print(f"| p99 latency | {direct[1]:.3f} ms | {proxied[1]:.3f} ms | {proxied[1]-direct[1]:.3f} ms | ≤ 1 ms |")
print(f"| success | {direct[2]*100:.2f} % | {proxied[2]*100:.2f} % | | |")
print(f"| proxy peak RSS | | {rss:.1f} MiB | | ≤ 32 MiB |")
print(f"| captured requests dropped | | {dropped} | | |")
PY
