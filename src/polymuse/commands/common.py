"""Options and helpers shared by several commands."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import typer

from polymuse.console import err
from polymuse.errors import PolymuseError
from polymuse.settings import Settings

T = TypeVar("T")


def split_names(values: list[str] | None) -> list[str]:
    """Accept both repeated options and comma-separated lists: `--only a,b --only c`."""
    return [n.strip() for v in values or [] for n in v.split(",") if n.strip()]


def load_settings(*, output: Path | None = None, **overrides: object) -> Settings:
    """Settings from env and config files, with the command line's explicit values on top."""
    values = {k: v for k, v in overrides.items() if v is not None}
    if output is not None:
        values["output_dir"] = output
    return Settings(**values)


def each_file(files: list[Path], work: Callable[[Path], T]) -> Iterator[tuple[Path, T]]:
    """Yield (file, result) of `work` per file; a bad file is reported and the batch goes on.

    A lone file's error propagates (the CLI exits 2); a batch with failures exits 1 at the end.
    """
    failures = 0
    for path in files:
        try:
            result = work(path)
        except PolymuseError as exc:
            if len(files) == 1:
                raise
            err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            failures += 1
            continue
        yield path, result
    if failures:
        raise typer.Exit(1)
