# One image for the API, the workers and beat; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DATA_DIR=/data
WORKDIR /app

COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock

COPY shared ./shared
COPY api_service ./api_service
COPY worker_service ./worker_service

RUN useradd --system --uid 10001 app && mkdir -p /data && chown app /data
USER app

EXPOSE 8000
# The log config puts uvicorn's own lines in the service's format (LOG_FORMAT) too.
CMD ["uvicorn", "api_service.main:create_app", "--factory", "--log-config", "shared/uvicorn_log_config.json", \
     "--host", "0.0.0.0", "--port", "8000"]
