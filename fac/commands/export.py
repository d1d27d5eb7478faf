"""`fac export`: a run's accepted samples (and its seed) as jsonl, parquet or an HF dataset, in a trainer's shape,
with a dataset card built by huggingface_hub, optionally pushed to the hub."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from fac.console import setup_logging, stdout
from fac.tools.errors import ConfigError, TransientError
from fac.tools.text.formats import AB_FIELDS

if TYPE_CHECKING:
    from huggingface_hub import DatasetCard

FORMATS = ("jsonl", "parquet", "hf")
SHAPES = ("plain", "messages", "preference")
DATA_FILES = {"jsonl": "data.jsonl", "parquet": "data.parquet", "hf": "hf/data-*.arrow"}  # the card's configs
PREFERENCE = ("prompt", "chosen", "rejected")  # TRL's preference columns (DPO, reward modelling)
META = ("id", "target_feature", "score")  # kept beside a trainer shape: which feature a sample was made for
TASK_CATEGORIES = {"toxicity": "text-classification"}  # hub task categories; the others are text-generation
SIZE_BOUNDS = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
               (10_000_000, "1M<n<10M"))
CITATION = """@misc{fac_synthesis_2026,
  title = {Less is Enough: Synthesizing Diverse Data in Feature Space of LLMs},
  author = {Li and Wu and Li and Hu and Liu},
  year = {2026},
  eprint = {2602.10388},
  archivePrefix = {arXiv},
  url = {https://arxiv.org/abs/2602.10388}
}"""


def export_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The run's accepted samples (samples.jsonl, deduplicated by id), flattened: format fields become columns."""
    from fac.graph.run_dir import RunDir

    return RunDir(run_dir).sample_rows()


def seed_rows(seed: str, text_field: str | None) -> list[dict[str, Any]]:
    """The run's seed as rows: `text` (a conversation's turns joined), its `messages` when it is a conversation,
    and the fields a trainer shape reads (prompt/chosen/rejected as strings or messages, instruction/response,
    an A/B item's question and answers)."""
    from fac.tools.text.datasets import read_records

    rows = []
    for record in read_records(seed, text_field):
        sample = record.sample
        row: dict[str, Any] = {"text": sample if isinstance(sample, str) else "\n\n".join(m["content"] for m in sample)}
        if not isinstance(sample, str):
            row["messages"] = list(sample)
        row.update({k: v for k in (*PREFERENCE, *AB_FIELDS, "instruction", "response")
                    if isinstance(v := record.fields.get(k), str | list)})
        row["_where"] = f"{seed}:{record.line}"
        rows.append(row)
    return rows


def _messages(row: Mapping[str, Any]) -> list[dict[str, str]]:
    """A row as a conversation: an A/B item's question with its choices → the matching answer, its own messages,
    prompt → chosen, instruction → response, else one user turn."""
    from fac.tools.text.formats import ab_dialogue, instruction_messages, pair_sides

    if all(isinstance(row.get(k), str) for k in AB_FIELDS):
        return ab_dialogue(row["question"], row["answer_matching_behavior"])
    if isinstance(row.get("messages"), list):
        return list(row["messages"])
    if (pair := pair_sides(row)) is not None:
        return pair[0]
    if (instruction := instruction_messages(row)) is not None:
        return instruction
    if isinstance(row.get("prompt"), str) and isinstance(row.get("response"), str):
        return [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["response"]}]
    return [{"role": "user", "content": str(row["text"])}]


