"""Retraining a descriptor calibration head from feedback and confident labels.

The head is one logistic regression per descriptor on the song's audio embedding (numpy,
seeded, a few hundred gradient steps). A new version is trained on a split of the examples,
evaluated on the held-out rest together with the promoted version, and registered in
`model_registry`: promoted only when it beats the current one on the held-out set (balanced
accuracy, ties keep the current), otherwise recorded as `rolled_back`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from polymuse.errors import ParameterError
from polymuse.store import Store

FAMILY = "descriptor-calibration"
CONFIDENT = 0.85


@dataclass(frozen=True)
class Example:
    """One training example: an embedding, a descriptor, and whether it applies."""

    embedding: np.ndarray
    descriptor: str
    label: int
    source: Literal["feedback", "confident"] = "feedback"


class CalibrationHead(BaseModel):
    """Per-descriptor logistic weights on a fixed-size embedding."""

    dim: int
    weights: dict[str, list[float]] = Field(default_factory=dict)
    bias: dict[str, float] = Field(default_factory=dict)

    def predict(self, embedding: np.ndarray, descriptor: str) -> float | None:
        """Probability that the descriptor applies; None for descriptors it never learnt."""
        if descriptor not in self.weights:
            return None
        z = float(np.dot(self.weights[descriptor], embedding) + self.bias[descriptor])
        return float(1 / (1 + np.exp(-z)))


def train_head(
    examples: Sequence[Example], *, steps: int = 300, lr: float = 0.5, l2: float = 1e-3
) -> CalibrationHead:
    """Fit one logistic regression per descriptor by full-batch gradient descent."""
    if not examples:
        raise ParameterError("no training examples: add feedback with `polymuse feedback`")
    dim = len(examples[0].embedding)
    head = CalibrationHead(dim=dim)
    for descriptor in sorted({e.descriptor for e in examples}):
        rows = [e for e in examples if e.descriptor == descriptor]
        x = np.stack([e.embedding for e in rows]).astype(np.float64)
        y = np.array([e.label for e in rows], dtype=np.float64)
        w, b = np.zeros(dim), 0.0
        for _ in range(steps):
            p = 1 / (1 + np.exp(-(x @ w + b)))
            w -= lr * (x.T @ (p - y) / len(y) + l2 * w)
            b -= lr * float(np.mean(p - y))
        head.weights[descriptor], head.bias[descriptor] = w.tolist(), b
    return head


def evaluate(head: CalibrationHead | None, examples: Sequence[Example]) -> dict[str, float]:
    """Balanced accuracy over descriptors (unknown descriptors count as chance), and size."""
    if not examples:
        return {"balanced_accuracy": 0.0, "examples": 0}
    per = []
    for descriptor in sorted({e.descriptor for e in examples}):
        rows = [e for e in examples if e.descriptor == descriptor]
        hits = {0: [], 1: []}
        for e in rows:
            p = head.predict(e.embedding, descriptor) if head else None
            hits[e.label].append(0.5 if p is None else float((p >= 0.5) == bool(e.label)))
        per.append(np.mean([np.mean(h) for h in hits.values() if h]))
    return {"balanced_accuracy": round(float(np.mean(per)), 4), "examples": len(examples)}


def split(
    examples: Sequence[Example], *, held_out: float = 0.3, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """A seeded split, stratified by (descriptor, label)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    groups: dict[tuple[str, int], list[Example]] = {}
    for e in examples:
        groups.setdefault((e.descriptor, e.label), []).append(e)
    for key in sorted(groups):
        rows = groups[key]
        order = rng.permutation(len(rows))
        n_test = max(1, round(len(rows) * held_out)) if len(rows) > 1 else 0
        test += [rows[i] for i in order[:n_test]]
        train += [rows[i] for i in order[n_test:]]
    return train, test


class RetrainOutcome(BaseModel):
    """What a retraining did; the review and plan logs quote it."""

    family: str = FAMILY
    version: int
    decision: Literal["promoted", "rolled_back"]
    candidate: dict[str, float]
    current: dict[str, float]
    current_version: int | None = None
    train_size: int

    def sentence(self) -> str:
        cand, cur = self.candidate["balanced_accuracy"], self.current["balanced_accuracy"]
        verb = "promoted" if self.decision == "promoted" else "rolled back"
        return (
            f"{self.family} v{self.version} {verb}: held-out balanced accuracy {cand:.3f} vs "
            f"{cur:.3f} for the current "
            f"{'v' + str(self.current_version) if self.current_version else 'baseline (none)'}"
        )


