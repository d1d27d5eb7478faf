"""Run the loop: open or resume a run directory, build the dependencies, compile, stream, report.

The run directory's files and readers are graph/run_dir.py; checkpoints are keyed by the run id recorded in
its config.json (thread = run id), so a copied or renamed run resumes where it was.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langgraph.types import StreamMode

from fac.agents.quality import make_gates
from fac.graph.builder import build_graph
from fac.graph.checkpoint import sqlite_saver
from fac.graph.config import LIMIT_FIELDS, OPERATIONAL_FIELDS, RunConfig
from fac.graph.context import Deps
from fac.graph.run_dir import CONFIG_FILE, RunDir
from fac.graph.state import GenState
from fac.graph.status import Status, status
from fac.tools.errors import ConfigError, InputError, TransientError
from fac.tools.llm.calls import STOPPING
from fac.tools.redaction import RedactFilter, redact
from fac.traces.recorder import STREAM_MODES, TraceRecorder

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.runnables import RunnableConfig

    from fac.tools.catalog.records import Catalog
    from fac.tools.space.features import FeatureSpace
    from fac.tools.text.embeddings import Embedder

logger = logging.getLogger(__name__)

COLLECTION = "samples"
OnStatus = Callable[[str, Status], None]
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RUN_MODES: tuple[StreamMode, ...] = ("updates", *STREAM_MODES)


@dataclass(frozen=True)
class RunResult:
    """How a run ended: finished with a stop reason, or interrupted by a transient fault or a signal (resumable)."""

    run_id: str
    paths: RunDir
    status: Status
    exhausted: tuple[int, ...]
    rejections: dict[str, int]
    interrupted: str | None = None
    signalled: bool = False  # stopped by SIGTERM/SIGINT (exit 130), not by an endpoint fault (exit 3)


class StopRequested(BaseException):
    """SIGTERM or SIGINT arrived: abandon the current step (its checkpoint is the previous one) and stop."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into StopRequested while the loop runs (main thread only; restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        STOPPING.set()  # the generator's unsent requests are skipped while the step in flight winds down
        raise StopRequested(signum)

    STOPPING.clear()
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        STOPPING.clear()


def open_run(out: Path, cfg: RunConfig | None = None, *, resume: bool = False,
             overrides: Mapping[str, Any] | None = None) -> tuple[RunConfig, RunDir]:
    """The run's config and directory. A fresh run refuses a directory holding another config; `resume` loads
    the saved config and accepts changes to limits (goals, budgets) and operational fields only."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file, not a directory; name a new or existing run directory")
    if ".." in out.parts:
        raise ConfigError(f"--out {out}: '..' in a run directory is ambiguous; give the directory itself "
                          f"(here {out.resolve()})")
    paths = RunDir(out)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if resume:
        if not paths.is_run():
            raise InputError(f"{out}: no run to resume (no {CONFIG_FILE}); start one with `fac run SEED --task NAME "
                             f"--out {out}`")
        saved = paths.saved_config()
        changed = sorted(set(given) - LIMIT_FIELDS - OPERATIONAL_FIELDS)
        if changed:
            raise ConfigError(f"--resume can change only limits ({', '.join(sorted(LIMIT_FIELDS))}) and operational "
                              f"settings; {', '.join(changed)} would change the results: start a new run instead")
        cfg = saved.updated(**given)
    else:
        if cfg is None:
            raise ConfigError("a new run needs a config (seed, task)")
        if paths.is_run():
            saved = paths.saved_config()
            if saved.fingerprint() != cfg.fingerprint():
                raise ConfigError(f"{out} holds run {paths.run_id(saved)} with another config "
                                  f"({'; '.join(saved.differences(cfg))}); use another --out, or --resume {out}")
            logger.info("%s holds this run already; continuing it", out)
        elif out.exists() and any(out.iterdir()):
            raise ConfigError(f"{out} exists and is not a fac run directory (no {CONFIG_FILE}); use another --out")
    run_id = paths.run_id(cfg)  # the recorded id: a copied or renamed run keeps its checkpoints
    out.mkdir(parents=True, exist_ok=True)
    paths.write_config(cfg, run_id)
    return cfg, paths


def attach_log_file(paths: RunDir) -> logging.Handler:
    """Log fac's INFO lines to runs/<name>/run.log too; the console keeps its level. close() detaches it."""
    fac_logger = logging.getLogger("fac")
    console_level = fac_logger.getEffectiveLevel()
    for handler in logging.getLogger().handlers:
        if handler.level == logging.NOTSET:
            handler.setLevel(console_level)
    handler = _RunLog(paths.log, fac_logger)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactFilter())  # no API key in run.log (nor, as the record is shared, on the console)
    fac_logger.addHandler(handler)
    fac_logger.setLevel(min(console_level, logging.INFO))
    return handler


