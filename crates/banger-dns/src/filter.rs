//! filter: the pure packet half of banger's policy resolver, the only resolver a guest
//! under a network policy can reach. For one query it reads the question
//! ([`read_query`]), decides from the VM's policy ([`decide`]): forward an allowed name
//! to the host's upstream, answer AAAA with no records (the guest has no IPv6), or
//! refuse; builds the refusal or the empty answer itself ([`reply_without_records`]);
//! and reads the IPv4 addresses and TTLs out of the upstream's answer
//! ([`answer_addresses`]) so they can be added to the VM's allowed set before the guest
//! sees them. A reply that does not answer the question asked (another id, another
//! name) is refused, so an upstream cannot get addresses allowed for a name nobody
//! allowed.
//!
//! Work per packet is bounded: names are at most 255 bytes, compression pointers in an
//! answer are followed at most [`MAX_POINTERS`] times, and at most [`MAX_RECORDS`]
//! answer records are read.

use std::net::Ipv4Addr;

use banger_model::{NetPolicy, Ports};

/// At most this many answer records are looked at.
pub const MAX_RECORDS: usize = 64;
/// At most this many compression pointers are followed in one name.
pub const MAX_POINTERS: usize = 16;

const HEADER_LEN: usize = 12;
const MAX_NAME_WIRE_LEN: usize = 255;
const FLAG_QR: u16 = 0x8000;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;
const OPCODE_MASK: u16 = 0x7800;
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;

/// Response codes the policy resolver sends itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError = 0,
    FormErr = 1,
    ServFail = 2,
    NotImp = 4,
    Refused = 5,
}

/// A query's header fields and its one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    pub flags: u16,
    /// Lowercase, dotted, without the trailing dot (`""` for the root).
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// The question's bytes (name, type, class), echoed in replies.
    pub question: Vec<u8>,
}

/// Why a packet is not a query we forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Not worth an answer (too short, or itself a response).
    Drop,
    /// Answer with a header-only reply carrying this rcode.
    Reply { id: u16, flags: u16, rcode: Rcode },
}

/// Reads one query. Only standard queries with exactly one question, whose name is
/// printable text, pass.
pub fn read_query(packet: &[u8]) -> Result<Query, Unreadable> {
    let header = packet.get(..HEADER_LEN).ok_or(Unreadable::Drop)?;
    let word = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    let (id, flags, qdcount) = (word(0), word(2), word(4));
    if flags & FLAG_QR != 0 {
        return Err(Unreadable::Drop);
    }
    let reply = |rcode| Unreadable::Reply { id, flags, rcode };
    if flags & OPCODE_MASK != 0 {
        return Err(reply(Rcode::NotImp));
    }
    if qdcount != 1 {
        return Err(reply(Rcode::FormErr));
    }
    let (name, end) = read_plain_name(packet, HEADER_LEN).ok_or(reply(Rcode::FormErr))?;
    let fixed = packet.get(end..end + 4).ok_or(reply(Rcode::FormErr))?;
    Ok(Query {
        id,
        flags,
        name,
        qtype: u16::from_be_bytes([fixed[0], fixed[1]]),
        qclass: u16::from_be_bytes([fixed[2], fixed[3]]),
        question: packet[HEADER_LEN..end + 4].to_vec(),
    })
}

/// A question name without compression: lowercase dotted text and the offset after it.
/// Labels must be printable ASCII without dots (a binary label with a `.` inside must
/// not read as two labels to the policy).
fn read_plain_name(packet: &[u8], start: usize) -> Option<(String, usize)> {
    let mut pos = start;
    let mut name = String::new();
    loop {
        let len = usize::from(*packet.get(pos)?);
        if len == 0 {
            return Some((name, pos + 1));
        }
        if len & 0xC0 != 0 || pos + 1 + len - start > MAX_NAME_WIRE_LEN {
            return None;
        }
        let label = packet.get(pos + 1..pos + 1 + len)?;
        if !label.iter().all(|b| b.is_ascii_graphic() && *b != b'.') {
            return None;
        }
        if !name.is_empty() {
            name.push('.');
        }
        name.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
        pos += 1 + len;
    }
}

/// What to do with a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Ask the upstream; addresses in the answer are allowed on these ports.
    Forward(Ports),
    /// An allowed name asked for AAAA: no records (the guest has no IPv6).
    NoRecords,
    /// Not allowed (or not IN): REFUSED, nothing forwarded.
    Refuse,
}

/// The policy's decision for a query.
pub fn decide(policy: &NetPolicy, query: &Query) -> Decision {
    if query.qclass != CLASS_IN {
        return Decision::Refuse;
    }
    match policy.name_ports(&query.name) {
        None => Decision::Refuse,
        Some(_) if query.qtype == TYPE_AAAA => Decision::NoRecords,
        Some(ports) => Decision::Forward(ports),
    }
}

