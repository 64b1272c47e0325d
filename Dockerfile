# One image for every role (worker per queue, watcher, beat); compose.yaml picks the command.
FROM python:3.11-slim
# tar for AIP checks; ffmpeg, Ghostscript, ImageMagick and LibreOffice (headless) for
# migrations; the characterisation and validation tools (MediaInfo, ExifTool, qpdf,
# MediaConch); ClamAV runs in its own service.
RUN apt-get update && apt-get install -y --no-install-recommends tar ffmpeg ghostscript \
        imagemagick libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui \
        mediainfo libimage-exiftool-perl qpdf mediaconch \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY preservation ./preservation
COPY workers ./workers
COPY schemas ./schemas
RUN pip install --no-cache-dir '.[siegfried,monitoring]'
ENV PRESERVATION_HOME=/var/lib/preservation
