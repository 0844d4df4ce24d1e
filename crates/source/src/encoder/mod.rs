//! A BERT-family encoder in plain Rust: loads a HuggingFace checkpoint
//! (`config.json` + safetensors weights) and computes, for sequences of
//! token ids, every hidden state exactly as HF transformers'
//! `output_hidden_states` does (index 0 = the embedding output after its
//! LayerNorm, then one per layer), in `f32`.
//!
//! Supported: BERT (`BertModel` and the `bert.`-prefixed task heads, old
//! `LayerNorm.gamma/beta` names), RoBERTa (`roberta.` prefix; position ids
//! start at `padding_idx + 1`) and DistilBERT (`distilbert.` prefix,
//! `transformer.layer.N` names, no token types). The forward pass is the
//! post-LayerNorm transformer: embeddings (word + position + token type 0) →
//! LayerNorm; per layer, fused Q/K/V projection, scaled dot-product attention
//! per head with softmax over the whole sequence, output projection +
//! residual + LayerNorm, feed-forward (GELU/ReLU) + residual + LayerNorm.
//! Matrix products go through `faer` with `Par::Seq`: one forward is
//! single-threaded, and [`Encoder::encode_many`] parallelises across
//! batches of sequences (sorted by length, packed without padding: the
//! sequences' tokens are stacked for the dense products, attention stays
//! within each sequence; one batched forward per rayon worker). Batches
//! depend only on the input, so results do not depend on the number of
//! threads.
//!
//! Weights are read with plain file reads, not memory-mapped (the crate
//! denies unsafe code), and widened once to `f32` (see the `weights` module).
//!
//! What this module deliberately does not do: tokenize (it takes ids),
//! pad or batch several sequences into one forward (no attention mask is
//! needed since every forward sees one whole sequence), cut or window
//! sequences longer than the position table (that is an error here; the
//! caller decides the rule), run task heads (pooler, MLM, classifier weights
//! are ignored), or load pickle checkpoints.

pub mod config;
mod weights;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use ndarray::Array2;
use rayon::prelude::*;

pub use config::{Activation, Architecture, EncoderConfig};
use weights::{Tensor, WeightFiles};

/// Most sequences in one batched forward pass of
/// [`Encoder::encode_many`].
pub const BATCH_SEQUENCES: usize = 64;

/// Most tokens in one batched forward pass of [`Encoder::encode_many`] (a
/// longer sequence is a batch of its own).
pub const BATCH_TOKENS: usize = 4096;

/// Everything that can go wrong loading or running an encoder. Every variant
/// names the file, folder or tensor at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncoderError {
    /// A file could not be read.
    #[error("{path}: I/O error while {action}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: String,
        /// The underlying error.
        source: io::Error,
    },
    /// `config.json` is malformed or has values we cannot use.
    #[error("{path}: {detail}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// `config.json` names an architecture this encoder does not implement.
    #[error("{path}: unsupported architecture: {detail}")]
    UnknownArchitecture {
        /// The config file.
        path: PathBuf,
        /// What the file says, and what is supported.
        detail: String,
    },
    /// The folder has neither `model.safetensors` nor `model.safetensors.index.json`.
    #[error(
        "{dir}: no model.safetensors or model.safetensors.index.json (pickle weights such as \
         pytorch_model.bin are never loaded)"
    )]
    NoWeights {
        /// The checkpoint folder.
        dir: PathBuf,
    },
    /// A safetensors file or shard index is malformed.
    #[error("{path}: invalid weights: {detail}")]
    Weights {
        /// The weight file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A tensor the architecture needs is absent.
    #[error("{dir}: tensor '{tensor}' is missing from the weights")]
    MissingTensor {
        /// The tensor name (with its prefix).
        tensor: String,
        /// The checkpoint folder or weight file.
        dir: PathBuf,
    },
    /// A tensor has a shape that does not match `config.json`.
    #[error("{path}: tensor '{tensor}' has shape {found:?}, config.json implies {expected:?}")]
    BadShape {
        /// The weight file holding the tensor.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// Shape in the file.
        found: Vec<usize>,
        /// Shape implied by the config.
        expected: Vec<usize>,
    },
    /// A token id is not below the vocabulary size.
    #[error("{model}: token id {id} at position {position} is outside the vocabulary of {vocab}")]
    TokenOutOfVocab {
        /// The checkpoint folder.
        model: PathBuf,
        /// The offending id.
        id: u32,
        /// Its position in the sequence.
        position: usize,
        /// Rows of the word embedding table.
        vocab: usize,
    },
    /// A sequence is longer than the position table allows.
    #[error("{model}: sequence of {len} tokens is longer than the model's maximum of {max}")]
    SequenceTooLong {
        /// The checkpoint folder.
        model: PathBuf,
        /// Tokens in the sequence.
        len: usize,
        /// [`Encoder::max_positions`].
        max: usize,
    },
    /// The worker pool for [`Encoder::encode_many`] could not be built.
    #[error("building a pool of {threads} encoder threads: {detail}")]
    ThreadPool {
        /// Threads asked for.
        threads: usize,
        /// The pool builder's message.
        detail: String,
    },
}

