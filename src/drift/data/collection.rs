//! Several files read as one dataset: a local directory, a glob in the last path segment
//! (`/data/live/*.parquet`), or an object-store prefix (`s3://bucket/captures/ns/m/stable/`)
//! or glob.
//!
//! Each file has a time: the window start its name carries in the capture layout
//! ([`crate::storage::layout::window_start`]), else its modification time. The files are read
//! oldest first; [`FileSelection`] keeps the files of the last duration, or as many of the
//! newest files as hold the last N rows (the rows beyond N of the oldest of them are dropped
//! when the data is read). Only the directory itself is listed, not its subdirectories; hidden
//! files and files starting with `_` (`_SUCCESS`) are skipped, and without an explicit format
//! so is every file that is not `.csv`, `.parquet` or `.pq`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;

use super::error::{DataError, Side, one_line};
use super::objects::{self, Opened};
use super::source::{FetchContext, Part, Payload};
use crate::api::DataFormat;

/// Most files one dataset is read from (before a selection narrows them, a listing may hold
/// more).
pub const MAX_FILES: usize = 10_000;

/// Objects downloaded at once.
const PARALLEL_DOWNLOADS: usize = 4;

/// Which files of a collection are read (`spec.drift.current.lastRows` / `lastDuration`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileSelection {
    /// The newest N rows.
    pub last_rows: Option<usize>,
    /// The files whose time is within this long before the check.
    pub last_duration: Option<Duration>,
}

impl FileSelection {
    /// Whether anything is selected (else every file is read).
    pub fn is_set(&self) -> bool {
        self.last_rows.is_some() || self.last_duration.is_some()
    }
}

/// A file of a collection, listed but not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// A local path, or an object's path in its store.
    pub location: String,
    /// The file name (the last segment).
    pub name: String,
    pub size: u64,
    /// The window start in its name, else its modification time.
    pub time: Timestamp,
    pub format: DataFormat,
}

/// Whether a path segment is a glob (`*` any characters, `?` one).
pub fn is_glob(segment: &str) -> bool {
    segment.contains(['*', '?'])
}

/// Whether `name` matches the glob `pattern` (`*` and `?`; no escaping, no classes).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and the name position it matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The format a file of a collection is read in, `None` for a file that is not data.
pub fn data_file_format(name: &str, explicit: Option<DataFormat>) -> Option<DataFormat> {
    if name.starts_with('.') || name.starts_with('_') {
        return None;
    }
    if explicit.is_some() {
        return explicit;
    }
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    match ext.as_str() {
        "csv" => Some(DataFormat::Csv),
        "parquet" | "pq" => Some(DataFormat::Parquet),
        _ => None,
    }
}

/// A file's time: the window start in its name, else `modified_ms` (ms since the epoch).
pub fn file_time(name: &str, modified_ms: i64) -> Timestamp {
    crate::storage::layout::window_start(name)
        .or_else(|| Timestamp::from_millisecond(modified_ms).ok())
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The files to read, oldest first: all of them, or those of the last duration before `now`.
/// (`lastRows` needs the row counts: [`newest_files_for_rows`].)
pub fn select(mut files: Vec<Listed>, selection: &FileSelection, now: Timestamp) -> Vec<Listed> {
    files.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.name.cmp(&b.name)));
    if let Some(d) = selection.last_duration {
        let since = jiff::SignedDuration::try_from(d)
            .ok()
            .and_then(|d| now.checked_sub(d).ok())
            .unwrap_or(Timestamp::MIN);
        files.retain(|f| f.time >= since);
    }
    files
}

/// How many of the newest files hold the last `n` rows, given their row counts newest first
/// (all of them when they hold fewer).
pub fn newest_files_for_rows(counts_newest_first: &[usize], n: usize) -> usize {
    let mut total = 0usize;
    for (i, count) in counts_newest_first.iter().enumerate() {
        total = total.saturating_add(*count);
        if total >= n {
            return i + 1;
        }
    }
    counts_newest_first.len()
}

/// Where a collection is and how it is read.
#[derive(Clone, Copy, Debug)]
pub struct Collection<'a> {
    pub uri: &'a str,
    pub explicit: Option<DataFormat>,
    pub selection: FileSelection,
    pub now: Timestamp,
    pub side: Side,
}

