//! The guest path a workspace lands in: absolute, already normalised (no `.`, `..`,
//! empty or trailing components), not `/` itself, and plain enough to pass to the
//! guest's `mount` and `tar` as one argument (no control characters).

use crate::error::WorkspaceError;

/// Checks `path` and returns it unchanged.
pub fn validate_guest_path(path: &str) -> Result<String, WorkspaceError> {
    let bad = || WorkspaceError::BadGuestPath(path.to_string());
    let rest = path.strip_prefix('/').ok_or_else(bad)?;
    if rest.is_empty() || path.len() > 1024 || path.chars().any(char::is_control) {
        return Err(bad());
    }
    for component in rest.split('/') {
        if component.is_empty() || component == "." || component == ".." {
            return Err(bad());
        }
    }
    Ok(path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_normalised_paths_pass() {
        for ok in ["/root/repo", "/work", "/home/me/my repo"] {
            assert_eq!(validate_guest_path(ok).unwrap(), ok);
        }
    }

    #[test]
    fn relative_root_dotted_and_odd_paths_are_refused() {
        for bad in [
            "",
            "/",
            "repo",
            "./repo",
            "/root/../etc",
            "/root/./x",
            "/a//b",
            "/a/",
            "/a\nb",
        ] {
            assert!(validate_guest_path(bad).is_err(), "{bad:?}");
        }
    }
}
