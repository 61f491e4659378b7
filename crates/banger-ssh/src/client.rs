//! How the system `ssh` client is pointed at a VM, as pure functions: the argv for an
//! interactive session ([`ssh_args`]) and the `Host *.vm` block for the user's ssh config
//! ([`ssh_config_block`]). Both use banger's own key and known_hosts file with strict
//! host key checking: the host key was recorded at the guest's first boot, so there is
//! nothing to trust on first use.

use std::path::{Path, PathBuf};

use crate::paths::SshPaths;

/// The suffix under which VMs resolve (the DNS responder's zone).
const VM_DOMAIN: &str = ".vm";

/// Everything ssh needs to reach one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// The guest's address (IPv4 or IPv6, no brackets).
    pub address: String,
    pub user: String,
    pub identity_file: PathBuf,
    pub known_hosts_file: PathBuf,
    /// The name the host key is recorded under (`web.vm`), so the check does not depend
    /// on the address, which a re-created VM may not keep.
    pub host_alias: String,
}

impl SshTarget {
    /// The usual target: root on `address`, banger's key and known_hosts under
    /// `config_dir`, host key checked as `<vm_name>.vm`.
    pub fn for_vm(config_dir: &Path, vm_name: &str, address: &str) -> SshTarget {
        let paths = SshPaths::new(config_dir);
        SshTarget {
            address: address.to_string(),
            user: "root".to_string(),
            identity_file: paths.identity_file,
            known_hosts_file: paths.known_hosts_file,
            host_alias: vm_host_name(vm_name),
        }
    }
}

/// `web` -> `web.vm`.
pub fn vm_host_name(vm_name: &str) -> String {
    format!("{vm_name}{VM_DOMAIN}")
}

/// The known_hosts names a VM's host key is recorded under: its `.vm` name (what
/// `ssh web.vm` and [`ssh_args`]'s `HostKeyAlias` look up) and its address (for a plain
/// `ssh root@172.30.0.5`).
pub fn host_patterns(vm_name: &str, address: &str) -> Vec<String> {
    vec![vm_host_name(vm_name), address.to_string()]
}

/// The arguments (without the program name) for an interactive `ssh` to `target`. The
/// destination is the last element: a remote command goes after it, while more ssh
/// options must go before it (ssh stops reading options at the destination).
pub fn ssh_args(target: &SshTarget) -> Vec<String> {
    let option = |text: String| ["-o".to_string(), text];
    let mut args = vec!["-i".to_string(), target.identity_file.display().to_string()];
    args.extend(option("IdentitiesOnly=yes".into()));
    args.extend(option(format!(
        "UserKnownHostsFile={}",
        quote(&target.known_hosts_file.display().to_string())
    )));
    args.extend(option("StrictHostKeyChecking=yes".into()));
    args.extend(option(format!("HostKeyAlias={}", target.host_alias)));
    args.extend(option("LogLevel=ERROR".into()));
    args.push(format!("{}@{}", target.user, target.address));
    args
}

/// The `Host *.vm` block that makes plain `ssh <name>.vm` use banger's key and
/// known_hosts file. The CLI's `ssh-config` command writes it into the user's config.
/// `banger` is the CLI's own path: its hidden `ssh-proxy` command is the block's
/// `ProxyCommand`, which finds the VM through the daemon, so the block works whether or
/// not the host resolves `.vm` names. ssh still checks host keys under `<name>.vm`.
pub fn ssh_config_block(config_dir: &Path, banger: &Path) -> String {
    let paths = SshPaths::new(config_dir);
    format!(
        "Host *{VM_DOMAIN}\n    \
         User root\n    \
         IdentityFile {}\n    \
         UserKnownHostsFile {}\n    \
         StrictHostKeyChecking yes\n    \
         IdentitiesOnly yes\n    \
         ProxyCommand {} ssh-proxy %h %p\n",
        quote(&paths.identity_file.display().to_string()),
        quote(&paths.known_hosts_file.display().to_string()),
        proxy_program(&banger.display().to_string()),
    )
}

/// A program path for `ProxyCommand`, whose text goes to the user's shell as it is
/// (after ssh expands `%` tokens): shell-quoted when it has anything beyond plain path
/// characters, and with `%` doubled so ssh leaves it alone.
fn proxy_program(path: &str) -> String {
    let plain = !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+'));
    let quoted = if plain {
        path.to_string()
    } else {
        format!("'{}'", path.replace('\'', "'\\''"))
    };
    quoted.replace('%', "%%")
}

