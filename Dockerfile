# syntax=docker/dockerfile:1
# One ecert-chain node per container: `python -m node --config $ECERT_CONFIG --id $ECERT_NODE_ID`.
# Guide: docs/DEPLOY.md. Checked by tests/deploy (hadolint); nothing secret is baked in: keys/ and data/ are
# volumes, cluster.toml and genesis.json are mounted at run time.
#
#   docker build -t ecert-chain:0.1.0 .
#
# The base is pinned by tag (Python 3.12, Debian 12); pin it by digest too once you have pulled it
# (FROM python:3.12.11-slim-bookworm@sha256:...), so that a rebuild gets the same bytes.
ARG PYTHON_IMAGE=python:3.12.11-slim-bookworm

# --- build: wheels of the project and of every dependency ----------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY consensus ./consensus
COPY ledger ./ledger
COPY ecert ./ecert
COPY node ./node
# plyvel's manylinux wheel bundles libleveldb and libsnappy (plyvel.libs/) and needs only libstdc++6, which
# Debian's slim image has (apt depends on it): no compiler and no -dev package here, no apt-get at run time.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime: the wheels installed, nothing else ------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG ECERT_UID=10001
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="ecert-chain node" \
      org.opencontainers.image.description="One node of an ecert-chain consortium (supply-chain finance E-certificates over Raft and LevelDB)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="NOASSERTION" \
      org.opencontainers.image.documentation="docs/DEPLOY.md" \
      io.ecert.uid="${ECERT_UID}"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ECERT_CONFIG=/ecert/cluster.toml \
    ECERT_NODE_ID=""
# A fixed uid/gid: the host directories and Kubernetes' fsGroup are set to it (docs/DEPLOY.md).
RUN groupadd --system --gid "${ECERT_UID}" ecert \
 && useradd --system --uid "${ECERT_UID}" --gid ecert --home-dir /ecert --no-create-home \
            --shell /usr/sbin/nologin ecert
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels "ecert-chain==${VERSION}" \
 && python -c "import plyvel, nacl.signing, cryptography, uvloop, node.server"
COPY --chmod=0755 deploy/docker/ecert-node /usr/local/bin/ecert-node
COPY --chmod=0644 deploy/docker/healthcheck.py /usr/local/lib/ecert/healthcheck.py
# /ecert is the cluster file's directory: cluster.toml and genesis.json (mounted read-only), keys/ (this org's
# key and its node's key only), data/<node_id> (the node's LevelDB stores and logs).
RUN install -d -o ecert -g ecert -m 0750 /ecert \
 && install -d -o ecert -g ecert -m 0700 /ecert/data /ecert/keys
WORKDIR /ecert
VOLUME ["/ecert/data", "/ecert/keys"]
USER ${ECERT_UID}:${ECERT_UID}
# Inside a container every node uses the same two ports; compose and Kubernetes map them.
EXPOSE 8700 9700
# SIGTERM drains: the node stops accepting HTTP requests, lets in-flight ones finish (up to 5 s), stops the Raft
# driver after its current Ready and closes LevelDB. Give it a 30 s stop grace period (docker stop -t 30,
# compose stop_grace_period, Kubernetes terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/lib/ecert/healthcheck.py"]
ENTRYPOINT ["ecert-node"]
CMD []
