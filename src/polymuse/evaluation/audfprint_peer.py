"""The peer baseline: audfprint (Ellis' landmark fingerprinter) on the same catalogue and queries.

audfprint is not a dependency: it runs from any Python that can import `audfprint2` (the PyPI
fork), e.g. a separate virtual environment, given as `python`. A small driver (written to the
run's temporary folder) builds audfprint's hash table from the catalogue files with its default
parameters (20 hashes/s, 20-bit hashes, 100-entry buckets, 4 time shifts for queries, at least 5
aligned hashes to report a match) and matches every query file, timing each.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DRIVER = """
import json, sys, time
from audfprint2 import cli
from audfprint2.core import hash_table

spec = json.load(open(sys.argv[1]))
reference = cli.setup_analyzer(20.0, False, 5, 3, 30.0, 1, 11025, True, None)
table = hash_table.HashTable(hashbits=20, depth=100, maxtime=16384)
started = time.perf_counter()
for ident, path in spec["references"]:
    reference.ingest(table, path)
ingest_s = time.perf_counter() - started
ids = {path: ident for ident, path in spec["references"]}
analyzer = cli.setup_analyzer(20.0, True, 5, 3, 30.0, 0, 11025, True, None)
matcher = cli.setup_matcher(2, 100, 5, 5, False, False, 0.02, False, False, False)
hop = analyzer.n_hop / analyzer.target_sr
with open(spec["output"], "w") as out:
    for qid, path in spec["queries"]:
        started = time.perf_counter()
        results, duration, count = matcher.match_file(analyzer, table, path)
        seconds = time.perf_counter() - started
        ranked = [
            [ids.get(table.names[int(r[0])]), int(r[1]), float(r[2]) * hop] for r in results
        ]
        out.write(json.dumps({"qid": qid, "ranked": ranked, "seconds": seconds}) + "\\n")
print(json.dumps({"ingest_s": ingest_s, "hashes": table.totalhashes()}))
"""


@dataclass(frozen=True)
class PeerAnswer:
    """audfprint's ranked answers for one query: (catalogue id, aligned hashes, offset s)."""

    ranked: list[tuple[int | None, int, float]]
    seconds: float

    @property
    def best(self) -> int | None:
        return self.ranked[0][0] if self.ranked else None


@dataclass(frozen=True)
class PeerRun:
    ingest_s: float
    hashes: int
    answers: dict[str, PeerAnswer]


def find_python(explicit: str | None = None) -> str | None:
    """A Python that imports `audfprint2`: `explicit`, else this one, else None."""
    for candidate in [explicit] if explicit else [sys.executable]:
        if candidate and shutil.which(candidate) or (candidate and Path(candidate).is_file()):
            done = subprocess.run(
                [candidate, "-c", "import audfprint2"], capture_output=True, check=False
            )
            if done.returncode == 0:
                return candidate
    return None


def run_audfprint(
    python: str,
    references: Sequence[tuple[int, Path]],
    queries: Sequence[tuple[str, Path]],
    workdir: Path,
) -> PeerRun:
    """Build audfprint's table from `references` and match every query file."""
    workdir.mkdir(parents=True, exist_ok=True)
    driver = workdir / "audfprint_driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    output = workdir / "audfprint_answers.jsonl"
    spec = workdir / "audfprint_spec.json"
    spec.write_text(
        json.dumps(
            {
                "references": [[int(i), str(p)] for i, p in references],
                "queries": [[q, str(p)] for q, p in queries],
                "output": str(output),
            }
        ),
        encoding="utf-8",
    )
    done = subprocess.run(
        [python, str(driver), str(spec)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"audfprint driver failed: {' | '.join(tail)}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    answers = {}
    for line in output.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        answers[row["qid"]] = PeerAnswer(
            [(r[0], int(r[1]), float(r[2])) for r in row["ranked"]], float(row["seconds"])
        )
    return PeerRun(float(summary["ingest_s"]), int(summary["hashes"]), answers)
