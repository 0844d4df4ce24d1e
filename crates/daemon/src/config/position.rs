//! Where in the file a mistake is: byte spans (from the toml crate's
//! `Spanned` values and errors) turned into 1-based line and column
//! numbers, columns counted in characters, and the toml crate's own
//! messages reworded for people who write TOML rather than Rust.
//!
//! Deliberately not here: deciding what is wrong (the `check` module) and
//! the wording of [`Problem`]s (the `error` module).

use std::ops::Range;
use std::path::Path;

use super::{ConfigError, Problem};

/// The toml crate's error `e` about `text` (read from `path`) as a
/// [`ConfigError::Toml`] pointing at its line and column.
pub(super) fn toml_error(text: &str, path: &Path, e: &toml::de::Error) -> ConfigError {
    let span = e.span().unwrap_or(0..0);
    let (line, column) = line_column(text, span.start);
    ConfigError::Toml {
        file: path.to_path_buf(),
        line,
        column,
        message: toml_message(text, e.message(), span),
    }
}

/// The toml crate's `message` about `span` of `text`, with Rust type names
/// replaced by TOML words and a hint for the two commonest slips: an
/// unquoted string, and `[run]` for `[[run]]`.
fn toml_message(text: &str, message: &str, span: Range<usize>) -> String {
    let mut out = message
        .trim_end()
        .replace("expected usize", "expected a non-negative integer")
        .replace("expected u32", "expected a non-negative integer below 2^32")
        .replace("expected f64", "expected a number")
        .replace("expected u64", "expected a non-negative integer");
    let start = char_floor(text, span.start);
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let before = text[line_start..start].trim_end();
    let rest = text.get(start..).unwrap_or("");
    if out == "duplicate key" {
        if let Some(key) = text.get(span.clone()).filter(|k| !k.contains('\n')) {
            out = format!("duplicate key `{key}`");
        }
    } else if before.ends_with('=') && rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.push_str("; strings need quotes, e.g. key = \"value\"");
    } else if line.trim_start().starts_with("[run]") {
        out.push_str("; write [[run]] (one table per run), not [run]");
    }
    out
}

/// The file being checked, for error positions.
pub(super) struct Ctx<'a> {
    pub(super) text: &'a str,
    pub(super) file: &'a Path,
}

impl Ctx<'_> {
    pub(super) fn invalid(&self, span: Range<usize>, problem: Problem) -> ConfigError {
        let (line, column) = line_column(self.text, span.start);
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line,
            column,
            problem,
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..char_floor(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The largest char boundary of `text` at or before byte `offset`.
fn char_floor(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}
