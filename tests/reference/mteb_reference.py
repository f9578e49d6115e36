#!/usr/bin/env python3
"""MTEB's scores for four task families, recomputed with numpy / scipy / scikit-learn
on vectors assay saved, so assay's own numbers can be compared with a reference.

    eval "$(scripts/python-sklearn.sh)"
    $ASSAY_SKLEARN_PYTHON tests/reference/mteb_reference.py \
        --cache <embeddings .bin> --data-root /work/shared/assets/data \
        --task banking77 [--samples <samples.jsonl>] [--threads 1] [--verbose]

prints one JSON object {measure: value, ...} on stdout.

mteb itself is not imported (it needs torch and the Hugging Face copies of the data).
The steps below follow mteb v2 (embeddings-benchmark/mteb, mteb/abstasks/{classification,
pair_classification,clustering}.py, mteb/abstasks/text/summarization.py and
mteb/_evaluators/*), with the same library calls where mteb calls numpy / scipy /
scikit-learn, and numpy float32 stand-ins where mteb calls torch (row normalisation
with eps 1e-12, f32 products): those two can differ from torch in the last bit.

Vectors: assay's embedding cache, a 16-byte header (b"ASSAYEMB", u32 LE version 2,
u32 LE dim) followed by records (32-byte sha256 of the exact UTF-8 text the model saw,
dim little-endian f32, u32 LE CRC-32 of both; version 1 had no CRC). The model (all-MiniLM-L6-v2) sees the dataset text unchanged,
so every text is looked up by sha256(text.encode()).

Tasks and measures
------------------
banking77, emotion, amazon-counterfactual (AbsTaskClassification, 10 experiments,
seed 42; 8 / 16 / 32 samples per label):
    accuracy f1 f1_weighted precision precision_weighted recall recall_weighted
    and, where the test set has two classes, ap ap_weighted (from the predicted
    labels, as mteb does). amazon-counterfactual: every key also as `key[en]`,
    `key[en-ext]`, `key[de]`, `key[ja]`; the plain key is the mean over the subsets.
twitter-url-corpus (AbsTaskPairClassification):
    {similarity,cosine,manhattan,euclidean,dot}_{accuracy,f1,precision,recall,ap}
    and max_{accuracy,f1,precision,recall,ap}, plus pairs (how many were scored: lines
    with n == 3 are dropped; the ten lines with an empty field between the votes and
    the url are kept, so 9,334 pairs)
summeval (AbsTaskSummarization, min_score 0, max_score 5):
    cosine_spearman cosine_pearson dot_spearman dot_pearson spearman pearson
    (current SummarizationEvaluator: mean of the per-article statistics) and the same
    six as deprecated_* (DeprecatedSummarizationEvaluator, which the v1 task
    "SummEval" still runs: np.mean over scipy's (statistic, pvalue) result objects,
    i.e. statistics and p-values averaged together), plus articles_scored.
banking77-clustering (AbsTaskClustering, whole test set, random.Random(42),
10 draws of 16384 with replacement, MiniBatchKMeans(k=77, batch_size=512,
init="k-means++", n_init=1, random_state=42)):
    v_measure v_measure_std ami ami_std v_measures (list per experiment)
    indices_sha256 (list per experiment: sha256 of the drawn indices as consecutive
    u32 little-endian); with --samples also v_measure_given, v_measures_given and,
    when the sample lines carry an "indices" list, given_indices_match (how many
    experiments drew the same indices).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

SEED = 42
N_EXPERIMENTS = 10

CLASSIFICATION = {
    # task: (samples per label, [(subset, directory, train file, test file, delimiter)])
    "banking77": (8, [(None, "banking77", "train.csv", "test.csv", ",")]),
    "emotion": (16, [(None, "emotion", "train.txt", "test.txt", ";")]),
    "amazon-counterfactual": (
        32,
        [
            (sub, "amazon_counterfactual", f"{stem}_train.tsv", f"{stem}_test.tsv", "\t")
            for sub, stem in [("en", "EN"), ("en-ext", "EN-ext"), ("de", "DE"), ("ja", "JP")]
        ],
    ),
}
TASKS = sorted([*CLASSIFICATION, "twitter-url-corpus", "summeval", "banking77-clustering"])


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", required=True, type=Path, help="assay embedding cache (.bin)")
    p.add_argument("--data-root", required=True, type=Path)
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--samples", type=Path, help="assay samples.jsonl (clustering assignments)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS / OpenMP threads (default 1: sklearn's k-means sums are then sequential)",
    )
    p.add_argument("--verbose", action="store_true", help="per-experiment details on stderr")
    return p.parse_args()


ARGS = parse_args()
# Thread counts must be set before numpy / scikit-learn load their runtimes.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402
from scipy.stats import pearsonr, spearmanr  # noqa: E402
from sklearn.cluster import MiniBatchKMeans  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    accuracy_score,
    adjusted_mutual_info_score,
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
    v_measure_score,
)
from sklearn.metrics.pairwise import (  # noqa: E402
    paired_cosine_distances,
    paired_euclidean_distances,
    paired_manhattan_distances,
)

try:
    from threadpoolctl import threadpool_limits  # noqa: E402
except ImportError:  # pragma: no cover - comes with scikit-learn
    threadpool_limits = None

# mteb lets these through as warnings; they do not change the numbers.
warnings.filterwarnings("ignore", category=ConvergenceWarning)
warnings.filterwarnings("ignore", category=UndefinedMetricWarning)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- vectors
class Vectors:
    """sha256(text) -> f32 vector, from assay's embedding cache file.

    The file is memory-mapped, not loaded: a cache shared by many tasks can be large.
    Each lookup scans the first 8 bytes of every key for the wanted digests (one pass
    over the file), so a task asks for all of its texts at once (`prefetch`)."""

    MAGIC = b"ASSAYEMB"

    def __init__(self, path: Path):
        with path.open("rb") as f:
            head = f.read(16)
        if len(head) < 16 or head[:8] != self.MAGIC:
            raise SystemExit(f"{path}: not an assay embedding cache (bad magic)")
        version = int.from_bytes(head[8:12], "little")
        self.dim = int.from_bytes(head[12:16], "little")
        if version not in (1, 2):
            raise SystemExit(f"{path}: cache version {version}, expected 1 or 2")
        self.vector_end = 32 + 4 * self.dim
        self.record = self.vector_end + (4 if version == 2 else 0)
        body = path.stat().st_size - 16
        self.n = body // self.record
        if body % self.record:
            log(f"warning: {path}: ignoring a partial trailing record ({body % self.record} bytes)")
        self.raw = np.memmap(path, dtype=np.uint8, mode="r") if self.n else np.zeros(16, np.uint8)
        self.found: dict[bytes, np.ndarray] = {}

    @staticmethod
    def digest(text: str) -> bytes:
        return hashlib.sha256(text.encode("utf-8")).digest()

    def prefetch(self, texts):
        wanted = {self.digest(t) for t in texts} - self.found.keys()
        if not wanted or not self.n:
            return
        prefixes = np.frombuffer(b"".join(sorted(wanted)), dtype="<u8")[::4]
        keys = np.ndarray((self.n,), dtype="<u8", buffer=self.raw, offset=16, strides=(self.record,))
        for i in np.flatnonzero(np.isin(keys, prefixes)):
            at = 16 + int(i) * self.record
            key = self.raw[at : at + 32].tobytes()
            # Later duplicates of a key are copies; any one will do.
            if key in wanted and key not in self.found:
                self.found[key] = np.frombuffer(
                    self.raw[at + 32 : at + self.vector_end].tobytes(), dtype="<f4"
                ).astype(np.float32)

    def embed(self, texts):
        texts = list(texts)
        self.prefetch(texts)
        missing = [t for t in texts if self.digest(t) not in self.found]
        if missing:
            raise SystemExit(
                f"{len(missing)} text(s) have no vector in the cache; first: {missing[0]!r}"
            )
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for r, t in enumerate(texts):
            out[r] = self.found[self.digest(t)]
        return out


# --------------------------------------------------------------------------- data
def read_delimited(path: Path, delimiter: str, header: list[str]):
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter=delimiter))
    if rows[0] != header:
        raise SystemExit(f"{path}: header {rows[0]!r}, expected {header!r}")
    for n, r in enumerate(rows[1:], start=2):
        if len(r) != 2:
            raise SystemExit(f"{path}: row {n} has {len(r)} fields")
    return [r[0] for r in rows[1:]], [r[1] for r in rows[1:]]


def header_for(delimiter: str):
    return {",": ["text", "category"], ";": ["text", "label_name"], "\t": ["sentence", "is_counterfactual"]}[
        delimiter
    ]


def load_twitter(root: Path):
    path = root / "twitter_url_corpus" / "Twitter_URL_Corpus_test.txt"
    s1, s2, labels = [], [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if line == "":
            continue
        # sentence1, sentence2, "(n,6)", url; ten lines have an empty field before the url.
        fields = line.split("\t")
        if len(fields) < 3:
            raise SystemExit(f"{path}: line {n} has {len(fields)} fields")
        votes = fields[2]
        if not (votes.startswith("(") and votes.endswith(",6)")):
            raise SystemExit(f"{path}: line {n}: judgement {votes!r}")
        k = int(votes[1:-3])
        if k == 3:
            continue
        s1.append(fields[0])
        s2.append(fields[1])
        labels.append(1 if k >= 4 else 0)
    return s1, s2, labels


def load_summeval(root: Path):
    with (root / "summeval" / "summeval.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# --------------------------------------------------------------------------- classification
def undersample(labels, samples_per_label: int, n_experiments: int, seed: int):
    """mteb's AbsTaskClassification._undersample_data as called by _evaluate_subset:
    one list of training indices, shuffled in place once per experiment by a *fresh*
    RandomState(seed) (so experiment e sees the seed-42 permutation applied e+1 times),
    then the first `samples_per_label` indices of each label in that order."""
    order = list(range(len(labels)))
    picks = []
    for _ in range(n_experiments):
        np.random.RandomState(seed).shuffle(order)
        taken = defaultdict(int)
        chosen = []
        for i in order:
            if taken[labels[i]] < samples_per_label:
                taken[labels[i]] += 1
                chosen.append(i)
        picks.append(chosen)
    return picks


def classification_scores(y_true, y_pred):
    out = {
        "accuracy": accuracy_score(y_true, y_pred),
        "f1": f1_score(y_true, y_pred, average="macro"),
        "f1_weighted": f1_score(y_true, y_pred, average="weighted"),
        "precision": precision_score(y_true, y_pred, average="macro"),
        "precision_weighted": precision_score(y_true, y_pred, average="weighted"),
        "recall": recall_score(y_true, y_pred, average="macro"),
        "recall_weighted": recall_score(y_true, y_pred, average="weighted"),
    }
    if len(np.unique(y_true)) == 2:
        # mteb scores AP on the predicted labels, not on decision scores.
        out["ap"] = average_precision_score(y_true, y_pred, average="macro")
        out["ap_weighted"] = average_precision_score(y_true, y_pred, average="weighted")
    return {k: float(v) for k, v in out.items()}


def run_classification_subset(vectors, root, spec, samples_per_label, name):
    _, directory, train_file, test_file, delim = spec
    header = header_for(delim)
    train_x, train_lab = read_delimited(root / directory / train_file, delim, header)
    test_x, test_lab = read_delimited(root / directory / test_file, delim, header)
    classes = sorted(set(train_lab) | set(test_lab))
    idx = {c: i for i, c in enumerate(classes)}
    y_train = np.array([idx[c] for c in train_lab], dtype=np.int64)
    y_test = np.array([idx[c] for c in test_lab], dtype=np.int64)

    picks = undersample(y_train.tolist(), samples_per_label, N_EXPERIMENTS, SEED)
    union = sorted(set().union(*picks))
    train_emb = np.zeros((len(train_x), vectors.dim), dtype=np.float32)
    vectors.prefetch([train_x[i] for i in union] + test_x)
    train_emb[union] = vectors.embed([train_x[i] for i in union])
    test_emb = vectors.embed(test_x)

    per_exp = []
    for e, chosen in enumerate(picks):
        # mteb: LogisticRegression(max_iter=100), random_state set to the task seed
        # (unused by lbfgs), no n_jobs; refitted from scratch each experiment.
        clf = LogisticRegression(max_iter=100, random_state=SEED)
        clf.fit(train_emb[chosen], y_train[chosen])
        pred = clf.predict(test_emb)
        s = classification_scores(y_test, pred)
        per_exp.append(s)
        if ARGS.verbose:
            log(f"{name} experiment {e}: n_iter={int(clf.n_iter_[0])} accuracy={s['accuracy']!r}")
    # mteb's _calculate_avg_scores: np.mean per key over the experiments.
    return {k: float(np.mean([s[k] for s in per_exp])) for k in per_exp[0]}


def run_classification(vectors, root, task):
    samples_per_label, subsets = CLASSIFICATION[task]
    if subsets[0][0] is None:
        return run_classification_subset(vectors, root, subsets[0], samples_per_label, task)
    out = {}
    per_subset = {}
    for spec in subsets:
        per_subset[spec[0]] = run_classification_subset(
            vectors, root, spec, samples_per_label, f"{task}[{spec[0]}]"
        )
    keys = list(per_subset[subsets[0][0]])
    for k in keys:
        out[k] = float(np.mean([per_subset[s][k] for s in per_subset]))
    for s, scores in per_subset.items():
        for k, v in scores.items():
            out[f"{k}[{s}]"] = v
    return out


# --------------------------------------------------------------------------- torch stand-ins
def torch_normalize(a):
    """torch.nn.functional.normalize(a, p=2, dim=-1) in float32."""
    a = np.asarray(a, dtype=np.float32)
    norm = np.sqrt((a * a).sum(axis=-1, keepdims=True, dtype=np.float32))
    return a / np.maximum(norm, np.float32(1e-12))


def torch_pairwise_cos_sim(a, b):
    """mteb.similarity_functions.pairwise_cos_sim (what similarity_pairwise runs for a
    model whose similarity_fn_name is cosine)."""
    return (torch_normalize(a) * torch_normalize(b)).sum(axis=-1, dtype=np.float32)


def torch_cos_sim(a, b):
    return torch_normalize(np.atleast_2d(a)) @ torch_normalize(np.atleast_2d(b)).T


def torch_dot_score(a, b):
    return np.atleast_2d(a).astype(np.float32) @ np.atleast_2d(b).astype(np.float32).T


# --------------------------------------------------------------------------- pair classification
def best_accuracy(scores, labels, higher_is_similar):
    """Best accuracy over the cuts between consecutive pairs of the stable sort (most
    similar first). The cut after the last pair ('everything positive') and the cut
    before the first are never tried."""
    order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=higher_is_similar)
    best = 0.0
    tp = 0
    tn = int(np.sum(labels == 0))
    for pos in range(len(order) - 1):
        if labels[order[pos]] == 1:
            tp += 1
        else:
            tn -= 1
        acc = (tp + tn) / len(labels)
        if acc > best:
            best = acc
    return best


def best_f1(scores, labels, higher_is_similar):
    order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=higher_is_similar)
    positives = int(np.sum(labels))
    best = (0.0, 0.0, 0.0)
    hits = 0
    for pos in range(len(order) - 1):
        if labels[order[pos]] == 1:
            hits += 1
        if hits > 0:
            precision = hits / (pos + 1)
            recall = hits / positives
            f1 = 2 * precision * recall / (precision + recall)
            if f1 > best[0]:
                best = (f1, precision, recall)
    return best


def pair_measures(scores, labels, higher_is_similar):
    f1, precision, recall = best_f1(scores, labels, higher_is_similar)
    ap = average_precision_score(labels, np.array(scores) * (1 if higher_is_similar else -1))
    return {
        "accuracy": float(best_accuracy(scores, labels, higher_is_similar)),
        "f1": float(f1),
        "precision": float(precision),
        "recall": float(recall),
        "ap": float(ap),
    }


def run_pair_classification(vectors, root):
    s1, s2, labels = load_twitter(root)
    vectors.prefetch(s1 + s2)
    e1 = vectors.embed(s1)
    e2 = vectors.embed(s2)
    labels = np.asarray(labels, dtype=np.int64)
    # PairClassificationEvaluator: sklearn's paired distances on the f32 vectors (kept
    # in f32 by sklearn), the model's pairwise similarity (torch, f32), and a per-row
    # np.dot of f32 vectors (an f32 result); all turned into Python floats by .tolist().
    scores = {
        "similarity": (torch_pairwise_cos_sim(e1, e2).tolist(), True),
        "cosine": ((1 - paired_cosine_distances(e1, e2)).tolist(), True),
        "manhattan": (paired_manhattan_distances(e1, e2).tolist(), False),
        "euclidean": (paired_euclidean_distances(e1, e2).tolist(), False),
        "dot": (np.asarray([np.dot(e1[i], e2[i]) for i in range(len(e1))]).tolist(), True),
    }
    out = {}
    maxima = defaultdict(list)
    for name, (sc, higher) in scores.items():
        for metric, value in pair_measures(sc, labels, higher).items():
            out[f"{name}_{metric}"] = value
            maxima[metric].append(value)
    for metric in ["accuracy", "f1", "precision", "recall", "ap"]:
        out[f"max_{metric}"] = max(maxima[metric])
    out["pairs"] = len(labels)
    if ARGS.verbose:
        log(f"twitter-url-corpus: {len(labels)} pairs, {int(labels.sum())} positive")
    return out


# --------------------------------------------------------------------------- summarization
def run_summarization(vectors, root, min_score=0.0, max_score=5.0):
    articles = load_summeval(root)
    vectors.prefetch([s for a in articles for s in a["human_summaries"] + a["machine_summaries"]])
    human_all = vectors.embed([s for a in articles for s in a["human_summaries"]])
    machine_all = vectors.embed([s for a in articles for s in a["machine_summaries"]])
    kept = []  # (human scores, cosine, dot, similarity) per scored article
    h0 = m0 = 0
    for art in articles:
        hn, mn = len(art["human_summaries"]), len(art["machine_summaries"])
        human, machine = human_all[h0 : h0 + hn], machine_all[m0 : m0 + mn]
        h0 += hn
        m0 += mn
        gold = ((np.array(art["relevance"]) - min_score) / (max_score - min_score)).tolist()
        if len(gold) != mn:
            raise SystemExit(f"summeval {art.get('id')}: {len(gold)} scores for {mn} summaries")
        cos, dot, sim = [], [], []
        for m in machine:
            cos.append(float(np.max(torch_cos_sim(m, human))))
            dot.append(float(np.max(torch_dot_score(m, human))))
            # model.similarity one human summary at a time (cosine for this model).
            sim.append(float(np.max(np.array([float(torch_cos_sim(m, h)[0, 0]) for h in human], dtype=np.float32))))
        if len(set(gold)) == 1 or len(set(dot)) == 1 or len(set(cos)) == 1:
            continue
        kept.append((gold, cos, dot, sim))

    def correlations(which):
        res = {k: [] for k in ["cosine_spearman", "cosine_pearson", "dot_spearman", "dot_pearson", "spearman", "pearson"]}
        for gold, cos, dot, sim in kept:
            for prefix, pred in [("cosine_", cos), ("dot_", dot), ("", sim)]:
                sp = spearmanr(gold, pred)
                pe = pearsonr(gold, pred)
                res[f"{prefix}spearman"].append(which(sp))
                res[f"{prefix}pearson"].append(which(pe))
        return {k: float(np.mean(v)) for k, v in res.items()}

    out = correlations(lambda r: float(r.statistic))
    # DeprecatedSummarizationEvaluator hands np.mean the (statistic, pvalue) results.
    for k, v in correlations(lambda r: [float(r.statistic), float(r.pvalue)]).items():
        out[f"deprecated_{k}"] = v
    out["articles_scored"] = len(kept)
    return out


# --------------------------------------------------------------------------- clustering
def indices_sha256(indices):
    return hashlib.sha256(np.asarray(indices, dtype="<u4").tobytes()).hexdigest()


def read_assignments(path: Path, task: str):
    given = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            if rec.get("task") != task or "assignment" not in rec:
                continue
            e = rec.get("experiment", len(given))
            given[int(e)] = rec
    return [given[e] for e in sorted(given)]


def bootstrapped_clustering(emb, labels, *, n_experiments=N_EXPERIMENTS, draw_size=16_384, batch_size=512, seed=SEED):
    """mteb's _evaluate_clustering_bootstrapped for one label level, every document
    kept (max_fraction_of_documents_to_embed = None: no rng.sample draw first): one
    random.Random(seed) for the task; each experiment draws `draw_size` indices with
    replacement by rng.choices and refits the same MiniBatchKMeans object (k = number
    of distinct labels, k-means++, n_init=1, random_state=seed, so each fit restarts
    from RandomState(seed)); v-measure and AMI of the drawn labels vs fit_predict."""
    import random

    labels = np.asarray(labels)
    rng = random.Random(seed)
    model = MiniBatchKMeans(
        n_clusters=np.unique(labels).size, batch_size=batch_size, init="k-means++", n_init=1, random_state=seed
    )
    v, ami, draws = [], [], []
    for e in range(n_experiments):
        picks = rng.choices(range(len(emb)), k=draw_size)
        assign = model.fit_predict(emb[picks])
        v.append(float(v_measure_score(labels[picks], assign)))
        ami.append(float(adjusted_mutual_info_score(labels[picks], assign)))
        draws.append(picks)
        if ARGS.verbose:
            log(f"clustering experiment {e}: n_steps={model.n_steps_} v_measure={v[-1]!r}")
    return v, ami, draws


def run_clustering(vectors, root):
    texts, labels = read_delimited(root / "banking77" / "test.csv", ",", ["text", "category"])
    emb = vectors.embed(texts)
    labels = np.array(labels)
    v, ami, draws = bootstrapped_clustering(emb, labels)
    out = {
        "v_measure": float(np.mean(v)),
        "v_measure_std": float(np.std(v)),
        "ami": float(np.mean(ami)),
        "ami_std": float(np.std(ami)),
        "v_measures": v,
        "indices_sha256": [indices_sha256(p) for p in draws],
    }
    if ARGS.samples is not None:
        given = read_assignments(ARGS.samples, "banking77-clustering")
        if len(given) != N_EXPERIMENTS:
            raise SystemExit(f"{ARGS.samples}: {len(given)} clustering experiments, expected {N_EXPERIMENTS}")
        vg = []
        matches = None
        for picks, rec in zip(draws, given):
            assign = rec["assignment"]
            if len(assign) != len(picks):
                raise SystemExit(f"experiment {rec.get('experiment')}: {len(assign)} assignments for {len(picks)} items")
            vg.append(float(v_measure_score(labels[picks], np.asarray(assign))))
            if "indices" in rec:
                matches = (matches or 0) + int(list(rec["indices"]) == list(picks))
        out["v_measure_given"] = float(np.mean(vg))
        out["v_measures_given"] = vg
        if matches is not None:
            out["given_indices_match"] = matches
    return out


# --------------------------------------------------------------------------- main
def main():
    t0 = time.perf_counter()
    vectors = Vectors(ARGS.cache)
    root = ARGS.data_root
    limits = threadpool_limits(limits=ARGS.threads) if threadpool_limits else None
    try:
        if ARGS.task in CLASSIFICATION:
            out = run_classification(vectors, root, ARGS.task)
        elif ARGS.task == "twitter-url-corpus":
            out = run_pair_classification(vectors, root)
        elif ARGS.task == "summeval":
            out = run_summarization(vectors, root)
        else:
            out = run_clustering(vectors, root)
    finally:
        if limits is not None:
            limits.unregister()
    if ARGS.verbose:
        log(f"{ARGS.task}: {time.perf_counter() - t0:.1f} s")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