impl Collection<'_> {
    fn no_files(&self) -> DataError {
        let newer = match self.selection.last_duration {
            Some(d) => format!(" newer than {}", crate::api::duration::format_duration(d)),
            None => String::new(),
        };
        DataError::NotFound {
            side: self.side,
            uri: self.uri.to_owned(),
            detail: format!("no CSV or Parquet files{newer}"),
        }
    }

    fn too_many(&self, n: usize) -> DataError {
        DataError::InvalidUri {
            side: self.side,
            uri: self.uri.to_owned(),
            reason: format!(
                "{n} files, more than the {MAX_FILES} one dataset is read from (narrow it with lastDuration, lastRows or a glob)"
            ),
        }
    }

    fn too_large(&self, limit: u64) -> DataError {
        DataError::TooLarge {
            side: self.side,
            uri: self.uri.to_owned(),
            limit,
        }
    }

    /// The payload of the chosen files (oldest first).
    fn payload(&self, parts: Vec<Part>) -> Payload {
        Payload::Many {
            uri: self.uri.to_owned(),
            parts,
            last_rows: self.selection.last_rows,
        }
    }
}

/// A local directory or glob, listed and checked now (the files are read later, lazily).
/// Every file is asked of the policy (a link in an allowed directory may point out of it).
pub fn fetch_local(
    ctx: &FetchContext,
    path: &Path,
    c: &Collection<'_>,
) -> Result<Payload, DataError> {
    let files = c.select_checked(list_local(path, c)?)?;
    let mut parts = Vec::with_capacity(files.len());
    for f in &files {
        let file = PathBuf::from(&f.location);
        ctx.policy
            .check(&super::source::DataSource::File(file.clone()))
            .map_err(|why| DataError::NotAllowed {
                side: c.side,
                uri: f.location.clone(),
                why,
            })?;
        parts.push(Part {
            payload: Payload::from_path(file),
            format: f.format,
        });
    }
    let parts = match c.selection.last_rows {
        Some(n) => {
            let mut counts = Vec::new();
            for part in parts.iter().rev() {
                counts.push(super::count_rows(&part.payload, part.format, c.side)?);
                if counts.iter().sum::<usize>() >= n {
                    break;
                }
            }
            let keep = newest_files_for_rows(&counts, n);
            parts.split_off(parts.len() - keep)
        }
        None => parts,
    };
    let total: u64 = files.iter().rev().take(parts.len()).map(|f| f.size).sum();
    if total > ctx.max_bytes {
        return Err(c.too_large(ctx.max_bytes));
    }
    Ok(c.payload(parts))
}

impl Collection<'_> {
    /// The selected files oldest first; none is an error, and so are too many.
    fn select_checked(&self, files: Vec<Listed>) -> Result<Vec<Listed>, DataError> {
        let files = select(files, &self.selection, self.now);
        if files.is_empty() {
            return Err(self.no_files());
        }
        // lastRows reads from the newest back, as few as it needs.
        if files.len() > MAX_FILES && self.selection.last_rows.is_none() {
            return Err(self.too_many(files.len()));
        }
        Ok(files)
    }
}

/// The data files of a local directory, or of the directory of a glob that match it.
fn list_local(path: &Path, c: &Collection<'_>) -> Result<Vec<Listed>, DataError> {
    let (dir, pattern) = if path.is_dir() {
        (path.to_path_buf(), None)
    } else {
        let dir = path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let pattern = path.file_name().map(|n| n.to_string_lossy().into_owned());
        (dir, pattern)
    };
    let unreadable = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            DataError::NotFound {
                side: c.side,
                uri: c.uri.to_owned(),
                detail: String::new(),
            }
        } else {
            DataError::Unreachable {
                side: c.side,
                uri: c.uri.to_owned(),
                detail: one_line(&e.to_string()),
            }
        }
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if pattern.as_deref().is_some_and(|p| !glob_match(p, &name)) {
            continue;
        }
        let Some(format) = data_file_format(&name, c.explicit) else {
            continue;
        };
        // Links are followed; directories, devices and sockets are not data.
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let modified_ms = meta
            .modified()
            .ok()
            .and_then(|t| Timestamp::try_from(t).ok())
            .map_or(0, Timestamp::as_millisecond);
        files.push(Listed {
            location: entry.path().display().to_string(),
            time: file_time(&name, modified_ms),
            name,
            size: meta.len(),
            format,
        });
    }
    Ok(files)
}

