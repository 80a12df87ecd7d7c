//! A JSON object read only at its top level: its fields' names and the text of their
//! values, in order, over the bytes the record carried. Transforms that add, drop,
//! rename or keep top-level fields (InsertField, ReplaceField) and the host's simple
//! jq tests work on it without building a tree of the whole value, and writing it back
//! copies the values' text as it came.
//!
//! Read only when the bytes are strict JSON (serde_json checks every value while it
//! skips it), the top level is an object, no field name holds an escape and no name
//! repeats, nothing nests deeper than a tree may (serde_json's limit), and no string
//! holds an escaped UTF-16 surrogate (which a tree must pair, and skipping does not
//! check); anything else is read as a tree, as before. A number too large for a float
//! in a field no transform reads stays as it came (a tree cannot hold it: a transform
//! that needs the tree fails the record).

use serde::Deserializer;
use serde::de::{MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

/// A top-level JSON object over its text.
#[derive(Debug, Clone, PartialEq)]
pub struct ShallowObject {
    text: Vec<u8>,
    fields: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq)]
struct Field {
    name: Text,
    value: Slot,
}

/// A field's name: its text (without escapes) in the object's, or one a transform gave.
#[derive(Debug, Clone, PartialEq)]
enum Text {
    At(usize, usize),
    Owned(String),
}

/// A field's value: its JSON text in the object's, or one a transform gave.
#[derive(Debug, Clone, PartialEq)]
enum Slot {
    At(usize, usize),
    Owned(Value),
}

/// Objects with more fields than this check for repeated names with a set.
const PAIRWISE_LIMIT: usize = 32;

