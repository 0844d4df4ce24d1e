//! Why a checkpoint's analysis did not produce a result: [`FailureKind`],
//! one closed set whose [`FailureKind::as_str`] is both the
//! `probewatch_errors_total{kind}` label value and the `error_kind` text
//! stored with a failed checkpoint, and [`Failure`] (a kind and the
//! message that names the file). The mappings from the errors of the
//! `source` crate (dumps, the encoder, tokenizing, extraction) to kinds
//! live here, in one place.
//!
//! What it does not do: decide what happens to a failed checkpoint (stored
//! as failed, queued again, or ignored is the run loop's business in
//! `publish.rs`), or log anything.

use source::dump::DumpError;
use source::encoder::EncoderError;
use source::extract::ExtractError;
use source::probeset::tokens::TokenizeError;

/// What kind of failure stopped a checkpoint's analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum FailureKind {
    /// A file could not be read (`io`).
    Io,
    /// A file is not what it claims to be: a broken header, weights or
    /// tokenizer (`format`).
    Format,
    /// An encoder architecture the daemon does not run (`unsupported`).
    Unsupported,
    /// The checkpoint does not fit the run's configuration: a task or layer
    /// it lacks, a tokenizer that does not fit the model (`config_mismatch`).
    ConfigMismatch,
    /// Labels that are missing, malformed or cannot be compared with the
    /// reference's (`labels`).
    Labels,
    /// A layer holds NaN or infinite values (`non_finite`).
    NonFinite,
    /// Beyond a `[limits]` cap, refused before any layer is read (`limit`).
    Limit,
    /// The outcome could not be written to the store (disk full, ...); the
    /// checkpoint is queued again (`store`).
    Store,
    /// Not a failure: the file changed while it was read, nothing is
    /// stored and its new version is analysed once complete (`changed`).
    Changed,
}

