//! Streams a VM's serial console log to the client: the whole file or its last lines,
//! then, with `--follow`, new bytes as they are written, until the VM stops or is
//! deleted, or the client leaves. Line ends are normalised to `\n`: a serial console
//! writes `\r\n`, which scripts and terminals do not want twice.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use banger_api::{ApiError, Event, OutputStream};

use crate::events::EventSink;

/// How often a followed log is checked for growth. A serial log has no writer we could
/// subscribe to (QEMU writes the file directly), so following polls its size.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);
const CHUNK: usize = 64 * 1024;

/// `alive` says whether the VM still runs; a followed log ends (after a last read) once
/// it does not.
pub async fn stream(
    path: &Path,
    follow: bool,
    tail_lines: Option<u64>,
    events: &EventSink,
    alive: impl Fn() -> bool,
) -> Result<(), ApiError> {
    let mut crlf = Crlf::default();
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
            emit(events, crlf.push(chunk));
        }
    }
    if !follow {
        emit(events, crlf.finish());
        return Ok(());
    }
    loop {
        // Checked before the read, so the lines written while the VM went down are
        // still sent by this last round.
        let last_round = !alive();
        if !last_round {
            tokio::select! {
                () = events.until_client_gone() => return Ok(()),
                () = tokio::time::sleep(FOLLOW_INTERVAL) => {}
            }
        }
        follow_once(path, &mut file, &mut offset, &mut crlf, events);
        if last_round {
            emit(events, crlf.finish());
            return Ok(());
        }
    }
}

/// Reads whatever the log gained since `offset` and sends it.
fn follow_once(
    path: &Path,
    file: &mut Option<std::fs::File>,
    offset: &mut u64,
    crlf: &mut Crlf,
    events: &EventSink,
) {
    if file.is_none() {
        *file = std::fs::File::open(path).ok();
    }
    let Some(handle) = file.as_mut() else {
        return;
    };
    let len = handle.metadata().map(|m| m.len()).unwrap_or(*offset);
    if len < *offset {
        // Truncated by a new boot: start over from the beginning.
        *offset = 0;
    }
    if len == *offset {
        return;
    }
    let mut buf = Vec::new();
    let read = handle
        .seek(SeekFrom::Start(*offset))
        .and_then(|_| handle.take(len - *offset).read_to_end(&mut buf));
    if read.is_ok() {
        *offset += buf.len() as u64;
        emit(events, crlf.push(&buf));
    }
}

fn emit(events: &EventSink, data: Vec<u8>) {
    if !data.is_empty() {
        events.emit(Event::Output {
            stream: OutputStream::Stdout,
            data,
        });
    }
}

/// Turns `\r\n` into `\n` across chunk boundaries; a lone `\r` is kept.
#[derive(Debug, Default)]
struct Crlf {
    pending_cr: bool,
}

impl Crlf {
    fn push(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len());
        for &byte in data {
            if std::mem::take(&mut self.pending_cr) && byte != b'\n' {
                out.push(b'\r');
            }
            if byte == b'\r' {
                self.pending_cr = true;
            } else {
                out.push(byte);
            }
        }
        out
    }

    /// A `\r` held back at the very end.
    fn finish(&mut self) -> Vec<u8> {
        if std::mem::take(&mut self.pending_cr) {
            vec![b'\r']
        } else {
            Vec::new()
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
    use super::{Crlf, tail_start};

    #[test]
    fn crlf_becomes_lf_across_chunks() {
        let mut crlf = Crlf::default();
        let mut out = crlf.push(b"a\r\nb\r");
        out.extend(crlf.push(b"\nc\rd\r"));
        out.extend(crlf.push(b"\r\n"));
        out.extend(crlf.push(b"e\r"));
        out.extend(crlf.finish());
        assert_eq!(out, b"a\nb\nc\rd\r\ne\r");
    }

    #[test]
    fn tail_finds_line_starts() {
        let text = b"a\nb\nc\n";
        for (lines, expected) in [(0u64, 6usize), (1, 4), (2, 2), (3, 0), (9, 0)] {
            assert_eq!(tail_start(text, lines), expected, "{lines}");
        }
        assert_eq!(tail_start(b"a\nb", 1), 2);
    }
}
