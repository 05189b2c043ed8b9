#!/usr/bin/env bash
# Build the nads image from a clean clone of HEAD, then run its offline smoke test.
#
#   container/build.sh                      # podman; base image made here with debootstrap
#   BASE=python:3.11-slim container/build.sh    # any Python 3.11 base you can pull
#   ENGINE=docker container/build.sh
#
# BASE unset: a Debian 12 root file system (python3, python3-venv, git, make) made with
# debootstrap from Debian's packages and imported as localhost/nads-base:bookworm (once; Docker
# Hub is not needed). WHEELS=dir1:dir2 offers local copies of the locked files to pip inside the
# build (each still checked against the lock's sha256); PIP_CERT, where set, is the CA bundle pip
# in the build trusts too. LOCK=main leaves out ray, timm, pytest.
# SMOKE=0 builds only. CIFAR10= and NADS_PUBLISHED= name the local copies the smoke test fetches
# from (default: ../shared/data/ beside this checkout).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ENGINE=${ENGINE:-podman}
LOCK=${LOCK:-test}
step() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }

if [ -z "${BASE:-}" ]; then
    BASE=localhost/nads-base:bookworm
    if ! $ENGINE image exists "$BASE" 2>/dev/null; then
        step "making $BASE with debootstrap"
        rootfs=$(mktemp -d)/rootfs
        debootstrap --variant=minbase --include=python3,python3-venv,git,make,ca-certificates \
            bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        tar -C "$rootfs" -c . | $ENGINE import --change 'CMD ["/bin/bash"]' - "$BASE"
        rm -rf "$(dirname "$rootfs")"
    fi
fi

# Some hosts (containers themselves) refuse the default runtime's cgroups or rlimits: fall back
# to runc with limits no higher than this shell's.
engine=("$ENGINE") limits=()
if ! "${engine[@]}" run --rm "$BASE" true >/dev/null 2>&1; then
    engine=("$ENGINE" --runtime runc) limits=(--ulimit "nofile=$(ulimit -n):$(ulimit -n)" --ulimit nproc=4096:4096)
    "${engine[@]}" run --rm "${limits[@]}" "$BASE" true >/dev/null ||
        { echo "error: $ENGINE cannot start a container on this machine" >&2; exit 1; }
    echo "note: $ENGINE's default runtime cannot start containers here; using: ${engine[*]} ${limits[*]}" >&2
fi

# The image's tree is the commit: a clean clone, not this working tree.
commit=$(git -C "$root" rev-parse HEAD)
[ -z "$(git -C "$root" status --porcelain --untracked-files=no)" ] ||
    echo "note: uncommitted changes are not in the image; it is built from $commit" >&2
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
git clone -q --no-hardlinks "$root" "$ctx/nads"
git -C "$ctx/nads" checkout -q "$commit"

mounts=() findlinks=() cert=
IFS=: read -ra dirs <<< "${WHEELS:-}"
for i in "${!dirs[@]}"; do
    mounts+=(--volume "${dirs[$i]}:/wheels/$i:ro"); findlinks+=("/wheels/$i")
done
if [ -n "${PIP_CERT:-}" ]; then   # pip here trusts a CA of its own (a TLS proxy): so must pip in the build
    mounts+=(--volume "$(realpath "$PIP_CERT"):/run/host-ca.crt:ro"); cert=/run/host-ca.crt
fi
step "building nads:${commit:0:12} from $BASE (lock: requirements/$LOCK.txt)"
start=$(date +%s)
"${engine[@]}" build "${limits[@]}" "${mounts[@]}" --build-arg BASE="$BASE" --build-arg LOCK="$LOCK" \
    --build-arg GIT_COMMIT="$commit" --build-arg WHEEL_DIRS="${findlinks[*]}" --build-arg CA_CERT="$cert" \
    -t "nads:${commit:0:12}" -t nads:latest "$ctx/nads"
size=$($ENGINE image inspect nads:latest --format '{{.Size}}')
echo "built in $(( $(date +%s) - start )) s; image size $(( size / 1000000 )) MB; label revision" \
     "$($ENGINE image inspect nads:latest --format '{{index .Labels "org.opencontainers.image.revision"}}')"

[ "${SMOKE:-1}" = 1 ] || exit 0
step "offline smoke test"
cifar=$(realpath "${CIFAR10:-$root/../shared/data/cifar10-jpeg.tar.gz}")
published=$(realpath "${NADS_PUBLISHED:-$root/../shared/data/nads-published-2020.tar.gz}")
work=$(mktemp -d)   # the user's clone, bind-mounted: dvc.lock, the DVC cache, mlflow.db stay here
git clone -q "$root" "$work/nads" && git -C "$work/nads" checkout -q "$commit"
user=(--user "$(id -u):$(id -g)")
[ "$ENGINE" = podman ] && [ "$(id -u)" != 0 ] && user=(--userns=keep-id)
"${engine[@]}" run --rm "${limits[@]}" --network=none --shm-size=1g "${user[@]}" \
    -v "$work/nads:/nads" -v "$cifar:/in/cifar10.tar.gz:ro" -v "$published:/in/published.tar.gz:ro" \
    -e CIFAR10=/in/cifar10.tar.gz -e NADS_PUBLISHED=/in/published.tar.gz nads:latest bash -euc '
        test "$(git rev-parse HEAD)" = '"$commit"'
        python -c "import nads.environment as e, sys; sys.exit(e.check())"
        dvc repro --single-item fetch@cifar10 reference@logreg
        dvc repro synthetic nads@logreg
        dvc status synthetic nads@logreg fetch@cifar10 reference@logreg
        python -c "import mlflow; mlflow.set_tracking_uri(\"sqlite:///mlflow.db\"); \
                   r = mlflow.search_runs(experiment_names=[\"nads\"]); print(len(r), \"MLflow runs:\", sorted(r[\"tags.mlflow.runName\"]))"'
ls -ln "$work/nads/mlflow.db" "$work/nads/dvc.lock" "$work/nads/results/nads/logreg/nads.npy"
echo "smoke test passed: outputs, dvc.lock and mlflow.db are in $work/nads, owned by $(id -un)"
