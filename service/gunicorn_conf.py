"""gunicorn settings for the service (`python -m service` passes this file; `gunicorn -c` works too).

Why preload: the master imports everything, onnxruntime included, and reads and verifies the model once (a gs://
model is downloaded once), then forks; each worker only builds its session, warms it up and starts its registry
poll thread (service/versions.py). A worker that cannot load a model directory exits with gunicorn's boot-error
status, which stops the server. Sync workers, one per core, one
inference thread each: requests are CPU-bound and short.
"""

from __future__ import annotations

import gc
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy is imported: one thread per worker

from typing import TYPE_CHECKING

from gunicorn.glogging import Logger

from service.config import ServiceConfig
from service.heap import fix_mmap_threshold
from service.logs import JsonFormatter
from service.state_dir import prepare_state_dir, remove_state_dir

if TYPE_CHECKING:
    from gunicorn.arbiter import Arbiter
    from gunicorn.config import Config
    from gunicorn.workers.base import Worker

fix_mmap_threshold()  # before the app is preloaded and the workers fork: model swaps' peak memory (service/heap.py)
_config = ServiceConfig.from_env()
_state_dir = prepare_state_dir()

wsgi_app = "service.wsgi:app"
bind = [f"{_config.host}:{_config.port}"]
workers = _config.workers
worker_class = "sync"
preload_app = True
timeout = 30
graceful_timeout = 10
backlog = 2048
accesslog = None  # the app writes one JSON line per request itself
control_socket_disable = True  # no runtime control interface: a container has nothing to manage through it
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None


class JsonLogger(Logger):
    """gunicorn's own messages as JSON lines, and no access log: the app writes one line per request itself.

    Why a logger class and not logconfig_dict: any logconfig makes gunicorn build its access-log atoms for
    every request (found with cProfile in a worker) even when nothing is logged."""

    def setup(self, cfg: Config) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())


logger_class = JsonLogger


def when_ready(server: Arbiter) -> None:
    """Before the workers fork: import onnxruntime once here (about 50 ms a worker would otherwise spend at
    boot), then move everything imported so far out of the garbage collector's sight, so collections in the
    workers stay short and the shared pages are not copied by the collector touching them."""
    if server.log is not None:
        server.log.info("metrics and drift state in %s", _state_dir)
    import onnxruntime  # noqa: F401 - see worker_exit for what this obliges the workers to do

    gc.freeze()


def post_worker_init(worker: Worker) -> None:
    """Build this worker's inference session and warm it up before it accepts a request, then start its
    registry poll thread (threads do not survive the fork, so each worker starts its own)."""
    from service.wsgi import app

    state = app.extensions["fmnist"]
    state.activate()
    gc.freeze()
    state.start_polling()


def worker_exit(server: Arbiter, worker: Worker) -> None:
    """End the worker with os._exit, skipping C++ static destructors: onnxruntime starts a native thread when
    it is imported (in the master, above), and its destructors in a forked worker wait for that thread forever
    or abort. Logs are flushed first; the exit status is the one the worker was leaving with."""
    import logging

    leaving = sys.exc_info()[1]
    if isinstance(leaving, SystemExit):
        status = leaving.code if isinstance(leaving.code, int) else (0 if leaving.code is None else 1)
    else:
        status = 1 if leaving else 0
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def child_exit(server: Arbiter, worker: Worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Arbiter) -> None:
    remove_state_dir()
