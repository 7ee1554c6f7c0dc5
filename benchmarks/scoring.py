"""Scoring benchmark: the kernels against NumPy, PyTorch CPU and the machine's limits.

    python -m benchmarks.scoring [--quick] [--threads 1,2] [--json PATH]

Sections: machine limits (STREAM-like triad, BLAS GEMM), single-user scoring, fused top-k,
top-k of precomputed scores, batched top-k (GEMM + selection), FAISS's exact inner-product
index as the library peer of top-k (when faiss is installed), MLP scoring, the embedding
kernels of training (scatter-add, pooled field) and the gather, the parallel threshold (2 threads), cold start (compile and
cache-load times), and the issue's targets with the measured ratio. Every ratio is between candidates timed
round-robin in the same process (benchmarks/common.py). float32 throughout. Without
torch installed its columns are skipped; without faiss (the optional extra ``bench``) its
section is, with the reason printed.
"""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit

from pfd_ref import catalogue, kernels
import pfd_ref.kernels._common  # noqa: F401 (kernels._common below)
import pfd_ref.kernels.embedding  # noqa: F401
from benchmarks.common import (
    CHILD_FLAG,
    check_json_argument,
    parse_and_run,
    gemm_gflops,
    import_torch,
    machine_info,
    make_gather_reads,
    make_read,
    make_triad,
    memory_bandwidth,
    print_table,
    run_python,
    set_threads,
    time_side_by_side,
    write_json,
)
from pfd_ref.kernels.scoring import _gemm_block_rows
from pfd_ref import twins
from pfd_ref.serving import TOWER_WIDTHS, tower_cost_figure

DTYPE = np.float32
K = 100
MLP_WIDTHS = (256, 512, 256, 1)
TOWER_D = 128  # the paper's tower output: coarse ranking scores 128-d vectors
# Fine ranking: the paper's CVR student, MLP 512-256-128 over the CTR teacher's inputs. The
# paper gives no input widths; the user side is taken as §5.2's 1024-wide tower input (user
# features and behaviour history), the candidate side as 256 item + 128 user x item columns,
# and a second case with a narrow user side shows how the gain depends on it.
FINE_HIDDEN = (512, 256, 128, 1)
FINE_CASES = ((1024, 384), (256, 384))  # (user block width, candidate block width)
FINE_CANDIDATES = 1000
PAPER_MULTIPLY_ADD_RATIO, PAPER_TIME_RATIO = 5400, 830  # §5.2: ~6.9e5 vs 128 multiply-adds; 89.695 s vs 0.108 s


def sizes(quick: bool) -> dict:
    if quick:
        return dict(d=(64,), n=(10_000, 100_000), batch_n=(10_000,), mlp_batches=(1, 64, 1024), repeats=5,
                    catalogue=200_000, candidates=((10_000, 1000), (1000, 100)), requests=((8, 2000),),
                    tower_candidates=2000, faiss_cases=((1, 100_000), (256, 10_000)))
    return dict(
        d=(32, 64, 128),
        n=(10_000, 100_000, 1_000_000),
        batch_n=(10_000, 100_000, 1_000_000),
        mlp_batches=(1, 64, 1024, 65536),
        repeats=11,
        catalogue=10_000_000,  # the coarse-ranking catalogue: 10^7 x 128 float32, 5.1 GB
        candidates=((100_000, 1000), (10_000, 1000), (10_000, 100)),  # (candidates per request, k)
        requests=((16, 10_000), (64, 2000)),  # (requests, candidates each) of the batch section
        tower_candidates=100_000,
        faiss_cases=((1, 1_000_000), (256, 100_000)),  # (users, items) at d = 64: issue 18's two cases
    )


def ms(seconds: float) -> float:
    return seconds * 1e3


# ----------------------------------------------------------------------------- peers


def numpy_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """NumPy's top-k of one score vector: argpartition, then sort the k (ties to lower index)."""
    part = np.argpartition(-scores, k - 1)[:k] if k < scores.shape[0] else np.arange(scores.shape[0])
    return part[np.lexsort((part, -scores[part]))]


def numpy_mlp(weights, biases):
    """NumPy forward with buffers allocated once per batch size (matmul out=, in-place ops)."""
    buffers = {}

    def forward(x):
        n = x.shape[0]
        if n not in buffers:
            buffers[n] = [np.empty((n, w.shape[1]), x.dtype) for w in weights]
        h = x
        for layer, (w, b, out) in enumerate(zip(weights, biases, buffers[n])):
            np.matmul(h, w, out=out)
            out += b
            if layer < len(weights) - 1:
                np.maximum(out, 0, out=out)
            h = out
        return h

    return forward


def torch_mlp(torch, weights, biases):
    tw = [torch.from_numpy(w) for w in weights]
    tb = [torch.from_numpy(b) for b in biases]

    def forward(x):
        with torch.inference_mode():
            h = torch.from_numpy(x)
            for layer, (w, b) in enumerate(zip(tw, tb)):
                h = torch.addmm(b, h, w)
                if layer < len(tw) - 1:
                    h = torch.relu(h)
            return h

    return forward


# ----------------------------------------------------------------------------- sections


def bench_single_user(cfg, rng, torch, threads):
    triad, triad_bytes = make_triad(threads)
    rows = []
    for d in cfg["d"]:
        for n in cfg["n"]:
            items = rng.standard_normal((n, d)).astype(DTYPE)
            user = rng.standard_normal(d).astype(DTYPE)
            candidates = {
                "kernel": lambda: kernels.score_items(items, user),
                "numpy": lambda: items @ user,
                "triad": triad,
            }
            if torch is not None:
                t_items, t_user = torch.from_numpy(items), torch.from_numpy(user)
                candidates["torch"] = lambda: torch.mv(t_items, t_user)
            t = time_side_by_side(candidates, cfg["repeats"])
            gbps = items.nbytes / t["kernel"] / 1e9
            triad_gbps = triad_bytes / t["triad"] / 1e9
            rows.append(
                dict(
                    d=d, N=n, kernel_ms=ms(t["kernel"]), Mcand_per_s=n / t["kernel"] / 1e6,
                    numpy_ms=ms(t["numpy"]), torch_ms=ms(t["torch"]) if "torch" in t else "-",
                    x_numpy=t["numpy"] / t["kernel"], x_torch=t["torch"] / t["kernel"] if "torch" in t else "-",
                    GBps=gbps, triad_GBps=triad_gbps, pct_triad=100 * gbps / triad_gbps,
                )
            )
    print_table(
        "Single-user scoring V @ u (float32; GBps = N d 4 bytes / time; the triad runs in the same "
        "round-robin; N d 4 <= 32 MB fits in L3, so only N = 1M is bound by memory)",
        ["d", "N", "kernel_ms", "Mcand_per_s", "numpy_ms", "torch_ms", "x_numpy", "x_torch", "GBps", "triad_GBps", "pct_triad"],
        rows,
    )
    return rows


def bench_fused_top_k(cfg, rng, torch):
    rows = []
    for d in cfg["d"]:
        for n in cfg["n"]:
            items = rng.standard_normal((n, d)).astype(DTYPE)
            user = rng.standard_normal(d).astype(DTYPE)
            candidates = {
                "top_k": lambda: kernels.top_k_items(items, user, K),
                "score_only": lambda: kernels.score_items(items, user),
                "numpy": lambda: numpy_top_k(items @ user, K),
            }
            if torch is not None:
                t_items, t_user = torch.from_numpy(items), torch.from_numpy(user)
                candidates["torch"] = lambda: torch.topk(torch.mv(t_items, t_user), K)
            t = time_side_by_side(candidates, cfg["repeats"])
            rows.append(
                dict(
                    d=d, N=n, top_k_ms=ms(t["top_k"]), score_only_ms=ms(t["score_only"]),
                    over_scoring=t["top_k"] / t["score_only"], numpy_ms=ms(t["numpy"]),
                    x_numpy=t["numpy"] / t["top_k"], torch_ms=ms(t["torch"]) if "torch" in t else "-",
                    x_torch=t["torch"] / t["top_k"] if "torch" in t else "-",
                )
            )
    print_table(
        f"Fused top-k, one user, k = {K} (numpy: V @ u + argpartition + sort of the k; torch: mv + topk)",
        ["d", "N", "top_k_ms", "score_only_ms", "over_scoring", "numpy_ms", "x_numpy", "torch_ms", "x_torch"],
        rows,
    )
    return rows


