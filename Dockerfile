# syntax=docker/dockerfile:1
# The mesoskube master image: `docker build -t mesoskube .` then `helm install ... --set image.repository=mesoskube`.
# Two stages: the builder installs the package into a venv; the runtime stage only copies that venv,
# so no compiler, pip cache or sources end up in the image. Runs as uid 65532 (non-root); the
# entrypoint is exec-form, so no shell is used at runtime.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
# Unset on a normal build. An offline build behind a TLS-intercepting proxy (`make images`) passes
# the host's CA bundle, mounted for the build only, so nothing of it lands in the image.
ARG PIP_CERT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/mesoskube
WORKDIR /src
# Only what `pip install .` needs (pyproject.toml names README.md as the long description).
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY frameworks ./frameworks
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/mesoskube/bin/pip install . \
 && /opt/mesoskube/bin/python -m compileall -q /opt/mesoskube/lib \
 && /opt/mesoskube/bin/pip uninstall -y -q pip setuptools

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="mesoskube" \
      org.opencontainers.image.description="Mesos-style two-level scheduling on Kubernetes: the mesoskube master" \
      org.opencontainers.image.licenses="Apache-2.0"
# Same base image, same interpreter path: the venv's symlinks and script shebangs stay valid.
COPY --from=builder /opt/mesoskube /opt/mesoskube
ENV PATH=/opt/mesoskube/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
USER 65532:65532
# metrics (operator.metricsPort), kopf liveness /healthz (operator.healthPort)
EXPOSE 8080 8081 5050
ENTRYPOINT ["mesoskube", "master", "run"]