/// A LayerNorm's scale and shift.
#[derive(Debug, Clone)]
struct LayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

/// A linear layer `y = x·Wᵀ + b`. PyTorch stores `W` as `[out, in]`; we keep
/// `Wᵀ` row-major (`[in, out]`), so both operands of the product are
/// row-major with unit column stride.
#[derive(Debug, Clone)]
struct Linear {
    /// The weight as stored, `[out, in]` row-major.
    w: Vec<f32>,
    b: Vec<f32>,
    inp: usize,
    out: usize,
}

/// One transformer layer.
#[derive(Debug, Clone)]
struct Layer {
    /// Q, K and V stacked: `[3H, H]`.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    ffn_norm: LayerNorm,
}

/// A loaded BERT-family encoder, ready to run (immutable, `Sync`).
#[derive(Debug, Clone)]
pub struct Encoder {
    dir: PathBuf,
    config: EncoderConfig,
    vocab: usize,
    /// `[vocab, H]`.
    word: Vec<f32>,
    /// `[max_position_embeddings, H]`.
    position: Vec<f32>,
    /// Row 0 of the token type table (`None` for DistilBERT).
    token_type0: Option<Vec<f32>>,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
}

/// The tensor names of one architecture under a resolved prefix.
struct Names {
    arch: Architecture,
    prefix: String,
}

impl Names {
    fn embed(&self, what: &str) -> String {
        format!("{}embeddings.{what}", self.prefix)
    }
    fn layer(&self, i: usize, what: &str) -> String {
        match self.arch {
            Architecture::DistilBert => format!("{}transformer.layer.{i}.{what}", self.prefix),
            _ => format!("{}encoder.layer.{i}.{what}", self.prefix),
        }
    }
    /// (Q, K, V, attention output, attention norm, FFN in, FFN out, FFN norm) stems.
    fn layer_parts(&self) -> [&'static str; 8] {
        match self.arch {
            Architecture::DistilBert => [
                "attention.q_lin",
                "attention.k_lin",
                "attention.v_lin",
                "attention.out_lin",
                "sa_layer_norm",
                "ffn.lin1",
                "ffn.lin2",
                "output_layer_norm",
            ],
            _ => [
                "attention.self.query",
                "attention.self.key",
                "attention.self.value",
                "attention.output.dense",
                "attention.output.LayerNorm",
                "intermediate.dense",
                "output.dense",
                "output.LayerNorm",
            ],
        }
    }
}

/// Hands out loaded tensors by name, checking shapes.
struct Loader<'a> {
    files: &'a WeightFiles,
    tensors: HashMap<String, Tensor>,
}

impl Loader<'_> {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, EncoderError> {
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| EncoderError::MissingTensor {
                tensor: name.to_string(),
                dir: self.files.dir.clone(),
            })?;
        if t.shape != shape {
            return Err(EncoderError::BadShape {
                path: self.files.file_of(name),
                tensor: name.to_string(),
                found: t.shape,
                expected: shape.to_vec(),
            });
        }
        Ok(t.data)
    }

    fn linear(&mut self, stem: &str, out: usize, inp: usize) -> Result<Linear, EncoderError> {
        let w = self.take(&format!("{stem}.weight"), &[out, inp])?;
        Ok(Linear {
            w,
            b: self.take(&format!("{stem}.bias"), &[out])?,
            inp,
            out,
        })
    }

    fn norm(&mut self, names: &(String, String), h: usize) -> Result<LayerNorm, EncoderError> {
        Ok(LayerNorm {
            gamma: self.take(&names.0, &[h])?,
            beta: self.take(&names.1, &[h])?,
        })
    }
}

/// The weight and bias names of a LayerNorm: `weight`/`bias`, or the old
/// TensorFlow-era `gamma`/`beta` when those are what the file holds.
fn norm_names(files: &WeightFiles, stem: &str) -> (String, String) {
    let old = (format!("{stem}.gamma"), format!("{stem}.beta"));
    let new = (format!("{stem}.weight"), format!("{stem}.bias"));
    if !files.contains(&new.0) && files.contains(&old.0) {
        old
    } else {
        new
    }
}

