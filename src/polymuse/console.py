"""The CLI's terminal: one Rich console for output, one for errors."""

from __future__ import annotations

from rich.console import Console

out = Console()
err = Console(stderr=True)
