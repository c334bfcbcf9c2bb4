//! A whole file into memory, in pieces on several threads when it is large: copying out of
//! the page cache and first touching the buffer's pages are most of a read's time, and they
//! split evenly between threads.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::super::workers_for;

/// Below this size a file is read on one thread.
const MIN_PARALLEL_BYTES: usize = 8 << 20;

/// The file's bytes, as `read_to_end` gives them.
pub(super) fn read_whole(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let len = file
        .metadata()
        .map(|m| usize::try_from(m.len()).unwrap_or(0))
        .unwrap_or(0);
    #[cfg(unix)]
    {
        let workers = workers_for(len / MIN_PARALLEL_BYTES);
        if workers > 1 {
            let mut buf = vec![0u8; len];
            if read_pieces(&file, &mut buf, workers)? {
                // whatever was appended since the size was read, as read_to_end would
                file.seek(SeekFrom::Start(len as u64))?;
                file.read_to_end(&mut buf)?;
                return Ok(buf);
            }
            // the file shrank meanwhile: read it again from the start, in one piece
            file.seek(SeekFrom::Start(0))?;
        }
    }
    let mut buf = Vec::with_capacity(len.saturating_add(1));
    file.read_to_end(&mut buf)?;
    Ok(buf)
}

/// Fill `buf` from the file's start, `workers` pieces at once; false when the file ended
/// before `buf` was full.
#[cfg(unix)]
fn read_pieces(file: &File, buf: &mut [u8], workers: usize) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let piece = buf.len().div_ceil(workers).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = buf
            .chunks_mut(piece)
            .enumerate()
            .map(|(i, part)| {
                s.spawn(move || match file.read_exact_at(part, (i * piece) as u64) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
                    Err(e) => Err(e),
                })
            })
            .collect();
        let mut full = true;
        for h in handles {
            full &= h
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("internal error while reading")))?;
        }
        Ok(full)
    })
}
