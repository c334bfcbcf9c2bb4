//! The engine that fetches, reads, prepares (cached) and compares, off the async runtime.

use super::profile::profile_location;
use super::*;

/// Runs checks and keeps prepared references between them.
#[derive(Debug)]
pub struct DriftEngine {
    pub(super) fetch: FetchContext,
    pub(super) cache: Mutex<Vec<(ReferenceKey, Arc<PreparedReference>)>>,
    pub(super) capacity: usize,
}

pub(super) struct Resolved {
    pub(super) source: DataSource,
    pub(super) format: DataFormat,
    /// A named pipe (`--current <(...)`, `/dev/stdin`) read once, here: it cannot be opened
    /// again to read the header and then the rows.
    pub(super) stream: Option<Payload>,
    /// Several files read as one dataset (a directory, a glob, an object-store prefix), or
    /// one file of which only the newest rows or files are read.
    pub(super) collection: Option<Collecting>,
}

/// How a collection is read.
pub(super) struct Collecting {
    uri: String,
    explicit: Option<DataFormat>,
    selection: FileSelection,
    now: jiff::Timestamp,
}

impl Collecting {
    fn collection(&self, side: Side) -> crate::drift::data::collection::Collection<'_> {
        crate::drift::data::collection::Collection {
            uri: &self.uri,
            explicit: self.explicit,
            selection: self.selection,
            now: self.now,
            side,
        }
    }
}

impl Resolved {
    pub(super) async fn fetch(&self, ctx: &FetchContext, side: Side) -> Result<Payload, DataError> {
        use crate::drift::data::collection;
        match (&self.stream, &self.collection, &self.source) {
            (Some(payload), None, _) => Ok(payload.clone()),
            (Some(payload), Some(c), _) => Ok(self.one_part(payload.clone(), c)),
            (None, None, source) => source.fetch(ctx, side).await,
            (None, Some(c), DataSource::File(path)) => {
                collection::fetch_local(ctx, path, &c.collection(side))
            }
            (None, Some(c), DataSource::Object(_)) => {
                collection::fetch_objects(ctx, &c.collection(side)).await
            }
            // One downloaded file of which the newest rows are kept.
            (None, Some(c), source) => Ok(self.one_part(source.fetch(ctx, side).await?, c)),
        }
    }

    fn fetch_local(&self, ctx: &FetchContext, side: Side) -> Option<Result<Payload, DataError>> {
        match (&self.stream, &self.collection, &self.source) {
            (Some(payload), None, _) => Some(Ok(payload.clone())),
            (Some(payload), Some(c), _) => Some(Ok(self.one_part(payload.clone(), c))),
            (None, None, source) => source.fetch_local(side, ctx.max_bytes),
            (None, Some(c), DataSource::File(path)) => Some(
                crate::drift::data::collection::fetch_local(ctx, path, &c.collection(side)),
            ),
            (None, Some(_), _) => None,
        }
    }

    fn one_part(&self, payload: Payload, c: &Collecting) -> Payload {
        Payload::Many {
            uri: payload.uri().to_owned(),
            parts: vec![crate::drift::data::Part {
                payload,
                format: self.format,
            }],
            last_rows: c.selection.last_rows,
        }
    }
}

/// Parses `loc`, asks the policy, and decides how it is read: one file, a stream, or a
/// collection (with the `selection` of its newest rows or files, judged at `now`).
pub(super) fn resolve(
    loc: &DatasetLocation,
    side: Side,
    fetch: &FetchContext,
    selection: FileSelection,
    now: SystemTime,
) -> Result<Resolved, DataError> {
    let source = DataSource::parse(&loc.uri, side)?;
    // Before anything is opened or fetched.
    fetch
        .policy
        .check(&source)
        .map_err(|why| DataError::NotAllowed {
            side,
            uri: loc.uri.clone(),
            why,
        })?;
    let many_files = source.is_collection() || selection.is_set();
    if many_files && matches!(source, DataSource::File(_) | DataSource::Object(_)) {
        return Ok(Resolved {
            format: loc.format.unwrap_or(DataFormat::Parquet),
            source,
            stream: None,
            collection: Some(Collecting {
                uri: loc.uri.clone(),
                explicit: loc.format,
                selection,
                now: jiff::Timestamp::try_from(now).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            }),
        });
    }
    if selection.last_duration.is_some() {
        return Err(DataError::InvalidUri {
            side,
            uri: loc.uri.clone(),
            reason: "lastDuration needs a local path or an object-store URI (files with a time)"
                .into(),
        });
    }
    let stream = source.read_stream(side, fetch.max_bytes)?;
    // A stream has no useful name (`/dev/fd/63`): its first bytes say what it is.
    let format = match (detect_format(&source, loc.format, side), &stream) {
        (Ok(format), _) => format,
        (Err(_), Some(payload)) => sniff_format(payload),
        (Err(e), None) => return Err(e),
    };
    let collection = selection.is_set().then(|| Collecting {
        uri: loc.uri.clone(),
        explicit: loc.format,
        selection,
        now: jiff::Timestamp::UNIX_EPOCH,
    });
    Ok(Resolved {
        source,
        format,
        stream,
        collection,
    })
}

