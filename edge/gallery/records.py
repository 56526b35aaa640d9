"""A person and their templates as plain values: what a backup carries."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TemplateRecord:
    vector: np.ndarray  # float32, L2-normalised
    model_id: str
    quality: float | None = None
    source: str | None = None
    created_at: str | None = None


@dataclass(frozen=True)
class PersonRecord:
    name: str
    created_at: str | None
    note: str | None
    templates: tuple[TemplateRecord, ...]
