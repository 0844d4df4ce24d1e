//! The simulated fine-tuning run behind `probewatch demo`: a fixed-seed
//! generator of activation dumps (DESIGN §3.1) whose label clusters drift
//! apart over the steps, except one pair of labels (`NOUN` and `PROPN`)
//! that drifts together, so the shrink alert has something to show; and a
//! writer that saves them the way a training job does (a hidden temporary
//! file, then a rename into place).
//!
//! [`dump_bytes`] is pure (same step, same tensors and metadata);
//! [`cyclic_dump_bytes`] is the same run going back and forth, for soak runs
//! that write thousands of checkpoints; [`write_checkpoint`] and
//! [`write_dump`] do the file I/O. Nothing here analyses or serves anything.

use std::io::Write;
use std::path::{Path, PathBuf};

use source::extract::{ExtractedTask, encode_dump};

use geometry::synth::Rng;

/// Label names of the simulated task (a POS-like tag set).
pub const LABELS: [&str; 8] = ["NOUN", "PROPN", "VERB", "ADJ", "ADV", "ADP", "DET", "PRON"];
/// Layers in each dump (0 = embedding output).
pub const LAYERS: usize = 4;
/// Representation width.
pub const DIM: usize = 24;
/// Train and test items.
pub const N_TRAIN: usize = 240;
/// Test items.
pub const N_TEST: usize = 120;
/// Steps between two simulated checkpoints.
pub const STEP_EVERY: u64 = 100;
/// Checkpoints the simulated run writes (steps 0 to 2000).
pub const CHECKPOINTS: u64 = 21;

/// The activation dump of the simulated run at `step` (safetensors bytes).
///
/// Every item keeps its own noise across steps (seeded by the item), so
/// items move smoothly. Label means spread out by up to 60 % over the run,
/// more in higher layers; `NOUN` and `PROPN` move towards their midpoint
/// (more in higher layers) until, at the last step, their means coincide in
/// the top layer and their hulls intersect.
pub fn dump_bytes(step: u64) -> Vec<u8> {
    let t = (step as f64 / ((CHECKPOINTS - 1) * STEP_EVERY) as f64).clamp(0.0, 1.0);
    dump_at(step, t)
}

/// The activation dump of an endless simulated run at `step`, for soak
/// runs that write far more than [`CHECKPOINTS`] checkpoints: the run's
/// progress goes from 0 to 1 over the demo's steps and back again, over and
/// over (a triangle wave), so consecutive dumps keep differing and every
/// checkpoint costs a real analysis, however many are written.
pub fn cyclic_dump_bytes(step: u64) -> Vec<u8> {
    let span = (CHECKPOINTS - 1) * STEP_EVERY;
    let phase = step % (2 * span);
    let t = if phase <= span {
        phase as f64 / span as f64
    } else {
        (2 * span - phase) as f64 / span as f64
    };
    dump_at(step, t)
}

/// The dump at `step` with the run's progress `t` in [0, 1].
fn dump_at(step: u64, t: f64) -> Vec<u8> {
    let n = N_TRAIN + N_TEST;
    let k = LABELS.len();
    let mut rng = Rng::new(0x5eed_0001);
    let means: Vec<Vec<f64>> = (0..k)
        .map(|_| (0..DIM).map(|_| 3.0 * rng.normal()).collect())
        .collect();
    // Start NOUN and PROPN fairly close already.
    let mut means = means;
    let mid0: Vec<f64> = means[0]
        .iter()
        .zip(&means[1])
        .map(|(a, b)| (a + b) / 2.0)
        .collect();
    for d in 0..DIM {
        means[1][d] = mid0[d] + 0.5 * (means[1][d] - mid0[d]);
        means[0][d] = mid0[d] + 0.5 * (means[0][d] - mid0[d]);
    }
    let labels: Vec<i64> = (0..n).map(|i| ((i * 7 + i / 3) % k) as i64).collect();
    let split: Vec<u8> = (0..n).map(|i| u8::from(i >= N_TRAIN)).collect();
    let noise: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let mut r = Rng::new(0x17e0 + i as u64);
            (0..DIM).map(|_| r.normal()).collect()
        })
        .collect();
    let mut layers: Vec<Vec<f32>> = Vec::with_capacity(LAYERS);
    for layer in 0..LAYERS {
        let depth = layer as f64 / (LAYERS - 1) as f64;
        let spread = 1.0 + 0.6 * t * (0.3 + 0.7 * depth);
        let pull = t * (0.3 + 0.7 * depth);
        let mid: Vec<f64> = means[0]
            .iter()
            .zip(&means[1])
            .map(|(a, b)| (a + b) / 2.0)
            .collect();
        let mut values = Vec::with_capacity(n * DIM);
        for i in 0..n {
            let l = labels[i] as usize;
            for d in 0..DIM {
                let m = if l <= 1 {
                    // Spread with the rest, then pulled towards the pair's
                    // midpoint.
                    let spread_m = spread * means[l][d];
                    let spread_mid = spread * mid[d];
                    spread_m + pull * (spread_mid - spread_m)
                } else {
                    spread * means[l][d]
                };
                values.push((m + noise[i][d]) as f32);
            }
        }
        layers.push(values);
    }
    let task = ExtractedTask {
        name: "pos".into(),
        label_names: LABELS.iter().map(|s| s.to_string()).collect(),
        labels,
        split,
        splits: vec!["train".into(), "test".into()],
        dim: DIM,
        layers,
    };
    encode_dump(
        &[task],
        Some(step),
        &[("model", "probewatch demo: simulated fine-tuning")],
    )
}

