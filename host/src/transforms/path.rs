//! Field paths as Kafka Connect's transforms name them (KIP-821): with
//! `field.syntax.version: V1` (the default) a name is one top-level field, dots and
//! all; with `V2` dots step into nested objects, and a name holding a dot is written
//! in backticks (`` `a.b`.c ``, a backtick inside one escaped as ``\` ``).

use serde_json::{Map, Value};

/// How field names are read (`field.syntax.version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldSyntax {
    /// Each name is one top-level field.
    #[default]
    V1,
    /// Dotted paths into nested objects.
    V2,
}

impl FieldSyntax {
    /// Reads `V1` or `V2` (any case).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_uppercase().as_str() {
            "V1" => Ok(FieldSyntax::V1),
            "V2" => Ok(FieldSyntax::V2),
            _ => Err(format!("must be V1 or V2, not {text:?}")),
        }
    }
}

/// A field inside a JSON object: the names of the objects on the way, then the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    steps: Vec<String>,
}

impl FieldPath {
    /// Reads `text` with `syntax`.
    pub fn parse(text: &str, syntax: FieldSyntax) -> Result<Self, String> {
        if text.is_empty() {
            return Err("a field name must not be empty".to_owned());
        }
        let steps = match syntax {
            FieldSyntax::V1 => vec![text.to_owned()],
            FieldSyntax::V2 => split_v2(text)?,
        };
        Ok(Self { steps })
    }

    /// True for a top-level field (one step).
    pub fn is_top_level(&self) -> bool {
        self.steps.len() == 1
    }

    /// The last step: the field's own name.
    pub fn name(&self) -> &str {
        self.steps.last().map(String::as_str).unwrap_or_default()
    }

    /// The value at the path, if every step exists.
    pub fn get<'a>(&self, root: &'a Map<String, Value>) -> Option<&'a Value> {
        let (last, parents) = self.steps.split_last()?;
        let mut object = root;
        for step in parents {
            object = object.get(step)?.as_object()?;
        }
        object.get(last)
    }

    /// The object holding the field, if every step on the way is an object.
    pub fn parent_mut<'a>(&self, root: &'a mut Map<String, Value>) -> Option<&'a mut Map<String, Value>> {
        let (_, parents) = self.steps.split_last()?;
        let mut object = root;
        for step in parents {
            object = object.get_mut(step)?.as_object_mut()?;
        }
        Some(object)
    }

    /// The object holding the field, creating the objects on the way that are missing;
    /// None when a step on the way holds something other than an object.
    pub fn parent_or_insert<'a>(&self, root: &'a mut Map<String, Value>) -> Option<&'a mut Map<String, Value>> {
        let (_, parents) = self.steps.split_last()?;
        let mut object = root;
        for step in parents {
            object = object.entry(step.clone()).or_insert_with(|| Value::Object(Map::new())).as_object_mut()?;
        }
        Some(object)
    }

    /// Sets the field, creating the objects on the way; false when a step on the way
    /// is not an object.
    pub fn set(&self, root: &mut Map<String, Value>, value: Value) -> bool {
        match self.parent_or_insert(root) {
            Some(parent) => {
                parent.insert(self.name().to_owned(), value);
                true
            }
            None => false,
        }
    }

    /// Removes the field and returns its value.
    pub fn remove(&self, root: &mut Map<String, Value>) -> Option<Value> {
        self.parent_mut(root)?.shift_remove(self.name())
    }

    /// The path as written in V2 syntax.
    pub fn display(&self) -> String {
        self.steps
            .iter()
            .map(|step| if step.contains('.') || step.contains('`') { format!("`{}`", step.replace('`', "\\`")) } else { step.clone() })
            .collect::<Vec<_>>()
            .join(".")
    }
}

fn split_v2(text: &str) -> Result<Vec<String>, String> {
    let mut steps = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted && chars.peek() == Some(&'`') => {
                current.push('`');
                chars.next();
            }
            '`' if quoted => {
                quoted = false;
                was_quoted = true;
            }
            '`' if current.is_empty() && !was_quoted => quoted = true,
            '.' if !quoted => {
                if current.is_empty() && !was_quoted {
                    return Err(format!("{text:?} has an empty step between dots"));
                }
                steps.push(std::mem::take(&mut current));
                was_quoted = false;
            }
            _ if was_quoted => return Err(format!("{text:?}: a backtick-quoted name must be followed by a dot or the end")),
            _ => current.push(c),
        }
    }
    if quoted {
        return Err(format!("{text:?} has an unclosed backtick"));
    }
    if current.is_empty() && !was_quoted {
        return Err(format!("{text:?} ends with a dot"));
    }
    steps.push(current);
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn v1_names_are_one_field_dots_and_all() {
        let path = FieldPath::parse("a.b", FieldSyntax::V1).unwrap();
        let root = object(json!({"a.b": 1, "a": {"b": 2}}));
        assert_eq!(path.get(&root), Some(&json!(1)));
    }

    #[test]
    fn v2_paths_step_into_objects_and_backticks_keep_dots() {
        let root = object(json!({"a": {"b": 2, "c.d": 3, "e`f": 4}}));
        assert_eq!(FieldPath::parse("a.b", FieldSyntax::V2).unwrap().get(&root), Some(&json!(2)));
        assert_eq!(FieldPath::parse("a.`c.d`", FieldSyntax::V2).unwrap().get(&root), Some(&json!(3)));
        assert_eq!(FieldPath::parse("a.`e\\`f`", FieldSyntax::V2).unwrap().get(&root), Some(&json!(4)));
        assert_eq!(FieldPath::parse("a.x", FieldSyntax::V2).unwrap().get(&root), None);
        assert_eq!(FieldPath::parse("a.b.c", FieldSyntax::V2).unwrap().get(&root), None);
    }

    #[test]
    fn v2_set_creates_objects_and_remove_takes_the_field() {
        let mut root = object(json!({"a": {"b": 2}}));
        assert!(FieldPath::parse("a.c.d", FieldSyntax::V2).unwrap().set(&mut root, json!(5)));
        assert_eq!(FieldPath::parse("a.b", FieldSyntax::V2).unwrap().remove(&mut root), Some(json!(2)));
        assert_eq!(Value::Object(root.clone()), json!({"a": {"c": {"d": 5}}}));
        assert!(!FieldPath::parse("a.c.d.e", FieldSyntax::V2).unwrap().set(&mut root, json!(1)));
    }

    #[test]
    fn malformed_v2_paths_are_refused_with_the_reason() {
        for bad in ["", "a..b", "a.", ".a", "`a", "`a`b"] {
            assert!(FieldPath::parse(bad, FieldSyntax::V2).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(FieldPath::parse("`a.b`.c", FieldSyntax::V2).unwrap().display(), "`a.b`.c");
        assert!(FieldSyntax::parse("v2").is_ok() && FieldSyntax::parse("V3").is_err());
    }
}
