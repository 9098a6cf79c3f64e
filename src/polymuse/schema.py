"""Bases shared by every report section, kept apart so section modules import no cycle."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """A strict pydantic model: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class ModelInfo(Model):
    """Identity of a model or algorithm that produced a fact."""

    name: str
    version: str = ""
    source: str = ""
    licence: str = ""
