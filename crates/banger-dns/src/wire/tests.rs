//! Tables for [`super::answer`]: which query gets which rcode, flags, answer and OPT
//! record; and property tests that no input panics and every response is well-formed
//! (walked record by record by the strict decoder below; `tests/udp.rs` has dig as the
//! independent judge).

use super::*;
use proptest::prelude::*;

const WEB: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 5);

fn lookup(name: &str) -> Option<Ipv4Addr> {
    match name {
        "web" => Some(WEB),
        "db-1" => Some(Ipv4Addr::new(172, 30, 0, 6)),
        _ => None,
    }
}

/// A query in wire form: header with `flags`, one question for `name`, and an OPT record
/// of `edns_version` when given.
fn query(id: u16, flags: u16, name: &str, qtype: u16, qclass: u16, edns: Option<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0]);
    out.extend_from_slice(&u16::from(edns.is_some()).to_be_bytes());
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&qclass.to_be_bytes());
    if let Some(version) = edns {
        // Root owner, OPT, payload 4096, ext-rcode 0, version, DO set, no options.
        out.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, version, 0x80, 0, 0, 0]);
    }
    out
}

fn a_query(name: &str) -> Vec<u8> {
    query(0x1234, FLAG_RD, name, TYPE_A, CLASS_IN, None)
}

/// The fields of a response the tables check.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    id: u16,
    rcode: u16,
    aa: bool,
    rd: bool,
    opcode: u16,
    questions: u16,
    answer: Option<Ipv4Addr>,
    /// (version, extended rcode byte) of the OPT record.
    opt: Option<(u8, u8)>,
}

/// Reads a big-endian u16 at `at`.
fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

/// Skips a name at `at`: labels ending in the root, or a pointer back to the question.
fn skip_name(response: &[u8], mut at: usize) -> usize {
    loop {
        let len = response[at];
        if len == 0 {
            return at + 1;
        }
        if len & 0xC0 == 0xC0 {
            assert_eq!(
                be16(response, at),
                0xC000 | HEADER_LEN as u16,
                "pointer target"
            );
            return at + 2;
        }
        assert!(len <= 63, "label length {len}");
        at += 1 + usize::from(len);
    }
}

/// Decodes a response strictly: every section walked, nothing left over.
fn decode(response: &[u8]) -> Decoded {
    assert!(response.len() >= HEADER_LEN, "{response:02x?}");
    assert!(response.len() <= MAX_RESPONSE_LEN);
    let flags = be16(response, 2);
    assert_ne!(flags & FLAG_QR, 0, "QR must be set");
    assert_eq!(flags & 0x0080, 0, "RA must be clear: we are no resolver");
    assert_eq!(flags & 0x0200, 0, "TC must be clear");
    let questions = be16(response, 4);
    assert!(questions <= 1);
    assert_eq!(be16(response, 8), 0, "no authority records");
    let mut at = HEADER_LEN;
    if questions == 1 {
        at = skip_name(response, at) + 4;
    }
    let mut answer = None;
    for _ in 0..be16(response, 6) {
        assert!(answer.is_none(), "at most one answer");
        at = skip_name(response, at);
        assert_eq!(be16(response, at), TYPE_A);
        assert_eq!(be16(response, at + 2), CLASS_IN);
        let ttl = u32::from_be_bytes(response[at + 4..at + 8].try_into().unwrap());
        assert_eq!(ttl, TTL_SECS);
        assert_eq!(be16(response, at + 8), 4);
        let octets: [u8; 4] = response[at + 10..at + 14].try_into().unwrap();
        answer = Some(Ipv4Addr::from(octets));
        at += 14;
    }
    let mut opt = None;
    for _ in 0..be16(response, 10) {
        assert!(opt.is_none(), "at most one OPT");
        assert_eq!(response[at], 0, "OPT owner is the root");
        assert_eq!(be16(response, at + 1), TYPE_OPT);
        assert_eq!(be16(response, at + 3), EDNS_UDP_PAYLOAD);
        opt = Some((response[at + 6], response[at + 5]));
        assert_eq!(be16(response, at + 9), 0, "no options");
        at += 11;
    }
    assert_eq!(at, response.len(), "trailing bytes in {response:02x?}");
    Decoded {
        id: be16(response, 0),
        rcode: flags & 0xF,
        aa: flags & FLAG_AA != 0,
        rd: flags & FLAG_RD != 0,
        opcode: (flags & OPCODE_MASK) >> 11,
        questions,
        answer,
        opt,
    }
}

