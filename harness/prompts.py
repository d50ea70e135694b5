"""Public name of the prompt sources (``from harness.prompts import Synthetic``): see :mod:`harness.core.prompts`."""

from __future__ import annotations

from harness.core.prompts import (
    CHARS_PER_TOKEN,
    Dataset,
    Lengths,
    PromptSource,
    Synthetic,
    Template,
    Text,
    fixed,
    load_jsonl,
    normal,
    synthetic_text,
    uniform,
)

__all__ = [
    "CHARS_PER_TOKEN",
    "Dataset",
    "Lengths",
    "PromptSource",
    "Synthetic",
    "Template",
    "Text",
    "fixed",
    "load_jsonl",
    "normal",
    "synthetic_text",
    "uniform",
]
