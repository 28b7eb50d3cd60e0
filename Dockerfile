# scalekeeper operator image. `docker build .` uses the public Python image; the project's scripts pass
# BASE_IMAGE to build on a locally made Debian Python when no registry can be reached.
# The base is a tag, not a digest: pinning needs the digest read from the registry, and the machine this
# was written on reaches none. To pin, pass BASE_IMAGE=python:3.11-slim-bookworm@sha256:<digest>.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
WORKDIR /src
RUN python3 -m venv /opt/scalekeeper
# Every distribution, the setuptools that builds the package below included, must match a hash in the
# lock (written by `make lock`).
COPY requirements.lock ./
RUN /opt/scalekeeper/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes \
      -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY operator ./operator
# No build isolation: it would fetch setuptools again, unhashed; the locked one is installed above.
RUN /opt/scalekeeper/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps \
      --no-build-isolation . \
    && find /opt/scalekeeper -name '__pycache__' -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
# The release workflow passes the tag's version and commit; a local build says "dev".
ARG VERSION=dev
ARG REVISION=""
LABEL org.opencontainers.image.title="scalekeeper" \
      org.opencontainers.image.description="Kubernetes operator that sizes web, Celery worker and read-replica tiers from Prometheus metrics" \
      org.opencontainers.image.source="https://github.com/scalekeeper/scalekeeper" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# kopf (getpass.getuser) and Python expect the UID to have a passwd entry: without one the operator
# crashes at startup with "getpwuid(): uid not found: 10001".
RUN groupadd --gid 10001 scalekeeper \
    && useradd --no-log-init --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin scalekeeper
COPY --from=build /opt/scalekeeper /opt/scalekeeper
ENV PATH=/opt/scalekeeper/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["scalekeeper"]
CMD ["run"]
