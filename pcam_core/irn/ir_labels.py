"""Affinity-label mining (IRN's ``cam_to_ir_label``, spec §3): CAMs -> IR labels {0..N, 255}.

Per train_aug image: two thresholded argmax maps of the full-resolution CAMs (a high
foreground threshold and a low background one), each cleaned by a dense CRF on the raw
RGB image, combined into confident foreground (class id), confident background (0) and
"unsure" (255, ignored by IRNet's loss).

The CRF is CPU-bound (2 per image), so images are spread over a process pool. Workers come
from a fork server started with BLAS/OpenMP capped to one thread, so ``--threads N`` uses N
cores and not N x (cores per BLAS pool); the server imports the worker's modules once and
forks ready workers (spawned workers would each pay ~1.5 s of imports, torch included).
Each worker opens the CAM store and reads its own images: only ids travel between processes.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from pcam_core.common.class_list import IGNORE_INDEX

# Reference dense-CRF settings (IRN imutils.crf_inference_label; spec §3.3).
CRF_GT_PROB = 0.7           # probability given to the thresholded label in the unary
CRF_GAUSSIAN_SXY = 3        # smoothness kernel: position only
CRF_GAUSSIAN_COMPAT = 3
CRF_BILATERAL_SXY = 50      # appearance kernel: position + raw RGB
CRF_BILATERAL_SRGB = 5
CRF_BILATERAL_COMPAT = 10

# Environment variables that size the thread pools of BLAS / OpenMP libraries.
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def threshold_argmax(high_res: np.ndarray, threshold: float) -> np.ndarray:
    """argmax over [constant threshold plane; maps] -> index map 0..K (0 = background).

    Ties go to the background plane (np.argmax returns the first maximum), as in IRN.
    """
    k, h, w = high_res.shape
    stacked = np.empty((k + 1, h, w), dtype=np.float32)
    stacked[0] = threshold
    stacked[1:] = high_res
    return np.argmax(stacked, axis=0)


def crf_refine(rgb: np.ndarray, labels: np.ndarray, n_labels: int, iterations: int) -> np.ndarray:
    """Dense CRF with unaries from a hard label map (index space 0..n_labels-1).

    Runs on the raw uint8 RGB image, C-contiguous: the bilateral kernel's srgb = 5 is in
    uint8 units, so a normalised image would silently change the result (spec §10.9).
    """
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_labels

    h, w = labels.shape
    crf = dcrf.DenseCRF2D(w, h, n_labels)
    crf.setUnaryEnergy(unary_from_labels(labels, n_labels, gt_prob=CRF_GT_PROB, zero_unsure=False))
    crf.addPairwiseGaussian(sxy=CRF_GAUSSIAN_SXY, compat=CRF_GAUSSIAN_COMPAT)
    crf.addPairwiseBilateral(sxy=CRF_BILATERAL_SXY, srgb=CRF_BILATERAL_SRGB,
                             rgbim=np.ascontiguousarray(rgb, dtype=np.uint8), compat=CRF_BILATERAL_COMPAT)
    q = np.asarray(crf.inference(iterations), dtype=np.float32)
    return np.argmax(q.reshape(n_labels, h, w), axis=0)


def combine(fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Spec §3.4 on segmentation-id maps: fg class wins; both background -> 0; else 255."""
    label = fg.astype(np.uint8, copy=True)
    label[fg == 0] = IGNORE_INDEX
    label[(fg == 0) & (bg == 0)] = 0
    return label


def ir_label(rgb: np.ndarray, high_res: np.ndarray, keys: np.ndarray, params: dict) -> np.ndarray:
    """IR label map (uint8 H x W, values in {0} U keys U {255}) of one image.

    ``keys`` are segmentation ids (1..N) of the K channels of ``high_res`` (K >= 1).
    """
    if len(keys) == 0:
        raise ValueError("ir_label needs at least one class")
    if high_res.shape[1:] != rgb.shape[:2]:
        raise ValueError(f"CAM size {high_res.shape[1:]} does not match the image {rgb.shape[:2]}")
    ids = np.concatenate([[0], np.asarray(keys, dtype=np.int64)])
    maps = []
    for threshold in (params["fg_threshold"], params["bg_threshold"]):
        index = threshold_argmax(high_res, float(threshold))
        if params.get("crf", True):
            index = crf_refine(rgb, index, len(ids), int(params.get("crf_iterations", 10)))
        maps.append(ids[index])
    return combine(*maps)


# ----------------------------------------------------------------------------- worker side
_WORKER: dict = {}


def _init_worker(cam_path: str, params: dict, reading: dict) -> None:
    """Per process: open the CAM store once and keep the stage parameters."""
    from pcam_core.cam.store import CamStore
    from pcam_core.common.image_io import ImageReading

    _WORKER["store"] = CamStore(cam_path)
    _WORKER["params"] = params
    _WORKER["reading"] = ImageReading.from_json(reading)


