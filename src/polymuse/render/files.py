"""Writing a report folder: report.json, report.md, report.html, annotations.jams, plots/."""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

import numpy as np

from polymuse.render.document import outline
from polymuse.render.html import to_html
from polymuse.render.jams_export import to_jams
from polymuse.render.markdown import to_markdown
from polymuse.render.plots import draw_figures
from polymuse.report import AnalysisReport, SourceInfo


def slug(name: str) -> str:
    """A file-system-safe slug that keeps letters of any script (卡农 stays 卡农)."""
    text = unicodedata.normalize("NFKC", Path(name).stem).lower()
    text = re.sub(r"[^\w]+", "-", text).strip("-_")
    return text[:60] or "song"


def report_folder(output_dir: Path, source: SourceInfo) -> Path:
    """`<output_dir>/<slug>-<first 8 hex of the content hash>`: one folder per song file."""
    return Path(output_dir) / f"{slug(source.file_name)}-{source.content_hash[:8]}"


def _write(path: Path, data: str | bytes) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    if isinstance(data, str):
        tmp.write_text(data, encoding="utf-8")
    else:
        tmp.write_bytes(data)
    os.replace(tmp, path)


def write_report(report: AnalysisReport, folder: Path, y: np.ndarray, sr: int) -> Path:
    """Write every report file into `folder` and return it."""
    plots = folder / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    figures = draw_figures(report, y, sr)
    for name, png in figures.items():
        _write(plots / f"{name}.png", png)
    sections = outline(report, list(figures))
    _write(folder / "report.json", report.model_dump_json(indent=2))
    _write(folder / "report.md", to_markdown(report.title, sections))
    _write(folder / "report.html", to_html(report.title, sections, figures))
    _write(folder / "annotations.jams", to_jams(report).dumps(indent=1))
    return folder
