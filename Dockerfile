# One image for the api, worker and migrate services. On a CUDA host, PyPI's default torch and
# torchvision wheels are CUDA builds that match, so clipdex/torch_compat.py changes nothing.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY clipdex ./clipdex
COPY ingest ./ingest
COPY search ./search
COPY workers ./workers
COPY migrations ./migrations
RUN pip install --no-cache-dir .
RUN useradd --create-home clipdex && mkdir -p /data /models && chown clipdex /data /models
USER clipdex
CMD ["clipdex", "--help"]
