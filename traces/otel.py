"""Optional OpenTelemetry export of the run trace (OTLP over HTTP), for Phoenix, Langfuse or any OTLP backend.

One root span per `fac run` session, a child span per node step and a grandchild per LLM call, carrying the
same redacted records as trace.sqlite under OpenInference (`input.value`, `llm.token_count.*`, ...) and
GenAI (`gen_ai.usage.*`) attribute names. Needs `pip install 'fac[otel]'` (opentelemetry-sdk and the
OTLP/HTTP exporter); headers such as Langfuse's Basic auth come from $OTEL_EXPORTER_OTLP_HEADERS, read by the
exporter itself.
"""

from __future__ import annotations

import importlib
import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from fac.tools.errors import ConfigError
from fac.traces.store import TraceCall, TraceStep

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

logger = logging.getLogger(__name__)

TRACES_PATH = "/v1/traces"
SERVICE_NAME = "fac"


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for `endpoint` (http://host:6006 -> http://host:6006/v1/traces)."""
    parsed = urlparse(endpoint.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"--otlp-endpoint {endpoint!r}: expected an http(s) URL of an OTLP/HTTP collector, e.g. "
                          "http://localhost:6006/v1/traces (Phoenix)")
    path = parsed.path.rstrip("/")
    return parsed._replace(path=path if path.endswith(TRACES_PATH) else path + TRACES_PATH).geturl()


class OtelListener:
    """Mirrors trace records as spans on `provider` (shut down on close when `owns_provider`)."""

    def __init__(self, provider: TracerProvider, run_id: str, *, owns_provider: bool = False) -> None:
        from opentelemetry.trace import set_span_in_context

        self.provider = provider
        self.owns_provider = owns_provider
        self.tracer = provider.get_tracer("fac.graph")
        self.root = self.tracer.start_span(f"fac run {run_id}", attributes={
            "fac.run_id": run_id, "openinference.span.kind": "CHAIN", "session.id": run_id})
        self._root_context = set_span_in_context(self.root)
        self._steps: dict[int, Span] = {}
        self._set_span_in_context = set_span_in_context

    def step_started(self, step: TraceStep) -> None:
        span = self.tracer.start_span(step.node, context=self._root_context, start_time=_ns(step.started_at),
                                      attributes={"openinference.span.kind": "CHAIN", "fac.step.id": step.id,
                                                  "fac.node": step.node, "fac.round": step.round,
                                                  "fac.targets": list(step.targets),
                                                  "input.value": _json(step.inputs),
                                                  "input.mime_type": "application/json"})
        self._steps[step.id] = span

    def step_finished(self, step: TraceStep) -> None:
        from opentelemetry.trace import Status, StatusCode

        span = self._steps.pop(step.id, None)
        if span is None:
            return
        span.set_attributes({"fac.status": step.status, "fac.round": step.round, "fac.targets": list(step.targets),
                             "output.value": _json({**step.outputs, "coverage": step.coverage}),
                             "output.mime_type": "application/json"})
        if "fac_now" in step.coverage:
            span.set_attribute("fac.coverage.fac", float(step.coverage["fac_now"]))
        if step.error:
            span.set_status(Status(StatusCode.ERROR, step.error))
        span.end(end_time=_ns(step.started_at + (step.latency_s or 0.0)))

    def call_finished(self, call: TraceCall) -> None:
        from opentelemetry.trace import Status, StatusCode

        parent = self._steps.get(call.step) if call.step is not None else None
        context = self._set_span_in_context(parent) if parent is not None else self._root_context
        attributes: dict[str, Any] = {
            "openinference.span.kind": "LLM", "llm.model_name": call.model, "gen_ai.request.model": call.model,
            "gen_ai.operation.name": "chat", "llm.token_count.prompt": call.tokens_in,
            "llm.token_count.completion": call.tokens_out, "llm.token_count.total": call.tokens_in + call.tokens_out,
            "gen_ai.usage.input_tokens": call.tokens_in, "gen_ai.usage.output_tokens": call.tokens_out,
            "input.value": _json(call.prompt), "input.mime_type": "application/json", "output.value": call.response,
            "llm.invocation_parameters": _json(call.params), "fac.call.ref": call.ref, "fac.node": call.node}
        for i, message in enumerate(call.prompt):
            attributes[f"llm.input_messages.{i}.message.role"] = message.get("role", "")
            attributes[f"llm.input_messages.{i}.message.content"] = message.get("content", "")
        attributes["llm.output_messages.0.message.role"] = "assistant"
        attributes["llm.output_messages.0.message.content"] = call.response
        if call.feature is not None:
            attributes["fac.feature"] = call.feature
        span = self.tracer.start_span(f"llm {call.model}", context=context, start_time=_ns(call.started_at),
                                      attributes=attributes)
        if call.error:
            span.set_status(Status(StatusCode.ERROR, call.error))
        span.end(end_time=_ns(call.started_at + (call.latency_s or 0.0)))

    def closed(self, outcome: str) -> None:
        from opentelemetry.trace import Status, StatusCode

        for span in self._steps.values():  # steps a crash left open
            span.set_status(Status(StatusCode.ERROR, outcome))
            span.end()
        self._steps.clear()
        self.root.set_attribute("fac.outcome", outcome)
        if outcome != "done":
            self.root.set_status(Status(StatusCode.ERROR, outcome))
        self.root.end()
        if self.owns_provider:
            self.provider.shutdown()  # flushes the batch processor


def check_endpoint(endpoint: str) -> str:
    """The traces URL, once the URL and the optional OpenTelemetry packages are known to be usable."""
    url = traces_url(endpoint)
    try:
        for module in ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter"):
            importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(f"--otlp-endpoint needs OpenTelemetry's OTLP/HTTP exporter ({err.name} is missing): "
                          "pip install 'fac[otel]'") from None
    return url


def otlp_listener(endpoint: str, run_id: str) -> OtelListener:
    """A listener exporting to an OTLP/HTTP collector at `endpoint` (its own provider; the global one is untouched)."""
    url = check_endpoint(endpoint)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME,
                                                        "openinference.project.name": SERVICE_NAME}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url, timeout=10)))
    logger.info("exporting the trace to %s", url)
    return OtelListener(provider, run_id, owns_provider=True)
