//! `probewatch extract`: probe set + checkpoint → activation dump. It wires
//! the `source` crate's tokenizer, encoder and dump writer; it computes
//! nothing itself.

use anyhow::{Context, Result};

use crate::cli::{ExtractArgs, SentencePoolingArg, WordPoolingArg};

/// Tokenizes the probe set, runs the encoder, writes the dump atomically.
pub(crate) fn run(args: &ExtractArgs, threads: usize) -> Result<()> {
    use source::encoder::Encoder;
    use source::extract::{encode_dump, extract};
    use source::probeset::tokens::{ProbeTokenizer, SentencePooling, TokenizeOptions, WordPooling};
    use source::probeset::{ProbeSet, ProbeSetSource, TaskSpec};
    let ExtractArgs {
        model,
        probe_sets,
        task,
        tokenizer,
        word_pooling,
        sentence_pooling,
        step,
        out,
    } = args;
    let (model, out, step) = (model.as_path(), out.as_path(), *step);
    let t = std::time::Instant::now();
    let spec: TaskSpec = task.parse()?;
    let sources = probe_sets
        .iter()
        .map(|s| s.parse::<ProbeSetSource>())
        .collect::<Result<Vec<_>, _>>()?;
    let set = ProbeSet::load(&spec, &sources)?;
    let encoder = Encoder::load(model)?;
    let tok_path = tokenizer
        .clone()
        .unwrap_or_else(|| model.join("tokenizer.json"));
    let mut opts = TokenizeOptions::new(encoder.max_positions());
    opts.word_pooling = match word_pooling {
        WordPoolingArg::First => WordPooling::First,
        WordPoolingArg::Mean => WordPooling::Mean,
    };
    opts.sentence_pooling = match sentence_pooling {
        SentencePoolingArg::Cls => SentencePooling::Cls,
        SentencePoolingArg::Mean => SentencePooling::Mean,
    };
    let tok = ProbeTokenizer::from_file(&tok_path, opts)?;
    let task = extract(&encoder, &tok, &set, threads)?;
    let model_name = model.display().to_string();
    let bytes = encode_dump(std::slice::from_ref(&task), step, &[("model", &model_name)]);
    let tmp = out.with_extension("safetensors.tmp");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("renaming into {}", out.display()))?;
    eprintln!(
        "wrote {}: task {}, {} items ({} labels), {} layers of width {}, in {:.1} s",
        out.display(),
        task.name,
        task.labels.len(),
        task.label_names.len(),
        task.layers.len(),
        task.dim,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