/// ssh splits option values (in `-o` and in config files) like a shell would: values
/// with spaces go in double quotes, with `"` and `\` escaped. `UserKnownHostsFile` takes
/// several files, so an unquoted space would silently make two.
pub fn quote(value: &str) -> String {
    if value.is_empty()
        || value.contains(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | '#'))
    {
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{escaped}\"")
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(config: &str, address: &str) -> SshTarget {
        SshTarget::for_vm(Path::new(config), "web", address)
    }

    #[test]
    fn ssh_args_table() {
        let cases: &[(SshTarget, &str)] = &[
            (
                target("/c", "172.30.0.5"),
                "-i /c/ssh/id_ed25519 -o IdentitiesOnly=yes \
                 -o UserKnownHostsFile=/c/ssh/known_hosts -o StrictHostKeyChecking=yes \
                 -o HostKeyAlias=web.vm -o LogLevel=ERROR root@172.30.0.5",
            ),
            (
                target("/c", "fd00::5"),
                "-i /c/ssh/id_ed25519 -o IdentitiesOnly=yes \
                 -o UserKnownHostsFile=/c/ssh/known_hosts -o StrictHostKeyChecking=yes \
                 -o HostKeyAlias=web.vm -o LogLevel=ERROR root@fd00::5",
            ),
            (
                SshTarget {
                    user: "dev".into(),
                    ..target("/c", "10.0.0.2")
                },
                "-i /c/ssh/id_ed25519 -o IdentitiesOnly=yes \
                 -o UserKnownHostsFile=/c/ssh/known_hosts -o StrictHostKeyChecking=yes \
                 -o HostKeyAlias=web.vm -o LogLevel=ERROR dev@10.0.0.2",
            ),
        ];
        for (target, expected) in cases {
            assert_eq!(ssh_args(target).join(" "), *expected);
        }
    }

    #[test]
    fn paths_with_spaces_stay_one_argument() {
        let args = ssh_args(&target("/home/a b/.config/banger", "172.30.0.5"));
        assert_eq!(args[1], "/home/a b/.config/banger/ssh/id_ed25519");
        assert_eq!(
            args[5],
            "UserKnownHostsFile=\"/home/a b/.config/banger/ssh/known_hosts\""
        );
    }

    #[test]
    fn quoting() {
        let cases = [
            ("/plain/path", "/plain/path"),
            ("/a b", "\"/a b\""),
            ("/a\"b", "\"/a\\\"b\""),
            ("/a\\b c", "\"/a\\\\b c\""),
            ("/a#b", "\"/a#b\""),
            ("", "\"\""),
        ];
        for (input, expected) in cases {
            assert_eq!(quote(input), expected, "{input}");
        }
    }

    #[test]
    fn config_block() {
        assert_eq!(
            ssh_config_block(
                Path::new("/home/u/.config/banger"),
                Path::new("/usr/local/bin/banger")
            ),
            "Host *.vm\n    User root\n    IdentityFile /home/u/.config/banger/ssh/id_ed25519\n    \
             UserKnownHostsFile /home/u/.config/banger/ssh/known_hosts\n    \
             StrictHostKeyChecking yes\n    IdentitiesOnly yes\n    \
             ProxyCommand /usr/local/bin/banger ssh-proxy %h %p\n"
        );
        let spaced = ssh_config_block(Path::new("/home/a b/banger"), Path::new("/a b/banger"));
        assert!(spaced.contains("IdentityFile \"/home/a b/banger/ssh/id_ed25519\"\n"));
        assert!(spaced.contains("ProxyCommand '/a b/banger' ssh-proxy %h %p\n"));
    }

    #[test]
    fn proxy_program_quoting() {
        let cases = [
            ("/usr/bin/banger", "/usr/bin/banger"),
            ("/opt/banger-1.0/bin/banger", "/opt/banger-1.0/bin/banger"),
            ("/a b/banger", "'/a b/banger'"),
            ("/it's/banger", "'/it'\\''s/banger'"),
            ("/100%/banger", "'/100%%/banger'"),
            ("/$HOME/banger", "'/$HOME/banger'"),
        ];
        for (input, expected) in cases {
            assert_eq!(proxy_program(input), expected, "{input}");
        }
    }

    #[test]
    fn names_for_a_vm() {
        assert_eq!(vm_host_name("web"), "web.vm");
        assert_eq!(host_patterns("web", "172.30.0.5"), ["web.vm", "172.30.0.5"]);
    }
}
