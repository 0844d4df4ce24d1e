//! Probe sets: labelled items over sentences, read from CoNLL-U, CoNLL-U-Lex
//! (STREUSLE) or JSON Lines files, and the token positions an encoder's hidden
//! states must be gathered at to represent each item (DESIGN §3.3).
//!
//! A [`ProbeSet`] is built from one task ([`TaskSpec`]) and one or more files
//! ([`ProbeSetSource`], `FILE[:split]`). Items come out in file order, then
//! sentence order, then word order (span order for JSON Lines); each has a
//! label (an index into [`ProbeSet::label_names`], which are sorted by byte
//! order over every split, so the numbering is deterministic), a split (an
//! index into [`ProbeSet::splits`], in order of first appearance) and a
//! [`Target`]: a word, a (dependent, head) pair, a span of words or the whole
//! sentence. Only sentences that hold at least one item are kept.
//!
//! Tasks over CoNLL-U columns ([`TaskKind`]): UPOS, XPOS, DEPREL of every word
//! (subtype dropped unless asked for: `nmod:poss` → `nmod`), DEP (the DEPREL
//! of every word whose HEAD ≠ 0, as a (dependent, head) pair, to be
//! represented by the two word vectors concatenated), and the STREUSLE
//! supersenses SS (column 14, PS-role) and SS2 (column 15, PS-fxn) of the
//! words whose value starts with `p.` (a strong multiword expression carries
//! them on its first token only, so that token is the item). Words whose
//! label column is `_` (unannotated) are not items. JSON Lines files
//! ([`jsonl`]) hold span or sentence items for any other task.
//!
//! [`tokens`] turns a probe set into encoder inputs and per-item token
//! positions. What this module does not do: run a model, write dumps, or
//! decide which layers to keep.

pub mod conllu;
pub mod jsonl;
pub mod tokens;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use conllu::Column;
use jsonl::{JsonlInput, JsonlTarget};

/// Name of the split of files given without `:split` and JSON Lines lines
/// without a `split` field.
pub const DEFAULT_SPLIT: &str = "train";

/// Everything that can be wrong with a probe set. Messages name the file (and
/// line) or the task at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeSetError {
    /// A file could not be read.
    #[error("{path}: cannot read the probe set: {source}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A line of a file is malformed.
    #[error("{path}:{line}: {message}", path = path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The task name is not one of the known tasks.
    #[error(
        "unknown probe task {name:?}: expected upos (pos), xpos, deprel, deprel+subtypes, dep, \
         dep+subtypes, ps_role (ss), ps_fxn (ss2) or labels (JSON Lines)"
    )]
    UnknownTask {
        /// The name given.
        name: String,
    },
    /// A `FILE[:split]` argument is malformed.
    #[error("probe-set argument {text:?}: {message}")]
    BadSource {
        /// The argument as given.
        text: String,
        /// What is wrong.
        message: String,
    },
    /// The task does not fit the file's format.
    #[error("{path}: task {task} {message}", path = path.display())]
    TaskMismatch {
        /// The file.
        path: PathBuf,
        /// The task's name.
        task: String,
        /// What does not fit.
        message: String,
    },
    /// No file was given.
    #[error("task {task}: no probe-set file given")]
    NoFiles {
        /// The task's name.
        task: String,
    },
    /// The files hold no item of the split `train`, which every dump needs.
    #[error("task {task}: no item in split {DEFAULT_SPLIT:?} (files: {files})")]
    NoTrainItems {
        /// The task's name.
        task: String,
        /// The files, comma-separated.
        files: String,
    },
    /// More than 256 splits (dumps index splits with a byte).
    #[error("task {task}: more than 256 splits")]
    TooManySplits {
        /// The task's name.
        task: String,
    },
}

/// The kinds of probing task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskKind {
    /// UPOS (column 4) of every word.
    Upos,
    /// XPOS (column 5) of every word.
    Xpos,
    /// DEPREL (column 8) of every word.
    Deprel {
        /// Keep subtypes (`nmod:poss`); when false they are cut (`nmod`).
        subtypes: bool,
    },
    /// DEPREL of every word whose HEAD ≠ 0, as a (dependent, head) pair.
    Dep {
        /// Keep subtypes (`nmod:poss`); when false they are cut (`nmod`).
        subtypes: bool,
    },
    /// STREUSLE SS (column 14) of words whose SS starts with `p.` (PS-role).
    PsRole,
    /// STREUSLE SS2 (column 15) of words whose SS2 starts with `p.` (PS-fxn).
    PsFxn,
    /// Spans or sentence labels from JSON Lines files.
    Labels,
}

