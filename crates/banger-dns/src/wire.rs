//! The DNS wire format, as far as the `.vm` responder needs it: parse one query (header,
//! a single question, an optional EDNS OPT record) and build the answer into a caller's
//! buffer. Pure: the only outside input is the `lookup` function from a VM name to its
//! address, so every rule here is table-tested without a socket.
//!
//! The rules:
//! - shorter than a header, or a response (QR=1): dropped, never answered, so two
//!   responders cannot bounce packets at each other;
//! - an opcode other than QUERY: NOTIMP;
//! - not exactly one question, a question that does not parse: FORMERR (header only);
//! - a name outside `.vm` or a class other than IN: REFUSED (we are no resolver);
//! - `<name>.vm` whose lookup succeeds: an A record for A/ANY queries, no answers
//!   (NODATA) for other types; `vm` itself: NODATA; anything else under `.vm`: NXDOMAIN.
//!
//! Work per packet is bounded: a name is at most 255 bytes, compression pointers are
//! refused in a question, and only the first additional record is looked at (for EDNS).
//! Nothing allocates once the output buffer has its capacity ([`MAX_RESPONSE_LEN`]).

use std::net::Ipv4Addr;

/// TTL of every answer, in seconds: short, because a VM's address changes when it is
/// re-created, and a stale cache would send ssh to someone else's guest.
pub const TTL_SECS: u32 = 5;

/// The zone we answer for.
pub const ZONE: &str = "vm";

/// No response we build is longer than this (header + longest name + one A record +
/// OPT), so responses always fit plain 512-byte DNS over UDP and never need TC.
pub const MAX_RESPONSE_LEN: usize = 512;

const HEADER_LEN: usize = 12;
/// Longest name in wire form, including the root label (RFC 1035 §2.3.4).
const MAX_NAME_WIRE_LEN: usize = 255;
/// The UDP payload size we advertise in EDNS replies (the DNS flag day 2020 value).
const EDNS_UDP_PAYLOAD: u16 = 1232;

const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_RD: u16 = 0x0100;
const OPCODE_MASK: u16 = 0x7800;

const TYPE_A: u16 = 1;
const TYPE_OPT: u16 = 41;
const TYPE_IXFR: u16 = 251;
const TYPE_AXFR: u16 = 252;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;

/// Response codes we send (RFC 1035 §4.1.1, RFC 6891 §9 for BADVERS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Rcode {
    NoError = 0,
    FormErr = 1,
    NxDomain = 3,
    NotImp = 4,
    Refused = 5,
    /// Extended: the upper 8 bits travel in the OPT record.
    BadVers = 16,
}

/// Answers one query packet. `lookup` maps a lowercase VM name (the label before `.vm`)
/// to its address. None means "send nothing" (see the module rules).
pub fn answer(query: &[u8], lookup: &dyn Fn(&str) -> Option<Ipv4Addr>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(MAX_RESPONSE_LEN);
    answer_into(query, lookup, &mut out).then_some(out)
}

/// [`answer`] into a reused buffer: clears `out`, fills it, and returns whether there
/// is something to send. The server loop uses this so a flood allocates nothing.
pub fn answer_into(
    query: &[u8],
    lookup: &dyn Fn(&str) -> Option<Ipv4Addr>,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    let Some(header) = Header::parse(query) else {
        return false;
    };
    if header.flags & FLAG_QR != 0 {
        return false;
    }
    let reply = Reply::for_query(&header);
    if header.flags & OPCODE_MASK != 0 {
        reply.header_only(Rcode::NotImp, out);
        return true;
    }
    if header.qdcount != 1 {
        reply.header_only(Rcode::FormErr, out);
        return true;
    }
    let mut name = NameBuf::new();
    let Some(question) = Question::parse(query, HEADER_LEN, &mut name) else {
        reply.header_only(Rcode::FormErr, out);
        return true;
    };
    let edns = match Edns::parse(query, &header, question.end) {
        Ok(edns) => edns,
        Err(Malformed) => {
            reply.header_only(Rcode::FormErr, out);
            return true;
        }
    };
    let question_bytes = &query[HEADER_LEN..question.end];
    if let Some(Edns { version }) = edns
        && version != 0
    {
        reply.full(Rcode::BadVers, false, question_bytes, None, edns, out);
        return true;
    }
    let (rcode, authoritative, address) = resolve(&question, &name, lookup);
    reply.full(rcode, authoritative, question_bytes, address, edns, out);
    true
}