fn expect(rcode: Rcode, aa: bool, answer: Option<Ipv4Addr>) -> Decoded {
    Decoded {
        id: 0x1234,
        rcode: rcode as u16 & 0xF,
        aa,
        rd: true,
        opcode: 0,
        questions: 1,
        answer,
        opt: None,
    }
}

#[test]
fn answers_by_name_and_type() {
    let db = Ipv4Addr::new(172, 30, 0, 6);
    let cases: &[(&str, u16, u16, Decoded)] = &[
        (
            "web.vm",
            TYPE_A,
            CLASS_IN,
            expect(Rcode::NoError, true, Some(WEB)),
        ),
        (
            "db-1.vm.",
            TYPE_A,
            CLASS_IN,
            expect(Rcode::NoError, true, Some(db)),
        ),
        (
            "WEB.VM",
            TYPE_A,
            CLASS_IN,
            expect(Rcode::NoError, true, Some(WEB)),
        ),
        (
            "wEb.Vm",
            TYPE_ANY,
            CLASS_IN,
            expect(Rcode::NoError, true, Some(WEB)),
        ),
        // AAAA, MX, TXT for an existing name: NODATA.
        ("web.vm", 28, CLASS_IN, expect(Rcode::NoError, true, None)),
        ("web.vm", 15, CLASS_IN, expect(Rcode::NoError, true, None)),
        ("web.vm", 16, CLASS_IN, expect(Rcode::NoError, true, None)),
        // The zone apex exists, with no records.
        ("vm", TYPE_A, CLASS_IN, expect(Rcode::NoError, true, None)),
        (
            "nope.vm",
            TYPE_A,
            CLASS_IN,
            expect(Rcode::NxDomain, true, None),
        ),
        ("nope.vm", 28, CLASS_IN, expect(Rcode::NxDomain, true, None)),
        (
            "www.web.vm",
            TYPE_A,
            CLASS_IN,
            expect(Rcode::NxDomain, true, None),
        ),
        (
            "a.b.c.vm",
            TYPE_A,
            CLASS_IN,
            expect(Rcode::NxDomain, true, None),
        ),
        (
            "example.com",
            TYPE_A,
            CLASS_IN,
            expect(Rcode::Refused, false, None),
        ),
        (
            "web.vm.com",
            TYPE_A,
            CLASS_IN,
            expect(Rcode::Refused, false, None),
        ),
        ("vmx", TYPE_A, CLASS_IN, expect(Rcode::Refused, false, None)),
        ("", TYPE_A, CLASS_IN, expect(Rcode::Refused, false, None)),
        // CHAOS class (version.bind and friends) and zone transfers.
        ("web.vm", TYPE_A, 3, expect(Rcode::Refused, false, None)),
        (
            "vm",
            TYPE_AXFR,
            CLASS_IN,
            expect(Rcode::Refused, false, None),
        ),
        (
            "vm",
            TYPE_IXFR,
            CLASS_IN,
            expect(Rcode::Refused, false, None),
        ),
    ];
    for (name, qtype, qclass, expected) in cases {
        let packet = query(0x1234, FLAG_RD, name, *qtype, *qclass, None);
        let response = answer(&packet, &lookup).expect("a response");
        assert_eq!(
            &decode(&response),
            expected,
            "{name} type {qtype} class {qclass}"
        );
    }
}

#[test]
fn question_is_echoed_byte_for_byte() {
    // Resolvers that randomise case (0x20 encoding) compare the echoed name exactly.
    let packet = a_query("WeB.vM");
    let response = answer(&packet, &lookup).unwrap();
    assert_eq!(&response[HEADER_LEN..packet.len()], &packet[HEADER_LEN..]);
    assert_eq!(decode(&response).answer, Some(WEB));
}

#[test]
fn rd_is_echoed_and_id_kept() {
    let packet = query(0xBEEF, 0, "web.vm", TYPE_A, CLASS_IN, None);
    let decoded = decode(&answer(&packet, &lookup).unwrap());
    assert_eq!(decoded.id, 0xBEEF);
    assert!(!decoded.rd);
}

