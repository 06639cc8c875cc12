//! Support for the fuzz targets.

pub mod oracle;
