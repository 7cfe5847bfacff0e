"""Named, independent random streams derived from one seed.

Each part of the simulator draws from its own stream (``streams("cards")``), so
adding a draw in one part never shifts the numbers another part sees, and a
counterfactual run can reuse exactly the same draws.

Examples
--------
>>> s = Streams(7)
>>> float(s("a").random()) == float(Streams(7)("a").random())
True
>>> float(s("a").random()) == float(s("b").random())
False
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Streams:
    """Factory of reproducible generators: one per purpose name, all from ``seed``."""

    seed: int

    def __call__(self, name: str) -> np.random.Generator:
        """A fresh generator for ``name`` (the same name always gives the same numbers)."""
        key = zlib.crc32(name.encode("utf-8"))
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=(key,))))

    def uniforms(self, name: str, n: int) -> np.ndarray:
        """``n`` float32 uniforms in [0, 1) from the stream ``name``."""
        return self(name).random(n, dtype=np.float32)


__all__ = ["Streams"]
