# workflow-runner: a slim, non-root image of the runner (`serve` by default; also `sink`, `submit`, `run`).
#   docker build -t workflow-runner .
#   docker run --rm -p 8080:8080 -p 8081:8081 workflow-runner
# The base image is pinned to a patch release; bump it deliberately.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY consumer ./consumer
COPY executor ./executor
COPY callbacks ./callbacks
RUN /opt/venv/bin/pip install .

FROM ${PYTHON_IMAGE}
# A fixed uid, so volume permissions and Kubernetes `runAsNonRoot` checks work without a name lookup.
RUN useradd --system --uid 10001 --create-home --home-dir /home/runner runner
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CALLBACK_DEAD_LETTER_PATH=/home/runner/progress-dead-letter.jsonl
USER 10001
WORKDIR /home/runner
EXPOSE 8080 8081
# slim has no curl: probe readiness with the interpreter that is already there.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/readyz', timeout=2)"]
# exec form: the runner is PID 1 and receives SIGTERM itself, so `docker stop` drains executions.
ENTRYPOINT ["workflow-runner"]
CMD ["serve"]
