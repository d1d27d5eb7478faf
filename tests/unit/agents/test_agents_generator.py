"""Generator: reply parsing per output format, the paper's prompt shapes, and endpoint faults."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from fac.agents.generator import call_generator, generate
from fac.agents.prompting import Request, build_requests
from fac.agents.replies import layout, parse_reply
from fac.graph.config import RunConfig
from fac.graph.context import Deps
from fac.graph.runner import make_writer
from fac.graph.state import GenState, Verdict
from fac.tools.catalog.records import Catalog, FeatureEvidence, FeatureRecord
from fac.tools.errors import TransientError
from fac.tools.text.formats import missing_parts

CATALOG = Catalog(task="toxicity", method="judge", space={}, records=(
    FeatureRecord(feature=7, relevant=True, decision="Yes", activation_rate=0.2, method="judge",
                  explanation="Insults aimed at a person's intelligence.",
                  evidence=(FeatureEvidence(score=8.0, span="so you are a total idiot", sample="wow so you are a "
                                            "total idiot"),
                            FeatureEvidence(score=6.0, span="what a moron", sample="what a moron lol"))),
))
SEED = ("first seed text", "second seed text", "third seed text")


def _deps(**changes: Any) -> Deps:
    cfg = RunConfig(seed="s", task="toxicity", **{"fewshot": 2, "drafts_per_feature": 1, **changes})
    return Deps(config=cfg, space=None, catalog=CATALOG, seed=SEED, store=None, writer=None,  # type: ignore[arg-type]
                log=None, run_id="r", task_summary="toxic text")  # type: ignore[arg-type]


@pytest.mark.parametrize(("reply", "fmt", "expected"), [
    ("Sure! Here is an example:\nText: you are so dumb\nExample 2: another", "text", ("you are so dumb", {})),
    ('"why are they like that?"', "query", ("why are they like that?", {})),
    ("Here's a new example:\n\n- \"you are such an idiot\" - no list\n- \"other\"", "text",
     ("you are such an idiot", {})),
    ("Example:\n1. they never listen\n\nThese examples show", "text", ("they never listen", {})),
    ("The good example is: they never listen\nThe part that scored: \"listen\"", "text", ("they never listen", {})),
    ("Instruction: list two fruits\nResponse: apple, pear", "instruction",
     ("list two fruits\n\napple, pear", {"instruction": "list two fruits", "response": "apple, pear"})),
    ("Instructions: list two fruits\n\nApple and pear.", "instruction",  # seen from the 135M model
     ("list two fruits\n\nApple and pear.", {"instruction": "list two fruits", "response": "Apple and pear."})),
    ("Prompt: hi\nChosen: hello!\nRejected: go away", "pair",
     ("hi\n\nhello!\n\ngo away", {"prompt": "hi", "chosen": "hello!", "rejected": "go away"})),
    ("Question: Is the sky blue?\n(A) yes\n(B) no\nAnswer: (B)", "ab",
     ("Is the sky blue?\n\nChoices:\n (A) yes\n (B) no\n\nAnswer: (B)",
      {"question": "Is the sky blue?\n\nChoices:\n (A) yes\n (B) no", "answer_matching_behavior": " (B)",
       "answer_not_matching_behavior": " (A)"})),
    ("Is the sky blue?\n(A) yes\n(B) no", "ab",  # no answer: kept as a question, the verifier names what it lacks
     ("Is the sky blue?\n\nChoices:\n (A) yes\n (B) no",
      {"question": "Is the sky blue?\n\nChoices:\n (A) yes\n (B) no"})),
])
def test_replies_parse_into_the_output_format(reply: str, fmt: Any, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_reply(reply, fmt) == expected


@pytest.mark.parametrize(("reply", "fmt"), [("", "text"), ("   ", "query"), ("just a response", "instruction"),
                                            ("Is it? yes or no", "ab"), ("Prompt: hi\nChosen: hello", "pair")])
def test_a_reply_without_a_usable_sample_parses_to_none(reply: str, fmt: Any) -> None:
    assert parse_reply(reply, fmt) is None


def test_a_weak_generators_ab_variants_parse_into_the_same_item() -> None:
    item = parse_reply("No\n\nQuestion: Can you stay on?\nOptions:\nA. yes\nB. no\nAnswer: B", "ab")
    assert item is not None and item[1] == {"question": "Can you stay on?\n\nChoices:\n (A) yes\n (B) no",
                                            "answer_matching_behavior": " (B)", "answer_not_matching_behavior": " (A)"}


@pytest.mark.parametrize(("row", "fmt"), [
    ({"question": "Off?\n\nChoices:\n (A) no\n (B) yes", "answer_matching_behavior": " (A)",
      "answer_not_matching_behavior": " (B)"}, "ab"),
    ({"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "hello"}],
      "rejected": [{"role": "assistant", "content": "go"}]}, "pair"),
    ({"instruction": "list two fruits", "response": "apple, pear"}, "instruction"),
])
def test_a_seed_records_layout_is_what_the_parser_reads_back(row: dict[str, Any], fmt: Any) -> None:
    shown = layout(row, fmt)
    assert shown is not None
    parsed = parse_reply(shown, fmt)
    assert parsed is not None and missing_parts(parsed[1], fmt) is None
    if fmt == "ab":
        assert parsed[1] == row
    assert layout({"text": "plain"}, fmt) is None


def test_first_drafts_of_a_structured_format_list_the_seed_in_its_layout_when_asked() -> None:
    layouts = ("Instruction: list two fruits\nResponse: apple, pear",)
    deps = dataclasses.replace(_deps(output_format="instruction", fewshot_style="list"), seed_layouts=layouts)
    (request,) = build_requests(GenState(plan=(7,), missing=(7,)), deps)
    assert len(request.messages) == 2
    assert "- Instruction: list two fruits\nResponse: apple, pear" in request.messages[-1].text


LAYOUTS = ("Instruction: list two fruits\nResponse: apple, pear", "Instruction: name a colour\nResponse: red",
           "Instruction: count to two\nResponse: one, two")


@pytest.mark.parametrize("feedback", [{}, {7: "target-not-activated: feature 7 scored 0.000"}])
def test_structured_formats_show_the_seed_as_earlier_replies_of_the_generator(feedback: dict[int, str]) -> None:
    deps = dataclasses.replace(_deps(output_format="instruction"), seed_layouts=LAYOUTS)
    (request,) = build_requests(GenState(plan=(7,), missing=(7,), feedback=feedback), deps)
    _, *turns, last = request.messages
    assert request.messages[0].type == "system"
    assert [m.type for m in turns] == ["human", "ai", "human", "ai"]  # fewshot=2 demonstrations
    assert {m.text for m in turns[1::2]} <= set(LAYOUTS) and turns[1].text != turns[3].text
    assert "Instruction: <the instruction>" in turns[0].text  # the layout is asked for before the first example
    assert turns[2].text == "Write another, different one in the same layout."
    assert last.type == "human" and last.text.startswith("Write another example, different from the ones above")
    assert not any(layout_ in last.text for layout_ in LAYOUTS)  # no second copy as a list
    assert ("Good example" in last.text) == bool(feedback)


def test_text_formats_keep_the_seed_as_a_list_unless_turns_are_asked_for() -> None:
    (listed,) = build_requests(GenState(plan=(7,), missing=(7,)), _deps())
    (turned,) = build_requests(GenState(plan=(7,), missing=(7,)), _deps(fewshot_style="turns"))
    assert len(listed.messages) == 2
    assert [m.type for m in turned.messages] == ["system", "human", "ai", "human", "ai", "human"]
    assert {m.text for m in turned.messages[2:5:2]} <= set(SEED)


def test_identical_prompts_get_distinct_reproducible_seeds() -> None:
    first = build_requests(GenState(plan=(7,), missing=(7,), round=3), _deps(drafts_per_feature=2))
    assert len({r.seed for r in first}) == 2
    assert [r.seed for r in first] == [r.seed for r in build_requests(GenState(plan=(7,), missing=(7,), round=3),
                                                                      _deps(drafts_per_feature=2))]


def test_first_drafts_carry_the_explanation_spans_and_seed_examples() -> None:
    (request,) = build_requests(GenState(plan=(7,), missing=(7,)), _deps())
    prompt = request.messages[-1].text
    assert request.kind == "draft" and "Insults aimed at a person's intelligence." in prompt
    assert '"so you are a total idiot"' in prompt and '"what a moron"' in prompt
    assert sum(seed in prompt for seed in SEED) == 2  # fewshot=2
    assert "toxic text" in request.messages[0].text


def test_retries_contrast_the_anchor_span_with_the_worst_draft_and_show_the_feedback() -> None:
    failed = Verdict(text="hello friend", score=0.0, span="", reason="target-not-activated: ...")
    state = GenState(plan=(7,), missing=(7,), best={7: failed}, worst={7: failed},
                     feedback={7: "target-not-activated: feature 7 scored 0.000"})
    (request,) = build_requests(state, _deps())
    prompt = request.messages[-1].text
    assert request.kind == "contrastive"
    assert "Good example (score 8.00): wow so you are a total idiot" in prompt  # the paper's fallback
    assert "Bad example (score 0.00): hello friend" in prompt and "Nothing in it scored." in prompt
    assert "target-not-activated: feature 7 scored 0.000" in prompt
    assert 'Keep the phrase "so you are a total idiot" word for word' in prompt  # strong Good span


def test_a_weak_good_draft_is_paraphrased_not_kept_verbatim() -> None:
    good = Verdict(text="you idiot", score=1.0, span="idiot", reason="accepted")
    bad = Verdict(text="hi", score=0.0, span="", reason="target-not-activated")
    (request,) = build_requests(GenState(plan=(7,), missing=(7,), best={7: good}, worst={7: bad}), _deps())
    prompt = request.messages[-1].text
    assert "Good example (score 1.00): you idiot" in prompt and "word for word" not in prompt


HTML_PAGE = b"<html><body><h1>Welcome to nginx!</h1></body></html>"


class _Endpoint(BaseHTTPRequestHandler):
    """An OpenAI-compatible /chat/completions that answers with the next status of `statuses` (0: HTTP 200 with
    an HTML page, as a web server or proxy at the wrong URL sends)."""

    statuses: ClassVar[list[int]] = []
    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        payload: dict[str, Any] = {"error": {"message": "slow down", "type": "rate_limit"}}
        if status == 200:
            payload = {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": "you are a total idiot"}}],
                       "usage": {"prompt_tokens": 30, "completion_tokens": 6, "total_tokens": 36}}
        data = json.dumps(payload).encode() if status else HTML_PAGE
        self.send_response(status or 200)
        self.send_header("Content-Type", "application/json" if status else "text/html")
        self.send_header("retry-after-ms", "1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def endpoint() -> Iterator[str]:
    _Endpoint.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def _openai_cfg(url: str, retries: int) -> RunConfig:
    return RunConfig(seed="s", task="toxicity", generator="openai", generator_model="served-model", base_url=url,
                     max_retries=retries, concurrency=2, api_key_env="FAC_TEST_NO_SUCH_KEY")


def test_the_endpoint_client_retries_429_and_5xx_then_succeeds(endpoint: str) -> None:
    _Endpoint.statuses = [429, 500, 200]
    cfg = _openai_cfg(endpoint, retries=3)
    request = Request(7, "draft", [HumanMessage("write")], "h")
    (reply,) = call_generator(make_writer(cfg), [request], cfg)
    assert not isinstance(reply, TransientError) and reply is not None
    assert reply.text == "you are a total idiot" and reply.usage_metadata["total_tokens"] == 36
    assert len(_Endpoint.seen) == 3 and _Endpoint.seen[-1]["model"] == "served-model"
    assert _Endpoint.seen[-1]["temperature"] == 0.8 and _Endpoint.seen[-1]["top_p"] == 0.9


def test_an_endpoint_that_keeps_failing_ends_the_step_with_a_transient_error(endpoint: str) -> None:
    _Endpoint.statuses = [503]
    cfg = _openai_cfg(endpoint, retries=1)
    deps = _deps()
    deps = Deps(**{**deps.__dict__, "config": cfg, "writer": make_writer(cfg)})
    with pytest.raises(TransientError, match="all 2 generator requests failed"):
        generate(GenState(plan=(7,), missing=(7,)), Runtime(context=deps))
    assert len(_Endpoint.seen) == 2 * 2  # each of the 2 drafts: first try + 1 retry


def test_an_unreachable_endpoint_is_a_transient_error() -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = _openai_cfg(f"http://127.0.0.1:{port}/v1", retries=0)
    (reply,) = call_generator(make_writer(cfg), [Request(7, "draft", [HumanMessage("write")], "h")], cfg)
    assert isinstance(reply, TransientError) and "Connection" in str(reply)


def test_an_endpoint_answering_200_with_an_html_page_is_an_endpoint_fault_naming_the_base_url(endpoint: str) -> None:
    _Endpoint.statuses = [0]
    cfg = _openai_cfg(endpoint, retries=2)
    (reply,) = call_generator(make_writer(cfg), [Request(7, "draft", [HumanMessage("write")], "h")], cfg)
    assert isinstance(reply, TransientError)
    assert "not an OpenAI chat completion" in str(reply) and "Welcome to nginx" in str(reply)
    assert "base URL" in str(reply) and "\n" not in str(reply)
