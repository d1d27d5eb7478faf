"""Calibrate the verifier's quality gates on real, non-held-out data; write the shipped membership model.

Data: the toxicity task's shipped anchor (1,500 toxic Davidson tweets) and background (1,500 "neither"
tweets), and the demo seeds (examples/toxicity/seed.jsonl, seed_random.jsonl); none is a held-out id.
- meta-text: false-reject rate on every real text (the target: ~0), and what it catches among the issue's
  failure cases (bench/gate_cases.json);
- regurgitation: each anchor tweet's copied share against the other anchor tweets (5 folds), at several
  n-gram orders and thresholds; the catch rate on word-for-word substrings of anchor tweets;
- novelty: the percentile of MiniLM nearest-neighbour distances from an anchor tweet to 100 other anchor
  tweets (a seed's size; 20 draws) that the shipped threshold is;
- membership: the classifier fitted as `fac catalog membership --task toxicity` fits it, over 5 split seeds
  (threshold, held-back anchor kept, held-back background accepted, AUPRC); the seed-0 model is written to
  fac/assets/tasks/toxicity/membership.json with --write-model.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/calibrate_gates.py [--write-model] [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
from results_file import write_section

SECTION = "## Quality gates (issue 12 item 2; `bench/calibrate_gates.py`)"
ROOT = Path(__file__).resolve().parents[1]
TASK_DIR = ROOT / "fac" / "assets" / "tasks" / "toxicity"
CASES = ROOT / "bench" / "gate_cases.json"
SHARES = (0.3, 0.5, 0.8, 1.0)
ORDERS = (6, 8, 10)


def _texts(path: Path) -> list[str]:
    return [str(json.loads(line)["text"]) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def meta_text(real: dict[str, list[str]], cases: list[dict[str, str]]) -> dict[str, Any]:
    from fac.agents.quality import instruction_texts
    from fac.graph.config import RunConfig
    from fac.tools.quality.meta_text import InstructionEcho, MetaTextGate

    gate = MetaTextGate(echo=InstructionEcho(instruction_texts(RunConfig(seed="s", task="toxicity"))))
    out: dict[str, Any] = {}
    for name, texts in real.items():
        hits = [(t, gate.problem(t)) for t in texts]
        flagged = [(t, p) for t, p in hits if p]
        out[name] = {"n": len(texts), "rejected": len(flagged), "examples": [f"{p} || {t}" for t, p in flagged[:5]]}
    out["cases"] = [{"kind": c["kind"], "text": c["text"], "meta-text": gate.problem(c["text"])} for c in cases]
    return out


def regurgitation(anchor: list[str], cases: list[dict[str, str]], seed: int = 0) -> dict[str, Any]:
    from fac.tools.quality.regurgitation import MAX_COPIED_SHARE, NGRAM, CopyIndex, words

    rng = random.Random(seed)
    order = list(range(len(anchor)))
    rng.shuffle(order)
    folds = [set(order[f::5]) for f in range(5)]
    table: dict[str, Any] = {}
    for n in ORDERS:
        shares = []
        for probe in folds:
            index = CopyIndex([anchor[i] for i in range(len(anchor)) if i not in probe], ngram=n)
            shares += [index.copy(anchor[i]).share for i in sorted(probe)]
        s = np.asarray(shares)
        table[str(n)] = {f"{t:.1f}": float((s >= t).mean()) for t in SHARES}
    index = CopyIndex(anchor, ngram=NGRAM)
    caught, probes = 0, 0
    for text in anchor:  # a contiguous run of >= 60 % of a tweet's words (and >= 3 words): a copy
        tokens = words(text)
        if len(tokens) < 5:
            continue
        k = rng.randint(max(3, int(0.6 * len(tokens) + 0.999)), len(tokens))
        start = rng.randint(0, len(tokens) - k)
        caught += index.copy(" ".join(tokens[start : start + k])).share >= MAX_COPIED_SHARE
        probes += 1
    return {"false_reject": table, "ngram": NGRAM, "max_copied_share": MAX_COPIED_SHARE,
            "substring_probes": probes, "substring_caught": caught / probes,
            "cases": [index.copy(c["text"]).share for c in cases]}


def novelty(anchor: list[str], background: list[str], seed_texts: list[str]) -> dict[str, Any]:
    from fac.tools.quality import novelty as gate
    from fac.tools.text.embeddings import default_embedder

    embed = default_embedder().embed
    a = embed(anchor)
    threshold, distances = gate.calibrate_novelty(a, size=gate.REFERENCE_SIZE, percentile=gate.PERCENTILE)
    to_demo = gate.nearest_distances(embed(background), embed(seed_texts))
    shipped = gate.NOVELTY_DISTANCE
    return {"percentile": gate.PERCENTILE, "reference_size": gate.REFERENCE_SIZE, "measured_threshold": threshold,
            "shipped": shipped, "anchor_pass_at_shipped": float((distances >= shipped).mean()),
            "percentiles": {str(p): float(np.percentile(distances, p)) for p in (0.5, 1, 2, 5, 50)},
            "old_dedup_0.05_pass": float((distances >= 0.05).mean()),
            "background_vs_demo_seed_pass": float((to_demo >= shipped).mean())}


def membership(seeds: int, write: bool, demo: dict[str, list[str]], cases: list[dict[str, str]]) -> dict[str, Any]:
    from fac.tools.catalog.membership import MEMBERSHIP_FILE, fit_task_membership
    from fac.tools.catalog.tasks import get_task
    from fac.tools.space.features import FeatureSpace

    space = FeatureSpace.load()
    task = get_task("toxicity")
    runs = []
    for s in range(seeds):
        started = time.perf_counter()
        model = fit_task_membership(space, task, seed=s)
        c = model.calibration
        runs.append({"seed": s, "threshold": model.threshold, "pos_accept": c.heldout_pos_accept,
                     "neg_accept": c.heldout_neg_accept, "auprc": c.heldout_auprc, "l2": c.l2,
                     "seconds": time.perf_counter() - started})
        if s == 0:
            shipped = model
            scored = {name: [model.probability(x) for x in space.score(texts)] for name, texts in demo.items()}
            case_p = [model.probability(x) for x in space.score([c["text"] for c in cases])]
            if write:
                shipped.save(TASK_DIR / MEMBERSHIP_FILE)
    accept = {name: float(np.mean(np.asarray(p) >= shipped.threshold)) for name, p in scored.items()}
    return {"runs": runs, "shipped_threshold": shipped.threshold, "demo_accept": accept,
            "cases": [{"kind": c["kind"], "p": p, "accepted": p >= shipped.threshold} for c, p in zip(cases, case_p,
                                                                                                      strict=True)]}


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def section(result: dict[str, Any], args: argparse.Namespace) -> str:
    m, r, n, mem = result["meta"], result["regurgitation"], result["novelty"], result["membership"]
    runs = mem["runs"]

    def spread(key: str) -> str:
        values = np.asarray([x[key] for x in runs])
        return f"{values.mean():.3f} ± {values.std():.3f} (min {values.min():.3f}, max {values.max():.3f})"

    lines = [
        SECTION, "",
        f"Real run, {time.strftime('%Y-%m-%d')}, {result['seconds']:.0f} s on the shared 2-core CPU: "
        f"`python bench/calibrate_gates.py --seeds {args.seeds}{' --write-model' if args.write_model else ''}`. "
        "Data: the toxicity task's shipped anchor (1,500 toxic Davidson tweets) and background (1,500 neither "
        "tweets), the demo seeds (`examples/toxicity/seed*.jsonl`); no held-out id. The issue's failure cases are "
        "`bench/gate_cases.json`.", "",
        "| gate (kind) | rule shipped | how the threshold was set | measured on real text | on bad drafts |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    real_meta = sum(v["rejected"] for k, v in m.items() if k != "cases")
    n_meta = sum(v["n"] for k, v in m.items() if k != "cases")
    meta_cases = [c for c in m["cases"] if c["kind"] == "meta"]
    lines.append(f"| meta text (`meta-text`) | commentary / preamble patterns, >= 3 lettered or numbered items in "
                 f"sequence or >= 2 'A:' labels, any word 5-gram of the generator's fixed instructions | patterns "
                 f"fixed from the issue's cases; false rejects counted on all real texts | {real_meta} of {n_meta} "
                 "real texts rejected | "
                 f"{sum(bool(c['meta-text']) for c in meta_cases)} of {len(meta_cases)} meta cases |")
    fr = r["false_reject"][str(r["ngram"])][f"{r['max_copied_share']:.1f}"]
    lines.append(f"| regurgitation (`regurgitation`) | share of the draft's words inside {r['ngram']}-word runs "
                 f"(whole draft if shorter) found in anchor, evidence or seed >= {r['max_copied_share']} | "
                 f"anchor tweets vs the other anchor tweets, 5 folds: real false-reject rate is flat from 0.3 to 0.5 "
                 f"(table below), 0.5 = half the draft copied | {_pct(fr)} of real anchor tweets rejected | "
                 f"{_pct(r['substring_caught'])} of {r['substring_probes']} substrings of anchor tweets |")
    lines.append(f"| novelty (`not-novel`) | MiniLM cosine distance to the nearest seed/accepted sample >= "
                 f"{n['shipped']} | {n['percentile']:g}st percentile of an anchor tweet's distance to its nearest of "
                 f"{n['reference_size']} other anchor tweets (20 draws): measured {n['measured_threshold']:.3f} | "
                 f"{_pct(n['anchor_pass_at_shipped'])} of real anchor tweets pass (old 0.05: "
                 f"{_pct(n['old_dedup_0.05_pass'])}) | — |")
    mem_cases = mem["cases"]
    off_task = [c for c in mem_cases if c["kind"] == "off-task"]
    lines.append(f"| membership (`not-task-member`) | logistic regression on log1p SAE scores, anchor vs background, "
                 f"p >= {mem['shipped_threshold']:.3f} | the probability keeping 95 % of a held-back 20 % of the "
                 f"anchor (never trained on) | held-back anchor kept {spread('pos_accept')}; held-back background "
                 f"accepted {spread('neg_accept')} | {sum(not c['accepted'] for c in off_task)} of {len(off_task)} "
                 "off-task cases rejected |")
    lines += ["", f"Membership over {len(runs)} split seeds: threshold {spread('threshold')}, held-back AUPRC "
              f"{spread('auprc')}, L2 chosen on an inner split: {sorted({x['l2'] for x in runs})}. The shipped model "
              f"(seed 0) accepts {', '.join(f'{_pct(v)} of {k}' for k, v in mem['demo_accept'].items())}.", "",
              "Regurgitation: share of real anchor tweets rejected (5-fold, each against the other 4/5), by n-gram "
              "order and threshold:", "", "| n | " + " | ".join(f">= {t}" for t in SHARES) + " |",
              "| ---: |" + " ---: |" * len(SHARES)]
    for order, row in r["false_reject"].items():
        lines.append(f"| {order} | " + " | ".join(_pct(row[f'{t:.1f}']) for t in SHARES) + " |")
    pcts = ", ".join(f"{k} %: {v:.3f}" for k, v in n["percentiles"].items())
    lines += ["", f"Novelty: nearest-neighbour distance percentiles {pcts}; real background "
              f"tweets against the demo seed pass {_pct(n['background_vs_demo_seed_pass'])}.", "",
              "Real texts the meta-text gate rejects: " + "; ".join(
                  e for k, v in m.items() if k != "cases" for e in v["examples"]) + ".", ""]
    lines += ["Per failure case: the meta-text gate, the copied share against the anchor (regurgitation at >= "
              f"{r['max_copied_share']}), the membership probability (rejected below {mem['shipped_threshold']:.3f}):",
              "", "| kind | text | meta-text | copied share | p(member) |", "| --- | --- | --- | ---: | ---: |"]
    for c, share, p in zip(m["cases"], r["cases"], mem_cases, strict=True):
        lines.append(f"| {c['kind']} | {c['text'][:70]} | {'rejected' if c['meta-text'] else 'passes'} | "
                     f"{share:.2f} | {p['p']:.3f} |")
    lines += ["", "Rebuild the membership model after a new SAE or catalog: `fac catalog membership --task toxicity "
              "--out fac/assets/tasks/toxicity/membership.json` (or rerun this script with --write-model)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5, help="Split seeds of the membership model.")
    parser.add_argument("--write-model", action="store_true", help="Write the seed-0 model as the shipped one.")
    parser.add_argument("--no-results", action="store_true", help="Do not rewrite the bench/RESULTS.md section.")
    parser.add_argument("--from-json", type=Path, help="Write the section from a saved result (this script's "
                        "output) instead of measuring again.")
    args = parser.parse_args()
    started = time.perf_counter()
    anchor, background = _texts(TASK_DIR / "anchor.jsonl"), _texts(TASK_DIR / "background.jsonl")
    demo = {"the demo seed": _texts(ROOT / "examples" / "toxicity" / "seed.jsonl"),
            "the random seed": _texts(ROOT / "examples" / "toxicity" / "seed_random.jsonl")}
    cases = json.loads(CASES.read_text(encoding="utf-8"))
    result: dict[str, Any] = {  # the text gates need no model: seconds
        "meta": meta_text({"anchor": anchor, "background": background, **demo}, cases),
        "regurgitation": regurgitation(anchor, cases),
    }
    if args.from_json is not None:  # novelty and membership (minutes) from a saved result
        saved = json.loads(args.from_json.read_text(encoding="utf-8"))
        result.update(novelty=saved["novelty"], membership=saved["membership"], seconds=saved["seconds"])
        args.seeds, args.write_model = len(saved["membership"]["runs"]), bool(saved.get("wrote_model"))
    else:
        result["novelty"] = novelty(anchor, background, demo["the demo seed"])
        result["membership"] = membership(args.seeds, args.write_model, demo, cases)
        result["seconds"], result["wrote_model"] = time.perf_counter() - started, args.write_model
    print(json.dumps(result, indent=1))
    if not args.no_results:
        write_section(SECTION, section(result, args))


if __name__ == "__main__":
    main()
