"""Tiny, offline, seeded stand-ins: a random Llama, a word-level tokenizer with a chat template, a random SAE."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported
os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("FAC_THREADS", "1")  # fac picks threads from the load average; tests stay single-threaded

from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

torch.set_num_threads(1)  # tiny models: one thread is faster and steadier on a shared 2-core machine

WORDS = (
    "[PAD] [UNK] <s> <|im_start|> <|im_end|> system user assistant you are helpful the a cat dog "
    "sat ran on mat red blue fast slow and is hate love kill kind people bad good i we they it not "
    "very stupid nice go home now why how what where"
).split()
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
    "{{ '<|im_start|> system you are helpful <|im_end|> ' }}{% endif %}"
    "{{ '<|im_start|> ' + m['role'] + ' ' + m['content'] + ' <|im_end|> ' }}{% endfor %}"
)
TINY_LAYER = 1


def make_tokenizer(chat: bool = True) -> PreTrainedTokenizerFast:
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", bos_token="<s>",
                                  eos_token="<|im_end|>")
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def make_lm(seed: int = 0, layers: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0)
    return LlamaForCausalLM(cfg).eval()


def make_sae(d_in: int = 32, d_sae: int = 128, k: int = 8, layer: int = TINY_LAYER, seed: int = 0) -> Any:
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(seed)
    cfg = TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k, dtype="float32", device="cpu",
                        metadata=SAEMetadata(hook_name=f"blocks.{layer - 1}.hook_resid_post", model_name="tiny"))
    sae = TopKSAE(cfg)
    with torch.no_grad():  # random but not degenerate: every latent can win the top-k
        sae.W_enc.normal_(0, 1.0)
        sae.b_enc.zero_()
    return sae


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str],
            monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """Run `fac argv` in-process; returns (exit code, stdout, stderr)."""
    from fac.cli import main

    monkeypatch.setattr(sys, "argv", ["fac", *argv])
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    return make_tokenizer()


@pytest.fixture(scope="session")
def tiny_lm() -> LlamaForCausalLM:
    return make_lm()


@pytest.fixture(scope="session")
def tiny_sae() -> Any:
    return make_sae()


@pytest.fixture()
def tiny_space(
    tiny_lm: LlamaForCausalLM, tiny_tokenizer: PreTrainedTokenizerFast, tiny_sae: Any, tmp_path: Path
) -> Any:
    """A FeatureSpace over the tiny model and SAE, with its score cache in a fresh temporary directory."""
    from fac.tools.space.features import FeatureSpace
    from fac.tools.space.residual import LayerReader
    from fac.tools.space.score_cache import ScoreCache

    reader = LayerReader(tiny_lm, tiny_tokenizer, TINY_LAYER, max_tokens=64, token_budget=256)
    return FeatureSpace(reader, tiny_sae, "tiny-llama", "tiny-sae", cache=ScoreCache(tmp_path / "scores.sqlite"))
