#!/usr/bin/env python3
"""Peer for `probewatch bench`: HF transformers + PyTorch on CPU computing
every hidden state of a BERT-family model over the sentences of CoNLL-U /
CoNLL-U-Lex files, the way a user would: fast tokenizer on pre-split words,
sentences sorted by length, batches of 32 padded to the batch's longest,
`output_hidden_states=True`, `torch.inference_mode()`, N intra-op threads.

    peer_torch_extract.py MODEL_DIR THREADS FILE...

Prints one JSON line: sentences, words, tokens (real subword tokens,
special tokens included, padding excluded), seconds (forward passes only),
tokenize_seconds, tokens_per_second, peak_rss_kib, torch/transformers
versions. Needs torch and transformers (`pip install torch transformers`);
`probewatch bench` skips the peer without them. A dev-time comparison, not a
CI dependency.
"""
import json
import resource
import sys
import time


def sentences(paths):
    out = []
    for path in paths:
        words = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\n")
                if line.startswith("#"):
                    continue
                if not line.strip():
                    if words:
                        out.append(words)
                    words = []
                    continue
                cols = line.split("\t")
                if "-" in cols[0] or "." in cols[0]:
                    continue  # multiword-token ranges and empty nodes
                words.append(cols[1])
        if words:
            out.append(words)
    return out


def main():
    model_dir, threads, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    import torch
    import transformers
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(threads)
    sents = sentences(files)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, torch_dtype=torch.float32)
    model.eval()

    t = time.perf_counter()
    encoded = [tok(s, is_split_into_words=True, truncation=False)["input_ids"] for s in sents]
    tokenize_seconds = time.perf_counter() - t
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    batches = [order[i:i + 32] for i in range(0, len(order), 32)]
    tokens = sum(len(e) for e in encoded)
    pad = tok.pad_token_id or 0

    def run(batch):
        width = max(len(encoded[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, i in enumerate(batch):
            ids[r, : len(encoded[i])] = torch.tensor(encoded[i])
            mask[r, : len(encoded[i])] = 1
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        return len(out.hidden_states)

    with torch.inference_mode():
        run(batches[-1])  # warm-up: one small batch
        t = time.perf_counter()
        states = 0
        for b in batches:
            states = run(b)
        seconds = time.perf_counter() - t
    print(json.dumps({
        "sentences": len(sents),
        "words": sum(len(s) for s in sents),
        "tokens": tokens,
        "hidden_states": states,
        "seconds": seconds,
        "tokenize_seconds": tokenize_seconds,
        "tokens_per_second": tokens / seconds,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
