"""The stream worker: faust app, runtime, outbox publisher, settings."""

from streams.worker.runtime import RawRecord, WorkerRuntime

__all__ = ["RawRecord", "WorkerRuntime"]
