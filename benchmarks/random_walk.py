"""Random-walk speed and memory: sparse ``propagate`` against IRN's dense procedure.

Prints (not a test):
  1. ``propagate`` vs ``dense_propagate`` on identical inputs at 64x64 and 96x96 stride-4 grids
     on CPU: seconds each, speed-up and the max difference relative to the max value
     (goal: >= 100x at 96x96).
  2. ``propagate`` per image at a 128x128 grid (a 512^2 image), K = 3, on CPU: seconds and
     peak extra memory (goal: <= 2 s, <= 200 MB). Memory is measured in a fresh subprocess:
     after importing torch and creating the inputs the kernel's high-water mark is reset
     (/proc/self/clear_refs), and the peak is VmHWM after the runs minus VmRSS at the reset, so
     neither the dense runs nor torch's own ~0.5 GB are counted. glibc's mmap threshold is
     pinned (MALLOC_MMAP_THRESHOLD_) so freed tensors go back to the kernel and a later
     allocation cannot hide inside memory the process already holds. Without a writable
     clear_refs it falls back to ru_maxrss deltas, which can under-count.
  3. The same on CUDA when a GPU is visible (torch.cuda.max_memory_allocated), plus a batch.
  4. The two step implementations (``shift``, ``csr``) at 128x128 on each available device,
     the measurement behind ``method="auto"``.

Usage: python benchmarks/random_walk.py [--threads N] [--grids 64 96]
One CPU thread by default: the figures are per core and do not depend on what else runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

BETA = 12  # PCAM's beta (spec §5.9); the cost does not depend on it
EXP_TIMES = 8  # 256 steps, IRN / PCAM
K_MAPS = 3


def make_inputs(h: int, w: int, k_maps: int = K_MAPS, device: str = "cpu", seed: int = 0):
    """CAM-like blobs (exactly 0 away from the object) and an edge map of closed 0.999 walls
    over weak noise. Realistic magnitudes matter on CPU: a^beta across strong walls and the far
    tails of the walk underflow to subnormal floats, which x86 handles in slow microcode."""
    g = torch.Generator().manual_seed(seed)
    boundary = 0.05 * torch.rand(h, w, generator=g)
    boundary[:: max(h // 5, 2), :] = 0.999
    boundary[:, :: max(w // 4, 2)] = 0.999
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    cams = []
    for _ in range(k_maps):
        cy, cx = (torch.rand(2, generator=g) * torch.tensor([h, w])).tolist()
        radius_sq = (0.15 + 0.15 * torch.rand(1, generator=g).item()) ** 2 * h * w
        cams.append(torch.relu(1 - ((yy - cy) ** 2 + (xx - cx) ** 2) / radius_sq))
    return torch.stack(cams).float().to(device), boundary.to(device)


def timed(fn, repeat: int = 1, sync=lambda: None) -> tuple[float, object]:
    """Best wall time of ``repeat`` runs (the first includes any lazy initialisation)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        sync()
        start = time.perf_counter()
        result = fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best, result


