# CPU image by default; for CUDA: docker build --build-arg BASE=nvidia/cuda:12.4.1-runtime-ubuntu22.04 .
ARG BASE=python:3.11-slim
FROM ${BASE}
RUN if ! command -v python3 >/dev/null; then apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python3-venv && rm -rf /var/lib/apt/lists/*; fi
WORKDIR /app
COPY pyproject.toml README.md ./
COPY nst_core nst_core
COPY bot bot
COPY weights weights
RUN python3 -m pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1 && python3 -m pip install --no-cache-dir .
ENV DATA_DIR=/data
VOLUME /data
CMD ["python3", "-m", "bot"]