#[test]
fn lookup_sees_the_lowercase_vm_name_only() {
    let seen = std::cell::RefCell::new(Vec::new());
    let recording = |name: &str| {
        seen.borrow_mut().push(name.to_string());
        None
    };
    for name in [
        "Web.vm",
        "DB-1.VM",
        "x.y.vm",
        "vm",
        "example.com",
        "a\u{7f}b.vm",
    ] {
        answer(&a_query(name), &recording).unwrap();
    }
    // Binary labels, dotted labels and non-ASCII bytes never reach the lookup.
    let mut dotted = query(1, 0, "web.vm", TYPE_A, CLASS_IN, None);
    dotted[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&[3, b'w', b'.', b'b']);
    answer(&dotted, &recording).unwrap();
    assert_eq!(*seen.borrow(), ["web", "db-1"]);
}

#[test]
fn edns_is_answered_with_edns() {
    /// (EDNS version sent, rcode, A record, (OPT version, extended rcode) received)
    type Case = (Option<u8>, u16, Option<Ipv4Addr>, Option<(u8, u8)>);
    let cases: &[Case] = &[
        (None, Rcode::NoError as u16, Some(WEB), None),
        (Some(0), Rcode::NoError as u16, Some(WEB), Some((0, 0))),
        // Unknown EDNS version: BADVERS (16 = extended rcode 1, header rcode 0).
        (Some(1), 0, None, Some((0, 1))),
    ];
    for (edns, rcode, answer_address, opt) in cases {
        let packet = query(7, 0, "web.vm", TYPE_A, CLASS_IN, *edns);
        let decoded = decode(&answer(&packet, &lookup).unwrap());
        assert_eq!(decoded.rcode, *rcode, "{edns:?}");
        assert_eq!(decoded.answer, *answer_address, "{edns:?}");
        assert_eq!(decoded.opt, *opt, "{edns:?}");
    }
}

#[test]
fn dropped_packets() {
    let response = {
        let mut packet = a_query("web.vm");
        packet[2] |= 0x80;
        packet
    };
    let cases: &[(&str, &[u8])] = &[
        ("empty", &[]),
        ("an id only", &[0x12, 0x34]),
        (
            "a short header",
            &[0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0],
        ),
        ("a response", &response),
    ];
    for (what, packet) in cases {
        assert_eq!(answer(packet, &lookup), None, "{what}");
    }
}

/// A valid query with `edit` applied to its bytes.
fn edited(edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let mut packet = a_query("web.vm");
    edit(&mut packet);
    packet
}

#[test]
fn header_only_errors() {
    let cases: &[(&str, Vec<u8>, Rcode, u16)] = &[
        (
            "no question",
            edited(|p| p.truncate(HEADER_LEN)),
            Rcode::FormErr,
            0,
        ),
        ("qdcount 0", edited(|p| p[5] = 0), Rcode::FormErr, 0),
        ("qdcount 2", edited(|p| p[5] = 2), Rcode::FormErr, 0),
        (
            "name cut short",
            edited(|p| p.truncate(16)),
            Rcode::FormErr,
            0,
        ),
        (
            "no qtype/qclass",
            edited(|p| p.truncate(20)),
            Rcode::FormErr,
            0,
        ),
        (
            "half a qclass",
            edited(|p| p.truncate(23)),
            Rcode::FormErr,
            0,
        ),
        ("label too long", edited(|p| p[12] = 64), Rcode::FormErr, 0),
        (
            "compression pointer",
            edited(|p| p[12] = 0xC0),
            Rcode::FormErr,
            0,
        ),
        (
            "extended label",
            edited(|p| p[12] = 0x40),
            Rcode::FormErr,
            0,
        ),
        (
            "additional record missing",
            edited(|p| p[11] = 1),
            Rcode::FormErr,
            0,
        ),
        (
            "OPT record cut short",
            edited(|p| {
                p[11] = 1;
                p.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 4, 0, 1]);
            }),
            Rcode::FormErr,
            0,
        ),
        ("IQUERY", edited(|p| p[2] |= 1 << 3), Rcode::NotImp, 1),
        ("STATUS", edited(|p| p[2] |= 2 << 3), Rcode::NotImp, 2),
        ("UPDATE", edited(|p| p[2] |= 5 << 3), Rcode::NotImp, 5),
    ];
    for (what, packet, rcode, opcode) in cases {
        let response = answer(packet, &lookup).unwrap_or_else(|| panic!("{what}: no response"));
        assert_eq!(response.len(), HEADER_LEN, "{what}");
        let decoded = decode(&response);
        assert_eq!(decoded.id, 0x1234, "{what}");
        assert_eq!(decoded.rcode, *rcode as u16, "{what}");
        assert_eq!(decoded.opcode, *opcode, "{what}");
        assert_eq!(decoded.questions, 0, "{what}");
        assert!(!decoded.aa, "{what}");
    }
}

