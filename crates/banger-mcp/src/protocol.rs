//! MCP's handshake and shapes: the protocol revisions this server speaks and how one is
//! chosen, the `initialize` answer, tool descriptions and tool results (text content
//! plus `structuredContent`, `isError` for tool errors). Pure.

use serde::Serialize;
use serde_json::{Value, json};

/// Revisions this server speaks, newest first. The newest is the current revision.
pub const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The revision to answer with: the client's when this server speaks it, else the
/// newest this server speaks (the client then decides whether to go on).
pub fn negotiate(requested: Option<&str>) -> &'static str {
    requested
        .and_then(|r| SUPPORTED_VERSIONS.iter().find(|v| **v == r).copied())
        .unwrap_or(SUPPORTED_VERSIONS[0])
}

/// Who the client says it is (`clientInfo`), for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub name: String,
    pub version: String,
    pub protocol_version: String,
}

/// Reads `initialize` params: the client's name and the negotiated revision.
pub fn read_initialize(params: &Value) -> ClientInfo {
    let info = params.get("clientInfo");
    let text = |key: &str| {
        info.and_then(|i| i.get(key))
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect::<String>()
    };
    let name = text("name");
    ClientInfo {
        name: if name.is_empty() {
            "unknown".into()
        } else {
            name
        },
        version: text("version"),
        protocol_version: negotiate(params.get("protocolVersion").and_then(Value::as_str))
            .to_string(),
    }
}

/// The `initialize` result.
pub fn initialize_result(
    protocol_version: &str,
    name: &str,
    version: &str,
    instructions: &str,
) -> Value {
    json!({
        "protocolVersion": protocol_version,
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": {"name": name, "version": version},
        "instructions": instructions,
    })
}

/// One tool as `tools/list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub input_schema: Value,
    pub output_schema: Value,
    pub annotations: Annotations,
}

/// Hints for the client (MCP tool annotations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Annotations {
    pub read_only_hint: bool,
    pub destructive_hint: bool,
    pub idempotent_hint: bool,
    pub open_world_hint: bool,
}

/// A finished tool call: structured on success, a message (and hint) on a tool error.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolResult {
    Ok(Value),
    Failed { error: String, hint: Option<String> },
}

impl ToolResult {
    pub fn failed(error: impl Into<String>, hint: Option<&str>) -> ToolResult {
        ToolResult::Failed {
            error: error.into(),
            hint: hint.map(str::to_string),
        }
    }

    /// The `tools/call` result: the JSON as text content (for clients without
    /// structured content) and as `structuredContent`; errors as `isError: true` with
    /// text only (an error does not match the tool's output schema).
    pub fn to_value(&self) -> Value {
        match self {
            ToolResult::Ok(value) => json!({
                "content": [{"type": "text", "text": value.to_string()}],
                "structuredContent": value,
                "isError": false,
            }),
            ToolResult::Failed { error, hint } => {
                let text = match hint {
                    Some(hint) => format!("error: {error}\nhint: {hint}"),
                    None => format!("error: {error}"),
                };
                json!({
                    "content": [{"type": "text", "text": text}],
                    "isError": true,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_echoes_a_known_revision_else_offers_the_newest() {
        assert_eq!(negotiate(Some("2025-06-18")), "2025-06-18");
        assert_eq!(negotiate(Some("2024-11-05")), "2024-11-05");
        assert_eq!(negotiate(Some("1999-01-01")), SUPPORTED_VERSIONS[0]);
        assert_eq!(negotiate(None), SUPPORTED_VERSIONS[0]);
    }

    #[test]
    fn client_name_is_read_and_cleaned() {
        let info = read_initialize(&json!({
            "protocolVersion": "2025-06-18",
            "clientInfo": {"name": "claude\ncode", "version": "1.0"}
        }));
        assert_eq!(info.name, "claudecode");
        assert_eq!(info.protocol_version, "2025-06-18");
        assert_eq!(read_initialize(&json!({})).name, "unknown");
    }

    #[test]
    fn tool_errors_carry_message_and_hint() {
        let value = ToolResult::failed("VM x not found", Some("`vm_list` shows VMs")).to_value();
        assert_eq!(value["isError"], true);
        assert_eq!(
            value["content"][0]["text"],
            "error: VM x not found\nhint: `vm_list` shows VMs"
        );
        assert!(value.get("structuredContent").is_none());
    }
}