def compare_dense(grids: list[int], dense_subnormals: bool) -> None:
    from pcam_core.irn.random_walk import dense_propagate, propagate

    def dense_run(cams, boundary):
        # Flush-to-zero for the dense products: repeated squaring fills T^(2^k) with
        # subnormals, which slow x86 matmul ~30x (measured at 48x48) but not a GPU, where IRN
        # runs it; without the flush the speed-up below would be flattered. set_flush_denormal
        # acts on the calling thread only, hence the single-thread default.
        torch.set_flush_denormal(not dense_subnormals)
        try:
            return dense_propagate(cams, boundary, BETA, EXP_TIMES)
        finally:
            torch.set_flush_denormal(False)

    print(f"== sparse propagate vs IRN dense (CPU, {torch.get_num_threads()} threads, K={K_MAPS}, "
          f"beta={BETA}, {2 ** EXP_TIMES} steps; dense with "
          f"{'subnormals' if dense_subnormals else 'flush-to-zero'})")
    print(f"{'grid':>8} {'n':>6} {'dense s':>9} {'sparse s':>9} {'speed-up':>9} {'max rel diff':>13}")
    for size in grids:
        cams, boundary = make_inputs(size, size)
        t_sparse, sparse = timed(lambda: propagate(cams, boundary, BETA, EXP_TIMES), repeat=3)
        t_dense, dense = timed(lambda: dense_run(cams, boundary))
        diff = float((sparse - dense).abs().max() / dense.abs().max())
        print(f"{size:>4}x{size:<3} {size * size:>6} {t_dense:>9.2f} {t_sparse:>9.3f} "
              f"{t_dense / t_sparse:>8.0f}x {diff:>13.2e}", flush=True)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak_rss() -> int:
    """Reset the kernel's RSS high-water mark; return the baseline RSS in KiB."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # 5 = reset VmHWM to the current RSS (Linux >= 4.0)
        return _status_kib("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _peak_rss_kib() -> int:
    try:
        return _status_kib("VmHWM")
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def worker(device: str, batch: int) -> dict:
    """One measurement in this (fresh) process; returns seconds per image and peak memory."""
    from pcam_core.irn.random_walk import propagate_batch

    cams, boundary = make_inputs(128, 128, device=device)
    cams = cams[None].repeat(batch, 1, 1, 1)
    boundary = boundary[None].repeat(batch, 1, 1)
    if device == "cuda":
        sync = torch.cuda.synchronize
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        sync = lambda: None  # noqa: E731
        base = _reset_peak_rss()
    first, _ = timed(lambda: propagate_batch(cams, boundary, BETA, EXP_TIMES), sync=sync)
    steady, _ = timed(lambda: propagate_batch(cams, boundary, BETA, EXP_TIMES), repeat=3, sync=sync)
    if device == "cuda":
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    else:
        peak_mb = (_peak_rss_kib() - base) / 1024
    return {"device": device, "batch": batch, "threads": torch.get_num_threads(),
            "first_s_per_image": first / batch, "s_per_image": steady / batch,
            "peak_extra_mb": peak_mb}


def compare_methods(devices: list[str]) -> None:
    from pcam_core.irn.random_walk import propagate

    print(f"\n== step implementations at 128x128, K={K_MAPS}, one image (best of 2)")
    for device in devices:
        cams, boundary = make_inputs(128, 128, device=device)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        times = {m: timed(lambda: propagate(cams, boundary, BETA, EXP_TIMES, method=m),
                          repeat=2, sync=sync)[0] for m in ("shift", "csr")}
        print(f"{device:>6}: " + ", ".join(f"{m} {t:.3f} s" for m, t in times.items()), flush=True)


def run_worker(device: str, batch: int, threads: int) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")  # large blocks: mmap + munmap
    out = subprocess.run([sys.executable, __file__, "--worker", device, "--batch", str(batch),
                          "--threads", str(threads)], check=True, capture_output=True, text=True,
                         env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--grids", type=int, nargs="*", default=[64, 96],
                        help="grid sizes for the dense comparison (96 costs minutes on CPU)")
    parser.add_argument("--dense-subnormals", action="store_true",
                        help="time the dense reference without flush-to-zero (much slower on x86)")
    parser.add_argument("--worker", choices=("cpu", "cuda"), help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(args.worker, args.batch)))
        return

    print(f"torch {torch.__version__}; CPU threads {args.threads}")
    if args.grids:
        compare_dense(args.grids, args.dense_subnormals)
    print(f"\n== propagate at 128x128 (512^2 image), K={K_MAPS}, fresh subprocess per line")
    print(f"{'device':>6} {'batch':>5} {'s/image':>8} {'first call s/image':>19} {'peak extra MB':>14}")
    runs = [("cpu", 1), ("cpu", 8)]
    if torch.cuda.is_available():
        runs += [("cuda", 1), ("cuda", 16)]
    else:
        print("(no CUDA device visible: GPU figures not measured)")
    for device, batch in runs:
        r = run_worker(device, batch, args.threads)
        print(f"{device:>6} {batch:>5} {r['s_per_image']:>8.3f} {r['first_s_per_image']:>19.3f} "
              f"{r['peak_extra_mb']:>14.1f}", flush=True)
    compare_methods(["cpu"] + (["cuda"] if torch.cuda.is_available() else []))


if __name__ == "__main__":
    main()
