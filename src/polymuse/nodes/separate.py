"""`separate`: stems of the song (vocals, drums, bass, other, instrumental) in its report folder."""

from __future__ import annotations

from langgraph.runtime import Runtime

from polymuse.render.files import report_folder
from polymuse.runtime import Context
from polymuse.state import AnalysisState
from polymuse.tools.separation.stems import separate_file


def separate(state: AnalysisState, runtime: Runtime[Context]) -> dict:
    """Run the configured separator (cached by content hash) into `<report folder>/stems`."""
    settings = runtime.context.settings
    source = state["source"]
    result = separate_file(
        source.path,
        report_folder(settings.output_dir, source) / "stems",
        settings=settings,
        content_hash=source.content_hash,
    )
    return {"separation": result}