pub(super) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl DriftEngine {
    /// An engine keeping up to 16 prepared references.
    pub fn new(fetch: FetchContext) -> Self {
        Self {
            fetch,
            cache: Mutex::new(Vec::new()),
            capacity: 16,
        }
    }

    pub fn with_cache_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// The prepared reference of `key`, if cached.
    pub fn cached(&self, key: &ReferenceKey) -> Option<Arc<PreparedReference>> {
        let cache = self.cache.lock().ok()?;
        cache.iter().find(|(k, _)| k == key).map(|(_, p)| p.clone())
    }

    /// Drop a cached reference (e.g. when the reference data was rewritten in place).
    pub fn invalidate(&self, key: &ReferenceKey) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|(k, _)| k != key);
        }
    }

    pub(super) fn remember(&self, prepared: Arc<PreparedReference>) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|(k, _)| k != prepared.key());
            if cache.len() >= self.capacity {
                cache.remove(0);
            }
            cache.push((prepared.key().clone(), prepared));
        }
    }

    /// Run one check: fetch what is needed, prepare the reference unless cached, compare the
    /// current data, compute accuracy on labelled data. CPU work runs on the blocking pool.
    pub async fn check(&self, request: &CheckRequest) -> Result<DriftReport, DriftError> {
        let started = Instant::now();
        request.config.validate()?;
        let fetch = self.fetch.clone().with_storage(request.storage.clone());
        let now = request.now.unwrap_or_else(SystemTime::now);
        let all = FileSelection::default();
        let profile = is_profile_uri(&request.reference.uri);
        let reference = resolve(
            &profile_location(request),
            Side::Reference,
            &fetch,
            all,
            now,
        )?;
        let current = resolve(
            &request.current,
            Side::Current,
            &fetch,
            request.config.current_files,
            now,
        )?;
        let labelled = request
            .labelled
            .as_ref()
            .map(|l| ResolvedLabelled::new(l, &fetch, now))
            .transpose()?;
        let key = request.reference_key();
        let mut cached = self.cached(&key);

        let fetch_ref = async {
            match &cached {
                Some(_) => Ok(None),
                None => reference.fetch(&fetch, Side::Reference).await.map(Some),
            }
        };
        let fetch_cur = current.fetch(&fetch, Side::Current);
        let fetch_lab = async {
            match &labelled {
                Some(r) => r.fetch(&fetch).await.map(Some),
                None => Ok(None),
            }
        };
        let (ref_payload, cur_payload, lab_payload) =
            futures::future::join3(fetch_ref, fetch_cur, fetch_lab).await;
        let (mut ref_payload, cur_payload, lab_payload) =
            (ref_payload?, cur_payload?, lab_payload?);
        if profile && let Some(payload) = ref_payload.take() {
            cached = Some(Arc::new(profile::read_profile(
                &payload,
                &request.config,
                key.clone(),
            )?));
        }
        let fetch_s = secs(started.elapsed());

        let job = CpuJob {
            now,
            config: request.config.clone(),
            key,
            cached,
            reference: ref_payload.map(|p| (p, reference.format)),
            current: (cur_payload, current.format),
            labelled: lab_payload,
            memory_limit: self.fetch.memory_limit,
        };
        let (prepared, mut report) = match tokio::task::spawn_blocking(move || job.run()).await {
            Ok(r) => r?,
            Err(e) => {
                return Err(DriftError::InvalidConfig(format!(
                    "internal error: the drift computation did not finish: {e}"
                )));
            }
        };
        self.remember(prepared);
        report.timings.fetch_s = fetch_s;
        report.timings.total_s = secs(started.elapsed());
        Ok(report)
    }

    /// [`check`](Self::check) for local files only, without an async runtime (the CLI's path
    /// when no dataset is remote). Remote sources give [`DataError::InvalidUri`].
    pub fn check_local(&self, request: &CheckRequest) -> Result<DriftReport, DriftError> {
        let started = Instant::now();
        request.config.validate()?;
        let now = request.now.unwrap_or_else(SystemTime::now);
        let local = |loc: &DatasetLocation,
                     side: Side,
                     selection: FileSelection|
         -> Result<(Payload, DataFormat), DataError> {
            let r = resolve(loc, side, &self.fetch, selection, now)?;
            match r.fetch_local(&self.fetch, side) {
                Some(p) => Ok((p?, r.format)),
                None => Err(DataError::InvalidUri {
                    side,
                    uri: loc.uri.clone(),
                    reason: "a remote dataset needs the async check".into(),
                }),
            }
        };
        let key = request.reference_key();
        let mut cached = self.cached(&key);
        let mut reference = match &cached {
            Some(_) => None,
            None => Some(local(
                &profile_location(request),
                Side::Reference,
                FileSelection::default(),
            )?),
        };
        if is_profile_uri(&request.reference.uri)
            && let Some((payload, _)) = reference.take()
        {
            cached = Some(Arc::new(profile::read_profile(
                &payload,
                &request.config,
                key.clone(),
            )?));
        }
        let current = local(
            &request.current,
            Side::Current,
            request.config.current_files,
        )?;
        let labelled = match &request.labelled {
            Some(l) => Some(LabelledInput {
                table: local(&l.location, Side::Labelled, FileSelection::default())?,
                captures: l
                    .join
                    .as_ref()
                    .map(|j| local(&j.predictions, Side::Captured, j.selection))
                    .transpose()?,
                location: l.clone(),
            }),
            None => None,
        };
        let job = CpuJob {
            now,
            config: request.config.clone(),
            key,
            cached,
            reference,
            current,
            labelled,
            memory_limit: self.fetch.memory_limit,
        };
        let (prepared, mut report) = job.run()?;
        self.remember(prepared);
        report.timings.total_s = secs(started.elapsed());
        Ok(report)
    }
}

