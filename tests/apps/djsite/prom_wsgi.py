"""The Django site with prometheus_client in multiprocess mode, as teams run it
under gunicorn: each worker keeps a live gauge (a file per pid in
$PROMETHEUS_MULTIPROC_DIR) and counts its requests; /metrics-from-workers (any
worker) aggregates all workers' files.
"""
import os

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, multiprocess

from djsite.wsgi import application as django_app

REQUESTS = Counter("djsite_requests", "Requests served by the Django site.")
WORKERS = Gauge("djsite_workers", "Live workers.", multiprocess_mode="livesum")


def application(environ, start_response):
    WORKERS.set(1)
    if environ.get("PATH_INFO") == "/metrics-from-workers":
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    REQUESTS.inc()
    return django_app(environ, start_response)
