"""Per-example correctness, stored compactly so attacks can be combined example by example.

Every attack cell stores which examples it left correctly classified, so that the per-example
worst case over attacks (an example is robust only if *every* attack failed on it) and
per-example checks (PGD must break what FGSM breaks) can be computed later from the store.

Encoding (the ``detail`` of a cell's ``per_example`` row): examples are identified by their index
in the dataset split (what the data loader yields as ``ids``). ``members`` is a bitset over
``0..size-1`` marking the examples the cell evaluated; ``correct`` is a bitset over those
members in ascending index order. Bitsets are ``numpy.packbits`` (big-endian bit order) in
base64: 1,000 examples take about 170 characters.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

ENCODING = "packbits-base64/v1"


def _pack(bits: np.ndarray) -> str:
    return base64.b64encode(np.packbits(bits.astype(bool)).tobytes()).decode("ascii")


def _unpack(text: str, count: int) -> np.ndarray:
    raw = np.frombuffer(base64.b64decode(text), dtype=np.uint8)
    return np.unpackbits(raw, count=count).astype(bool)


@dataclass
class ExampleSet:
    """Dense masks over dataset indices ``0..size-1``: which examples were evaluated, and which
    of them were classified correctly (``correct`` is False outside ``members``)."""

    members: np.ndarray
    correct: np.ndarray

    @classmethod
    def from_ids(cls, ids: np.ndarray, correct: np.ndarray) -> "ExampleSet":
        ids = np.asarray(ids, dtype=np.int64)
        size = int(ids.max()) + 1 if ids.size else 0
        members = np.zeros(size, dtype=bool)
        dense = np.zeros(size, dtype=bool)
        members[ids] = True
        dense[ids] = np.asarray(correct, dtype=bool)
        return cls(members, dense)

    @classmethod
    def from_detail(cls, detail: dict[str, Any]) -> "ExampleSet":
        if detail.get("encoding") != ENCODING:
            raise ValueError(f"unknown per-example encoding {detail.get('encoding')!r}")
        size = int(detail["size"])
        members = _unpack(detail["members"], size)
        dense = np.zeros(size, dtype=bool)
        dense[np.flatnonzero(members)] = _unpack(detail["correct"], int(members.sum()))
        return cls(members, dense)

    def to_detail(self) -> dict[str, Any]:
        return {
            "encoding": ENCODING,
            "size": int(self.members.size),
            "n": self.n,
            "members": _pack(self.members),
            "correct": _pack(self.correct[self.members]),
        }

    @property
    def n(self) -> int:
        return int(self.members.sum())

    @property
    def n_correct(self) -> int:
        return int(self.correct.sum())

    def resized(self, size: int) -> "ExampleSet":
        """The same set on a longer index range."""
        members = np.zeros(size, dtype=bool)
        correct = np.zeros(size, dtype=bool)
        members[: self.members.size] = self.members
        correct[: self.correct.size] = self.correct
        return ExampleSet(members, correct)

    def worst_with(self, other: "ExampleSet") -> "ExampleSet":
        """The per-example worst case of two attacks, on the examples both evaluated."""
        size = max(self.members.size, other.members.size)
        a, b = self.resized(size), other.resized(size)
        members = a.members & b.members
        return ExampleSet(members, a.correct & b.correct & members)
