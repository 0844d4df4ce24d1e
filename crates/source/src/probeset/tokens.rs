//! Tokenization of a probe set: encoder inputs (token ids) and, for every
//! item, the token positions whose hidden states represent it.
//!
//! The tokenizer is a `tokenizer.json` loaded with the `tokenizers` crate; its
//! own padding and truncation are switched off (the MiniLM file pads and cuts
//! to 128). Words are fed pre-split (`is_pretokenized`) and each word's
//! subwords come from `word_ids()`; raw-text sentences (JSON Lines `text`) are
//! encoded whole. A word's vector is the hidden state of its first subword
//! ([`WordPooling::First`], the default) or the mean over its subwords
//! ([`WordPooling::Mean`]); a (dependent, head) pair is the two word vectors
//! concatenated; a span is the mean over the positions its words contribute
//! under the word rule; a sentence item is its first special token (`[CLS]`,
//! `<s>`: [`SentencePooling::Cls`], the default) or the mean over all of its
//! non-special tokens ([`SentencePooling::Mean`]; unlike sentence-transformers
//! the special tokens are left out, so that windows do not count them twice).
//!
//! **Long sentences** (more than [`TokenizeOptions::max_tokens`] tokens with
//! the special tokens) are never cut. They are split into overlapping
//! windows ([`plan_windows`]): the tokenizer's prefix and suffix special
//! tokens are put around each window; windows start and end on word
//! boundaries and hold at most `max_tokens − specials` content tokens; each
//! window after the first starts at the first word that begins at least
//! `overlap` tokens before the previous window's end (default: half the
//! window), so consecutive windows share about `overlap` tokens; and every
//! word takes all its subwords from the window where it is most central: the
//! one maximising the smaller of its left and right context within the
//! window (context towards a sentence edge that the window reaches counts as
//! unlimited), the earlier window on ties. A single word longer than a
//! window is an error.
//!
//! What this module does not do: run the encoder or read its outputs other
//! than through [`ItemGather::gather`]; choose the maximum length (the caller
//! knows the model: `max_position_embeddings` for BERT, minus `padding_idx +
//! 1` for RoBERTa).

use std::ops::Range;
use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

use super::{ProbeSet, SentenceInput, Target};

/// Everything that can go wrong when tokenizing a probe set. Messages name the
/// tokenizer file or the sentence (file and line) at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizeError {
    /// The tokenizer file could not be loaded.
    #[error("{path}: cannot load the tokenizer: {message}", path = path.display())]
    Load {
        /// The `tokenizer.json`.
        path: PathBuf,
        /// The tokenizers crate's message.
        message: String,
    },
    /// The tokenizer's settings could not be changed (padding/truncation off).
    #[error("tokenizer: cannot switch its truncation off: {message}")]
    Configure {
        /// The tokenizers crate's message.
        message: String,
    },
    /// The options are inconsistent.
    #[error("tokenization options: {message}")]
    Options {
        /// What is wrong.
        message: String,
    },
    /// Encoding a sentence failed.
    #[error("{path}:{line}: cannot tokenize the sentence: {message}", path = path.display())]
    Encode {
        /// The probe-set file.
        path: PathBuf,
        /// The sentence's line.
        line: usize,
        /// What went wrong.
        message: String,
    },
    /// A word the items need yields no token (e.g. only characters the
    /// normalizer removes).
    #[error(
        "{path}:{line}: word {word} ({form:?}) yields no token with this tokenizer, so it has no \
         vector",
        path = path.display()
    )]
    EmptyWord {
        /// The probe-set file.
        path: PathBuf,
        /// The sentence's line.
        line: usize,
        /// 0-based word position.
        word: usize,
        /// The word as written.
        form: String,
    },
    /// A single word has more tokens than fit in a window.
    #[error(
        "word or unit {unit} has {tokens} tokens, more than the {budget} that fit in one window"
    )]
    UnitTooLong {
        /// 0-based index of the word (unit).
        unit: usize,
        /// Its number of tokens.
        tokens: usize,
        /// Content tokens per window.
        budget: usize,
    },
    /// A word of a sentence has more tokens than fit in one window.
    #[error(
        "{path}:{line}: unit {unit} (a word, or a token of no word) has {tokens} tokens, more \
         than the {budget} that fit in one window of max_tokens",
        path = path.display()
    )]
    WordTooLong {
        /// The probe-set file.
        path: PathBuf,
        /// The sentence's line.
        line: usize,
        /// 0-based index of the unit (see [`unit_lengths`]).
        unit: usize,
        /// Its number of tokens.
        tokens: usize,
        /// Content tokens per window.
        budget: usize,
    },
    /// A sentence item needs a leading special token and the tokenizer adds none.
    #[error(
        "{path}:{line}: sentence item with [CLS] pooling, but the tokenizer adds no leading \
         special token (use mean pooling)",
        path = path.display()
    )]
    NoClsToken {
        /// The probe-set file.
        path: PathBuf,
        /// The sentence's line.
        line: usize,
    },
}

