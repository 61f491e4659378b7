//! `banger mcp --print-config`: the snippet that registers the server with a client.
//! Pure: the caller passes the absolute path of the `banger` binary and the extra args.

use serde_json::json;

/// Which client's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// Claude Code / Claude Desktop: `mcpServers` in JSON.
    Claude,
    /// Codex: `[mcp_servers.banger]` in `~/.codex/config.toml`.
    Codex,
    /// The common `mcpServers` JSON with a stdio transport.
    Generic,
}

impl ConfigFormat {
    pub fn parse(text: &str) -> Option<ConfigFormat> {
        match text {
            "claude" => Some(ConfigFormat::Claude),
            "codex" => Some(ConfigFormat::Codex),
            "generic" => Some(ConfigFormat::Generic),
            _ => None,
        }
    }
}

fn toml_string(text: &str) -> String {
    // A TOML basic string has the escapes of a JSON string.
    serde_json::to_string(text).unwrap_or_default()
}

/// The snippet, ending with a newline.
pub fn snippet(format: ConfigFormat, command: &str, args: &[String]) -> String {
    let mut argv = vec!["mcp".to_string()];
    argv.extend(args.iter().cloned());
    match format {
        ConfigFormat::Claude => {
            let value = json!({"mcpServers": {"banger": {"command": command, "args": argv}}});
            format!(
                "{}\n",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            )
        }
        ConfigFormat::Codex => {
            let args = argv
                .iter()
                .map(|a| toml_string(a))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "# ~/.codex/config.toml\n[mcp_servers.banger]\ncommand = {}\nargs = [{args}]\n",
                toml_string(command)
            )
        }
        ConfigFormat::Generic => {
            let value = json!({"mcpServers": {"banger": {
                "type": "stdio", "command": command, "args": argv}}});
            format!(
                "{}\n",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            )
        }
    }
}

/// A line for stderr beside the snippet: the command that registers it instead
/// (Claude Code's `claude mcp add`), so the snippet itself stays pure JSON or TOML.
pub fn note(format: ConfigFormat, command: &str, args: &[String]) -> Option<String> {
    if format != ConfigFormat::Claude {
        return None;
    }
    let shell_args = std::iter::once("mcp".to_string())
        .chain(args.iter().cloned())
        .map(|a| shell_quote(&a))
        .collect::<Vec<_>>()
        .join(" ");
    Some(format!(
        "for .mcp.json (project) or ~/.claude.json; or register it with: claude mcp add banger -- {} {shell_args}",
        shell_quote(command)
    ))
}

fn shell_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_name_the_binary_and_args() {
        let args = vec!["--profile".to_string(), "run".to_string()];
        let claude: serde_json::Value =
            serde_json::from_str(&snippet(ConfigFormat::Claude, "/usr/bin/banger", &args)).unwrap();
        assert_eq!(claude["mcpServers"]["banger"]["args"][0], "mcp");
        let note = note(ConfigFormat::Claude, "/usr/bin/banger", &args).unwrap();
        assert!(note.contains("claude mcp add banger -- /usr/bin/banger mcp --profile run"));
        let codex = snippet(ConfigFormat::Codex, "/opt/my dir/banger", &args);
        assert!(codex.contains("command = \"/opt/my dir/banger\""));
        assert!(codex.contains("args = [\"mcp\", \"--profile\", \"run\"]"));
        let generic: serde_json::Value =
            serde_json::from_str(&snippet(ConfigFormat::Generic, "banger", &[])).unwrap();
        assert_eq!(generic["mcpServers"]["banger"]["type"], "stdio");
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
