//! Where activations come from: activation dumps in safetensors ([`dump`]),
//! or a model checkpoint run over a probe set: [`probeset`] (readers, tasks,
//! tokenization), [`encoder`] (the BERT-family forward pass) and
//! [`extract`] (the two together, and the dump writer). Sources know
//! nothing about geometry: they hand out checked matrices, labels and
//! splits.

pub mod dump;
pub mod encoder;
pub mod extract;
pub mod probeset;
