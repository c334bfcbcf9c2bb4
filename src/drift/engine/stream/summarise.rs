//! The streaming check: the reference summarised (one pass, a second for exact edges of
//! sketched features), then the current data summarised against it, then the usual decision.

use super::super::*;
use super::accumulate::{BinCounts, Categories, ValueCounts, Values};
use super::select::{RankSelection, SelectionMiss};
use crate::drift::data::for_each_batch;

/// Widening of the second pass's brackets after a miss (at most this many passes).
const SELECTION_ATTEMPTS: u32 = 3;

/// One reference column while streamed.
enum RefAcc {
    Numeric {
        values: Values,
        distinct: ValueCounts,
    },
    Categorical(Categories),
}

/// One current column while streamed, by the kind of its reference.
enum CurAcc {
    Numeric { values: Values, bins: BinCounts },
    Discrete(ValueCounts),
    Categorical(Categories),
}

impl RefAcc {
    fn push(&mut self, column: &Column) {
        match (self, column) {
            (RefAcc::Numeric { values, distinct }, Column::Numeric(v)) => {
                values.push(v);
                distinct.push(v);
            }
            (RefAcc::Categorical(cats), col) => cats.push(col),
            (RefAcc::Numeric { values, .. }, Column::Categorical(c)) => {
                values.missing += c.len() as u64;
            }
        }
    }
}

impl CurAcc {
    fn push(&mut self, column: &Column) {
        match (self, column) {
            (CurAcc::Numeric { values, bins }, Column::Numeric(v)) => {
                values.push(v);
                bins.push(v);
            }
            (CurAcc::Discrete(counts), Column::Numeric(v)) => counts.push(v),
            (CurAcc::Categorical(cats), col) => cats.push(col),
            (CurAcc::Numeric { values, .. }, Column::Categorical(c)) => {
                values.missing += c.len() as u64;
            }
            (CurAcc::Discrete(counts), Column::Categorical(c)) => {
                counts.push(&vec![f64::NAN; c.len()]);
            }
        }
    }
}

/// What a streaming check needs besides the job.
struct Limits {
    memory_limit: u64,
}

/// The process itself (code, runtime, allocator) before any data: not the data's to use.
const PROCESS_BYTES: u64 = 64 << 20;

impl Limits {
    /// What the data may use of the limit.
    fn data_bytes(&self) -> u64 {
        self.memory_limit
            .saturating_sub(PROCESS_BYTES)
            .max(self.memory_limit / 4)
    }

    /// CSV bytes parsed at once: a block and its parsed columns take about three times that.
    fn block_bytes(&self) -> usize {
        usize::try_from(self.data_bytes() / 16)
            .unwrap_or(usize::MAX)
            .clamp(1 << 20, 32 << 20)
    }

    fn held(&self) -> u64 {
        (self.data_bytes() as f64 * super::HELD_SHARE) as u64
    }
}

/// Run `job` streaming (see the module docs); the result is what [`CpuJob::run`] gives.
pub fn stream_check(
    job: &CpuJob,
    memory_limit: u64,
) -> Result<(Arc<PreparedReference>, DriftReport), DriftError> {
    let limits = Limits { memory_limit };
    let mut timings = Timings {
        reference_cached: job.cached.is_some(),
        ..Timings::default()
    };
    let (cur_payload, cur_format) = &job.current;
    let cur_names = column_names(cur_payload, *cur_format, Side::Current)?;
    let prepared = match &job.cached {
        Some(p) => p.clone(),
        None => {
            let t0 = Instant::now();
            let p = stream_reference(job, &cur_names, &limits)?;
            timings.read_reference_s = secs(t0.elapsed());
            Arc::new(p)
        }
    };
    let t1 = Instant::now();
    let requests = prepared.current_requests(&cur_names)?;
    let held_by_reference: u64 = prepared
        .features()
        .chain(prepared.prediction())
        .map(|(_, r)| match r {
            FeatureReference::Numeric(n) if n.distribution().is_exact() => n.len() as u64 * 8,
            _ => 0,
        })
        .sum();
    let allowance = limits.held().saturating_sub(held_by_reference);
    let (rows, current) = stream_current(job, &limits, &prepared, &requests, allowance)?;
    timings.read_current_s = secs(t1.elapsed());
    let t2 = Instant::now();
    let mut report = compare_features(&prepared, rows, current, &job.config);
    timings.compare_s = secs(t2.elapsed());
    report.notes.push(streaming_note(&report, memory_limit));
    super::super::runner::with_accuracy(&mut report, job.read_labelled(), &mut timings)?;
    report.timings = timings;
    Ok((prepared, report))
}

