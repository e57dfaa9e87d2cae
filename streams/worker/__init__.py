"""The stream worker: faust app, runtime, outbox publisher, settings."""

from streams.worker.runtime import RawRecord, WorkerRuntime, open_store
from streams.worker.settings import WorkerSettings, load_worker_settings

__all__ = ["RawRecord", "WorkerRuntime", "WorkerSettings", "load_worker_settings", "open_store"]
