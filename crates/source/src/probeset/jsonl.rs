//! The JSON Lines probe-set format, for tasks that are not a CoNLL-U column.
//!
//! One JSON object per non-blank line, one of:
//! - span items: `{"words": ["The", "cat", …], "spans": [{"start": 0, "end": 2,
//!   "label": "NP"}, …]}` — `start` inclusive, `end` exclusive, 0-based word
//!   positions; a span of one word is a word item;
//! - a sentence item: `{"text": "The cat sat.", "label": "positive"}` (raw
//!   text, tokenized whole) or `{"words": […], "label": "positive"}`.
//!
//! Optional fields: `"split"` (the item's split, overriding the split given
//! with the file as `FILE:split`) and `"id"` (a sentence identifier kept for
//! reports). Unknown fields, a line with both or neither of `text`/`words`,
//! with both or neither of `spans`/`label`, `spans` over `text`, an empty
//! sentence, and spans that are empty or run past the words are errors naming
//! the file and line.
//!
//! What this module does not do: choose label order or split order (the
//! parent module does), or tokenize.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ProbeSetError;

/// What a line holds as model input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonlInput {
    /// Pre-split words.
    Words(Vec<String>),
    /// Raw text, tokenized as a whole.
    Text(String),
}

/// A labelled span of words: `start` inclusive, `end` exclusive.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlSpan {
    /// First word of the span (0-based).
    pub start: usize,
    /// One past the last word of the span.
    pub end: usize,
    /// The span's label.
    pub label: String,
}

/// What a line labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonlTarget {
    /// Spans of words, each an item.
    Spans(Vec<JsonlSpan>),
    /// The whole sentence is one item with this label.
    Sentence(String),
}

/// One line of a JSON Lines probe set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonlRecord {
    /// 1-based line number in the file.
    pub line: usize,
    /// The optional `id` field.
    pub id: Option<String>,
    /// The optional `split` field.
    pub split: Option<String>,
    /// The model input.
    pub input: JsonlInput,
    /// The items of the line.
    pub target: JsonlTarget,
}

/// A line as written (checked into a [`JsonlRecord`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    split: Option<String>,
    #[serde(default)]
    words: Option<Vec<String>>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    spans: Option<Vec<JsonlSpan>>,
    #[serde(default)]
    label: Option<String>,
}

/// Reads a JSON Lines probe set.
pub fn read_file(path: &Path) -> Result<Vec<JsonlRecord>, ProbeSetError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProbeSetError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Parses the text of a JSON Lines probe set; `path` names the file in errors.
pub fn parse(path: &Path, text: &str) -> Result<Vec<JsonlRecord>, ProbeSetError> {
    let malformed = |line: usize, message: String| ProbeSetError::Malformed {
        path: PathBuf::from(path),
        line,
        message,
    };
    let mut records = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let parsed: RawLine = serde_json::from_str(raw)
            .map_err(|e| malformed(line, format!("not a probe-set JSON object: {e}")))?;
        let input = match (parsed.words, parsed.text) {
            (Some(words), None) => {
                if words.is_empty() {
                    return Err(malformed(line, "`words` is empty".into()));
                }
                if let Some(i) = words.iter().position(|w| w.trim().is_empty()) {
                    return Err(malformed(line, format!("word {i} is empty")));
                }
                JsonlInput::Words(words)
            }
            (None, Some(text)) => {
                if text.trim().is_empty() {
                    return Err(malformed(line, "`text` is empty".into()));
                }
                JsonlInput::Text(text)
            }
            (Some(_), Some(_)) => {
                return Err(malformed(line, "has both `words` and `text`".into()));
            }
            (None, None) => return Err(malformed(line, "has neither `words` nor `text`".into())),
        };
        let target = match (parsed.spans, parsed.label) {
            (Some(spans), None) => {
                let JsonlInput::Words(words) = &input else {
                    return Err(malformed(
                        line,
                        "`spans` need pre-split `words`, not `text`".into(),
                    ));
                };
                for (i, span) in spans.iter().enumerate() {
                    if span.start >= span.end || span.end > words.len() {
                        return Err(malformed(
                            line,
                            format!(
                                "span {i} [{}, {}) is empty or runs past the {} words",
                                span.start,
                                span.end,
                                words.len()
                            ),
                        ));
                    }
                }
                JsonlTarget::Spans(spans)
            }
            (None, Some(label)) => JsonlTarget::Sentence(label),
            (Some(_), Some(_)) => {
                return Err(malformed(line, "has both `spans` and `label`".into()));
            }
            (None, None) => return Err(malformed(line, "has neither `spans` nor `label`".into())),
        };
        if let Some(split) = &parsed.split
            && split.trim().is_empty()
        {
            return Err(malformed(line, "`split` is empty".into()));
        }
        records.push(JsonlRecord {
            line,
            id: parsed.id,
            split: parsed.split,
            input,
            target,
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_spans_and_sentence_labels() {
        let text = r#"{"words": ["The", "cat", "sat"], "spans": [{"start": 0, "end": 2, "label": "NP"}, {"start": 2, "end": 3, "label": "V"}], "split": "test"}

{"text": "Great food.", "label": "pos", "id": "r1"}
{"words": ["Bad"], "label": "neg"}
"#;
        let records = parse(Path::new("p.jsonl"), text).expect("parses");
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].split.as_deref(), Some("test"));
        assert_eq!(records[0].line, 1);
        let JsonlTarget::Spans(spans) = &records[0].target else {
            panic!("spans expected");
        };
        assert_eq!(
            spans[0],
            JsonlSpan {
                start: 0,
                end: 2,
                label: "NP".into()
            }
        );
        assert_eq!(records[1].line, 3);
        assert_eq!(records[1].input, JsonlInput::Text("Great food.".into()));
        assert_eq!(records[1].target, JsonlTarget::Sentence("pos".into()));
        assert_eq!(records[1].id.as_deref(), Some("r1"));
        assert_eq!(records[2].input, JsonlInput::Words(vec!["Bad".into()]));
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let cases = [
            (
                r#"{"words": ["a"], "spans": [{"start": 0, "end": 2, "label": "x"}]}"#,
                "runs past",
            ),
            (
                r#"{"words": ["a"], "spans": [{"start": 1, "end": 1, "label": "x"}]}"#,
                "is empty",
            ),
            (r#"{"text": "a b", "spans": []}"#, "need pre-split"),
            (
                r#"{"text": "a", "words": ["a"], "label": "x"}"#,
                "both `words` and `text`",
            ),
            (r#"{"label": "x"}"#, "neither `words` nor `text`"),
            (r#"{"text": "a"}"#, "neither `spans` nor `label`"),
            (
                r#"{"text": "a", "label": "x", "labels": 3}"#,
                "unknown field",
            ),
            (r#"{"words": [], "label": "x"}"#, "`words` is empty"),
            (
                r#"{"text": "a", "label": "x", "split": ""}"#,
                "`split` is empty",
            ),
            ("not json", "not a probe-set JSON object"),
        ];
        for (line, expected) in cases {
            let text = format!("{{\"text\": \"ok\", \"label\": \"y\"}}\n{line}\n");
            let e = parse(Path::new("q.jsonl"), &text)
                .expect_err(line)
                .to_string();
            assert!(e.starts_with("q.jsonl:2:"), "{e}");
            assert!(e.contains(expected), "{line}: {e}");
        }
    }
}