/// The labelled data resolved: the labelled (or feedback) table and, for a join, the captured
/// predictions.
pub(super) struct ResolvedLabelled {
    table: Resolved,
    captures: Option<Resolved>,
    location: LabelledLocation,
}

impl ResolvedLabelled {
    fn new(l: &LabelledLocation, fetch: &FetchContext, now: SystemTime) -> Result<Self, DataError> {
        let all = FileSelection::default();
        Ok(Self {
            table: resolve(&l.location, Side::Labelled, fetch, all, now)?,
            captures: l
                .join
                .as_ref()
                .map(|j| resolve(&j.predictions, Side::Captured, fetch, j.selection, now))
                .transpose()?,
            location: l.clone(),
        })
    }

    /// Both fetched at once.
    async fn fetch(&self, ctx: &FetchContext) -> Result<LabelledInput, DataError> {
        let captures = async {
            match &self.captures {
                Some(c) => c
                    .fetch(ctx, Side::Captured)
                    .await
                    .map(|p| Some((p, c.format))),
                None => Ok(None),
            }
        };
        let (table, captures) =
            futures::future::join(self.table.fetch(ctx, Side::Labelled), captures).await;
        Ok(LabelledInput {
            table: (table?, self.table.format),
            captures: captures?,
            location: self.location.clone(),
        })
    }
}

/// The labelled data as fetched.
pub(super) struct LabelledInput {
    /// The labelled table, or the feedback table of a join.
    pub(super) table: (Payload, DataFormat),
    /// The captured predictions of a join.
    pub(super) captures: Option<(Payload, DataFormat)>,
    pub(super) location: LabelledLocation,
}

