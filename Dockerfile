# CPU image by default; for CUDA:  docker build --build-arg BASE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime .
ARG BASE=python:3.11-slim
FROM ${BASE}

RUN apt-get update && apt-get install -y --no-install-recommends git make \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /nads
# Dependencies first, so code changes do not reinstall them.
COPY pyproject.toml README.md ./
COPY nads/__init__.py nads/__init__.py
# The ray extra: the same image can run as a Ray head or worker node (README, "Scaling out").
RUN python -m pip install --no-cache-dir -e ".[ray,test]"

COPY . .
# `dvc repro` needs a git repository; a build context without .git gets a fresh one.
RUN git config --global --add safe.directory /nads \
    && (git rev-parse --git-dir >/dev/null 2>&1 || (git init -q && git add -A \
        && git -c user.email=docker@nads -c user.name=docker commit -qm "image snapshot"))

CMD ["dvc", "repro"]