impl FailureKind {
    /// The label value and stored text of this kind.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            FailureKind::Io => "io",
            FailureKind::Format => "format",
            FailureKind::Unsupported => "unsupported",
            FailureKind::ConfigMismatch => "config_mismatch",
            FailureKind::Labels => "labels",
            FailureKind::NonFinite => "non_finite",
            FailureKind::Limit => "limit",
            FailureKind::Store => "store",
            FailureKind::Changed => "changed",
        }
    }

    /// The kind of a dump error.
    pub(super) fn of_dump(e: &DumpError) -> FailureKind {
        match e {
            DumpError::Io { .. } => FailureKind::Io,
            DumpError::NonFinite { .. } => FailureKind::NonFinite,
            DumpError::LabelOutOfRange { .. }
            | DumpError::BadLabels { .. }
            | DumpError::MissingLabels { .. }
            | DumpError::MissingLabelNames { .. }
            | DumpError::BadLabelNames { .. } => FailureKind::Labels,
            DumpError::UnknownTask { .. }
            | DumpError::AmbiguousTask { .. }
            | DumpError::NoSuchLayer { .. } => FailureKind::ConfigMismatch,
            _ => FailureKind::Format,
        }
    }

    /// The kind of an encoder error: unreadable files are `io`, broken or
    /// inconsistent weights `format`, an architecture we do not run
    /// `unsupported`, a tokenizer that does not fit the model
    /// `config_mismatch`.
    pub(super) fn of_encoder(e: &EncoderError) -> FailureKind {
        match e {
            EncoderError::Io { .. } | EncoderError::ThreadPool { .. } => FailureKind::Io,
            EncoderError::UnknownArchitecture { .. } => FailureKind::Unsupported,
            EncoderError::TokenOutOfVocab { .. } | EncoderError::SequenceTooLong { .. } => {
                FailureKind::ConfigMismatch
            }
            _ => FailureKind::Format,
        }
    }

    /// The kind of a tokenizer error: one that cannot be loaded or set up
    /// is `format`, one that cannot encode the probe set `config_mismatch`.
    pub(super) fn of_tokenize(e: &TokenizeError) -> FailureKind {
        match e {
            TokenizeError::Load { .. } | TokenizeError::Configure { .. } => FailureKind::Format,
            _ => FailureKind::ConfigMismatch,
        }
    }

    /// The kind of an extraction error (the encoder's or the tokenizer's
    /// when it is theirs).
    pub(super) fn of_extract(e: &ExtractError) -> FailureKind {
        match e {
            ExtractError::Encoder(e) => FailureKind::of_encoder(e),
            ExtractError::Tokenize(e) => FailureKind::of_tokenize(e),
            _ => FailureKind::ConfigMismatch,
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A checkpoint's analysis that produced no result: why, and the message
/// (naming the file).
#[derive(Debug)]
pub(super) struct Failure {
    /// What kind of failure.
    pub(super) kind: FailureKind,
    /// The full message.
    pub(super) message: String,
}

impl Failure {
    /// A failure of `kind` with `message`.
    pub(super) fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }

    /// The failure of an encoder error.
    pub(super) fn encoder(e: &EncoderError) -> Failure {
        Failure::new(FailureKind::of_encoder(e), e.to_string())
    }

    /// The failure of a tokenizer error.
    pub(super) fn tokenize(e: &TokenizeError) -> Failure {
        Failure::new(FailureKind::of_tokenize(e), e.to_string())
    }

    /// The failure of an extraction error.
    pub(super) fn extract(e: &ExtractError) -> Failure {
        Failure::new(FailureKind::of_extract(e), e.to_string())
    }
}

impl From<DumpError> for Failure {
    fn from(e: DumpError) -> Failure {
        Failure::new(FailureKind::of_dump(&e), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const ALL: [FailureKind; 9] = [
        FailureKind::Io,
        FailureKind::Format,
        FailureKind::Unsupported,
        FailureKind::ConfigMismatch,
        FailureKind::Labels,
        FailureKind::NonFinite,
        FailureKind::Limit,
        FailureKind::Store,
        FailureKind::Changed,
    ];

    #[test]
    fn kinds_keep_the_label_values_and_stored_text_of_before() {
        let texts: Vec<&str> = ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            texts,
            [
                "io",
                "format",
                "unsupported",
                "config_mismatch",
                "labels",
                "non_finite",
                "limit",
                "store",
                "changed"
            ]
        );
        for k in ALL {
            assert_eq!(k.to_string(), k.as_str());
        }
    }

    fn path() -> PathBuf {
        PathBuf::from("/runs/r/step-10.safetensors")
    }

    #[test]
    fn dump_errors_map_to_their_kinds_and_keep_the_message() {
        let cases = [
            (
                DumpError::Io {
                    path: path(),
                    action: "reading".into(),
                    source: std::io::Error::other("gone"),
                },
                FailureKind::Io,
            ),
            (
                DumpError::NonFinite {
                    path: path(),
                    task: "upos".into(),
                    layer: 3,
                    tensor: "upos.layer.3".into(),
                    rows: 1,
                    n: 10,
                    first_row: 4,
                },
                FailureKind::NonFinite,
            ),
            (
                DumpError::BadLabels {
                    path: path(),
                    task: "upos".into(),
                    tensor: "upos.labels".into(),
                    found: "F32".into(),
                },
                FailureKind::Labels,
            ),
            (
                DumpError::UnknownTask {
                    path: path(),
                    requested: "xpos".into(),
                    available: vec!["upos".into()],
                },
                FailureKind::ConfigMismatch,
            ),
            (
                DumpError::NoSuchLayer {
                    path: path(),
                    task: "upos".into(),
                    layer: 9,
                    available: vec![0, 1],
                },
                FailureKind::ConfigMismatch,
            ),
            (
                DumpError::BadMetadata {
                    path: path(),
                    key: "tasks".into(),
                    detail: "not a list".into(),
                },
                FailureKind::Format,
            ),
        ];
        for (e, kind) in cases {
            let message = e.to_string();
            let f = Failure::from(e);
            assert_eq!(f.kind, kind, "{message}");
            assert_eq!(f.message, message);
            assert!(f.message.contains("step-10.safetensors"), "{message}");
        }
    }

    #[test]
    fn encoder_and_extraction_errors_map_to_their_kinds() {
        let model = PathBuf::from("/runs/r/checkpoint-10");
        let too_long = EncoderError::SequenceTooLong {
            model: model.clone(),
            len: 600,
            max: 512,
        };
        assert_eq!(
            FailureKind::of_encoder(&too_long),
            FailureKind::ConfigMismatch
        );
        let arch = EncoderError::UnknownArchitecture {
            path: model.join("config.json"),
            detail: "gpt2".into(),
        };
        assert_eq!(FailureKind::of_encoder(&arch), FailureKind::Unsupported);
        let io = EncoderError::Io {
            path: model.join("model.safetensors"),
            action: "reading".into(),
            source: std::io::Error::other("gone"),
        };
        assert_eq!(Failure::encoder(&io).kind, FailureKind::Io);
        let no_weights = EncoderError::NoWeights { dir: model.clone() };
        assert_eq!(FailureKind::of_encoder(&no_weights), FailureKind::Format);
        // Extraction passes the encoder's kind through.
        let wrapped = ExtractError::Encoder(arch);
        assert_eq!(Failure::extract(&wrapped).kind, FailureKind::Unsupported);
        let no_train = ExtractError::NoTrain {
            task: "upos".into(),
            splits: vec!["test".into()],
        };
        assert_eq!(
            FailureKind::of_extract(&no_train),
            FailureKind::ConfigMismatch
        );
    }
}
