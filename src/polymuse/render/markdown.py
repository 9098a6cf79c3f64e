"""Markdown serialisation of a report outline."""

from __future__ import annotations

from polymuse.render.document import Section


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(title: str, sections: list[Section], figure_dir: str = "plots") -> str:
    """Markdown text; figures link to `<figure_dir>/<name>.png` beside the file."""
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for para in section.paragraphs:
            lines += [para, ""]
        for table in section.tables:
            lines.append("| " + " | ".join(map(_cell, table.headers)) + " |")
            lines.append("|" + "---|" * len(table.headers))
            lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in table.rows]
            lines.append("")
        for name in section.figures:
            lines += [f"![{name}]({figure_dir}/{name}.png)", ""]
    return "\n".join(lines)
