//! unusable: whether a netfilter tool's failure means its backend cannot work on this
//! host at all, so nothing of banger's can be in it. That is the case when the tool is
//! not installed, or when the kernel lacks the backend: iptables-nft on a kernel without
//! nf_tables ("Failed to initialize nft: Protocol not supported"), `nft` likewise, or
//! iptables-legacy without the table's module ("Table does not exist (do you need to
//! insmod?)"). Any other failure (no permission, a busy lock, a bad argument) is a real
//! one on a backend that works, and stays an error. Cleanup reports a backend found
//! unusable instead of either failing on it or passing over it in silence.

use crate::tool::ToolError;

/// Phrases of a netfilter tool's stderr that say the kernel cannot provide the backend.
/// `Protocol not supported` is `EPROTONOSUPPORT` from opening the netfilter netlink
/// socket; the `insmod` hints are iptables-legacy's for a missing table or `ip_tables`.
const KERNEL_LACKS_BACKEND: &[&str] = &[
    "Protocol not supported",
    "do you need to insmod?",
    "iptables who?",
];

/// Whether a netfilter tool that exited with `success == false` and printed `stderr`
/// failed because the kernel cannot provide its backend (see the module doc).
pub fn kernel_lacks_backend(success: bool, stderr: &str) -> bool {
    !success && KERNEL_LACKS_BACKEND.iter().any(|p| stderr.contains(p))
}

/// Why the backend of the tool that failed with `error` cannot be used here, or `None`
/// when the failure is a real one.
pub fn why_unusable(error: &ToolError) -> Option<String> {
    match error {
        ToolError::NotFound { program } => Some(format!("`{program}` is not installed")),
        ToolError::Failed { stderr, .. } if kernel_lacks_backend(false, stderr) => {
            Some(first_line(stderr).to_owned())
        }
        _ => None,
    }
}

fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(stderr: &str) -> ToolError {
        ToolError::Failed {
            command: "iptables -w -t nat -S POSTROUTING".into(),
            status: "exit status: 1".into(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn a_kernel_without_the_backend_is_unusable() {
        for stderr in [
            // iptables-nft on a kernel without nf_tables (the debian guest)
            "iptables v1.8.9 (nf_tables): Failed to initialize nft: Protocol not supported\n",
            // nft itself there
            "Error: cache initialization failed: Protocol not supported\n",
            // iptables-legacy without iptable_nat / ip_tables
            "iptables v1.8.9 (legacy): can't initialize iptables table `nat': Table does not \
             exist (do you need to insmod?)\nPerhaps iptables or your kernel needs to be upgraded.\n",
            "iptables v1.4.21: can't initialize iptables table `filter': iptables who? (do you \
             need to insmod?)\n",
        ] {
            assert!(kernel_lacks_backend(false, stderr), "{stderr}");
            let why = why_unusable(&failed(stderr)).expect(stderr);
            assert_eq!(why, stderr.lines().next().unwrap().trim());
        }
        assert_eq!(
            why_unusable(&ToolError::NotFound {
                program: "iptables"
            })
            .as_deref(),
            Some("`iptables` is not installed")
        );
    }

    #[test]
    fn real_failures_on_a_working_backend_are_not_unusable() {
        for stderr in [
            // no CAP_NET_ADMIN: the backend is there, the helper may not use it
            "iptables v1.8.9 (nf_tables): Failed to initialize nft: Operation not permitted\n",
            "iptables v1.8.9 (legacy): can't initialize iptables table `nat': Permission \
             denied (you must be root)\n",
            "Another app is currently holding the xtables lock. Perhaps you want to use the -w option?\n",
            "iptables: Bad rule (does a matching rule exist in that chain?).\n",
            "Error: Could not process rule: Operation not permitted\n",
            "",
        ] {
            assert!(!kernel_lacks_backend(false, stderr), "{stderr}");
            assert_eq!(why_unusable(&failed(stderr)), None, "{stderr}");
        }
        // a success is never a missing backend, whatever it printed
        assert!(!kernel_lacks_backend(
            true,
            "warning: Protocol not supported"
        ));
        let timed_out = ToolError::TimedOut {
            command: "iptables -w -t nat -S POSTROUTING".into(),
            timeout: std::time::Duration::from_secs(20),
        };
        assert_eq!(why_unusable(&timed_out), None);
    }
}
