# The image `obsgap manifests` names in its CronJob: obsgap on Python 3.11, run as the non-root user 65532
# (the CronJob's runAsUser and fsGroup). Build: `make image` (IMAGE=registry.example/obsgap:0.1.0 to tag it).
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY obsgap ./obsgap
COPY queries ./queries
RUN pip install --no-cache-dir . && rm -rf /src
USER 65532:65532
WORKDIR /reports
CMD ["obsgap", "--help"]
