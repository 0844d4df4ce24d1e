//! The stored record and the published view: the one codec of a stored
//! layer row ([`record`]), the one path from analysis reports to the
//! snapshot a run exports ([`RunView`]), and the backfill of a store's
//! history as OpenMetrics ([`export`]), which walks the same path.
//!
//! It sits between the analysis and the exposition: it knows the shape of
//! a [`geometry::measures::LayerReport`], the store's row types and the
//! metrics crate's snapshot types, but no SQL, no metric name and no HTTP.

pub mod export;
pub mod record;
mod run_view;

pub use run_view::{Best, LateView, Layers, Reference, RunView, load_reference};