/// How a word's subwords make its vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WordPooling {
    /// The first subword's hidden state (the default).
    #[default]
    First,
    /// The mean over its subwords.
    Mean,
}

/// How a sentence item is represented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SentencePooling {
    /// The first special token (`[CLS]`, `<s>`), the default.
    #[default]
    Cls,
    /// The mean over the sentence's non-special tokens.
    Mean,
}

/// Tokenization settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenizeOptions {
    /// Most tokens one encoder input may hold, special tokens included (the
    /// model's maximum, e.g. 512).
    pub max_tokens: usize,
    /// Tokens shared by consecutive windows of a long sentence; `None` = half
    /// the window.
    pub overlap: Option<usize>,
    /// Word representation.
    pub word_pooling: WordPooling,
    /// Sentence representation.
    pub sentence_pooling: SentencePooling,
}

impl TokenizeOptions {
    /// Defaults (first subword, `[CLS]`, half-window overlap) for a model
    /// taking at most `max_tokens` tokens.
    pub fn new(max_tokens: usize) -> Self {
        TokenizeOptions {
            max_tokens,
            overlap: None,
            word_pooling: WordPooling::First,
            sentence_pooling: SentencePooling::Cls,
        }
    }
}

/// A sentence encoded once, its content tokens apart from the special tokens
/// the tokenizer puts around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedSentence {
    /// Ids of the special tokens before the content (`[CLS]`).
    pub prefix_ids: Vec<u32>,
    /// Their type ids.
    pub prefix_type_ids: Vec<u32>,
    /// Ids of the special tokens after the content (`[SEP]`).
    pub suffix_ids: Vec<u32>,
    /// Their type ids.
    pub suffix_type_ids: Vec<u32>,
    /// Content token ids.
    pub ids: Vec<u32>,
    /// Content type ids.
    pub type_ids: Vec<u32>,
    /// For each content token, the word it belongs to (`None` for a token of
    /// no word).
    pub word_ids: Vec<Option<u32>>,
}

/// One forward pass of the encoder: a whole sentence or one window of it,
/// special tokens included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderInput {
    /// Index of the sentence in [`ProbeSet::sentences`].
    pub sentence: usize,
    /// Token ids.
    pub ids: Vec<u32>,
    /// Token type ids.
    pub type_ids: Vec<u32>,
}

/// A token of one encoder input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenRef {
    /// Index into [`GatherPlan::inputs`].
    pub input: usize,
    /// Position within that input (0 = its first token, e.g. `[CLS]`).
    pub position: usize,
}

/// How one item's vector is made from hidden states: the concatenation, in
/// order, of one part per word of the item (two for a pair), each part the
/// mean of the hidden states at its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemGather {
    /// The parts; each is non-empty.
    pub parts: Vec<Vec<TokenRef>>,
}

impl ItemGather {
    /// Appends the item's vector to `out`: for each part, the mean of
    /// `hidden(token)` over its tokens (all of one width D). `out` grows by
    /// `parts.len() × D`.
    pub fn gather<'a>(&self, hidden: impl Fn(TokenRef) -> &'a [f32], out: &mut Vec<f32>) {
        for part in &self.parts {
            let Some((&first, rest)) = part.split_first() else {
                continue;
            };
            let start = out.len();
            out.extend_from_slice(hidden(first));
            for &token in rest {
                for (acc, &v) in out[start..].iter_mut().zip(hidden(token)) {
                    *acc += v;
                }
            }
            if !rest.is_empty() {
                let n = part.len() as f32;
                for acc in &mut out[start..] {
                    *acc /= n;
                }
            }
        }
    }
}