/// The decision for a parsed question: rcode, whether we are authoritative, and the
/// address to put in an A record (if any).
fn resolve(
    question: &Question,
    name: &NameBuf,
    lookup: &dyn Fn(&str) -> Option<Ipv4Addr>,
) -> (Rcode, bool, Option<Ipv4Addr>) {
    let in_zone = name.count > 0 && name.last_label() == ZONE.as_bytes();
    if !in_zone || question.qclass != CLASS_IN {
        return (Rcode::Refused, false, None);
    }
    if matches!(question.qtype, TYPE_AXFR | TYPE_IXFR) {
        // Zone transfers are a TCP affair and we have no zone file to give.
        return (Rcode::Refused, false, None);
    }
    match name.count {
        // The zone apex exists (we are authoritative for it) but has no records.
        1 => (Rcode::NoError, true, None),
        2 => match vm_name_text(name.first_label()).and_then(lookup) {
            Some(address) if matches!(question.qtype, TYPE_A | TYPE_ANY) => {
                (Rcode::NoError, true, Some(address))
            }
            Some(_) => (Rcode::NoError, true, None),
            None => (Rcode::NxDomain, true, None),
        },
        // VM names are single labels: nothing lives deeper under `.vm`.
        _ => (Rcode::NxDomain, true, None),
    }
}

/// A label as a VM name, when it could be one: printable ASCII without dots (a binary
/// label with a `.` inside must not look like two labels to the lookup).
fn vm_name_text(label: &[u8]) -> Option<&str> {
    if label.iter().all(|b| b.is_ascii_graphic() && *b != b'.') {
        std::str::from_utf8(label).ok()
    } else {
        None
    }
}

/// The fixed 12-byte header.
#[derive(Debug, Clone, Copy)]
struct Header {
    id: u16,
    flags: u16,
    qdcount: u16,
    ancount: u16,
    nscount: u16,
    arcount: u16,
}

impl Header {
    fn parse(packet: &[u8]) -> Option<Header> {
        let bytes = packet.get(..HEADER_LEN)?;
        let word = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
        Some(Header {
            id: word(0),
            flags: word(2),
            qdcount: word(4),
            ancount: word(6),
            nscount: word(8),
            arcount: word(10),
        })
    }
}

/// The question name, lowercased, with label boundaries. Lives on the stack.
struct NameBuf {
    bytes: [u8; MAX_NAME_WIRE_LEN],
    len: usize,
    /// (start, end) in `bytes` of the first label and of the last label: enough for
    /// `<name>.vm`, and keeps the struct fixed-size.
    first: (usize, usize),
    last: (usize, usize),
    count: usize,
}

impl NameBuf {
    fn new() -> NameBuf {
        NameBuf {
            bytes: [0; MAX_NAME_WIRE_LEN],
            len: 0,
            first: (0, 0),
            last: (0, 0),
            count: 0,
        }
    }

    fn push_label(&mut self, label: &[u8]) {
        let start = self.len;
        let end = start + label.len();
        for (slot, byte) in self.bytes[start..end].iter_mut().zip(label) {
            *slot = byte.to_ascii_lowercase();
        }
        self.len = end;
        if self.count == 0 {
            self.first = (start, end);
        }
        self.last = (start, end);
        self.count += 1;
    }

    fn first_label(&self) -> &[u8] {
        &self.bytes[self.first.0..self.first.1]
    }

    fn last_label(&self) -> &[u8] {
        &self.bytes[self.last.0..self.last.1]
    }
}

/// The marker for "this packet does not parse".
#[derive(Debug)]
struct Malformed;

/// The one question of a query.
#[derive(Debug, Clone, Copy)]
struct Question {
    qtype: u16,
    qclass: u16,
    /// Offset just past the question in the packet.
    end: usize,
}