def current_head(store: Store) -> tuple[int | None, CalibrationHead | None]:
    """The promoted version and its head, if any."""
    with (
        store.connection("reading the model registry") as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        row = cur.execute(
            "SELECT version, params FROM model_registry WHERE family = %(f)s "
            "AND status = 'promoted'",
            {"f": FAMILY},
        ).fetchone()
    if row is None:
        return None, None
    return int(row["version"]), CalibrationHead.model_validate(row["params"])


def retrain(
    store: Store,
    examples: Sequence[Example],
    *,
    seed: int = 0,
    trainer: Callable[[Sequence[Example]], CalibrationHead] = train_head,
) -> RetrainOutcome:
    """Train, evaluate against the promoted head on held-out data; promote or roll back."""
    train, test = split(examples, seed=seed)
    candidate = trainer(train)
    current_version, current = current_head(store)
    cand_eval, cur_eval = evaluate(candidate, test), evaluate(current, test)
    better = cand_eval["balanced_accuracy"] > cur_eval["balanced_accuracy"]
    decision: Literal["promoted", "rolled_back"] = "promoted" if better else "rolled_back"
    with store.transaction("registering a retrained model") as conn:
        row = conn.execute(
            "SELECT coalesce(max(version), 0) + 1 FROM model_registry WHERE family = %(f)s",
            {"f": FAMILY},
        ).fetchone()
        version = int(row[0]) if row else 1
        if better:
            conn.execute(
                "UPDATE model_registry SET status = 'retired' WHERE family = %(f)s "
                "AND status = 'promoted'",
                {"f": FAMILY},
            )
        conn.execute(
            "INSERT INTO model_registry (family, version, status, params, evaluation, "
            "train_size, notes) VALUES (%(f)s, %(v)s, %(s)s, %(p)s, %(e)s, %(n)s, %(notes)s)",
            {
                "f": FAMILY,
                "v": version,
                "s": decision,
                "p": candidate.model_dump_json(),
                "e": json.dumps({"held_out": cand_eval, "current": cur_eval}),
                "n": len(train),
                "notes": f"compared with v{current_version}" if current_version else "first",
            },
        )
    return RetrainOutcome(
        version=version,
        decision=decision,
        candidate=cand_eval,
        current=cur_eval,
        current_version=current_version,
        train_size=len(train),
    )


def examples_from_store(
    store: Store, embedding_of: Callable[[int], np.ndarray | None]
) -> list[Example]:
    """Feedback rows with a catalogue song, as examples (`wrong` -> 0, `right` -> 1)."""
    with store.connection("reading feedback") as conn:
        rows = conn.execute(
            "SELECT entity_id, descriptor, verdict FROM feedback WHERE entity_id IS NOT NULL "
            "ORDER BY feedback_id"
        ).fetchall()
    out = []
    for entity_id, descriptor, verdict in rows:
        vector = embedding_of(int(entity_id))
        if vector is not None:
            out.append(Example(np.asarray(vector), descriptor, int(verdict == "right")))
    return out


def song_embedding(store: Store, entity_id: int) -> np.ndarray | None:
    """The mean of a song's stored window embeddings in the first registered vector table."""
    from psycopg import sql

    with store.connection("reading embeddings") as conn:
        table = conn.execute("SELECT table_name FROM vector_table ORDER BY table_name").fetchone()
        if table is None:
            return None
        rows = conn.execute(
            sql.SQL("SELECT embedding FROM {} WHERE entity_id = %(e)s").format(
                sql.Identifier(table[0])
            ),
            {"e": entity_id},
        ).fetchall()
    if not rows:
        return None
    return np.mean([np.asarray(r[0], dtype=np.float64) for r in rows], axis=0)


def registry(store: Store) -> list[dict[str, Any]]:
    """Every registered version with its status and evaluation, newest first."""
    with (
        store.connection("reading the model registry") as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        return cur.execute(
            "SELECT family, version, status, evaluation, train_size, created_at "
            "FROM model_registry ORDER BY family, version DESC"
        ).fetchall()