/// A probe set ready for the encoder: the inputs to run, and per item the
/// tokens to gather.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatherPlan {
    /// Encoder inputs, sentence by sentence (a long sentence has several,
    /// one per window, consecutive).
    pub inputs: Vec<EncoderInput>,
    /// For each sentence of the probe set, its range of `inputs`.
    pub sentence_inputs: Vec<Range<usize>>,
    /// Parallel to [`ProbeSet::items`].
    pub items: Vec<ItemGather>,
    /// Parts per item (1, or 2 for pairs): the item vector is this many
    /// times the hidden size.
    pub parts_per_item: usize,
}

/// Windows over a sentence's content tokens and which window each token takes
/// its vector from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowPlan {
    /// Content token ranges, in order; together they cover every token.
    pub windows: Vec<Range<usize>>,
    /// For each content token, the index of its window in `windows`.
    pub owner: Vec<usize>,
}

/// Runs a call into the `tokenizers` crate, turning its error, or a panic
/// (it panics on some malformed `tokenizer.json` files, when loading them or
/// later when encoding: found by the `tokenizer_json` fuzz target), into a
/// message.
fn guarded<T>(call: impl FnOnce() -> tokenizers::Result<T>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(panic) => {
            let detail = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            Err(format!(
                "malformed tokenizer.json (the tokenizers crate panicked: {detail})"
            ))
        }
    }
}

/// Splits a sentence of units (words) of `unit_tokens` tokens each into
/// windows of at most `budget` tokens that start and end on unit boundaries,
/// consecutive windows overlapping by about `overlap` tokens, and gives each
/// unit the window where it is most central (see the module documentation).
/// A sentence that fits is one window. Pure; `overlap` must be below `budget`.
pub fn plan_windows(
    unit_tokens: &[usize],
    budget: usize,
    overlap: usize,
) -> Result<WindowPlan, TokenizeError> {
    if budget == 0 || overlap >= budget {
        return Err(TokenizeError::Options {
            message: format!(
                "window of {budget} content tokens with overlap {overlap}: the window must be \
                 positive and the overlap smaller"
            ),
        });
    }
    let n = unit_tokens.len();
    let mut starts = Vec::with_capacity(n + 1);
    let mut total = 0;
    for (unit, &len) in unit_tokens.iter().enumerate() {
        if len > budget {
            return Err(TokenizeError::UnitTooLong {
                unit,
                tokens: len,
                budget,
            });
        }
        starts.push(total);
        total += len;
    }
    starts.push(total);
    if total <= budget {
        return Ok(WindowPlan {
            windows: std::iter::once(0..total).collect(),
            owner: vec![0; total],
        });
    }
    // Windows as unit ranges.
    let mut unit_windows: Vec<Range<usize>> = Vec::new();
    let mut first = 0;
    loop {
        let mut end = first;
        while end < n && starts[end + 1] - starts[first] <= budget {
            end += 1;
        }
        unit_windows.push(first..end);
        if end == n {
            break;
        }
        let boundary = starts[end].saturating_sub(overlap);
        let mut next = first + 1;
        while next < end && starts[next] < boundary {
            next += 1;
        }
        first = next;
    }
    let windows: Vec<Range<usize>> = unit_windows
        .iter()
        .map(|w| starts[w.start]..starts[w.end])
        .collect();
    let mut owner = vec![0; total];
    for unit in 0..n {
        let (lo, hi) = (starts[unit], starts[unit + 1]);
        let mut best: Option<(usize, usize)> = None;
        for (index, w) in windows.iter().enumerate() {
            if w.start > lo || w.end < hi {
                continue;
            }
            let left = if w.start == 0 {
                usize::MAX
            } else {
                lo - w.start
            };
            let right = if w.end == total {
                usize::MAX
            } else {
                w.end - hi
            };
            let score = left.min(right);
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((index, score));
            }
        }
        let index = best.map_or(0, |(i, _)| i);
        owner[lo..hi].fill(index);
    }
    Ok(WindowPlan { windows, owner })
}

/// Groups content tokens into units for windowing: consecutive tokens of the
/// same word form one unit; a token of no word is a unit of its own. Returns
/// the number of tokens of each unit, in order.
pub fn unit_lengths(word_ids: &[Option<u32>]) -> Vec<usize> {
    let mut units: Vec<usize> = Vec::new();
    let mut previous: Option<u32> = None;
    for (i, &word) in word_ids.iter().enumerate() {
        match (word, previous) {
            (Some(w), Some(p)) if i > 0 && w == p => {
                if let Some(last) = units.last_mut() {
                    *last += 1;
                }
            }
            _ => units.push(1),
        }
        previous = word;
    }
    units
}

