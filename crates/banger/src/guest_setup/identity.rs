//! The host user's git identity (`user.name`, `user.email`) as git resolves it, and the
//! guest command that writes it into root's git config.

use std::path::Path;

use crate::connect::Ctx;

/// `user.name` and `user.email`; either may be unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub name: Option<String>,
    pub email: Option<String>,
}

impl Identity {
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.email.is_none()
    }
}

/// Asks the host's git (`git config --get`) in `cwd` with the user's `HOME` (and
/// `XDG_CONFIG_HOME`), so global, system and, inside a repository, its own config count
/// as they do for the user's commits. No git, or nothing set, is an empty identity.
pub async fn host_identity(ctx: &Ctx, cwd: &Path) -> Identity {
    let get = |key: &'static str| async move {
        let mut cmd = banger_exec::Cmd::new("git")
            .args(["config", "--get", key])
            .cwd(cwd)
            .timeout(std::time::Duration::from_secs(10));
        for var in ["HOME", "XDG_CONFIG_HOME"] {
            if let Some(value) = ctx.env(var) {
                cmd = cmd.env(var, value);
            }
        }
        let out = banger_exec::run(&cmd).await.ok()?;
        let value = out.stdout_text().trim_end_matches('\n').to_string();
        // A value spanning lines cannot be one git config value; leave it out.
        (!value.is_empty() && !value.contains('\n')).then_some(value)
    };
    Identity {
        name: get("user.name").await,
        email: get("user.email").await,
    }
}

/// Where root's git config lives in the guest.
pub const GUEST_CONFIG: &str = "/root/.gitconfig";

/// The `[user]` block git reads, values quoted the way git reads them.
pub fn config_block(identity: &Identity) -> String {
    let quote = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
    let mut block = String::from("[user]\n");
    if let Some(name) = &identity.name {
        block.push_str(&format!("\tname = {}\n", quote(name)));
    }
    if let Some(email) = &identity.email {
        block.push_str(&format!("\temail = {}\n", quote(email)));
    }
    block
}

/// The guest argv that sets the identity in root's existing git config (a restart, or an
/// image's own): `git config --file` edits it in place, so nothing is duplicated. A VM
/// without one gets [`config_block`] as a new file instead, copied in without starting a
/// process in the guest (see `guest_setup::apply`): two `git` processes in a guest just
/// restored from a warm template cost over a second under TCG, and even one `sh` about
/// 0.27 s. Values travel as arguments, never through the shell's parser; with no git in
/// the guest the block is appended.
pub fn guest_argv(identity: &Identity) -> Vec<String> {
    const SCRIPT: &str = r#"set -e
if command -v git >/dev/null 2>&1; then
  if [ -n "$1" ]; then git config --file /root/.gitconfig user.name "$1"; fi
  if [ -n "$2" ]; then git config --file /root/.gitconfig user.email "$2"; fi
else
  printf '%s' "$3" >> /root/.gitconfig
fi"#;
    vec![
        "sh".into(),
        "-c".into(),
        SCRIPT.into(),
        "sh".into(),
        identity.name.clone().unwrap_or_default(),
        identity.email.clone().unwrap_or_default(),
        config_block(identity),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_block_quotes_like_git() {
        let argv = guest_argv(&Identity {
            name: Some("Ada \"the\" L\\".into()),
            email: None,
        });
        assert_eq!(argv[4], "Ada \"the\" L\\");
        assert_eq!(argv[5], "");
        assert_eq!(argv[6], "[user]\n\tname = \"Ada \\\"the\\\" L\\\\\"\n");
    }
}
