//! sni: the server name a TLS ClientHello asks for, read from the first TLS record of a
//! connection (pure; the proxy in `sni_proxy.rs` feeds it the bytes it has so far). Only
//! what the check needs is parsed: record header, handshake header, the fixed fields
//! skipped by their lengths, the extensions walked for `server_name` (type 0) and its
//! first `host_name` entry. Every length is bounds-checked; the record is at most
//! [`MAX_RECORD`] bytes, so a peer cannot make the proxy buffer more.

/// The largest TLS record we wait for (2^14 plus the header).
pub const MAX_RECORD: usize = 16 * 1024 + 5;

/// What the bytes so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// A ClientHello naming this server (lowercase, no trailing dot).
    Sni(String),
    /// A ClientHello without a usable server name.
    NoSni,
    /// Not a TLS ClientHello (or a malformed one).
    NotTls,
    /// Too short yet: wait for this many bytes in total.
    NeedBytes(usize),
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.data.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(out)
    }

    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }

    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
}

/// Reads the first record of a connection.
pub fn parse_client_hello(bytes: &[u8]) -> Hello {
    if bytes.len() < 5 {
        // Enough to know it is not TLS as soon as the first byte is wrong.
        if bytes.first().is_some_and(|b| *b != 0x16) {
            return Hello::NotTls;
        }
        return Hello::NeedBytes(5);
    }
    if bytes[0] != 0x16 || bytes[1] != 0x03 {
        return Hello::NotTls;
    }
    let record_len = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
    let total = 5 + record_len;
    if total > MAX_RECORD {
        return Hello::NotTls;
    }
    if bytes.len() < total {
        return Hello::NeedBytes(total);
    }
    client_hello_sni(&bytes[5..total]).unwrap_or(Hello::NotTls)
}

fn client_hello_sni(record: &[u8]) -> Option<Hello> {
    let mut r = Reader {
        data: record,
        pos: 0,
    };
    if r.u8()? != 0x01 {
        return None;
    }
    let len = r.u24()?;
    let body = r.take(len)?;
    let mut r = Reader { data: body, pos: 0 };
    r.take(2 + 32)?; // version, random
    let session = r.u8()?;
    r.take(session)?;
    let suites = r.u16()?;
    r.take(suites)?;
    let compression = r.u8()?;
    r.take(compression)?;
    if r.pos == body.len() {
        return Some(Hello::NoSni);
    }
    let ext_len = r.u16()?;
    let extensions = r.take(ext_len)?;
    let mut e = Reader {
        data: extensions,
        pos: 0,
    };
    while e.pos < extensions.len() {
        let kind = e.u16()?;
        let len = e.u16()?;
        let data = e.take(len)?;
        if kind != 0 {
            continue;
        }
        let mut s = Reader { data, pos: 0 };
        let list_len = s.u16()?;
        let list = s.take(list_len)?;
        let mut l = Reader { data: list, pos: 0 };
        while l.pos < list.len() {
            let name_type = l.u8()?;
            let name_len = l.u16()?;
            let name = l.take(name_len)?;
            if name_type != 0 {
                continue;
            }
            let text = std::str::from_utf8(name).ok()?;
            if text.is_empty()
                || !text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
            {
                return None;
            }
            let text = text.strip_suffix('.').unwrap_or(text);
            return Some(Hello::Sni(text.to_ascii_lowercase()));
        }
        return Some(Hello::NoSni);
    }
    Some(Hello::NoSni)
}

/// A minimal ClientHello record naming `server` (or no server name), for tests and
/// the e2e guest client: TLS 1.2 framing, one cipher suite, no other extensions.
pub fn client_hello(server: Option<&str>) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&[0x03, 0x03]);
    body.extend_from_slice(&[0x42; 32]);
    body.push(0);
    body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]);
    body.extend_from_slice(&[0x01, 0x00]);
    if let Some(server) = server {
        let name = server.as_bytes();
        let mut ext = Vec::new();
        ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        ext.extend_from_slice(name);
        let mut exts = Vec::new();
        exts.extend_from_slice(&0u16.to_be_bytes());
        exts.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        exts.extend_from_slice(&ext);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
    }
    let mut handshake = vec![0x01];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_are_read() {
        let hello = client_hello(Some("Allowed.Test."));
        assert_eq!(
            parse_client_hello(&hello),
            Hello::Sni("allowed.test".into())
        );
        assert_eq!(parse_client_hello(&client_hello(None)), Hello::NoSni);
        // Cut anywhere: wait for the whole record.
        for cut in [0, 1, 4, 5, 20, hello.len() - 1] {
            match parse_client_hello(&hello[..cut]) {
                Hello::NeedBytes(n) => assert!(n > cut, "{cut}: {n}"),
                other => panic!("{cut}: {other:?}"),
            }
        }
        // More than the record (the next one already arrived): still the first record.
        let mut more = hello.clone();
        more.extend_from_slice(b"trailing");
        assert_eq!(parse_client_hello(&more), Hello::Sni("allowed.test".into()));
    }

    #[test]
    fn other_bytes_are_not_tls() {
        let cases: Vec<Vec<u8>> = vec![
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            b"G".to_vec(),
            vec![0x16, 0x02, 0x01, 0x00, 0x01, 0x01],
            vec![0x16, 0x03, 0x01, 0xFF, 0xFF],
            // A handshake that is not a ClientHello.
            vec![0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00],
        ];
        for bytes in cases {
            assert_eq!(parse_client_hello(&bytes), Hello::NotTls, "{bytes:?}");
        }
        // A name with a space or a control byte is not a usable SNI.
        let mut bad = client_hello(Some("a.test"));
        let at = bad.len() - 2;
        bad[at] = b' ';
        assert_eq!(parse_client_hello(&bad), Hello::NotTls);
    }

    #[test]
    fn no_input_panics() {
        let hello = client_hello(Some("x.example.com"));
        for i in 0..hello.len() {
            for value in [0u8, 1, 0x7F, 0xFF] {
                let mut bytes = hello.clone();
                bytes[i] = value;
                let _ = parse_client_hello(&bytes);
            }
        }
    }
}