fn streaming_note(report: &DriftReport, memory_limit: u64) -> String {
    let sketched: Vec<(&str, f64)> = report
        .features
        .iter()
        .chain(report.prediction_drift.as_ref())
        .filter_map(|f| Some((f.name.as_str(), f.statistic_error_bound?)))
        .collect();
    let limit = bytesize::ByteSize::b(memory_limit).display().iec();
    if sketched.is_empty() {
        return format!(
            "the data is larger than the memory limit ({limit}): read batch by batch, all statistics exact"
        );
    }
    let worst = sketched.iter().map(|(_, b)| *b).fold(0.0, f64::max);
    format!(
        "the data is larger than the memory limit ({limit}): KS of {} feature(s) from quantile sketches, D within ±{worst:.4} of the exact value (statistic_error_bound, 99 % confidence); PSI and chi-square exact",
        sketched.len()
    )
}

/// The reference alone, streamed (`mlrollout drift profile`).
pub(in crate::drift::engine) fn prepare_streamed(
    job: &CpuJob,
    memory_limit: u64,
) -> Result<PreparedReference, DriftError> {
    let (payload, format) = &job.current;
    let names = column_names(payload, *format, Side::Reference)?;
    stream_reference(job, &names, &Limits { memory_limit })
}

/// The prepared reference, streamed.
fn stream_reference(
    job: &CpuJob,
    cur_names: &[String],
    limits: &Limits,
) -> Result<PreparedReference, DriftError> {
    let Some((payload, format)) = &job.reference else {
        return Err(DriftError::InvalidConfig(
            "internal error: no reference data".into(),
        ));
    };
    let names = column_names(payload, *format, Side::Reference)?;
    let mut requests = reference_requests(&names, &job.config)?;
    let current: std::collections::HashSet<&str> = cur_names.iter().map(String::as_str).collect();
    if job.config.features.is_empty() && !requests.iter().any(|r| current.contains(r.name.as_str()))
    {
        return Err(DriftError::NoFeatures(
            "the reference and current data have no column in common".into(),
        ));
    }
    // the prediction column (when not a feature) last, as the in-memory preparation has it
    if let Some(p) = &job.config.prediction_column
        && !job.config.features.iter().any(|f| f.name == *p)
        && let Some(i) = requests.iter().position(|r| r.name == *p)
    {
        let r = requests.remove(i);
        requests.push(r);
    }
    let discrete = job.config.discrete_max_values;
    let mut accs: Vec<Option<RefAcc>> = (0..requests.len()).map(|_| None).collect();
    let mut rows = 0usize;
    for_each_batch(
        payload,
        *format,
        &requests,
        Side::Reference,
        limits.block_bytes(),
        &mut |t| {
            rows += t.rows();
            let work: Vec<(&mut RefAcc, &Column)> = accs
                .iter_mut()
                .zip(t.columns())
                .map(|(acc, c)| {
                    let acc = acc.get_or_insert_with(|| match &c.data {
                        Column::Numeric(_) => RefAcc::Numeric {
                            values: Values::new(),
                            distinct: ValueCounts::up_to(discrete),
                        },
                        Column::Categorical(_) => RefAcc::Categorical(Categories::default()),
                    });
                    (acc, &c.data)
                })
                .collect();
            par_map(work, |(acc, c)| acc.push(c));
            keep_within(
                accs.iter_mut().flatten().filter_map(|a| match a {
                    RefAcc::Numeric { values, .. } => Some(values),
                    RefAcc::Categorical(_) => None,
                }),
                limits.held() / 2,
            );
            Ok(())
        },
    )?;
    let features = finish_reference(job, limits, payload, *format, &requests, accs)?;
    assemble_prepared(features, rows, &job.config, job.key.clone())
}

