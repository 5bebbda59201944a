# The bridge alone; Synapse runs from its official image (see docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md config.example.yaml ./
COPY appservice ./appservice
COPY policy ./policy
COPY bridge ./bridge
# Installed in place: the deployment generator reads /app/config.example.yaml.
# /transcripts: the volume of final transcripts (retention), owned by the bridge's user.
RUN pip install --no-cache-dir -e . && useradd --system --uid 10001 --home /nonexistent bridge \
    && mkdir /transcripts && chown bridge /transcripts
USER bridge
EXPOSE 29330
CMD ["python", "-m", "bridge", "run", "-c", "/config/bridge.yaml"]