def bench_select(cfg, rng, torch):
    rows = []
    for n in cfg["n"]:
        scores = rng.standard_normal(n).astype(DTYPE)
        candidates = {"kernel": lambda: kernels.top_k_scores(scores, K), "numpy": lambda: numpy_top_k(scores, K)}
        if torch is not None:
            t_scores = torch.from_numpy(scores)
            candidates["torch"] = lambda: torch.topk(t_scores, K)
        t = time_side_by_side(candidates, cfg["repeats"])
        rows.append(
            dict(
                N=n, kernel_ms=ms(t["kernel"]), numpy_ms=ms(t["numpy"]), x_numpy=t["numpy"] / t["kernel"],
                torch_ms=ms(t["torch"]) if "torch" in t else "-", x_torch=t["torch"] / t["kernel"] if "torch" in t else "-",
            )
        )
    print_table(
        f"Top-k of precomputed scores, k = {K} (numpy: argpartition + sort of the k; torch: topk)",
        ["N", "kernel_ms", "numpy_ms", "x_numpy", "torch_ms", "x_torch"],
        rows,
    )
    return rows


def bench_batched(cfg, rng, torch, gemm_peak):
    rows = []
    m = 256
    for d in cfg["d"]:
        for n in cfg["batch_n"]:
            items = rng.standard_normal((n, d)).astype(DTYPE)
            users = rng.standard_normal((m, d)).astype(DTYPE)
            block = _gemm_block_rows(m, items.itemsize)
            buffer = np.empty(m * min(block, n), DTYPE)

            def kernel_gemm_part():
                # the GEMM calls of kernels.top_k_items alone: same blocks, same buffer
                for b0 in range(0, n, block):
                    b1 = min(b0 + block, n)
                    np.matmul(users, items[b0:b1].T, out=buffer[: m * (b1 - b0)].reshape(m, b1 - b0))

            candidates = {
                "kernel": lambda: kernels.top_k_items(items, users, K),
                "kernel_gemm": kernel_gemm_part,
                "numpy_gemm": lambda: users @ items.T,
            }
            if torch is not None:
                t_items, t_users = torch.from_numpy(items), torch.from_numpy(users)
                candidates["torch"] = lambda: torch.topk(torch.mm(t_users, t_items.T), K, dim=1)
            t = time_side_by_side(candidates, max(3, cfg["repeats"] // 2))
            flops = 2 * m * n * d
            rows.append(
                dict(
                    d=d, N=n, kernel_ms=ms(t["kernel"]), torch_ms=ms(t["torch"]) if "torch" in t else "-",
                    x_torch=t["torch"] / t["kernel"] if "torch" in t else "-",
                    gemm_part_ms=ms(t["kernel_gemm"]), numpy_gemm_ms=ms(t["numpy_gemm"]),
                    gemm_vs_numpy=t["numpy_gemm"] / t["kernel_gemm"],
                    gemm_GFLOPs=flops / t["kernel_gemm"] / 1e9, pct_peak=100 * flops / t["kernel_gemm"] / 1e9 / gemm_peak,
                    select_share=1 - t["kernel_gemm"] / t["kernel"],
                )
            )
    print_table(
        f"Batched top-k, {m} users, k = {K} (kernel: BLAS GEMM by item block + Numba selection; "
        "torch: mm + topk; gemm_vs_numpy > 1 means the blocked GEMM is faster than users @ items.T)",
        ["d", "N", "kernel_ms", "torch_ms", "x_torch", "gemm_part_ms", "numpy_gemm_ms", "gemm_vs_numpy",
         "gemm_GFLOPs", "pct_peak", "select_share"],
        rows,
    )
    return rows


def bench_mlp(cfg, rng, torch, gemm_peak):
    weights = [(rng.standard_normal((a, b)) / np.sqrt(a)).astype(DTYPE) for a, b in zip(MLP_WIDTHS[:-1], MLP_WIDTHS[1:])]
    biases = [(0.1 * rng.standard_normal(b)).astype(DTYPE) for b in MLP_WIDTHS[1:]]
    flops_per_row = 2 * sum(a * b for a, b in zip(MLP_WIDTHS[:-1], MLP_WIDTHS[1:]))
    numpy_forward = numpy_mlp(weights, biases)
    torch_forward = torch_mlp(torch, weights, biases) if torch is not None else None
    # the least a batch-1 forward must do: read every weight once (from cache after warm-up)
    read_weights, weight_bytes = make_read(np.concatenate([w.ravel() for w in weights]))
    rows = []
    for batch in cfg["mlp_batches"]:
        x = rng.standard_normal((batch, MLP_WIDTHS[0])).astype(DTYPE)
        candidates = {"kernel": lambda: kernels.mlp_scores(x, weights, biases), "numpy": lambda: numpy_forward(x)}
        if torch_forward is not None:
            candidates["torch"] = lambda: torch_forward(x)
        if batch == 1:
            candidates["read_weights"] = read_weights
        t = time_side_by_side(candidates, cfg["repeats"])
        rows.append(
            dict(
                batch=batch, kernel_us=t["kernel"] * 1e6, numpy_us=t["numpy"] * 1e6, x_numpy=t["numpy"] / t["kernel"],
                torch_us=t["torch"] * 1e6 if "torch" in t else "-", x_torch=t["torch"] / t["kernel"] if "torch" in t else "-",
                GFLOPs=flops_per_row * batch / t["kernel"] / 1e9,
                pct_peak=100 * flops_per_row * batch / t["kernel"] / 1e9 / gemm_peak,
                read_weights_us=t["read_weights"] * 1e6 if "read_weights" in t else "-",
            )
        )
    print_table(
        "MLP 256-512-256-1 scoring (numpy: matmul into preallocated buffers, in-place bias and ReLU; "
        f"torch: eager addmm + relu under inference_mode; read_weights_us: one thread reading the "
        f"{weight_bytes / 2**20:.1f} MiB of weights once, timed beside them)",
        ["batch", "kernel_us", "numpy_us", "x_numpy", "torch_us", "x_torch", "GFLOPs", "pct_peak", "read_weights_us"],
        rows,
    )
    return rows


# ----------------------------------------------------------------------------- FAISS


FAISS_D = 64


def import_faiss():
    """``faiss`` (in the optional extra ``bench``: ``pip install -e ".[bench]"``, or ``pip install
    faiss-cpu``), or None when it is not installed."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def bench_faiss(cfg, rng, threads, faiss=None):
    """Exact top-k against FAISS's flat inner-product index (``IndexFlatIP``: the exhaustive
    search of the similarity-search library, BLAS for a batch of queries, on ``threads``
    OpenMP threads): one user and a batch of 256 users over ``N x FAISS_D`` items, ``k = K``,
    timed round-robin. ``ids_agree``: the share of ``top_k_items``'s ids that FAISS returns too
    (ids whose scores tie at the k-th place may differ). Without faiss (``faiss`` None after
    ``import_faiss``) the section is skipped and the reason printed."""
    faiss = faiss or import_faiss()
    if faiss is None:
        print("\nFAISS IndexFlatIP: section skipped, faiss is not installed (the optional extra 'bench': "
              "pip install -e \".[bench]\", or pip install faiss-cpu)")
        return []
    faiss.omp_set_num_threads(threads)
    rows = []
    for users, n in cfg["faiss_cases"]:
        items = rng.standard_normal((n, FAISS_D)).astype(DTYPE)
        queries = rng.standard_normal((users, FAISS_D)).astype(DTYPE)
        index = faiss.IndexFlatIP(FAISS_D)
        index.add(items)
        query = queries[0] if users == 1 else queries
        t = time_side_by_side({"kernel": lambda: kernels.top_k_items(items, query, K),
                               "faiss": lambda: index.search(queries, K)}, cfg["repeats"])
        ids = np.atleast_2d(kernels.top_k_items(items, query, K)[1])
        faiss_ids = index.search(queries, K)[1]
        rows.append(dict(users=users, d=FAISS_D, N=n, kernel_ms=ms(t["kernel"]), faiss_ms=ms(t["faiss"]),
                         x_faiss=t["faiss"] / t["kernel"],
                         ids_agree=float(np.mean([np.isin(a, b).mean() for a, b in zip(ids, faiss_ids)]))))
    print_table(f"FAISS IndexFlatIP {faiss.__version__} ({threads} OpenMP thread(s)) against top_k_items, k = {K} "
                "(x_faiss > 1: the kernel is faster; ids_agree: share of the kernel's ids that FAISS returns too)",
                ["users", "d", "N", "kernel_ms", "faiss_ms", "x_faiss", "ids_agree"], rows)
    return rows


# ----------------------------------------------------------------------------- funnel: coarse ranking


def numpy_candidates_top_k(items, user, ids, k):
    """NumPy's coarse ranking of a request: gather, score, argpartition, sort the k."""
    scores = np.take(items, ids, axis=0) @ user
    best = numpy_top_k(scores, k)
    return scores[best], ids[best]


def anonymous_huge_pages_gb() -> float | str:
    """GB of this process's memory in transparent huge pages (Linux), else "-"."""
    try:
        with open("/proc/self/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return "-"


def make_catalogue(rng, n: int, d: int) -> np.ndarray:
    """``(n, d)`` float32 standard normal rows, filled a million at a time (no float64 copy)."""
    items = np.empty((n, d), DTYPE)
    for a in range(0, n, 1_000_000):
        items[a:a + 1_000_000] = rng.standard_normal((min(1_000_000, n - a), d), dtype=DTYPE)
    return items


def bench_coarse_ranking(cfg, rng, torch):
    """Top-k of a request's candidates in a catalogue far larger than the caches (10^7 x 128
    in a full run), against NumPy and PyTorch and against reading the same rows alone; then
    a batch of requests against the same requests one by one."""
    items = make_catalogue(rng, cfg["catalogue"], TOWER_D)
    huge_pages_gb = anonymous_huge_pages_gb()
    t_items = torch.from_numpy(items) if torch is not None else None
    rows = []
    for c, k in cfg["candidates"]:
        user = rng.standard_normal(TOWER_D).astype(DTYPE)
        ids = rng.choice(items.shape[0], c, replace=False)
        reads, read_bytes = make_gather_reads(items, ids)
        candidates = {
            "kernel": lambda: kernels.top_k_items(items, user, k, candidates=ids),
            "numpy": lambda: numpy_candidates_top_k(items, user, ids, k),
            **reads,
        }
        if torch is not None:
            t_ids, t_user = torch.from_numpy(ids), torch.from_numpy(user)
            candidates["torch"] = lambda: torch.topk(torch.mv(torch.index_select(t_items, 0, t_ids), t_user), k)
        # every call cold: a request's candidates are not in cache, and a read must not find
        # the rows the candidate before it read (same rows: the reads follow one another)
        t = time_side_by_side(candidates, cfg["repeats"], cold_caches=True)
        limit = min(t[name] for name in reads)
        rows.append(dict(
            N=items.shape[0], huge_pages_GB=huge_pages_gb, candidates=c, d=TOWER_D, k=k, kernel_ms=ms(t["kernel"]),
            GBps=read_bytes / t["kernel"] / 1e9, gather_limit_GBps=read_bytes / limit / 1e9,
            limit_by=min(reads, key=t.get), pct_limit=100 * limit / t["kernel"],
            numpy_ms=ms(t["numpy"]), x_numpy=t["numpy"] / t["kernel"],
            torch_ms=ms(t["torch"]) if "torch" in t else "-", x_torch=t["torch"] / t["kernel"] if "torch" in t else "-",
        ))
    print_table(
        f"Coarse ranking of a request: top-k of c candidate rows of an N x {TOWER_D} float32 catalogue "
        "(kernel: top_k_items(..., candidates=ids), gather + score + select in one pass; numpy: take + @ + "
        "argpartition + sort of the k; torch: index_select + mv + topk). gather_limit: the fastest read of the same "
        "rows alone in the same rounds (limit_by: a Numba sum of 4 or 8 random rows at a time, or of one row at a time "
        "with the rows 8 or 16 ahead prefetched, or np.take into a buffer); every call one sample, after reading 128 MB "
        "to empty the caches (cold rows for every candidate alike); GBps = c d 4 bytes / time; huge_pages_GB: "
        "the process's memory in 2 MiB pages (AnonHugePages), the catalogue's share of which sets the TLB misses of random rows",
        ["N", "huge_pages_GB", "candidates", "d", "k", "kernel_ms", "GBps", "gather_limit_GBps", "limit_by", "pct_limit", "numpy_ms",
         "x_numpy", "torch_ms", "x_torch"],
        rows,
    )
    batch_rows = []
    for m, c in cfg["requests"]:
        users = rng.standard_normal((m, TOWER_D)).astype(DTYPE)
        ids = np.stack([rng.choice(items.shape[0], c, replace=False) for _ in range(m)])
        t = time_side_by_side({
            "batch": lambda: kernels.top_k_items(items, users, K, candidates=ids),
            "one_by_one": lambda: [kernels.top_k_items(items, users[r], K, candidates=ids[r]) for r in range(m)],
        }, cfg["repeats"])
        batch_rows.append(dict(requests=m, candidates=c, threads=numba.get_num_threads(),
                               split=kernels._common.parallel_chunks(m * c * TOWER_D) > 1,
                               batch_ms=ms(t["batch"]), one_by_one_ms=ms(t["one_by_one"]),
                               x_one_by_one=t["one_by_one"] / t["batch"],
                               GBps=m * c * TOWER_D * 4 / t["batch"] / 1e9))
    print_table(
        f"A batch of requests, each user with its own candidates, k = {K}: top_k_items(items, users (m, d), k, "
        "candidates (m, c)), which divides the requests among Numba's threads when split (work m c d >= "
        f"{kernels._common.PARALLEL_MIN_WORK}), against the same requests one call each",
        ["requests", "candidates", "threads", "split", "batch_ms", "one_by_one_ms", "x_one_by_one", "GBps"],
        batch_rows,
    )
    return rows, batch_rows


# ----------------------------------------------------------------------------- funnel: fine ranking


def numpy_fine_ranking(user_width, weights, biases, split: bool):
    """NumPy's forward for one request, matmul into preallocated buffers (``numpy_mlp``):
    the plain MLP over [user repeated, candidate], or the split algebra (the first layer's
    bias replaced, per request, by ``u @ W_u + b_0``)."""
    if not split:
        forward = numpy_mlp(weights, biases)
        return lambda user_x, x: forward(np.concatenate([np.broadcast_to(user_x, (x.shape[0], user_width)), x], axis=1))
    w_user = weights[0][:user_width]
    request_biases = [b.copy() for b in biases]  # [0] holds u @ W_u + b_0 of the current request
    forward = numpy_mlp([weights[0][user_width:], *weights[1:]], request_biases)

    def run(user_x, x):
        np.matmul(user_x, w_user, out=request_biases[0])
        request_biases[0] += biases[0]
        return forward(x)

    return run


def torch_fine_ranking(torch, user_width, weights, biases, split: bool):
    """PyTorch eager for one request (inference_mode): plain (torch.cat of the user row
    expanded and the candidates, then addmm + relu) or split (u @ W_u + b_0 once, then
    addmm(a, x, W_c) + relu)."""
    tw = [torch.from_numpy(w) for w in weights]
    tb = [torch.from_numpy(b) for b in biases]
    w_user, w_candidate = tw[0][:user_width], tw[0][user_width:]

    def run(user_x, x):
        with torch.inference_mode():
            u, h = torch.from_numpy(user_x), torch.from_numpy(x)
            if split:
                h = torch.relu(torch.addmm(torch.addmv(tb[0], w_user.T, u), h, w_candidate))
            else:
                h = torch.relu(torch.addmm(tb[0], torch.cat([u.expand(h.shape[0], -1), h], dim=1), tw[0]))
            for layer in range(1, len(tw)):
                h = torch.addmm(tb[layer], h, tw[layer])
                if layer < len(tw) - 1:
                    h = torch.relu(h)
            return h

    return run


def bench_fine_ranking(cfg, rng, torch, gemm_peak):
    """The fine-ranking MLP over one request's candidates, the user block of the first layer
    computed once (``kernels.mlp_scores_split``), against the plain forward pass over
    ``[user repeated, candidate]`` (the kernel's ``mlp_scores``, NumPy, PyTorch eager) and the
    same split algebra in NumPy and PyTorch."""
    rows = []
    for user_width, candidate_width in FINE_CASES:
        widths = (user_width + candidate_width, *FINE_HIDDEN)
        weights = [(rng.standard_normal((a, b)) / np.sqrt(a)).astype(DTYPE) for a, b in zip(widths[:-1], widths[1:])]
        biases = [(0.1 * rng.standard_normal(b)).astype(DTYPE) for b in widths[1:]]
        user_x = rng.standard_normal(user_width).astype(DTYPE)
        x = rng.standard_normal((FINE_CANDIDATES, candidate_width)).astype(DTYPE)
        w_user, w_candidate = np.ascontiguousarray(weights[0][:user_width]), np.ascontiguousarray(weights[0][user_width:])
        candidates = {
            "kernel_split": lambda: kernels.mlp_scores_split(user_x, x, w_user, [w_candidate, *weights[1:]], biases),
            "kernel_plain": lambda: kernels.mlp_scores(
                np.concatenate([np.broadcast_to(user_x, (x.shape[0], user_width)), x], axis=1), weights, biases),
            "numpy_plain": lambda f=numpy_fine_ranking(user_width, weights, biases, False): f(user_x, x),
            "numpy_split": lambda f=numpy_fine_ranking(user_width, weights, biases, True): f(user_x, x),
        }
        if torch is not None:
            candidates["torch_plain"] = lambda f=torch_fine_ranking(torch, user_width, weights, biases, False): f(user_x, x)
            candidates["torch_split"] = lambda f=torch_fine_ranking(torch, user_width, weights, biases, True): f(user_x, x)
        t = time_side_by_side(candidates, cfg["repeats"])
        split_flops = 2 * user_width * widths[1] + 2 * FINE_CANDIDATES * (
            candidate_width * widths[1] + sum(a * b for a, b in zip(widths[1:-1], widths[2:])))
        plain_flops = 2 * FINE_CANDIDATES * sum(a * b for a, b in zip(widths[:-1], widths[1:]))
        row = dict(user=user_width, candidate=candidate_width, n=FINE_CANDIDATES,
                   kernel_split_us=t["kernel_split"] * 1e6, kernel_plain_us=t["kernel_plain"] * 1e6,
                   numpy_plain_us=t["numpy_plain"] * 1e6, numpy_split_us=t["numpy_split"] * 1e6,
                   x_numpy_plain=t["numpy_plain"] / t["kernel_split"], x_numpy_split=t["numpy_split"] / t["kernel_split"])
        if torch is not None:
            row.update(torch_plain_us=t["torch_plain"] * 1e6, torch_split_us=t["torch_split"] * 1e6,
                       x_torch_plain=t["torch_plain"] / t["kernel_split"], x_torch_split=t["torch_split"] / t["kernel_split"])
        row.update(flops_saved=1 - split_flops / plain_flops, GFLOPs=split_flops / t["kernel_split"] / 1e9,
                   pct_gemm_peak=100 * split_flops / t["kernel_split"] / 1e9 / gemm_peak)
        rows.append(row)
    print_table(
        f"Fine ranking of one request: MLP {'-'.join(map(str, FINE_HIDDEN))} over {FINE_CANDIDATES} candidates, the "
        "input [user block, candidate block] (widths in the first columns). kernel_split: mlp_scores_split (the user "
        "block's product once); *_plain: the plain forward over the user row repeated on every candidate (concatenation "
        "included); *_split: the same split algebra in NumPy / PyTorch eager. flops_saved: the share of the plain "
        "pass's multiply-adds the split skips; GFLOPs and pct_gemm_peak: the split pass against the run's GEMM peak",
        ["user", "candidate", "n", "kernel_split_us", "kernel_plain_us", "numpy_plain_us", "numpy_split_us",
         "x_numpy_plain", "x_numpy_split", "torch_plain_us", "torch_split_us", "x_torch_plain", "x_torch_split",
         "flops_saved", "GFLOPs", "pct_gemm_peak"],
        rows,
    )
    return rows


# ----------------------------------------------------------------------------- funnel: the paper's cost figure


def bench_tower_cost(cfg, limits):
    """The paper's §5.2 figure (pfd_ref.serving.tower_cost_figure) with the run's limits."""
    figure = tower_cost_figure(candidates=cfg["tower_candidates"], repeats=cfg["repeats"])
    tower_flops = 2 * figure["multiply_adds_tower"]
    vector_bytes = TOWER_D * 4
    row = dict(
        figure, paper_multiply_add_ratio=PAPER_MULTIPLY_ADD_RATIO, paper_time_ratio=PAPER_TIME_RATIO,
        tower_GFLOPs=tower_flops / figure["tower_s"] / 1e9,
        tower_pct_gemm_peak=100 * tower_flops / figure["tower_s"] / 1e9 / limits["gemm_float32_GFLOPs"],
        inner_product_GBps=vector_bytes / figure["inner_product_s"] / 1e9,
        inner_product_pct_triad=100 * vector_bytes / figure["inner_product_s"] / 1e9 / limits["triad_GBps"],
    )
    print_table(
        f"The paper's §5.2 cost figure: a candidate through the tower {'-'.join(map(str, TOWER_WIDTHS))} "
        f"(kernels.mlp_scores) against a {TOWER_D}-d inner product (kernels.score_items), per candidate, batched over "
        f"{cfg['tower_candidates']} candidates and one call at a time; paper: {PAPER_MULTIPLY_ADD_RATIO} x in "
        f"multiply-adds, {PAPER_TIME_RATIO} x measured. Limits: the tower against the GEMM peak, the inner product "
        "(one vector read per candidate) against the triad bandwidth",
        ["multiply_add_ratio", "paper_multiply_add_ratio", "tower_s", "inner_product_s", "time_ratio",
         "paper_time_ratio", "tower_s_one_at_a_time", "inner_product_s_one_at_a_time", "time_ratio_one_at_a_time",
         "tower_GFLOPs", "tower_pct_gemm_peak", "inner_product_GBps", "inner_product_pct_triad"],
        [row],
    )
    return row


def _counting_path(ids, grads, vocab):
    """``kernels.embedding``'s counting path, forced: one scratch entry per table row."""
    one_per_row = np.arange(ids.shape[0] + 1, dtype=np.int64)
    return kernels.embedding._coalesce_counted("ids", ids, one_per_row, grads, 0, grads.shape[1], False, vocab)


def _np_unique_path(ids, grads, vocab):
    """``kernels.embedding``'s sorting path, forced: ``np.unique`` renumbers, then the same kernel."""
    rows, renumbered = np.unique(ids, return_inverse=True)
    return rows, _counting_path(renumbered.reshape(-1), grads, rows.shape[0])[1]


def _reduceat_coalesce(ids, grads):
    """A NumPy peer of the scatter-add: stable argsort of the ids, then ``np.add.reduceat``
    per id (which adds runs of 8 rows or more pairwise, so to rounding of the kernel)."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    return sorted_ids[starts], np.add.reduceat(grads[order], starts, axis=0)


def bench_scatter_add(cfg, rng):
    """``kernels.coalesce_rows`` (which picks its grouping path) against each path forced,
    a NumPy peer (stable argsort + reduceat) and the twin (``np.unique`` + ``np.add.at``). The first rows are the
    tables of the training benchmark's student (batch 1024, 16-d), then a table just above
    and below the counting/sorting switch, then large ones."""
    rows = []
    cases = [(1024, 16, 100), (1024, 16, 10_000), (1024, 16, 30_000), (1024, 16, 60_000),
             (4096, 32, 1_000_000), (65536, 64, 1_000_000), (65536, 64, 1000)]
    for n, d, vocab in cases:
        ids = np.minimum(rng.zipf(1.2, n) - 1, vocab - 1).astype(np.int64)  # a few hot ids, a long tail
        uniform = n == 1024  # the training batches' ids are closer to uniform over the table
        if uniform:
            ids = rng.integers(0, vocab, n)
        grads = rng.standard_normal((n, d)).astype(DTYPE)
        t = time_side_by_side(
            {
                "kernel": lambda: kernels.coalesce_rows(ids, grads, vocab),
                "counting": lambda: _counting_path(ids, grads, vocab),
                "np_unique": lambda: _np_unique_path(ids, grads, vocab),
                "reduceat": lambda: _reduceat_coalesce(ids, grads),
                "add_at": lambda: twins.coalesce_rows(ids, grads, vocab),
            },
            cfg["repeats"],
        )
        counting = vocab <= kernels.embedding.COUNTING_ROWS_PER_ID * n + kernels.embedding.COUNTING_MIN_ROWS
        rows.append(
            dict(
                n=n, d=d, vocab=vocab, ids="uniform" if uniform else "zipf", unique=int(np.unique(ids).shape[0]),
                path="counting" if counting else "np.unique", kernel_us=t["kernel"] * 1e6,
                counting_us=t["counting"] * 1e6, np_unique_us=t["np_unique"] * 1e6,
                reduceat_us=t["reduceat"] * 1e6, x_reduceat=t["reduceat"] / t["kernel"],
                add_at_us=t["add_at"] * 1e6, x_add_at=t["add_at"] / t["kernel"],
            )
        )
    print_table(
        "Embedding scatter-add (coalesce gradient rows by id). kernel: kernels.coalesce_rows, grouping by "
        "the path named; counting / np_unique: each grouping path forced, the same summing kernel; "
        "reduceat: stable argsort + np.add.reduceat; add_at: pfd_ref.twins.coalesce_rows (np.unique + np.add.at)",
        ["n", "d", "vocab", "ids", "unique", "path", "kernel_us", "counting_us", "np_unique_us", "reduceat_us",
         "x_reduceat", "add_at_us", "x_add_at"],
        rows,
    )
    return rows


def bench_pooled(cfg, rng):
    """The multi-id field of the training benchmark (100 ids, 16-d, mean pooling, about 5 ids
    per row) and a larger one: ``kernels.pool_rows`` and ``kernels.coalesce_pooled_rows``
    against their NumPy twins in ``pfd_ref.twins``."""
    rows = []
    for n, d, vocab, mean_length in [(1024, 16, 100, 5), (65536, 32, 10_000, 5)]:
        offsets = np.concatenate([[0], np.cumsum(rng.poisson(mean_length, n))]).astype(np.int64)
        values = rng.integers(0, vocab, offsets[-1])
        table = rng.standard_normal((vocab, d)).astype(DTYPE)
        d_out = rng.standard_normal((n, d)).astype(DTYPE)
        t = time_side_by_side(
            {
                "pool_kernel": lambda: kernels.pool_rows(table, values, offsets, "mean"),
                "pool_twin": lambda: twins.pool_rows(table, values, offsets, "mean"),
                "backward_kernel": lambda: kernels.coalesce_pooled_rows(d_out, values, offsets, vocab, "mean"),
                "backward_twin": lambda: twins.coalesce_pooled_rows(d_out, values, offsets, vocab, "mean"),
            },
            cfg["repeats"],
        )
        rows.append(
            dict(
                n=n, d=d, vocab=vocab, ids=int(offsets[-1]), pool_kernel_us=t["pool_kernel"] * 1e6,
                pool_twin_us=t["pool_twin"] * 1e6, x_pool_twin=t["pool_twin"] / t["pool_kernel"],
                backward_kernel_us=t["backward_kernel"] * 1e6, backward_twin_us=t["backward_twin"] * 1e6,
                x_backward_twin=t["backward_twin"] / t["backward_kernel"],
            )
        )
    print_table(
        "Pooled multi-id field, mean pooling (pool: kernels.pool_rows vs gather + np.add.reduceat, the same bits; "
        "backward: kernels.coalesce_pooled_rows vs its twin, np.repeat + np.add.at, the same bits)",
        ["n", "d", "vocab", "ids", "pool_kernel_us", "pool_twin_us", "x_pool_twin", "backward_kernel_us",
         "backward_twin_us", "x_backward_twin"],
        rows,
    )
    return rows


@njit(nogil=True)
def _gather_loop(table, ids, out):
    """The rejected gather kernel, kept here so that the decision can be rechecked."""
    for r in range(ids.shape[0]):
        out[r, :] = table[ids[r], :]


def bench_gather(cfg, rng):
    rows = []
    vocab = 1_000_000
    for n, d in [(4096, 32), (65536, 64)]:
        table = rng.standard_normal((vocab, d)).astype(DTYPE)
        out = np.empty((n, d), DTYPE)
        for kind, ids in [
            ("clustered", np.minimum(rng.zipf(1.2, n) - 1, vocab - 1).astype(np.int64)),
            ("uniform", rng.integers(0, vocab, n)),
        ]:
            t = time_side_by_side(
                {"numba_loop": lambda: _gather_loop(table, ids, out), "fancy_index": lambda: table[ids]},
                cfg["repeats"],
            )
            rows.append(
                dict(n=n, d=d, ids=kind, numba_loop_us=t["numba_loop"] * 1e6, fancy_index_us=t["fancy_index"] * 1e6,
                     x_fancy_index=t["fancy_index"] / t["numba_loop"])
            )
    print_table(
        "Embedding gather table[ids] (1M-row table; no kernel ships: numba_loop is the candidate that did not pay)",
        ["n", "d", "ids", "numba_loop_us", "fancy_index_us", "x_fancy_index"],
        rows,
    )
    return rows


def bench_parallel_threshold(cfg, rng):
    """One chunk (serial) vs one chunk per thread, by work size (N d multiply-adds)."""
    rows = []
    d = 64
    for n in (1024, 4096, 16384, 65536, 131072, 262144, 1048576):
        items = rng.standard_normal((n, d)).astype(DTYPE)
        user = rng.standard_normal(d).astype(DTYPE)
        threshold = kernels._common.PARALLEL_MIN_WORK

        def forced(value, fn):
            def run():
                kernels._common.PARALLEL_MIN_WORK = value
                try:
                    return fn()
                finally:
                    kernels._common.PARALLEL_MIN_WORK = threshold
            return run

        t = time_side_by_side(
            {
                "score_serial": forced(1 << 62, lambda: kernels.score_items(items, user)),
                "score_parallel": forced(0, lambda: kernels.score_items(items, user)),
                "top_k_serial": forced(1 << 62, lambda: kernels.top_k_items(items, user, K)),
                "top_k_parallel": forced(0, lambda: kernels.top_k_items(items, user, K)),
            },
            cfg["repeats"],
        )
        rows.append(
            dict(
                work=n * d, N=n, score_serial_us=t["score_serial"] * 1e6, score_parallel_us=t["score_parallel"] * 1e6,
                top_k_serial_us=t["top_k_serial"] * 1e6, top_k_parallel_us=t["top_k_parallel"] * 1e6,
            )
        )
    print_table(
        f"Parallel threshold, d = {d}, {numba.get_num_threads()} threads (the kernels split the rows "
        f"among threads from work = N d >= {kernels._common.PARALLEL_MIN_WORK})",
        ["work", "N", "score_serial_us", "score_parallel_us", "top_k_serial_us", "top_k_parallel_us"],
        rows,
    )
    return rows


COLD_START_CODE = """
import os, sys, time
start = time.perf_counter()
from pfd_ref import kernels
imported, imported_cpu = time.perf_counter(), time.process_time()
import numpy as np
exec(sys.argv[1])
done, done_cpu, children = time.perf_counter(), time.process_time(), os.times()
print(imported - start, done - imported, done_cpu - imported_cpu, children.children_user + children.children_system,
      kernels.__file__)
"""
# The statement each variant times (after `from pfd_ref import kernels` and `import numpy as np`).
COMPILE_ALL, BOTH_DTYPES = "compile_all() (its default: the float32 kernels)", "compile_all(dtypes=(float32, float64))"
COMPILE_ALL_HERE = "compile_all(workers=1) (the float32 kernels in this process alone)"
COLD_START_VARIANTS = {
    COMPILE_ALL: "kernels.compile_all()",
    COMPILE_ALL_HERE: "kernels.compile_all(workers=1)",
    BOTH_DTYPES: "kernels.compile_all(dtypes=(np.float32, np.float64))",
    "float32 training kernels (pfd-ref run)": "kernels.compile_all((np.float32,), ('training',))",
}
# The code before: its compile_all() (every kernel for float32 and float64, the default up to
# 226175c, which took no dtypes) and its float32 half alone (226175c's compile_all loop for
# float32 with its default MLP depth 3, and the tokenizer), the same work as the float32 default.
BASELINE_BOTH, BASELINE_FLOAT32 = "compile_all() at {} (float32 and float64)", "float32 kernels at {}"
BASELINE_VARIANTS = {
    BASELINE_BOTH: "kernels.compile_all()",
    BASELINE_FLOAT32: """
import inspect
from pfd_ref.kernels import activation, adagrad, adam, embedding, mlp, scoring, text
if "dtypes" in inspect.signature(kernels.compile_all).parameters:
    kernels.compile_all(dtypes=(np.float32,))
else:
    for module in (scoring, embedding, adam, adagrad, activation):
        module.warm_up(np.float32)
    mlp.warm_up(np.float32, (3,))
    text.warm_up()
""",
}


def stage_baseline(ref: str, directory: str) -> str:
    """The package at git commit ``ref``, laid out for ``PYTHONPATH`` (``kernels/`` placed as
    ``pfd_ref/kernels``, as the installed package has it) under ``directory``; returns the
    path to put on ``PYTHONPATH`` and to run in (``python -c`` puts the working directory
    first on ``sys.path``: run in this checkout, it imported this checkout's pfd_ref)."""
    import io
    import shutil
    import tarfile

    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True).stdout.strip()
    archive = subprocess.run(["git", "-C", root, "archive", ref, "pfd_ref", "kernels"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(directory, filter="data")
    shutil.move(f"{directory}/kernels", f"{directory}/pfd_ref/kernels")
    return directory


def bench_cold_start(repeats: int, baseline: str | None = None):
    """``compile_all()`` in a fresh process with an empty Numba cache, then again from that
    cache; ``repeats`` rounds, each with its own empty caches, the variants run one after the
    other in every round (``COLD_START_VARIANTS``: ``compile_all()``'s default, the float32
    kernels; every kernel for both dtypes; what ``pfd-ref run`` compiles; and, when
    ``baseline`` names a git commit, ``BASELINE_VARIANTS``: that commit's ``compile_all()``,
    the code before a change, and its float32 half alone). Reports medians and ranges."""
    import tempfile

    import pfd_ref

    checkout = os.path.dirname(os.path.dirname(os.path.abspath(pfd_ref.__file__)))
    variants = {name: (statement, None) for name, statement in COLD_START_VARIANTS.items()}
    with tempfile.TemporaryDirectory() as staged:
        if baseline is not None:
            pythonpath = stage_baseline(baseline, staged)
            variants.update({name.format(baseline): (statement, pythonpath) for name, statement in BASELINE_VARIANTS.items()})
        samples = {(name, state): [] for name in variants for state in ("cold", "warm")}
        for _ in range(repeats):
            for name, (statement, pythonpath) in variants.items():
                with tempfile.TemporaryDirectory() as cache:
                    env = {"NUMBA_CACHE_DIR": cache, **({"PYTHONPATH": pythonpath} if pythonpath else {})}
                    for state in ("cold", "warm"):
                        *seconds, kernels_file = run_python(COLD_START_CODE, env, [statement], cwd=pythonpath).split()
                        if not kernels_file.startswith((pythonpath or checkout) + os.sep):
                            raise RuntimeError(f"cold start {name!r} imported the kernels from {kernels_file}, "
                                               f"not from {pythonpath or checkout}")
                        samples[(name, state)].append([float(v) for v in seconds])
    rows = []
    for (name, state), values in samples.items():
        imports, compiles, own, workers = zip(*values)
        cpus = [a + b for a, b in zip(own, workers)]
        rows.append(dict(run=name, cache="empty (compile)" if state == "cold" else "Numba's cache", repeats=repeats,
                         import_s=float(np.median(imports)), compile_s=float(np.median(compiles)),
                         min_s=min(compiles), max_s=max(compiles), compile_cpu_s=float(np.median(cpus)),
                         workers_cpu_s=float(np.median(workers))))
    print_table(
        "Cold start: the compile in a fresh process, each round with empty Numba caches, the variants one after the other "
        "in every round; compile_s the median of the rounds (min_s, max_s their range), compile_cpu_s the median of the "
        "CPU time for it (less sensitive to other processes' load), the compile worker processes' included (workers_cpu_s "
        "alone: compile_all starts one beside it on a cold cache where 2 CPUs are free); import_s is `from pfd_ref import "
        f"kernels` (NumPy and Numba included). compile_all() compiles every kernel for float32 (the float64 ones "
        "compile on first use, or with dtypes=); the code before compiled both dtypes; CPUs: "
        f"{len(os.sched_getaffinity(0))}",
        ["run", "cache", "repeats", "import_s", "compile_s", "min_s", "max_s", "compile_cpu_s", "workers_cpu_s"],
        rows,
    )
    return rows


# ----------------------------------------------------------------------------- catalogues larger than memory


def write_catalogue_file(path: str, gigabytes: float, d: int = TOWER_D) -> None:
    """An ``.npy`` of standard normal float32 rows of width ``d``, about ``gigabytes`` GB."""
    rows = int(gigabytes * 1e9 // (d * 4))
    rng = np.random.default_rng(1)
    block = 1 << 18
    print(f"writing {path}: {rows} x {d} float32 ({rows * d * 4 / 1e9:.1f} GB)", flush=True)
    catalogue.save_item_vectors(path, (rng.standard_normal((min(block, rows - a), d), dtype=DTYPE)
                                       for a in range(0, rows, block)), rows, d, DTYPE)


def bench_out_of_core(path: str, rounds: int):
    """One scan of a catalogue file that exceeds the page cache
    (``pfd_ref.catalogue.top_k_from_file``: blocks read directly from the disk by a reader
    thread ahead of the fused top-k) for one user and for a batch of 16 (GEMM per block),
    against reading the same file front to back in the same rounds, four ways (the fastest
    is the file's sequential read bandwidth, the limit): ``readinto`` a 64 MiB buffer through
    the page cache, the same with direct reads (``O_DIRECT``, as the scan reads), direct reads
    by two threads (two reads in flight), and touching
    one byte of every page of its memory map in one thread. Before every pass the file's
    pages are dropped from the page cache (``POSIX_FADV_DONTNEED``, this file only), so no
    pass finds what the pass before it read; the file is larger than the machine's memory
    besides."""
    size = os.path.getsize(path)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    # the scan's own kind of buffer (aligned, in 2 MiB pages: catalogue.aligned_buffer), 64 MiB as its blocks
    buffer = catalogue.aligned_buffer(catalogue.BLOCK_BYTES)
    direct_buffers = [catalogue.aligned_buffer(catalogue.BLOCK_BYTES) for _ in range(2)]

    def read_file():
        with open(path, "rb", buffering=0) as handle:
            while handle.readinto(buffer):
                pass

    def read_file_direct():
        with catalogue.open_direct(path) as handle:
            while handle.readinto(direct_buffers[0]):
                pass

    def read_file_direct_2():
        """Two direct reads in flight: two threads, each reading every other 64 MiB."""
        with catalogue.open_direct(path) as handle:

            def every_other(first: int) -> None:
                for start in range(first * len(direct_buffers[first]), size, 2 * len(direct_buffers[first])):
                    os.preadv(handle.fileno(), [direct_buffers[first]], start)

            with ThreadPoolExecutor(max_workers=2) as pool:
                list(pool.map(every_other, (0, 1)))

    def touch_file():
        with catalogue.ItemVectorFile(path) as opened:
            opened.vectors.reshape(-1).view(np.uint8)[::mmap.PAGESIZE].sum()

    def drop_cached_pages():
        with open(path, "rb") as handle:
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)

    with catalogue.ItemVectorFile(path) as opened:
        d = opened.vectors.shape[1]
    rng = np.random.default_rng(2)
    user, users = rng.standard_normal(d).astype(DTYPE), rng.standard_normal((16, d)).astype(DTYPE)
    direct = catalogue.open_direct(path)
    if direct is None:
        print("  direct reads (O_DIRECT) are refused on this file system: the scan and the limit read through the page cache")
    else:
        direct.close()
    candidates = {
        "read_readinto": read_file,
        **({"read_direct": read_file_direct, "read_direct_2": read_file_direct_2} if direct is not None else {}),
        "read_mmap_touch": touch_file,
        "top_k_1_user": lambda: catalogue.top_k_from_file(path, user, K),
        "top_k_16_users": lambda: catalogue.top_k_from_file(path, users, K),
    }
    samples = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            drop_cached_pages()
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
            print(f"  {name}: {size / samples[name][-1] / 1e9:.2f} GB/s", flush=True)
    median = {name: float(np.median(values)) for name, values in samples.items()}
    read_s = min(median[name] for name in candidates if name.startswith("read_"))
    rows = [dict(run=name, file_GB=size / 1e9, memory_GB=memory / 1e9, rounds=rounds, median_s=median[name],
                 GBps=size / median[name] / 1e9, read_GBps=size / read_s / 1e9, pct_read=100 * read_s / median[name])
            for name in samples]
    print_table(
        f"Catalogue larger than memory: one scan of an .npy of item vectors (top_k_from_file, k = {K}: direct reads by a "
        "reader thread ahead of the fused top-k) against reading the file front to back in the same rounds (read_GBps: "
        "the fastest of readinto through the page cache, readinto with O_DIRECT by one thread or by two and touching the pages "
        "of its map: the "
        "limit); the file's cached pages are dropped before every pass and it exceeds the machine's memory, so every "
        "pass reads the disk",
        ["run", "file_GB", "memory_GB", "rounds", "median_s", "GBps", "read_GBps", "pct_read"],
        rows,
    )
    return rows


# ----------------------------------------------------------------------------- targets


def targets(results: dict) -> list[dict]:
    """The issue's targets, each with the figure measured in this run; ``ceiling`` is the
    best ratio the measured hardware limit would allow (where one applies)."""

    def find(section, **match):
        for row in results.get(section, []):
            if all(row.get(k) == v for k, v in match.items()):
                return row
        return None

    checks = []

    def add(name, value, goal, met, ceiling="-"):
        checks.append(dict(target=name, measured=value, goal=goal, met="yes" if met else "NO", ceiling=ceiling))

    scoring = find("single_user", d=64, N=1_000_000)
    if scoring:
        add("scoring 1M x 64: % of triad bandwidth", scoring["pct_triad"], ">= 85", scoring["pct_triad"] >= 85)
        add("scoring 1M x 64: x NumPy", scoring["x_numpy"], ">= 1.1", scoring["x_numpy"] >= 1.1)
        if scoring["x_torch"] != "-":
            add("scoring 1M x 64: x torch", scoring["x_torch"], ">= 1.1", scoring["x_torch"] >= 1.1)
    row = find("fused_top_k", d=64, N=1_000_000)
    if row:
        add("top-100 of 1M: time / scoring time", row["over_scoring"], "<= 1.1", row["over_scoring"] <= 1.1)
        # a top-k must read the matrix once: the fastest read measured in this run (the triad
        # rate of the scoring section, or the scoring kernel alone in the top-k's own rounds,
        # whose four read streams can beat the triad) bounds any top-k
        read_ms = row["score_only_ms"]
        if scoring:
            read_ms = min(read_ms, 1e3 * 1_000_000 * 64 * 4 / (scoring["triad_GBps"] * 1e9))
        add("top-100 of 1M: x NumPy score+argpartition+sort", row["x_numpy"], ">= 5", row["x_numpy"] >= 5,
            row["numpy_ms"] / read_ms)
    row = find("batched", d=64, N=100_000)
    if row:
        if row["x_torch"] != "-":
            add("256 x 100k top-100: x torch mm+topk", row["x_torch"], ">= 1.3", row["x_torch"] >= 1.3)
        add("256 x 100k: GEMM part / NumPy GEMM speed", row["gemm_vs_numpy"], ">= 0.95", row["gemm_vs_numpy"] >= 0.95)
    row = find("mlp", batch=1)
    if row and row["x_torch"] != "-":
        # a batch-1 forward must at least read every weight once
        add("MLP batch 1: x torch eager", row["x_torch"], ">= 4", row["x_torch"] >= 4,
            row["torch_us"] / row["read_weights_us"])
    row = find("mlp", batch=65536)
    if row:
        add("MLP batch 65536: speed / NumPy preallocated", row["x_numpy"], ">= 0.9", row["x_numpy"] >= 0.9)
    row = find("coarse_ranking", candidates=100_000, k=1000)
    if row:
        add("1e5 candidates of 1e7 x 128, top-1000: share of the gather limit", row["pct_limit"] / 100, ">= 0.8",
            row["pct_limit"] >= 80)
        add("1e5 candidates of 1e7 x 128, top-1000: x NumPy take+@+argpartition", row["x_numpy"], ">= 1.5",
            row["x_numpy"] >= 1.5)
        if row["x_torch"] != "-":
            add("1e5 candidates of 1e7 x 128, top-1000: x torch index_select+mv+topk", row["x_torch"], ">= 2",
                row["x_torch"] >= 2)
    row = find("out_of_core", run="top_k_1_user")
    if row:
        add("scan of a file larger than memory, 1 user: share of its sequential read bandwidth", row["pct_read"] / 100,
            ">= 0.8", row["pct_read"] >= 80)
    row = find("fine_ranking", user=FINE_CASES[0][0])
    if row and "x_torch_plain" in row:
        add(f"fine ranking {FINE_CANDIDATES} candidates, 512-256-128: x torch eager", row["x_torch_plain"], ">= 1.5",
            row["x_torch_plain"] >= 1.5)
    return checks


def cold_start_targets(cold: list[dict], baseline: str | None) -> list[dict]:
    """The cold-start targets: ``compile_all()`` from an empty cache in at most half of the
    time of the code before the change (when ``baseline`` was measured), from the cache in at
    most 0.5 s. The target's ratio is of ``compile_all()`` as each side documents it (now the
    float32 kernels, before both dtypes); so that it is not bought by compiling less unseen,
    the same work on both sides is compared too: both dtypes, and the float32 kernels alone.
    And so that it is not bought by a second core unseen, ``compile_all(workers=1)`` (this
    process alone) over the baseline too. ``measured`` is of the wall-clock medians (the
    issue's measure, ``met`` judges it); ``cpu_time`` the same of the CPU-time medians (the
    worker processes' included), less sensitive to other processes."""
    median = {(row["run"], row["cache"]): row for row in cold}
    checks = []

    def check(target, run, cache, over=None):
        wall, cpu = median[(run, cache)]["compile_s"], median[(run, cache)]["compile_cpu_s"]
        if over is not None:
            wall, cpu = wall / median[(over, cache)]["compile_s"], cpu / median[(over, cache)]["compile_cpu_s"]
        checks.append(dict(target=target, measured=wall, cpu_time=cpu, goal="<= 0.5", met="yes" if wall <= 0.5 else "NO"))

    empty, cached = "empty (compile)", "Numba's cache"
    if baseline is not None:
        check(f"empty cache: {COMPILE_ALL} / compile_all() at {baseline} (both dtypes): the target", COMPILE_ALL, empty,
              BASELINE_BOTH.format(baseline))
        check(f"empty cache, the same work: {BOTH_DTYPES} / compile_all() at {baseline}", BOTH_DTYPES, empty,
              BASELINE_BOTH.format(baseline))
        check(f"empty cache, the same work: {COMPILE_ALL} / float32 kernels at {baseline}", COMPILE_ALL, empty,
              BASELINE_FLOAT32.format(baseline))
        check(f"empty cache, one process: {COMPILE_ALL_HERE} / compile_all() at {baseline} (both dtypes)",
              COMPILE_ALL_HERE, empty, BASELINE_BOTH.format(baseline))
    check(f"from the cache (s): {COMPILE_ALL}: the target", COMPILE_ALL, cached)
    check(f"from the cache (s): {BOTH_DTYPES}", BOTH_DTYPES, cached)
    return checks


# ----------------------------------------------------------------------------- main


SECTIONS = ("single_user", "fused_top_k", "select", "batched", "faiss", "mlp", "scatter_add", "pooled", "gather",
            "parallel_threshold", "coarse_ranking", "fine_ranking", "tower_cost", "out_of_core", "cold_start")


def run(threads: int, quick: bool, only: tuple[str, ...] | None = None) -> dict:
    set_threads(threads)
    torch = import_torch()
    cfg = sizes(quick)
    rng = np.random.default_rng(0)
    print(f"\n=== benchmarks.scoring: {threads} thread(s) (Numba, BLAS{', torch' if torch else ''}), "
          f"{'quick' if quick else 'full'} sizes, median of {cfg['repeats']} round-robin repeats ===")
    if torch is None:
        print("torch is not installed: its columns are skipped (pip install torch==2.13.0)")
    kernels.compile_all()  # compile (or load) up front: timings below exclude JIT compilation
    limits = memory_bandwidth(threads)
    limits["gemm_float32_GFLOPs"] = gemm_gflops(np.float32)
    limits["gemm_float64_GFLOPs"] = gemm_gflops(np.float64)
    print_table("Machine limits measured in this run", list(limits), [limits])
    results = {"threads": threads, "quick": quick, "limits": limits}
    gemm_peak = limits["gemm_float32_GFLOPs"]
    sections = {
        "single_user": lambda: bench_single_user(cfg, rng, torch, threads),
        "fused_top_k": lambda: bench_fused_top_k(cfg, rng, torch),
        "select": lambda: bench_select(cfg, rng, torch),
        "batched": lambda: bench_batched(cfg, rng, torch, gemm_peak),
        "faiss": lambda: bench_faiss(cfg, rng, threads),
        "mlp": lambda: bench_mlp(cfg, rng, torch, gemm_peak),
        "scatter_add": lambda: bench_scatter_add(cfg, rng),
        "pooled": lambda: bench_pooled(cfg, rng),
        "gather": lambda: bench_gather(cfg, rng),
        "parallel_threshold": lambda: bench_parallel_threshold(cfg, rng) if threads > 1 else [],
        "coarse_ranking": lambda: bench_coarse_ranking(cfg, rng, torch),
        "fine_ranking": lambda: bench_fine_ranking(cfg, rng, torch, gemm_peak),
        "tower_cost": lambda: bench_tower_cost(cfg, limits),
        "out_of_core": lambda: bench_out_of_core(os.environ[CATALOGUE_VARIABLE], 2 if quick else 3),
    }
    if threads != 1 or CATALOGUE_VARIABLE not in os.environ:
        del sections["out_of_core"]  # a serial scan, measured once, when --catalogue-file names a file
    for name, section in sections.items():
        if only is None or name in only:
            results[name] = section()
    if "coarse_ranking" in results:
        results["coarse_ranking"], results["request_batch"] = results["coarse_ranking"]
    results["targets"] = targets(results)
    print_table(
        f"Targets ({threads} thread(s); ceiling: the best ratio the measured memory limit allows)",
        ["target", "measured", "goal", "met", "ceiling"],
        results["targets"],
    )
    results["machine"] = machine_info()
    print(f"\nmachine: {json.dumps(results['machine'])}")
    return results


CATALOGUE_VARIABLE = "PFD_BENCH_CATALOGUE"  # the larger-than-memory file, passed to the 1-thread child
CATALOGUE_GB = 30.0


def add_arguments(parser) -> None:
    """Options the parent process acts on: the cold start (after the per-thread runs) and the
    catalogue file (written before them when absent, deleted after; the 1-thread run scans it)."""
    parser.add_argument("--cold-start-baseline", metavar="COMMIT", default=None,
                        help="also time compile_all() of the code at this git commit, in the same rounds")
    parser.add_argument("--catalogue-file", metavar="PATH", default=None,
                        help="the out_of_core section: scan this .npy of item vectors in the 1-thread run (written "
                             "first if absent, --catalogue-gb large, and then deleted)")
    parser.add_argument("--catalogue-gb", type=float, default=CATALOGUE_GB,
                        help=f"size of the file to write (default {CATALOGUE_GB:g})")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    check_json_argument("benchmarks.scoring", argv)  # before the catalogue file is written
    written = []

    def before_run(args, parser) -> None:
        """Check the parent's own options, then write the catalogue file when it is absent
        (deleted after the runs)."""
        if not args.catalogue_gb > 0:  # NaN too
            parser.error(f"--catalogue-gb: expected a size > 0, got {args.catalogue_gb:g}")
        if args.cold_start_baseline is not None and subprocess.run(
                ["git", "rev-parse", "--verify", "--quiet", f"{args.cold_start_baseline}^{{commit}}"],
                capture_output=True).returncode != 0:
            parser.error(f"--cold-start-baseline: {args.cold_start_baseline!r} names no commit of this repository")
        if args.catalogue_file:
            if not os.path.exists(args.catalogue_file):
                write_catalogue_file(args.catalogue_file, args.catalogue_gb)
                written.append(args.catalogue_file)
            os.environ[CATALOGUE_VARIABLE] = os.path.abspath(args.catalogue_file)

    try:
        parsed = parse_and_run("benchmarks.scoring", __doc__.splitlines()[0], "small sizes, fewer repeats (about a minute)",
                               run, argv, add_arguments, SECTIONS, before_run)
    finally:
        for path in written:
            os.unlink(path)
    if parsed is None:
        return
    args, runs = parsed
    payload = {"runs": runs}
    if args.only is None or "cold_start" in args.only.split(","):
        cold = bench_cold_start(1 if args.quick else 5, args.cold_start_baseline)
        payload["cold_start"], payload["cold_start_targets"] = cold, cold_start_targets(cold, args.cold_start_baseline)
        print_table("Cold-start targets", ["target", "measured", "cpu_time", "goal", "met"], payload["cold_start_targets"])
    if args.json:
        write_json(args.json, payload)


if __name__ == "__main__":
    main()
