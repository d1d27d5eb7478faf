"""An ordered map over a Ray Data actor pool: the driver streams work units in, results stream back in order.

Each unit is one picklable object (a chunk of samples, a batch of texts); each actor builds its worker once
(a feature space, a layer reader) and maps one unit per call. The driver feeds units through a bounded Ray
queue that a single read task drains, so nothing is materialised up front and at most `in_flight` units are
held anywhere; results are put back in input order on the driver. Ray is the optional extra `fac[ray]`.
"""

from __future__ import annotations

import logging
import pickle
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from fac.tools.errors import ConfigError

logger = logging.getLogger(__name__)

INSTALL_HINT = "Ray is not installed: pip install 'fac[ray]'"
_DONE = None  # the queue's end marker


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: `address` None starts (or joins, via RAY_ADDRESS) a local Ray; 'auto' or
    'ray://host:10001' joins a cluster. Each of `actors` holds `gpus_per_actor` GPUs and `cpus_per_actor` CPUs."""

    address: str | None = None
    actors: int = 2
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0

    def __post_init__(self) -> None:
        if self.actors < 1:
            raise ConfigError(f"--ray-actors {self.actors}: expected at least 1 actor")
        if not 0 <= self.gpus_per_actor <= 64 or not 0 < self.cpus_per_actor <= 1024:
            raise ConfigError(f"--ray-gpus-per-actor {self.gpus_per_actor} must be >= 0 and --ray-cpus-per-actor "
                              f"{self.cpus_per_actor} > 0")
        if self.address is not None and not (self.address == "auto" or self.address.startswith("ray://")
                                             or ":" in self.address):
            raise ConfigError(f"--ray {self.address!r}: expected 'auto', ray://HOST:PORT or HOST:PORT")


def require_ray() -> Any:
    """The ray module, or a ConfigError saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


def connect(options: RayOptions) -> Any:
    """Join (or start) the Ray cluster once per process; an already initialised Ray is reused as it is."""
    ray = require_ray()
    if not ray.is_initialized():
        ray.init(address=options.address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    return ray


class _QueueSource:
    """A Ray Data datasource with one read task that drains a Ray queue, one single-row block per unit."""

    def __new__(cls, queue: Any) -> Any:
        import pyarrow as pa
        from ray.data import Datasource, ReadTask
        from ray.data.block import BlockMetadata

        class QueueSource(Datasource):
            def __init__(self) -> None:
                super().__init__()  # type: ignore[no-untyped-call]

            def estimate_inmemory_data_size(self) -> int | None:
                return None

            def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                               data_context: Any = None) -> list[Any]:
                def read() -> Iterator[Any]:
                    while (item := queue.get()) is not _DONE:
                        index, payload = item
                        yield pa.table({"index": [index], "payload": pa.array([payload], pa.binary())})

                return [ReadTask(read, BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None,
                                                     input_files=None))]

        return QueueSource()


class _Worker:
    """The actor: builds its worker once, then maps one pickled unit per row."""

    def __init__(self, build: Callable[[], Callable[[Any], Any]]) -> None:
        self.work = build()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        out = [pickle.dumps(self.work(pickle.loads(payload))) for payload in batch["payload"]]
        return {"index": batch["index"], "payload": np.array(out, dtype=object)}


def ordered_map(build: Callable[[], Callable[[Any], Any]], units: Iterable[Any], options: RayOptions,
                in_flight: int | None = None) -> Iterator[Any]:
    """`build()(unit)` for each unit on the actor pool, yielded in input order; `build` runs once per actor."""
    ray = connect(options)
    from ray.data import ActorPoolStrategy, DataContext
    from ray.util.queue import Queue

    limit = in_flight or 4 * options.actors
    queue = Queue(maxsize=limit, actor_options={"num_cpus": 0})
    slots = threading.Semaphore(limit)  # units sent but not yet yielded: bounds driver and cluster memory
    failed: list[BaseException] = []
    stop = threading.Event()

    def feed() -> None:
        try:
            for index, unit in enumerate(units):
                while not slots.acquire(timeout=0.5):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                queue.put((index, pickle.dumps(unit)))
        except BaseException as err:  # surfaced on the driver's thread below
            failed.append(err)
        finally:
            if not stop.is_set():
                queue.put(_DONE)

    context = DataContext.get_current()
    block_size, bars = context.target_max_block_size, context.enable_progress_bars
    context.target_max_block_size = 1  # every unit stays its own block, so the pool shares them out
    context.enable_progress_bars = False  # the command's own progress bar counts the texts
    feeder = threading.Thread(target=feed, name="fac-ray-feed", daemon=True)
    try:
        dataset = ray.data.read_datasource(_QueueSource(queue), num_cpus=0, override_num_blocks=1).map_batches(
            _Worker, fn_constructor_args=(build,), batch_size=1, num_cpus=options.cpus_per_actor,
            num_gpus=options.gpus_per_actor or None, compute=ActorPoolStrategy(size=options.actors))
        feeder.start()
        waiting: dict[int, bytes] = {}
        expected = 0
        for row in dataset.iter_rows():
            waiting[int(row["index"])] = row["payload"]
            while expected in waiting:
                yield pickle.loads(waiting.pop(expected))
                slots.release()
                expected += 1
        if failed:
            raise failed[0]
        if waiting:
            raise RuntimeError(f"ray: {len(waiting)} results arrived out of sequence after unit {expected}")
    finally:
        stop.set()
        context.target_max_block_size, context.enable_progress_bars = block_size, bars
        feeder.join(timeout=5)
        ray.kill(queue.actor)