def _mine_one(job: tuple[str, str, str]) -> str:
    """Mine and write one image's IR label; returns 'written' or the skip reason."""
    from pcam_core.common.image_io import read_rgb
    from pcam_core.common.label_png import write_label_png

    image_id, image_path, out_path = job
    record = _WORKER["store"][image_id]
    if len(record.keys) == 0:
        return "no_classes"
    rgb = read_rgb(image_path, _WORKER["reading"])
    write_label_png(out_path, ir_label(rgb, record.high_res, record.keys, _WORKER["params"]))
    return "written"


@contextlib.contextmanager
def _capped_thread_env():
    """One BLAS/OpenMP thread in every process started inside (they read it at start-up)."""
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: "1" for k in _THREAD_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _worker_pool(workers: int, cam_path: str, params: dict, reading: dict) -> ProcessPoolExecutor:
    """Process pool from a fork server that has the worker modules imported already.

    Not plain fork: the parent has torch and h5py loaded and possibly threads running.
    Spawn where there is no fork server (Windows).
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["pcam_core.irn.ir_labels", "pcam_core.cam.store",
                                        "pcam_core.common.image_io", "pydensecrf.densecrf"])
    else:
        context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                               initargs=(cam_path, params, reading))


def mine_shard(index_path: str | Path, shard_path: str | Path, cam_path: str | Path,
               params: dict, out_dir: str | Path, threads: int = 1) -> dict[str, int]:
    """Write ``out_dir/<id>.png`` for the shard's train_aug images; the directory is atomic."""
    from pcam_core.common.atomic_output import atomic_directory
    from pcam_core.cam.store import CamStore, exported_ids
    from pcam_core.common.dataset_index import DatasetIndex, read_shard_ids
    from pcam_core.common.progress import progress_bar

    index = DatasetIndex.load(index_path)
    train_aug = set(index.splits.get("train_aug", []))
    shard = read_shard_ids(shard_path)
    ids = [i for i in shard if i in train_aug]
    with CamStore(cam_path, shard_ids=shard, required_ids=exported_ids(index, shard)) as store:
        in_store = [i for i in ids if i in store]
    counts = {"shard_train_aug": len(ids), "written": 0, "not_in_store": len(ids) - len(in_store),
              "no_classes": 0}
    threads = max(1, int(threads))
    with atomic_directory(out_dir) as tmp:
        jobs = [(i, index[i].image, str(tmp / f"{i}.png")) for i in in_store]
        bar = progress_bar(len(jobs), 0, "mine IR labels")
        if threads == 1 or len(jobs) <= 1:
            _init_worker(str(cam_path), params, index.image_reading.to_json())
            try:
                for job in jobs:
                    counts[_mine_one(job)] += 1
                    bar.update()
            finally:
                _WORKER.pop("store").close()
        else:
            with _capped_thread_env(), _worker_pool(min(threads, len(jobs)), str(cam_path), params,
                                                   index.image_reading.to_json()) as pool:
                # chunks amortise the IPC; small enough that the workers stay balanced.
                chunk = max(1, min(16, len(jobs) // (4 * threads)))
                for status in pool.map(_mine_one, jobs, chunksize=chunk):
                    counts[status] += 1
                    bar.update()
        bar.close()
    return counts


def add_arguments(parser) -> None:
    from pcam_core.cli import json_object

    parser.add_argument("--index", required=True, help="dataset index (index.json)")
    parser.add_argument("--shard", required=True, help="shard list: one image id per line")
    parser.add_argument("--cams", required=True, help="the shard's CAM store (.h5)")
    parser.add_argument("--params", required=True, type=json_object,
                        help="JSON: crf, crf_iterations and, without --calibration, fg_threshold and bg_threshold")
    parser.add_argument("--calibration",
                        help="calibration JSON of the CAM step: its ir_fg_threshold / ir_bg_threshold "
                             "replace fg_threshold / bg_threshold")
    parser.add_argument("--out-dir", required=True, help="output directory of <id>.png IR labels")
    parser.add_argument("--threads", type=int, default=1, help="worker processes for the CRF")


def main(args) -> int:
    params = dict(args.params)
    if args.calibration:
        from pcam_core.calibration.calibration_file import read_calibration

        params["fg_threshold"] = read_calibration(args.calibration, "ir_fg_threshold")
        params["bg_threshold"] = read_calibration(args.calibration, "ir_bg_threshold")
    missing = [k for k in ("fg_threshold", "bg_threshold") if k not in params]
    if missing:
        raise SystemExit(f"mine-ir-labels: give --calibration or {missing} in --params")
    print(f"mine-ir-labels: foreground threshold {params['fg_threshold']}, background "
          f"{params['bg_threshold']}", file=sys.stderr)
    counts = mine_shard(args.index, args.shard, args.cams, params, args.out_dir, args.threads)
    print(f"mine-ir-labels: {counts['written']} IR labels written to {args.out_dir} "
          f"({counts['shard_train_aug']} train_aug images in the shard; skipped: "
          f"{counts['not_in_store']} not in the CAM store, {counts['no_classes']} with no classes)")
    return 0