impl Question {
    fn parse(packet: &[u8], start: usize, name: &mut NameBuf) -> Option<Question> {
        let mut pos = start;
        let mut wire_len = 0usize;
        loop {
            let len = usize::from(*packet.get(pos)?);
            wire_len += 1 + len;
            if wire_len > MAX_NAME_WIRE_LEN {
                return None;
            }
            if len == 0 {
                pos += 1;
                break;
            }
            // 0xC0 is a compression pointer, 0x40/0x80 extended label types: a question
            // has nothing earlier to point at, and nobody sends the others.
            if len & 0xC0 != 0 {
                return None;
            }
            let label = packet.get(pos + 1..pos + 1 + len)?;
            name.push_label(label);
            pos += 1 + len;
        }
        let fixed = packet.get(pos..pos + 4)?;
        Some(Question {
            qtype: u16::from_be_bytes([fixed[0], fixed[1]]),
            qclass: u16::from_be_bytes([fixed[2], fixed[3]]),
            end: pos + 4,
        })
    }
}

/// What the query said about EDNS (RFC 6891), when it had an OPT record.
#[derive(Debug, Clone, Copy)]
struct Edns {
    version: u8,
}

impl Edns {
    /// Looks at the first additional record only, and only when the query carries no
    /// answer or authority records (a normal query has none), so we never walk an
    /// arbitrary number of records. A record that is not OPT is ignored; a record shorter
    /// than any record can be, or an OPT record cut short, is malformed.
    fn parse(packet: &[u8], header: &Header, at: usize) -> Result<Option<Edns>, Malformed> {
        if header.arcount == 0 || header.ancount != 0 || header.nscount != 0 {
            return Ok(None);
        }
        // Every record has at least an owner byte and ten fixed bytes; OPT's owner is the
        // root name, a single zero byte.
        let fixed = packet.get(at..at + 11).ok_or(Malformed)?;
        let rtype = u16::from_be_bytes([fixed[1], fixed[2]]);
        if fixed[0] != 0 || rtype != TYPE_OPT {
            return Ok(None);
        }
        let rdlen = usize::from(u16::from_be_bytes([fixed[9], fixed[10]]));
        if packet.len() < at + 11 + rdlen {
            return Err(Malformed);
        }
        Ok(Some(Edns { version: fixed[6] }))
    }
}

/// The parts of a reply copied from the query.
#[derive(Debug, Clone, Copy)]
struct Reply {
    id: u16,
    /// Opcode and RD, echoed as RFC 1035 asks.
    echoed_flags: u16,
}

impl Reply {
    fn for_query(header: &Header) -> Reply {
        Reply {
            id: header.id,
            echoed_flags: header.flags & (OPCODE_MASK | FLAG_RD),
        }
    }

    fn write_header(&self, flags: u16, counts: [u16; 4], out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&(FLAG_QR | self.echoed_flags | flags).to_be_bytes());
        for count in counts {
            out.extend_from_slice(&count.to_be_bytes());
        }
    }

    /// A reply with no sections, for packets whose question we cannot trust.
    fn header_only(&self, rcode: Rcode, out: &mut Vec<u8>) {
        self.write_header(rcode as u16 & 0xF, [0, 0, 0, 0], out);
    }

    /// A reply echoing the question, with an optional A record and OPT record.
    fn full(
        &self,
        rcode: Rcode,
        authoritative: bool,
        question: &[u8],
        address: Option<Ipv4Addr>,
        edns: Option<Edns>,
        out: &mut Vec<u8>,
    ) {
        let mut flags = rcode as u16 & 0xF;
        if authoritative {
            flags |= FLAG_AA;
        }
        let counts = [
            1,
            u16::from(address.is_some()),
            0,
            u16::from(edns.is_some()),
        ];
        self.write_header(flags, counts, out);
        out.extend_from_slice(question);
        if let Some(address) = address {
            // The owner is a pointer to the question name, right after the header.
            out.extend_from_slice(&[0xC0, HEADER_LEN as u8]);
            out.extend_from_slice(&TYPE_A.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&TTL_SECS.to_be_bytes());
            out.extend_from_slice(&4u16.to_be_bytes());
            out.extend_from_slice(&address.octets());
        }
        if edns.is_some() {
            let extended_rcode = (rcode as u16 >> 4) as u8;
            out.push(0);
            out.extend_from_slice(&TYPE_OPT.to_be_bytes());
            out.extend_from_slice(&EDNS_UDP_PAYLOAD.to_be_bytes());
            // TTL field: extended rcode, version 0, no flags (DO stays clear: no DNSSEC).
            out.extend_from_slice(&[extended_rcode, 0, 0, 0]);
            out.extend_from_slice(&0u16.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests;
