//! Files the CLI reads on an operator's word: each read is bounded, so a path such as
//! `/dev/zero`, a FIFO or a huge file by mistake ends in a clear error, not in a read without
//! end. (A size from `metadata` alone says nothing about a device or a pipe: the read itself
//! stops one byte past the limit.)

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};

/// Largest persona spec file: the API's default body limit.
pub const MAX_SPEC_FILE_BYTES: u64 = 4 << 20;
/// Largest node config file (it may declare many personas inline).
pub const MAX_CONFIG_FILE_BYTES: u64 = 16 << 20;

/// The text of `path`, refused past `max_bytes` or when not UTF-8; `what` names it in errors.
pub fn read_text(path: &Path, max_bytes: u64, what: &str) -> anyhow::Result<String> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    if bytes.len() as u64 > max_bytes {
        bail!("{what} {} is larger than {max_bytes} bytes: not a {what}", path.display());
    }
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{what} {} is not UTF-8 text", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_without_end_is_refused_at_the_limit() {
        let e = read_text(Path::new("/dev/zero"), 1024, "persona spec").unwrap_err();
        assert!(e.to_string().contains("larger than 1024 bytes"), "{e}");
        let e = read_text(Path::new("/nonexistent/x.toml"), 1024, "config").unwrap_err();
        assert!(e.to_string().contains("cannot read config /nonexistent/x.toml"), "{e:#}");
    }

    #[test]
    fn text_within_the_limit_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(&p, "name = \"a\"").unwrap();
        assert_eq!(read_text(&p, 10, "spec").unwrap(), "name = \"a\"");
        assert!(read_text(&p, 9, "spec").is_err());
        std::fs::write(&p, [0xff, 0xfe]).unwrap();
        assert!(read_text(&p, 10, "spec").unwrap_err().to_string().contains("not UTF-8"));
    }
}
