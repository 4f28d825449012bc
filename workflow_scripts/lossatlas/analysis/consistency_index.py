"""The consistency study's index lists (Hacohen & Weinshall §3 Robustness, §6): the ids each derived dataset
removes (the artificially hard dataset, iteration by iteration) or moves from train to test, ranked by the
train-set speed of learning of the ensemble trained on its parent. A derived dataset retrains its ensemble, so
this module holds only what the index jobs run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from lossatlas.analysis.consistency_scores import read_scores
from lossatlas.io import atomic_path

log = logging.getLogger(__name__)


def rank_easiest_first(ids: np.ndarray, easiness: np.ndarray) -> np.ndarray:
    """Example ids sorted easiest first (highest easiness), ties broken by id (a deterministic order)."""
    ids = np.asarray(ids)
    order = np.lexsort((ids, -np.asarray(easiness, dtype=np.float64)))
    return ids[order]



def removal_count(n_current: int, n_original: int, iteration: int, steps: int, keep_fraction: float) -> int:
    """How many examples iteration ``iteration`` (1-based) of the hard-dataset construction removes.

    The paper removes the 2 % easiest examples per iteration until 20 % remain (§6); whether 2 % of the
    original or of the current set is not stated (FIGURES.md §2.1, Fig 8d). Choice: equal steps of the
    *original* set, so after iteration i the train set holds round(n₀·(1 − i·(1 − keep)/steps)) examples and
    after the last exactly round(n₀·keep).
    """
    if not 1 <= iteration <= steps:
        raise ValueError(f"removal iteration {iteration} outside 1..{steps}")
    target = round(n_original * (1.0 - iteration * (1.0 - keep_fraction) / steps))
    if target > n_current:
        raise ValueError(f"removal iteration {iteration}: the current train set ({n_current}) is already "
                         f"smaller than its target size {target}")
    return n_current - target



def moved_ids(ids: np.ndarray, easiness: np.ndarray, fraction: float, which: str, seed: int) -> np.ndarray:
    """Ids of the round(fraction·n) train examples that move train → test (§3 Robustness): the easiest,
    the hardest (by ``easiness``) or a random subset (``seed``). Sorted ascending."""
    ids = np.asarray(ids)
    count = int(round(fraction * len(ids)))
    ranked = rank_easiest_first(ids, easiness)
    if which == "easiest":
        chosen = ranked[:count]
    elif which == "hardest":
        chosen = ranked[len(ranked) - count:]
    elif which == "random":
        chosen = np.random.default_rng(seed).choice(np.sort(ids), size=count, replace=False)
    else:
        raise ValueError(f"moved_ids: which must be easiest|hardest|random, got {which!r}")
    return np.sort(chosen)



def _train_size(dataset_path: str | Path) -> int:
    import h5py

    with h5py.File(dataset_path, "r") as f:
        return int(f["train/y"].shape[0])



def write_ids(path: str | Path, ids: np.ndarray) -> None:
    """An index file: one example id per line (what the datasets' remove/move derivations read)."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{int(i)}\n" for i in np.sort(np.asarray(ids))))



def read_ids(path: str | Path) -> np.ndarray:
    text = Path(path).read_text().split()
    return np.array([int(t) for t in text], dtype=np.int64)



def index_list(kind: str, scores_path: str | Path, out_path: str | Path, *, original_dataset: str | Path,
               iteration: int = 1, steps: int = 1, keep_fraction: float = 0.2, fraction: float = 0.025,
               seed: int = 0) -> None:
    """Write the ids a derived dataset removes or moves, ranked by the train-set speed of learning of the
    ensemble trained on its parent (``scores_path``); the paper does not say which consistency ranks
    easiness (FIGURES.md Fig 8d) — the speed of learning is the paper's own order-of-learning measure.

    kind 'remove': iteration ``iteration`` of ``steps`` of the hard dataset (:func:`removal_count`);
    kind 'move_easiest' | 'move_hardest' | 'move_random': round(fraction·n) train examples (§3 Robustness).
    """
    scores = read_scores(scores_path)
    ids, speed = scores["train"]["id"], scores["train"]["speed"]
    if kind == "remove":
        n_original = _train_size(original_dataset)
        count = removal_count(len(ids), n_original, iteration, steps, keep_fraction)
        chosen = rank_easiest_first(ids, speed)[:count]
    elif kind.startswith("move_"):
        chosen = moved_ids(ids, speed, fraction, kind.removeprefix("move_"), seed)
    else:
        raise ValueError(f"index_list: unknown kind {kind!r}")
    write_ids(out_path, chosen)
    log.info("%s: %d of %d train examples -> %s", kind, len(chosen), len(ids), out_path)
