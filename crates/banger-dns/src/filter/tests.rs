//! Tables for the policy resolver's packet logic: which queries are forwarded, refused
//! or answered empty; which upstream replies are used and what addresses they yield;
//! and a property test that no reply input panics the reader.

use super::*;
use proptest::prelude::*;

fn query_bytes(id: u16, flags: u16, name: &str, qtype: u16, qclass: u16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&qclass.to_be_bytes());
    out
}

/// An upstream reply to `query` with the given answer records `(owner pointer or
/// label, type, ttl, rdata)`.
fn reply_bytes(query: &[u8], answers: &[(&[u8], u16, u32, &[u8])]) -> Vec<u8> {
    let mut out = query.to_vec();
    out[2] |= 0x80;
    out[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
    for (owner, rtype, ttl, data) in answers {
        out.extend_from_slice(owner);
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
    }
    out
}

const PTR: &[u8] = &[0xC0, 12];

#[test]
fn queries_are_read_or_rejected() {
    let q = read_query(&query_bytes(
        7,
        FLAG_RD,
        "WWW.Example.com",
        TYPE_A,
        CLASS_IN,
    ))
    .unwrap();
    assert_eq!(q.id, 7);
    assert_eq!(q.name, "www.example.com");
    assert_eq!(q.qtype, TYPE_A);

    let mut response = query_bytes(7, FLAG_RD, "a.io", TYPE_A, CLASS_IN);
    response[2] |= 0x80;
    let mut two = query_bytes(8, 0, "a.io", TYPE_A, CLASS_IN);
    two[5] = 2;
    let mut dotted = query_bytes(9, 0, "x", TYPE_A, CLASS_IN);
    // One label "a.io" (a dot inside a label) must not read as two labels.
    dotted.splice(12..14, [4u8, b'a', b'.', b'i', b'o']);
    let mut pointer = query_bytes(10, 0, "", TYPE_A, CLASS_IN);
    pointer.splice(12..13, [0xC0u8, 12]);
    let cases: Vec<(Vec<u8>, Unreadable)> = vec![
        (vec![0; 5], Unreadable::Drop),
        (response, Unreadable::Drop),
        (
            query_bytes(3, 0x2800, "a.io", TYPE_A, CLASS_IN),
            Unreadable::Reply {
                id: 3,
                flags: 0x2800,
                rcode: Rcode::NotImp,
            },
        ),
        (
            two,
            Unreadable::Reply {
                id: 8,
                flags: 0,
                rcode: Rcode::FormErr,
            },
        ),
        (
            dotted,
            Unreadable::Reply {
                id: 9,
                flags: 0,
                rcode: Rcode::FormErr,
            },
        ),
        (
            pointer,
            Unreadable::Reply {
                id: 10,
                flags: 0,
                rcode: Rcode::FormErr,
            },
        ),
    ];
    for (packet, expected) in cases {
        assert_eq!(read_query(&packet), Err(expected), "{packet:?}");
    }
}

#[test]
fn decisions_follow_the_policy() {
    let policy = NetPolicy::parse(&["allowed.test:80", "*.cdn.test"]).unwrap();
    let only80 = Ports::Only([80].into());
    let cases: &[(&str, u16, u16, Decision)] = &[
        ("allowed.test", TYPE_A, CLASS_IN, Decision::Forward(only80)),
        ("x.cdn.test", 16, CLASS_IN, Decision::Forward(Ports::Any)),
        ("allowed.test", TYPE_AAAA, CLASS_IN, Decision::NoRecords),
        ("denied.test", TYPE_A, CLASS_IN, Decision::Refuse),
        // A TXT tunnel to a denied domain goes nowhere.
        ("aGVsbG8.tunnel.evil.test", 16, CLASS_IN, Decision::Refuse),
        ("cdn.test", TYPE_A, CLASS_IN, Decision::Refuse),
        ("allowed.test", TYPE_A, 3, Decision::Refuse),
        ("", TYPE_A, CLASS_IN, Decision::Refuse),
    ];
    for (name, qtype, qclass, expected) in cases {
        let q = read_query(&query_bytes(1, FLAG_RD, name, *qtype, *qclass)).unwrap();
        assert_eq!(decide(&policy, &q), *expected, "{name} {qtype}");
    }
    let q = read_query(&query_bytes(1, FLAG_RD, "allowed.test", TYPE_A, CLASS_IN)).unwrap();
    assert_eq!(decide(&NetPolicy::deny_all(), &q), Decision::Refuse);
}

#[test]
fn replies_we_build_echo_id_question_and_rd() {
    let q = read_query(&query_bytes(0xBEEF, FLAG_RD, "a.io", TYPE_A, CLASS_IN)).unwrap();
    let out = reply_without_records(&q, Rcode::Refused);
    assert_eq!(&out[..2], &[0xBE, 0xEF]);
    let flags = u16::from_be_bytes([out[2], out[3]]);
    assert_eq!(flags & 0x000F, Rcode::Refused as u16);
    assert_ne!(flags & FLAG_QR, 0);
    assert_ne!(flags & FLAG_RD, 0);
    assert_eq!(&out[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&out[12..], &q.question[..]);
    let header = header_reply(5, 0, Rcode::FormErr);
    assert_eq!(header.len(), 12);
    assert_eq!(header[3] & 0x0F, Rcode::FormErr as u8);
}

#[test]
fn addresses_come_from_matching_replies_only() {
    let raw = query_bytes(42, FLAG_RD, "www.allowed.test", TYPE_A, CLASS_IN);
    let q = read_query(&raw).unwrap();
    let cname = [3u8, b'c', b'd', b'n', 0xC0, 12];
    let reply = reply_bytes(
        &raw,
        &[
            (PTR, 5, 300, &cname),
            (
                &[3, b'c', b'd', b'n', 0xC0, 16],
                TYPE_A,
                60,
                &[192, 0, 2, 10],
            ),
            (PTR, TYPE_A, 0x8000_0000, &[192, 0, 2, 11]),
            (PTR, TYPE_AAAA, 60, &[0; 16]),
        ],
    );
    assert_eq!(
        answer_addresses(&reply, &q).unwrap(),
        [
            Learned {
                ip: Ipv4Addr::new(192, 0, 2, 10),
                ttl: 60
            },
            Learned {
                ip: Ipv4Addr::new(192, 0, 2, 11),
                ttl: 0
            }
        ]
    );

    // Another id, another name, not a response: not used.
    let mut other_id = reply.clone();
    other_id[1] ^= 1;
    let other_name = reply_bytes(
        &query_bytes(42, FLAG_RD, "www.denied.test", TYPE_A, CLASS_IN),
        &[(PTR, TYPE_A, 60, &[192, 0, 2, 10])],
    );
    let mut not_response = reply.clone();
    not_response[2] &= 0x7F;
    for bad in [other_id, other_name, not_response] {
        assert_eq!(answer_addresses(&bad, &q), Err(BadAnswer::Mismatch));
    }
    // Cut short, or an A record of 3 bytes: malformed.
    let cut = &reply[..reply.len() - 3];
    assert_eq!(answer_addresses(cut, &q), Err(BadAnswer::Malformed));
    let short_a = reply_bytes(&raw, &[(PTR, TYPE_A, 60, &[1, 2, 3])]);
    assert_eq!(answer_addresses(&short_a, &q), Err(BadAnswer::Malformed));
    // The same name in other case is the same question.
    let upper = reply_bytes(
        &query_bytes(42, FLAG_RD, "WWW.allowed.TEST", TYPE_A, CLASS_IN),
        &[(PTR, TYPE_A, 60, &[192, 0, 2, 12])],
    );
    assert_eq!(answer_addresses(&upper, &q).unwrap().len(), 1);
}

#[test]
fn rebinding_targets_are_never_learned() {
    let pool = (Ipv4Addr::new(172, 30, 0, 0), 24);
    let cases = [
        ("192.0.2.1", true),
        ("10.1.2.3", true),
        ("172.31.0.2", true),
        ("127.0.0.1", false),
        ("169.254.169.254", false),
        ("224.0.0.1", false),
        ("255.255.255.255", false),
        ("0.0.0.0", false),
        ("172.30.0.1", false),
        ("172.30.0.7", false),
    ];
    for (ip, expected) in cases {
        assert_eq!(learnable(ip.parse().unwrap(), pool), expected, "{ip}");
    }
}

proptest! {
    #[test]
    fn no_reply_panics_the_reader(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let raw = query_bytes(1, FLAG_RD, "a.io", TYPE_A, CLASS_IN);
        let q = read_query(&raw).unwrap();
        let mut packet = raw.clone();
        packet[2] |= 0x80;
        packet.extend_from_slice(&bytes);
        let _ = answer_addresses(&packet, &q);
        let _ = answer_addresses(&bytes, &q);
        let _ = read_query(&bytes);
    }
}