impl TaskKind {
    /// The column a CoNLL-U task takes its labels from (`None` for JSON Lines).
    pub fn column(self) -> Option<Column> {
        match self {
            TaskKind::Upos => Some(Column::Upos),
            TaskKind::Xpos => Some(Column::Xpos),
            TaskKind::Deprel { .. } | TaskKind::Dep { .. } => Some(Column::Deprel),
            TaskKind::PsRole => Some(Column::Ss),
            TaskKind::PsFxn => Some(Column::Ss2),
            TaskKind::Labels => None,
        }
    }
}

/// A task: its name (the dump's task name) and kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskSpec {
    /// The name as given (e.g. `pos`, `ps_role`).
    pub name: String,
    /// What it labels.
    pub kind: TaskKind,
}

impl FromStr for TaskSpec {
    type Err = ProbeSetError;

    /// Names: `upos` or `pos`, `xpos`, `deprel`, `deprel+subtypes`, `dep`,
    /// `dep+subtypes`, `ps_role` or `ss`, `ps_fxn` or `ss2`, `labels`.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let kind = match name {
            "upos" | "pos" => TaskKind::Upos,
            "xpos" => TaskKind::Xpos,
            "deprel" => TaskKind::Deprel { subtypes: false },
            "deprel+subtypes" => TaskKind::Deprel { subtypes: true },
            "dep" => TaskKind::Dep { subtypes: false },
            "dep+subtypes" => TaskKind::Dep { subtypes: true },
            "ps_role" | "ss" => TaskKind::PsRole,
            "ps_fxn" | "ss2" => TaskKind::PsFxn,
            "labels" => TaskKind::Labels,
            _ => {
                return Err(ProbeSetError::UnknownTask {
                    name: name.to_owned(),
                });
            }
        };
        Ok(TaskSpec {
            name: name.to_owned(),
            kind,
        })
    }
}

/// A probe-set file and the split its items belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSetSource {
    /// The file (`.jsonl` is JSON Lines; anything else CoNLL-U or CoNLL-U-Lex).
    pub path: PathBuf,
    /// The split given as `FILE:split`, if any (else [`DEFAULT_SPLIT`], or a
    /// JSON Lines line's own `split` field).
    pub split: Option<String>,
}

impl FromStr for ProbeSetSource {
    type Err = ProbeSetError;

    /// `FILE` or `FILE:split`. The split is the text after the last `:` when
    /// it is non-empty and made of letters, digits, `_`, `-` and `.` (so a
    /// path with a `:` in a directory name still reads as a path).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |message: &str| ProbeSetError::BadSource {
            text: text.to_owned(),
            message: message.to_owned(),
        };
        let (path, split) = match text.rsplit_once(':') {
            Some((path, split))
                if !split.is_empty()
                    && split
                        .chars()
                        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.')) =>
            {
                (path, Some(split.to_owned()))
            }
            Some((_, "")) => return Err(bad("empty split after ':'")),
            _ => (text, None),
        };
        if path.is_empty() {
            return Err(bad("no file name"));
        }
        Ok(ProbeSetSource {
            path: PathBuf::from(path),
            split,
        })
    }
}

impl fmt::Display for ProbeSetSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.split {
            Some(split) => write!(f, "{}:{split}", self.path.display()),
            None => write!(f, "{}", self.path.display()),
        }
    }
}

/// What the encoder is fed for one sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SentenceInput {
    /// Pre-split words (CoNLL-U FORMs or JSON Lines `words`).
    Words(Vec<String>),
    /// Raw text (JSON Lines `text`), tokenized as a whole.
    Text(String),
}

/// A sentence of the probe set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSentence {
    /// The file it comes from.
    pub path: PathBuf,
    /// 1-based line of its first line in that file.
    pub line: usize,
    /// Its `sent_id` (CoNLL-U) or `id` (JSON Lines), if any.
    pub id: Option<String>,
    /// The encoder input.
    pub input: SentenceInput,
}

