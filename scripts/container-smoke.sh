#!/usr/bin/env bash
# Container smoke test without a Docker engine: build the real Dockerfile with podman, run it
# read-only on 127.0.0.1, wait for its HEALTHCHECK, classify real MNIST test digits, check
# /metrics, that it does not run as root and that torch is not in the image; then start the
# api service of docker-compose.yml with podman-compose (a real Compose implementation) and
# check it the same way. Prints timings and the image size. Recipe and the reasons for each
# podman setting: ../shared/CONTAINERS.md.
#
# Needs root (rootful podman) and Debian's apt (podman, runc, debootstrap are installed when
# missing). No registry needed: the base image is built once with debootstrap from the apt
# mirror and then reused (`podman rmi localhost/debian-python:bookworm` forces a rebuild).
#
# Env knobs: BASE_IMAGE (default: that local base; python:3.12-slim where a registry is
#            reachable), IMAGE (localhost/digits:smoke), NAME (digits-smoke), PORT (a free
#            one), WORK (/tmp/digits-container-smoke), DIGITS_DATA_DIR (../shared/data/mnist),
#            SMOKE_DIGITS (how many MNIST test digits to send, 10), SMOKE_MIN_CORRECT (9),
#            PODMAN_COMPOSE (podman-compose; `make container-smoke` passes the dev venv's).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-localhost/digits:smoke}
NAME=${NAME:-digits-smoke}
LOCAL_BASE=localhost/debian-python:bookworm
BASE_IMAGE=${BASE_IMAGE:-$LOCAL_BASE}
WORK=${WORK:-/tmp/digits-container-smoke}
DATA_DIR=${DIGITS_DATA_DIR:-../shared/data/mnist}
SMOKE_DIGITS=${SMOKE_DIGITS:-10}
SMOKE_MIN_CORRECT=${SMOKE_MIN_CORRECT:-9}
HEALTHY_WITHIN_S=${HEALTHY_WITHIN_S:-60}
PODMAN_COMPOSE=${PODMAN_COMPOSE:-podman-compose}
mkdir -p "$WORK"
ts() { date +%s.%N; }
el() { awk -v a="$1" -v b="$(ts)" 'BEGIN{printf "%.1f", b-a}'; }
log() { echo "[smoke] $*"; }
fail() { echo "[smoke] FAIL: $*" >&2; exit 1; }
T0=$(ts)

[ -f models/lenet5.onnx ] || fail "models/lenet5.onnx is missing (train it: make train)"
[ -f "$DATA_DIR/t10k-images-idx3-ubyte.gz" ] || fail "no MNIST test set in $DATA_DIR (set DIGITS_DATA_DIR)"
command -v "$PODMAN_COMPOSE" >/dev/null || fail "no $PODMAN_COMPOSE (the dev extra installs it: make container-smoke)"

# --- 0. tools (Debian packages; idempotent) ---------------------------------------------------
need=()
for tool in podman runc debootstrap curl; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  t=$(ts)
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  log "apt-get install ${need[*]}: $(el "$t") s"
fi

# --- 1. podman settings for this kind of VM (runc, ulimits, cgroupfs, docker format) -------
PODMAN_CONF_DIR="$WORK" . scripts/podman-env.sh

# --- 2. local base image (no registry), built once ------------------------------------------
if [ "$BASE_IMAGE" = "$LOCAL_BASE" ] && ! podman image exists "$LOCAL_BASE"; then
  t=$(ts)
  mirror=$(awk 'BEGIN{RS="";FS="\n"} {u="";s=""; for(i=1;i<=NF;i++){ if($i~/^URIs:/){sub(/^URIs:[ \t]*/,"",$i); split($i,a," "); u=a[1]} if($i~/^Suites:/) s=$i }
               if(u!="" && s~/[ \t]bookworm([ \t]|$)/ && u!~/security/){print u; exit}}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '$1=="deb" && !/security/ {for(i=2;i<=NF;i++) if($i~/^[a-z]+:\/\//){print $i; exit}}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
  rootfs="$WORK/rootfs"; rm -rf "$rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" "$mirror" > "$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log"; fail "debootstrap"; }
  # Trust the host's extra CAs (TLS-intercepting egress proxy); a no-op where there are none.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
  tar -C "$rootfs" --numeric-owner -c . | podman import -q \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["/bin/bash"]' - "$LOCAL_BASE" >/dev/null
  rm -rf "$rootfs"
  log "base image $LOCAL_BASE (debootstrap + import): $(el "$t") s"
else
  log "base image $BASE_IMAGE: cached"
fi

