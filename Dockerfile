# The bridge alone; Synapse is deployed separately (see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md config.example.yaml ./
COPY appservice ./appservice
COPY policy ./policy
COPY bridge ./bridge
RUN pip install --no-cache-dir . && useradd --system --home /data bridge
USER bridge
WORKDIR /data
EXPOSE 29330
CMD ["python", "-m", "bridge", "run", "-c", "/data/config.yaml"]
