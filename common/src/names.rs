//! Rules for bucket names and object keys (DESIGN.md invariant 6: bad names get a clear
//! error and change nothing). Object keys are also file paths in the namespace.

/// Longest object key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest single path component of a key, in bytes (the POSIX NAME_MAX).
pub const MAX_COMPONENT_BYTES: usize = 255;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("bucket name {name:?} is invalid: use 3-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit")]
    BadBucket { name: String },
    #[error("object key is empty")]
    EmptyKey,
    #[error("object key is {len} bytes long; the limit is {MAX_KEY_BYTES}")]
    KeyTooLong { len: usize },
    #[error("object key contains a NUL byte")]
    KeyHasNul,
    #[error("object key {key:?} has an empty path component (leading, trailing or double '/')")]
    EmptyComponent { key: String },
    #[error("object key {key:?} has a '.' or '..' path component")]
    DotComponent { key: String },
    #[error("object key has a path component of {len} bytes; the limit is {MAX_COMPONENT_BYTES}")]
    ComponentTooLong { len: usize },
}

pub fn validate_bucket(name: &str) -> Result<(), NameError> {
    let bad = || NameError::BadBucket {
        name: name.chars().take(80).collect(),
    };
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if !(3..=63).contains(&name.len())
        || !name.chars().all(ok_char)
        || name.starts_with('-')
        || name.ends_with('-')
    {
        return Err(bad());
    }
    Ok(())
}

pub fn validate_key(key: &str) -> Result<(), NameError> {
    if key.is_empty() {
        return Err(NameError::EmptyKey);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(NameError::KeyTooLong { len: key.len() });
    }
    if key.contains('\0') {
        return Err(NameError::KeyHasNul);
    }
    for part in key.split('/') {
        if part.is_empty() {
            return Err(NameError::EmptyComponent { key: key.into() });
        }
        if part == "." || part == ".." {
            return Err(NameError::DotComponent { key: key.into() });
        }
        if part.len() > MAX_COMPONENT_BYTES {
            return Err(NameError::ComponentTooLong { len: part.len() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        validate_bucket("default").unwrap();
        validate_bucket("logs-2026").unwrap();
        validate_key("a").unwrap();
        validate_key("photos/2026/cat.jpg").unwrap();
        validate_key("weird name with spaces & ünïcode").unwrap();
    }

    #[test]
    fn rejects_bad_bucket_names() {
        for name in [
            "",
            "ab",
            "UPPER",
            "-lead",
            "trail-",
            "has.dot",
            "a/b",
            &"x".repeat(64),
        ] {
            assert!(validate_bucket(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn rejects_bad_keys() {
        assert_eq!(validate_key(""), Err(NameError::EmptyKey));
        assert!(matches!(
            validate_key(".."),
            Err(NameError::DotComponent { .. })
        ));
        assert!(matches!(
            validate_key("a/../b"),
            Err(NameError::DotComponent { .. })
        ));
        assert!(matches!(
            validate_key("a/./b"),
            Err(NameError::DotComponent { .. })
        ));
        assert_eq!(validate_key("a\0b"), Err(NameError::KeyHasNul));
        assert!(matches!(
            validate_key("/a"),
            Err(NameError::EmptyComponent { .. })
        ));
        assert!(matches!(
            validate_key("a//b"),
            Err(NameError::EmptyComponent { .. })
        ));
        assert!(matches!(
            validate_key("a/"),
            Err(NameError::EmptyComponent { .. })
        ));
        assert_eq!(
            validate_key(&"k".repeat(1025)),
            Err(NameError::KeyTooLong { len: 1025 })
        );
        assert!(matches!(
            validate_key(&"k".repeat(256)),
            Err(NameError::ComponentTooLong { len: 256 })
        ));
    }
}