class _RunLog(logging.FileHandler):
    def __init__(self, path: Path, owner: logging.Logger) -> None:
        super().__init__(path, encoding="utf-8")
        self.owner = owner

    def close(self) -> None:
        self.owner.removeHandler(self)
        super().close()


def make_embedder(cfg: RunConfig) -> Embedder:
    from fac.tools.text.embeddings import HashingEmbedder, default_embedder

    return default_embedder() if cfg.embedder == "minilm" else HashingEmbedder()


def preflight_endpoints(cfg: RunConfig) -> None:
    """The endpoints' keys, servers and model names (the generator's, the membership judge's), checked before
    any model loads; nothing for in-process models."""
    from fac.tools.catalog.judge import LOCAL_JUDGE
    from fac.tools.llm.preflight import PREFLIGHT_TIMEOUT_S, Endpoint, preflight

    waits = {"timeout_s": min(cfg.timeout_s, PREFLIGHT_TIMEOUT_S), "patience_s": cfg.timeout_s}
    if cfg.generator == "openai":
        preflight(Endpoint("generator", cfg.generator_model, cfg.base_url, cfg.api_key_env), **waits)
    if cfg.gate_membership and cfg.membership_judge_model not in (None, LOCAL_JUDGE):
        preflight(Endpoint("membership-judge", cfg.membership_judge_model, cfg.membership_judge_base_url,
                           cfg.membership_judge_key_env), **waits)


def make_writer(cfg: RunConfig, space: FeatureSpace | None = None) -> BaseChatModel:
    """The generator: an OpenAI-compatible endpoint, or an in-process chat model (shares the space's LM when
    both are the embedded default)."""
    if cfg.generator == "openai":
        from fac.tools.llm.client import openai_chat

        chat: BaseChatModel = openai_chat(cfg.generator_model, cfg.base_url, cfg.api_key_env, cfg.temperature,
                                          cfg.max_new_tokens, cfg.timeout_s, cfg.max_retries)
        if hasattr(chat, "top_p"):
            chat.top_p = cfg.top_p
        return chat
    from fac.tools.llm.local_writer import BatchedLocalChat
    from fac.tools.space.models import load_model

    settings = {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens,
                "batch_size": cfg.concurrency}
    if space is not None and cfg.generator_model == cfg.model:
        local: BaseChatModel = BatchedLocalChat(model=space.reader.model, tokenizer=space.reader.tokenizer,
                                                model_id=space.model_id, **settings)
    else:
        local = BatchedLocalChat.from_loaded(load_model(cfg.generator_model, device=cfg.device, dtype=cfg.dtype),
                                             **settings)
    return local


def load_space(cfg: RunConfig) -> FeatureSpace:
    """The feature space the run's config names."""
    from fac.tools.space.features import FeatureSpace

    return FeatureSpace.load(cfg.model, cfg.sae, layer=cfg.layer, mode=cfg.mode, threshold=cfg.threshold,
                             device=cfg.device, dtype=cfg.dtype, max_tokens=cfg.max_tokens)


def load_catalog(cfg: RunConfig, space: FeatureSpace) -> Catalog:
    """--catalog FILE, else the task's catalog as `fac coverage` finds it (stored, shipped, or built now)."""
    from fac.tools.catalog.resolve import resolve_catalog
    from fac.tools.catalog.store import open_store

    if cfg.catalog:
        return resolve_catalog(space, cfg.task, Path(cfg.catalog))
    return resolve_catalog(space, cfg.task, store=open_store())


def make_deps(
    cfg: RunConfig,
    paths: RunDir,
    *,
    space: FeatureSpace | None = None,
    catalog: Catalog | None = None,
    writer: BaseChatModel | None = None,
    embedder: Embedder | None = None,
) -> Deps:
    """Load what the config names (seed, feature space, catalog, store, generator); pass any to reuse it."""
    import torch

    from fac.agents.replies import layout
    from fac.tools.catalog.tasks import get_task
    from fac.tools.text.datasets import read_nonempty
    from fac.tools.text.store import SampleStore, chroma_client

    records = read_nonempty(cfg.seed, cfg.text_field)  # one pass: the samples and their few-shot layouts
    seed = tuple(r.sample for r in records)
    layouts = tuple(x for r in records if (x := layout(r.fields, cfg.sample_format)))
    task = get_task(cfg.task)
    if space is None:
        space = load_space(cfg)
    if catalog is None:
        catalog = load_catalog(cfg, space)
    catalog.check_space(space.describe())
    torch.manual_seed(cfg.random_seed)
    store = SampleStore(chroma_client(paths.chroma), COLLECTION, embedder or make_embedder(cfg))
    gates = make_gates(cfg, catalog, seed, task, space, make_membership_judge(cfg, space))
    return Deps(config=cfg, space=space, catalog=catalog, seed=seed, store=store,
                writer=writer or make_writer(cfg, space), log=paths.sample_log(),
                run_id=paths.run_id(cfg), task_summary=task.summary or task.guideline[:300], gates=gates,
                seed_layouts=layouts)


