#!/usr/bin/env python3
"""Generate the encoder parity fixtures under tests/fixtures/encoder/.

Builds tiny random BERT, RoBERTa and DistilBERT models with HF transformers
(2 layers, hidden 32, 4 heads, intermediate 64, vocab 100, fixed seed), saves
each with save_pretrained (safetensors) into tests/fixtures/encoder/<name>/,
and next to it hidden_states.safetensors: for each of 3 id sequences of
different lengths, `ids.<s>` (I64) and `hidden.<s>.<l>` (F32, seq_len x 32),
HF's output_hidden_states (l = 0 is the embedding output).

Fixtures:
  bert            BertModel (no prefix), exact-erf GELU
  bert-sharded    BertForTokenClassification (`bert.` prefix), ReLU, weights
                  stored in F16 and sharded (model.safetensors.index.json);
                  the reference runs the saved weights in float32
  roberta         RobertaForMaskedLM (`roberta.` prefix), gelu_new (tanh);
                  one sequence contains the pad id mid-sequence
  distilbert      DistilBertForSequenceClassification (`distilbert.` prefix)

Dev-time only, never run by tests:
  pip install torch transformers safetensors   # from PyPI
  python scripts/make_encoder_fixtures.py
"""
import json
import os
import shutil

import torch
from safetensors.torch import save_file
from transformers import (
    BertConfig,
    BertForTokenClassification,
    BertModel,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    RobertaConfig,
    RobertaForMaskedLM,
    AutoModel,
)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "encoder")
VOCAB = 100
LENGTHS = [5, 12, 23]


def randomize(model, seed):
    """Larger-than-default random weights so attention is sharp and every
    parameter (LayerNorm included) matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name:
                if name.endswith("weight"):
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif p.dim() == 2:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def sequences(seed, pad=None):
    g = torch.Generator().manual_seed(seed)
    seqs = []
    for n in LENGTHS:
        ids = torch.randint(3, VOCAB, (n,), generator=g)
        seqs.append(ids)
    if pad is not None:
        seqs[1][4] = pad
    return seqs


def save(model, name, seed, pad=None, dtype=None, shard=None):
    out = os.path.join(ROOT, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    if dtype is not None:
        model = model.to(dtype)
    kwargs = {}
    if shard is not None:
        kwargs["max_shard_size"] = shard
    model.save_pretrained(out, **kwargs)
    # The reference: reload what was written, as the Rust side will, in fp32.
    base = AutoModel.from_pretrained(out, dtype=torch.float32, attn_implementation="eager")
    base.eval()
    tensors = {}
    for s, ids in enumerate(sequences(seed, pad)):
        with torch.no_grad():
            o = base(input_ids=ids[None, :], output_hidden_states=True)
        tensors[f"ids.{s}"] = ids.to(torch.int64).contiguous()
        for l, h in enumerate(o.hidden_states):
            tensors[f"hidden.{s}.{l}"] = h[0].to(torch.float32).contiguous()
    save_file(tensors, os.path.join(out, "hidden_states.safetensors"),
              metadata={"layers": str(len(o.hidden_states)), "sequences": str(len(LENGTHS))})
    for f in sorted(os.listdir(out)):
        print(f"{name}/{f}: {os.path.getsize(os.path.join(out, f))} bytes")


def main():
    torch.manual_seed(0)
    common = dict(vocab_size=VOCAB, num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=64)

    m = BertModel(BertConfig(**common, hidden_act="gelu"), add_pooling_layer=False)
    randomize(m, 1)
    save(m, "bert", seed=11)

    m = BertForTokenClassification(BertConfig(**common, hidden_act="relu", num_labels=3))
    randomize(m, 2)
    save(m, "bert-sharded", seed=12, dtype=torch.float16, shard="30KB")

    rcommon = dict(common, max_position_embeddings=66)
    m = RobertaForMaskedLM(RobertaConfig(**rcommon, hidden_act="gelu_new", pad_token_id=1,
                                         type_vocab_size=1))
    randomize(m, 3)
    save(m, "roberta", seed=13, pad=1)

    m = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=VOCAB, n_layers=2, dim=32, n_heads=4, hidden_dim=64,
        max_position_embeddings=64, activation="gelu", num_labels=2))
    randomize(m, 4)
    save(m, "distilbert", seed=14)


if __name__ == "__main__":
    main()
