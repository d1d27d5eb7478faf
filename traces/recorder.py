"""TraceRecorder: builds the run trace from LangGraph's stream and LangChain's callbacks (no logging in nodes).

The runner passes the recorder as a callback handler in the graph's RunnableConfig and feeds it every stream
chunk of the modes in `STREAM_MODES`:

- "tasks": a node starts (its input state) and ends (its update or error) -> one step row each;
- "custom": the verifier's per-draft verdicts (`runtime.stream_writer({"verdict": {...}})`) -> verdict rows;
- "values": the state after each step -> the coverage stored with that step;
- callbacks `on_chat_model_start` / `on_llm_end` / `on_llm_error` -> one call row per LLM call, linked to its
  step by the task id LangGraph puts in the call's metadata.

Listeners (`graph.otel.OtelListener`) see the same, already redacted, records.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langgraph.types import StreamMode

from fac.graph.state import Draft, GenState
from fac.graph.status import status
from fac.tools.catalog.records import evidence_spans
from fac.tools.llm.calls import messages_hash
from fac.tools.llm.client import usage
from fac.tools.redaction import env_secrets
from fac.traces.store import TraceCall, TraceFeature, TraceStep, TraceStore

if TYPE_CHECKING:
    from langchain_core.outputs import LLMResult

    from fac.graph.context import Deps

logger = logging.getLogger(__name__)

STREAM_MODES: tuple[StreamMode, ...] = ("tasks", "custom", "values")
_PARAMS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "max_new_tokens", "seed", "stop", "n")
_MODEL_KEYS = ("model_name", "model", "model_id")


class TraceListener(Protocol):
    """Something that mirrors the trace elsewhere (an OTLP exporter); gets redacted records."""

    def step_started(self, step: TraceStep) -> None: ...

    def step_finished(self, step: TraceStep) -> None: ...

    def call_finished(self, call: TraceCall) -> None: ...

    def closed(self, outcome: str) -> None: ...


def _state(value: Any) -> GenState | None:
    if isinstance(value, GenState):
        return value
    if isinstance(value, Mapping):
        try:
            return GenState(**dict(value))
        except TypeError:
            return None
    return None


def _features(values: Any) -> list[int]:
    return sorted({int(j) for j in values or ()})


def _drafts(update: Mapping[str, Any]) -> list[Draft]:
    return [d if isinstance(d, Draft) else Draft.model_validate(d) for d in update.get("drafts") or ()]


def _targets(node: str, state: GenState | None, update: Mapping[str, Any] | None = None) -> list[int]:
    if node == "plan":
        return _features(update.get("plan")) if update else []
    if state is None:
        return []
    if node == "generate":
        return _features(state.plan)
    if node == "verify":
        return _features(d.feature for d in state.drafts)
    return []


def _inputs(node: str, state: GenState | None, deps: Deps) -> dict[str, Any]:
    """What the node starts from, in a few numbers."""
    if node == "measure":
        return {"seed_samples": len(deps.seed), "task_features": len(deps.catalog.task_features())}
    if state is None:
        return {}
    if node == "plan":
        return {"round": state.round, "missing": len(state.missing), "newly_covered": len(state.newly_covered()),
                "exhausted": len(state.exhausted), "accepted": state.n_accepted, "tokens_used": state.tokens_used}
    if node == "generate":
        retries = [j for j in state.plan if j in state.best or j in state.feedback]
        return {"round": state.round, "plan": list(state.plan), "retries": retries,
                "attempts": {str(j): state.attempts.get(j, 0) for j in state.plan}}
    if node == "verify":
        return {"round": state.round, "drafts": len(state.drafts),
                "empty": sum(1 for d in state.drafts if not d.text.strip())}
    return {}


def _outputs(node: str, before: GenState | None, update: Mapping[str, Any]) -> dict[str, Any]:
    """What the node changed, in a few numbers (full lists where the report needs them)."""
    if node == "measure":
        return {"fac_before": update.get("fac_before"), "task_features": len(update.get("task_features") or ()),
                "missing": _features(update.get("missing")), "stop_reason": update.get("stop_reason")}
    if node == "plan":
        return {"plan": _features(update.get("plan")), "round": update.get("round"),
                "exhausted": _features(update.get("exhausted")), "stop_reason": update.get("stop_reason"),
                "stop_detail": update.get("stop_detail", "")}
    if node == "generate":
        drafts = _drafts(update)
        return {"drafts": len(drafts), "empty": sum(1 for d in drafts if not d.text.strip()),
                "tokens": int(update.get("tokens_used") or 0)}
    if node == "verify":
        old = before.rejections if before else {}
        new = update.get("rejections") or {}
        return {"accepted": len(update.get("accepted_ids") or ()),
                "rejected": {k: v - old.get(k, 0) for k, v in new.items() if v - old.get(k, 0)},
                "stop_reason": update.get("stop_reason"), "stop_detail": update.get("stop_detail", "")}
    return {"keys": sorted(update)}


def _message_text(message: BaseMessage) -> str:
    text = message.text
    return text if isinstance(text, str) else str(message.content)


def _task_id(metadata: Mapping[str, Any] | None) -> str:
    """The LangGraph task a callback run belongs to ('' outside a graph)."""
    namespace = str((metadata or {}).get("langgraph_checkpoint_ns") or "")
    return namespace.split("|", 1)[0].partition(":")[2]


def _model(serialized: Mapping[str, Any] | None, params: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    for key in _MODEL_KEYS:
        if isinstance(params.get(key), str) and params[key]:
            return str(params[key])
    if metadata.get("ls_model_name"):
        return str(metadata["ls_model_name"])
    name = params.get("_type") or ((serialized or {}).get("id") or ["?"])[-1]
    return str(name)


class TraceRecorder(BaseCallbackHandler):
    """Writes trace.sqlite as the graph runs; use as a callback handler and feed it the stream."""

    raise_error = False  # a tracing fault is logged by langchain, never fails the generator call

    def __init__(self, store: TraceStore, deps: Deps, listeners: Sequence[TraceListener] = ()) -> None:
        self.store = store
        self.deps = deps
        self.listeners = list(listeners)
        self.session = store.start_session(deps.run_id)
        self._lock = threading.Lock()
        self._steps: dict[str, tuple[int, float, GenState | None]] = {}  # task id -> (row, t0, input state)
        self._current: tuple[int, int] | None = None  # (step row, round) of the running step
        self._last_done: int | None = None  # the finished step whose coverage the next "values" chunk gives
        self._calls: dict[UUID, tuple[int, float]] = {}  # callback run id -> (row, t0)
        self._closed = False
        store.put_features(self._catalog_features())

    @classmethod
    def open(cls, run_dir: Path, deps: Deps, *, otlp_endpoint: str | None = None,
             listeners: Sequence[TraceListener] = ()) -> TraceRecorder:
        """A recorder writing run_dir/trace.sqlite (appending a session on resume), optionally exporting OTLP."""
        extra = list(listeners)
        if otlp_endpoint:
            from fac.traces.otel import otlp_listener

            extra.append(otlp_listener(otlp_endpoint, deps.run_id))
        store = TraceStore.create(run_dir, env_secrets([deps.config.api_key_env]))
        return cls(store, deps, extra)

    def _catalog_features(self) -> list[TraceFeature]:
        task = set(self.deps.catalog.task_features())
        return [TraceFeature(feature=r.feature, explanation=r.explanation or "",
                             relevance=r.decision or ("relevant" if r.relevant else "not relevant"),
                             spans=tuple(evidence_spans(r)))
                for r in self.deps.catalog.records if r.feature in task]

    # --- the stream -------------------------------------------------------------------------------------------

    def feed(self, mode: str, chunk: Any) -> None:
        """Consume one (mode, chunk) of the graph's stream; modes other than STREAM_MODES are ignored."""
        if mode == "tasks" and isinstance(chunk, Mapping):
            if "input" in chunk:
                self._task_started(chunk)
            elif "result" in chunk or "error" in chunk:
                self._task_ended(chunk)
        elif mode == "custom" and isinstance(chunk, Mapping) and isinstance(chunk.get("verdict"), Mapping):
            self._verdict(chunk["verdict"])
        elif mode == "values" and self._last_done is not None:
            state = _state(chunk)
            if state is not None:
                self.store.set_coverage(self._last_done, asdict(status(state, self.deps.config)))
            self._flush()

    def _flush(self) -> None:
        """Tell listeners about the last finished step, now that its coverage is known (or will never be)."""
        with self._lock:
            row, self._last_done = self._last_done, None
        if row is not None:
            self._notify("step_finished", self.store.step(row))

    def _task_started(self, chunk: Mapping[str, Any]) -> None:
        self._flush()
        node, task_id = str(chunk.get("name")), str(chunk.get("id"))
        state = _state(chunk.get("input"))
        round_ = state.round if state else 0
        row = self.store.start_step(self.session, task_id, node, round_, _targets(node, state),
                                    _inputs(node, state, self.deps), time.time())
        with self._lock:
            self._steps[task_id] = (row, time.perf_counter(), state)
            self._current = (row, round_)
        self._notify("step_started", self.store.step(row))

    def _task_ended(self, chunk: Mapping[str, Any]) -> None:
        node, task_id = str(chunk.get("name")), str(chunk.get("id"))
        with self._lock:
            started = self._steps.pop(task_id, None)
        if started is None:
            return
        row, t0, before = started
        error = chunk.get("error")
        result = chunk.get("result")
        update: Mapping[str, Any] = result if isinstance(result, Mapping) else {}
        round_ = int(update.get("round") or (before.round if before else 0))
        if node == "generate" and update:
            self.store.set_call_features(self.session, task_id, {d.prompt_hash: d.feature for d in _drafts(update)})
        self.store.finish_step(row, status="error" if error else "done", round_=round_,
                               targets=_targets(node, before, update),
                               outputs=_outputs(node, before, update) if update else {}, error=str(error or ""),
                               latency_s=time.perf_counter() - t0)
        with self._lock:
            self._current = None
            self._last_done = row
        if error:  # no state follows a failed step
            self._flush()

    def _verdict(self, data: Mapping[str, Any]) -> None:
        with self._lock:
            current = self._current
        if current is None:
            logger.debug("a verdict outside a step was not traced: %r", data)
            return
        step, round_ = current
        reason = str(data.get("reason", ""))
        text = str(data.get("text", ""))
        digest = str(data.get("prompt_hash", ""))
        self.store.add_verdict(step=step, call=self.store.match_call(digest, text) if digest else None, round_=round_,
                               feature=int(data["feature"]), kind=str(data.get("kind", "")),
                               decision="accepted" if reason.startswith("accepted") else "rejected", reason=reason,
                               score=float(data.get("score", 0.0)), span=str(data.get("span", "")), text=text,
                               sample_id=str(data.get("sample_id", "")), credited=_features(data.get("credited")),
                               prompt_hash=digest)

    # --- LangChain callbacks (called from the generator's worker threads) --------------------------------------

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *, run_id: UUID,
                            parent_run_id: UUID | None = None, tags: list[str] | None = None,
                            metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        conversation = messages[0] if messages else []
        prompt = [{"role": m.type, "content": _message_text(m)} for m in conversation]
        self._call_started(run_id, serialized, prompt, messages_hash(conversation), metadata, kwargs)

    def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID,
                     parent_run_id: UUID | None = None, tags: list[str] | None = None,
                     metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        prompt = [{"role": "prompt", "content": p} for p in prompts[:1]]
        self._call_started(run_id, serialized, prompt, "", metadata, kwargs)

    def _call_started(self, run_id: UUID, serialized: dict[str, Any] | None, prompt: list[dict[str, str]],
                      digest: str, metadata: dict[str, Any] | None, kwargs: Mapping[str, Any]) -> None:
        if self._closed:  # a call of a step abandoned when the run stopped: the trace's session is over
            return
        meta = metadata or {}
        invocation = kwargs.get("invocation_params") or {}
        params = {k: invocation[k] for k in _PARAMS if invocation.get(k) is not None}
        row = self.store.start_call(self.session, _task_id(meta), str(meta.get("langgraph_node") or ""),
                                    _model(serialized, invocation, meta), params, prompt, digest, time.time())
        with self._lock:
            self._calls[run_id] = (row, time.perf_counter())

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, parent_run_id: UUID | None = None,
                   **kwargs: Any) -> None:
        with self._lock:
            started = self._calls.pop(run_id, None)
        if started is None or self._closed:
            return
        row, t0 = started
        generation = response.generations[0][0] if response.generations and response.generations[0] else None
        message = getattr(generation, "message", None)
        text = _message_text(message) if isinstance(message, BaseMessage) else getattr(generation, "text", "")
        n_in, n_out = usage(message) if isinstance(message, BaseMessage) else (0, 0)
        if not n_in + n_out and response.llm_output:
            counts = response.llm_output.get("token_usage") or {}
            n_in, n_out = int(counts.get("prompt_tokens", 0)), int(counts.get("completion_tokens", 0))
        served = (getattr(message, "response_metadata", None) or {}).get("model_name")
        call = self.store.call(row)
        self.store.finish_call(row, model=str(served or (call.model if call else "?")), response=text,
                               tokens_in=n_in, tokens_out=n_out, latency_s=time.perf_counter() - t0)
        self._notify("call_finished", self.store.call(row))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None,
                     **kwargs: Any) -> None:
        with self._lock:
            started = self._calls.pop(run_id, None)
        if started is None or self._closed:
            return
        row, t0 = started
        call = self.store.call(row)
        self.store.finish_call(row, model=call.model if call else "?", response="", tokens_in=0, tokens_out=0,
                               latency_s=time.perf_counter() - t0, error=f"{type(error).__name__}: {error}")
        self._notify("call_finished", self.store.call(row))

    # --- end ---------------------------------------------------------------------------------------------------

    def _notify(self, event: str, record: Any) -> None:
        if record is None:
            return
        for listener in self.listeners:
            getattr(listener, event)(record)

    def close(self, outcome: str | BaseException | None = "done") -> None:
        """End the session: 'done', 'interrupted: …', or an exception (a crash); steps left running are marked
        crashed. A second call does nothing."""
        if self._closed:
            return
        self._closed = True
        if isinstance(outcome, BaseException):
            outcome = f"crashed: {type(outcome).__name__}: {outcome}"
        text = outcome or "done"
        try:
            self._flush()
            self.store.end_session(self.session, text)
            for listener in self.listeners:
                listener.closed(text)
        finally:
            self.store.close()