/// Past `allowance` bytes of exact values, every numeric feature of the side goes on in a
/// sketch.
fn keep_within<'a>(values: impl Iterator<Item = &'a mut Values>, allowance: u64) {
    let mut all: Vec<&mut Values> = values.collect();
    let held: u64 = all.iter().map(|v| v.held_bytes()).sum();
    if held > allowance {
        for v in &mut all {
            v.switch_to_sketch();
        }
    }
}

/// Each reference column's prepared reference (exact edges of sketched ones from a second
/// pass).
fn finish_reference(
    job: &CpuJob,
    limits: &Limits,
    payload: &Payload,
    format: DataFormat,
    requests: &[ColumnRequest],
    accs: Vec<Option<RefAcc>>,
) -> Result<Vec<(String, FeatureReference)>, DriftError> {
    let psi = job.config.psi;
    let invalid = |e: crate::drift::stats::StatsError| DriftError::InvalidConfig(e.to_string());
    let mut out = Vec::new();
    let mut sketched = Vec::new();
    for (r, acc) in requests.iter().zip(accs) {
        let feature = match acc {
            None => {
                return Err(DataError::Empty {
                    side: Side::Reference,
                    uri: payload.uri().to_owned(),
                }
                .into());
            }
            Some(RefAcc::Categorical(c)) => FeatureReference::Categorical(
                CategoricalReference::new(c.counts, psi.smoothing).map_err(invalid)?,
            ),
            Some(RefAcc::Numeric {
                mut values,
                distinct,
            }) => {
                match (distinct.distinct(), values.take_exact()) {
                    (Some(values), _) if values > 0 => FeatureReference::Discrete {
                        reference: CategoricalReference::new(
                            distinct.finish().unwrap_or_default(),
                            psi.smoothing,
                        )
                        .map_err(invalid)?,
                        values,
                    },
                    (_, Some(exact)) => {
                        // held whole: exactly the in-memory preparation
                        let mut all = exact;
                        all.extend(std::iter::repeat_n(
                            f64::NAN,
                            usize::try_from(values.missing).unwrap_or(0),
                        ));
                        FeatureReference::prepare(Column::Numeric(all), psi, 0)?
                    }
                    (_, None) => {
                        sketched.push(out.len());
                        let missing = values.missing;
                        let dist = values.finish();
                        FeatureReference::Numeric(
                            NumericReference::from_parts(
                                dist,
                                Vec::new(),
                                Vec::new(),
                                missing,
                                psi,
                            )
                            .map_err(invalid)?,
                        )
                    }
                }
            }
        };
        out.push((r.name.clone(), feature));
    }
    if !sketched.is_empty() {
        select_edges(job, limits, payload, format, &mut out, &sketched)?;
    }
    Ok(out)
}