impl Encoder {
    /// Loads the checkpoint in `dir`: `config.json` plus `model.safetensors`
    /// (or the shards of `model.safetensors.index.json`).
    pub fn load(dir: &Path) -> Result<Encoder, EncoderError> {
        let config = EncoderConfig::from_file(&dir.join("config.json"))?;
        let files = WeightFiles::open(dir)?;
        let arch = config.architecture;
        let own_prefix = format!("{}.", arch.name());
        let word_name = "embeddings.word_embeddings.weight";
        let prefix = [own_prefix.as_str(), ""]
            .into_iter()
            .find(|p| files.contains(&format!("{p}{word_name}")))
            .ok_or_else(|| EncoderError::MissingTensor {
                tensor: format!("{word_name} (with or without the '{own_prefix}' prefix)"),
                dir: dir.to_path_buf(),
            })?
            .to_string();
        let names = Names { arch, prefix };

        let h = config.hidden_size;
        let ff = config.intermediate_size;
        // Every name we will need, so the files are read once.
        let mut wanted = vec![
            names.embed("word_embeddings.weight"),
            names.embed("position_embeddings.weight"),
        ];
        let has_types = arch != Architecture::DistilBert;
        if has_types {
            wanted.push(names.embed("token_type_embeddings.weight"));
        }
        let embed_norm_names = norm_names(&files, &names.embed("LayerNorm"));
        wanted.push(embed_norm_names.0.clone());
        wanted.push(embed_norm_names.1.clone());
        let parts = names.layer_parts();
        let mut layer_norms = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            for (k, part) in parts.iter().enumerate() {
                let stem = names.layer(i, part);
                if k == 4 || k == 7 {
                    let n = norm_names(&files, &stem);
                    wanted.push(n.0.clone());
                    wanted.push(n.1.clone());
                    layer_norms.push(n);
                } else {
                    wanted.push(format!("{stem}.weight"));
                    wanted.push(format!("{stem}.bias"));
                }
            }
        }
        let tensors = files.read(&wanted)?;
        let vocab = tensors
            .get(&wanted[0])
            .map(|t| t.shape.first().copied().unwrap_or(0))
            .unwrap_or(0);
        let mut ld = Loader {
            files: &files,
            tensors,
        };
        let word = ld.take(&names.embed("word_embeddings.weight"), &[vocab, h])?;
        let position = ld.take(
            &names.embed("position_embeddings.weight"),
            &[config.max_position_embeddings, h],
        )?;
        let token_type0 = if has_types {
            let table = ld.take(
                &names.embed("token_type_embeddings.weight"),
                &[config.type_vocab_size, h],
            )?;
            if config.type_vocab_size == 0 {
                return Err(EncoderError::Config {
                    path: dir.join("config.json"),
                    detail: "type_vocab_size is 0".into(),
                });
            }
            Some(table[..h].to_vec())
        } else {
            None
        };
        let embed_norm = ld.norm(&embed_norm_names, h)?;
        let mut layers = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let stem = |k: usize| names.layer(i, parts[k]);
            let q = ld.linear(&stem(0), h, h)?;
            let k = ld.linear(&stem(1), h, h)?;
            let v = ld.linear(&stem(2), h, h)?;
            // Stack Q, K and V as rows of one [3H, H] weight.
            let qkv = Linear {
                w: [q.w, k.w, v.w].concat(),
                b: [q.b, k.b, v.b].concat(),
                inp: h,
                out: 3 * h,
            };
            let attn_out = ld.linear(&stem(3), h, h)?;
            let attn_norm = ld.norm(&layer_norms[2 * i], h)?;
            let ffn_in = ld.linear(&stem(5), ff, h)?;
            let ffn_out = ld.linear(&stem(6), h, ff)?;
            let ffn_norm = ld.norm(&layer_norms[2 * i + 1], h)?;
            layers.push(Layer {
                qkv,
                attn_out,
                attn_norm,
                ffn_in,
                ffn_out,
                ffn_norm,
            });
        }
        Ok(Encoder {
            dir: dir.to_path_buf(),
            config,
            vocab,
            word,
            position,
            token_type0,
            embed_norm,
            layers,
        })
    }

    /// The checked `config.json`.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// The checkpoint folder the weights came from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of transformer layers; [`Encoder::hidden_states`] returns one
    /// more matrix than this.
    pub fn num_layers(&self) -> usize {
        self.config.num_layers
    }

    /// Width of every hidden state.
    pub fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    /// Longest sequence accepted, in tokens (special tokens included).
    pub fn max_positions(&self) -> usize {
        self.config
            .max_positions()
            .min(self.position.len() / self.config.hidden_size.max(1))
    }

    /// Rows of the word embedding table.
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    /// Every hidden state of one sequence: `num_layers() + 1` matrices of
    /// `ids.len() × hidden_size()`, index 0 the embedding output. The
    /// sequence is attended whole (no padding, no mask). Errors when an id
    /// is outside the vocabulary or the sequence is longer than
    /// [`Encoder::max_positions`].
    pub fn hidden_states(&self, ids: &[u32]) -> Result<Vec<Array2<f32>>, EncoderError> {
        Ok(self
            .hidden_states_batch(&[ids])?
            .pop()
            .expect("one sequence in, one out"))
    }

    /// [`Encoder::hidden_states`] of several sequences in one forward pass:
    /// their tokens are stacked into one matrix for every dense product (no
    /// padding), attention stays within each sequence. A sequence's states
    /// do not depend on the others in the batch beyond floating-point
    /// rounding of the blocked products (tested to 1e-6).
    pub fn hidden_states_batch(
        &self,
        seqs: &[&[u32]],
    ) -> Result<Vec<Vec<Array2<f32>>>, EncoderError> {
        let h = self.config.hidden_size;
        let mut segments = Vec::with_capacity(seqs.len());
        let mut total = 0;
        for ids in seqs {
            self.check_ids(ids)?;
            segments.push((total, ids.len()));
            total += ids.len();
        }
        let mut x = Vec::with_capacity(total * h);
        for ids in seqs {
            x.extend(self.embed(ids));
        }
        let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut scratch = Scratch::new(total, longest, &self.config);
        let mut packed = Vec::with_capacity(self.layers.len() + 1);
        for layer in &self.layers {
            let next = self.layer_forward(layer, &x, total, &segments, &mut scratch);
            packed.push(x);
            x = next;
        }
        packed.push(x);
        Ok(segments
            .iter()
            .map(|&(start, n)| {
                packed
                    .iter()
                    .map(|state| to_array(state[start * h..(start + n) * h].to_vec(), n, h))
                    .collect()
            })
            .collect())
    }

    fn check_ids(&self, ids: &[u32]) -> Result<(), EncoderError> {
        let n = ids.len();
        if n > self.max_positions() {
            return Err(EncoderError::SequenceTooLong {
                model: self.dir.clone(),
                len: n,
                max: self.max_positions(),
            });
        }
        if let Some((position, &id)) = ids
            .iter()
            .enumerate()
            .find(|&(_, &id)| id as usize >= self.vocab)
        {
            return Err(EncoderError::TokenOutOfVocab {
                model: self.dir.clone(),
                id,
                position,
                vocab: self.vocab,
            });
        }
        Ok(())
    }

    /// [`Encoder::hidden_states`] of many sequences on `threads` worker
    /// threads (0 = rayon's default). Sequences are sorted longest first and
    /// packed into batches of at most [`BATCH_SEQUENCES`] sequences and
    /// [`BATCH_TOKENS`] tokens ([`Encoder::hidden_states_batch`]); each
    /// worker runs one single-threaded forward per batch. The batches depend
    /// only on the input, so the result (in input order) is identical
    /// whatever the thread count.
    pub fn encode_many(
        &self,
        seqs: &[Vec<u32>],
        threads: usize,
    ) -> Result<Vec<Vec<Array2<f32>>>, EncoderError> {
        self.encode_many_with(seqs, threads, |_, states| states)
    }

    /// Like [`Encoder::encode_many`], but hands each sequence's hidden states
    /// (with its index in `seqs`) to `keep` on the worker thread and returns
    /// what `keep` makes of them, in input order; use it to keep only the
    /// rows you need instead of every state of every sequence.
    pub fn encode_many_with<T, F>(
        &self,
        seqs: &[Vec<u32>],
        threads: usize,
        keep: F,
    ) -> Result<Vec<T>, EncoderError>
    where
        T: Send,
        F: Fn(usize, Vec<Array2<f32>>) -> T + Sync,
    {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| EncoderError::ThreadPool {
                threads,
                detail: e.to_string(),
            })?;
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        // Longest first balances the workers; ties keep input order.
        order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].len()));
        let mut batches: Vec<Vec<usize>> = Vec::new();
        let mut tokens = 0;
        for &i in &order {
            let len = seqs[i].len();
            match batches.last_mut() {
                Some(b) if b.len() < BATCH_SEQUENCES && tokens + len <= BATCH_TOKENS => {
                    b.push(i);
                    tokens += len;
                }
                _ => {
                    batches.push(vec![i]);
                    tokens = len;
                }
            }
        }
        let done: Vec<Result<Vec<(usize, T)>, EncoderError>> = pool.install(|| {
            batches
                .par_iter()
                .with_max_len(1)
                .map(|batch| {
                    let ids: Vec<&[u32]> = batch.iter().map(|&i| seqs[i].as_slice()).collect();
                    let states = self.hidden_states_batch(&ids)?;
                    Ok(batch
                        .iter()
                        .zip(states)
                        .map(|(&i, s)| (i, keep(i, s)))
                        .collect())
                })
                .collect()
        });
        let mut slots: Vec<Option<T>> = (0..seqs.len()).map(|_| None).collect();
        for batch in done {
            for (i, t) in batch? {
                slots[i] = Some(t);
            }
        }
        Ok(slots.into_iter().flatten().collect())
    }

    /// Embedding output after LayerNorm, `[n, H]` row-major.
    fn embed(&self, ids: &[u32]) -> Vec<f32> {
        let h = self.config.hidden_size;
        let pad = self.config.pad_token_id;
        let mut x = vec![0f32; ids.len() * h];
        let mut seen = 0usize;
        for (i, &id) in ids.iter().enumerate() {
            let pos = match self.config.architecture {
                // HF create_position_ids_from_input_ids: padding tokens sit at
                // padding_idx, the others count from padding_idx + 1.
                Architecture::Roberta => {
                    if id == pad {
                        pad as usize
                    } else {
                        seen += 1;
                        pad as usize + seen
                    }
                }
                _ => i,
            };
            let row = &mut x[i * h..(i + 1) * h];
            let w = &self.word[id as usize * h..(id as usize + 1) * h];
            let p = &self.position[pos * h..(pos + 1) * h];
            match &self.token_type0 {
                Some(t) => {
                    for j in 0..h {
                        row[j] = w[j] + t[j] + p[j];
                    }
                }
                None => {
                    for j in 0..h {
                        row[j] = w[j] + p[j];
                    }
                }
            }
        }
        layer_norm(&mut x, h, &self.embed_norm, self.config.layer_norm_eps);
        x
    }

    /// One transformer layer on `x` (`[n, H]`), returning its output.
    /// `x` holds `total` rows: the sequences of `segments` (first row,
    /// rows) stacked; attention stays within a segment.
    fn layer_forward(
        &self,
        layer: &Layer,
        x: &[f32],
        total: usize,
        segments: &[(usize, usize)],
        s: &mut Scratch,
    ) -> Vec<f32> {
        let h = self.config.hidden_size;
        let heads = self.config.num_heads;
        let dh = self.config.head_size();
        let n = total;
        linear(x, n, &layer.qkv, &mut s.qkv);
        let scale = 1.0 / (dh as f32).sqrt();
        for &(start, n) in segments.iter().filter(|&&(_, n)| n > 0) {
            let qkv = &s.qkv[start * 3 * h..];
            for head in 0..heads {
                let q = MatRef::from_row_major_slice_with_stride(&qkv[head * dh..], n, dh, 3 * h);
                let k =
                    MatRef::from_row_major_slice_with_stride(&qkv[h + head * dh..], n, dh, 3 * h);
                let v = MatRef::from_row_major_slice_with_stride(
                    &qkv[2 * h + head * dh..],
                    n,
                    dh,
                    3 * h,
                );
                let scores = MatMut::from_row_major_slice_mut(&mut s.scores[..n * n], n, n);
                matmul(scores, Accum::Replace, q, k.transpose(), scale, Par::Seq);
                for row in s.scores[..n * n].chunks_exact_mut(n) {
                    softmax(row);
                }
                let probs = MatRef::from_row_major_slice(&s.scores[..n * n], n, n);
                // faer 0.24.4's `from_row_major_slice_with_stride_mut` swaps
                // the strides (writes out of bounds); the transposed
                // column-major view is the same matrix and is correct.
                let ctx = MatMut::from_column_major_slice_with_stride_mut(
                    &mut s.ctx[start * h + head * dh..],
                    dh,
                    n,
                    h,
                )
                .transpose_mut();
                matmul(ctx, Accum::Replace, probs, v, 1.0, Par::Seq);
            }
        }
        let mut attn = vec![0f32; n * h];
        linear(&s.ctx, n, &layer.attn_out, &mut attn);
        for (a, &r) in attn.iter_mut().zip(x) {
            *a += r;
        }
        layer_norm(&mut attn, h, &layer.attn_norm, self.config.layer_norm_eps);
        linear(&attn, n, &layer.ffn_in, &mut s.inter);
        activate(&mut s.inter, self.config.activation);
        let mut out = vec![0f32; n * h];
        linear(&s.inter, n, &layer.ffn_out, &mut out);
        for (o, &r) in out.iter_mut().zip(&attn) {
            *o += r;
        }
        layer_norm(&mut out, h, &layer.ffn_norm, self.config.layer_norm_eps);
        out
    }
}

