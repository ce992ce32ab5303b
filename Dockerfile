# Béthune Smart City mail intake: the `mailbot run` worker.
# Config is read from /app/config (mount your own); data lives in /app/var.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_COMPILE_BYTECODE=1 \
    PATH=/app/.venv/bin:$PATH

# Tesseract with French reads scanned dossiers and letters.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        tesseract-ocr=5.3.0-2 \
        tesseract-ocr-fra=1:4.1.0-2 \
    && rm -rf /var/lib/apt/lists/*

RUN pip install --no-cache-dir uv==0.13.9

WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY mailbot ./mailbot
COPY parsers ./parsers
COPY storage ./storage
COPY config ./config
RUN uv sync --frozen --no-dev \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin mailbot \
    && mkdir -p /app/var \
    && chown 10001:10001 /app/var

USER 10001
VOLUME ["/app/var"]

HEALTHCHECK --interval=60s --timeout=10s --start-period=120s --retries=3 \
    CMD ["mailbot", "health"]

CMD ["mailbot", "run"]
