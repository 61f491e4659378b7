//! lines: splits a byte stream into newline-terminated frames without ever holding more
//! than one frame's worth of a line. A line longer than the limit is skipped up to its
//! newline and reported once, so a peer (or stale garbage) cannot make the reader grow
//! without bound, and the frames after it still arrive.

/// What the splitter found next in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEvent {
    /// One complete line, without its newline (may be empty).
    Line(Vec<u8>),
    /// A line longer than the limit was dropped.
    Oversized,
}

#[derive(Debug)]
pub struct LineSplitter {
    buffer: Vec<u8>,
    /// Where the current (unfinished) line starts in `buffer`.
    start: usize,
    /// How far `buffer` has been searched for a newline.
    scanned: usize,
    max_line: usize,
    /// The current line already exceeded `max_line`; drop bytes up to its newline.
    discarding: bool,
}

impl LineSplitter {
    pub fn new(max_line: usize) -> LineSplitter {
        LineSplitter {
            buffer: Vec::new(),
            start: 0,
            scanned: 0,
            max_line,
            discarding: false,
        }
    }

    /// Appends bytes read from the stream; take the lines out with [`Self::next_event`].
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete line or oversize report, or `None` once the buffered bytes end
    /// in an unfinished line (call again after the next `push`).
    pub fn next_event(&mut self) -> Option<LineEvent> {
        let search_from = self.scanned.max(self.start);
        if let Some(offset) = self.buffer[search_from..].iter().position(|&b| b == b'\n') {
            let end = search_from + offset;
            let line_start = self.start;
            self.start = end + 1;
            self.scanned = self.start;
            if std::mem::take(&mut self.discarding) || end - line_start > self.max_line {
                return Some(LineEvent::Oversized);
            }
            return Some(LineEvent::Line(self.buffer[line_start..end].to_vec()));
        }
        // No newline left: move the unfinished line to the front, once per batch of lines,
        // so splitting many short lines stays linear.
        self.buffer.drain(..self.start);
        self.start = 0;
        self.scanned = self.buffer.len();
        if self.buffer.len() > self.max_line {
            self.discarding = true;
            self.buffer.clear();
            self.scanned = 0;
        }
        None
    }

    /// Forgets an unfinished line: the connection that was sending it has ended.
    pub fn reset(&mut self) {
        self.buffer.clear();
        self.start = 0;
        self.scanned = 0;
        self.discarding = false;
    }

    /// Bytes of the unfinished line currently held.
    pub fn pending_bytes(&self) -> usize {
        self.buffer.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> LineEvent {
        LineEvent::Line(text.as_bytes().to_vec())
    }

    fn split(max_line: usize, chunks: &[&str]) -> Vec<LineEvent> {
        let mut splitter = LineSplitter::new(max_line);
        let mut events = Vec::new();
        for chunk in chunks {
            splitter.push(chunk.as_bytes());
            while let Some(event) = splitter.next_event() {
                events.push(event);
            }
        }
        events
    }

    #[test]
    fn splits_lines_across_arbitrary_chunk_boundaries() {
        let table: Vec<(usize, Vec<&str>, Vec<LineEvent>)> = vec![
            (10, vec!["a\nb\n"], vec![line("a"), line("b")]),
            (10, vec!["ab", "c\n", "d"], vec![line("abc")]),
            (10, vec!["\n\n"], vec![line(""), line("")]),
            (10, vec!["", "x", "", "\n"], vec![line("x")]),
            // Exactly at the limit is fine; one byte over is not.
            (
                3,
                vec!["abc\nabcd\nok\n"],
                vec![line("abc"), LineEvent::Oversized, line("ok")],
            ),
            // An oversized line spread over chunks is dropped up to its newline, once.
            (
                3,
                vec!["ab", "cdef", "ghij", "kl\nok\n"],
                vec![LineEvent::Oversized, line("ok")],
            ),
            (3, vec!["abcdefgh"], vec![]),
        ];
        for (max_line, chunks, want) in table {
            assert_eq!(split(max_line, &chunks), want, "{chunks:?}");
        }
    }

    #[test]
    fn never_holds_more_than_one_line_beyond_the_limit() {
        let mut splitter = LineSplitter::new(8);
        for _ in 0..100 {
            splitter.push(b"0123456789");
            assert_eq!(splitter.next_event(), None);
            assert!(splitter.pending_bytes() <= 8 + 10);
        }
        splitter.push(b"\nfine\n");
        assert_eq!(splitter.next_event(), Some(LineEvent::Oversized));
        assert_eq!(splitter.next_event(), Some(line("fine")));
    }

    #[test]
    fn reset_drops_the_unfinished_line() {
        let mut splitter = LineSplitter::new(100);
        splitter.push(b"{\"id\":1,\"op\":\"hel");
        assert_eq!(splitter.next_event(), None);
        splitter.reset();
        splitter.push(b"next\n");
        assert_eq!(splitter.next_event(), Some(line("next")));
    }
}
