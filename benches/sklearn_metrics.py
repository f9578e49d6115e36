#!/usr/bin/env python3
"""Times scikit-learn on the two expensive MTEB measures, for comparison with assay's
own implementations:

* the classification probe: banking77's 10 experiments (mteb's undersampling to 8
  rows per label, LogisticRegression(max_iter=100) fit, predict on the 3,080 test
  rows, accuracy / F1 / precision / recall);
* the clustering: 10 experiments of 16,384 rows drawn with replacement from the
  3,080 banking77 test vectors, MiniBatchKMeans(k=77, batch_size=512, n_init=1,
  random_state=42) fit_predict, v-measure.

    eval "$(scripts/python-sklearn.sh)"
    $ASSAY_SKLEARN_PYTHON benches/sklearn_metrics.py --cache <embeddings .bin> \
        --data-root /work/shared/assets/data
    $ASSAY_SKLEARN_PYTHON benches/sklearn_metrics.py --synthetic

--synthetic uses random vectors of the same shapes (dim 384; 10,003 training rows
over 77 labels, 3,080 test rows; clustering draws 16,384 of the test rows), made of
a per-label centre plus noise so the solvers do a realistic amount of work.

Prints, for each thread count (1 and 2 unless --threads is given),
    sklearn_probe_seconds=<x> threads=<n>
    sklearn_clustering_seconds=<y> threads=<n>
Threads (BLAS and OpenMP) are set with threadpoolctl, which scikit-learn depends on;
without it each thread count runs in a child process with OMP_NUM_THREADS /
OPENBLAS_NUM_THREADS / MKL_NUM_THREADS set before numpy loads. Loading the vectors
and data is not timed. With --repeat N the fastest of N runs is printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--cache", type=Path, help="assay embedding cache (.bin)")
    src.add_argument("--synthetic", action="store_true", help="random vectors of the same shapes")
    p.add_argument("--data-root", type=Path, help="with --cache: the data root (banking77/)")
    p.add_argument("--threads", type=int, action="append", help="thread count (repeatable; default 1 and 2)")
    p.add_argument("--repeat", type=int, default=1, help="runs per measurement, fastest printed")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.cache is not None and a.data_root is None:
        p.error("--cache needs --data-root")
    a.threads = a.threads or [1, 2]
    return a


ARGS = parse_args()

try:
    import threadpoolctl  # noqa: F401

    HAVE_THREADPOOLCTL = True
except ImportError:
    HAVE_THREADPOOLCTL = False

if not HAVE_THREADPOOLCTL and not ARGS.child:
    # One child per thread count, the environment set before numpy loads.
    for n in ARGS.threads:
        env = dict(os.environ, **{v: str(n) for v in ENV_VARS})
        cleaned = []
        skip = False
        for a in sys.argv[1:]:
            if skip:
                skip = False
                continue
            if a == "--threads":
                skip = True
                continue
            if a.startswith("--threads="):
                continue
            cleaned.append(a)
        subprocess.run([sys.executable, __file__, *cleaned, "--threads", str(n), "--child"], env=env, check=True)
    sys.exit(0)

import csv  # noqa: E402
import hashlib  # noqa: E402
import random  # noqa: E402
import warnings  # noqa: E402
from collections import defaultdict  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.cluster import MiniBatchKMeans  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    v_measure_score,
)

warnings.filterwarnings("ignore", category=ConvergenceWarning)
warnings.filterwarnings("ignore", category=UndefinedMetricWarning)

SEED = 42
DIM = 384


def read_cache(path: Path):
    raw = path.read_bytes()
    version = int.from_bytes(raw[8:12], "little")
    if raw[:8] != b"ASSAYEMB" or version not in (1, 2):
        raise SystemExit(f"{path}: not an assay embedding cache (version 1 or 2)")
    dim = int.from_bytes(raw[12:16], "little")
    # Version 2 ends each record with a CRC-32 of key and vector.
    rec = 32 + 4 * dim + (4 if version == 2 else 0)
    n = (len(raw) - 16) // rec
    index = {raw[16 + i * rec : 16 + i * rec + 32]: i for i in range(n)}

    def embed(texts):
        out = np.empty((len(texts), dim), dtype=np.float32)
        for r, t in enumerate(texts):
            i = index.get(hashlib.sha256(t.encode("utf-8")).digest())
            if i is None:
                raise SystemExit(f"no vector in the cache for {t!r}")
            at = 16 + i * rec + 32
            out[r] = np.frombuffer(raw, dtype="<f4", count=dim, offset=at)
        return out

    return embed


def read_csv(path: Path):
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    return [r[0] for r in rows], [r[1] for r in rows]


def load_real():
    embed = read_cache(ARGS.cache)
    tr_x, tr_l = read_csv(ARGS.data_root / "banking77" / "train.csv")
    te_x, te_l = read_csv(ARGS.data_root / "banking77" / "test.csv")
    classes = {c: i for i, c in enumerate(sorted(set(tr_l) | set(te_l)))}
    y_train = np.array([classes[c] for c in tr_l])
    y_test = np.array([classes[c] for c in te_l])
    # Only the rows the undersampling picks are looked up (mteb embeds only those).
    picks = undersample(y_train.tolist(), 8, 10)
    union = sorted(set().union(*picks))
    emb_union = embed([tr_x[i] for i in union])
    x_train = np.zeros((len(tr_x), emb_union.shape[1]), dtype=np.float32)
    x_train[union] = emb_union
    x_test = embed(te_x)
    return x_train, y_train, x_test, y_test


def load_synthetic():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(77, DIM)) * 0.25

    def draw(labels):
        x = centres[labels] + rng.normal(size=(len(labels), DIM))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    y_train = rng.integers(77, size=10_003)
    y_test = np.repeat(np.arange(77), 40)  # 3,080
    return draw(y_train), y_train, draw(y_test), y_test


def undersample(labels, per_label, n_experiments):
    order = list(range(len(labels)))
    out = []
    for _ in range(n_experiments):
        np.random.RandomState(SEED).shuffle(order)
        taken = defaultdict(int)
        chosen = []
        for i in order:
            if taken[labels[i]] < per_label:
                taken[labels[i]] += 1
                chosen.append(i)
        out.append(chosen)
    return out


def probe(x_train, y_train, x_test, y_test):
    t0 = time.perf_counter()
    for chosen in undersample(y_train.tolist(), 8, 10):
        clf = LogisticRegression(max_iter=100, random_state=SEED)
        clf.fit(x_train[chosen], y_train[chosen])
        pred = clf.predict(x_test)
        accuracy_score(y_test, pred)
        for avg in ("macro", "weighted"):
            f1_score(y_test, pred, average=avg)
            precision_score(y_test, pred, average=avg)
            recall_score(y_test, pred, average=avg)
    return time.perf_counter() - t0


def clustering(x, labels):
    t0 = time.perf_counter()
    rng = random.Random(SEED)
    km = MiniBatchKMeans(n_clusters=77, batch_size=512, init="k-means++", n_init=1, random_state=SEED)
    for _ in range(10):
        picks = rng.choices(range(len(x)), k=16_384)
        assign = km.fit_predict(x[picks])
        v_measure_score(labels[picks], assign)
    return time.perf_counter() - t0


def main():
    data = load_synthetic() if ARGS.synthetic else load_real()
    x_train, y_train, x_test, y_test = data
    for n in ARGS.threads:
        if HAVE_THREADPOOLCTL:
            from threadpoolctl import threadpool_limits

            ctx = threadpool_limits(limits=n)
        else:
            ctx = None
        try:
            p = min(probe(x_train, y_train, x_test, y_test) for _ in range(ARGS.repeat))
            c = min(clustering(x_test, y_test) for _ in range(ARGS.repeat))
        finally:
            if ctx is not None:
                ctx.unregister()
        print(f"sklearn_probe_seconds={p:.3f} threads={n}", flush=True)
        print(f"sklearn_clustering_seconds={c:.3f} threads={n}", flush=True)


if __name__ == "__main__":
    main()
