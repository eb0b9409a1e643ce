//! A string that never shows itself: tokens and passwords.
//!
//! `Debug` and `Display` print `[redacted]`, so a secret that ends up in a
//! log line, an error or a `{:?}` of a config struct leaks nothing. Code that
//! must send it calls `Secret::expose`, which makes every use greppable.

use std::fmt;

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `url` with any userinfo (`user:password@`) replaced by `***@`, for
/// messages about a URL that may carry credentials. Works on text that is
/// not a valid URL too.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return match url.rfind('@') {
            Some(at) => format!("***{}", &url[at..]),
            None => url.to_string(),
        };
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..scheme_end], &rest[at..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_redacted_from_urls() {
        assert_eq!(
            redact_url("http://admin:pw@127.0.0.1:8086/x?y=1"),
            "http://***@127.0.0.1:8086/x?y=1"
        );
        assert_eq!(redact_url("https://u@h"), "https://***@h");
        assert_eq!(redact_url("http://a:b@c@h:1"), "http://***@h:1");
        assert_eq!(
            redact_url("http://h:1/p@x"),
            "http://h:1/p@x",
            "@ in the path"
        );
        assert_eq!(redact_url("admin:pw@host:bad"), "***@host:bad");
        assert_eq!(redact_url("http://127.0.0.1:8086"), "http://127.0.0.1:8086");
    }

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2-token");
        assert_eq!(
            format!("{s:?} {s} {:?}", Some(&s)),
            "[redacted] [redacted] Some([redacted])"
        );
        assert_eq!(s.expose(), "hunter2-token");
    }
}
