"""Self-contained HTML serialisation of a report outline (figures embedded as data URIs)."""

from __future__ import annotations

import base64
from html import escape

from polymuse.render.document import Section

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #446;padding-bottom:.2em}h2{color:#335;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
td,th{border:1px solid #ccd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eef}img{max-width:100%;margin:.5em 0}
details>summary{cursor:pointer;color:#335}
"""
LONG_TABLE = 40


def to_html(title: str, sections: list[Section], figures: dict[str, bytes]) -> str:
    """One HTML page; tables longer than 40 rows fold into a <details> block."""
    body = [f"<h1>{escape(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{escape(section.title)}</h2>")
        body += [f"<p>{escape(p)}</p>" for p in section.paragraphs]
        for name in section.figures:
            if name in figures:
                data = base64.b64encode(figures[name]).decode()
                body.append(f'<img alt="{escape(name)}" src="data:image/png;base64,{data}">')
        for table in section.tables:
            head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
            rows = "".join(
                "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
                for row in table.rows
            )
            html_table = f"<table><tr>{head}</tr>{rows}</table>"
            if len(table.rows) > LONG_TABLE:
                html_table = (
                    f"<details><summary>{len(table.rows)} rows</summary>{html_table}</details>"
                )
            body.append(html_table)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>"
    )
