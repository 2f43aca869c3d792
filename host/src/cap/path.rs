//! Anchor path syntax.
//!
//! A path is components separated by `/`. A leading `/` is allowed and
//! changes nothing: a path is always relative to the anchor it is walked
//! from, which reaches only its descendants. A component is 1 to
//! [`NAME_BYTES_MAX`] printable ASCII bytes other than `/` and `\`, and is
//! not `.` or `..` (there is no way up).

use ww_api::limits::{NAME_BYTES_MAX, PATH_BYTES_MAX};

/// Splits and validates `path`. The empty path and `/` name the anchor
/// itself (no components).
///
/// # Errors
///
/// A message naming the offending component and the rule it breaks.
pub fn parse(path: &str) -> Result<Vec<String>, String> {
    if path.len() > PATH_BYTES_MAX {
        return Err(format!(
            "path is {} bytes; the limit is {PATH_BYTES_MAX}",
            path.len()
        ));
    }
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    trimmed
        .split('/')
        .map(|component| validate_name(component).map(|()| component.to_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("invalid path {path:?}: {err}"))
}

/// Validates one path component.
///
/// # Errors
///
/// A message saying which rule the name breaks.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty component (two slashes in a row?)".to_owned());
    }
    if name.len() > NAME_BYTES_MAX {
        return Err(format!(
            "component of {} bytes; the limit is {NAME_BYTES_MAX}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!(
            "{name:?} is not allowed: an anchor reaches only its descendants"
        ));
    }
    if let Some(bad) = name.chars().find(|c| !c.is_ascii_graphic() || *c == '\\') {
        return Err(format!(
            "component {name:?} contains {bad:?}; use printable ASCII other than / and \\"
        ));
    }
    Ok(())
}

/// Joins components into an absolute path.
pub fn join(components: &[String]) -> String {
    format!("/{}", components.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_paths_split_into_components() {
        assert_eq!(parse("").unwrap(), Vec::<String>::new());
        assert_eq!(parse("/").unwrap(), Vec::<String>::new());
        assert_eq!(parse("a/b").unwrap(), vec!["a", "b"]);
        assert_eq!(parse("/a/b/").unwrap(), vec!["a", "b"]);
        assert_eq!(
            parse("/raft/v1.2_x-y:z").unwrap(),
            vec!["raft", "v1.2_x-y:z"]
        );
    }

    #[test]
    fn invalid_paths_say_why() {
        for (path, reason) in [
            ("a//b", "empty component"),
            ("../etc", "only its descendants"),
            ("a/./b", "only its descendants"),
            ("a b", "printable ASCII"),
            ("a\\b", "printable ASCII"),
            ("caf\u{e9}", "printable ASCII"),
        ] {
            let err = parse(path).unwrap_err();
            assert!(err.contains(reason), "{path:?}: {err}");
        }
        assert!(parse(&"x".repeat(256))
            .unwrap_err()
            .contains("limit is 255"));
        assert!(parse(&"a/".repeat(600))
            .unwrap_err()
            .contains("limit is 1024"));
    }
}
