"""Shared by the trace/report tests: a tiny run of the real graph through the runner."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakes import ScriptedChat
from langchain_core.language_models import BaseChatModel

from fac.graph.checkpoint import SampleLog
from fac.graph.config import RunConfig
from fac.graph.context import Deps
from fac.graph.run_dir import RunDir
from fac.graph.runner import open_run, run
from fac.tools.catalog.records import Catalog, FeatureEvidence, FeatureRecord
from fac.tools.text.embeddings import HashingEmbedder
from fac.tools.text.store import SampleStore, chroma_client

SEED = ["the cat sat on the mat", "the dog ran home"]
HIT = "i hate stupid people"  # fires the target feature
MISS = "blue red fast slow"  # well-formed, does not fire it


@dataclass
class Demo:
    """One run of the real graph on the tiny space, into tmp/runs/demo."""

    space: Any
    tmp: Path
    seed: list[str] = field(default_factory=lambda: list(SEED))
    target: int = -1
    others: list[int] = field(default_factory=list)  # task features the seed covers

    def __post_init__(self) -> None:
        seen = {int(j) for s in self.space.score(self.seed) for j in s.active(0.0)}
        hit, miss = self.space.score([HIT, MISS])
        targets = sorted({int(j) for j in hit.active(0.0)} - seen - {int(j) for j in miss.active(0.0)})
        assert targets, "the tiny fixtures no longer give a usable target feature"
        self.target, self.others = targets[0], sorted(seen)[:2]

    def catalog(self) -> Catalog:
        records = tuple(FeatureRecord(feature=j, relevant=True, activation_rate=0.1, method="contrast",
                                      explanation=f"feature {j} <b>words</b>",
                                      evidence=(FeatureEvidence(score=2.0, span="hate stupid", sample=HIT),))
                        for j in [self.target, *self.others])
        return Catalog(task="toxicity", method="contrast", space=self.space.describe(), records=records)

    def config(self, **changes: Any) -> RunConfig:
        seed = self.tmp / "seed.jsonl"
        seed.write_text("".join(json.dumps({"text": t}) + "\n" for t in self.seed))
        values = {"seed": str(seed), "task": "toxicity", "embedder": "hashing", "concurrency": 1, "goal_fac": 1.0,
                  "min_per_feature": 1, "drafts_per_feature": 1, "features_per_round": 1, "fewshot": 2}
        return RunConfig(**{**values, **changes})

    def deps(self, cfg: RunConfig, chat: BaseChatModel, root: Path,
             store: Callable[[SampleStore], Any] | None = None) -> Deps:
        inner = SampleStore(chroma_client(root / "chroma"), "samples", HashingEmbedder(64))
        return Deps(config=cfg, space=self.space, catalog=self.catalog(), seed=tuple(self.seed),
                    store=store(inner) if store else inner, writer=chat, log=SampleLog(root / "samples.jsonl"),
                    run_id=cfg.run_id(root.name), task_summary="toxic text")

    def run(self, script: list[Any], *, resume: bool = False, store: Callable[[SampleStore], Any] | None = None,
            otlp_endpoint: str | None = None, **changes: Any) -> tuple[RunDir, list[str], ScriptedChat]:
        """Run (or resume) tmp/runs/demo; returns its paths, the node of every streamed state, and the chat."""
        out = self.tmp / "runs" / "demo"
        cfg, paths = open_run(out, resume=True) if resume else open_run(out, self.config(**changes))
        chat = ScriptedChat(script=script)
        nodes: list[str] = []
        run(self.deps(cfg, chat, paths.root, store), paths, on_status=lambda node, _: nodes.append(node),
            otlp_endpoint=otlp_endpoint)
        return paths, nodes, chat


def tiny_space(tiny_lm: Any, tiny_tokenizer: Any, tiny_sae: Any, tmp: Path) -> Any:
    """A FeatureSpace over the session's tiny model and SAE (for module-scoped fixtures)."""
    from conftest import TINY_LAYER  # tests/conftest.py

    from fac.tools.space.features import FeatureSpace
    from fac.tools.space.residual import LayerReader
    from fac.tools.space.score_cache import ScoreCache

    reader = LayerReader(tiny_lm, tiny_tokenizer, TINY_LAYER, max_tokens=64, token_budget=256)
    return FeatureSpace(reader, tiny_sae, "tiny-llama", "tiny-sae", cache=ScoreCache(tmp / "scores.sqlite"))
