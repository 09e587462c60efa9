"""``sandbox serve``: the API under waitress (a production WSGI server), with the embedded worker.

For one machine: the worker runs in a thread of the server process and takes queued jobs one
after another. With several machines, run ``sandbox serve --no-worker`` and ``sandbox worker``
processes against one PostgreSQL database.
"""
from __future__ import annotations

import logging
import signal
import threading
from typing import Callable

from waitress.server import create_server

from sandbox.web import create_app

log = logging.getLogger("sandbox.web")


def serve(config: dict, say: Callable[[str], None] = print, threads: int = 8) -> None:
    app = create_app(config)
    settings = app.config["SANDBOX"]
    services = app.extensions["sandbox.services"]
    stop = threading.Event()
    worker_thread = None
    if settings["WORKER"]:
        from sandbox.jobs.worker import Worker, pool_size_from_env

        worker = Worker(services, pool_size=pool_size_from_env(services.runtime.pool_size))

        def run_worker() -> None:
            try:
                worker.run_forever(stop=stop)
            except Exception:  # pragma: no cover - logged; the API keeps serving
                log.exception("the embedded worker stopped")

        worker_thread = threading.Thread(target=run_worker, name="sandbox-worker", daemon=True)
        worker_thread.start()
    server = create_server(app, host=settings["HOST"], port=settings["PORT"], threads=threads,
                           max_request_body_size=settings["MAX_BODY_BYTES"] + 1024 * 1024, ident="sandbox")

    def _terminate(signum, frame):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    say(f"sandbox API on http://{settings['HOST']}:{server.effective_port}/api/v1 "
        f"(spec: /openapi.json; worker: {'on' if worker_thread else 'off'}; Ctrl-C to stop)")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.close()
        if worker_thread is not None:
            worker_thread.join(timeout=30)
            worker.close()
        services.close()
        say("sandbox API stopped")
