//! The one alphabet for names that come from outside: connector names, plugin names
//! and plugin versions are checked here before they reach a path, a log line, a
//! consumer group or a query. A refusal names the first character that is wrong.

/// The longest connector or plugin name: names become file names, consumer groups and
/// URL path segments, and Kafka's own limit on such names is 249.
pub const MAX_NAME_LENGTH: usize = 249;

/// The longest plugin version.
pub const MAX_VERSION_LENGTH: usize = 64;

/// Checks a connector or plugin name: letters, digits, `.`, `_` and `-`, starting with
/// a letter, digit or `_` (so `.`, `..` and `-` cannot be names), at most
/// [`MAX_NAME_LENGTH`] characters. The message says which character is wrong.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty: use letters, digits, `.`, `_` or `-`".to_owned());
    }
    if name.len() > MAX_NAME_LENGTH {
        return Err(format!("is {} bytes long; at most {MAX_NAME_LENGTH} are allowed", name.len()));
    }
    if let Some((position, character)) = name.chars().enumerate().find(|(_, c)| !(c.is_ascii_alphanumeric() || "._-".contains(*c))) {
        return Err(format!(
            "has {} at position {}: use only letters, digits, `.`, `_` or `-`",
            describe_character(character),
            position + 1
        ));
    }
    if name.starts_with(['.', '-']) {
        return Err(format!("starts with `{}`: start it with a letter, a digit or `_`", &name[..1]));
    }
    Ok(())
}

/// Checks a plugin version: semantic versioning (`MAJOR.MINOR.PATCH`, optionally
/// `-prerelease` and `+build` of letters, digits, `-` and `.`), at most
/// [`MAX_VERSION_LENGTH`] characters.
pub fn check_version(version: &str) -> Result<(), String> {
    const SHAPE: &str = "a semantic version such as 1.2.3 or 1.2.3-rc.1";
    if version.is_empty() {
        return Err(format!("must not be empty: use {SHAPE}"));
    }
    if version.len() > MAX_VERSION_LENGTH {
        return Err(format!("is {} bytes long; at most {MAX_VERSION_LENGTH} are allowed", version.len()));
    }
    if let Some((position, character)) =
        version.chars().enumerate().find(|(_, c)| !(c.is_ascii_alphanumeric() || ".-+".contains(*c)))
    {
        return Err(format!("has {} at position {}: use {SHAPE}", describe_character(character), position + 1));
    }
    let (rest, build) = match version.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (version, None),
    };
    let (core, prerelease) = match rest.split_once('-') {
        Some((core, prerelease)) => (core, Some(prerelease)),
        None => (rest, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    let numeric = |part: &&str| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()) && (part.len() == 1 || !part.starts_with('0'));
    if numbers.len() != 3 || !numbers.iter().all(numeric) {
        return Err(format!("{version:?} is not {SHAPE}: it must start with three numbers without leading zeros"));
    }
    let identifiers = |part: &str| !part.is_empty() && part.split('.').all(|identifier| !identifier.is_empty() && !identifier.contains('+'));
    if prerelease.is_some_and(|part| !identifiers(part)) || build.is_some_and(|part| !identifiers(part)) {
        return Err(format!("{version:?} is not {SHAPE}: a pre-release or build part has an empty identifier"));
    }
    Ok(())
}

/// A character as a reader can see it in a message, control characters escaped.
fn describe_character(character: char) -> String {
    if character == ' ' {
        "a space".to_owned()
    } else if character.is_control() || character.is_whitespace() {
        format!("the character {}", character.escape_default())
    } else {
        format!("`{character}`")
    }
}

#[cfg(test)]
mod tests {
    use super::{check_name, check_version};

    #[test]
    fn names_keep_to_one_alphabet() {
        for good in ["flights-sim", "file-sink", "a", "_x", "v1.2_beta-3", "0"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        let refused = |name: &str| check_name(name).unwrap_err();
        assert!(refused("../../x").contains("`/` at position 3"), "{}", refused("../../x"));
        assert!(refused("a/../x").contains("`/` at position 2"), "{}", refused("a/../x"));
        assert!(refused("/etc/passwd").contains("`/` at position 1"));
        assert!(refused("line\nbreak").contains("the character \\n at position 5"), "{}", refused("line\nbreak"));
        assert!(refused("name@1.0.0").contains("`@` at position 5"));
        assert!(refused("").contains("must not be empty"));
        assert!(refused(".").contains("starts with `.`"));
        assert!(refused("..").contains("starts with `.`"));
        assert!(refused("-").contains("starts with `-`"));
        assert!(refused("é").contains("`é` at position 1"));
        assert!(refused("x y").contains("has a space at position 2"), "{}", refused("x y"));
        assert!(refused(&"x".repeat(250)).contains("at most 249"));
        assert_eq!(check_name(&"x".repeat(249)), Ok(()));
    }

    #[test]
    fn versions_are_semantic_versions() {
        for good in ["0.1.0", "1.0.0", "10.20.30", "1.2.3-rc.1", "1.2.3+build.5", "1.2.3-alpha-2+sha.0abc"] {
            assert_eq!(check_version(good), Ok(()), "{good}");
        }
        for bad in ["", "1", "1.2", "1.2.3.4", "01.2.3", "1.2.x", "../1.0.0", "1.0.0/..", "1.0.0\n", "1.2.3-", "1.2.3+", "1.2.3-a..b", "v1.2.3"] {
            assert!(check_version(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(check_version("1.0.0/x").unwrap_err().contains("`/` at position 6"));
    }
}
