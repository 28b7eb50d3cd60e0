# scalekeeper operator image. `docker build .` uses the public Python image; the project's scripts pass
# BASE_IMAGE to build on a locally made Debian Python when no registry can be reached.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
WORKDIR /src
RUN python3 -m venv /opt/scalekeeper
COPY requirements.lock ./
RUN /opt/scalekeeper/bin/pip install --no-cache-dir --disable-pip-version-check -r requirements.lock
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN /opt/scalekeeper/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps . \
    && find /opt/scalekeeper -name '__pycache__' -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
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