/// Buffers reused across the layers of one forward.
struct Scratch {
    qkv: Vec<f32>,
    scores: Vec<f32>,
    ctx: Vec<f32>,
    inter: Vec<f32>,
}

impl Scratch {
    /// For `n` stacked rows whose longest sequence has `longest` rows.
    fn new(n: usize, longest: usize, c: &EncoderConfig) -> Scratch {
        Scratch {
            qkv: vec![0.0; n * 3 * c.hidden_size],
            scores: vec![0.0; longest * longest],
            ctx: vec![0.0; n * c.hidden_size],
            inter: vec![0.0; n * c.intermediate_size],
        }
    }
}

fn to_array(x: Vec<f32>, n: usize, h: usize) -> Array2<f32> {
    // The length is n·h by construction.
    Array2::from_shape_vec((n, h), x).unwrap_or_else(|_| Array2::zeros((n, h)))
}

/// `out = x·Wᵀ + b` for `rows` rows of `x` (row-major `[rows, in]`).
fn linear(x: &[f32], rows: usize, lin: &Linear, out: &mut [f32]) {
    for row in out.chunks_exact_mut(lin.out) {
        row.copy_from_slice(&lin.b);
    }
    if rows == 0 {
        return;
    }
    let dst = MatMut::from_row_major_slice_mut(out, rows, lin.out);
    let lhs = MatRef::from_row_major_slice(x, rows, lin.inp);
    let rhs = MatRef::from_row_major_slice(&lin.w, lin.out, lin.inp).transpose();
    matmul(dst, Accum::Add, lhs, rhs, 1.0, Par::Seq);
}

