"""Rebuild seed_demo.jsonl, seed.jsonl, seed_random.jsonl (here) and the task's anchor.jsonl and background.jsonl (in
fac/assets/tasks/toxicity/, shipped in the package) from Davidson et al. (2017).

Usage (from the repository root): python examples/toxicity/make_data.py [path/to/shared/data]

Only tweets outside the project's held-out 20% (corpus/heldout_ids.json) are used. Each tweet is
cleaned as in the SAE corpus (HTML entities unescaped, whitespace collapsed, 10-1000 characters,
>= 90% ASCII), deduplicated case-insensitively, and then drawn with a fixed seed:
  seed_random.jsonl 150 offensive-or-hateful tweets (classes 0/1, natural proportions)
  seed_demo.jsonl   the demo seed (`make demo`): the first DEMO_SIZE rows of seed_random.jsonl, a random
                    sample of real task data
  seed.jsonl        the narrow seed of the benches, deliberately narrow: the 100 shortest remaining toxic tweets that
                    contain "hoe" (ties by row id), as a keyword search would collect them
  anchor.jsonl      1,500 other task-positive tweets: 1,000 offensive (class 1) + 500 hate (class 0)
  background.jsonl  1,500 tweets labelled "neither" (class 2)
The three files share no tweet.
"""

from __future__ import annotations

import csv
import gzip
import html
import json
import logging
import random
import sys
from pathlib import Path

logger = logging.getLogger("make_data")

HERE = Path(__file__).resolve().parent
TASK_ASSETS = HERE.parents[1] / "fac" / "assets" / "tasks" / "toxicity"
LABELS = {"0": "hate", "1": "offensive", "2": "neither"}
SEED_SIZE, ANCHOR_OFFENSIVE, ANCHOR_HATE, BACKGROUND_SIZE = 150, 1000, 500, 1500
NARROW_KEYWORD, NARROW_SIZE = "hoe", 100
DEMO_SIZE = 50  # the largest of 25, 50, 75, 100 whose FAC on the default space stays <= 0.85 (README)


def clean(tweet: str) -> str | None:
    text = " ".join(html.unescape(tweet).split())
    if not 10 <= len(text) <= 1000 or sum(ch.isascii() for ch in text) < 0.9 * len(text):
        return None
    return text


def main(data: Path) -> None:
    held = json.loads((data / "corpus" / "heldout_ids.json").read_text())["held_out"]
    held_ids = {int(i) for key, ids in held.items() if key.startswith("davidson") for i in ids}
    pools: dict[str, list[dict[str, str]]] = {"hate": [], "offensive": [], "neither": []}
    seen: set[str] = set()
    with gzip.open(data / "davidson-hate-offensive" / "labeled_data.csv.gz", "rt", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            row_id = int(row[""])
            text = clean(row["tweet"])
            if row_id in held_ids or text is None or text.casefold() in seen:
                continue
            seen.add(text.casefold())
            label = LABELS[row["class"]]
            pools[label].append({"text": text, "label": label, "id": f"davidson:{row_id}"})
    rng = random.Random(2017)
    for pool in pools.values():
        rng.shuffle(pool)
    anchor = pools["offensive"][:ANCHOR_OFFENSIVE] + pools["hate"][:ANCHOR_HATE]
    toxic_rest = pools["offensive"][ANCHOR_OFFENSIVE:] + pools["hate"][ANCHOR_HATE:]
    seed_random = rng.sample(toxic_rest, SEED_SIZE)
    background = pools["neither"][:BACKGROUND_SIZE]
    rng.shuffle(anchor)
    taken = {r["id"] for r in seed_random}
    keyword_rows = [r for r in toxic_rest if NARROW_KEYWORD in r["text"].lower() and r["id"] not in taken]
    seed = sorted(keyword_rows, key=lambda r: (len(r["text"]), int(r["id"].split(":")[1])))[:NARROW_SIZE]
    ids = [{r["id"] for r in part} for part in (seed, anchor, background, seed_random)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2] or ids[3] & ids[1] or ids[3] & ids[2])
    assert not set().union(*ids) & {f"davidson:{i}" for i in held_ids}
    outputs = (("seed_demo", seed_random[:DEMO_SIZE], HERE), ("seed", seed, HERE), ("seed_random", seed_random, HERE),
               ("anchor", anchor, TASK_ASSETS),
               ("background", background, TASK_ASSETS))
    for name, rows, folder in outputs:
        with (folder / f"{name}.jsonl").open("w", encoding="utf-8") as out:
            out.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        counts = {label: sum(r["label"] == label for r in rows) for label in LABELS.values()}
        logger.info("%s.jsonl: %d tweets %s", name, len(rows), counts)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2] / "shared" / "data")
