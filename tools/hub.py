"""The Hugging Face hub as fac reaches it: whether it is offline; hub dataset ids `hf:OWNER/NAME[:SPLIT]`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

HF_PREFIX = "hf:"
_DATASET_ID = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+)(?::(?P<split>[\w.\[\]:%+-]+))?$")


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE asks for no network (transformers, datasets and huggingface_hub read it too)."""
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class HubDataset:
    """A hub dataset and split: `hf:OWNER/NAME` (split train) or `hf:OWNER/NAME:SPLIT`."""

    repo_id: str
    split: str = "train"

    def __str__(self) -> str:
        return f"{HF_PREFIX}{self.repo_id}:{self.split}"


def parse_hub_dataset(spec: str) -> HubDataset | None:
    """The hub dataset `spec` names (None when it is no `hf:` id); a malformed id is a ValueError."""
    if not spec.startswith(HF_PREFIX):
        return None
    match = _DATASET_ID.match(spec[len(HF_PREFIX):])
    if match is None:
        raise ValueError(f"{spec}: expected a hub dataset id hf:OWNER/NAME or hf:OWNER/NAME:SPLIT")
    return HubDataset(match["repo"], match["split"] or "train")
