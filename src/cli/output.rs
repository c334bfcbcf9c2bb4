//! Writing results to stdout the way Unix tools do: a reader that stops early (`| head`)
//! ends the output quietly instead of a broken-pipe panic.

use std::io::{ErrorKind, Write};

/// Writes `text` (as is) to stdout. A closed pipe is not an error; any other write error is
/// reported on stderr and returned.
pub fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        Err(e) => {
            eprintln!("mlrollout: cannot write the output: {e}");
            Err(e)
        }
        Ok(()) => Ok(()),
    }
}

/// [`print`] with a newline.
pub fn println(text: &str) -> std::io::Result<()> {
    print(&format!("{text}\n"))
}
