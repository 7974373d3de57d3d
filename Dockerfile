# syntax=docker/dockerfile:1
# One image for every churn-stream service (worker, batch scheduler, API, dashboard) and,
# as the `mlflow` target, the MLflow tracking server with the same MLflow version as
# the clients plus the PostgreSQL driver.
#
#   docker build -t churn-stream .                    # default target: churn
#   docker build --target mlflow -t churn-mlflow .
#
# Build stage: compilers only here, in case a dependency has no wheel for the platform.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY scratch_models/ scratch_models/
COPY plumbing/ plumbing/
COPY batch/ batch/
COPY stream_app/ stream_app/
COPY dashboard/ dashboard/
COPY churn_stream/ churn_stream/
RUN pip install --upgrade pip \
 && pip install .
# batch.cycle and churn_stream.demo find the shipped data set next to their packages
# (<site-packages>/data/): keep that layout in the installed tree.
COPY data/telco_customer_churn.csv /opt/venv/lib/python3.11/site-packages/data/telco_customer_churn.csv


FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Non-root: a fixed uid/gid so mounted volumes can be prepared on the host if needed.
RUN groupadd --system --gid 10001 churn \
 && useradd --system --uid 10001 --gid churn --home-dir /home/churn --create-home --shell /usr/sbin/nologin churn \
 && mkdir -p /var/lib/churn \
 && chown churn:churn /var/lib/churn
COPY --from=build /opt/venv /opt/venv
WORKDIR /home/churn


# MLflow tracking server: backend store in PostgreSQL, artifacts proxied to S3 (MinIO).
FROM runtime AS mlflow
RUN pip install --no-cache-dir --disable-pip-version-check "psycopg2-binary>=2.9,<3"
USER churn
EXPOSE 5000
ENTRYPOINT ["mlflow"]
CMD ["server", "--host", "0.0.0.0", "--port", "5000"]


# churn-stream services (last stage = default target).
FROM runtime AS churn
USER churn
# Settings.from_env: CHURN_DATA_DIR holds the worker's Faust data dir and local state.
ENV CHURN_DATA_DIR=/var/lib/churn
EXPOSE 6066 8000 8050
ENTRYPOINT ["churn"]
CMD ["--help"]
