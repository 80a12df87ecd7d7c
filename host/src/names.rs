//! The one alphabet for names that come from outside: connector names, plugin names
//! and plugin versions are checked here before they reach a path, a log line, a
//! consumer group or a query. A refusal names the first character that is wrong.

/// The longest connector or plugin name: names become file names, consumer groups and
/// URL path segments, and Kafka's own limit on such names is 249.
pub const MAX_NAME_LENGTH: usize = 249;

/// [`check_name`]'s alphabet as a pattern, for the API's description.
pub const NAME_PATTERN: &str = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,248}$";

/// [`check_version`]'s shape as a pattern (its length is bounded apart).
pub const VERSION_PATTERN: &str =
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$";

/// [`check_logger`]'s alphabet as a pattern.
pub const LOGGER_PATTERN: &str = r"^[A-Za-z_][A-Za-z0-9_]{0,63}(::[A-Za-z_][A-Za-z0-9_]{0,63}){0,7}$";

/// Checks a logger name: `root`, or a target such as `wasm_connect::worker`: up to
/// eight `::`-separated parts of letters, digits and `_`, each not starting with a
/// digit and at most 64 characters.
pub fn check_logger(logger: &str) -> Result<(), String> {
    const SHAPE: &str = "use root or a target such as wasm_connect::worker";
    let parts: Vec<&str> = logger.split("::").collect();
    let part_ok = |part: &&str| {
        (1..=64).contains(&part.len())
            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !part.starts_with(|c: char| c.is_ascii_digit())
    };
    if parts.len() > 8 || !parts.iter().all(part_ok) {
        return Err(format!("{} is not a logger name: {SHAPE}", shown(logger)));
    }
    Ok(())
}

/// A name from outside as a message or a log line may show it: quoted, control
/// characters escaped, at most 64 characters.
pub fn shown(text: &str) -> String {
    let head: String = text.chars().take(64).collect();
    if head.len() < text.len() { format!("{head:?}...") } else { format!("{head:?}") }
}

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
    if let Some((position, character)) = version.chars().enumerate().find(|(_, c)| !(c.is_ascii_alphanumeric() || ".-+".contains(*c))) {
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
    let identifiers =
        |part: &str| !part.is_empty() && part.split('.').all(|identifier| !identifier.is_empty() && !identifier.contains('+'));
    if prerelease.is_some_and(|part| !identifiers(part)) || build.is_some_and(|part| !identifiers(part)) {
        return Err(format!("{version:?} is not {SHAPE}: a pre-release or build part has an empty identifier"));
    }
    Ok(())
}