# --- 3. build the real Dockerfile -------------------------------------------------------------
t=$(ts)
podman build -q --format docker --network host --build-arg BASE_IMAGE="$BASE_IMAGE" \
  -t "$IMAGE" . > "$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; fail "podman build"; }
log "podman build: $(el "$t") s"

# --- 4. run it as compose does: read-only root, tmpfs /tmp, no capabilities, loopback -----
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
COMPOSE_PROJECT="$NAME-compose"
COMPOSE_PORT=$(free_port)
# The compose file as an operator runs it; only the image (built above) and the published
# port (free on this machine) are chosen here, through the file's own variables.
compose() {
  DIGITS_IMAGE="$IMAGE" DIGITS_PUBLISHED_PORT="$COMPOSE_PORT" BASE_IMAGE="$BASE_IMAGE" \
    "$PODMAN_COMPOSE" -p "$COMPOSE_PROJECT" -f docker-compose.yml "$@"
}
cleanup() {
  podman rm -f -t 2 "$NAME" >/dev/null 2>&1 || true
  compose down -t 2 >/dev/null 2>&1 || true
  rm -rf "$WORK/digits"
}
trap cleanup EXIT
cleanup
PORT=${PORT:-$(free_port)}
URL="http://127.0.0.1:$PORT"
t=$(ts)
podman run -d --name "$NAME" --network host --read-only --tmpfs /tmp:size=64m \
  --cap-drop ALL --security-opt no-new-privileges \
  -e DIGITS_HOST=127.0.0.1 -e DIGITS_PORT="$PORT" "$IMAGE" >/dev/null 2>"$WORK/run.err" \
  || { cat "$WORK/run.err"; fail "podman run"; }
# podman's healthcheck timers need systemd (absent here), so the check is run by hand: it is
# the image's own HEALTHCHECK command, and success marks the container healthy.
wait_healthy() {  # container name
  local healthy= deadline=$(( $(date +%s) + HEALTHY_WITHIN_S )) status
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if podman healthcheck run "$1" >/dev/null 2>&1; then healthy=1; break; fi
    [ "$(podman inspect -f '{{.State.Running}}' "$1")" = true ] || break
    sleep 0.5
  done
  if [ -z "$healthy" ]; then podman logs "$1" 2>&1 | tail -30; fail "$1 not healthy within ${HEALTHY_WITHIN_S} s"; fi
  status=$(podman inspect -f '{{.State.Health.Status}}' "$1" 2>/dev/null || podman inspect -f '{{.State.Healthcheck.Status}}' "$1")
  [ "$status" = healthy ] || fail "$1: health status is '$status', expected healthy"
}
wait_healthy "$NAME"
log "run -> HEALTHCHECK healthy: $(el "$t") s"

# --- 5. real digits: the first MNIST test images as PNG files (stdlib only) -----------------
mkdir -p "$WORK/digits"
python3 - "$DATA_DIR" "$WORK/digits" "$SMOKE_DIGITS" <<'PY'
import gzip, struct, sys, zlib
from pathlib import Path

data, out, count = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
images = gzip.open(data / "t10k-images-idx3-ubyte.gz").read()
labels = gzip.open(data / "t10k-labels-idx1-ubyte.gz").read()
_, n, rows, cols = struct.unpack(">IIII", images[:16])

def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

for i in range(min(count, n)):
    pixels = images[16 + i * rows * cols: 16 + (i + 1) * rows * cols]
    raw = b"".join(b"\0" + pixels[r * cols:(r + 1) * cols] for r in range(rows))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", cols, rows, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    (out / f"{i:03d}_label{labels[8 + i]}.png").write_bytes(png)