/// What an item is, within its sentence (word positions are 0-based indices
/// into the sentence's words; a CoNLL-U word's ID is its position + 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One word.
    Word(usize),
    /// A (dependent, head) pair, represented by the two word vectors
    /// concatenated, dependent first.
    Pair {
        /// The dependent word.
        dependent: usize,
        /// Its head word.
        head: usize,
    },
    /// Words `start..end`, represented by the mean over the token positions
    /// its words contribute.
    Span {
        /// First word.
        start: usize,
        /// One past the last word.
        end: usize,
    },
    /// The whole sentence (`[CLS]` or mean pooling).
    Sentence,
}

/// A labelled item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// Index into [`ProbeSet::sentences`].
    pub sentence: usize,
    /// What the item is within the sentence.
    pub target: Target,
    /// Index into [`ProbeSet::label_names`].
    pub label: u32,
    /// Index into [`ProbeSet::splits`].
    pub split: u8,
}

/// A task's labelled items over its sentences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSet {
    /// The task.
    pub task: TaskSpec,
    /// Sentences holding at least one item, in file order.
    pub sentences: Vec<ProbeSentence>,
    /// Items in file, sentence and word order.
    pub items: Vec<Item>,
    /// Label names, sorted; items' `label` index into them.
    pub label_names: Vec<String>,
    /// Split names in order of first appearance; items' `split` index into them.
    pub splits: Vec<String>,
}

/// An item before labels and splits are numbered.
struct RawItem {
    sentence: usize,
    target: Target,
    label: String,
    split: String,
}

