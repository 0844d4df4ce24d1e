//! Reading a checkpoint's `config.json` into the handful of numbers the
//! forward pass needs: the architecture (BERT, RoBERTa or DistilBERT), sizes,
//! LayerNorm epsilon, activation and position/token-type limits.
//!
//! Keys are read under both spellings in use (BERT's `hidden_size`,
//! `num_attention_heads`, `num_hidden_layers`, `intermediate_size`,
//! `hidden_act`; DistilBERT's `dim`, `n_heads`, `n_layers`, `hidden_dim`,
//! `activation`), unknown keys are ignored, and the result is checked (heads
//! divide the hidden size, sizes are positive). What this module does not do:
//! it does not read weights, the tokenizer or generation settings, and it does
//! not guess an architecture it does not know: an unknown `model_type` (and
//! no known `architectures` entry) is an error naming the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::EncoderError;

/// The encoder families this module can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Architecture {
    /// BERT (`BertModel` and its task heads, `bert.` prefix).
    Bert,
    /// RoBERTa (`roberta.` prefix; positions start at `padding_idx + 1`).
    Roberta,
    /// DistilBERT (`distilbert.` prefix; `transformer.layer.N` names, no token types).
    DistilBert,
}

impl Architecture {
    /// The `model_type` spelling of this architecture.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Bert => "bert",
            Architecture::Roberta => "roberta",
            Architecture::DistilBert => "distilbert",
        }
    }
}

/// The non-linearity between the two feed-forward projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Activation {
    /// Exact GELU, `x/2 · (1 + erf(x/√2))` (HF `gelu`).
    Gelu,
    /// Tanh approximation of GELU (HF `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`).
    GeluTanh,
    /// `max(0, x)`.
    Relu,
}

impl Activation {
    fn parse(name: &str) -> Option<Activation> {
        match name {
            "gelu" => Some(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Activation::GeluTanh),
            "relu" => Some(Activation::Relu),
            _ => None,
        }
    }
}

/// The checked contents of a `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    /// Which family the weights belong to.
    pub architecture: Architecture,
    /// Width of every hidden state.
    pub hidden_size: usize,
    /// Number of attention heads (divides `hidden_size`).
    pub num_heads: usize,
    /// Number of transformer layers.
    pub num_layers: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Epsilon of every LayerNorm.
    pub layer_norm_eps: f32,
    /// Feed-forward activation.
    pub activation: Activation,
    /// Rows of the position embedding table.
    pub max_position_embeddings: usize,
    /// Rows of the token type table (0 for DistilBERT).
    pub type_vocab_size: usize,
    /// Id of the padding token (RoBERTa's positions are offset by it).
    pub pad_token_id: u32,
}

/// `config.json` as written by HF transformers; only the keys we need.
#[derive(Debug, Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    hidden_size: Option<usize>,
    dim: Option<usize>,
    num_attention_heads: Option<usize>,
    n_heads: Option<usize>,
    num_hidden_layers: Option<usize>,
    n_layers: Option<usize>,
    intermediate_size: Option<usize>,
    hidden_dim: Option<usize>,
    layer_norm_eps: Option<f64>,
    hidden_act: Option<String>,
    activation: Option<String>,
    max_position_embeddings: Option<usize>,
    type_vocab_size: Option<usize>,
    pad_token_id: Option<u32>,
    position_embedding_type: Option<String>,
}

impl EncoderConfig {
    /// Reads and checks `path` (a `config.json`).
    pub fn from_file(path: &Path) -> Result<EncoderConfig, EncoderError> {
        let text = std::fs::read_to_string(path).map_err(|source| EncoderError::Io {
            path: path.to_path_buf(),
            action: "reading the model config".into(),
            source,
        })?;
        EncoderConfig::from_json(&text, path)
    }

