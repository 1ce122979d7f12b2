# Atelier bot image: Python 3.11 slim, dependencies in their own layers, code last, non-root, data on
# a volume. GPU: the default torch from PyPI bundles CUDA, so `docker run --gpus all` works on this
# same image. For a CPU-only server, a much smaller torch (about 0.2 GB instead of about 5 GB):
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu -t atelier .
FROM python:3.11-slim

ARG TORCH_INDEX_URL=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data

WORKDIR /app

# 1. torch alone (the big layer), then the other dependencies, read from pyproject.toml: editing the
#    code reuses both layers.
COPY constraints.txt pyproject.toml ./
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install -c constraints.txt --index-url "$TORCH_INDEX_URL" torch; \
    else \
        pip install -c constraints.txt torch; \
    fi
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# 2. The code and the trained decoder.
COPY README.md LICENSE ./
COPY nst_core nst_core
COPY bot bot
COPY weights weights
RUN pip install --no-deps . \
    && useradd --create-home --uid 10001 atelier \
    && mkdir -p /data && chown atelier /data

USER atelier
VOLUME /data
# Webhook mode only (WEBHOOK_URL set): put TLS in front, e.g. a reverse proxy on port 443.
EXPOSE 8443
# Healthy while the bot's event loop touches DATA_DIR/heartbeat (every 30 s).
HEALTHCHECK --interval=60s --timeout=10s --start-period=120s --retries=3 CMD ["python", "-m", "bot.health"]
# SIGTERM starts a graceful stop of up to SHUTDOWN_GRACE_S (20 s); give docker longer than that:
# `docker run --stop-timeout 40` or compose's stop_grace_period (compose.yaml). Jobs survive even a
# kill, but a graceful stop lets running renders finish.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "bot"]
