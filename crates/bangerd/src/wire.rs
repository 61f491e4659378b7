//! Reading and writing frames on one connection: newline-delimited lines bounded by
//! [`MAX_FRAME_BYTES`] (and, for the daemon's connections, by its shared byte budget and
//! partial-frame timeout: `limits`), and response frames serialised one per line.
//!
//! The reader is our own rather than `LinesCodec` because an oversized line must be
//! reported once, skipped up to its newline, and the connection must keep serving; the
//! codec's stream ends after its first error.

use banger_api::{MAX_FRAME_BYTES, ResponseFrame};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use crate::limits::{Budget, Charge, Limits};

/// Decoding a request line is pure and lives with the frames (so the fuzz target of
/// `banger-fuzz` needs no daemon); the connection loop reaches it through here.
pub use banger_api::frame::{Rejected, parse_request};

/// What the next line on the connection turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// One line, newline excluded.
    Line(Line),
    /// A line longer than the limit; it was read and discarded.
    Oversized,
    /// The peer closed its side.
    Eof,
    /// Part of a line arrived, then nothing for the partial-frame timeout.
    PartialTimeout,
    /// The line would pass the daemon's budget of buffered bytes; what was read of it is
    /// dropped, and the connection should be closed (the rest of the line is unread).
    OverBudget,
}

/// A complete request line. Its bytes count against the daemon's buffer budget until it
/// is dropped, so lines a pipelining client queued are counted too.
#[derive(Debug, Default)]
pub struct Line {
    bytes: Vec<u8>,
    _charge: Charge,
}

impl std::ops::Deref for Line {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl PartialEq for Line {
    fn eq(&self, other: &Line) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Line {}

impl From<Vec<u8>> for Line {
    fn from(bytes: Vec<u8>) -> Line {
        Line {
            bytes,
            _charge: Charge::default(),
        }
    }
}

/// Reads bounded lines from a byte stream.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: BufReader<R>,
    max_len: usize,
    /// The line read so far, kept across calls so that a dropped `next` loses nothing.
    line: Vec<u8>,
    oversized: bool,
    /// What `line` holds of the shared budget (bytes beyond `free_bytes`).
    charge: Charge,
    free_bytes: usize,
    partial_timeout: Option<Duration>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        Self::with_max_len(inner, MAX_FRAME_BYTES)
    }

    pub fn with_max_len(inner: R, max_len: usize) -> Self {
        FrameReader {
            inner: BufReader::new(inner),
            max_len,
            line: Vec::new(),
            oversized: false,
            charge: Charge::default(),
            free_bytes: usize::MAX,
            partial_timeout: None,
        }
    }

    /// A reader under the daemon's [`Limits`]: bytes of a line past
    /// `free_bytes_per_line` are taken from `budget`, and a partial line times out.
    pub fn limited(inner: R, limits: &Limits, budget: &Budget) -> Self {
        let mut reader = Self::new(inner);
        reader.charge = Charge::new(Some(budget.clone()));
        reader.free_bytes = limits.free_bytes_per_line;
        reader.partial_timeout = Some(limits.partial_frame_timeout);
        reader
    }

    /// Whether part of a line has been read.
    fn partial(&self) -> bool {
        !self.line.is_empty() || self.oversized
    }

    /// The line read so far, with its charge.
    fn take_line(&mut self) -> Line {
        Line {
            bytes: std::mem::take(&mut self.line),
            _charge: self.charge.take(),
        }
    }

    /// Reads the next line. Cancel-safe: bytes of a line read before the future was
    /// dropped stay in the reader for the next call.
    pub async fn next(&mut self) -> std::io::Result<Incoming> {
        loop {
            let timeout = self.partial_timeout.filter(|_| self.partial());
            let buf = match timeout {
                Some(limit) => match tokio::time::timeout(limit, self.inner.fill_buf()).await {
                    Ok(filled) => filled?,
                    Err(_) => {
                        drop(self.take_line());
                        self.oversized = false;
                        return Ok(Incoming::PartialTimeout);
                    }
                },
                None => self.inner.fill_buf().await?,
            };
            if buf.is_empty() {
                // A last line without its newline still counts: `printf '...' | socat`
                // half-closes after writing, and deserves an answer.
                let line = self.take_line();
                return Ok(if std::mem::take(&mut self.oversized) {
                    Incoming::Oversized
                } else if line.is_empty() {
                    Incoming::Eof
                } else {
                    Incoming::Line(line)
                });
            }
            let (chunk_len, found_newline) = match buf.iter().position(|&b| b == b'\n') {
                Some(at) => (at, true),
                None => (buf.len(), false),
            };
            if !self.oversized {
                let total = self.line.len() + chunk_len;
                if total > self.max_len {
                    // Keep reading to the newline without keeping the bytes.
                    self.oversized = true;
                    drop(self.take_line());
                } else if !self.charge.grow_to(total.saturating_sub(self.free_bytes)) {
                    drop(self.take_line());
                    return Ok(Incoming::OverBudget);
                } else {
                    self.line.extend_from_slice(&buf[..chunk_len]);
                }
            }
            self.inner.consume(chunk_len + usize::from(found_newline));
            if found_newline {
                let line = self.take_line();
                return Ok(if std::mem::take(&mut self.oversized) {
                    Incoming::Oversized
                } else {
                    Incoming::Line(line)
                });
            }
        }
    }
}