/// The top-level fields of `bytes`, named and valued by their ranges in it, when it is
/// a JSON object this module reads (see the module's documentation).
fn scan(bytes: &[u8]) -> Option<Vec<Field>> {
    if !within_tree_limits(bytes) {
        return None;
    }
    /// Collects each field as the ranges of its name and value text in the input,
    /// which starts at `base`.
    struct Fields {
        base: usize,
    }
    impl<'de> Visitor<'de> for Fields {
        type Value = Vec<Field>;
        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let range = |text: &str| {
                let start = text.as_ptr() as usize - self.base;
                (start, start + text.len())
            };
            let mut fields = Vec::with_capacity(32);
            // A name with an escape is not a borrowed string: the whole read fails.
            while let Some((name, value)) = map.next_entry::<&'de str, &'de RawValue>()? {
                let ((name_start, name_end), (value_start, value_end)) = (range(name), range(value.get()));
                fields.push(Field { name: Text::At(name_start, name_end), value: Slot::At(value_start, value_end) });
            }
            Ok(fields)
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let fields = deserializer.deserialize_map(Fields { base: bytes.as_ptr() as usize }).ok()?;
    deserializer.end().ok()?;
    let name = |field: &Field| match field.name {
        Text::At(start, end) => &bytes[start..end],
        Text::Owned(_) => unreachable!("scanned names are ranges"),
    };
    let repeated = if fields.len() <= PAIRWISE_LIMIT {
        // Names compared only where their length and ends agree.
        let print = |name: &[u8]| {
            (name.len() as u64) << 16 | u64::from(name.first().copied().unwrap_or(0)) << 8 | u64::from(name.last().copied().unwrap_or(0))
        };
        let prints: Vec<u64> = fields.iter().map(|field| print(name(field))).collect();
        (1..fields.len())
            .any(|index| (0..index).any(|other| prints[other] == prints[index] && name(&fields[other]) == name(&fields[index])))
    } else {
        let mut seen = std::collections::HashSet::with_capacity(fields.len());
        !fields.iter().all(|field| seen.insert(name(field)))
    };
    (!repeated).then_some(fields)
}

/// The deepest nesting serde_json reads into a tree.
const MAX_DEPTH: usize = 127;

/// False when `bytes`, read as JSON, nests arrays and objects deeper than a tree may,
/// or holds a `\u` escape of a UTF-16 surrogate (the tree checks that they pair;
/// skipping a value does not: a rare escaped pair goes to the tree too).
fn within_tree_limits(bytes: &[u8]) -> bool {
    let shape = wasm_connect_protocol::json::shape(bytes);
    shape.depth <= MAX_DEPTH && !shape.escaped_surrogate
}

impl ShallowObject {
    /// Reads `bytes`, or gives them back when they are not an object read here.
    pub fn read(bytes: Vec<u8>) -> Result<Self, Vec<u8>> {
        match scan(&bytes) {
            Some(fields) => Ok(Self { text: bytes, fields }),
            None => Err(bytes),
        }
    }

    fn name<'a>(&'a self, field: &'a Field) -> &'a str {
        match &field.name {
            // Read as a borrowed string by serde_json: valid UTF-8 on char boundaries.
            Text::At(start, end) => std::str::from_utf8(&self.text[*start..*end]).unwrap_or_default(),
            Text::Owned(name) => name,
        }
    }

    /// Whether `field` is named `name`, comparing the bytes (no UTF-8 check again).
    fn is_named(&self, field: &Field, name: &str) -> bool {
        match &field.name {
            Text::At(start, end) => &self.text[*start..*end] == name.as_bytes(),
            Text::Owned(owned) => owned == name,
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|field| self.is_named(field, name))
    }

    /// Sets the field `name`: where it stands if present, else last.
    pub fn insert(&mut self, name: &str, value: Value) {
        match self.position(name) {
            Some(index) => self.fields[index].value = Slot::Owned(value),
            None => self.fields.push(Field { name: Text::Owned(name.to_owned()), value: Slot::Owned(value) }),
        }
    }

    /// Removes the field `name`, if present.
    pub fn remove(&mut self, name: &str) {
        if let Some(index) = self.position(name) {
            self.fields.remove(index);
        }
    }

    /// Keeps only the fields `names`, in that order.
    pub fn keep_only<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        let mut kept: Vec<Field> = Vec::new();
        for name in names {
            if let Some(index) = self.position(name)
                && !kept.iter().any(|field| self.is_named(field, name))
            {
                kept.push(self.fields[index].clone());
            }
        }
        self.fields = kept;
    }

    /// Renames the field `from` to `to` where it stands. A field already named `to`
    /// merges with it as a JSON object's fields do when a name repeats: the first
    /// place, the last value.
    pub fn rename(&mut self, from: &str, to: &str) {
        let Some(index) = self.position(from) else { return };
        self.fields[index].name = Text::Owned(to.to_owned());
        let same: Vec<usize> = (0..self.fields.len()).filter(|index| self.is_named(&self.fields[*index], to)).collect();
        if let (Some(first), Some(last)) = (same.first().copied(), same.last().copied())
            && first != last
        {
            self.fields[first].value = self.fields[last].value.clone();
            for index in same[1..].iter().rev() {
                self.fields.remove(*index);
            }
        }
    }

    /// The value of the field `name` as a tree: None when absent, Err when its text is
    /// JSON that serde_json cannot hold as a value (a number out of range).
    pub fn value(&self, name: &str) -> Option<Result<Value, String>> {
        let field = &self.fields[self.position(name)?];
        Some(self.value_of(field))
    }

    fn value_of(&self, field: &Field) -> Result<Value, String> {
        match &field.value {
            Slot::At(start, end) => {
                serde_json::from_slice(&self.text[*start..*end]).map_err(|error| format!("the value's field cannot be read: {error}"))
            }
            Slot::Owned(value) => Ok(value.clone()),
        }
    }

    /// The whole object as a tree.
    pub fn to_value(&self) -> Result<Value, String> {
        let mut object = serde_json::Map::with_capacity(self.fields.len());
        for field in &self.fields {
            object.insert(self.name(field).to_owned(), self.value_of(field)?);
        }
        Ok(Value::Object(object))
    }

    /// The object as JSON text: the values read as they came, the others printed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text.len() + 64);
        out.push(b'{');
        for (index, field) in self.fields.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            match &field.name {
                // Without escapes, as read: its text goes between quotes unchanged.
                Text::At(start, end) => {
                    out.push(b'"');
                    out.extend_from_slice(&self.text[*start..*end]);
                    out.push(b'"');
                }
                Text::Owned(name) => serde_json::to_writer(&mut out, name).expect("a string serialises"),
            }
            out.push(b':');
            match &field.value {
                Slot::At(start, end) => out.extend_from_slice(&self.text[*start..*end]),
                Slot::Owned(value) => serde_json::to_writer(&mut out, value).expect("a JSON value serialises"),
            }
        }
        out.push(b'}');
        out
    }
}

/// The named top-level fields of `bytes` as an object tree (those absent left out),
/// when `bytes` is an object read here; Err when a named field cannot be held.
pub fn fields_of(bytes: &[u8], names: &[String]) -> Option<Result<Value, String>> {
    let fields = scan(bytes)?;
    let mut object = serde_json::Map::with_capacity(names.len());
    for field in fields {
        let (Text::At(name_start, name_end), Slot::At(start, end)) = (field.name, field.value) else { continue };
        if let Some(name) = names.iter().find(|wanted| wanted.as_bytes() == &bytes[name_start..name_end]) {
            match serde_json::from_slice(&bytes[start..end]) {
                Ok(value) => object.insert(name.clone(), value),
                Err(error) => return Some(Err(format!("the value's field cannot be read: {error}"))),
            };
        }
    }
    Some(Ok(Value::Object(object)))
}

