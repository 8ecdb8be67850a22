//! Pictures: image grids as PNG ([`mod@grid`]) and, with feature `charts`, the tutorial's charts
//! ([`charts`]: learning curves, histograms, masks).
#[cfg(feature = "charts")]
pub mod charts;
pub mod grid;

pub use grid::{grid, save_grid, to_bytes, GridStyle};
