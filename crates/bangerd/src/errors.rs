//! Turning the daemon's internal errors into the [`ApiError`]s that cross the socket. The
//! message carries the whole cause chain once, since the client cannot walk `source()`.

use banger_api::ApiError;

/// `error` and its sources joined with `: `.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their source's text in their own (`#[error(transparent)]`
        // wrappers); printing it twice helps nobody.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// An internal failure while serving a request, e.g. the database being unreadable.
pub fn internal(context: &str, error: &dyn std::error::Error) -> ApiError {
    ApiError::operation_failed(format!("{context}: {}", chain(error)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the database")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error(transparent)]
    struct Transparent(#[from] std::io::Error);

    #[test]
    fn chains_are_joined_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let cases: Vec<(Box<dyn std::error::Error>, &str)> = vec![
            (Box::new(io()), "denied"),
            (Box::new(Outer(io())), "cannot open the database: denied"),
            (Box::new(Transparent(io())), "denied"),
        ];
        for (error, expected) in cases {
            assert_eq!(chain(error.as_ref()), expected);
        }
    }
}