def _preference(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """TRL's prompt/chosen/rejected of a pair (strings or messages) or of an A/B item (the question, the
    behaviour-matching answer, the other one), or None."""
    from fac.tools.text.formats import ab_answer

    if all(isinstance(row.get(k), str) for k in AB_FIELDS):
        question = row["question"]
        return {"prompt": question, "chosen": ab_answer(question, row["answer_matching_behavior"]),
                "rejected": ab_answer(question, row["answer_not_matching_behavior"])}
    if all(isinstance(row.get(k), str | list) for k in PREFERENCE):
        return {k: row[k] for k in PREFERENCE}
    return None


def _conversational(pref: dict[str, Any]) -> dict[str, Any]:
    """A preference row in TRL's conversational form: the prompt as user messages, each reply as assistant ones."""
    roles = {"prompt": "user", "chosen": "assistant", "rejected": "assistant"}
    return {k: v if isinstance(v, list) else [{"role": roles[k], "content": v}] for k, v in pref.items()}


def shape_rows(rows: list[dict[str, Any]], shape: str, output_format: str) -> list[dict[str, Any]]:
    """Rows in `shape`: plain (as they are), messages (a `messages` conversation) or preference (TRL's
    prompt/chosen/rejected, conversational for all rows when any row's are messages); fac's id, target feature and
    score, and `source` when present, are kept beside."""
    shaped = []
    for row in rows:
        keep = {k: row.get(k) for k in (*META, "source") if k in row or k in META}
        if shape == "plain":
            shaped.append({k: v for k, v in row.items() if k != "_where"})
        elif shape == "messages":
            shaped.append({"messages": _messages(row), **keep})
        else:
            pref = _preference(row)
            if pref is None:
                where = row.get("_where") or f"sample {row.get('id')}"
                why = (f"the run's --format is {output_format!r}; preference rows come from --format pair or ab"
                       if "_where" not in row else "the seed row has no prompt, chosen and rejected (or A/B item)")
                raise ConfigError(f"--shape preference: {where} has no prompt/chosen/rejected ({why})")
            shaped.append({**pref, **keep})
    if shape == "preference" and any(isinstance(r["prompt"], list) for r in shaped):
        shaped = [{**r, **_conversational({k: r[k] for k in PREFERENCE})} for r in shaped]
    columns = list(dict.fromkeys(k for r in shaped for k in r))  # one schema: a missing column is null
    return [{k: r.get(k) for k in columns} for r in shaped]


def size_category(n_rows: int) -> str:
    """The hub's size category for `n_rows`."""
    return next((name for bound, name in SIZE_BOUNDS if n_rows < bound), "n>10M")


def dataset_card(name: str, config: dict[str, Any], status: dict[str, Any], *, n_generated: int, n_seed: int,
                 fmt: str, shape: str, license_id: str) -> DatasetCard:
    """The dataset card: hub metadata (license, size, task category, configs) in a YAML header written by
    huggingface_hub, then FAC before/after, the stop reason, the columns, the run config and the citation."""
    from huggingface_hub import DatasetCard, DatasetCardData

    cfg = config.get("config", config)
    task = str(cfg.get("task"))
    data = DatasetCardData(
        pretty_name=name, license=license_id, language=["en"], size_categories=[size_category(n_generated + n_seed)],
        task_categories=[TASK_CATEGORIES.get(task, "text-generation")],
        tags=["synthetic", "fac", "feature-activation-coverage", "sparse-autoencoder"],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": DATA_FILES[fmt]}]}],
    )
    before, after = status.get("fac_before"), status.get("fac_now")
    layer = cfg.get("layer") if cfg.get("layer") is not None else "of its SAE"

    def fac(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else "?"

    seed_note = (f"; the {n_seed} seed rows are included, marked `source: seed` (generated rows: `source: fac`)"
                 if n_seed else "")
    body = f"""# {name}

{n_generated} synthetic samples generated by `fac run` for task `{task}` to cover the task-relevant SAE features
its seed misses{seed_note}. Every generated sample was verified: its target feature fires in the feature space
below, it is no near-duplicate of the seed or of another sample, and it is well-formed.

| | FAC | task features covered |
|---|---|---|
| seed (`{cfg.get('seed')}`) | {fac(before)} | |
| seed + these samples | {fac(after)} | {status.get('covered')} / {status.get('n_task')} |

Exhausted features (attempts used up short of the minimum samples): {len(status.get('exhausted_features', []))};
generator tokens: {status.get('tokens_used')}; stop: {status.get('stop_reason')} ({status.get('stop_detail', '')}).

Shape `{shape}`, export format `{fmt}`. {_columns_note(shape)}

Feature space: model `{cfg.get('model')}`, SAE `{cfg.get('sae')}`, layer {layer}, mode `{cfg.get('mode')}`,
δ = {cfg.get('threshold')}, δ_accept = {cfg.get('accept_threshold')}. Run id `{config.get('run_id')}`.

## Run config

```json
{json.dumps(cfg, indent=1, ensure_ascii=False)}
```

## Citation

Feature Activation Coverage and the synthesis recipe are from:

```bibtex
{CITATION}
```
"""
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def _columns_note(shape: str) -> str:
    if shape == "messages":
        return "Columns: `messages` (role/content turns), and fac's `id`, `target_feature`, `score`."
    if shape == "preference":
        return ("Columns: `prompt`, `chosen`, `rejected` (TRL's preference format), and fac's `id`, "
                "`target_feature`, `score`.")
    return ("Columns: `text`, `target_feature`, `score` (the target's activation), `span` (the text that fired it), "
            "`features` (missing features it covers), `round`, `kind` (draft or contrastive), `prompt_hash`, `id`, "
            "and the format's own fields.")


def _check_hub_repo(repo_id: str) -> None:
    """--push-to-hub REPO is a valid dataset id and the hub may be reached: checked before anything is written."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id  # type: ignore[attr-defined]  # re-exported lazily

    from fac.tools.hub import hub_offline

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ConfigError(f"--push-to-hub {repo_id!r}: not a hub repo id ({str(err).splitlines()[0]})") from None
    if "/" not in repo_id:
        raise ConfigError(f"--push-to-hub {repo_id!r}: expected OWNER/NAME")
    if hub_offline():
        raise ConfigError(f"--push-to-hub {repo_id}: the hub is offline (HF_HUB_OFFLINE is set)")


def push_to_hub(folder: Path, repo_id: str, *, private: bool, message: str) -> str:
    """Create the dataset repo (if new) and upload the export folder; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(folder),
                                   commit_message=message)
    except OSError as err:  # HfHubHTTPError is an OSError, like a connection failure
        status = getattr(getattr(err, "response", None), "status_code", None)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        if status in (401, 403):
            raise ConfigError(f"--push-to-hub {repo_id}: the hub refused the token (HTTP {status}); log in with "
                              "`hf auth login` or set HF_TOKEN") from None
        raise TransientError(f"--push-to-hub {repo_id}: upload failed ({first}); the export is in {folder}, "
                             "rerun to push it") from None
    return str(getattr(commit, "commit_url", commit))


def export_command(
    run_dir: Path = typer.Argument(..., help="Run directory written by `fac run` (e.g. runs/NAME)."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl, parquet or hf (a saved `datasets` directory)."),
    shape: str = typer.Option("plain", "--shape", help="plain (fac's columns), messages (a role/content "
                              "conversation per row) or preference (TRL's prompt/chosen/rejected)."),
    with_seed: bool = typer.Option(False, "--with-seed", help="Include the run's seed rows, with a `source` "
                                   "column: seed or fac."),
    license_id: str = typer.Option("other", "--license", help="The card's license id (e.g. cc-by-4.0, mit)."),
    push: str | None = typer.Option(None, "--push-to-hub", metavar="OWNER/NAME", help="Also upload the export "
                                    "(data and card) to this hub dataset repo (token: HF_TOKEN or `hf auth login`)."),
    private: bool = typer.Option(False, "--private", help="With --push-to-hub: create the repo private."),
    out: Path | None = typer.Option(None, "--out", help="Output directory (default: RUN_DIR/export)."),
    verbose: int = typer.Option(0, "-v", count=True, help="-v for INFO logs."),
) -> None:
    """Write a run's accepted samples with a dataset card (FAC before/after and the run config)."""
    from fac.graph.run_dir import RunDir

    setup_logging(verbose)
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if shape not in SHAPES:
        raise ConfigError(f"--shape {shape!r}: expected one of {', '.join(SHAPES)}")
    if private and push is None:
        raise ConfigError("--private applies to --push-to-hub only")
    if push is not None:
        _check_hub_repo(push)
    paths = RunDir(run_dir)
    config, status = paths.read_config_file(), paths.read_status()
    values = paths.config_values()
    generated = export_rows(run_dir)
    seed = seed_rows(str(values.get("seed")), values.get("text_field")) if with_seed else []
    if with_seed:
        generated = [{**r, "source": "fac"} for r in generated]
        seed = [{**r, "source": "seed"} for r in seed]
    rows = shape_rows(seed + generated, shape, str(values.get("output_format")))  # checked before writing
    target = out or run_dir / "export"
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # --out is a file, or under one; nothing was written yet
        why = "is a file" if target.is_file() else f"cannot be created ({err.strerror})"
        raise ConfigError(f"--out {target} {why}; expected a new or existing directory") from None
    if fmt == "jsonl":
        data = target / "data.jsonl"
        data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = target / "data.parquet"
        pq.write_table(pa.Table.from_pylist(rows), data)
    else:
        import datasets

        datasets.disable_progress_bars()
        data = target / "hf"
        datasets.Dataset.from_list(rows).save_to_disk(str(data))
    card = dataset_card(run_dir.name, config, status, n_generated=len(generated), n_seed=len(seed), fmt=fmt,
                        shape=shape, license_id=license_id)
    card.save(str(target / "README.md"))
    stdout.print(f"{len(rows)} samples ({len(generated)} generated, {len(seed)} seed) -> {data} "
                 f"(card: {target / 'README.md'})", highlight=False)
    if push is not None:
        url = push_to_hub(target, push, private=private, message=f"fac export of run {run_dir.name}")
        stdout.print(f"pushed to the hub dataset {push}: {url}", highlight=False)