def make_membership_judge(cfg: RunConfig, space: FeatureSpace) -> BaseChatModel | None:
    """The membership gate's LLM judge when the config names one ('local' shares the space's default LM)."""
    if not cfg.gate_membership or cfg.membership_judge_model is None:
        return None
    from fac.tools.catalog.judge import LOCAL_JUDGE, judge_chat
    from fac.tools.space.models import LoadedModel

    shared = None
    if cfg.membership_judge_model == LOCAL_JUDGE and cfg.model == "default":
        shared = LoadedModel(space.reader.model, space.reader.tokenizer, space.model_id)
    chat, _ = judge_chat(cfg.membership_judge_model, cfg.membership_judge_base_url, cfg.membership_judge_key_env,
                         shared=shared)
    return chat


def _as_state(values: Any) -> GenState:
    return values if isinstance(values, GenState) else GenState(**dict(values))


def write_status(paths: RunDir, state: GenState, cfg: RunConfig, run_id: str, phase: str,
                 interrupted: str | None = None, accepted: int | None = None) -> Status:
    """run.json: the status now, the phase (running, done, interrupted, failed) and what is left to do."""
    now = status(state, cfg)
    if accepted is not None:  # the journal's count (after a torn-line repair it is the truth)
        now = replace(now, accepted=accepted)
    paths.write_status({"run_id": run_id, "phase": phase, "interrupted": interrupted, **asdict(now),
                        "exhausted_features": sorted(state.exhausted), "rejections": state.rejections,
                        "missing_features": sorted(set(state.missing) - state.newly_covered()),
                        "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return now


def run(deps: Deps, paths: RunDir, *, on_status: OnStatus | None = None,
        otlp_endpoint: str | None = None) -> RunResult:
    """Run (or continue) the loop until a router stops it, a transient fault interrupts it, or SIGTERM/SIGINT
    stops it (the step in flight is abandoned; its checkpoint is the previous one). The trace goes to
    runs/<name>/trace.sqlite as it happens, and as OpenTelemetry spans to `otlp_endpoint` when one is given.
    run.json never stays "running": it ends done, interrupted, or failed with the error."""
    cfg = deps.config
    saver = sqlite_saver(paths.root)
    recorder = TraceRecorder.open(paths.root, deps, otlp_endpoint=otlp_endpoint)
    state = GenState()
    try:
        app = build_graph().compile(checkpointer=saver)
        thread: RunnableConfig = {"configurable": {"thread_id": deps.run_id}}
        snapshot = app.get_state(thread)
        graph_input: Any = {}
        if snapshot.values:
            graph_input = None
            state = _as_state(snapshot.values)
            if not snapshot.next:  # finished before: limits may have grown, so let the planner look again
                app.update_state(thread, {"stop_reason": None, "stop_detail": ""}, as_node="verify")
            logger.info("resuming run %s from its last checkpoint (%d accepted samples in %s)", deps.run_id,
                        len(deps.log), paths.samples)
        interrupted, signalled, node = None, False, "start"
        try:
            with stop_on_signals():
                streamed: RunnableConfig = {**thread, "callbacks": [recorder]}
                for mode, chunk in app.stream(graph_input, streamed, context=deps,
                                              stream_mode=[*RUN_MODES], durability="sync"):
                    recorder.feed(mode, chunk)  # tasks, custom (verdicts), values
                    if mode == "updates":
                        node = next(iter(chunk), node)
                        continue
                    if mode != "values":
                        continue
                    state = _as_state(chunk)
                    now = write_status(paths, state, cfg, deps.run_id, "running", accepted=len(deps.log))
                    if on_status is not None:
                        on_status(node, now)
        except TransientError as err:
            interrupted = str(err)
            logger.warning("interrupted: %s; continue with `fac run --resume %s`", err, paths.root)
        except StopRequested as stop:
            interrupted, signalled = f"stopped by {stop}", True
            logger.warning("%s; continue with `fac run --resume %s`", interrupted, paths.root)
        except BaseException as err:  # a crash: run.json says so (with the error) instead of "running"
            write_status(paths, state, cfg, deps.run_id, "failed", redact(f"{type(err).__name__}: {err}")[:300],
                         accepted=len(deps.log))
            raise
        state = _as_state(app.get_state(thread).values)
        final = write_status(paths, state, cfg, deps.run_id, "interrupted" if interrupted else "done", interrupted,
                             accepted=len(deps.log))
        recorder.close(f"interrupted: {interrupted}" if interrupted else "done")
    finally:
        recorder.close(sys.exc_info()[1])  # a crash: the trace keeps its error (a no-op after the close above)
        saver.conn.close()
    if on_status is not None:
        on_status("end", final)
    return RunResult(deps.run_id, paths, final, tuple(sorted(state.exhausted)), dict(state.rejections), interrupted,
                     signalled)
