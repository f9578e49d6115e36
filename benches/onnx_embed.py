#!/usr/bin/env python3
"""Reference side of `assay bench-embed`: sentence-embedding throughput with onnxruntime.

Embeds a JSON list of sentences with an ONNX BERT-style encoder (e.g. all-MiniLM-L6-v2):
tokenise (truncate to --max-length), sort by token count (longest first), batch with
padding to the longest input of each batch, run the model, mean-pool the last hidden
state over the attention mask and L2-normalise. One untimed warm-up batch runs first;
the timed part covers tokenisation, inference and pooling of every sentence.

Prints one JSON line to stdout. --out-vectors saves the embeddings (float32, input order)
as .npy for a parity check against assay.
"""

import argparse
import json
import os
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser(description="onnxruntime reference for assay bench-embed")
    ap.add_argument("--model-onnx", required=True)
    ap.add_argument("--tokenizer", required=True, help="path to tokenizer.json")
    ap.add_argument("--sentences", required=True, help="JSON file: a list of strings")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--out-vectors", help="save embeddings here (.npy, input order)")
    args = ap.parse_args()

    # Keep the tokenizer's own thread pool within the same budget as the model.
    os.environ.setdefault("RAYON_RS_NUM_CPUS", str(args.threads))
    import onnxruntime as ort
    from tokenizers import Tokenizer

    with open(args.sentences, encoding="utf-8") as f:
        sentences = json.load(f)

    tokenizer = Tokenizer.from_file(args.tokenizer)
    tokenizer.no_padding()  # we pad per batch ourselves
    tokenizer.enable_truncation(max_length=args.max_length)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(
        args.model_onnx, sess_options=opts, providers=["CPUExecutionProvider"]
    )
    input_names = {i.name for i in session.get_inputs()}

    def run_batch(encodings):
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return (pooled / norms).astype(np.float32)

    def embed_all(texts):
        encodings = tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        out = None
        for start in range(0, len(order), args.batch_size):
            chunk = order[start : start + args.batch_size]
            vecs = run_batch([encodings[i] for i in chunk])
            if out is None:
                out = np.empty((len(texts), vecs.shape[1]), dtype=np.float32)
            out[chunk] = vecs
        return out

    embed_all(sentences[: args.batch_size])  # warm-up, not timed

    start = time.perf_counter()
    vectors = embed_all(sentences)
    seconds = time.perf_counter() - start

    if args.out_vectors:
        np.save(args.out_vectors, vectors)
    print(json.dumps({
        "engine": "onnxruntime",
        "version": ort.__version__,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "sentences": len(sentences),
        "seconds": round(seconds, 4),
        "sentences_per_s": round(len(sentences) / seconds, 2),
    }))


if __name__ == "__main__":
    main()
