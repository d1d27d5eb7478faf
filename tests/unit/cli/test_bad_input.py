"""The bad-input suite: each row is a real `fac` invocation with one bad file, line or flag.

Every row must give exit code 2, exactly one line on stderr (`error: ...`) naming the file, line or flag,
and no traceback, without loading a model: the transformers loaders fail the test if they are called.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import make_lm, make_sae, make_tokenizer, run_cli

from fac.tools.space import models, sae_training
from fac.tools.space.models import LoadedModel
from fac.tools.space.sae_training import save_sae


def _files(root: Path) -> None:
    """The bad inputs the table refers to as {d}/NAME."""
    import datasets

    datasets.DatasetDict({}).save_to_disk(str(root / "nosplits"))
    good = gzip.compress("".join(json.dumps({"text": f"the cat sat {i}"}) + "\n" for i in range(400)).encode())
    (root / "cut.jsonl.gz").write_bytes(good[: len(good) // 2])
    (root / "plain.jsonl.gz").write_text('{"text": "the cat"}\n', encoding="utf-8")
    (root / "noise.parquet").write_bytes(os.urandom(512))
    (root / "noise.gguf").write_bytes(os.urandom(512))
    (root / "array.json").write_text('[\n {"text": "the cat"},\n 7\n]\n', encoding="utf-8")
    (root / "broken.json").write_text('[\n {"text": "the cat"},\n {"text": }\n]\n', encoding="utf-8")
    (root / "number.jsonl").write_text('{"text": "the cat"}\n{"text": 5}\n', encoding="utf-8")
    (root / "null.jsonl").write_text('{"text": null}\n', encoding="utf-8")
    (root / "listed.jsonl").write_text('{"body": [1, 2]}\n', encoding="utf-8")
    (root / "bom.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "the cat"}\n{"text": ""}\n')
    (root / "lines.csv").write_text('text,label\n"the cat",1\n"a quoted\nline",2\n"",3\n', encoding="utf-8")
    (root / "wide.csv").write_text("text,label\nthe cat,1\nthe dog,2,extra\n", encoding="utf-8")
    (root / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (root / "sheet.xlsx").write_bytes(b"PK")
    (root / "empty.jsonl").write_text("\n", encoding="utf-8")
    (root / "list.jsonl").write_text('["the cat"]\n', encoding="utf-8")
    (root / "missing-text.jsonl").write_text('{"id": 1, "body": "the cat"}\n', encoding="utf-8")
    (root / "ok.jsonl").write_text('{"text": "the cat sat"}\n', encoding="utf-8")
    save_sae(make_sae(), root / "sae")
    for name in ("sae-cfg", "sae-din", "sae-noweights", "sae-badweights"):
        save_sae(make_sae(), root / name)
    (root / "sae-cfg" / "cfg.json").write_text('{"d_in": ', encoding="utf-8")
    cfg = json.loads((root / "sae-din" / "cfg.json").read_text())
    (root / "sae-din" / "cfg.json").write_text(json.dumps({**cfg, "d_in": 64}), encoding="utf-8")
    (root / "sae-noweights" / "sae_weights.safetensors").unlink()
    (root / "sae-badweights" / "sae_weights.safetensors").write_bytes(os.urandom(64))
    (root / "sae-nocfg").mkdir()
    (root / "model-nocfg").mkdir()
    (root / "run").mkdir()
    (root / "run" / "config.json").write_text('{"config": {"task": "toxicity"}}', encoding="utf-8")
    (root / "run" / "samples.jsonl").write_text("", encoding="utf-8")
    (root / "full").mkdir()
    (root / "full" / "x").write_text("", encoding="utf-8")


CPU_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
SAE = ["--sae", "{d}/sae"]  # a valid tiny SAE, so the row's own fault is the first one met
TRAIN = ["sae", "train", "--corpus", "{d}/ok.jsonl", "--out", "{o}/new-sae", "--layer", "1"]
RUN = ["run", "{d}/ok.jsonl", "--task", "toxicity", "--out", "{o}/runs/r"]

# (argv, what the one error line must contain); {d}: the shared bad inputs, {o}: this row's own output folder
# (holding a-file, a file that must survive)
CASES: list[Any] = [
    # datasets: one per format fault, via features --file, coverage SEED and sae train --corpus
    (["features", "--file", "{d}/nosplits"], "nosplits: a saved DatasetDict with no splits"),
    (["coverage", "{d}/nosplits", "--task", "toxicity"], "nosplits: a saved DatasetDict with no splits"),
    (["features", "--file", "{d}/cut.jsonl.gz"], "cut.jsonl.gz: truncated or corrupt gzip data"),
    (["coverage", "{d}/cut.jsonl.gz", "--task", "toxicity"], "cut.jsonl.gz: truncated or corrupt gzip data"),
    (["features", "--file", "{d}/plain.jsonl.gz"], "plain.jsonl.gz: not gzip-compressed"),
    (["features", "--file", "{d}/noise.parquet"], "noise.parquet: not a readable parquet file"),
    (["coverage", "{d}/noise.parquet", "--task", "toxicity"], "noise.parquet: not a readable parquet file"),
    (["features", "--file", "{d}/array.json"], "array.json:3: expected a JSON object, found a number"),
    (["features", "--file", "{d}/broken.json"], "broken.json:3: malformed JSON"),
    (["features", "--file", "{d}/number.jsonl"], "number.jsonl:2: field 'text' holds a number; expected a string"),
    (["features", "--file", "{d}/null.jsonl"], "null.jsonl:1: field 'text' holds null; expected a string"),
    (["features", "--file", "{d}/listed.jsonl", "--text-field", "body"], "listed.jsonl:1: field 'body' holds a list"),
    (["features", "--file", "{d}/bom.jsonl"], "bom.jsonl:2: field 'text' is empty"),  # line 1, BOM and all, read
    (["features", "--file", "{d}/lines.csv"], "lines.csv:5: field 'text' is empty"),  # file line, not data row 3
    (["features", "--file", "{d}/wide.csv"], "wide.csv:3: 3 fields but the header has 2"),
    (["features", "--file", "{d}/latin1.txt"], "latin1.txt: not UTF-8 text"),
    (["features", "--file", "{d}/sheet.xlsx"], "sheet.xlsx: unknown dataset format"),
    (["features", "--file", "{d}/empty.jsonl"], "empty.jsonl: the dataset is empty"),
    (["features", "--file", "{d}/list.jsonl"], "list.jsonl:1: expected a JSON object, found a list"),
    (["features", "--file", "{d}/missing-text.jsonl"], "missing-text.jsonl:1: no text field found"),
    (["features", "--file", "{d}/nothing.jsonl"], "nothing.jsonl: no such file or directory"),
    (["coverage", "{d}/nothing.jsonl", "--task", "toxicity"], "nothing.jsonl: no such file or directory"),
    ([*TRAIN[:3], "{d}/cut.jsonl.gz", *TRAIN[4:]], "cut.jsonl.gz: truncated or corrupt gzip data"),
    # SAE directories
    (["features", "the cat", "--sae", "{d}/sae-cfg"], "sae-cfg/cfg.json: not valid JSON"),
    (["features", "the cat", "--sae", "{d}/sae-din"], "W_enc is 32 x 128 but cfg.json says d_in=64, d_sae=128"),
    (["features", "the cat", "--sae", "{d}/sae-noweights"], "sae-noweights has no sae_weights.safetensors"),
    (["features", "the cat", "--sae", "{d}/sae-badweights"], "sae_weights.safetensors: not a readable safetensors"),
    (["features", "the cat", "--sae", "{d}/sae-nocfg"], "sae-nocfg has no cfg.json"),
    (["features", "the cat", "--sae", "{d}/no-such-sae"], "no-such-sae does not exist"),
    # models, devices, dtypes, modes
    (["features", "the cat", *SAE, "--model", "{d}/noise.gguf"], "noise.gguf is not a GGUF file"),
    (["features", "the cat", *SAE, "--model", "{d}/none.gguf"], "none.gguf does not exist"),
    (["features", "the cat", *SAE, "--model", "{d}/model-nocfg"], "model-nocfg has no config.json"),
    (["features", "the cat", *SAE, "--dtype", "fp8"], "dtype 'fp8' is not one of auto"),
    (["features", "the cat", "--device", "gpu0"], "'--device': device 'gpu0' is not cpu, cuda"),
    pytest.param(["features", "the cat", "--device", "cuda"], "'--device': device 'cuda': no CUDA GPU", marks=CPU_ONLY),
    pytest.param(["coverage", "{d}/ok.jsonl", "--task", "toxicity", "--device", "cuda:0"], "no CUDA GPU",
                 marks=CPU_ONLY),
    pytest.param([*TRAIN, "--device", "cuda"], "'--device': device 'cuda': no CUDA GPU", marks=CPU_ONLY),
    (["features", "the cat", "--mode", "dense"], "--mode 'dense'"),
    # numeric flags: refused while parsing, before anything loads
    (["features", "the cat", "--threshold", "nan"], "'--threshold': nan is not a finite number >= 0"),
    (["coverage", "{d}/ok.jsonl", "--task", "toxicity", "--threshold", "nan"], "'--threshold': nan"),
    (["features", "the cat", "--threshold", "-1"], "'--threshold': -1.0 is not a finite number >= 0"),
    (["coverage", "{d}/ok.jsonl", "--task", "toxicity", "--threshold", "-1"], "'--threshold': -1.0"),
    (["features", "the cat", "--threshold", "inf"], "'--threshold': inf is not a finite number"),
    (["features", "the cat", "--max-tokens", "0"], "'--max-tokens'"),
    (["coverage", "{d}/ok.jsonl", "--task", "toxicity", "--max-tokens", "0"], "'--max-tokens'"),
    (["features", "the cat", "--top", "-1"], "'--top'"),
    (["coverage", "{d}/ok.jsonl", "--task", "toxicity", "--top-missing", "-1"], "--top-missing=-1 must be >= 0"),
    (["coverage", "{d}/ok.jsonl", "--task", "toxicty"], "unknown task 'toxicty'"),
    # sae train: hyper-parameters refused before the model loads
    ([*TRAIN, "--d-sae", "64", "--k", "500"], "--k 500 and --d-sae 64: expected 1 <= k <= d_sae"),
    ([*TRAIN, "--k", "0"], "--k 0 and --d-sae 4096"),
    ([*TRAIN, "--epochs", "nan"], "--epochs nan and --lr 0.0005 must be finite numbers > 0"),
    ([*TRAIN, "--batch-tokens", "0"], "--batch-tokens 0"),
    ([*TRAIN, "--heldout-fraction", "0.7"], "--heldout-fraction 0.7 must lie in (0, 0.5)"),
    ([*TRAIN, "--max-tokens", "0"], "'--max-tokens'"),
    ([*TRAIN[:5], "{d}/full", *TRAIN[6:]], "full exists and is not empty"),
    # run and export
    ([*RUN, "--threshold", "nan"], "threshold: Input should be greater than or equal to 0"),
    ([*RUN, "--device", "gpu0"], "'--device': device 'gpu0'"),
    (["run", "--resume", "{d}/no-such-run"], "no run to resume"),
    (["export", "{d}/run", "--out", "{o}/a-file"], "--out {o}/a-file is a file; expected a new or existing directory"),
    (["export", "{d}/run", "--out", "{o}/a-file/sub"], "--out {o}/a-file/sub cannot be created"),
    (["export", "{d}/run", "--format", "xml"], "--format 'xml'"),
    (["export", "{d}/ok.jsonl"], "not a fac run directory"),
]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad")
    _files(root)
    return root


def _no_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a model or tokenizer starts loading: the row's check must come first."""
    class Refuse:
        @staticmethod
        def from_pretrained(*args: Any, **kwargs: Any) -> Any:
            pytest.fail(f"a model loaded before the bad input was refused: {args}")

    monkeypatch.setattr(models, "AutoModelForCausalLM", Refuse)
    monkeypatch.setattr(models, "AutoTokenizer", Refuse)