/// The second pass: exact PSI edges and bin counts of the sketched features.
fn select_edges(
    job: &CpuJob,
    limits: &Limits,
    payload: &Payload,
    format: DataFormat,
    features: &mut [(String, FeatureReference)],
    sketched: &[usize],
) -> Result<(), DriftError> {
    let psi = job.config.psi;
    let mut pending: Vec<usize> = sketched.to_vec();
    for attempt in 0..SELECTION_ATTEMPTS {
        let mut selections: Vec<RankSelection> = Vec::new();
        for &i in &pending {
            let FeatureReference::Numeric(r) = &features[i].1 else {
                continue;
            };
            let crate::drift::stats::Distribution::Sketch(s) = r.distribution() else {
                continue;
            };
            let delta = (2.0 * s.cdf_error() + 1e-6) * 4f64.powi(attempt as i32);
            selections.push(RankSelection::new(s, psi.bins, delta));
        }
        let requests: Vec<ColumnRequest> = pending
            .iter()
            .map(|&i| ColumnRequest::new(features[i].0.clone(), Some(ColumnKind::Numerical)))
            .collect();
        let mut too_many = false;
        for_each_batch(
            payload,
            format,
            &requests,
            Side::Reference,
            limits.block_bytes(),
            &mut |t| {
                let work: Vec<(&mut RankSelection, &Column)> = selections
                    .iter_mut()
                    .zip(t.columns())
                    .map(|(sel, c)| (sel, &c.data))
                    .collect();
                let misses = par_map(work, |(sel, c)| match c {
                    Column::Numeric(v) => sel.push(v) == Err(SelectionMiss::TooMany),
                    Column::Categorical(_) => false,
                });
                too_many |= misses.into_iter().any(|m| m);
                Ok(())
            },
        )?;
        let mut missed = Vec::new();
        for (&i, sel) in pending.iter().zip(selections) {
            match (too_many, sel.finish()) {
                (false, Ok((edges, counts))) => {
                    let FeatureReference::Numeric(r) = &features[i].1 else {
                        continue;
                    };
                    let rebuilt = NumericReference::from_parts(
                        r.distribution().clone(),
                        edges,
                        counts,
                        r.missing(),
                        psi,
                    )
                    .map_err(|e| DriftError::InvalidConfig(e.to_string()))?;
                    features[i].1 = FeatureReference::Numeric(rebuilt);
                }
                _ => missed.push(i),
            }
        }
        if missed.is_empty() {
            return Ok(());
        }
        pending = missed;
    }
    Err(DriftError::Data(DataError::malformed(
        Side::Reference,
        payload.uri(),
        format!(
            "could not select the exact PSI edges of '{}' in {SELECTION_ATTEMPTS} passes (did the file change while it was read?)",
            pending.first().map_or("", |&i| features[i].0.as_str())
        ),
    )))
}

/// The current data summarised feature by feature, and its row count.
fn stream_current(
    job: &CpuJob,
    limits: &Limits,
    prepared: &PreparedReference,
    requests: &[ColumnRequest],
    allowance: u64,
) -> Result<(usize, HashMap<String, CurrentFeature>), DriftError> {
    let (payload, format) = &job.current;
    let reference = |name: &str| {
        prepared
            .features()
            .chain(prepared.prediction())
            .find(|(n, _)| *n == name)
            .map(|(_, r)| r)
    };
    let mut accs: Vec<CurAcc> = requests
        .iter()
        .map(|r| match reference(&r.name) {
            Some(FeatureReference::Numeric(n)) => CurAcc::Numeric {
                values: Values::new(),
                bins: BinCounts::new(n.edges()),
            },
            Some(FeatureReference::Discrete { .. }) => CurAcc::Discrete(ValueCounts::with_other()),
            _ => CurAcc::Categorical(Categories::default()),
        })
        .collect();
    let mut rows = 0usize;
    for_each_batch(
        payload,
        *format,
        requests,
        Side::Current,
        limits.block_bytes(),
        &mut |t| {
            rows += t.rows();
            let work: Vec<(&mut CurAcc, &Column)> = accs
                .iter_mut()
                .zip(t.columns())
                .map(|(acc, c)| (acc, &c.data))
                .collect();
            par_map(work, |(acc, c)| acc.push(c));
            keep_within(
                accs.iter_mut().filter_map(|a| match a {
                    CurAcc::Numeric { values, .. } => Some(values),
                    _ => None,
                }),
                allowance,
            );
            Ok(())
        },
    )?;
    let current = requests
        .iter()
        .zip(accs)
        .map(|(r, acc)| {
            let feature = match acc {
                CurAcc::Numeric { values, bins } => {
                    let missing = values.missing;
                    CurrentFeature::Summary(CurrentSummary {
                        dist: values.finish(),
                        bin_counts: bins.finish(),
                        missing,
                    })
                }
                CurAcc::Discrete(counts) => {
                    CurrentFeature::Counts(counts.finish().unwrap_or_default())
                }
                CurAcc::Categorical(c) => CurrentFeature::Counts(c.counts),
            };
            (r.name.clone(), feature)
        })
        .collect();
    Ok((rows, current))
}
