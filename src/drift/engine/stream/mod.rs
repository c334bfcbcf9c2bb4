//! Checks of data larger than memory: both datasets streamed batch by batch under a memory
//! limit.
//!
//! - **When.** A check whose datasets would not fit the engine's memory limit when read whole
//!   (estimated from file sizes and Parquet footers: [`estimated_bytes`]) streams; every other
//!   check reads whole tables as before. A current-data window needs whole tables and is
//!   refused past the limit with a message saying so.
//! - **Exact while it fits.** Numeric values are held exactly while the values held stay
//!   under the limit's share for values ([`HELD_SHARE`]); past it, that side's numeric
//!   features continue in quantile sketches. Results are then the in-memory ones, bit for bit.
//! - **Past the limit.** PSI and chi-square stay exact: category counts and PSI bin counts
//!   are streamed, and a sketched reference's PSI edges are selected exactly in a second pass
//!   ([`select`]). KS comes from the sketches, with its error bound in the output.

use super::*;

mod accumulate;
mod select;
mod summarise;

pub(super) use summarise::{prepare_streamed, stream_check};

/// The share of the memory limit exact values may hold (the rest: batches being decoded,
/// sorting, the second pass, the process).
pub(super) const HELD_SHARE: f64 = 0.4;

/// The memory a whole-table read of `payload` would take, roughly: the decoded share of a CSV
/// file's columns (plus its bytes when they are in memory already), a Parquet file's rows
/// times the requested columns.
pub(super) fn estimated_bytes(
    payload: &Payload,
    format: DataFormat,
    requested: usize,
    side: Side,
) -> u64 {
    match payload {
        Payload::Many { parts, .. } => parts
            .iter()
            .map(|p| estimated_bytes(&p.payload, p.format, requested, side))
            .sum(),
        _ => match format {
            DataFormat::Csv => {
                let size = payload_size(payload);
                let columns = column_names(payload, format, side)
                    .map(|c| c.len())
                    .unwrap_or(1)
                    .max(1);
                // about 8 bytes a cell decoded, for the requested share of the cells; a file
                // is read in blocks (bytes already in memory are held anyway)
                let held = if matches!(payload, Payload::Bytes { .. }) {
                    size
                } else {
                    0
                };
                held + size * requested.min(columns) as u64 / columns as u64
            }
            DataFormat::Parquet => {
                let rows = crate::drift::data::count_rows(payload, format, side).unwrap_or(0);
                rows as u64 * requested.max(1) as u64 * 8
            }
        },
    }
}

fn payload_size(payload: &Payload) -> u64 {
    match payload {
        Payload::File { path, .. } => std::fs::metadata(path).map_or(0, |m| m.len()),
        Payload::Bytes { bytes, .. } => bytes.len() as u64,
        Payload::Many { parts, .. } => parts.iter().map(|p| payload_size(&p.payload)).sum(),
    }
}

impl CpuJob {
    /// Whether reading the datasets whole would pass the memory limit.
    pub(super) fn needs_streaming(&self) -> Result<bool, DriftError> {
        let requested = match &self.reference {
            Some((payload, format)) => {
                let names = column_names(payload, *format, Side::Reference)?;
                reference_requests(&names, &self.config)?.len()
            }
            None => self.cached.as_ref().map_or(1, |p| p.features().count() + 1),
        };
        let estimate = |payload: &Payload, format: DataFormat, side: Side| {
            estimated_bytes(payload, format, requested, side)
        };
        let mut total = estimate(&self.current.0, self.current.1, Side::Current);
        if let Some((payload, format)) = &self.reference {
            total += estimate(payload, *format, Side::Reference);
        }
        if total <= self.memory_limit {
            return Ok(false);
        }
        if self.config.window.is_some() {
            return Err(DriftError::InvalidConfig(format!(
                "the data would take about {} once read, more than the memory limit of {}, and a current-data window needs it whole: raise the limit (--memory-limit, the operator's --data-memory-limit) or select fewer rows (lastRows, lastDuration)",
                bytesize::ByteSize::b(total).display().iec(),
                bytesize::ByteSize::b(self.memory_limit).display().iec()
            )));
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
