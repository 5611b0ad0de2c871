# The API and worker image: `hosted-sessions api` by default, `hosted-sessions worker` in compose.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

WORKDIR /app

# Dependencies first, pinned by the lock: this layer is rebuilt only when the pins change,
# not on every code edit.
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -c requirements.lock -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Only the packages: no .venv, .dev keys or tests end up in the image.
COPY services ./services
COPY workers ./workers
COPY shared ./shared
RUN pip install -c requirements.lock . \
    && rm -rf build *.egg-info

# The code stays root-owned and read-only to the process that runs it.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
USER app

EXPOSE 8000
CMD ["hosted-sessions", "api", "--host", "0.0.0.0"]
