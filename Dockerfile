# Predis in a container: `docker build -t predis . && docker run -p 6379:6379 predis`
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# hiredis, uvloop and numpy ship manylinux wheels; the compiler is only for Predis's own C
# fast path (predis_server/_fastpath.c) and is removed again in the same layer.
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY predis_server ./predis_server
COPY gpu ./gpu
COPY models ./models
COPY tls ./tls
COPY workloads ./workloads
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install . \
    && python -c "import predis_server._fastpath" \
    && apt-get purge -y --auto-remove gcc libc6-dev && rm -rf /var/lib/apt/lists/* /src

RUN groupadd --system predis && useradd --system --gid predis --home-dir /data predis \
    && mkdir -p /data /etc/predis && chown predis:predis /data
COPY conf/predis.conf /etc/predis/predis.conf

USER predis
WORKDIR /data
EXPOSE 6379

# The conf file is the single source of settings; the container only has to listen beyond
# loopback. Protected mode is off as in the official redis image: publishing the port is the
# operator's choice, and `requirepass` in the conf (or --requirepass) protects it.
ENTRYPOINT ["predis-server", "/etc/predis/predis.conf"]
CMD ["--bind", "0.0.0.0 -::", "--protected-mode", "no", "--dir", "/data"]
