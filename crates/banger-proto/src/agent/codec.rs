//! codec: turning frames into newline-terminated JSON and back, with the frame size limit
//! enforced on both paths. Reading lines off a byte stream is `lines`' job.

use serde::{Deserialize, Serialize};

use super::MAX_FRAME_BYTES;
use super::frames::{Reply, Request, RequestId};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    /// `id` is the frame's id when the line was JSON with a readable `id` (for example an
    /// op this side does not know), so the sender can still be answered.
    #[error("malformed frame")]
    Malformed {
        id: Option<RequestId>,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode frame")]
    Encode(#[source] serde_json::Error),
}

/// Encodes a request or reply as one line, newline included.
pub fn encode_frame<T: Serialize>(frame: &T) -> Result<Vec<u8>, FrameError> {
    let mut line = serde_json::to_vec(frame).map_err(FrameError::Encode)?;
    if line.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            size: line.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    line.push(b'\n');
    Ok(line)
}

/// Decodes one request line (without its newline).
pub fn decode_request(line: &[u8]) -> Result<Request, FrameError> {
    decode(line)
}

/// Decodes one reply line (without its newline).
pub fn decode_reply(line: &[u8]) -> Result<Reply, FrameError> {
    decode(line)
}

fn decode<'de, T: Deserialize<'de>>(line: &'de [u8]) -> Result<T, FrameError> {
    if line.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            size: line.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    serde_json::from_slice(line).map_err(|source| FrameError::Malformed {
        id: salvage_id(line),
        source,
    })
}

/// The `id` of a line that is JSON but not a frame this side understands.
fn salvage_id(line: &[u8]) -> Option<RequestId> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: RequestId,
    }
    serde_json::from_slice::<IdOnly>(line)
        .ok()
        .map(|frame| frame.id)
        .filter(|id| *id != RequestId::UNSOLICITED)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::agent::{
        ExecRequest, Hello, ListeningPort, ReplyBody, RequestOp, Signal, Stream, Transport,
    };

    fn request(id: u64, op: RequestOp) -> Request {
        Request {
            id: RequestId(id),
            op,
        }
    }

    fn reply(id: u64, body: ReplyBody) -> Reply {
        Reply {
            id: RequestId(id),
            body,
        }
    }

    /// Each request, its exact wire form, and that the wire form decodes back to it.
    #[test]
    fn requests_round_trip_through_their_documented_wire_form() {
        let table: Vec<(Request, &str)> = vec![
            (
                request(1, RequestOp::Hello { protocol: 1 }),
                r#"{"id":1,"op":"hello","protocol":1}"#,
            ),
            (
                request(
                    2,
                    RequestOp::Exec(ExecRequest {
                        argv: vec!["sh".into(), "-c".into(), "echo \"$X\"\n".into()],
                        env: BTreeMap::from([("X".into(), "1".into())]),
                        cwd: Some("/tmp".into()),
                        stdin: true,
                        ..Default::default()
                    }),
                ),
                r#"{"id":2,"op":"exec","argv":["sh","-c","echo \"$X\"\n"],"env":{"X":"1"},"cwd":"/tmp","stdin":true}"#,
            ),
            (
                request(
                    3,
                    RequestOp::Stdin {
                        target: RequestId(2),
                        data: b"\x00\xffhi".to_vec(),
                    },
                ),
                r#"{"id":3,"op":"stdin","target":2,"data":"AP9oaQ=="}"#,
            ),
            (
                request(
                    4,
                    RequestOp::StdinEof {
                        target: RequestId(2),
                    },
                ),
                r#"{"id":4,"op":"stdin_eof","target":2}"#,
            ),
            (
                request(
                    5,
                    RequestOp::Signal {
                        target: RequestId(2),
                        signal: Signal::Term,
                    },
                ),
                r#"{"id":5,"op":"signal","target":2,"signal":"SIGTERM"}"#,
            ),
            (request(6, RequestOp::Ports), r#"{"id":6,"op":"ports"}"#),
            (
                request(
                    7,
                    RequestOp::WriteFile {
                        path: "/etc/x".into(),
                        mode: 0o600,
                        data: b"k=v\n".to_vec(),
                    },
                ),
                r#"{"id":7,"op":"write_file","path":"/etc/x","mode":384,"data":"az12Cg=="}"#,
            ),
            (
                request(
                    8,
                    RequestOp::ReadFile {
                        path: "/etc/x".into(),
                    },
                ),
                r#"{"id":8,"op":"read_file","path":"/etc/x"}"#,
            ),
            (
                request(
                    9,
                    RequestOp::ReceiveTar {
                        dir: "/root".into(),
                        rename: Some("repo".into()),
                        create: true,
                    },
                ),
                r#"{"id":9,"op":"receive_tar","dir":"/root","rename":"repo","create":true}"#,
            ),
            (
                request(
                    10,
                    RequestOp::ReceiveTar {
                        dir: "/tmp".into(),
                        rename: None,
                        create: false,
                    },
                ),
                r#"{"id":10,"op":"receive_tar","dir":"/tmp"}"#,
            ),
            (
                request(
                    11,
                    RequestOp::SendTar {
                        path: "/etc".into(),
                        contents: false,
                    },
                ),
                r#"{"id":11,"op":"send_tar","path":"/etc"}"#,
            ),
            (
                request(12, RequestOp::Stat { path: "/x".into() }),
                r#"{"id":12,"op":"stat","path":"/x"}"#,
            ),
        ];
        for (frame, wire) in table {
            let encoded = encode_frame(&frame).unwrap();
            assert_eq!(encoded.last(), Some(&b'\n'));
            assert_eq!(
                std::str::from_utf8(&encoded[..encoded.len() - 1]).unwrap(),
                wire
            );
            assert_eq!(decode_request(wire.as_bytes()).unwrap(), frame);
        }
    }

    #[test]
    fn replies_round_trip_through_their_documented_wire_form() {
        let table: Vec<(Reply, &str)> = vec![
            (
                reply(
                    1,
                    ReplyBody::HelloOk(Hello {
                        boot_id: "b".into(),
                        hostname: "h".into(),
                        agent_version: "0.1.0".into(),
                        protocol: 1,
                        uptime_ms: 1500,
                        features: Vec::new(),
                    }),
                ),
                r#"{"id":1,"op":"hello_ok","boot_id":"b","hostname":"h","agent_version":"0.1.0","protocol":1,"uptime_ms":1500}"#,
            ),
            (
                reply(
                    2,
                    ReplyBody::Output {
                        stream: Stream::Stderr,
                        data: b"err\n".to_vec(),
                    },
                ),
                r#"{"id":2,"op":"output","stream":"stderr","data":"ZXJyCg=="}"#,
            ),
            (
                reply(2, ReplyBody::StdinAck { bytes: 65536 }),
                r#"{"id":2,"op":"stdin_ack","bytes":65536}"#,
            ),
            (
                reply(2, ReplyBody::Exit { code: 143 }),
                r#"{"id":2,"op":"exit","code":143}"#,
            ),
            (
                reply(
                    6,
                    ReplyBody::PortsOk {
                        ports: vec![
                            ListeningPort {
                                proto: Transport::Tcp,
                                bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
                                port: 22,
                                process: Some("sshd".into()),
                                pid: Some(77),
                            },
                            ListeningPort {
                                proto: Transport::Udp,
                                bind: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                                port: 53,
                                process: None,
                                pid: None,
                            },
                        ],
                    },
                ),
                r#"{"id":6,"op":"ports_ok","ports":[{"proto":"tcp","bind":"127.0.0.1","port":22,"process":"sshd","pid":77},{"proto":"udp","bind":"::","port":53}]}"#,
            ),
            (
                reply(7, ReplyBody::FileOk { data: None }),
                r#"{"id":7,"op":"file_ok"}"#,
            ),
            (
                reply(
                    8,
                    ReplyBody::FileOk {
                        data: Some(b"k=v\n".to_vec()),
                    },
                ),
                r#"{"id":8,"op":"file_ok","data":"az12Cg=="}"#,
            ),
            (
                reply(
                    9,
                    ReplyBody::TarOk {
                        entries: 3,
                        bytes: 10,
                    },
                ),
                r#"{"id":9,"op":"tar_ok","entries":3,"bytes":10}"#,
            ),
            (
                reply(
                    12,
                    ReplyBody::StatOk {
                        kind: Some(crate::agent::PathKind::Directory),
                    },
                ),
                r#"{"id":12,"op":"stat_ok","kind":"directory"}"#,
            ),
            (
                reply(12, ReplyBody::StatOk { kind: None }),
                r#"{"id":12,"op":"stat_ok"}"#,
            ),
            (
                reply(
                    0,
                    ReplyBody::Error {
                        message: "bad".into(),
                    },
                ),
                r#"{"id":0,"op":"error","message":"bad"}"#,
            ),
        ];
        for (frame, wire) in table {
            let encoded = encode_frame(&frame).unwrap();
            assert_eq!(
                std::str::from_utf8(&encoded[..encoded.len() - 1]).unwrap(),
                wire
            );
            assert_eq!(decode_reply(wire.as_bytes()).unwrap(), frame);
        }
    }

    /// Optional exec fields may be left out by older or simpler hosts.
    #[test]
    fn exec_defaults_missing_fields() {
        let frame = decode_request(br#"{"id":9,"op":"exec","argv":["true"]}"#).unwrap();
        assert_eq!(
            frame,
            request(
                9,
                RequestOp::Exec(ExecRequest {
                    argv: vec!["true".into()],
                    ..ExecRequest::default()
                })
            )
        );
    }

    /// Malformed lines, and whether the id survives for the error reply.
    #[test]
    fn malformed_lines_keep_a_readable_id() {
        let table: &[(&[u8], Option<u64>)] = &[
            (br#"{"id":4,"op":"reboot"}"#, Some(4)),
            (br#"{"id":5,"op":"exec"}"#, Some(5)),
            (br#"{"id":6,"op":"stdin","target":1,"data":"***"}"#, Some(6)),
            (br#"{"id":0,"op":"nope"}"#, None),
            (br#"{"op":"hello","protocol":1}"#, None),
            (br#"ad":"AAAA"}"#, None),
            (b"\xff\xfe", None),
            (b"", None),
        ];
        for (line, want) in table {
            match decode_request(line) {
                Err(FrameError::Malformed { id, .. }) => {
                    assert_eq!(id, want.map(RequestId), "{}", String::from_utf8_lossy(line))
                }
                other => panic!("{}: {other:?}", String::from_utf8_lossy(line)),
            }
        }
    }

    #[test]
    fn frame_size_is_enforced_when_encoding_and_decoding() {
        let fits = "a".repeat(MAX_FRAME_BYTES - 200);
        let too_big = "a".repeat(MAX_FRAME_BYTES);
        let message = |text: &str| {
            reply(
                1,
                ReplyBody::Error {
                    message: text.into(),
                },
            )
        };
        assert!(encode_frame(&message(&fits)).is_ok());
        assert!(matches!(
            encode_frame(&message(&too_big)),
            Err(FrameError::TooLarge {
                max: MAX_FRAME_BYTES,
                ..
            })
        ));
        let line = format!(r#"{{"id":1,"op":"error","message":"{too_big}"}}"#);
        assert!(matches!(
            decode_reply(line.as_bytes()),
            Err(FrameError::TooLarge { .. })
        ));
    }
}
