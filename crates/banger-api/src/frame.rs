//! Frames on the wire: one JSON document per line, in either direction.

use serde::{Deserialize, Serialize};

use serde_json::Value;

use crate::error::{ApiError, ErrorCode};

/// The protocol version this build speaks. A request with another version is answered
/// with `bad_version`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest frame (one line, newline excluded) either side accepts. Larger frames are
/// answered with `bad_request` and discarded; the connection keeps serving.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// A request from the CLI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestFrame {
    /// Protocol version, [`PROTOCOL_VERSION`].
    pub v: u32,
    /// Client-chosen id echoed in every response frame.
    pub id: u64,
    /// Method name, e.g. `vm.create`.
    pub method: String,
    /// Method parameters; `null` and `{}` both mean "no parameters".
    #[serde(default)]
    pub params: serde_json::Value,
}

/// Bytes for the standard input of a request that is still running (`vm.exec`,
/// `vm.copy_in`), sent by the client after the request line and before its final frame.
/// The daemon tells the two kinds of line apart by the `input` key, which a request never
/// has. Input for a request that has already finished is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFrame {
    pub v: u32,
    /// The id of the running request the bytes are for.
    pub id: u64,
    #[serde(flatten)]
    pub input: Input,
}

/// What an [`InputFrame`] carries: a chunk, the end of the input, or (for a `vm.exec`
/// with `tty`) the terminal's new size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    Data {
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
    },
    Eof,
    Resize {
        rows: u16,
        cols: u16,
    },
}

/// The largest chunk of input one frame carries (base64 of it fits [`MAX_FRAME_BYTES`]).
pub const MAX_INPUT_CHUNK_BYTES: usize = 256 * 1024;

impl InputFrame {
    /// Whether `line` is an input frame rather than a request: it has an `input` key.
    /// Returns the frame when it parses.
    pub fn parse(line: &[u8]) -> Option<Result<InputFrame, serde_json::Error>> {
        // Cheap test first: requests are far more common than input.
        const KEY: &[u8] = b"\"input\"";
        if !line.windows(KEY.len()).any(|w| w == KEY) {
            return None;
        }
        let value: serde_json::Value = serde_json::from_slice(line).ok()?;
        value.get("input")?;
        Some(serde_json::from_value(value))
    }
}

/// A request line that could not be accepted: the id to answer with (0 when it could not
/// be read) and the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub id: u64,
    pub error: ApiError,
}

/// Decodes one request line. The version is checked before the rest of the frame so that
/// a client from a future protocol gets `bad_version` rather than a shape complaint.
pub fn parse_request(line: &[u8]) -> Result<RequestFrame, Rejected> {
    let value: Value = serde_json::from_slice(line).map_err(|e| Rejected {
        id: 0,
        error: ApiError::bad_request(format!("malformed JSON request: {e}")),
    })?;
    let id = value.get("id").and_then(Value::as_u64).unwrap_or(0);
    let reject = |error: ApiError| Rejected { id, error };
    match value.get("v").map(Value::as_u64) {
        Some(Some(v)) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(Some(v)) => {
            return Err(reject(
                ApiError::new(
                    ErrorCode::BadVersion,
                    format!(
                        "protocol version {v} is not supported; this daemon speaks version {PROTOCOL_VERSION}"
                    ),
                )
                .with_hint("the banger CLI and bangerd come from different builds; restart bangerd from the same installation as the CLI"),
            ));
        }
        Some(None) => {
            return Err(reject(ApiError::bad_request(
                "the protocol version `v` must be a non-negative integer",
            )));
        }
        None => {
            return Err(reject(ApiError::bad_request(
                "the request has no protocol version `v`",
            )));
        }
    }
    serde_json::from_value(value)
        .map_err(|e| reject(ApiError::bad_request(format!("invalid request frame: {e}"))))
}

/// One answer frame from the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseFrame {
    /// The id of the request this frame answers; 0 when the request could not be parsed
    /// far enough to know its id.
    pub id: u64,
    #[serde(flatten)]
    pub body: ResponseBody,
}

