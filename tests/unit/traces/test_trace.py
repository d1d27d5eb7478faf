"""The run trace: built from the stream and callbacks of a real (tiny, scripted) run, durable, redacted."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from fakes import FlakyStore
from trace_world import HIT, MISS, Demo, tiny_space

from fac.tools.errors import InputError, TransientError
from fac.tools.redaction import redact as scrub
from fac.traces.store import TRACE_FILE, feature_story, open_trace, parse_step_ref, reading

KEY = "sk-live-0123456789abcdefghij"  # key-shaped
ENV_SECRET = "plain-env-secret-value-42"  # only known as an environment variable's value


@pytest.fixture()
def demo(tiny_lm: Any, tiny_tokenizer: Any, tiny_sae: Any, tmp_path: Path) -> Demo:
    return Demo(tiny_space(tiny_lm, tiny_tokenizer, tiny_sae, tmp_path), tmp_path)


def test_trace_steps_match_the_graph_steps_one_for_one(demo: Demo) -> None:
    paths, nodes, chat = demo.run([MISS, HIT])
    with reading(paths.root) as store:
        steps, calls, verdicts = store.steps(), store.calls(), store.verdicts()
        sessions = store.sessions()
    assert [s.node for s in steps] == [n for n in nodes if n not in ("start", "end")]
    assert [s.node for s in steps] == ["measure", "plan", "generate", "verify", "plan", "generate", "verify"]
    assert all(s.status == "done" and s.latency_s is not None and s.coverage for s in steps)
    assert [s.round for s in steps] == [0, 1, 1, 1, 2, 2, 2]
    assert [s.targets for s in steps[1:]] == [(demo.target,)] * 6
    assert steps[0].outputs["missing"] == [demo.target]
    assert steps[-1].coverage["fac_now"] == 1.0 and steps[3].coverage["fac_now"] == pytest.approx(2 / 3)
    # one call row per generator call, with the full prompt, the reply, tokens and its step
    assert len(calls) == len(chat.prompts) == 2
    assert ["\n".join(m["content"] for m in c.prompt) for c in calls] == chat.prompts
    assert [c.response for c in calls] == [MISS, HIT] and [c.ref for c in calls] == ["3.1", "6.1"]
    assert all(c.tokens_in == 100 and c.tokens_out == 20 and c.latency_s is not None for c in calls)
    assert all(c.feature == demo.target and c.node == "generate" and c.model == "scripted" for c in calls)
    # one verdict per draft, with the verifier's score, span, decision and reason
    assert [(v.step, v.decision, v.call) for v in verdicts] == [(4, "rejected", calls[0].id),
                                                                (7, "accepted", calls[1].id)]
    assert verdicts[0].reason.startswith("target-not-activated") and verdicts[0].score == 0.0
    assert verdicts[1].score > 0 and verdicts[1].span and demo.target in verdicts[1].credited
    assert [(s.id, s.outcome) for s in sessions] == [(1, "done")]


def test_a_features_story_lists_its_attempts_in_order(demo: Demo) -> None:
    paths, _, _ = demo.run([MISS, "", HIT], max_attempts_per_feature=5)
    with reading(paths.root) as store:
        story = feature_story(store, demo.target)
        with pytest.raises(InputError, match="does not appear"):
            feature_story(store, 10_000)
    assert [a.verdict.round for a in story.attempts] == [1, 2, 3]
    assert [a.verdict.decision for a in story.attempts] == ["rejected", "rejected", "accepted"]
    assert [a.verdict.reason.split(":")[0] for a in story.attempts] == ["target-not-activated", "empty", "accepted"]
    assert [a.verdict.kind for a in story.attempts] == ["draft", "contrastive", "contrastive"]
    assert [a.call.response if a.call else None for a in story.attempts] == [MISS, "", HIT]
    assert story.planned == (1, 2, 3) and story.status == "covered" and story.accepted == 1
    assert story.info is not None and story.info.spans == ("hate stupid",)


def test_keys_never_reach_the_trace_or_the_log(demo: Demo, monkeypatch: pytest.MonkeyPatch) -> None:
    from fac.graph.runner import attach_log_file, open_run

    monkeypatch.setenv("FAC_DEMO_TOKEN", ENV_SECRET)
    reply = f"{MISS} {KEY} {ENV_SECRET}"
    _, paths = open_run(demo.tmp / "runs" / "demo", demo.config())  # demo.run continues this run
    handler = attach_log_file(paths)
    logging.getLogger("fac").setLevel(logging.DEBUG)  # the generator logs every reply at DEBUG
    try:
        paths, _, _ = demo.run([reply, HIT])
    finally:
        handler.close()
    log = (paths.root / "run.log").read_text()
    assert "draft for feature" in log and "***" in log
    for blob in (log, (paths.root / TRACE_FILE).read_bytes().decode("utf-8", "replace")):
        assert KEY not in blob and ENV_SECRET not in blob and KEY[:12] not in blob.replace("sk-liv***", "")
    with reading(paths.root) as store:
        assert store.calls()[0].response == f"{MISS} sk-liv*** ***"
        assert "***" in store.verdicts()[0].text


def test_scrub_hides_env_key_values_and_key_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_SERVICE_KEY", "abcdefgh12345678")
    text = "key abcdefgh12345678, Authorization: Bearer abc.def.ghi.jkl and api_key=zzzzzzzzzzzz"
    assert scrub(text) == "key ***, Authorization: Bearer *** and api_key=***"


def test_a_trace_written_before_a_crash_stays_readable(demo: Demo) -> None:
    seen: list[list[str]] = []

    def peek(n: int) -> str:  # a second reader, mid-run: what is on disk already
        with reading(demo.tmp / "runs" / "demo") as store:
            seen.append([f"{s.node}:{s.status}" for s in store.steps()])
        return HIT

    # store.add #1 indexes the seed, #2 the accepted sample: the verifier crashes after journaling it
    with pytest.raises(RuntimeError, match="injected crash"):
        demo.run([MISS, peek], store=lambda inner: FlakyStore(inner, fail_on=2))
    assert seen == [["measure:done", "plan:done", "generate:done", "verify:done", "plan:done", "generate:running"]]
    with reading(demo.tmp / "runs" / "demo") as store:
        steps, calls, sessions = store.steps(), store.calls(), store.sessions()
    assert [f"{s.node}:{s.status}" for s in steps][-2:] == ["generate:done", "verify:error"]
    assert "injected crash" in steps[-1].error
    assert [c.response for c in calls] == [MISS, HIT]
    assert sessions[0].outcome == "crashed: RuntimeError: injected crash"


def test_an_interrupted_run_records_the_failed_call_and_a_resume_appends_a_session(demo: Demo) -> None:
    paths, _, _ = demo.run([TransientError("endpoint unreachable")])
    with reading(paths.root) as store:
        (call,) = store.calls()
        assert "TransientError" in call.error and store.steps()[-1].status == "error"
        assert store.sessions()[0].outcome.startswith("interrupted: ")
    demo.run([HIT], resume=True)
    with reading(paths.root) as store:
        assert [s.outcome for s in store.sessions()] == [store.sessions()[0].outcome, "done"]
        assert [s.node for s in store.steps() if s.session == 2] == ["generate", "verify"]
        assert feature_story(store, demo.target).status == "covered"


def test_otlp_export_mirrors_steps_and_llm_calls(demo: Demo, monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from fac.traces import otel

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(otel, "otlp_listener", lambda url, run_id: otel.OtelListener(provider, run_id))
    demo.run([f"{MISS} {KEY}", HIT], otlp_endpoint="http://collector.invalid:4318")
    spans = exporter.get_finished_spans()
    names = [s.name for s in spans]
    assert names.count("generate") == 2 and names.count("verify") == 2 and names.count("llm scripted") == 2
    root = next(s for s in spans if s.name.startswith("fac run "))
    steps = [s for s in spans if s.name in ("measure", "plan", "generate", "verify")]
    assert len(steps) == 7 and all(s.parent is not None and s.parent.span_id == root.context.span_id for s in steps)
    llm = [s for s in spans if s.name == "llm scripted"]
    generate_ids = {s.context.span_id for s in steps if s.name == "generate"}
    assert all(s.parent is not None and s.parent.span_id in generate_ids for s in llm)
    assert llm[0].attributes is not None and llm[0].attributes["llm.token_count.prompt"] == 100
    assert KEY not in json.dumps([dict(s.attributes or {}) for s in spans])
    assert "sk-liv***" in str(llm[0].attributes["output.value"])


def test_otlp_endpoint_must_be_an_http_url() -> None:
    from fac.tools.errors import ConfigError
    from fac.traces.otel import traces_url

    assert traces_url("http://localhost:6006") == "http://localhost:6006/v1/traces"
    assert traces_url("https://cloud.langfuse.com/api/public/otel/v1/traces/").endswith("/otel/v1/traces")
    with pytest.raises(ConfigError, match="http"):
        traces_url("localhost:4317")


def test_langsmith_tracing_from_the_environment_still_sees_every_call(demo: Demo,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import langchain_core.tracers.langchain as langchain_tracers
    from langchain_core.callbacks import BaseCallbackHandler
    from langsmith import utils as langsmith_utils

    class Tracer(BaseCallbackHandler):  # stands in for LangSmith's LangChainTracer: no client, no network
        seen: list[str] = []  # noqa: RUF012

        def __init__(self, **kwargs: Any) -> None:
            super().__init__()

        def copy_with_metadata_defaults(self, **kwargs: Any) -> Tracer:
            return self

        def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
            self.seen.append("llm")

        def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
            self.seen.append(str(kwargs.get("name")))

    monkeypatch.setattr(langchain_tracers, "LangChainTracer", Tracer)
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    langsmith_utils.get_env_var.cache_clear()  # langsmith caches what it read from the environment
    try:
        paths, _, _ = demo.run([MISS, HIT])
    finally:
        monkeypatch.delenv("LANGSMITH_TRACING")
        langsmith_utils.get_env_var.cache_clear()
    assert Tracer.seen.count("llm") == 2 and Tracer.seen.count("generate") == 2 and "LangGraph" in Tracer.seen
    with reading(paths.root) as store:
        assert len(store.calls()) == 2 and len(store.steps()) == 7


def test_bad_trace_inputs_are_one_line_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such run directory"):
        open_trace(tmp_path / "nope")
    with pytest.raises(InputError, match="not a fac run directory"):
        open_trace(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InputError, match="has no trace"):
        open_trace(tmp_path)
    (tmp_path / TRACE_FILE).write_bytes(b"")  # created, never written
    with pytest.raises(InputError, match="not a fac trace"):
        open_trace(tmp_path)
    (tmp_path / TRACE_FILE).write_bytes(b"garbage that is not sqlite" * 100)
    with pytest.raises(InputError, match=r"unreadable trace|not a fac trace"):
        open_trace(tmp_path)
    assert parse_step_ref("12") == (12, None) and parse_step_ref("12.3") == (12, 3)
    with pytest.raises(InputError, match="step number"):
        parse_step_ref("x1")


def test_calls_after_the_run_ended_are_not_recorded_and_raise_nothing(demo: Demo, caplog: pytest.LogCaptureFixture,
                                                                      ) -> None:
    # a step abandoned by a stop signal can still finish its generator calls after the trace's session closed
    from uuid import uuid4

    from langchain_core.messages import HumanMessage
    from langchain_core.outputs import ChatGeneration, LLMResult

    from fac.graph.run_dir import RunDir
    from fac.traces.recorder import TraceRecorder

    paths, _, chat = demo.run([HIT])
    cfg = demo.config()
    recorder = TraceRecorder.open(paths.root, demo.deps(cfg, chat, paths.root))
    recorder.close("done")
    with reading(paths.root) as store:
        before = len(store.calls())
    run_id = uuid4()
    with caplog.at_level(logging.WARNING):
        recorder.on_chat_model_start({}, [[HumanMessage("late")]], run_id=run_id)
        recorder.on_llm_end(LLMResult(generations=[[ChatGeneration(message=chat.invoke("x"))]]), run_id=run_id)
        recorder.on_llm_error(RuntimeError("late"), run_id=uuid4())
    with reading(RunDir(paths.root).root) as store:
        assert len(store.calls()) == before
    assert not caplog.records