    /// Parses and checks the text of a `config.json`; `path` is only used in
    /// error messages.
    pub fn from_json(text: &str, path: &Path) -> Result<EncoderConfig, EncoderError> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| EncoderError::Config {
            path: path.to_path_buf(),
            detail: format!("not a valid config.json: {e}"),
        })?;
        let bad = |detail: String| EncoderError::Config {
            path: path.to_path_buf(),
            detail,
        };
        let architecture = architecture(&raw, path)?;
        let distil = architecture == Architecture::DistilBert;
        let pick =
            |a: Option<usize>, b: Option<usize>, names: &str| -> Result<usize, EncoderError> {
                let v = if distil { b.or(a) } else { a.or(b) };
                match v {
                    Some(0) => Err(bad(format!("'{names}' is 0"))),
                    Some(v) => Ok(v),
                    None => Err(bad(format!("'{names}' is missing"))),
                }
            };
        let hidden_size = pick(raw.hidden_size, raw.dim, "hidden_size/dim")?;
        let num_heads = pick(
            raw.num_attention_heads,
            raw.n_heads,
            "num_attention_heads/n_heads",
        )?;
        let num_layers = pick(
            raw.num_hidden_layers,
            raw.n_layers,
            "num_hidden_layers/n_layers",
        )?;
        let intermediate_size = pick(
            raw.intermediate_size,
            raw.hidden_dim,
            "intermediate_size/hidden_dim",
        )?;
        if hidden_size % num_heads != 0 {
            return Err(bad(format!(
                "hidden size {hidden_size} is not a multiple of the {num_heads} attention heads"
            )));
        }
        let act_name = if distil {
            raw.activation.or(raw.hidden_act)
        } else {
            raw.hidden_act.or(raw.activation)
        }
        .unwrap_or_else(|| "gelu".to_string());
        let activation = Activation::parse(&act_name).ok_or_else(|| {
            bad(format!(
                "activation '{act_name}' is not supported (gelu, gelu_new, gelu_pytorch_tanh, \
                 gelu_fast, relu)"
            ))
        })?;
        // DistilBERT hard-codes its LayerNorm epsilon and has no config key for it.
        let layer_norm_eps = if distil {
            1e-12
        } else {
            raw.layer_norm_eps.unwrap_or(1e-12) as f32
        };
        if !(layer_norm_eps.is_finite() && layer_norm_eps >= 0.0) {
            return Err(bad(format!(
                "layer_norm_eps {layer_norm_eps} is not a non-negative number"
            )));
        }
        if let Some(kind) = raw.position_embedding_type.as_deref() {
            if kind != "absolute" {
                return Err(bad(format!(
                    "position_embedding_type '{kind}' is not supported (only 'absolute')"
                )));
            }
        }
        let max_position_embeddings = raw.max_position_embeddings.unwrap_or(512);
        let type_vocab_size = if distil {
            0
        } else {
            raw.type_vocab_size.unwrap_or(2)
        };
        let default_pad = if architecture == Architecture::Roberta {
            1
        } else {
            0
        };
        Ok(EncoderConfig {
            architecture,
            hidden_size,
            num_heads,
            num_layers,
            intermediate_size,
            layer_norm_eps,
            activation,
            max_position_embeddings,
            type_vocab_size,
            pad_token_id: raw.pad_token_id.unwrap_or(default_pad),
        })
    }

    /// Width of one attention head.
    pub fn head_size(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// Longest sequence (in tokens, special tokens included) the position
    /// table allows: `max_position_embeddings`, less RoBERTa's offset of
    /// `padding_idx + 1`.
    pub fn max_positions(&self) -> usize {
        match self.architecture {
            Architecture::Roberta => self
                .max_position_embeddings
                .saturating_sub(self.pad_token_id as usize + 1),
            _ => self.max_position_embeddings,
        }
    }
}

fn architecture(raw: &RawConfig, path: &Path) -> Result<Architecture, EncoderError> {
    let from_type = |t: &str| match t {
        "bert" => Some(Architecture::Bert),
        "roberta" => Some(Architecture::Roberta),
        "distilbert" => Some(Architecture::DistilBert),
        _ => None,
    };
    if let Some(t) = raw.model_type.as_deref() {
        return from_type(t).ok_or_else(|| unknown(path, &format!("model_type '{t}'")));
    }
    // Old configs have no model_type: fall back to the class names.
    for a in &raw.architectures {
        // Longest prefix first: "DistilBert…" before "Bert…" does not matter
        // since they differ in the first letter, but "Roberta" must not be
        // read as "Bert".
        if a.starts_with("DistilBert") {
            return Ok(Architecture::DistilBert);
        }
        if a.starts_with("Roberta") {
            return Ok(Architecture::Roberta);
        }
        if a.starts_with("Bert") {
            return Ok(Architecture::Bert);
        }
    }
    if raw.architectures.is_empty() {
        Err(unknown(path, "neither 'model_type' nor 'architectures'"))
    } else {
        Err(unknown(
            path,
            &format!("architectures {:?}", raw.architectures),
        ))
    }
}

fn unknown(path: &Path, what: &str) -> EncoderError {
    EncoderError::UnknownArchitecture {
        path: PathBuf::from(path),
        detail: format!("{what}; supported: bert, roberta, distilbert"),
    }
}