impl LabelledInput {
    /// Accuracy on the labelled table, or on the labels joined with the captured predictions.
    fn accuracy(&self) -> Result<AccuracyReport, DataError> {
        let loc = &self.location;
        let (payload, format) = &self.table;
        if let (Some((captures, captures_format)), Some(join)) = (&self.captures, &loc.join) {
            let captures = join::JoinInput {
                payload: captures,
                format: *captures_format,
                id_column: crate::storage::layout::REQUEST_ID_COLUMN,
                value_column: &loc.prediction_column,
                side: Side::Captured,
            };
            let feedback = join::JoinInput {
                payload,
                format: *format,
                id_column: &join.id_column,
                value_column: &loc.label_column,
                side: Side::Labelled,
            };
            return join::joined_accuracy(
                &captures,
                &feedback,
                &join.id_column,
                join::MAX_JOIN_ROWS,
            );
        }
        let columns = [
            ColumnRequest::new(loc.prediction_column.clone(), None),
            ColumnRequest::new(loc.label_column.clone(), None),
        ];
        read_table(payload, *format, &columns, Side::Labelled)
            .and_then(|t| accuracy(&t, &loc.prediction_column, &loc.label_column))
    }
}

/// The CPU-bound part of a check (reading, preparing, comparing).
pub(super) struct CpuJob {
    pub(super) now: SystemTime,
    pub(super) config: DriftConfig,
    pub(super) key: ReferenceKey,
    pub(super) cached: Option<Arc<PreparedReference>>,
    pub(super) reference: Option<(Payload, DataFormat)>,
    pub(super) current: (Payload, DataFormat),
    pub(super) labelled: Option<LabelledInput>,
    /// Past this, the datasets are streamed ([`super::stream`]).
    pub(super) memory_limit: u64,
}

/// The reference table and the seconds it took to read, `None` when the reference is cached.
type ReadReference = Result<Option<(Table, f64)>, DriftError>;
/// The accuracy on the labelled data and the seconds it took, `None` without labelled data.
pub(super) type ReadLabelled = Option<Result<(AccuracyReport, f64), DataError>>;

impl CpuJob {
    /// The reference table (unless cached) is read while the labelled data is; then the
    /// current data is read while the reference is prepared; then the comparison.
    pub(super) fn run(self) -> Result<(Arc<PreparedReference>, DriftReport), DriftError> {
        if self.needs_streaming()? {
            return super::stream::stream_check(&self, self.memory_limit);
        }
        let mut timings = Timings {
            reference_cached: self.cached.is_some(),
            ..Timings::default()
        };
        let (cur_payload, cur_format) = &self.current;
        let cur_names = column_names(cur_payload, *cur_format, Side::Current)?;
        let (reference_table, labelled) = self.read_reference_beside_labelled(&cur_names);
        let (prepared, table) =
            self.prepare_beside_current(reference_table?, &cur_names, &mut timings)?;
        let mut report = self.compare_window(&prepared, table, &mut timings)?;
        with_accuracy(&mut report, labelled, &mut timings)?;
        report.timings = timings;
        Ok((prepared, report))
    }

    /// The reference table (`None` when cached) and the accuracy on the labelled data (`None`
    /// without labelled data), read on two threads.
    fn read_reference_beside_labelled(
        &self,
        cur_names: &[String],
    ) -> (ReadReference, ReadLabelled) {
        if self.labelled.is_none() {
            return (self.read_reference(cur_names), None);
        }
        std::thread::scope(|s| {
            let lab = s.spawn(|| self.read_labelled());
            let r = self.read_reference(cur_names);
            let lab = lab.join().unwrap_or_else(|_| {
                Some(Err(DataError::malformed(
                    Side::Labelled,
                    "",
                    "internal error while reading",
                )))
            });
            (r, lab)
        })
    }

    fn read_reference(&self, cur_names: &[String]) -> ReadReference {
        if self.cached.is_some() {
            return Ok(None);
        }
        let Some((payload, format)) = &self.reference else {
            return Err(DriftError::InvalidConfig(
                "internal error: no reference data".into(),
            ));
        };
        let t0 = Instant::now();
        let names = column_names(payload, *format, Side::Reference)?;
        let requests = reference_requests(&names, &self.config)?;
        let current: std::collections::HashSet<&str> =
            cur_names.iter().map(String::as_str).collect();
        if self.config.features.is_empty()
            && !requests.iter().any(|r| current.contains(r.name.as_str()))
        {
            return Err(DriftError::NoFeatures(
                "the reference and current data have no column in common".into(),
            ));
        }
        let table = read_table(payload, *format, &requests, Side::Reference)?;
        Ok(Some((table, secs(t0.elapsed()))))
    }