/// Row-wise LayerNorm in place (biased variance, as PyTorch), statistics
/// accumulated in `f64`.
fn layer_norm(x: &mut [f32], h: usize, norm: &LayerNorm, eps: f32) {
    for row in x.chunks_exact_mut(h) {
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / h as f64;
        let var = row
            .iter()
            .map(|&v| {
                let d = f64::from(v) - mean;
                d * d
            })
            .sum::<f64>()
            / h as f64;
        let inv = 1.0 / (var + f64::from(eps)).sqrt();
        for ((v, &g), &b) in row.iter_mut().zip(&norm.gamma).zip(&norm.beta) {
            *v = ((f64::from(*v) - mean) * inv) as f32 * g + b;
        }
    }
}

/// Numerically stable softmax in place.
fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // Separate loops: the exponentials vectorise, the sum stays in order.
    for v in row.iter_mut() {
        *v = exp_f32(*v - max);
    }
    let sum: f32 = row.iter().sum();
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

fn activate(x: &mut [f32], act: Activation) {
    match act {
        Activation::Gelu => {
            for v in x.iter_mut() {
                let z = *v;
                *v = 0.5 * z * (1.0 + erf(z * std::f32::consts::FRAC_1_SQRT_2));
            }
        }
        Activation::GeluTanh => {
            // HF NewGELUActivation: x/2·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
            let c = (2.0 / std::f32::consts::PI).sqrt();
            for v in x.iter_mut() {
                let z = *v;
                *v = 0.5 * z * (1.0 + (c * (z + 0.044715 * z * z * z)).tanh());
            }
        }
        Activation::Relu => {
            for v in x.iter_mut() {
                *v = v.max(0.0);
            }
        }
    }
}