impl ShallowObject {
    /// The named fields as an object tree (those absent left out); Err when a named
    /// field cannot be held.
    pub fn fields(&self, names: &[String]) -> Result<Value, String> {
        let mut object = serde_json::Map::with_capacity(names.len());
        for field in &self.fields {
            if let Some(name) = names.iter().find(|wanted| self.is_named(field, wanted)) {
                object.insert(name.clone(), self.value_of(field)?);
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::ShallowObject;

    fn read(text: &str) -> Option<ShallowObject> {
        ShallowObject::read(text.as_bytes().to_vec()).ok()
    }

    fn written(object: &ShallowObject) -> String {
        String::from_utf8(object.to_bytes()).unwrap()
    }

    #[test]
    fn fields_are_changed_in_place_and_the_rest_written_as_it_came() {
        let mut object = read(r#" { "b" : [1, 2], "a":1.50, "c":{"x":"\u00e9"}, "d":null } "#).unwrap();
        object.insert("a", json!(2));
        object.insert("e", json!("new"));
        object.remove("d");
        object.rename("c", "z");
        assert_eq!(written(&object), r#"{"b":[1, 2],"a":2,"z":{"x":"\u00e9"},"e":"new"}"#);
        assert_eq!(object.value("z").unwrap().unwrap(), json!({"x": "é"}));
        assert_eq!(object.value("missing"), None);
        assert_eq!(object.to_value().unwrap(), json!({"b": [1, 2], "a": 2, "z": {"x": "é"}, "e": "new"}));
        object.keep_only(["e", "b", "e", "missing"]);
        assert_eq!(written(&object), r#"{"e":"new","b":[1, 2]}"#);
    }

    #[test]
    fn a_rename_onto_a_present_name_keeps_its_place_and_the_later_value() {
        let mut object = read(r#"{"a":1,"b":2,"c":3}"#).unwrap();
        object.rename("c", "a");
        assert_eq!(written(&object), r#"{"a":3,"b":2}"#);
        let mut object = read(r#"{"a":1,"b":2,"c":3}"#).unwrap();
        object.rename("a", "c");
        assert_eq!(written(&object), r#"{"c":3,"b":2}"#);
        // As the tree does it.
        let mut tree: serde_json::Map<String, Value> = serde_json::from_str(r#"{"a":1,"b":2,"c":3}"#).unwrap();
        tree = tree.into_iter().map(|(name, value)| if name == "a" { ("c".to_owned(), value) } else { (name, value) }).collect();
        assert_eq!(serde_json::to_string(&tree).unwrap(), r#"{"c":3,"b":2}"#);
    }

    #[test]
    fn what_is_not_a_plain_object_is_left_to_the_tree() {
        for text in [
            "[1, 2]",
            "\"text\"",
            "12",
            "null",
            "plain text",
            r#"{"a":1"#,
            r#"{"a":1} trailing"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a\"b":1}"#,
            r#"{"a":[1,}"#,
            r#"{"a":01}"#,
            r#"{"b":1,"a":"\ud800"}"#,
            r#"{"b":1,"a":"\uDC00 and more"}"#,
            r#"{"b":1,"a":"\ud83d\ude00"}"#,
        ] {
            assert!(read(text).is_none(), "{text} was read");
        }
        let many: String = format!("{{{}}}", (0..40).map(|n| format!("\"f{}\":{n}", n % 39)).collect::<Vec<_>>().join(","));
        assert!(read(&many).is_none(), "a name repeated among 40 was not seen");
        assert!(read(r#"{}"#).is_some_and(|object| written(&object) == "{}"));
        // As deep as a tree may nest, and one deeper; an escaped backslash before a u.
        let nested = |depth: usize| format!("{{\"b\":1,\"a\":{}{}}}", "[".repeat(depth - 1), "]".repeat(depth - 1));
        assert!(serde_json::from_str::<Value>(&nested(127)).is_ok() && read(&nested(127)).is_some());
        assert!(serde_json::from_str::<Value>(&nested(128)).is_err() && read(&nested(128)).is_none());
        assert!(read(r#"{"a":"\\ud800 is text"}"#).is_some());
    }

    #[test]
    fn named_fields_are_read_alone() {
        let names = vec!["a".to_owned(), "missing".to_owned()];
        assert_eq!(super::fields_of(br#"{"a":{"b":1},"c":2}"#, &names).unwrap().unwrap(), json!({"a": {"b": 1}}));
        assert!(super::fields_of(br#"{"a":1e400}"#, &names).unwrap().is_err());
        assert_eq!(read(r#"{"a":1e400,"c":2}"#).unwrap().fields(&["c".to_owned()]).unwrap(), json!({"c": 2}));
        assert!(super::fields_of(b"[1]", &names).is_none());
    }
}
