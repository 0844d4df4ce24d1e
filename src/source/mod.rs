//! Where activations come from. Today: activation dumps in safetensors
//! ([`dump`]). Sources know nothing about geometry: they hand out checked
//! matrices, labels and splits.

pub mod dump;
pub mod encoder;
