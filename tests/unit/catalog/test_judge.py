"""The LLM judge through a scripted fake chat model: decisions, garbage, skipping, cache, tokens, errors."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.exceptions import ModelInvalidRequestError, ModelRateLimitError
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field, PrivateAttr

from fac.prompts import render
from fac.tools.catalog.judge import (
    FeatureCandidate,
    JudgeCache,
    JudgeStats,
    judge_features,
    parse_decision,
    parse_one_word_answer,
    prepare_spans,
)
from fac.tools.catalog.records import FeatureEvidence, FeatureRecord
from fac.tools.errors import ConfigError, TransientError

Script = list[str | Exception] | Callable[[list[BaseMessage]], str]
GUIDE = "# Pets\n- anything about cats and dogs"
EXPLAIN = "Mentions of cats sitting."
VERIFIED = "All spans mention a cat sitting.\nFinal Decision: [[Yes]]"


class ScriptedChat(BaseChatModel):
    """Replies from a script (in order, or computed from the messages); counts calls and reports usage."""

    script: Any
    calls: int = 0
    seen: list[list[BaseMessage]] = Field(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        with self._lock:
            self.calls += 1
            self.seen.append(messages)
            if callable(self.script):
                reply = self.script(messages)
            elif not self.script:
                raise AssertionError("the judge made an unscripted call")
            else:
                reply = self.script.pop(0)
        if isinstance(reply, Exception):
            raise reply
        n_in = sum(len(str(m.content).split()) for m in messages)
        usage = {"input_tokens": n_in, "output_tokens": len(reply.split()), "total_tokens": n_in + len(reply.split())}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(reply, usage_metadata=usage))])


def candidate(feature: int = 3, spans: tuple[str, ...] = ("the cat sat", "a cat sat on")) -> FeatureCandidate:
    evidence = tuple(FeatureEvidence(score=10.0 - i, span=s, sample=f"... {s} ...") for i, s in enumerate(spans))
    return FeatureCandidate(feature=feature, activation_rate=0.25, evidence=evidence)


def run(script: Script, cache: JudgeCache, *, candidates: list[FeatureCandidate] | None = None, guideline: str = GUIDE,
        model_name: str = "judge-m", **kwargs: Any) -> tuple[list[FeatureRecord], ScriptedChat, JudgeStats]:
    chat, stats = ScriptedChat(script=script), JudgeStats()
    records = judge_features(candidates or [candidate()], guideline, chat, cache, task="pets", model_name=model_name,
                             stats=stats, **kwargs)
    return records, chat, stats


@pytest.fixture()
def cache(tmp_path: Path) -> JudgeCache:
    return JudgeCache(tmp_path / "judge.sqlite")


@pytest.mark.parametrize(("text", "expected"), [
    ("Analysis...\nFinal Decision: [[Yes]]", "Yes"),
    ("Final Decision: [[ probably ]]", "Probably"),
    ("Final Decision: Maybe", "Maybe"),
    ("**Final Decision:** **No**", "No"),
    ("Final Decision: [[**Yes**]].", "Yes"),
    ("decision: yes at first; on reflection, Final Decision: [[Maybe]]", "Maybe"),
    ("[[No]] ... then again [[Probably]]", "Probably"),
    ("Probably.", "Probably"),
    ("Final Decision: [[Yes/Probably/Maybe/No]]", None),
    ("It is not clear, nothing decisive here.", None),
    ("%%% ### garbage ###", None),
    ("", None),
])
def test_parse_decision(text: str, expected: str | None) -> None:
    assert parse_decision(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("Maybe", "Maybe"),
    ("I will choose one word: Maybe.", "Maybe"),
    ('Your final decision was "Maybe".', "Maybe"),
    ("No, I am not sure.", "No"),
    ("NO", "No"),
    ("No, Probably.", None),
    ("Yes, Probably, Maybe or No", None),
    ("I'm glad you're happy with the", None),
    ("Final Decision: [[Yes]] no doubt", "Yes"),
])
def test_parse_one_word_answer(text: str, expected: str | None) -> None:
    assert parse_one_word_answer(text) == expected


@pytest.mark.parametrize(("decision", "relevant"), [("Yes", True), ("Probably", True), ("Maybe", True), ("No", False)])
def test_relevance_decision_sets_relevant(cache: JudgeCache, decision: str, relevant: bool) -> None:
    analysis = f"Cats are pets, so this matters.\nFinal Decision: [[{decision}]]"
    (rec,), chat, _ = run([EXPLAIN, VERIFIED, analysis], cache)
    assert chat.calls == 3
    assert (rec.feature, rec.relevant, rec.decision, rec.method) == (3, relevant, decision, "judge")
    assert rec.explanation == EXPLAIN and rec.reason == analysis and rec.activation_rate == 0.25
    assert len(rec.evidence) == 2


def test_prompts_carry_spans_explanation_task_and_guideline(cache: JudgeCache) -> None:
    _, chat, _ = run([EXPLAIN, VERIFIED, "Final Decision: [[Yes]]"], cache)
    explain, verify, relevance = chat.seen
    assert explain[0].content == render("judge.explain.system")
    assert "Span 1: the cat sat\nSpan 2: a cat sat on" in str(explain[1].content)
    assert EXPLAIN in str(verify[1].content) and "Span 2: a cat sat on" in str(verify[1].content)
    assert GUIDE in str(relevance[0].content) and '"pets"' in str(relevance[0].content)
    assert EXPLAIN in str(relevance[1].content)


def test_relevance_reply_without_decision_counts_as_no_and_keeps_the_reason(cache: JudgeCache) -> None:
    (rec,), chat, _ = run([EXPLAIN, VERIFIED, "  It seems to be about pets, I suppose.  ", "hmm, hard to say"], cache)
    assert (rec.relevant, rec.decision, rec.reason) == (False, "No", "It seems to be about pets, I suppose.")
    assert chat.calls == 4  # one follow-up asked for the decision and got none


def test_a_missing_decision_is_asked_for_once_and_the_answer_kept_with_the_reason(cache: JudgeCache) -> None:
    (rec,), chat, stats = run([EXPLAIN, VERIFIED, "It is about pets.", "Probably."], cache)
    assert (rec.relevant, rec.decision) == (True, "Probably")
    assert rec.reason == "It is about pets.\nFinal Decision (asked again): [[Probably]]"
    follow_up = chat.seen[-1]
    assert [m.type for m in follow_up] == ["system", "human", "ai", "human"]
    assert follow_up[2].content == "It is about pets." and follow_up[3].content == render("judge.decision.user")
    assert stats.calls == 4
    (again,), chat2, _ = run([], cache)  # the follow-up is cached like any call
    assert chat2.calls == 0 and again == rec


class ChoosingChat(ScriptedChat):
    """A scripted chat that also scores closed choices (as LocalChatModel does), always choosing `answer`."""

    answer: str = "Maybe"
    asked: list[tuple[str, ...]] = Field(default_factory=list)

    def choose(self, messages: Any, choices: Any) -> AIMessage:
        self.asked.append(tuple(choices))
        return AIMessage(self.answer, usage_metadata={"input_tokens": 5, "output_tokens": 1, "total_tokens": 6})


def test_a_model_that_scores_choices_is_asked_to_choose_instead_of_generating(cache: JudgeCache) -> None:
    refuser = ChoosingChat(script=[EXPLAIN, "They all fit."], answer="No")
    (rec,) = judge_features([candidate()], GUIDE, refuser, cache, task="pets", model_name="m")
    assert not rec.relevant and "verification said No" in rec.reason and refuser.calls == 2
    chooser = ChoosingChat(script=[EXPLAIN, "They all fit.", "Pets, clearly."], answer="Yes")
    (rec,) = judge_features([candidate()], GUIDE, chooser, JudgeCache(cache.path.with_name("other.sqlite")),
                            task="pets", model_name="m")
    assert (rec.relevant, rec.decision) == (True, "Yes") and chooser.calls == 3  # choices are not generated
    assert chooser.asked == [("Yes", "Probably", "Maybe", "No")] * 2


def test_relevance_analysis_saying_cannot_tell_is_not_relevant(cache: JudgeCache) -> None:
    (rec,), _, _ = run([EXPLAIN, VERIFIED, "I can't tell if this is pets.\nFinal Decision: [[Maybe]]"], cache)
    assert (rec.relevant, rec.decision) == (False, "Maybe")


def test_cannot_tell_explanation_skips_verify_and_relevance(cache: JudgeCache) -> None:
    (rec,), chat, _ = run(["Cannot Tell."], cache)
    assert chat.calls == 1
    assert (rec.relevant, rec.decision, rec.explanation) == (False, None, "Cannot Tell.")
    assert "Cannot Tell." in rec.reason


def test_garbage_verification_skips_relevance(cache: JudgeCache) -> None:
    (rec,), chat, _ = run([EXPLAIN, "qwerty %%% zxcv", "%%%"], cache)
    assert chat.calls == 3  # explain, verify, the decision follow-up
    assert (rec.relevant, rec.decision, rec.explanation) == (False, None, EXPLAIN)
    assert "nothing decisive" in rec.reason and "qwerty %%% zxcv" in rec.reason


def test_failed_verification_skips_relevance(cache: JudgeCache) -> None:
    (rec,), chat, _ = run([EXPLAIN, "Spans are about dogs.\nFinal Decision: [[No]]"], cache)
    assert chat.calls == 2 and not rec.relevant and "verification said No" in rec.reason


def test_explanation_is_cleaned_to_its_first_paragraph(cache: JudgeCache) -> None:
    (rec,), chat, _ = run(["Explanation:  Cats\n sitting down.\n\nMore chatter.", VERIFIED, "[[Yes]]"], cache)
    assert rec.explanation == "Cats sitting down."
    assert "Description: Cats sitting down.\n" in str(chat.seen[1][1].content)


def test_feature_without_spans_is_not_asked(cache: JudgeCache) -> None:
    (rec,), chat, _ = run([], cache, candidates=[FeatureCandidate(9, 0.1, ())])
    assert chat.calls == 0 and not rec.relevant and "no evidence" in rec.reason


def test_cache_prevents_a_second_call_and_tokens_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "judge.sqlite"
    first, chat, stats = run([EXPLAIN, VERIFIED, "Pets.\nFinal Decision: [[Probably]]"], JudgeCache(path))
    assert chat.calls == stats.calls == 3 and stats.cache_hits == 0
    replies = [EXPLAIN, VERIFIED, "Pets.\nFinal Decision: [[Probably]]"]
    assert stats.output_tokens == sum(len(r.split()) for r in replies)
    assert stats.input_tokens == sum(len(str(m.content).split()) for msgs in chat.seen for m in msgs) > 0
    assert (stats.features, stats.relevant) == (1, 1)

    again, chat2, stats2 = run([], JudgeCache(path))  # reopened file; any call would fail the script
    assert chat2.calls == 0 and stats2.cache_hits == 3
    assert (stats2.input_tokens, stats2.output_tokens) == (0, 0)
    assert again == first


def test_cache_key_covers_guideline_model_and_spans(cache: JudgeCache) -> None:
    run([EXPLAIN, VERIFIED, "[[Yes]]"], cache)
    _, chat, stats = run(["[[No]]"], cache, guideline="# Farming\n- cattle")
    assert chat.calls == 1 and stats.cache_hits == 2  # only the relevance prompt changed
    _, chat, _ = run([EXPLAIN, VERIFIED, "[[Yes]]"], cache, model_name="other-judge")
    assert chat.calls == 3
    _, chat, _ = run([EXPLAIN, VERIFIED, "[[Yes]]"], cache, candidates=[candidate(spans=("the dog sat",))])
    assert chat.calls == 3
    assert len(cache) == 3 + 1 + 3 + 3


def test_features_with_identical_spans_are_asked_once(cache: JudgeCache) -> None:
    records, chat, stats = run([EXPLAIN, VERIFIED, "[[Yes]]"], cache, candidates=[candidate(1), candidate(2)])
    assert chat.calls == 3 and stats.cache_hits == 3
    assert [r.feature for r in records] == [1, 2] and all(r.relevant for r in records)


def test_parallel_workers_keep_input_order_and_report_each_feature(cache: JudgeCache) -> None:
    steps = {render("judge.explain.system"): "explain", render("judge.verify.system"): "verify"}

    def respond(messages: list[BaseMessage]) -> str:
        step = steps.get(str(messages[0].content), "relevance")
        user = str(messages[1].content)
        if step == "explain":
            return "Cat words." if "cat" in user else "Dog words."
        if step == "verify":
            return "[[Yes]]"
        return "[[Yes]]" if "Cat words." in user else "[[No]]"

    seen: list[int] = []
    cands = [candidate(i, (f"the {'cat' if i % 2 else 'dog'} sat {i}",)) for i in range(6)]
    records, chat, _ = run(respond, cache, candidates=cands, max_workers=3, on_feature=lambda r: seen.append(r.feature))
    assert [r.feature for r in records] == list(range(6)) and sorted(seen) == list(range(6))
    assert [r.relevant for r in records] == [bool(i % 2) for i in range(6)] and chat.calls == 18


def test_a_rejected_request_is_recorded_for_that_feature_and_not_cached(cache: JudgeCache) -> None:
    cands = [candidate(1, ("the cat sat",)), candidate(2, ("a cat sat",))]
    records, chat, stats = run([ModelInvalidRequestError("content filter"), EXPLAIN, VERIFIED, "[[Yes]]"], cache,
                               candidates=cands)
    assert [r.relevant for r in records] == [False, True] and stats.rejected == 1
    assert "rejected" in records[0].reason and "content filter" in records[0].reason
    (rec,), chat, _ = run([EXPLAIN, VERIFIED, "[[Yes]]"], cache, candidates=cands[:1])
    assert chat.calls == 3 and rec.relevant  # asked again: rejections are not cached


def test_rejections_with_no_success_abort_as_a_config_error(cache: JudgeCache) -> None:
    cands = [candidate(i, (f"span {i}",)) for i in range(5)]
    with pytest.raises(ConfigError, match="rejected the first 3 judge requests"):
        run([ModelInvalidRequestError("unsupported parameter")] * 5, cache, candidates=cands)


def test_transient_error_after_the_client_retries_is_raised_and_nothing_cached(cache: JudgeCache) -> None:
    with pytest.raises(TransientError, match="rerunning resumes"):
        run([ModelRateLimitError("429 slow down")], cache)
    assert len(cache) == 0


def test_prepare_spans_sorts_dedupes_escapes_and_cuts() -> None:
    evidence = [FeatureEvidence(score=score, span=span, sample="s")
                for score, span in [(1.0, "low"), (5.0, "a\nb"), (3.0, "a\nb"), (4.0, "x" * 30), (2.0, "   ")]]
    assert prepare_spans(evidence, max_spans=10, max_span_chars=10) == ["a\\nb", "…" + "x" * 10, "low"]
    assert prepare_spans(evidence, max_spans=1, max_span_chars=10) == ["a\\nb"]


def test_bad_arguments_are_config_errors(cache: JudgeCache) -> None:
    with pytest.raises(ConfigError, match="max_spans=0"):
        run([], cache, max_spans=0)
    with pytest.raises(ConfigError, match=r"guideline .* is empty"):
        run([], cache, guideline="  ")


def test_judge_chat_reuses_a_loaded_local_model_and_names_each_judge_as_it_is_cached(
        tiny_lm: Any, tiny_tokenizer: Any) -> None:
    from fac.tools.catalog.judge import judge_chat
    from fac.tools.llm.local_chat import LocalChatModel
    from fac.tools.space.models import LoadedModel

    local, name = judge_chat("local", shared=LoadedModel(tiny_lm, tiny_tokenizer, "tiny-llama"))
    assert isinstance(local, LocalChatModel) and local.model is tiny_lm and name == "local:tiny-llama"
    remote, name = judge_chat("smollm2", "http://127.0.0.1:8011/v1")
    assert name == "smollm2@http://127.0.0.1:8011/v1" and getattr(remote, "model_name", None) == "smollm2"