/// Writes one response frame as a line.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &ResponseFrame,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(frame).map_err(std::io::Error::other)?;
    line.push(b'\n');
    writer.write_all(&line).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use banger_api::ErrorCode;

    async fn read_all(input: &[u8], max_len: usize) -> Vec<Incoming> {
        let mut reader = FrameReader::with_max_len(input, max_len);
        let mut out = Vec::new();
        loop {
            let next = reader.next().await.unwrap();
            let eof = next == Incoming::Eof;
            out.push(next);
            if eof {
                return out;
            }
        }
    }

    #[test]
    fn requests_are_parsed_or_rejected_with_the_right_code() {
        // (line, Ok((id, method)) or Err((id, code, text the message contains)))
        type Expected = Result<(u64, &'static str), (u64, ErrorCode, &'static str)>;
        let cases: &[(&str, Expected)] = &[
            (r#"{"v":1,"id":4,"method":"ping"}"#, Ok((4, "ping"))),
            (
                r#"{"v":1,"id":5,"method":"vm.show","params":{"vm":"a"}}"#,
                Ok((5, "vm.show")),
            ),
            (
                r#"{"v":1"#,
                Err((0, ErrorCode::BadRequest, "malformed JSON")),
            ),
            (
                "\u{ff}\u{fe}",
                Err((0, ErrorCode::BadRequest, "malformed JSON")),
            ),
            (
                r#"{"v":2,"id":6,"method":"ping"}"#,
                Err((6, ErrorCode::BadVersion, "version 2")),
            ),
            (
                r#"{"id":7,"method":"ping"}"#,
                Err((7, ErrorCode::BadRequest, "no protocol version")),
            ),
            (
                r#"{"v":"1","id":8,"method":"ping"}"#,
                Err((8, ErrorCode::BadRequest, "must be a non-negative integer")),
            ),
            (
                r#"{"v":1,"id":9}"#,
                Err((9, ErrorCode::BadRequest, "missing field `method`")),
            ),
            (
                r#"{"v":1,"id":"x","method":"ping"}"#,
                Err((0, ErrorCode::BadRequest, "invalid request frame")),
            ),
            (
                r#"[1,2]"#,
                Err((0, ErrorCode::BadRequest, "no protocol version")),
            ),
        ];
        for (line, expected) in cases {
            match (parse_request(line.as_bytes()), expected) {
                (Ok(frame), Ok((id, method))) => {
                    assert_eq!((frame.id, frame.method.as_str()), (*id, *method), "{line}");
                }
                (Err(rejected), Err((id, code, needle))) => {
                    assert_eq!(rejected.id, *id, "{line}");
                    assert_eq!(rejected.error.code, *code, "{line}");
                    assert!(
                        rejected.error.message.contains(needle),
                        "{line}: {}",
                        rejected.error.message
                    );
                }
                (got, _) => panic!("{line}: unexpected {got:?}"),
            }
        }
    }

    fn line(text: &str) -> Incoming {
        Incoming::Line(text.as_bytes().to_vec().into())
    }

    #[tokio::test]
    async fn lines_are_split_and_bounded() {
        let cases: &[(&[u8], Vec<Incoming>)] = &[
            (b"", vec![Incoming::Eof]),
            (b"abc\n", vec![line("abc"), Incoming::Eof]),
            (b"abc\ndef\n", vec![line("abc"), line("def"), Incoming::Eof]),
            (b"tail", vec![line("tail"), Incoming::Eof]),
            (b"\n", vec![line(""), Incoming::Eof]),
            // Exactly at the limit is fine; one more byte is not.
            (b"12345\n", vec![line("12345"), Incoming::Eof]),
            (
                b"123456\nok\n",
                vec![Incoming::Oversized, line("ok"), Incoming::Eof],
            ),
            (b"123456789", vec![Incoming::Oversized, Incoming::Eof]),
        ];
        for (input, expected) in cases {
            assert_eq!(
                &read_all(input, 5).await,
                expected,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[tokio::test]
    async fn oversized_line_spanning_many_buffers_is_skipped() {
        // Larger than BufReader's 8 KiB buffer, so the discard spans several fills.
        let mut input = vec![b'x'; 100_000];
        input.extend_from_slice(b"\nafter\n");
        let got = read_all(&input, 1000).await;
        assert_eq!(got, vec![Incoming::Oversized, line("after"), Incoming::Eof]);
    }
}
