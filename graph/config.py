"""RunConfig: everything that defines a `fac run`, validated once, hashed into the run id.

Three kinds of fields: result-changing ones (hashed by `fingerprint()`; a run directory refuses
another fingerprint), limits (goals and budgets: a resumed run may raise them) and operational ones
(concurrency, timeouts, device: never change what is kept).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fac.tools.errors import ConfigError
from fac.tools.quality.novelty import NOVELTY_DISTANCE
from fac.tools.quality.regurgitation import MAX_COPIED_SHARE, NGRAM

OutputFormat = Literal["text", "query", "pair", "ab", "instruction"]
Backend = Literal["local", "openai"]
EmbedderName = Literal["minilm", "hashing"]
FewshotStyle = Literal["auto", "list", "turns"]
STRUCTURED_FORMATS: tuple[OutputFormat, ...] = ("pair", "ab", "instruction")

# The sample shape each built-in task trains on (ToxicChat user queries, RewardBench pairs, CAA A/B items, ...).
TASK_FORMATS: dict[str, OutputFormat] = {
    "toxicity": "text",
    "helpfulness": "pair",
    "instruction_following": "instruction",
    "sycophancy": "ab",
    "survival_instinct": "ab",
}
LIMIT_FIELDS = frozenset({"goal_fac", "min_per_feature", "max_attempts_per_feature", "max_rounds", "budget_tokens"})
OPERATIONAL_FIELDS = frozenset({"concurrency", "timeout_s", "max_retries", "device", "dtype", "base_url",
                                "api_key_env", "membership_judge_base_url", "membership_judge_key_env"})


class RunConfig(BaseModel):
    """One synthesis run: seed, task, feature space, generator, verifier rules and coverage goals."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # what to fill
    seed: str = Field(description="Seed dataset file (jsonl/csv/parquet/txt or HF dir).")
    task: str = Field(description="Task name (toxicity, helpfulness, ...) whose catalog defines F_task.")
    text_field: str | None = Field(None, description="Field holding the seed's text (default: detected).")
    catalog: str | None = Field(None, description="Catalog file (default: the task's shipped catalog).")
    # feature space
    model: str = Field("default", description="LM of the feature space ('default' = embedded SmolLM2-135M).")
    sae: str = Field("default", description="SAE of the feature space ('default' = the shipped SAE).")
    layer: int | None = Field(None, ge=1, description="hidden_states index (default: the SAE's hook layer).")
    mode: Literal["sae", "paper"] = Field("sae", description="Activation mode of the feature space.")
    threshold: float = Field(0.0, ge=0.0, description="δ: a sample activates a feature iff its score > δ.")
    accept_threshold: float | None = Field(None, ge=0.0, description="δ_accept: the target's score must exceed "
                                           "it (default: δ).")
    max_tokens: int = Field(512, gt=0, description="Token cap of the feature space; longer drafts are rejected.")
    # generator
    generator: Backend = Field("local", description="'local' (in-process chat model) or 'openai' (any endpoint).")
    generator_model: str = Field("default", description="'default' = embedded SmolLM2-135M-Instruct, or the "
                                 "name the endpoint serves.")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the endpoint's key.")
    temperature: float = Field(0.8, ge=0.0, le=2.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    max_new_tokens: int = Field(96, gt=0, le=4096, description="Generator tokens per draft.")
    output_format: OutputFormat | None = Field(None, description="Sample shape (default: the task's).")
    features_per_round: int = Field(8, gt=0, description="Missing features the planner takes per round.")
    drafts_per_feature: int = Field(2, gt=0, description="Drafts per picked feature per round (paper: 2).")
    fewshot: int = Field(3, ge=0, le=10, description="Seed examples in a first-draft prompt (paper: 3).")
    fewshot_style: FewshotStyle = Field("auto", description="'list': the seed examples inside the prompt (the "
                                        "paper's); 'turns': as earlier turns of the conversation, each example a "
                                        "reply of the generator's own (small models then keep a structured layout); "
                                        "'auto': turns for pair, ab and instruction, a list otherwise.")
    random_seed: int = Field(0, description="Seed of the few-shot choice and the local generator.")
    # verifier
    dedup_distance: float = Field(0.05, ge=0.0, le=2.0, description="Cosine distance below which a draft "
                                  "is a near-duplicate of a seed or accepted sample.")
    embedder: EmbedderName = Field("minilm", description="Text embedder of the duplicate check.")
    max_chars: int = Field(2000, gt=0, description="Longer drafts are rejected as over-length.")
    # quality gates (tools/quality/; thresholds calibrated by bench/calibrate_gates.py)
    gate_meta_text: bool = Field(True, description="Reject drafts that write about the prompt, list several samples "
                                 "or echo its instructions (meta-text).")
    gate_regurgitation: bool = Field(True, description="Reject drafts copied from the anchor, evidence or seed.")
    max_copied_share: float = Field(MAX_COPIED_SHARE, gt=0.0, le=1.0, description="Share of a draft's words inside "
                                    f"copied {NGRAM}-word runs at which it is regurgitation.")
    gate_membership: bool = Field(True, description="Reject drafts the task-membership classifier (or judge) does "
                                  "not take for positive examples of the task (not-task-member).")
    membership_model: str | None = Field(None, description="Membership model file (default: the task's stored or "
                                         "shipped one, or one fitted now on the task's corpora).")
    membership_threshold: float | None = Field(None, ge=0.0, le=1.0, description="Membership probability a draft "
                                               "needs (default: the model's calibrated threshold).")
    membership_judge_model: str | None = Field(None, description="Ask this OpenAI-compatible model (or 'local') "
                                               "instead of the classifier whether a draft is a positive example.")
    membership_judge_base_url: str | None = Field(None, description="Endpoint of the membership judge.")
    membership_judge_key_env: str = Field("OPENAI_API_KEY", description="Variable holding the judge's key.")
    novelty_distance: float = Field(NOVELTY_DISTANCE, ge=0.0, le=2.0, description="Cosine distance to the nearest "
                                    "seed or accepted sample a draft must reach (not-novel; 0 turns it off).")
    # goals and budgets (limits: may be raised on resume)
    goal_fac: float = Field(0.9, gt=0.0, le=1.0, description="Stop when FAC reaches this.")
    min_per_feature: int = Field(2, gt=0, description="Accepted samples each newly covered feature needs.")
    max_attempts_per_feature: int = Field(8, gt=0, description="Drafts per feature before it is exhausted.")
    max_rounds: int = Field(30, gt=0)
    budget_tokens: int = Field(300_000, gt=0, description="Generator tokens (prompt + completion) to spend.")
    # operational
    concurrency: int = Field(8, gt=0, description="Parallel generator requests (endpoints), or prompts decoded "
                             "together (local model).")
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(4, ge=0, description="Client retries on 429, 5xx and timeouts, with back-off.")
    device: str | None = None
    dtype: str = "auto"

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, values: Any) -> Any:
        """The task's output format and δ_accept = δ, unless given."""
        if not isinstance(values, dict):
            return values
        values = dict(values)
        if values.get("output_format") is None and isinstance(values.get("task"), str):
            values["output_format"] = TASK_FORMATS.get(values["task"].strip().lower().replace("-", "_"), "text")
        if values.get("accept_threshold") is None:
            values["accept_threshold"] = values.get("threshold", 0.0)
        return values

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        if self.delta_accept < self.threshold:
            raise ValueError(f"accept_threshold δ_accept={self.accept_threshold} is below the activation threshold "
                             f"δ={self.threshold}: an accepted sample would not count as covering its feature")
        if self.generator == "openai" and self.generator_model == "default":
            raise ValueError("generator 'openai' needs generator_model: the name the endpoint serves")
        return self

    @property
    def delta_accept(self) -> float:
        """δ_accept (set from δ when none was given)."""
        return self.threshold if self.accept_threshold is None else self.accept_threshold

    @property
    def sample_format(self) -> OutputFormat:
        """The output format (set from the task when none was given)."""
        return self.output_format or "text"

    @property
    def fewshot_turns(self) -> bool:
        """Whether seed examples go in as earlier conversation turns (see `fewshot_style`)."""
        if self.fewshot_style == "auto":
            return self.sample_format in STRUCTURED_FORMATS
        return self.fewshot_style == "turns"

    def semantic(self) -> dict[str, Any]:
        """The result-changing fields (what the fingerprint hashes)."""
        return self.model_dump(mode="json", exclude=set(LIMIT_FIELDS | OPERATIONAL_FIELDS))

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.semantic(), sort_keys=True).encode()).hexdigest()[:12]

    def differences(self, other: RunConfig) -> list[str]:
        """Result-changing fields that differ, as 'field: self -> other'."""
        mine, theirs = self.semantic(), other.semantic()
        return [f"{k}: {mine[k]!r} -> {theirs[k]!r}" for k in sorted(mine) if mine[k] != theirs.get(k)]

    def run_id(self, name: str) -> str:
        return f"{name}-{self.fingerprint()}"

    def updated(self, **changes: Any) -> RunConfig:
        """A validated copy with `changes` (None values are ignored: 'flag not given')."""
        given = {k: v for k, v in changes.items() if v is not None}
        return make_config({**self.model_dump(), **given})


def make_config(values: dict[str, Any], source: str = "run config") -> RunConfig:
    """Validate `values` into a RunConfig; errors name each bad field in one line."""
    try:
        return RunConfig.model_validate(values)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"{source}: {problems}") from None


def _load_yaml(text: str, path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: cannot parse ({' '.join(str(err).split())})") from None


def read_config_file(path: Path) -> dict[str, Any]:
    """The raw fields of a .toml, .yaml/.yml or .json config file; a run's own config.json is unwrapped."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = _load_yaml(text, path)
        else:
            raise ConfigError(f"{path}: config files are .toml, .yaml or .json, not {path.suffix or 'extension-less'}")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot parse ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table of fields, found {type(data).__name__}")
    if isinstance(data.get("config"), dict) and "fingerprint" in data:  # a run directory's config.json
        return dict(data["config"])
    return data


def load_config(file: Path | None, flags: dict[str, Any]) -> RunConfig:
    """Fields from `file` (if any), overridden by the CLI flags that were given (not None)."""
    values = read_config_file(file) if file else {}
    values.update({k: v for k, v in flags.items() if v is not None})
    return make_config(values, str(file) if file else "run config")
