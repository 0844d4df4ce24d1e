//! Where activations come from: activation dumps in safetensors ([`dump`]),
//! or a model checkpoint run over a probe set: [`probeset`] (readers, tasks,
//! tokenization), [`encoder`] (the BERT-family forward pass) and
//! [`extract`] (the two together, and the dump writer). [`st`] is the one
//! safetensors reader (headers, tensor data, step names, shard indexes) the
//! dump reader, the encoder and the daemon's watcher share. Sources know
//! nothing about geometry: they hand out checked matrices, labels and
//! splits.

pub mod dump;
pub mod encoder;
pub mod extract;
pub mod probeset;
pub mod st;

use std::borrow::Cow;
use std::path::Path;

use dump::{ActivationDump, DumpError, TaskInfo};

/// One task's activations, wherever they come from: what the analysis
/// reads. Implemented by a task of an [`ActivationDump`] ([`DumpTask`]) and
/// by activations computed in memory
/// ([`extract::ExtractedActivations`]).
pub trait Activations: Sync {
    /// The file or checkpoint folder, for reports and messages.
    fn origin(&self) -> &Path;
    /// Training step, when known.
    fn step(&self) -> Option<u64>;
    /// Labels, splits, available layers and width.
    fn info(&self) -> &TaskInfo;
    /// Split names; `info().split` indexes them.
    fn splits(&self) -> &[String];
    /// Layer `layer`: `n × dim` row-major values, all finite (an error
    /// names the source otherwise).
    fn layer(&self, layer: usize) -> Result<Cow<'_, [f32]>, DumpError>;
}

/// One task of an opened activation dump.
#[derive(Debug, Clone, Copy)]
pub struct DumpTask<'a> {
    dump: &'a ActivationDump,
    task: &'a TaskInfo,
}

impl<'a> DumpTask<'a> {
    /// Task `name` of `dump` (`None`: its only task).
    pub fn new(dump: &'a ActivationDump, name: Option<&str>) -> Result<Self, DumpError> {
        Ok(DumpTask {
            dump,
            task: dump.task(name)?,
        })
    }
}

impl Activations for DumpTask<'_> {
    fn origin(&self) -> &Path {
        self.dump.path()
    }

    fn step(&self) -> Option<u64> {
        self.dump.step()
    }

    fn info(&self) -> &TaskInfo {
        self.task
    }

    fn splits(&self) -> &[String] {
        self.dump.splits()
    }

    fn layer(&self, layer: usize) -> Result<Cow<'_, [f32]>, DumpError> {
        let m = self.dump.layer(self.task, layer)?;
        // The reader builds the array from a vector: standard layout, offset 0.
        debug_assert!(m.is_standard_layout());
        Ok(Cow::Owned(m.into_raw_vec_and_offset().0))
    }
}
