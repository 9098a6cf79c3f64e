"""Options and helpers shared by several commands."""

from __future__ import annotations

from pathlib import Path

from polymuse.settings import Settings


def split_names(values: list[str] | None) -> list[str]:
    """Accept both repeated options and comma-separated lists: `--only a,b --only c`."""
    return [n.strip() for v in values or [] for n in v.split(",") if n.strip()]


def load_settings(*, output: Path | None = None, **overrides: object) -> Settings:
    """Settings from env and config files, with the command line's explicit values on top."""
    values = {k: v for k, v in overrides.items() if v is not None}
    if output is not None:
        values["output_dir"] = output
    return Settings(**values)
