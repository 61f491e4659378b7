//! Output caps: a buffer that keeps the first `limit` bytes of a stream and counts the
//! rest, so a tool result says how much was cut. Pure.

/// The first `limit` bytes of a stream, and its full length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capped {
    limit: usize,
    kept: Vec<u8>,
    total: u64,
}

impl Capped {
    pub fn new(limit: usize) -> Capped {
        Capped {
            limit,
            kept: Vec::new(),
            total: 0,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let room = self.limit.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&data[..data.len().min(room)]);
    }

    pub fn truncated(&self) -> bool {
        self.total > self.kept.len() as u64
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn bytes(&self) -> &[u8] {
        &self.kept
    }

    /// The kept bytes as text (invalid UTF-8, including a character cut by the cap,
    /// becomes U+FFFD).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.kept).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_head_and_counts_everything() {
        let mut c = Capped::new(5);
        c.push(b"abc");
        assert!(!c.truncated());
        c.push(b"defgh");
        c.push(b"ij");
        assert_eq!(c.bytes(), b"abcde");
        assert_eq!(c.total(), 10);
        assert!(c.truncated());
    }

    #[test]
    fn exactly_the_limit_is_not_truncated() {
        let mut c = Capped::new(3);
        c.push(b"abc");
        assert!(!c.truncated());
        assert_eq!(c.text(), "abc");
    }
}
