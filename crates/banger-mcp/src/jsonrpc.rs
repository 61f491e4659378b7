//! JSON-RPC 2.0 messages: parsing one line into a request, a notification, a response
//! (which a tool server ignores) or a protocol error to answer, and building answers.
//! Pure: no I/O.

use serde_json::{Value, json};

/// Standard JSON-RPC error codes.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
}

/// A request id: a string or an integer, echoed as given.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Id {
    Num(i64),
    Str(String),
}

impl Id {
    fn from_value(value: &Value) -> Option<Id> {
        match value {
            Value::String(s) => Some(Id::Str(s.clone())),
            Value::Number(n) => n.as_i64().map(Id::Num),
            _ => None,
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            Id::Num(n) => json!(n),
            Id::Str(s) => json!(s),
        }
    }
}

/// One parsed incoming line.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Request {
        id: Id,
        method: String,
        params: Value,
    },
    Notification {
        method: String,
        params: Value,
    },
    /// A response to a request of ours; this server sends none, so it is dropped.
    Response,
    /// Not a valid message: answer with this error (id `null` when unknown).
    Invalid {
        id: Option<Id>,
        code: i64,
        message: String,
    },
}

/// Parses one line. Batches (arrays) are not part of MCP's current revision and are
/// refused as invalid requests.
pub fn parse(line: &[u8]) -> Incoming {
    let value: Value = match serde_json::from_slice(line) {
        Ok(value) => value,
        Err(err) => {
            return Incoming::Invalid {
                id: None,
                code: code::PARSE_ERROR,
                message: format!("parse error: {err}"),
            };
        }
    };
    let Value::Object(map) = value else {
        return Incoming::Invalid {
            id: None,
            code: code::INVALID_REQUEST,
            message: "a message must be one JSON object (batches are not supported)".into(),
        };
    };
    let id_value = map.get("id");
    let id = id_value.and_then(Id::from_value);
    let invalid = |message: &str| Incoming::Invalid {
        id: id.clone(),
        code: code::INVALID_REQUEST,
        message: message.to_string(),
    };
    if map.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid("\"jsonrpc\" must be \"2.0\"");
    }
    if id_value.is_some_and(|v| !v.is_null()) && id.is_none() {
        return invalid("\"id\" must be a string or an integer");
    }
    let params = map.get("params").cloned().unwrap_or(Value::Null);
    if !matches!(params, Value::Null | Value::Object(_) | Value::Array(_)) {
        return invalid("\"params\" must be an object or an array");
    }
    match map.get("method") {
        Some(Value::String(method)) => match id {
            Some(id) => Incoming::Request {
                id,
                method: method.clone(),
                params,
            },
            None if id_value.is_some() => invalid("\"id\" must not be null"),
            None => Incoming::Notification {
                method: method.clone(),
                params,
            },
        },
        Some(_) => invalid("\"method\" must be a string"),
        None if map.contains_key("result") || map.contains_key("error") => Incoming::Response,
        None => invalid("a request needs a \"method\""),
    }
}

/// A successful answer.
pub fn result(id: &Id, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id.to_value(), "result": result})
}

/// An error answer; `id` is `None` when the request's id could not be read.
pub fn error(id: Option<&Id>, code: i64, message: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id.map(Id::to_value).unwrap_or(Value::Null),
        "error": {"code": code, "message": message},
    })
}

/// A notification from the server.
pub fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_notifications_and_responses() {
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            Incoming::Request {
                id: Id::Num(1),
                method: "ping".into(),
                params: Value::Null
            }
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":"a","method":"x","params":{"k":1}}"#),
            Incoming::Request {
                id: Id::Str("a".into()),
                method: "x".into(),
                params: json!({"k": 1})
            }
        );
        assert!(matches!(
            parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Incoming::Notification { .. }
        ));
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":3,"result":{}}"#),
            Incoming::Response
        );
    }

    #[test]
    fn malformed_messages_are_typed_errors() {
        let code_of = |line: &[u8]| match parse(line) {
            Incoming::Invalid { code, .. } => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code_of(b"{not json"), code::PARSE_ERROR);
        assert_eq!(code_of(b"[]"), code::INVALID_REQUEST);
        assert_eq!(
            code_of(br#"{"id":1,"method":"ping"}"#),
            code::INVALID_REQUEST
        );
        assert_eq!(
            code_of(br#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#),
            code::INVALID_REQUEST
        );
        assert_eq!(
            code_of(br#"{"jsonrpc":"2.0","id":1,"method":7}"#),
            code::INVALID_REQUEST
        );
        assert_eq!(
            code_of(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#),
            code::INVALID_REQUEST
        );
        assert_eq!(
            code_of(br#"{"jsonrpc":"2.0","id":null,"method":"x"}"#),
            code::INVALID_REQUEST
        );
        // The id is echoed when it could be read.
        assert!(matches!(
            parse(br#"{"jsonrpc":"1.0","id":9,"method":"x"}"#),
            Incoming::Invalid {
                id: Some(Id::Num(9)),
                ..
            }
        ));
    }
}