impl ProbeSet {
    /// Reads `sources` (in order) and collects the items of `task`.
    pub fn load(task: &TaskSpec, sources: &[ProbeSetSource]) -> Result<Self, ProbeSetError> {
        if sources.is_empty() {
            return Err(ProbeSetError::NoFiles {
                task: task.name.clone(),
            });
        }
        let mut sentences = Vec::new();
        let mut raw = Vec::new();
        for source in sources {
            let file_split = source.split.as_deref().unwrap_or(DEFAULT_SPLIT);
            let is_jsonl = source
                .path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("jsonl"));
            match (task.kind, is_jsonl) {
                (TaskKind::Labels, true) => {
                    collect_jsonl(&source.path, file_split, &mut sentences, &mut raw)?;
                }
                (TaskKind::Labels, false) => {
                    return Err(ProbeSetError::TaskMismatch {
                        path: source.path.clone(),
                        task: task.name.clone(),
                        message: "takes JSON Lines files (.jsonl), not CoNLL-U".into(),
                    });
                }
                (_, true) => {
                    return Err(ProbeSetError::TaskMismatch {
                        path: source.path.clone(),
                        task: task.name.clone(),
                        message: "takes CoNLL-U or CoNLL-U-Lex files; JSON Lines files need \
                                  task `labels`"
                            .into(),
                    });
                }
                (kind, false) => {
                    let doc = conllu::read_file(&source.path)?;
                    collect_conllu(task, kind, &doc, file_split, &mut sentences, &mut raw)?;
                }
            }
        }
        let mut splits: Vec<String> = Vec::new();
        for item in &raw {
            if !splits.contains(&item.split) {
                splits.push(item.split.clone());
            }
        }
        if !splits.iter().any(|s| s == DEFAULT_SPLIT) {
            return Err(ProbeSetError::NoTrainItems {
                task: task.name.clone(),
                files: sources
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if splits.len() > 256 {
            return Err(ProbeSetError::TooManySplits {
                task: task.name.clone(),
            });
        }
        let label_set: BTreeSet<&str> = raw.iter().map(|i| i.label.as_str()).collect();
        let label_names: Vec<String> = label_set.iter().map(|s| (*s).to_owned()).collect();
        let label_index: BTreeMap<&str, u32> = label_set
            .iter()
            .enumerate()
            .map(|(i, s)| (*s, i as u32))
            .collect();
        let items = raw
            .iter()
            .map(|r| Item {
                sentence: r.sentence,
                target: r.target,
                label: label_index[r.label.as_str()],
                split: splits.iter().position(|s| *s == r.split).unwrap_or(0) as u8,
            })
            .collect();
        Ok(ProbeSet {
            task: task.clone(),
            sentences,
            items,
            label_names,
            splits,
        })
    }

    /// The words of an item's sentence, if it was given as words.
    pub fn words(&self, item: &Item) -> Option<&[String]> {
        match &self.sentences.get(item.sentence)?.input {
            SentenceInput::Words(words) => Some(words),
            SentenceInput::Text(_) => None,
        }
    }
}

/// Cuts a DEPREL's subtype (`nmod:poss` → `nmod`).
pub fn strip_subtype(deprel: &str) -> &str {
    deprel.split_once(':').map_or(deprel, |(base, _)| base)
}

fn collect_conllu(
    task: &TaskSpec,
    kind: TaskKind,
    doc: &conllu::Document,
    split: &str,
    sentences: &mut Vec<ProbeSentence>,
    raw: &mut Vec<RawItem>,
) -> Result<(), ProbeSetError> {
    let Some(column) = kind.column() else {
        return Ok(());
    };
    if column.lex_only() && doc.format != conllu::Format::ConlluLex {
        return Err(ProbeSetError::TaskMismatch {
            path: doc.path.clone(),
            task: task.name.clone(),
            message: format!(
                "needs column {} ({}) of CoNLL-U-Lex, and this file is plain CoNLL-U",
                column.name(),
                column.index() + 1
            ),
        });
    }
    for sentence in &doc.sentences {
        let index = sentences.len();
        let before = raw.len();
        for (position, word) in sentence.words.iter().enumerate() {
            let value = word.get(column).unwrap_or("_");
            if value == "_" || value.is_empty() {
                continue;
            }
            let (target, label) = match kind {
                TaskKind::Upos | TaskKind::Xpos => (Target::Word(position), value),
                TaskKind::Deprel { subtypes } => (
                    Target::Word(position),
                    if subtypes {
                        value
                    } else {
                        strip_subtype(value)
                    },
                ),
                TaskKind::Dep { subtypes } => {
                    if word.head == 0 {
                        continue;
                    }
                    (
                        Target::Pair {
                            dependent: position,
                            head: word.head as usize - 1,
                        },
                        if subtypes {
                            value
                        } else {
                            strip_subtype(value)
                        },
                    )
                }
                TaskKind::PsRole | TaskKind::PsFxn => {
                    if !value.starts_with("p.") {
                        continue;
                    }
                    (Target::Word(position), value)
                }
                TaskKind::Labels => continue,
            };
            raw.push(RawItem {
                sentence: index,
                target,
                label: label.to_owned(),
                split: split.to_owned(),
            });
        }
        if raw.len() > before {
            sentences.push(ProbeSentence {
                path: doc.path.clone(),
                line: sentence.line,
                id: sentence.sent_id.clone(),
                input: SentenceInput::Words(sentence.forms()),
            });
        }
    }
    Ok(())
}

fn collect_jsonl(
    path: &Path,
    file_split: &str,
    sentences: &mut Vec<ProbeSentence>,
    raw: &mut Vec<RawItem>,
) -> Result<(), ProbeSetError> {
    for record in jsonl::read_file(path)? {
        let index = sentences.len();
        let split = record.split.as_deref().unwrap_or(file_split);
        let before = raw.len();
        match &record.target {
            JsonlTarget::Spans(spans) => {
                for span in spans {
                    let target = if span.end == span.start + 1 {
                        Target::Word(span.start)
                    } else {
                        Target::Span {
                            start: span.start,
                            end: span.end,
                        }
                    };
                    raw.push(RawItem {
                        sentence: index,
                        target,
                        label: span.label.clone(),
                        split: split.to_owned(),
                    });
                }
            }
            JsonlTarget::Sentence(label) => raw.push(RawItem {
                sentence: index,
                target: Target::Sentence,
                label: label.clone(),
                split: split.to_owned(),
            }),
        }
        if raw.len() > before {
            sentences.push(ProbeSentence {
                path: path.to_owned(),
                line: record.line,
                id: record.id,
                input: match record.input {
                    JsonlInput::Words(words) => SentenceInput::Words(words),
                    JsonlInput::Text(text) => SentenceInput::Text(text),
                },
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
