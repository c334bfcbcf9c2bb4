//! Parsers of command-line values shared by the subcommands (clap `value_parser`s): a bad
//! value is a usage error (exit 2) that names the flag.

use std::time::Duration;

/// A duration above zero: `30s`, `2m`, `1h30m`.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    match crate::api::duration::parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be more than 0s".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A size in bytes above zero: `1048576`, `512MiB`, `1GiB`, `2GB`.
pub fn positive_size(text: &str) -> Result<u64, String> {
    let size: bytesize::ByteSize = text
        .trim()
        .parse()
        .map_err(|e| format!("not a size ({e}); write e.g. 512MiB or 1GiB"))?;
    match size.as_u64() {
        0 => Err("must be more than 0 bytes".into()),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(positive_size("512MiB"), Ok(512 << 20));
        assert_eq!(positive_size("1GiB"), Ok(1 << 30));
        assert_eq!(positive_size("1048576"), Ok(1 << 20));
        for bad in ["0", "lots", "-1MiB", ""] {
            assert!(positive_size(bad).is_err(), "{bad}");
        }
        assert_eq!(positive_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(positive_duration("0s").is_err());
        assert!(positive_duration("soon").is_err());
    }
}
