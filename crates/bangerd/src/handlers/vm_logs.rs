//! Streams a VM's serial console log to the client: the whole file or its last lines,
//! then, with `--follow`, new bytes as they are written, until the client leaves.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use banger_api::{ApiError, Event, OutputStream};

use crate::events::EventSink;

/// How often a followed log is checked for growth. A serial log has no writer we could
/// subscribe to (QEMU writes the file directly), so following polls its size.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);
const CHUNK: usize = 64 * 1024;

pub async fn stream(
    path: &Path,
    follow: bool,
    tail_lines: Option<u64>,
    events: &EventSink,
) -> Result<(), ApiError> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => Some(file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(ApiError::operation_failed(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let mut offset = 0u64;
    if let Some(file) = file.as_mut() {
        let mut all = Vec::new();
        file.read_to_end(&mut all).map_err(|e| {
            ApiError::operation_failed(format!("cannot read {}: {e}", path.display()))
        })?;
        offset = all.len() as u64;
        let start = match tail_lines {
            Some(n) => tail_start(&all, n),
            None => 0,
        };
        for chunk in all[start..].chunks(CHUNK) {
            events.emit(Event::Output {
                stream: OutputStream::Stdout,
                data: chunk.to_vec(),
            });
        }
    }
    if !follow {
        return Ok(());
    }
    loop {
        tokio::select! {
            () = events.until_client_gone() => return Ok(()),
            () = tokio::time::sleep(FOLLOW_INTERVAL) => {}
        }
        if file.is_none() {
            file = std::fs::File::open(path).ok();
        }
        let Some(handle) = file.as_mut() else {
            continue;
        };
        let len = handle.metadata().map(|m| m.len()).unwrap_or(offset);
        if len < offset {
            // Truncated by a new boot: start over from the beginning.
            offset = 0;
        }
        if len == offset {
            continue;
        }
        let mut buf = Vec::new();
        let read = handle
            .seek(SeekFrom::Start(offset))
            .and_then(|_| handle.take(len - offset).read_to_end(&mut buf));
        if read.is_ok() {
            offset += buf.len() as u64;
            events.emit(Event::Output {
                stream: OutputStream::Stdout,
                data: buf,
            });
        }
    }
}

/// Byte offset where the last `lines` lines of `text` start.
fn tail_start(text: &[u8], lines: u64) -> usize {
    if lines == 0 {
        return text.len();
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut seen = 0;
    for (index, byte) in body.iter().enumerate().rev() {
        if *byte == b'\n' {
            seen += 1;
            if seen == lines {
                return index + 1;
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::tail_start;

    #[test]
    fn tail_finds_line_starts() {
        let text = b"a\nb\nc\n";
        for (lines, expected) in [(0u64, 6usize), (1, 4), (2, 2), (3, 0), (9, 0)] {
            assert_eq!(tail_start(text, lines), expected, "{lines}");
        }
        assert_eq!(tail_start(b"a\nb", 1), 2);
    }
}
