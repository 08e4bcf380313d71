# plantwatch service image: pinned dependencies, non-root, health-checked by compose.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 NUMBA_CACHE_DIR=/opt/plantwatch-numba
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY plantwatch ./plantwatch
COPY ingest ./ingest
COPY alerts ./alerts
COPY api ./api
COPY simulators ./simulators
# the anomaly kernel is compiled once here (numba cache), not at every container start
RUN pip install -c constraints.txt . \
    && python -c "from alerts.anomaly import AnomalyScorer; AnomalyScorer(1)" && chmod -R a+rX /opt/plantwatch-numba \
    && useradd --system --home /var/lib/plantwatch plantwatch \
    && mkdir -p /var/lib/plantwatch && chown plantwatch /var/lib/plantwatch
USER plantwatch
ENV PLANTWATCH_DATA_DIR=/var/lib/plantwatch PLANTWATCH_HTTP_HOST=0.0.0.0 PLANTWATCH_HTTP_PORT=8080
EXPOSE 8080
CMD ["plantwatch", "serve"]
