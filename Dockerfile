# The pipeline's environment from the lock, and the commit it was built from.
#
#   container/build.sh            builds it (from a clean clone of HEAD) and runs its offline smoke test
#   docker build --build-arg GIT_COMMIT=$(git rev-parse HEAD) -t nads .   (from a clean checkout)
#
# What is in it: Python 3.11, the packages of requirements/test.txt (LOCK=main: without ray, timm,
# pytest) with PyPI's torch, which is the CUDA build on Linux (CUDA runtime, cuDNN, NCCL and triton:
# about 5.5 GB of the image). The same image computes on the CPU and, run with the NVIDIA container
# toolkit (--gpus all / --device nvidia.com/gpu=all), on a GPU. A CPU-only torch is not in the lock.
ARG BASE=python:3.11-slim
FROM ${BASE}

# git (dvc needs the repository) and make (the README's commands), where the base lacks them.
RUN (command -v git && command -v make) >/dev/null || \
    (apt-get update && apt-get install -y --no-install-recommends git make ca-certificates \
     && rm -rf /var/lib/apt/lists/*)

# The environment first, from the lock alone: a code change does not reinstall it.
ARG LOCK=test
# Build-time only (container/build.sh): local copies of locked files, still checked against the
# hashes (space-separated folders), and a CA bundle for a network behind a TLS proxy.
ARG WHEEL_DIRS=
ARG CA_CERT=
COPY requirements/ /nads/requirements/
RUN python3 -m venv /opt/nads \
    && /opt/nads/bin/python -m pip install --no-cache-dir --disable-pip-version-check --require-hashes \
       ${CA_CERT:+--cert "$CA_CERT"} $(for d in $WHEEL_DIRS; do printf -- '--find-links %s ' "$d"; done) \
       -r /nads/requirements/${LOCK}.txt
# The venv is the environment (make does not create another); any user id can run it.
ENV PATH=/opt/nads/bin:$PATH NADS_VENV=0 HOME=/home/nads UI_HOST=0.0.0.0 \
    MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
RUN mkdir -p /home/nads && chmod 1777 /home/nads \
    && git config --system --add safe.directory '*'

WORKDIR /nads
COPY . .
RUN PYTHONWARNINGS=ignore::UserWarning pip install --no-cache-dir --disable-pip-version-check --no-deps \
       --no-build-isolation -e . \
    && chmod -R a+rwX /nads

ARG GIT_COMMIT=unknown
LABEL org.opencontainers.image.revision=${GIT_COMMIT} \
      org.opencontainers.image.title="nads" \
      org.opencontainers.image.description="Neural Anisotropy Directions pipeline (DVC + MLflow)"

# Offline: podman run --network=none --shm-size=2g -v CIFAR:/in/cifar:ro -e CIFAR10=/in/cifar ...
CMD ["make", "repro"]
