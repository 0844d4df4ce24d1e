//! The training step a checkpoint's name carries: `acts-150.safetensors`,
//! `checkpoint-150/`. The one place these names are read; the metadata
//! `step` of a dump is [`Header::step`](super::Header::step).
//!
//! Digits must be plain ASCII decimal (leading zeros allowed, no sign, no
//! spaces) and fit in a `u64`; anything else is no step. What this module
//! does not do: decide which of metadata, file name and folder name wins
//! (the dump reader and the watcher each document their order).

use std::path::Path;

/// The step in a file or directory name: the digits after the last `-` of
/// `name` (`acts-150` → 150, `checkpoint-0042` → 42). Pass a file's stem,
/// not its name with the extension.
pub fn step_from_name(name: &str) -> Option<u64> {
    let (_, digits) = name.rsplit_once('-')?;
    parse_digits(digits)
}

/// The step of a HuggingFace Trainer checkpoint folder named exactly
/// `checkpoint-<digits>` (`tmp-checkpoint-5` has none).
pub fn checkpoint_step(name: &str) -> Option<u64> {
    parse_digits(name.strip_prefix("checkpoint-")?)
}

/// The step in a file's path: [`step_from_name`] of the file stem
/// (`step-150.safetensors`), else of the parent directory's name
/// (`checkpoint-150/acts.safetensors`).
pub fn step_from_path(path: &Path) -> Option<u64> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(step_from_name)
        .or_else(|| {
            path.parent()
                .and_then(Path::file_name)
                .and_then(|s| s.to_str())
                .and_then(step_from_name)
        })
}

fn parse_digits(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}