/// An object-store prefix (ending in `/`), glob, or one object (with a selection), listed
/// and downloaded within the timeout and under the byte cap (for all the files together).
pub async fn fetch_objects(ctx: &FetchContext, c: &Collection<'_>) -> Result<Payload, DataError> {
    let (base, pattern, single) = split_object_uri(c.uri);
    let opened = objects::open(ctx, &base, c.side)?;
    objects::within(ctx, c.uri, c.side, async {
        let listed = objects::list(&opened, &opened.path, single, c.uri, c.side).await?;
        let files: Vec<Listed> = listed
            .into_iter()
            .filter_map(|o| {
                let name = o.path.filename()?.to_owned();
                if pattern.as_deref().is_some_and(|p| !glob_match(p, &name)) {
                    return None;
                }
                let format = data_file_format(&name, c.explicit)?;
                Some(Listed {
                    location: o.path.to_string(),
                    time: file_time(&name, o.modified_ms),
                    name,
                    size: o.size,
                    format,
                })
            })
            .collect();
        let files = c.select_checked(files)?;
        let parts = match c.selection.last_rows {
            Some(n) => download_newest(ctx, &opened, files, n, c).await?,
            None => download_all(ctx, &opened, &files, c).await?,
        };
        Ok(c.payload(parts))
    })
    .await
}

/// `(the URI to open, the glob of its last segment, whether it names one object)`.
fn split_object_uri(uri: &str) -> (String, Option<String>, bool) {
    if uri.ends_with('/') {
        return (uri.to_owned(), None, false);
    }
    match uri.rsplit_once('/') {
        Some((dir, last)) if is_glob(last) => (format!("{dir}/"), Some(last.to_owned()), false),
        _ => (uri.to_owned(), None, true),
    }
}

/// Downloads `files` (oldest first), a few at a time, keeping their order; their sizes as
/// listed must fit the byte cap together, and each download is held to what is left of it.
async fn download_all(
    ctx: &FetchContext,
    opened: &Opened,
    files: &[Listed],
    c: &Collection<'_>,
) -> Result<Vec<Part>, DataError> {
    let total: u64 = files.iter().map(|f| f.size).sum();
    if total > ctx.max_bytes {
        return Err(c.too_large(ctx.max_bytes));
    }
    // Futures made first: a closure inside the stream's type would keep it from being `Send`
    // for every lifetime (rust-lang/rust#102211).
    let downloads: Vec<_> = files.iter().map(|f| download(ctx, opened, f, c)).collect();
    futures::stream::iter(downloads)
        .buffered(PARALLEL_DOWNLOADS)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Downloads the newest files, a few at a time, until they hold `n` rows.
async fn download_newest(
    ctx: &FetchContext,
    opened: &Opened,
    files: Vec<Listed>,
    n: usize,
    c: &Collection<'_>,
) -> Result<Vec<Part>, DataError> {
    let mut newest_first: Vec<Part> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    let mut bytes = 0u64;
    for batch in files.rchunks(PARALLEL_DOWNLOADS) {
        bytes = bytes.saturating_add(batch.iter().map(|f| f.size).sum());
        if bytes > ctx.max_bytes {
            return Err(c.too_large(ctx.max_bytes));
        }
        let downloads: Vec<_> = batch
            .iter()
            .rev()
            .map(|f| download(ctx, opened, f, c))
            .collect();
        for part in futures::future::join_all(downloads).await {
            let part = part?;
            counts.push(super::count_rows(&part.payload, part.format, c.side)?);
            newest_first.push(part);
        }
        if counts.iter().sum::<usize>() >= n {
            break;
        }
    }
    newest_first.truncate(newest_files_for_rows(&counts, n));
    newest_first.reverse();
    Ok(newest_first)
}

/// One listed object, under the byte cap.
async fn download(
    ctx: &FetchContext,
    opened: &Opened,
    file: &Listed,
    c: &Collection<'_>,
) -> Result<Part, DataError> {
    let uri = format!("{}{}", opened.root, file.location);
    let path = object_store::path::Path::parse(&file.location)
        .unwrap_or_else(|_| object_store::path::Path::from(file.location.as_str()));
    let bytes = objects::read_capped(opened, &path, &uri, c.side, ctx.max_bytes).await?;
    Ok(Part {
        payload: Payload::Bytes { bytes, uri },
        format: file.format,
    })
}

#[cfg(test)]
mod tests;
