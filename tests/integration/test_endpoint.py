"""Against a real OpenAI-compatible server (vLLM, llama.cpp's server, an API): the limits fac sends are
honoured, and the judge gets answers, decisions and token counts through ChatOpenAI.

Opt-in: set FAC_TEST_BASE_URL (e.g. http://127.0.0.1:8000/v1) and FAC_TEST_MODEL (the served name),
then `pytest -m integration tests/integration/test_endpoint.py`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fac.prompts import guideline
from fac.tools.catalog.judge import FeatureCandidate, JudgeCache, JudgeStats, judge_chat, judge_features
from fac.tools.catalog.records import FeatureEvidence
from fac.tools.llm.client import openai_chat, usage

BASE_URL = os.environ.get("FAC_TEST_BASE_URL", "")
MODEL = os.environ.get("FAC_TEST_MODEL", "")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (BASE_URL and MODEL), reason="set FAC_TEST_BASE_URL and FAC_TEST_MODEL"),
]


def test_the_endpoint_honours_the_token_limit_fac_sends() -> None:
    chat = openai_chat(MODEL, BASE_URL, max_tokens=5, max_retries=1)
    reply = chat.invoke("Count from 1 to 200, one number per line.")
    n_in, n_out = usage(reply)
    assert n_in > 0 and 0 < n_out <= 5  # llama.cpp's server ignored max_completion_tokens alone
    short = chat.invoke("Count from 1 to 200, one number per line.", max_tokens=2)
    assert usage(short)[1] <= 2  # a per-call limit (the judge's decision follow-up) is honoured too


def test_the_judge_runs_every_step_through_chat_openai_and_caches_it(tmp_path: Path) -> None:
    spans = ("you stupid worthless idiot", "shut up, you moron", "what an idiot")
    evidence = tuple(FeatureEvidence(score=9.0 - i, span=s, sample=s) for i, s in enumerate(spans))
    candidate = FeatureCandidate(feature=7, activation_rate=0.1, evidence=evidence)
    chat, name = judge_chat(MODEL, BASE_URL)
    cache, stats = JudgeCache(tmp_path / "judge.sqlite"), JudgeStats()
    (record,) = judge_features([candidate], guideline("toxicity"), chat, cache, task="toxicity", model_name=name,
                               stats=stats)
    assert record.explanation and record.reason and stats.calls >= 1
    assert stats.input_tokens > 0 and stats.output_tokens > 0
    again = JudgeStats()
    assert judge_features([candidate], guideline("toxicity"), chat, cache, task="toxicity", model_name=name,
                          stats=again) == [record]
    assert again.calls == 0 and again.cache_hits == stats.calls