/// A reply with the question echoed and no records (REFUSED, SERVFAIL, or NOERROR for
/// "no such records").
pub fn reply_without_records(query: &Query, rcode: Rcode) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + query.question.len());
    out.extend_from_slice(&query.id.to_be_bytes());
    let flags = FLAG_QR | FLAG_RA | (query.flags & (OPCODE_MASK | FLAG_RD)) | rcode as u16;
    out.extend_from_slice(&flags.to_be_bytes());
    for count in [1u16, 0, 0, 0] {
        out.extend_from_slice(&count.to_be_bytes());
    }
    out.extend_from_slice(&query.question);
    out
}

/// A header-only reply for a packet whose question could not be read.
pub fn header_reply(id: u16, flags: u16, rcode: Rcode) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(&id.to_be_bytes());
    let flags = FLAG_QR | FLAG_RA | (flags & (OPCODE_MASK | FLAG_RD)) | rcode as u16;
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    out
}

/// Why an upstream reply is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadAnswer {
    #[error("the reply is cut short or malformed")]
    Malformed,
    #[error("the reply answers another query")]
    Mismatch,
}

/// An IPv4 address the answer holds, with its TTL in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Learned {
    pub ip: Ipv4Addr,
    pub ttl: u32,
}

/// The A records (of any owner: CNAME chains end in other names) in an upstream reply
/// to `query`. The reply must be a response with the query's id and question.
pub fn answer_addresses(reply: &[u8], query: &Query) -> Result<Vec<Learned>, BadAnswer> {
    let header = reply.get(..HEADER_LEN).ok_or(BadAnswer::Malformed)?;
    let word = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    if word(0) != query.id || word(2) & FLAG_QR == 0 || word(4) != 1 {
        return Err(BadAnswer::Mismatch);
    }
    let question_end = HEADER_LEN + query.question.len();
    let question = reply
        .get(HEADER_LEN..question_end)
        .ok_or(BadAnswer::Mismatch)?;
    if !question.eq_ignore_ascii_case(&query.question) {
        return Err(BadAnswer::Mismatch);
    }
    let ancount = usize::from(word(6)).min(MAX_RECORDS);
    let mut pos = question_end;
    let mut found = Vec::new();
    for _ in 0..ancount {
        pos = skip_name(reply, pos).ok_or(BadAnswer::Malformed)?;
        let fixed = reply.get(pos..pos + 10).ok_or(BadAnswer::Malformed)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let class = u16::from_be_bytes([fixed[2], fixed[3]]);
        let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let data = reply
            .get(pos + 10..pos + 10 + rdlen)
            .ok_or(BadAnswer::Malformed)?;
        if rtype == TYPE_A && class == CLASS_IN {
            let octets: [u8; 4] = data.try_into().map_err(|_| BadAnswer::Malformed)?;
            found.push(Learned {
                ip: Ipv4Addr::from(octets),
                // RFC 2181 §8: a TTL with the top bit set is zero.
                ttl: if ttl > i32::MAX as u32 { 0 } else { ttl },
            });
        }
        pos += 10 + rdlen;
    }
    Ok(found)
}

/// Skips a possibly compressed name; returns the offset after it.
fn skip_name(packet: &[u8], start: usize) -> Option<usize> {
    let mut pos = start;
    let mut wire_len = 0usize;
    loop {
        let len = *packet.get(pos)?;
        match len & 0xC0 {
            0x00 if len == 0 => return Some(pos + 1),
            0x00 => {
                wire_len += 1 + usize::from(len);
                if wire_len > MAX_NAME_WIRE_LEN {
                    return None;
                }
                pos += 1 + usize::from(len);
            }
            // A pointer ends the name in place; where it points does not matter here.
            0xC0 => {
                packet.get(pos + 1)?;
                return Some(pos + 2);
            }
            _ => return None,
        }
    }
}

/// Whether an answered address may be allowed: never loopback, link-local (cloud
/// metadata lives there), multicast, broadcast, unspecified, or banger's own guest pool
/// (`pool` is `(network, prefix_len)`), so an upstream answer (DNS rebinding) cannot open
/// the host's own services or other guests.
pub fn learnable(ip: Ipv4Addr, pool: (Ipv4Addr, u8)) -> bool {
    let (network, prefix_len) = pool;
    let mask = if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix_len.min(32)))
    };
    let in_pool = u32::from(ip) & mask == u32::from(network) & mask;
    !(ip.is_loopback()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || in_pool)
}

/// Whether the query's type is one whose answer we forward as is (everything but AAAA
/// for allowed names; A and ANY also feed the allowed set).
pub fn feeds_addresses(qtype: u16) -> bool {
    matches!(qtype, TYPE_A | TYPE_ANY)
}

#[cfg(test)]
mod tests;