@pytest.mark.parametrize(("argv", "expected"), CASES)
def test_bad_input_is_one_line_naming_it_with_exit_2_and_no_model_loaded(
        argv: list[str], expected: str, bad_inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    _no_model_loads(monkeypatch)
    (tmp_path / "a-file").write_text("keep me\n", encoding="utf-8")
    code, out, err = run_cli([a.format(d=bad_inputs, o=tmp_path) for a in argv], capsys, monkeypatch)
    assert "Traceback" not in out + err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected.format(d=bad_inputs, o=tmp_path) in lines[0]
    assert (tmp_path / "a-file").read_text() == "keep me\n"  # nothing already written is lost
    assert not (tmp_path / "new-sae").exists() and not (tmp_path / "runs").exists()  # nor anything half-made


def test_a_corpus_smaller_than_one_batch_is_refused_before_activations_are_collected(
        bad_inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "load_model", lambda *a, **k: LoadedModel(make_lm(), make_tokenizer(), "tiny"))

    def refuse(*args: Any, **kwargs: Any) -> Any:
        pytest.fail("activations were collected for a corpus that cannot fill one batch")

    monkeypatch.setattr(sae_training, "cached_activations", refuse)
    corpus = tmp_path / "small.jsonl"
    corpus.write_text("".join(json.dumps({"text": "the cat sat on the mat"}) + "\n" for _ in range(40)))
    code, _, err = run_cli(["sae", "train", "--corpus", str(corpus), "--out", str(tmp_path / "sae"), "--layer", "1",
                            "--d-sae", "64", "--k", "8", "--batch-tokens", "4096"], capsys, monkeypatch)
    assert code == 2 and "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    assert "small.jsonl: 38 training texts hold 228 tokens, fewer than one batch (--batch-tokens 4096)" in line
    assert not (tmp_path / "sae").exists()