/// `e^x` in `f32` without a libm call, so loops over it vectorise (a
/// scalar `expf` per feed-forward unit was half of the forward pass): Cody
/// and Waite range reduction `x = n·ln 2 + r`, `|r| ≤ ln 2 / 2`, then the
/// degree-7 polynomial of Cephes' `expf` and `2ⁿ` put into the exponent
/// bits. Relative error below 2e-7 on `[-87, 88]`; inputs are clamped to that
/// range (below it `e^x` is under `f32`'s normal range, far below anything
/// that matters here).
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer with
    // plain float additions (`round` would be a libm call before SSE4.1).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2_E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // n ∈ [-126, 127]: 2ⁿ is a normal f32. `t`'s low mantissa bits hold n
    // (its ulp is 1), so integer arithmetic on the bits makes 2ⁿ without a
    // float-to-int cast (whose saturation would not vectorise).
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    e * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

/// The error function, to about 3e-7 absolute error: the Chebyshev-fitted
/// complementary error function of Press et al., *Numerical Recipes* (2nd
/// ed., §6.2, `erfcc`; stable Rust has no `erf`), evaluated in `f32` with
/// [`exp_f32`] and without branches, so the GELU loop vectorises. For
/// `|x| ≥ 4`, `erfc(|x|) < 2e-8` rounds away against 1 in `f32`.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_204
                                + t * (1.488_515_9 + t * (-0.822_152_2 + t * 0.170_872_77))))))));
    let erfc = t * exp_f32(poly);
    (1.0 - erfc).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::SafeTensors;
    use safetensors::tensor::TensorView;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/encoder")
            .join(name)
    }

    /// Copies a fixture model into a temp dir, renaming/dropping tensors with
    /// `edit` (name → new name, or `None` to drop).
    fn edited_copy(name: &str, edit: impl Fn(&str) -> Option<String>) -> tempfile::TempDir {
        let src = fixture(name);
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
        let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut views: Vec<(String, TensorView<'_>)> = Vec::new();
        for (n, v) in st.tensors() {
            if let Some(new) = edit(&n) {
                views.push((new, v));
            }
        }
        safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors")).unwrap();
        dir
    }

    fn ids() -> Vec<Vec<u32>> {
        vec![
            vec![5, 17, 99, 3],
            vec![2, 40, 41, 42, 43, 44, 45, 46, 47],
            vec![],
            vec![7],
            vec![8, 9, 10, 11, 12, 13],
        ]
    }

    #[test]
    fn exp_matches_std_to_a_few_ulps() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let want = f64::from(x).exp();
            let got = f64::from(exp_f32(x));
            worst = worst.max((got - want).abs() / want);
            x += 0.001_37;
        }
        assert!(worst < 2e-7, "largest relative error {worst}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(-1e9) < 1e-37 && exp_f32(-1e9) >= 0.0);
        assert!(exp_f32(f32::NEG_INFINITY) >= 0.0);
    }

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0_f64, 0.0_f64),
            (0.1, 0.112_462_916_018_284_9),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.5, 0.999_999_256_901_627_7),
            (-1.0, -0.842_700_792_949_714_9),
            (-3.9, -0.999_999_965_224_000_9),
            (4.0, 1.0),
            (-30.0, -1.0),
        ] {
            let got = f64::from(erf(x as f32));
            assert!((got - want).abs() < 3e-7, "erf({x}) = {got} != {want}");
        }
    }

    #[test]
    fn legacy_gamma_beta_names_give_the_same_states() {
        let original = Encoder::load(&fixture("bert")).unwrap();
        let legacy = edited_copy("bert", |n| {
            Some(
                n.replace("LayerNorm.weight", "LayerNorm.gamma")
                    .replace("LayerNorm.bias", "LayerNorm.beta"),
            )
        });
        let renamed = Encoder::load(legacy.path()).unwrap();
        let ids = [3, 50, 60, 70, 4];
        assert_eq!(
            original.hidden_states(&ids).unwrap(),
            renamed.hidden_states(&ids).unwrap()
        );
    }

    #[test]
    fn prefixed_and_bare_names_give_the_same_states() {
        let original = Encoder::load(&fixture("bert")).unwrap();
        let prefixed = edited_copy("bert", |n| Some(format!("bert.{n}")));
        let loaded = Encoder::load(prefixed.path()).unwrap();
        let ids = [3, 50, 60];
        assert_eq!(
            original.hidden_states(&ids).unwrap(),
            loaded.hidden_states(&ids).unwrap()
        );
    }

    #[test]
    fn missing_tensor_is_named() {
        let dir = edited_copy("distilbert", |n| {
            (!n.ends_with("layer.1.ffn.lin2.weight")).then(|| n.to_string())
        });
        let err = Encoder::load(dir.path()).unwrap_err();
        assert!(matches!(err, EncoderError::MissingTensor { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("distilbert.transformer.layer.1.ffn.lin2.weight"),
            "{msg}"
        );
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    }

    #[test]
    fn missing_embeddings_name_both_spellings() {
        let dir = edited_copy("roberta", |n| {
            (!n.contains("word_embeddings")).then(|| n.to_string())
        });
        let msg = Encoder::load(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("embeddings.word_embeddings.weight"), "{msg}");
        assert!(msg.contains("'roberta.'"), "{msg}");
    }

    #[test]
    fn shape_mismatch_with_config_is_an_error() {
        let dir = edited_copy("bert", |n| Some(n.to_string()));
        let cfg = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        let cfg = cfg.replace("\"intermediate_size\": 64", "\"intermediate_size\": 48");
        std::fs::write(dir.path().join("config.json"), cfg).unwrap();
        let err = Encoder::load(dir.path()).unwrap_err();
        assert!(matches!(err, EncoderError::BadShape { .. }), "{err}");
        assert!(
            err.to_string().contains("intermediate.dense.weight"),
            "{err}"
        );
    }

    #[test]
    fn pickle_weights_are_never_loaded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            fixture("bert").join("config.json"),
            dir.path().join("config.json"),
        )
        .unwrap();
        std::fs::write(dir.path().join("pytorch_model.bin"), b"not loaded").unwrap();
        let err = Encoder::load(dir.path()).unwrap_err();
        assert!(matches!(err, EncoderError::NoWeights { .. }), "{err}");
    }

    #[test]
    fn truncated_weights_are_an_error_naming_the_file() {
        let dir = edited_copy("bert", |n| Some(n.to_string()));
        let path = dir.path().join("model.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
        let err = Encoder::load(dir.path()).unwrap_err();
        assert!(matches!(err, EncoderError::Weights { .. }), "{err}");
        assert!(err.to_string().contains("model.safetensors"), "{err}");
    }

    #[test]
    fn bad_ids_and_long_sequences_are_errors() {
        let enc = Encoder::load(&fixture("bert")).unwrap();
        assert_eq!(enc.vocab_size(), 100);
        let err = enc.hidden_states(&[3, 100]).unwrap_err();
        assert!(
            matches!(
                err,
                EncoderError::TokenOutOfVocab {
                    id: 100,
                    position: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(enc.max_positions(), 64);
        assert!(enc.hidden_states(&[3; 64]).is_ok());
        let err = enc.hidden_states(&[3; 65]).unwrap_err();
        assert!(matches!(
            err,
            EncoderError::SequenceTooLong {
                len: 65,
                max: 64,
                ..
            }
        ));
        // The batch API reports the same error instead of panicking.
        assert!(enc.encode_many(&[vec![3], vec![3; 65]], 2).is_err());
    }

    #[test]
    fn roberta_max_positions_excludes_the_padding_offset() {
        let enc = Encoder::load(&fixture("roberta")).unwrap();
        // 66 position rows, padding_idx 1: ids 2..=65 serve 64 tokens.
        assert_eq!(enc.max_positions(), 64);
        assert!(enc.hidden_states(&[5; 64]).is_ok());
        assert!(enc.hidden_states(&[5; 65]).is_err());
    }

    #[test]
    fn encode_many_keeps_order_and_is_thread_count_independent() {
        let enc = Encoder::load(&fixture("distilbert")).unwrap();
        let mut seqs = ids();
        // Enough sequences for several batches, of many lengths.
        let mut state = 7u64;
        for k in 0..90 {
            let len = 1 + (k * 7) % 40;
            seqs.push(
                (0..len)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1);
                        ((state >> 40) % 100) as u32
                    })
                    .collect(),
            );
        }
        let one = enc.encode_many(&seqs, 1).unwrap();
        let two = enc.encode_many(&seqs, 2).unwrap();
        assert_eq!(one, two, "same bits for 1 and 2 threads");
        let mut worst = 0f32;
        for (s, states) in seqs.iter().zip(&one) {
            assert_eq!(states.len(), 3);
            // Batched with others or alone: the same states up to the
            // rounding of the blocked products.
            for (b, a) in states.iter().zip(&enc.hidden_states(s).unwrap()) {
                assert_eq!(b.dim(), (s.len(), 32));
                for (x, y) in b.iter().zip(a) {
                    worst = worst.max((x - y).abs());
                }
            }
        }
        assert!(worst <= 1e-6, "batched vs alone: {worst}");
        let firsts = enc
            .encode_many_with(&seqs[..5], 2, |i, states| (i, states[2].nrows()))
            .unwrap();
        assert_eq!(firsts, vec![(0, 4), (1, 9), (2, 0), (3, 1), (4, 6)]);
    }

    #[test]
    fn config_accepts_both_spellings_and_old_configs() {
        let p = Path::new("x/config.json");
        let bert = EncoderConfig::from_json(
            r#"{"architectures": ["BertForMaskedLM"], "hidden_size": 8,
                "num_attention_heads": 2, "num_hidden_layers": 3,
                "intermediate_size": 16, "hidden_act": "gelu_new",
                "layer_norm_eps": 1e-5, "some_unknown_key": [1, 2]}"#,
            p,
        )
        .unwrap();
        assert_eq!(bert.architecture, Architecture::Bert);
        assert_eq!(bert.activation, Activation::GeluTanh);
        assert_eq!(bert.layer_norm_eps, 1e-5);
        assert_eq!(
            (bert.max_position_embeddings, bert.type_vocab_size),
            (512, 2)
        );
        assert_eq!(bert.head_size(), 4);
        let distil = EncoderConfig::from_json(
            r#"{"model_type": "distilbert", "dim": 8, "n_heads": 4, "n_layers": 1,
                "hidden_dim": 32, "activation": "relu", "max_position_embeddings": 20}"#,
            p,
        )
        .unwrap();
        assert_eq!(distil.architecture, Architecture::DistilBert);
        assert_eq!(distil.activation, Activation::Relu);
        assert_eq!(distil.layer_norm_eps, 1e-12);
        assert_eq!(distil.type_vocab_size, 0);
        assert_eq!((distil.hidden_size, distil.intermediate_size), (8, 32));
        let roberta = EncoderConfig::from_json(
            r#"{"architectures": ["RobertaModel"], "hidden_size": 8,
                "num_attention_heads": 2, "num_hidden_layers": 1, "intermediate_size": 16,
                "max_position_embeddings": 514, "pad_token_id": 1}"#,
            p,
        )
        .unwrap();
        assert_eq!(roberta.architecture, Architecture::Roberta);
        assert_eq!(roberta.activation, Activation::Gelu);
        assert_eq!(roberta.max_positions(), 512);
    }

    #[test]
    fn config_errors_name_the_file_and_the_problem() {
        let p = Path::new("ckpt/config.json");
        let err = |json: &str| EncoderConfig::from_json(json, p).unwrap_err().to_string();
        let e = err(r#"{"model_type": "gpt2", "hidden_size": 8}"#);
        assert!(e.contains("ckpt/config.json") && e.contains("gpt2"), "{e}");
        let e = err(r#"{"architectures": ["T5Model"]}"#);
        assert!(e.contains("T5Model") && e.contains("unsupported"), "{e}");
        let e = err(r#"{"hidden_size": 8}"#);
        assert!(
            e.contains("neither 'model_type' nor 'architectures'"),
            "{e}"
        );
        let base = r#""model_type": "bert", "hidden_size": 10, "num_attention_heads": 4,
                      "num_hidden_layers": 1, "intermediate_size": 16"#;
        let e = err(&format!("{{{base}}}"));
        assert!(e.contains("not a multiple"), "{e}");
        let e = err(&format!(
            "{{{}, \"hidden_act\": \"swish\"}}",
            base.replace("10", "8")
        ));
        assert!(e.contains("'swish'"), "{e}");
        let e = err(&format!(
            "{{{}, \"position_embedding_type\": \"relative_key\"}}",
            base.replace("10", "8")
        ));
        assert!(e.contains("relative_key"), "{e}");
        let e = err(r#"{"model_type": "bert", "num_attention_heads": 4}"#);
        assert!(
            e.contains("hidden_size/dim") && e.contains("missing"),
            "{e}"
        );
        let e = err("{not json");
        assert!(
            e.contains("ckpt/config.json") && e.contains("not a valid"),
            "{e}"
        );
    }
}
