# syntax=docker/dockerfile:1
# sfcleanup as a container: by default a nightly `sweep` of failed invoice runs, logging JSON lines to stderr.
#
#   docker build -t sfcleanup .
#   docker run --rm \
#     -e SFCLEANUP_ORG__CONSUMER_KEY=3MVG9... -e SFCLEANUP_ORG__USERNAME=sfcleanup@acme.com \
#     -e SFCLEANUP_ORG__PRIVATE_KEY_FILE=/run/secrets/sfcleanup/private-key \
#     -e SFCLEANUP_WORKER_ID=docker/sfcleanup-nightly \
#     -v "$PWD/sfcleanup.key:/run/secrets/sfcleanup/private-key:ro" \
#     -v sfcleanup-journal:/work/sfcleanup-journal \
#     sfcleanup                                   # = sfcleanup sweep --yes --log-format json
#   docker run --rm ... sfcleanup plan RUN_ID     # any other command: arguments replace CMD
#
# Settings come from SFCLEANUP_* variables (sections joined by "__") or a TOML file passed with --config.
# Secrets never go into the image or its environment in clear: mount them as files and point the *_FILE
# settings at them (SFCLEANUP_ORG__PRIVATE_KEY_FILE, ..._ACCESS_TOKEN_FILE, ..._CONSUMER_SECRET_FILE,
# ..._PASSWORD_FILE). SFCLEANUP_WORKER_ID names this job in the run's lease: keep it the same from one
# container to the next, so a container killed mid-run is resumed by the next one instead of waiting out its
# lease (15 minutes). Exit codes: 0 clean, 1 rows failed, 2 a mistake to fix (a setting, refused credentials,
# an untrusted certificate, an unwritable journal volume), 3 stopped early and safe to run again later (see
# docs/runbook.md).
#
# The plan of the run being cleaned is kept in a temporary SQLite file (about 1.1 KB per order product or usage
# summary: 1.1 GB for a million), and the journal's readers and writer spill what they track per record to
# another (at most about the journal's size); the container's /tmp must have that room (TMPDIR moves it).
#
# The base image is named by tag. Pin it by digest for production builds, with the digest your registry gives
# for the tag on the day you build (`docker buildx imagetools inspect python:3.11-slim`):
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:<digest> -t sfcleanup .

ARG PYTHON_IMAGE=python:3.11-slim

# Build sfcleanup's wheel in a throw-away stage, so the final image holds no sources or build tools.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sfcleanup ./sfcleanup
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="sfcleanup" \
      org.opencontainers.image.description="Clean up failed Salesforce Billing invoice runs" \
      org.opencontainers.image.licenses="MIT"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# A fixed, numeric, unprivileged user, so Kubernetes can check runAsNonRoot and volume permissions line up.
RUN groupadd --system --gid 10001 sfcleanup \
    && useradd --system --uid 10001 --gid sfcleanup --home-dir /work --no-create-home \
       --shell /usr/sbin/nologin sfcleanup

# Dependencies first, pinned to exact versions and checked against their sha256 hashes, so this layer is reused
# until requirements.lock changes and a tampered or substituted file fails the build.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir --require-hashes -r /tmp/requirements.lock \
    && rm /tmp/requirements.lock

# Then sfcleanup itself, without letting pip resolve anything else; `pip check` fails the build if the lock
# is missing something sfcleanup needs.
# The local org (an SQLite imitation of Salesforce for rehearsals and tests) is left out of the production image,
# with trustme, its HTTPS server's CA maker (the `localorg` extra, not installed): `--org local`, `demo` and
# `localorg serve` then say so in one line (exit 2).
COPY --from=build /dist/ /tmp/dist/
RUN pip install --no-cache-dir --no-deps /tmp/dist/*.whl \
    && rm -rf /tmp/dist \
    && rm -rf "$(python -I -c 'import pathlib, sfcleanup; print(pathlib.Path(sfcleanup.__file__).parent / "localorg")')" \
    && pip check \
    && sfcleanup --version

WORKDIR /work
RUN mkdir -p /work/sfcleanup-journal && chown -R 10001:10001 /work

# Journals (one JSONL file per run, needed by `undo` and to resume) and failure CSVs outlive the container:
# mount a volume here. USER names the lease's default worker identity (user@host:journal_dir); set
# SFCLEANUP_WORKER_ID to keep one identity across containers whose host name changes.
ENV SFCLEANUP_JOURNAL_DIR=/work/sfcleanup-journal \
    USER=sfcleanup
VOLUME ["/work/sfcleanup-journal"]

USER 10001:10001
ENTRYPOINT ["sfcleanup"]
CMD ["sweep", "--yes", "--log-format", "json"]
