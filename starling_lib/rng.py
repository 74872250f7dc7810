"""Hash-seeded random generators: the same parts always give the same draws, in any process.

Simulated judges, answer shuffles and demo sets need a generator that depends only on *what* is
drawn for (a seed, a request, an instruction), never on call order or ``PYTHONHASHSEED``.
:func:`seeded_rng` is the one way to get one: the parts are joined with ``sep`` as text, hashed
with sha256, and the first 8 bytes of the digest, read in ``byteorder``, seed
``numpy.random.default_rng``.

The default layout (``sep="\\x1f"``, little-endian) is that of the ranking prompts, the
simulated ranking judge and the AlpacaEval judge. Two older layouts are kept because their draws
are in committed results (``figures/04_results.json``): the evaluation study's ``sep=":"`` and the
simulated MT-Bench judge's big-endian digest. Changing a layout changes every number drawn
from it; pass the layout explicitly at such call sites.
"""

from __future__ import annotations

import hashlib

import numpy as np


def hash_seed(*parts, sep: str = "\x1f", byteorder: str = "little", nbytes: int = 8) -> int:
    """The integer read from the first ``nbytes`` of ``sha256(sep.join(str(p) for p in parts))``."""
    digest = hashlib.sha256(sep.join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:nbytes], byteorder)


def seeded_rng(*parts, sep: str = "\x1f", byteorder: str = "little") -> np.random.Generator:
    """``numpy.random.default_rng(hash_seed(*parts))``: a generator determined by ``parts`` alone."""
    return np.random.default_rng(hash_seed(*parts, sep=sep, byteorder=byteorder))
