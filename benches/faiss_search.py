#!/usr/bin/env python3
"""Reference side of `assay bench-search`: exact top-k by cosine with faiss.

Reads the corpus and the queries from assay vector stores (32-byte header: magic
ASSAYVEC, version u32, dtype u32 (0 f32, 1 f16), dim u64, count u64; then the rows),
L2-normalises both, adds the corpus to an IndexFlatIP (inner product over unit vectors
is cosine), then serves searches so assay can alternate with it on a noisy machine.
Loading, normalising and building the index are not timed; `index.search` is.

Protocol, one JSON line per message on stdout:
  start:               {"version": ..., "threads": ...}
  stdin "K PATH":      searches with k = K, writes the first 10 ids of each query's list to
                       PATH (int64, row-major), answers {"k": K, "seconds": ...}
  stdin closed:        {"peak_rss_bytes": ...}, then exits.
"""

import argparse
import json
import resource
import sys
import time

import numpy as np

HEADER = 32
# Corpus rows normalised and added per step, so the only full copy is the index.
ADD_ROWS = 65536


def open_store(path):
    with open(path, "rb") as f:
        head = f.read(HEADER)
    if head[:8] != b"ASSAYVEC":
        raise SystemExit(f"{path}: not an assay vector store")
    version, dtype = np.frombuffer(head[8:16], dtype="<u4")
    dim, count = np.frombuffer(head[16:32], dtype="<u8")
    if version != 1:
        raise SystemExit(f"{path}: store version {version}, this script reads 1")
    kind = {0: "<f4", 1: "<f2"}[int(dtype)]
    rows = np.memmap(path, dtype=kind, mode="r", offset=HEADER, shape=(int(count), int(dim)))
    return rows


def say(message):
    print(json.dumps(message), flush=True)


def main():
    ap = argparse.ArgumentParser(description="faiss reference for assay bench-search")
    ap.add_argument("--corpus", required=True, help="assay vector store of the corpus")
    ap.add_argument("--queries", required=True, help="assay vector store of the queries")
    ap.add_argument("--threads", type=int, required=True)
    args = ap.parse_args()

    import faiss

    faiss.omp_set_num_threads(args.threads)
    corpus = open_store(args.corpus)
    # Copies: the maps are read-only and normalize_L2 works in place.
    queries = np.array(open_store(args.queries), dtype=np.float32, order="C")
    faiss.normalize_L2(queries)
    index = faiss.IndexFlatIP(corpus.shape[1])
    for start in range(0, corpus.shape[0], ADD_ROWS):
        part = np.array(corpus[start : start + ADD_ROWS], dtype=np.float32, order="C")
        faiss.normalize_L2(part)
        index.add(part)
    say({"version": faiss.__version__, "threads": args.threads})

    for line in sys.stdin:
        k, path = line.split(maxsplit=1)
        clock = time.perf_counter()
        _, ids = index.search(queries, int(k))
        seconds = time.perf_counter() - clock
        np.ascontiguousarray(ids[:, :10], dtype="<i8").tofile(path.strip())
        say({"k": int(k), "seconds": seconds})

    say({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024})


if __name__ == "__main__":
    main()
