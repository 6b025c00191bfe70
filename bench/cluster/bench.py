#!/usr/bin/env python3
"""Panicle's DBSCAN against scikit-learn on the same 10k signatures.

Three runs, all plain Jaccard (decay 1, message weight 1) so they must agree:
  1. naive: sklearn DBSCAN(metric='jaccard') on dense boolean rows. Its time
     grows as n^2 * vocabulary; it runs on the first --naive-n rows (default
     1000) and is skipped for the full input past that; the full time is
     extrapolated (n^2) and printed as such.
  2. fast exact: candidate pairs from rare tokens (sparse X_rare * X_rare^T),
     the overlap on the frequent tokens added back by bitmask popcount, exact
     Jaccard, and sklearn DBSCAN(metric='precomputed') over the sparse radius
     graph with sample_weight = counts.
  3. panicle: the cluster-bench binary (same input, written by it).

Usage: python3 bench/cluster/bench.py [--bench-bin target/release/cluster-bench]
Needs numpy, scipy, scikit-learn (pip install scikit-learn).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import scipy.sparse as sp
from sklearn.cluster import DBSCAN

FREQUENT = 64  # tokens tracked by bitmask instead of the sparse product


def tokens(rec):
    f = rec.get("frames", [])
    out = {"f:" + x for x in f}
    out |= {"b:" + a + "\x1f" + b for a, b in zip(f, f[1:])}
    if rec.get("message") is not None:
        out.add("m:" + rec["message"])
    return out or {"<empty>"}


def matrix(sets):
    vocab = {}
    rows, cols = [], []
    for i, s in enumerate(sets):
        for t in s:
            cols.append(vocab.setdefault(t, len(vocab)))
            rows.append(i)
    data = np.ones(len(rows), dtype=np.int32)
    return sp.csr_matrix((data, (rows, cols)), shape=(len(sets), len(vocab)))


def fast_exact(X, counts, eps, min_samples):
    n = X.shape[0]
    sizes = np.asarray(X.sum(axis=1)).ravel()
    df = np.asarray(X.sum(axis=0)).ravel()
    frequent = np.argsort(-df)[:FREQUENT]
    is_freq = np.zeros(X.shape[1], dtype=bool)
    is_freq[frequent] = True
    Xf = X[:, frequent].toarray().astype(np.uint64)
    masks = (Xf << np.arange(len(frequent), dtype=np.uint64)).sum(axis=1).astype(np.uint64)
    Xr = X[:, ~is_freq].tocsr()
    # Exactness: a pair sharing no rare token overlaps at most on its
    # frequent tokens; check no such pair can reach the threshold.
    nfreq = np.asarray(X[:, frequent].sum(axis=1)).ravel()
    if np.max(nfreq / sizes) >= 1 - eps:
        raise SystemExit("frequent-token bound too weak for exactness at this eps")
    C = sp.triu(Xr @ Xr.T, k=1).tocoo()
    i, j, rare = C.row, C.col, C.data.astype(np.int64)
    both = np.bitwise_and(masks[i], masks[j])
    freq = np.array([bin(int(v)).count("1") for v in both], dtype=np.int64) if len(both) else np.zeros(0, np.int64)
    inter = rare + freq
    dist = 1.0 - inter / (sizes[i] + sizes[j] - inter)
    keep = dist <= eps
    i, j, d = i[keep], j[keep], dist[keep]
    # Explicit entries both ways plus the diagonal; zero distances stay stored.
    rows = np.concatenate([i, j, np.arange(n)])
    cols = np.concatenate([j, i, np.arange(n)])
    data = np.concatenate([d, d, np.zeros(n)])
    D = sp.csr_matrix((data, (rows, cols)), shape=(n, n))
    labels = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit(
        D, sample_weight=counts).labels_
    return labels, int(keep.sum())


def naive(X, counts, eps, min_samples):
    dense = X.toarray().astype(bool)
    return DBSCAN(eps=eps, min_samples=min_samples, metric="jaccard").fit(
        dense, sample_weight=counts).labels_


def same_partition(a, b):
    """Equal up to renaming, noise compared as noise."""
    m = {}
    for x, y in zip(a, b):
        if (x == -1) != (y == -1):
            return False
        if x != -1 and m.setdefault(x, y) != y:
            return False
    return len(set(m.values())) == len(m)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench-bin", default="target/release/cluster-bench")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--eps", type=float, default=0.5)
    ap.add_argument("--min-samples", type=int, default=5)
    ap.add_argument("--naive-n", type=int, default=1000)
    ap.add_argument("--naive-budget", type=float, default=120.0, help="seconds")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp()
    inp, lab = os.path.join(tmp, "input.jsonl"), os.path.join(tmp, "labels.txt")
    out = subprocess.run(
        [args.bench_bin, "--n", str(args.n), "--eps", str(args.eps), "--decay", "1",
         "--message-weight", "1", "--min-samples", str(args.min_samples), "--threads", "2",
         "--write-jsonl", inp, "--labels-out", lab],
        check=True, capture_output=True, text=True).stdout
    print(out.strip())
    rust_time = float(re.search(r"total ([0-9.]+) s", out).group(1))
    rust_labels = np.loadtxt(lab, dtype=np.int64)

    recs = [json.loads(l) for l in open(inp)]
    counts = np.array([r.get("count", 1) for r in recs], dtype=np.float64)
    sets = [tokens(r) for r in recs]

    t0 = time.perf_counter()
    X = matrix(sets)
    fast_labels, pairs = fast_exact(X, counts, args.eps, args.min_samples)
    fast_time = time.perf_counter() - t0
    print(f"sklearn fast exact (sparse radius graph, {pairs} pairs): {fast_time:.3f} s")
    print(f"panicle: {rust_time:.3f} s  -> panicle is {fast_time / rust_time:.1f}x faster than the fast exact pipeline")
    print(f"labels panicle == fast exact: identical {bool(np.array_equal(fast_labels, rust_labels))}, "
          f"same partition {same_partition(fast_labels, rust_labels)}")

    m = min(args.naive_n, len(recs))
    Xs = matrix(sets[:m])
    t0 = time.perf_counter()
    naive_labels = naive(Xs, counts[:m], args.eps, args.min_samples)
    naive_time = time.perf_counter() - t0
    fast_sub, _ = fast_exact(Xs, counts[:m], args.eps, args.min_samples)
    est = naive_time * (len(recs) / m) ** 2
    print(f"sklearn naive (metric='jaccard', dense bool) on the first {m} rows: {naive_time:.3f} s; "
          f"labels == fast exact on them: {bool(np.array_equal(naive_labels, fast_sub))}")
    if m < len(recs):
        if est > args.naive_budget:
            print(f"sklearn naive on all {len(recs)}: skipped, extrapolated {est:.0f} s > budget "
                  f"{args.naive_budget:.0f} s (n^2 scaling) -> panicle ~{est / rust_time:.0f}x faster")
        else:
            t0 = time.perf_counter()
            full = naive(X, counts, args.eps, args.min_samples)
            t = time.perf_counter() - t0
            print(f"sklearn naive on all {len(recs)}: {t:.3f} s; labels == panicle: "
                  f"{bool(np.array_equal(full, rust_labels))}; panicle {t / rust_time:.0f}x faster")


if __name__ == "__main__":
    sys.exit(main())