/// What a response frame carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseBody {
    /// An intermediate event; more frames follow.
    Event { event: Event },
    /// The final, successful answer.
    Result { value: serde_json::Value },
    /// The final, failed answer.
    Error { error: ApiError },
}

impl ResponseBody {
    /// True for the frame that ends a request.
    pub fn is_final(&self) -> bool {
        !matches!(self, ResponseBody::Event { .. })
    }
}

/// Where a long operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageState {
    Started,
    Done,
}

/// Which stream a chunk of output belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// Events streamed before the final frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A long operation has an id; the client may print it.
    OpStarted { op: String },
    /// A stage of a long operation started or finished.
    Stage {
        op: String,
        stage: String,
        state: StageState,
        /// Milliseconds since the operation started.
        elapsed_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// How far a running stage's transfer is (a download): bytes so far, and the total
    /// when known. Sent a few times a second at most.
    Bytes {
        op: String,
        stage: String,
        done: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<u64>,
        /// Milliseconds since the operation started.
        elapsed_ms: u64,
    },
    /// Bytes from a guest command or a log, base64 on the wire.
    Output {
        stream: OutputStream,
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
    },
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_frames_round_trip() {
        let frames = [
            ResponseFrame {
                id: 3,
                body: ResponseBody::Event {
                    event: Event::Output {
                        stream: OutputStream::Stdout,
                        data: b"hi\n".to_vec(),
                    },
                },
            },
            ResponseFrame {
                id: 3,
                body: ResponseBody::Result {
                    value: serde_json::json!({"ok": true}),
                },
            },
            ResponseFrame {
                id: 4,
                body: ResponseBody::Error {
                    error: ApiError::not_found("no VM named web").with_op("op-1"),
                },
            },
        ];
        for frame in frames {
            let line = serde_json::to_string(&frame).unwrap();
            assert!(!line.contains('\n'));
            let back: ResponseFrame = serde_json::from_str(&line).unwrap();
            assert_eq!(back, frame);
        }
    }

    #[test]
    fn input_frames_round_trip_and_are_told_from_requests() {
        let table = [
            (
                InputFrame {
                    v: 1,
                    id: 7,
                    input: Input::Data {
                        data: vec![0, 255, b'a'],
                    },
                },
                r#"{"v":1,"id":7,"input":"data","data":"AP9h"}"#,
            ),
            (
                InputFrame {
                    v: 1,
                    id: 7,
                    input: Input::Eof,
                },
                r#"{"v":1,"id":7,"input":"eof"}"#,
            ),
            (
                InputFrame {
                    v: 1,
                    id: 7,
                    input: Input::Resize {
                        rows: 40,
                        cols: 120,
                    },
                },
                r#"{"v":1,"id":7,"input":"resize","rows":40,"cols":120}"#,
            ),
        ];
        for (frame, wire) in table {
            assert_eq!(serde_json::to_string(&frame).unwrap(), wire);
            assert_eq!(InputFrame::parse(wire.as_bytes()).unwrap().unwrap(), frame);
        }
        // A request (even one whose parameters mention "input") is not input.
        let request = br#"{"v":1,"id":8,"method":"vm.exec","params":{"argv":["input"]}}"#;
        assert!(InputFrame::parse(request).is_none());
        assert!(
            InputFrame::parse(br#"{"v":1,"id":8,"input":"nope"}"#)
                .unwrap()
                .is_err()
        );
    }

    #[test]
    fn output_data_is_base64_on_the_wire() {
        let frame = ResponseFrame {
            id: 1,
            body: ResponseBody::Event {
                event: Event::Output {
                    stream: OutputStream::Stderr,
                    data: vec![0, 255],
                },
            },
        };
        let line = serde_json::to_string(&frame).unwrap();
        assert!(line.contains("\"data\":\"AP8=\""), "{line}");
    }
}
