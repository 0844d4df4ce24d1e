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

Differences that remain (documented in the README): scikit-learn stops on
held-out accuracy and keeps the best-accuracy weights, we stop on held-out
cross-entropy; its held-out part is drawn per seed, ours is fixed; its
arithmetic is float64, ours float32.
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


def peer(x, y, train, test, config, seeds):
    accs, epochs = [], []
    for seed in range(seeds):
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
    ap.add_argument("dumps", nargs="+")
    args = ap.parse_args()
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
            m, s, _ = peer(layers[l], labels, train, test, config, args.seeds)
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
