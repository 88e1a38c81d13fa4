#!/usr/bin/env bash
# Flower deployment on one machine: a SuperLink and two SuperNodes on localhost (no TLS: --insecure), the
# example app examples/flower (distclip's Clip21 on the bundled MNIST CNN, 2 clients) run with `flwr run`,
# then everything shut down. Needs the flower extra in the active Python:  pip install -e '.[flower]'
#   scripts/flower_deploy.sh [config.toml inside examples/flower/distclip_mnist/, default clip21_mnist.toml]
#   SET="run.steps=20" scripts/flower_deploy.sh   # distclip overrides (default: 4 steps, logged every 2)
#   KILL_NODE_AFTER=S scripts/flower_deploy.sh   # kill -9 SuperNode 1 S seconds after the run starts
set -uo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-clip21_mnist.toml}
SET=${SET-run.steps=4 run.log_every=2}  # short: each message starts a flwr-clientapp process (imports torch)
PORT=${FLOWER_PORT:-39080}
WORK=$(mktemp -d)
export FLWR_HOME="$WORK/flwr-home" OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$FLWR_HOME"
cat > "$FLWR_HOME/config.toml" <<TOML
[superlink]
default = "localhost"

[superlink.localhost]
address = "127.0.0.1:$PORT"
insecure = true
TOML
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

flower-superlink --insecure --port "$PORT" --disable-runtime-dependency-installation \
  > "$WORK/superlink.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 120); do  # until the SuperLink listens (seconds on a loaded machine)
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 1
done
for i in 0 1; do
  flower-supernode --insecure --superlink "127.0.0.1:$PORT" --port $((PORT + 10 + i)) \
    --node-config "partition-id=$i num-partitions=2" > "$WORK/supernode-$i.log" 2>&1 &
  PIDS+=($!)
done
if [ -n "${KILL_NODE_AFTER:-}" ]; then
  (sleep "$KILL_NODE_AFTER"; echo "flower_deploy: killing SuperNode 1 (pid ${PIDS[2]})"; kill -9 "${PIDS[2]}") &
  PIDS+=($!)
fi
status=0
flwr run examples/flower localhost --stream --run-config "config=\"$CONFIG\" set=\"$SET\"" 2>&1 \
  | tee "$WORK/run.log" || status=$?
# flwr run --stream exits 0 even when the ServerApp failed; the ServerApp's one line says so
grep -q "^distclip: error:" "$WORK/run.log" && status=1
echo "flower_deploy: flwr run exited with status $status"
for f in "$WORK"/supernode-*.log; do echo "--- last lines of $(basename "$f")"; tail -n 3 "$f"; done
exit "$status"