#[test]
fn longest_names() {
    let label = "a".repeat(63);
    // 3 * 64 + 3 ("vm") + 1 (root) = 196 wire bytes: fine, and NXDOMAIN.
    let long = format!("{label}.{label}.{label}.vm");
    let decoded = decode(&answer(&a_query(&long), &lookup).unwrap());
    assert_eq!(decoded.rcode, Rcode::NxDomain as u16);
    // 255 wire bytes is the limit; 256 is FORMERR.
    let at_limit = format!("{label}.{label}.{label}.{}.vm", "b".repeat(58));
    let decoded = decode(&answer(&a_query(&at_limit), &lookup).unwrap());
    assert_eq!(decoded.rcode, Rcode::NxDomain as u16);
    let over = format!("{label}.{label}.{label}.{}.vm", "b".repeat(59));
    let decoded = decode(&answer(&a_query(&over), &lookup).unwrap());
    assert_eq!(decoded.rcode, Rcode::FormErr as u16);
}

#[test]
fn trailing_bytes_are_ignored() {
    let packet = edited(|p| p.extend_from_slice(b"junk"));
    let decoded = decode(&answer(&packet, &lookup).unwrap());
    assert_eq!(decoded.answer, Some(WEB));
}

#[test]
fn answer_into_reuses_the_buffer() {
    let mut out = Vec::with_capacity(MAX_RESPONSE_LEN);
    let capacity = out.capacity();
    assert!(answer_into(&a_query("web.vm"), &lookup, &mut out));
    let first = out.clone();
    assert!(!answer_into(&[1, 2, 3], &lookup, &mut out));
    assert!(out.is_empty(), "a dropped packet leaves nothing to send");
    assert!(answer_into(&a_query("web.vm"), &lookup, &mut out));
    assert_eq!(out, first);
    assert_eq!(out.capacity(), capacity);
}

/// A valid header (not a response, one question) in front of arbitrary bytes, so the
/// property tests get past the first checks most of the time.
fn header_then(rest: Vec<u8>, flags: u16, counts: [u16; 3]) -> Vec<u8> {
    let mut packet = vec![0xAB, 0xCD];
    packet.extend_from_slice(&(flags & !FLAG_QR).to_be_bytes());
    packet.extend_from_slice(&1u16.to_be_bytes());
    for count in counts {
        packet.extend_from_slice(&count.to_be_bytes());
    }
    packet.extend_from_slice(&rest);
    packet
}

/// What every response must satisfy, whatever the query was.
fn check_response(query: &[u8], response: &[u8]) {
    assert!(response.len() >= HEADER_LEN);
    assert!(response.len() <= MAX_RESPONSE_LEN);
    assert_eq!(response[..2], query[..2], "id echoed");
    decode(response);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Some(response) = answer(&bytes, &lookup) {
            check_response(&bytes, &response);
        }
    }

    #[test]
    fn random_questions_never_panic(
        rest in proptest::collection::vec(any::<u8>(), 0..300),
        flags in any::<u16>(),
        counts in any::<[u16; 3]>(),
    ) {
        let packet = header_then(rest, flags, counts);
        let response = answer(&packet, &lookup).expect("queries are always answered");
        check_response(&packet, &response);
    }

    #[test]
    fn label_soup_never_panics(
        labels in proptest::collection::vec(
            (0u8..=70, proptest::collection::vec(any::<u8>(), 0..70)), 0..8),
        tail in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
        // Length bytes that may or may not match the label, to hit every bound.
        let mut rest = Vec::new();
        for (len, bytes) in labels {
            rest.push(len);
            rest.extend_from_slice(&bytes);
        }
        rest.extend_from_slice(&tail);
        let packet = header_then(rest, 0, [0, 0, 0]);
        let response = answer(&packet, &lookup).expect("queries are always answered");
        check_response(&packet, &response);
    }

    #[test]
    fn any_case_of_a_known_name_answers(mask in any::<u8>(), id in any::<u16>()) {
        let name: String = "web.vm"
            .chars()
            .enumerate()
            .map(|(i, c)| if mask & (1 << i) != 0 { c.to_ascii_uppercase() } else { c })
            .collect();
        let packet = query(id, 0, &name, TYPE_A, CLASS_IN, None);
        let response = answer(&packet, &lookup).unwrap();
        let decoded = decode(&response);
        prop_assert_eq!(decoded.id, id);
        prop_assert_eq!(decoded.answer, Some(WEB));
    }
}
