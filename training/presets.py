"""Read the shipped presets (model catalog, recipes, example jobs). Presets are data: see presets/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from training.spec import JobSpec, load_spec

PRESETS_DIR = Path(__file__).resolve().parents[1] / "presets"


@dataclass(frozen=True)
class CatalogModel:
    id: str
    label: str
    params_b: float
    licence: str
    gated: bool
    defaults: dict
    default: bool = False

    def apply(self, spec: JobSpec) -> JobSpec:
        """The spec with this model picked and its suggested settings applied."""
        return spec.with_overrides({"model.name_or_path": self.id, **self.defaults})


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    overrides: dict

    def apply(self, spec: JobSpec) -> JobSpec:
        return spec.with_overrides(self.overrides)


def model_catalog() -> list[CatalogModel]:
    entries = yaml.safe_load((PRESETS_DIR / "models.yaml").read_text())
    return [CatalogModel(**entry) for entry in entries]


def recipes() -> dict[str, Recipe]:
    entries = yaml.safe_load((PRESETS_DIR / "recipes.yaml").read_text())
    return {name: Recipe(name=name, **entry) for name, entry in entries.items()}


def example_jobs() -> dict[str, JobSpec]:
    return {path.stem: load_spec(path) for path in sorted((PRESETS_DIR / "jobs").glob("*.yaml"))}