PY
correct=0; total=0; t=$(ts)
for file in "$WORK"/digits/*.png; do
  label=${file##*_label}; label=${label%.png}
  answer=$(curl -fsS -F "file=@$file;type=image/png" "$URL/predict") || fail "POST /predict $file"
  digit=$(printf '%s' "$answer" | python3 -c 'import json, sys; print(json.load(sys.stdin)["digit"])')
  total=$((total + 1)); [ "$digit" = "$label" ] && correct=$((correct + 1))
done
[ "$correct" -ge "$SMOKE_MIN_CORRECT" ] || fail "only $correct/$total MNIST test digits right"
log "POST /predict: $correct/$total MNIST test digits right ($(el "$t") s)"

# --- 6. metrics, user, no torch ------------------------------------------------------------------
metrics=$(curl -fsS "$URL/metrics")
for series in 'digits_http_requests_total{' 'digits_predictions_total{' 'digits_model_info{' 'digits_model_ready 1.0' 'digits_batch_size_bucket{'; do
  grep -qF "$series" <<<"$metrics" || fail "/metrics lacks $series"
done
predicted=$(awk '/^digits_predictions_total\{/ {s += $2} END {print s + 0}' <<<"$metrics")
[ "${predicted%.*}" -ge "$total" ] || fail "digits_predictions_total is $predicted, expected >= $total"
uid=$(podman exec "$NAME" id -u)
[ "$uid" != 0 ] || fail "the service runs as root"
if torch_err=$(podman exec "$NAME" python -c "import torch" 2>&1); then fail "torch is importable in the image"; fi
grep -q "ModuleNotFoundError" <<<"$torch_err" || fail "import torch failed oddly: $torch_err"
# SIGHUP reloads the model file in place (here the same file: nothing to swap), still ready.
podman kill -s HUP "$NAME" >/dev/null
reloaded=
for _ in $(seq 1 100); do
  if podman logs "$NAME" 2>&1 | grep -q "is the file already serving"; then reloaded=1; break; fi
  sleep 0.2
done
[ -n "$reloaded" ] || { podman logs "$NAME" 2>&1 | tail -10; fail "SIGHUP did not reload"; }
curl -fsS "$URL/readyz" >/dev/null || fail "not ready after SIGHUP"
size=$(podman image inspect -f '{{.Size}}' "$IMAGE")
log "/metrics has digits_* (predictions counted: $predicted); uid=$uid; import torch: ModuleNotFoundError; SIGHUP reload OK"
log "image $IMAGE: $(awk -v s="$size" 'BEGIN{printf "%.0f MB", s/1e6}')"
podman rm -f -t 2 "$NAME" >/dev/null

# --- 7. docker-compose.yml's api service, started by podman-compose ---------------------------
# Its own network, the port published on 127.0.0.1, read-only, tmpfs, no capabilities, the
# CPU and memory limits and the healthcheck, all as the file declares them.
t=$(ts)
compose up -d --no-build api > "$WORK/compose-up.log" 2>&1 || { tail -30 "$WORK/compose-up.log"; fail "podman-compose up api"; }
api=$(podman ps -q --filter "label=io.podman.compose.project=$COMPOSE_PROJECT" --filter label=io.podman.compose.service=api)
[ -n "$api" ] || { tail -30 "$WORK/compose-up.log"; fail "podman-compose started no api container"; }
wait_healthy "$api"
log "podman-compose up api -> healthy: $(el "$t") s ($("$PODMAN_COMPOSE" version 2>/dev/null | head -1))"
COMPOSE_URL="http://127.0.0.1:$COMPOSE_PORT"
correct=0
for file in "$WORK"/digits/*.png; do
  label=${file##*_label}; label=${label%.png}
  answer=$(curl -fsS -F "file=@$file;type=image/png" "$COMPOSE_URL/predict") || fail "compose: POST /predict $file"
  digit=$(printf '%s' "$answer" | python3 -c 'import json, sys; print(json.load(sys.stdin)["digit"])')
  [ "$digit" = "$label" ] && correct=$((correct + 1))
done
[ "$correct" -ge "$SMOKE_MIN_CORRECT" ] || fail "compose: only $correct/$total MNIST test digits right"
readonly=$(podman inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$api")
[ "$readonly" = true ] || fail "compose: the root file system is not read-only"
memory=$(podman inspect -f '{{.HostConfig.Memory}}' "$api")
[ "$memory" = $((2 * 1024 * 1024 * 1024)) ] || fail "compose: memory limit is $memory, expected 2 GiB"
cpus=$(podman inspect -f '{{.HostConfig.NanoCpus}}' "$api")
[ "$cpus" = 2000000000 ] || fail "compose: CPU limit is $cpus nano-CPUs, expected 2 CPUs"
# cap_drop ALL empties the bounding set: nothing in the container can ever gain a capability.
# (awk on this side: the image has only sh, ls, cat, id and sleep, deploy/image/rootfs.py)
bounding=$(podman exec "$api" cat /proc/1/status | awk '/^CapBnd/ {print $2}')
[ "$bounding" = 0000000000000000 ] || fail "compose: capability bounding set is $bounding, expected none"
log "compose api on $COMPOSE_URL: $correct/$total MNIST test digits right; read-only, caps dropped, 2 CPUs, 2 GiB"
compose down -t 2 > "$WORK/compose-down.log" 2>&1 || { tail -30 "$WORK/compose-down.log"; fail "podman-compose down"; }
left=$(podman ps -aq --filter "label=io.podman.compose.project=$COMPOSE_PROJECT")
[ -z "$left" ] || fail "podman-compose down left containers: $left"
log "podman-compose down: nothing left"
log "OK; total $(el "$T0") s"