/// Orders two versions by semantic-versioning precedence: the three numbers, then a
/// release above its pre-releases, pre-release identifiers numerically or by text;
/// build metadata does not count (ties are broken by the whole text, so the order is
/// total). Versions that are not semantic versions compare by text after those that are.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    /// Digit strings without leading zeros, compared as numbers of any size.
    fn numeric(a: &str, b: &str) -> Ordering {
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    }
    fn parts(version: &str) -> Option<([&str; 3], Option<&str>)> {
        check_version(version).ok()?;
        let without_build = version.split('+').next()?;
        let (core, prerelease) = match without_build.split_once('-') {
            Some((core, prerelease)) => (core, Some(prerelease)),
            None => (without_build, None),
        };
        let mut numbers = core.split('.');
        Some(([numbers.next()?, numbers.next()?, numbers.next()?], prerelease))
    }
    let (Some((core_a, pre_a)), Some((core_b, pre_b))) = (parts(a), parts(b)) else {
        return check_version(a).is_ok().cmp(&check_version(b).is_ok()).then_with(|| a.cmp(b));
    };
    let cores = core_a.iter().zip(core_b.iter()).map(|(x, y)| numeric(x, y)).find(|order| order.is_ne()).unwrap_or(Ordering::Equal);
    let prereleases = match (pre_a, pre_b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => {
            let (mut x, mut y) = (x.split('.'), y.split('.'));
            loop {
                match (x.next(), y.next()) {
                    (None, None) => break Ordering::Equal,
                    (None, Some(_)) => break Ordering::Less,
                    (Some(_), None) => break Ordering::Greater,
                    (Some(p), Some(q)) => {
                        let digits = |text: &str| text.chars().all(|c| c.is_ascii_digit());
                        let order = match (digits(p), digits(q)) {
                            (true, true) => numeric(p.trim_start_matches('0'), q.trim_start_matches('0')),
                            (true, false) => Ordering::Less,
                            (false, true) => Ordering::Greater,
                            (false, false) => p.cmp(q),
                        };
                        if order.is_ne() {
                            break order;
                        }
                    }
                }
            }
        }
    };
    cores.then(prereleases).then_with(|| a.cmp(b))
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
    use super::{LOGGER_PATTERN, NAME_PATTERN, VERSION_PATTERN, check_logger, check_name, check_version};
    use proptest::prelude::*;

    /// Texts near the alphabets: their characters, separators and a few outsiders.
    fn near_alphabet(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just('a'),
                Just('Z'),
                Just('0'),
                Just('1'),
                Just('9'),
                Just('_'),
                Just('.'),
                Just('-'),
                Just('+'),
                Just(':'),
                Just('/'),
                Just(' '),
                Just('\n'),
                Just('é'),
                any::<char>()
            ],
            0..max,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    proptest! {
        /// The patterns the API's description shows accept exactly what the checks accept.
        #[test]
        fn the_described_patterns_are_the_checks(text in near_alphabet(12), long in near_alphabet(300)) {
            let name = regex::Regex::new(NAME_PATTERN).unwrap();
            let version = regex::Regex::new(VERSION_PATTERN).unwrap();
            let logger = regex::Regex::new(LOGGER_PATTERN).unwrap();
            for text in [&text, &long] {
                prop_assert_eq!(name.is_match(text), check_name(text).is_ok(), "name {:?}", text);
                prop_assert_eq!(logger.is_match(text), check_logger(text).is_ok(), "logger {:?}", text);
                if text.len() <= 64 {
                    prop_assert_eq!(version.is_match(text), check_version(text).is_ok(), "version {:?}", text);
                }
            }
            for text in ["1.2.3", "1.0.0-rc.1+b.5", "01.0.0", "1.0", "1.0.0-", "1.0.0-a..b", "root", "wasm_connect::worker", "a::", "1a", "x-y"] {
                prop_assert_eq!(version.is_match(text), check_version(text).is_ok(), "version {:?}", text);
                prop_assert_eq!(logger.is_match(text), check_logger(text).is_ok(), "logger {:?}", text);
                prop_assert_eq!(name.is_match(text), check_name(text).is_ok(), "name {:?}", text);
            }
        }
    }

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
        for bad in
            ["", "1", "1.2", "1.2.3.4", "01.2.3", "1.2.x", "../1.0.0", "1.0.0/..", "1.0.0\n", "1.2.3-", "1.2.3+", "1.2.3-a..b", "v1.2.3"]
        {
            assert!(check_version(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(check_version("1.0.0/x").unwrap_err().contains("`/` at position 6"));
    }

    #[test]
    fn versions_order_by_semantic_precedence() {
        let mut versions = vec![
            "1.0.0",
            "1.0.0-rc.1",
            "0.10.0",
            "0.9.1",
            "1.0.0-alpha",
            "1.0.0-alpha.2",
            "1.0.0-alpha.10",
            "2.0.0",
            "99999999999999999999999.0.0",
            "1.0.0-beta",
        ];
        versions.sort_by(|a, b| super::compare_versions(a, b));
        assert_eq!(
            versions,
            [
                "0.9.1",
                "0.10.0",
                "1.0.0-alpha",
                "1.0.0-alpha.2",
                "1.0.0-alpha.10",
                "1.0.0-beta",
                "1.0.0-rc.1",
                "1.0.0",
                "2.0.0",
                "99999999999999999999999.0.0"
            ]
        );
    }
}
