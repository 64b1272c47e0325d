# One image for every role (worker per queue, watcher, beat); compose.yaml picks the command.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends tar ffmpeg ghostscript \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY preservation ./preservation
COPY workers ./workers
COPY schemas ./schemas
RUN pip install --no-cache-dir '.[siegfried,monitoring]'
ENV PRESERVATION_HOME=/var/lib/preservation