/// Writes `bytes` into `folder` as a training job does: to a hidden
/// temporary file, synced, then renamed to `step-<step>.safetensors`.
/// Returns the final path.
pub fn write_dump(folder: &Path, step: u64, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let tmp = folder.join(format!(".tmp-step-{step}.safetensors"));
    let done = folder.join(format!("step-{step}.safetensors"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, &done)?;
    Ok(done)
}

/// Writes the checkpoint of `step` into `folder` as a training job does:
/// to a hidden temporary file, synced, then renamed to
/// `step-<step>.safetensors`. Returns the final path.
pub fn write_checkpoint(folder: &Path, step: u64) -> std::io::Result<PathBuf> {
    write_dump(folder, step, &dump_bytes(step))
}

#[cfg(test)]
mod tests {
    use super::*;
    use analysis::{AnalysisOptions, analyse_dump};
    use source::dump::ActivationDump;

    /// Tensors and metadata of a dump (the header's key order is not fixed:
    /// the metadata is a hash map).
    type Contents = (Vec<(String, Vec<u8>)>, Vec<(String, String)>);

    fn contents(bytes: &[u8]) -> Contents {
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
        let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
        let mut tensors: Vec<(String, Vec<u8>)> = st
            .tensors()
            .into_iter()
            .map(|(n, v)| (n, v.data().to_vec()))
            .collect();
        tensors.sort();
        let mut m: Vec<(String, String)> = meta
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        m.sort();
        (tensors, m)
    }

    #[test]
    fn same_step_same_contents() {
        assert_eq!(contents(&dump_bytes(300)), contents(&dump_bytes(300)));
        assert_ne!(contents(&dump_bytes(300)), contents(&dump_bytes(400)));
    }

    #[test]
    fn the_cyclic_run_retraces_the_demo() {
        let span = (CHECKPOINTS - 1) * STEP_EVERY;
        // Tensors equal the demo's at the same progress (the step metadata
        // differs); consecutive checkpoints differ.
        let tensors = |b: &[u8]| contents(b).0;
        assert_eq!(tensors(&cyclic_dump_bytes(300)), tensors(&dump_bytes(300)));
        assert_eq!(
            tensors(&cyclic_dump_bytes(2 * span + 300)),
            tensors(&dump_bytes(300))
        );
        assert_eq!(
            tensors(&cyclic_dump_bytes(span + 300)),
            tensors(&dump_bytes(span - 300))
        );
        assert_ne!(
            tensors(&cyclic_dump_bytes(span + 100)),
            tensors(&cyclic_dump_bytes(span + 200))
        );
    }

    #[test]
    fn the_pair_drifts_together_and_the_rest_apart() {
        let dir = tempfile::tempdir().unwrap();
        let first = write_checkpoint(dir.path(), 0).unwrap();
        let last = write_checkpoint(dir.path(), (CHECKPOINTS - 1) * STEP_EVERY).unwrap();
        let a = analyse_dump(
            &ActivationDump::open(&first).unwrap(),
            &AnalysisOptions::default(),
            &|_| {},
        )
        .unwrap();
        let b = analyse_dump(
            &ActivationDump::open(&last).unwrap(),
            &AnalysisOptions::default(),
            &|_| {},
        )
        .unwrap();
        assert_eq!(a.step, Some(0));
        assert_eq!(b.step, Some(2000));
        let top = LAYERS - 1;
        let (la, lb) = (&a.layers[top], &b.layers[top]);
        let noun = 0;
        let adj = 3;
        let norm_a = la.min_label_distance_normalized[noun].unwrap();
        let norm_b = lb.min_label_distance_normalized[noun].unwrap();
        assert!(norm_b < 0.7 * norm_a, "NOUN {norm_a} -> {norm_b}");
        let adj_a = la.min_label_distance[adj].unwrap();
        let adj_b = lb.min_label_distance[adj].unwrap();
        assert!(adj_b > adj_a, "ADJ {adj_a} -> {adj_b}");
    }
}