/// A `tokenizer.json` with padding and truncation off, and the settings for
/// turning probe sets into encoder inputs.
#[derive(Debug, Clone)]
pub struct ProbeTokenizer {
    tokenizer: Tokenizer,
    options: TokenizeOptions,
}

impl ProbeTokenizer {
    /// Loads `tokenizer.json` and switches its padding and truncation off.
    /// A malformed file is an error, also where the `tokenizers` crate
    /// panics on it instead of returning one (it does for some malformed
    /// `decoder` sections: `.expect("Helper")` in its decoders module; found
    /// by the `tokenizer_json` fuzz target). [`ProbeTokenizer::encode`] turns
    /// the crate's panics into errors the same way.
    pub fn from_file(path: &Path, options: TokenizeOptions) -> Result<Self, TokenizeError> {
        let load = |message: String| TokenizeError::Load {
            path: path.to_owned(),
            message,
        };
        let tokenizer = guarded(|| Tokenizer::from_file(path)).map_err(load)?;
        Self::new(tokenizer, options)
    }

    /// Wraps a tokenizer, switching its padding and truncation off.
    pub fn new(mut tokenizer: Tokenizer, options: TokenizeOptions) -> Result<Self, TokenizeError> {
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| TokenizeError::Configure {
                message: e.to_string(),
            })?;
        if options.max_tokens == 0 {
            return Err(TokenizeError::Options {
                message: "max_tokens is 0".into(),
            });
        }
        Ok(ProbeTokenizer { tokenizer, options })
    }

    /// The wrapped tokenizer (padding and truncation off).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The settings.
    pub fn options(&self) -> &TokenizeOptions {
        &self.options
    }

    /// Encodes one sentence; `path` and `line` only name it in errors.
    pub fn encode(
        &self,
        input: &SentenceInput,
        path: &Path,
        line: usize,
    ) -> Result<EncodedSentence, TokenizeError> {
        let fail = |message: String| TokenizeError::Encode {
            path: path.to_owned(),
            line,
            message,
        };
        let encode = |special: bool| {
            guarded(|| match input {
                SentenceInput::Words(words) => self.tokenizer.encode(&words[..], special),
                SentenceInput::Text(text) => self.tokenizer.encode(text.as_str(), special),
            })
        };
        let plain = encode(false).map_err(fail)?;
        let full = encode(true).map_err(fail)?;
        let n = plain.len();
        let mask = full.get_special_tokens_mask();
        let prefix = mask.iter().take_while(|&&m| m == 1).count();
        let wrapped = full.len() >= prefix + n
            && full.get_ids()[prefix..prefix + n] == *plain.get_ids()
            && mask[prefix + n..].iter().all(|&m| m == 1);
        if !wrapped {
            return Err(fail(
                "the tokenizer's post-processor does not put special tokens only around the \
                 sentence, so windows cannot be built"
                    .into(),
            ));
        }
        let (ids, type_ids) = (full.get_ids(), full.get_type_ids());
        Ok(EncodedSentence {
            prefix_ids: ids[..prefix].to_vec(),
            prefix_type_ids: type_ids[..prefix].to_vec(),
            suffix_ids: ids[prefix + n..].to_vec(),
            suffix_type_ids: type_ids[prefix + n..].to_vec(),
            ids: ids[prefix..prefix + n].to_vec(),
            type_ids: type_ids[prefix..prefix + n].to_vec(),
            word_ids: plain.get_word_ids().to_vec(),
        })
    }

    /// Tokenizes every sentence of `set` and says which tokens make each item.
    pub fn plan(&self, set: &ProbeSet) -> Result<GatherPlan, TokenizeError> {
        let mut inputs = Vec::new();
        let mut sentence_inputs = Vec::with_capacity(set.sentences.len());
        // Per sentence, per word: the tokens of that word (in its owner window).
        let mut word_tokens: Vec<Vec<Vec<TokenRef>>> = Vec::with_capacity(set.sentences.len());
        // Per sentence: every content token (in its owner window) and the CLS.
        let mut content_tokens: Vec<Vec<TokenRef>> = Vec::with_capacity(set.sentences.len());
        let mut cls: Vec<Option<TokenRef>> = Vec::with_capacity(set.sentences.len());
        for (index, sentence) in set.sentences.iter().enumerate() {
            let encoded = self.encode(&sentence.input, &sentence.path, sentence.line)?;
            let specials = encoded.prefix_ids.len() + encoded.suffix_ids.len();
            let budget = self
                .options
                .max_tokens
                .checked_sub(specials)
                .filter(|&b| b > 0);
            let Some(budget) = budget else {
                return Err(TokenizeError::Options {
                    message: format!(
                        "max_tokens {} leaves no room for words beside the tokenizer's {specials} \
                         special tokens",
                        self.options.max_tokens
                    ),
                });
            };
            let overlap = self.options.overlap.unwrap_or(budget / 2);
            let windows = plan_windows(&unit_lengths(&encoded.word_ids), budget, overlap).map_err(
                |e| match e {
                    TokenizeError::UnitTooLong {
                        unit,
                        tokens,
                        budget,
                    } => TokenizeError::WordTooLong {
                        path: sentence.path.clone(),
                        line: sentence.line,
                        unit,
                        tokens,
                        budget,
                    },
                    other => other,
                },
            )?;
            let first_input = inputs.len();
            for w in &windows.windows {
                let mut ids = encoded.prefix_ids.clone();
                ids.extend_from_slice(&encoded.ids[w.clone()]);
                ids.extend_from_slice(&encoded.suffix_ids);
                let mut type_ids = encoded.prefix_type_ids.clone();
                type_ids.extend_from_slice(&encoded.type_ids[w.clone()]);
                type_ids.extend_from_slice(&encoded.suffix_type_ids);
                inputs.push(EncoderInput {
                    sentence: index,
                    ids,
                    type_ids,
                });
            }
            sentence_inputs.push(first_input..inputs.len());
            let n_words = match &sentence.input {
                SentenceInput::Words(words) => words.len(),
                SentenceInput::Text(_) => 0,
            };
            let mut words = vec![Vec::new(); n_words];
            let mut content = Vec::with_capacity(encoded.ids.len());
            for (token, &window) in windows.owner.iter().enumerate() {
                let reference = TokenRef {
                    input: first_input + window,
                    position: encoded.prefix_ids.len() + token - windows.windows[window].start,
                };
                content.push(reference);
                if let Some(word) = encoded.word_ids[token]
                    && let Some(slot) = words.get_mut(word as usize)
                {
                    slot.push(reference);
                }
            }
            word_tokens.push(words);
            content_tokens.push(content);
            cls.push((!encoded.prefix_ids.is_empty()).then_some(TokenRef {
                input: first_input,
                position: 0,
            }));
        }

        let pooling = self.options.word_pooling;
        let mut items = Vec::with_capacity(set.items.len());
        for item in &set.items {
            let sentence = &set.sentences[item.sentence];
            let word = |position: usize| -> Result<Vec<TokenRef>, TokenizeError> {
                let tokens = word_tokens[item.sentence]
                    .get(position)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| TokenizeError::EmptyWord {
                        path: sentence.path.clone(),
                        line: sentence.line,
                        word: position,
                        form: match &sentence.input {
                            SentenceInput::Words(w) => w.get(position).cloned().unwrap_or_default(),
                            SentenceInput::Text(_) => String::new(),
                        },
                    })?;
                Ok(match pooling {
                    WordPooling::First => tokens[..1].to_vec(),
                    WordPooling::Mean => tokens.clone(),
                })
            };
            let parts = match item.target {
                Target::Word(position) => vec![word(position)?],
                Target::Pair { dependent, head } => vec![word(dependent)?, word(head)?],
                Target::Span { start, end } => {
                    let mut tokens = Vec::new();
                    for position in start..end {
                        tokens.extend(word(position)?);
                    }
                    vec![tokens]
                }
                Target::Sentence => match self.options.sentence_pooling {
                    SentencePooling::Cls => {
                        let Some(token) = cls[item.sentence] else {
                            return Err(TokenizeError::NoClsToken {
                                path: sentence.path.clone(),
                                line: sentence.line,
                            });
                        };
                        vec![vec![token]]
                    }
                    SentencePooling::Mean => {
                        let tokens = content_tokens[item.sentence].clone();
                        if tokens.is_empty() {
                            return Err(TokenizeError::Encode {
                                path: sentence.path.clone(),
                                line: sentence.line,
                                message: "the sentence yields no token".into(),
                            });
                        }
                        vec![tokens]
                    }
                },
            };
            items.push(ItemGather { parts });
        }
        let parts_per_item = items.first().map_or(1, |i| i.parts.len());
        Ok(GatherPlan {
            inputs,
            sentence_inputs,
            items,
            parts_per_item,
        })
    }
}

#[cfg(test)]
mod tests;
