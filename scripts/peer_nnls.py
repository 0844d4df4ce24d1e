#!/usr/bin/env python3
"""Peer for `probewatch bench`: the 780 label-pair hull distances of one
layer of an activation dump, solved as non-negative least squares with scipy.

min ||A a - B b||  over simplices, written as NNLS on the augmented system
    [ A^T  -B^T ] [a]   [0]
    [ M 1^T  0  ] [b] = [M]
    [ 0   M 1^T ]       [M]
with M = 1e4 x the data's scale: the sum-to-one rows are enforced to about
1/M^2 relative, far below the 1e-4 the benchmark compares at. Prints one JSON
line: {"pairs", "seconds", "min", "mean", "distances"} (pairs in label order). Needs numpy and scipy
(`pip install numpy scipy`); `probewatch bench` skips the peer without them.
"""
import json
import resource
import struct
import sys
import time

import numpy as np
from scipy.optimize import nnls


def read_dump(path, layer):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n

        def tensor(name):
            info = header[name]
            start, end = info["data_offsets"]
            f.seek(base + start)
            raw = f.read(end - start)
            dtype = {"F32": np.float32, "F16": np.float16, "I64": np.int64,
                     "I32": np.int32, "U8": np.uint8}[info["dtype"]]
            return np.frombuffer(raw, dtype=dtype).reshape(info["shape"])

        x = tensor(f"layer.{layer}").astype(np.float64)
        labels = tensor("labels").astype(np.int64)
        split = tensor("split") if "split" in header else np.zeros(len(labels), np.uint8)
    return x, labels, split


def hull_distance(a, b, big):
    na, nb = len(a), len(b)
    top = np.hstack([a.T, -b.T])
    rows = np.zeros((2, na + nb))
    rows[0, :na] = big
    rows[1, na:] = big
    m = np.vstack([top, rows])
    rhs = np.concatenate([np.zeros(a.shape[1]), [big, big]])
    w, _ = nnls(m, rhs, maxiter=50 * (na + nb))
    return float(np.linalg.norm(a.T @ w[:na] - b.T @ w[na:]))


def main():
    path, layer = sys.argv[1], int(sys.argv[2])
    x, labels, split = read_dump(path, layer)
    train = split == 0
    xs, ls = x[train], labels[train]
    scale = float(np.sqrt(((xs - xs.mean(0)) ** 2).sum(1).mean()))
    groups = [xs[ls == k] for k in sorted(set(ls.tolist()))]
    start = time.perf_counter()
    ds = [hull_distance(groups[i], groups[j], 1e4 * scale)
          for i in range(len(groups)) for j in range(i + 1, len(groups))]
    seconds = time.perf_counter() - start
    print(json.dumps({"pairs": len(ds), "seconds": seconds,
                      "min": min(ds), "mean": sum(ds) / len(ds),
                      "distances": ds,
                      "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


if __name__ == "__main__":
    main()
