# One image for every computethis service: `up`, `gateway`, `scheduler`, `worker`.
#   docker build -t computethis:latest .
#   docker run --rm -p 5000:5000 -e COMPUTETHIS_TOKEN=secret computethis:latest
# Clients must run the same Python minor version as the workers (3.11 here):
# functions travel pickled with dill.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    COMPUTETHIS_SAVE_DIR=/data

WORKDIR /src
COPY . .
RUN pip install --no-cache-dir . \
    && rm -rf build *.egg-info

# Run as a non-root user; /data (jobs and results) belongs to it, so a named
# volume mounted there starts out writable.
RUN useradd --create-home --uid 10001 --user-group computethis \
    && mkdir -p /data \
    && chown computethis:computethis /data
USER computethis
WORKDIR /home/computethis

# 5000: HTTP gateway; 8786: Dask scheduler.
EXPOSE 5000 8786

ENTRYPOINT ["computethis"]
CMD ["up", "--host", "0.0.0.0"]
