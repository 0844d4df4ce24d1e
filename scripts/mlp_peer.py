#!/usr/bin/env python3
"""Dev-time comparison of probewatch's MLP classifier probe with
scikit-learn's MLPClassifier on the same activation dumps.

For each dump it runs `probewatch probe DUMP --classifier --json` (our
search and our 5 seeds), then trains scikit-learn's MLPClassifier with the
configuration our search chose for each layer (hidden sizes, alpha = our
l2) and the same training settings (Adam, lr 1e-3, batches of 200, at most
200 epochs, early stopping on 10 % of train with patience 10 and tol 1e-4)
with 5 seeds, and prints one Markdown table row per layer: test accuracy
mean ± std (ddof 0) for both.

Not a test and not run in CI. Needs numpy, safetensors and scikit-learn:

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install numpy safetensors scikit-learn
    /tmp/venv/bin/python scripts/mlp_peer.py --probewatch target/release/probewatch \
        ../shared/data/dumps/streusle-ps_role-minilm.safetensors \
        ../shared/data/dumps/streusle-ps_fxn-minilm.safetensors

With `--stopping sklearn` (default) scikit-learn uses its own early
stopping: held-out accuracy, a held-out part drawn per seed, the
best-accuracy weights. With `--stopping ours` the script trains
scikit-learn's network one epoch at a time (`partial_fit`, same Adam state)
and applies our rule: a fixed stratified 10 % held out, stop after 10 epochs
without a 1e-4 improvement of the held-out cross-entropy, keep the weights
of the best held-out loss. Left different: the random streams (init,
shuffles, which items are held out) and float64 arithmetic (ours is float32).
"""

import argparse
import json
import subprocess
import sys
import time
import warnings

try:
    import numpy as np
    from safetensors import safe_open
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
except ImportError as e:  # pragma: no cover
    sys.exit(f"mlp_peer.py needs numpy, safetensors and scikit-learn: {e}")


def load(path):
    """Layers, labels, split names and split per item of a single-task dump."""
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata() or {}
        names = list(f.keys())
        layers = {
            int(n.split(".")[1]): f.get_tensor(n).astype(np.float32)
            for n in names
            if n.startswith("layer.")
        }
        labels = f.get_tensor("labels").astype(np.int64)
        split = f.get_tensor("split") if "split" in names else np.zeros(len(labels), np.uint8)
    splits = json.loads(meta.get("splits", '["train", "test"]'))
    return layers, labels, splits, split


def ours(binary, dump):
    out = subprocess.run(
        [binary, "probe", dump, "--classifier", "--json", "--no-train-test"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def held_out(y, rows, fraction, seed):
    """Per label, a shuffled round(fraction * count) of `rows` held out (at
    most count - 1), as ours does it (our shuffle is another generator)."""
    rng = np.random.default_rng(seed)
    fit, held = [], []
    for label in np.unique(y[rows]):
        rs = rows[y[rows] == label].copy()
        rng.shuffle(rs)
        k = min(int(np.floor(fraction * len(rs) + 0.5)), len(rs) - 1)
        held.extend(rs[:k])
        fit.extend(rs[k:])
    return np.sort(np.array(fit, dtype=np.int64)), np.sort(np.array(held, dtype=np.int64))


def peer_our_stopping(x, y, train, test, config, seed):
    """scikit-learn's network and Adam, one epoch per `partial_fit`, with
    our stopping rule: a fixed stratified 10 % held out, stop when its
    cross-entropy has not improved by 1e-4 for 10 epochs, keep the weights
    of the best held-out loss."""
    rows = np.flatnonzero(train)
    fit, held = held_out(y, rows, 0.1, 0)
    classes = np.unique(y[rows])
    clf = MLPClassifier(
        hidden_layer_sizes=tuple(config["hidden"]),
        activation="relu",
        solver="adam",
        alpha=config["l2"],
        batch_size=200,
        learning_rate_init=1e-3,
        shuffle=True,
        random_state=seed,
    )
    best, best_loss, stale, epochs = None, np.inf, 0, 0
    for _ in range(200):
        epochs += 1
        clf.partial_fit(x[fit], y[fit], classes=classes)
        p = clf.predict_proba(x[held])
        idx = np.searchsorted(clf.classes_, y[held])
        loss = float(-np.mean(np.log(np.maximum(p[np.arange(len(held)), idx], 1e-10))))
        if loss < best_loss:
            best = ([c.copy() for c in clf.coefs_], [b.copy() for b in clf.intercepts_])
        stale = stale + 1 if loss > best_loss - 1e-4 else 0
        best_loss = min(best_loss, loss)
        if stale >= 10:
            break
    clf.coefs_, clf.intercepts_ = best
    return float((clf.predict(x[test]) == y[test]).mean()), epochs


def peer(x, y, train, test, config, seeds, stopping):
    accs, epochs = [], []
    for seed in range(seeds):
        if stopping == "ours":
            a, e = peer_our_stopping(x, y, train, test, config, seed)
            accs.append(a)
            epochs.append(e)
            continue
        clf = MLPClassifier(
            hidden_layer_sizes=tuple(config["hidden"]),
            activation="relu",
            solver="adam",
            alpha=config["l2"],
            batch_size=200,
            learning_rate_init=1e-3,
            max_iter=200,
            shuffle=True,
            random_state=seed,
            tol=1e-4,
            early_stopping=True,
            validation_fraction=0.1,
            n_iter_no_change=10,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(x[train], y[train])
        accs.append(float((clf.predict(x[test]) == y[test]).mean()))
        epochs.append(clf.n_iter_)
    return float(np.mean(accs)), float(np.std(accs)), epochs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--probewatch", default="target/release/probewatch")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument(
        "--stopping",
        choices=["sklearn", "ours"],
        default="sklearn",
        help="scikit-learn's own early stopping (held-out accuracy, per-seed "
        "held-out part), or ours re-implemented around partial_fit",
    )
    ap.add_argument("dumps", nargs="+")
    args = ap.parse_args()
    print(f"<!-- scikit-learn early stopping: {args.stopping} -->")
    print("| dump | layer | chosen config (hidden, l2) | probewatch test acc | scikit-learn test acc | difference / larger std |")
    print("|---|---:|---|---:|---:|---:|")
    for dump in args.dumps:
        t = time.time()
        report = ours(args.probewatch, dump)
        ours_s = time.time() - t
        layers, labels, splits, split = load(dump)
        train = split == splits.index("train")
        test = split == splits.index("test")
        t = time.time()
        for layer in report["layers"]:
            l = layer["layer"]
            config = layer["classifier"]["config"]
            a = layer["classifier_accuracy"]["test"]
            m, s, _ = peer(layers[l], labels, train, test, config, args.seeds, args.stopping)
            spread = max(a["std"], s)
            z = abs(a["mean"] - m) / spread if spread > 0 else float("inf")
            print(
                f"| {dump.rsplit('/', 1)[-1]} | {l} | {tuple(config['hidden'])}, {config['l2']:g} "
                f"| {100 * a['mean']:.2f} ± {100 * a['std']:.2f} % | {100 * m:.2f} ± {100 * s:.2f} % "
                f"| {z:.2f} |",
                flush=True,
            )
        print(
            f"<!-- {dump}: probewatch {ours_s:.1f} s (search + 5 seeds, all layers), "
            f"scikit-learn {time.time() - t:.1f} s (5 seeds of the chosen config only) -->",
            flush=True,
        )


if __name__ == "__main__":
    main()
