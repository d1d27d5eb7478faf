"""Cache identity by content: weights are named by a hash of their bytes, computed once per file version."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fac.tools.space import identity
from fac.tools.space.identity import directory_files, files_digest


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_same_named_files_with_other_bytes_get_other_digests(tmp_path: Path) -> None:
    a = write(tmp_path / "a" / "ckpt" / "model.safetensors", b"weights one")
    b = write(tmp_path / "b" / "ckpt" / "model.safetensors", b"weights two")
    same = write(tmp_path / "c" / "ckpt" / "model.safetensors", b"weights one")
    cache = tmp_path / "cache"
    assert files_digest([a], cache_dir=cache) != files_digest([b], cache_dir=cache)
    assert files_digest([a], cache_dir=cache) == files_digest([same], cache_dir=cache)


def test_the_digest_is_recorded_once_and_reused_while_size_and_mtime_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = write(tmp_path / "m" / "model.safetensors", b"x" * 1000)
    first = files_digest([weights], cache_dir=tmp_path / "cache")
    calls: list[int] = []
    real = identity._hash_files

    def counted(files: list[Path], with_names: bool) -> str:
        calls.append(1)
        return real(files, with_names)

    monkeypatch.setattr(identity, "_hash_files", counted)
    assert files_digest([weights], cache_dir=tmp_path / "cache") == first and calls == []
    weights.write_bytes(b"y" * 1000)  # same size, rewritten in place: a new mtime
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert files_digest([weights], cache_dir=tmp_path / "cache") != first and calls == [1]


def test_a_read_only_cache_still_gives_the_digest(tmp_path: Path) -> None:
    weights = write(tmp_path / "model.bin", b"abc")
    blocked = write(tmp_path / "cache", b"a file where the cache directory should be")
    assert files_digest([weights], cache_dir=blocked) == files_digest([weights], cache_dir=tmp_path / "ok")


def test_directory_files_picks_the_suffixes_sorted_and_skips_names(tmp_path: Path) -> None:
    for name in ("z.json", "a.safetensors", "quality.json", "notes.md"):
        write(tmp_path / name, b"1")
    found = directory_files(tmp_path, frozenset({".json", ".safetensors"}), skip=frozenset({"quality.json"}))
    assert [p.name for p in found] == ["a.safetensors", "z.json"]