    pub(super) fn read_labelled(&self) -> ReadLabelled {
        let input = self.labelled.as_ref()?;
        let loc = &input.location;
        let t0 = Instant::now();
        let r = input.accuracy().map(|mut a| {
            if let (Some(th), Some(acc)) = (loc.accuracy_threshold, a.accuracy) {
                a.accuracy_threshold = Some(th);
                a.below_threshold = Some(acc < th);
            }
            (a, secs(t0.elapsed()))
        });
        Some(r)
    }

    /// The current table (plus the window's timestamp column) and the seconds it took.
    fn read_current(&self, requests: &[ColumnRequest]) -> Result<(Table, f64), DriftError> {
        let t0 = Instant::now();
        let mut requests = requests.to_vec();
        if let Some(w) = &self.config.window
            && !requests.iter().any(|r| r.name == w.timestamp_column)
        {
            requests.push(ColumnRequest::new(w.timestamp_column.clone(), None));
        }
        let (payload, format) = &self.current;
        let t = read_table(payload, *format, &requests, Side::Current)?;
        Ok((t, secs(t0.elapsed())))
    }

    /// The prepared reference (the cached one, or prepared from `reference_table` while the
    /// current data is read on another thread) and the current table.
    fn prepare_beside_current(
        &self,
        reference_table: Option<(Table, f64)>,
        cur_names: &[String],
        timings: &mut Timings,
    ) -> Result<(Arc<PreparedReference>, Table), DriftError> {
        let (prepared, (table, read_current_s)) = match (reference_table, &self.cached) {
            (None, Some(p)) => {
                let requests = p.current_requests(cur_names)?;
                (p.clone(), self.read_current(&requests)?)
            }
            (Some((ref_table, read_s)), _) => {
                timings.read_reference_s = read_s;
                let requests = requests_from_reference_table(&ref_table, &self.config, cur_names)?;
                let (prepared, current) = std::thread::scope(|s| {
                    let cur = s.spawn(|| self.read_current(&requests));
                    let t1 = Instant::now();
                    let prepared = prepare_reference(ref_table, &self.config, self.key.clone())
                        .map(|p| (Arc::new(p), secs(t1.elapsed())));
                    let cur = cur
                        .join()
                        .unwrap_or_else(|_| Err(internal_error("reading the current data")));
                    (prepared, cur)
                });
                let (prepared, prepare_s) = prepared?;
                timings.prepare_s = prepare_s;
                (prepared, current?)
            }
            (None, None) => return Err(internal_error("preparing the reference")),
        };
        timings.read_current_s = read_current_s;
        Ok((prepared, table))
    }

    /// Keep the configured window of the current table, then compare it with the reference.
    fn compare_window(
        &self,
        prepared: &PreparedReference,
        mut table: Table,
        timings: &mut Timings,
    ) -> Result<DriftReport, DataError> {
        let window = match self.config.window.as_ref() {
            Some(w) => {
                let compared = prepared.features().any(|(n, _)| n == w.timestamp_column)
                    || prepared
                        .prediction()
                        .is_some_and(|(n, _)| n == w.timestamp_column);
                Some(apply_window(&mut table, w, self.now, compared)?)
            }
            None => None,
        };
        let t1 = Instant::now();
        let mut report = compare(prepared, table, &self.config);
        report.window = window;
        timings.compare_s = secs(t1.elapsed());
        Ok(report)
    }
}

/// The accuracy on the labelled data (when there is some) into the report.
pub(super) fn with_accuracy(
    report: &mut DriftReport,
    labelled: ReadLabelled,
    timings: &mut Timings,
) -> Result<(), DriftError> {
    if let Some(r) = labelled {
        let (acc, s) = r?;
        timings.accuracy_s = s;
        if let Some(join) = &acc.join {
            report.notes.push(join.note());
        }
        report.performance = Some(acc);
    }
    Ok(())
}

fn internal_error(what: &str) -> DriftError {
    DriftError::Data(DataError::malformed(
        Side::Current,
        "",
        format!("internal error while {what}"),
    ))
}

/// Cache of prepared references keyed by [`ReferenceKey`] outside an engine (e.g. tests).
pub type ReferenceCache = HashMap<ReferenceKey, Arc<PreparedReference>>;
