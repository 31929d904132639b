"""Shard lists: the image list of the per-image stages cut into N near-equal parts.

Per-image stages (CAM export, IR-label mining, random walk, prediction) run one job per
shard, never one Snakemake job per image: 12,031 jobs would make the DAG itself the slow part.
"""

from __future__ import annotations

import numpy as np

from pcam_core.common.atomic_output import write_text
from pcam_core.common.dataset_index import DatasetIndex


def split_ids(ids: list[str], parts: int) -> list[list[str]]:
    """Contiguous, near-equal parts in list order (train_aug first, then val)."""
    if parts < 1:
        raise ValueError(f"need at least one shard, got {parts}")
    return [list(chunk) for chunk in np.array_split(np.array(ids, dtype=object), parts)]


def add_arguments(parser) -> None:
    parser.add_argument("--index", required=True, help="index.json")
    parser.add_argument("--outputs", nargs="+", required=True, help="one shard list file per shard")


def main(args) -> int:
    ids = DatasetIndex.load(args.index).all_ids()
    for path, chunk in zip(args.outputs, split_ids(ids, len(args.outputs))):
        write_text(path, "".join(f"{i}\n" for i in chunk))
    print(f"{len(ids)} images in {len(args.outputs)} shards")
    return 0
