//! The `Jq` predicate's simple expressions, answered in the host without a call into
//! the jq component: comparisons of the value's fields, of the record's topic,
//! partition, offset and timestamp, and literals, joined by `and`, `or`, `not`,
//! `select(...)`, `type` and `|`, e.g. `.amount > 1000 and .currency == "EUR"`.
//!
//! Most predicates people write are of this shape, and calling jq costs several
//! microseconds per record (printing the value, jaq reading it back), against well
//! under one here on the tree the chain already holds. The answer must be jq's: an
//! expression outside this grammar is not compiled here, and a record this cannot
//! answer exactly (a field path that would be a jq error, an integer beyond 2^53,
//! arrays or objects compared with each other, a value that is not strict JSON) goes
//! to the component, which answers it or fails it as jq does. There is no recursion
//! at run time beyond the expression's own nesting, which is bounded when compiled.

use std::cmp::Ordering;

use serde_json::Value;

use super::record::{Data, WorkingRecord};
use super::shallow::fields_of;

/// The longest expression read here (a longer one goes to the component).
const MAX_EXPRESSION_BYTES: usize = 4096;
/// The most tokens read here, which bounds how deep evaluation recurses (`a | b | c`
/// nests to the left).
const MAX_TOKENS: usize = 256;
/// The deepest nesting of parentheses and operators read here.
const MAX_DEPTH: usize = 32;
/// Integers up to this size are exact as f64, as jq compares them.
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// A compiled simple predicate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimpleTest {
    expression: Expr,
    /// The fields its paths start with: of a value that is an object, only these are read.
    names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    /// `.`, `.a`, `.a.b`: fields of the input.
    Path(Vec<String>),
    Literal(Literal),
    /// `$topic`, `$partition`, `$offset`, `$timestamp`.
    Variable(Variable),
    /// `a | b`: `b` with the output of `a` as its input.
    Pipe(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Compare(Box<Expr>, Comparison, Box<Expr>),
    /// `not`: of the input.
    Not,
    /// `type`: of the input.
    Type,
    /// `select(f)`: the input where `f` is truthy, else nothing.
    Select(Box<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variable {
    Topic,
    Partition,
    Offset,
    Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

/// A value during evaluation: scalars as jq compares them, arrays and objects as read.
#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    Null,
    Bool(bool),
    Number(f64),
    Text(&'a str),
    /// An array or an object.
    Tree(&'a Value),
}

/// This record cannot be answered here exactly: the component answers it.
#[derive(Debug)]
struct Unsure;

type Evaluated<'a> = Result<Option<Val<'a>>, Unsure>;

/// What the record offers besides its value.
struct Context<'a> {
    topic: &'a str,
    partition: Option<i64>,
    offset: Option<i64>,
    timestamp: Option<i64>,
}

impl SimpleTest {
    /// The expression compiled, when it is within the grammar read here.
    pub fn compile(expression: &str) -> Option<Self> {
        if expression.len() > MAX_EXPRESSION_BYTES {
            return None;
        }
        let tokens = tokenize(expression).filter(|tokens| tokens.len() <= MAX_TOKENS)?;
        let mut parser = Parser { tokens, at: 0, depth: 0 };
        let expression = parser.pipe()?;
        if parser.at != parser.tokens.len() {
            return None;
        }
        let mut names = Vec::new();
        expression.first_fields(&mut names);
        Some(Self { expression, names })
    }

    /// Whether the record's value passes, as the `Jq` predicate would answer (its first
    /// output is neither `false` nor `null`), or None when the component must answer.
    /// The value is read but left as it was.
    pub fn test(&self, record: &WorkingRecord) -> Option<bool> {
        let context = Context {
            topic: &record.topic,
            partition: record.partition.map(i64::from),
            offset: record.offset,
            timestamp: record.timestamp,
        };
        let answer = |input: Val<'_>| match self.expression.evaluate(input, &context) {
            Ok(output) => Some(output.is_some_and(truthy)),
            Err(Unsure) => None,
        };
        // Of an object, only the fields the paths start with are read: the rest of it
        // can change no answer here (an object compared whole is left to jq).
        match &record.value {
            Data::Json(value) => answer(Val::of(value).ok()?),
            Data::Bytes(None) => answer(Val::Null),
            Data::Object(object) => answer(Val::of(&object.fields(&self.names).ok()?).ok()?),
            // Strict JSON that serde_json reads the way jq does; anything else (text,
            // numbers out of range, nesting beyond serde_json's limit, a lone
            // surrogate) is left to jq: the top-level read refuses them too.
            Data::Bytes(Some(bytes)) => match fields_of(bytes, &self.names) {
                Some(fields) => answer(Val::of(&fields.ok()?).ok()?),
                None => answer(Val::of(&serde_json::from_slice::<Value>(bytes).ok()?).ok()?),
            },
        }
    }
}

impl<'a> Val<'a> {
    fn of(value: &'a Value) -> Result<Self, Unsure> {
        Ok(match value {
            Value::Null => Val::Null,
            Value::Bool(flag) => Val::Bool(*flag),
            Value::Number(number) => Val::Number(exact(number)?),
            Value::String(text) => Val::Text(text),
            Value::Array(_) | Value::Object(_) => Val::Tree(value),
        })
    }

    /// jq's order of types: null, false, true, numbers, strings, arrays, objects.
    fn rank(&self) -> u8 {
        match self {
            Val::Null => 0,
            Val::Bool(false) => 1,
            Val::Bool(true) => 2,
            Val::Number(_) => 3,
            Val::Text(_) => 4,
            Val::Tree(Value::Array(_)) => 5,
            Val::Tree(_) => 6,
        }
    }
}

/// A JSON number as jq compares it, when f64 holds it exactly as jq reads it: jq keeps
/// an integer beyond 2^53 exact, and serde_json reads one beyond 64 bits as a float, so
/// any number beyond 2^53 is left to jq. (Floats are read correctly rounded, as jq
/// reads them: serde_json's `float_roundtrip`.)
fn exact(number: &serde_json::Number) -> Result<f64, Unsure> {
    let integer = number.as_i64().map(i64::unsigned_abs).or_else(|| number.as_u64());
    if integer.is_some_and(|integer| integer > MAX_EXACT_INTEGER as u64) {
        return Err(Unsure);
    }
    number.as_f64().filter(|value| value.abs() <= MAX_EXACT_INTEGER).ok_or(Unsure)
}

fn truthy(value: Val<'_>) -> bool {
    !matches!(value, Val::Null | Val::Bool(false))
}

fn compare(left: Val<'_>, right: Val<'_>) -> Result<Ordering, Unsure> {
    match (left, right) {
        (Val::Number(left), Val::Number(right)) => left.partial_cmp(&right).ok_or(Unsure),
        (Val::Text(left), Val::Text(right)) => Ok(left.cmp(right)),
        (Val::Tree(_), Val::Tree(_)) if left.rank() == right.rank() => Err(Unsure),
        _ => Ok(left.rank().cmp(&right.rank())),
    }
}

impl Expr {
    /// Adds the first field of every path to `names` (once each).
    fn first_fields(&self, names: &mut Vec<String>) {
        match self {
            Expr::Path(fields) => {
                if let Some(first) = fields.first()
                    && !names.contains(first)
                {
                    names.push(first.clone());
                }
            }
            Expr::Pipe(left, right) | Expr::Or(left, right) | Expr::And(left, right) | Expr::Compare(left, _, right) => {
                left.first_fields(names);
                right.first_fields(names);
            }
            Expr::Select(inner) => inner.first_fields(names),
            Expr::Literal(_) | Expr::Variable(_) | Expr::Not | Expr::Type => {}
        }
    }

    fn evaluate<'a>(&'a self, input: Val<'a>, context: &Context<'a>) -> Evaluated<'a> {
        Ok(Some(match self {
            Expr::Path(fields) => {
                let mut value = input;
                for field in fields {
                    value = match value {
                        Val::Null => Val::Null,
                        Val::Tree(Value::Object(map)) => map.get(field).map_or(Ok(Val::Null), Val::of)?,
                        // jq fails here: the component says so.
                        _ => return Err(Unsure),
                    };
                }
                value
            }
            Expr::Literal(Literal::Null) => Val::Null,
            Expr::Literal(Literal::Bool(flag)) => Val::Bool(*flag),
            Expr::Literal(Literal::Number(number)) => Val::Number(*number),
            Expr::Literal(Literal::Text(text)) => Val::Text(text),
            Expr::Variable(Variable::Topic) => Val::Text(context.topic),
            Expr::Variable(variable) => {
                let number = match variable {
                    Variable::Partition => context.partition,
                    Variable::Offset => context.offset,
                    Variable::Timestamp => context.timestamp,
                    Variable::Topic => unreachable!("matched above"),
                };
                match number {
                    None => Val::Null,
                    Some(number) if number.unsigned_abs() <= MAX_EXACT_INTEGER as u64 => Val::Number(number as f64),
                    Some(_) => return Err(Unsure),
                }
            }
            Expr::Pipe(first, then) => match first.evaluate(input, context)? {
                Some(output) => return then.evaluate(output, context),
                None => return Ok(None),
            },
            Expr::Or(left, right) => match left.evaluate(input, context)? {
                None => return Ok(None),
                Some(left) if truthy(left) => Val::Bool(true),
                Some(_) => match right.evaluate(input, context)? {
                    None => return Ok(None),
                    Some(right) => Val::Bool(truthy(right)),
                },
            },
            Expr::And(left, right) => match left.evaluate(input, context)? {
                None => return Ok(None),
                Some(left) if !truthy(left) => Val::Bool(false),
                Some(_) => match right.evaluate(input, context)? {
                    None => return Ok(None),
                    Some(right) => Val::Bool(truthy(right)),
                },
            },
            Expr::Compare(left, comparison, right) => {
                // jq runs the right side first: with an error on both sides, either
                // way the component answers.
                let (Some(left), Some(right)) = (left.evaluate(input, context)?, right.evaluate(input, context)?) else {
                    return Ok(None);
                };
                let order = compare(left, right)?;
                Val::Bool(match comparison {
                    Comparison::Equal => order == Ordering::Equal,
                    Comparison::NotEqual => order != Ordering::Equal,
                    Comparison::Less => order == Ordering::Less,
                    Comparison::LessOrEqual => order != Ordering::Greater,
                    Comparison::Greater => order == Ordering::Greater,
                    Comparison::GreaterOrEqual => order != Ordering::Less,
                })
            }
            Expr::Not => Val::Bool(!truthy(input)),
            Expr::Type => Val::Text(match input {
                Val::Null => "null",
                Val::Bool(_) => "boolean",
                Val::Number(_) => "number",
                Val::Text(_) => "string",
                Val::Tree(Value::Array(_)) => "array",
                Val::Tree(_) => "object",
            }),
            Expr::Select(condition) => match condition.evaluate(input, context)? {
                Some(condition) if truthy(condition) => input,
                _ => return Ok(None),
            },
        }))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// `.`, `.a.b`
    Path(Vec<String>),
    Number(f64),
    Text(String),
    Variable(String),
    Word(String),
    Open,
    Close,
    Pipe,
    Minus,
    Compare(Comparison),
}

/// Words jq reserves: not field names here (jq versions differ on `.and`).
const KEYWORDS: &[&str] = &[
    "and", "or", "not", "if", "then", "elif", "else", "end", "as", "def", "reduce", "foreach", "try", "catch", "label", "import",
    "include", "__loc__",
];

fn is_identifier_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_'
}

fn is_identifier(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// The expression's tokens, or None when it uses anything this grammar leaves to jq.
fn tokenize(expression: &str) -> Option<Vec<Token>> {
    let bytes = expression.as_bytes();
    let mut tokens = Vec::new();
    let mut at = 0;
    let identifier = |from: usize| {
        let mut end = from;
        while end < bytes.len() && is_identifier(bytes[end]) {
            end += 1;
        }
        end
    };
    while at < bytes.len() {
        let byte = bytes[at];
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' => at += 1,
            b'.' => {
                let mut fields = Vec::new();
                while at < bytes.len() && bytes[at] == b'.' {
                    let start = at + 1;
                    if start < bytes.len() && is_identifier_start(bytes[start]) {
                        let end = identifier(start);
                        let field = &expression[start..end];
                        if KEYWORDS.contains(&field) {
                            return None;
                        }
                        fields.push(field.to_owned());
                        at = end;
                    } else if fields.is_empty() {
                        // `.` alone; `..`, `.[`, `."a"` and `.5` are left to jq.
                        if start < bytes.len() && matches!(bytes[start], b'.' | b'[' | b'"' | b'0'..=b'9') {
                            return None;
                        }
                        at = start;
                        break;
                    } else {
                        return None;
                    }
                }
                // `.a?`, `.a[0]` are left to jq.
                if at < bytes.len() && matches!(bytes[at], b'?' | b'[') {
                    return None;
                }
                tokens.push(Token::Path(fields));
            }
            b'0'..=b'9' => {
                // Past the digits from `from`; None when there are none.
                let digits = |from: usize| {
                    let end = from + bytes[from..].iter().take_while(|byte| byte.is_ascii_digit()).count();
                    (end > from).then_some(end)
                };
                let start = at;
                at = digits(at)?;
                let mut integral = true;
                if at < bytes.len() && bytes[at] == b'.' {
                    integral = false;
                    at = digits(at + 1)?;
                }
                if at < bytes.len() && matches!(bytes[at], b'e' | b'E') {
                    integral = false;
                    at += 1;
                    if at < bytes.len() && matches!(bytes[at], b'+' | b'-') {
                        at += 1;
                    }
                    at = digits(at)?;
                }
                if at < bytes.len() && (is_identifier(bytes[at]) || bytes[at] == b'.') {
                    return None;
                }
                let number: f64 = expression[start..at].parse().ok()?;
                // Literals jq might keep more exactly than f64 are left to it.
                if !number.is_finite() || (integral && number > MAX_EXACT_INTEGER) || at - start > 15 {
                    return None;
                }
                tokens.push(Token::Number(number));
            }
            b'"' => {
                let mut text = String::new();
                at += 1;
                loop {
                    let (&next, rest) = bytes.get(at..)?.split_first()?;
                    match next {
                        b'"' => {
                            at += 1;
                            break;
                        }
                        b'\\' => {
                            text.push(match rest.first()? {
                                b'"' => '"',
                                b'\\' => '\\',
                                b'/' => '/',
                                b'n' => '\n',
                                b't' => '\t',
                                b'r' => '\r',
                                // `\(...)`, `\u`, `\b`, `\f` are left to jq.
                                _ => return None,
                            });
                            at += 2;
                        }
                        // Control characters inside a string are left to jq.
                        0..=0x1f => return None,
                        _ => {
                            let end = at + bytes[at..].iter().position(|byte| matches!(byte, b'"' | b'\\' | 0..=0x1f))?;
                            text.push_str(&expression[at..end]);
                            at = end;
                        }
                    }
                }
                tokens.push(Token::Text(text));
            }
            b'$' => {
                let start = at + 1;
                if start >= bytes.len() || !is_identifier_start(bytes[start]) {
                    return None;
                }
                at = identifier(start);
                tokens.push(Token::Variable(expression[start..at].to_owned()));
            }
            _ if is_identifier_start(byte) => {
                let end = identifier(at);
                // `a::b` (modules) is left to jq.
                if bytes.get(end) == Some(&b':') {
                    return None;
                }
                tokens.push(Token::Word(expression[at..end].to_owned()));
                at = end;
            }
            b'(' => {
                tokens.push(Token::Open);
                at += 1;
            }
            b')' => {
                tokens.push(Token::Close);
                at += 1;
            }
            b'|' => {
                // `|=` is an update, left to jq.
                if bytes.get(at + 1) == Some(&b'=') {
                    return None;
                }
                tokens.push(Token::Pipe);
                at += 1;
            }
            b'-' => {
                tokens.push(Token::Minus);
                at += 1;
            }
            b'=' | b'!' | b'<' | b'>' => {
                let equals = bytes.get(at + 1) == Some(&b'=');
                let comparison = match (byte, equals) {
                    (b'=', true) => Comparison::Equal,
                    (b'!', true) => Comparison::NotEqual,
                    (b'<', true) => Comparison::LessOrEqual,
                    (b'>', true) => Comparison::GreaterOrEqual,
                    (b'<', false) => Comparison::Less,
                    (b'>', false) => Comparison::Greater,
                    // `=` (assignment) and `!` alone are left to jq.
                    _ => return None,
                };
                at += if equals { 2 } else { 1 };
                tokens.push(Token::Compare(comparison));
            }
            _ => return None,
        }
    }
    Some(tokens)
}

/// A recursive-descent parser of the grammar, with jq's precedence (lowest first):
/// `|`, `or`, `and`, comparisons (not chained). Every method returns None for what
/// the grammar leaves to jq.
struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn eat(&mut self, token: &Token) -> bool {
        let found = self.peek() == Some(token);
        self.at += usize::from(found);
        found
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(found)) if found == word)
    }

    fn pipe(&mut self) -> Option<Expr> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let mut expression = self.or()?;
        while self.eat(&Token::Pipe) {
            expression = Expr::Pipe(Box::new(expression), Box::new(self.or()?));
        }
        self.depth -= 1;
        Some(expression)
    }

    fn or(&mut self) -> Option<Expr> {
        self.joined("or", Self::and, Expr::Or)
    }

    fn and(&mut self) -> Option<Expr> {
        self.joined("and", Self::comparison, Expr::And)
    }

    /// Operands read by `operand`, joined left to right by the keyword `word`.
    fn joined(&mut self, word: &str, operand: fn(&mut Self) -> Option<Expr>, join: fn(Box<Expr>, Box<Expr>) -> Expr) -> Option<Expr> {
        let mut expression = operand(self)?;
        while self.is_word(word) {
            self.at += 1;
            expression = join(Box::new(expression), Box::new(operand(self)?));
        }
        Some(expression)
    }

    fn comparison(&mut self) -> Option<Expr> {
        let left = self.term()?;
        let Some(Token::Compare(comparison)) = self.peek().cloned() else { return Some(left) };
        self.at += 1;
        let right = self.term()?;
        // jq does not chain comparisons.
        if matches!(self.peek(), Some(Token::Compare(_))) {
            return None;
        }
        Some(Expr::Compare(Box::new(left), comparison, Box::new(right)))
    }

    fn term(&mut self) -> Option<Expr> {
        Some(match self.next()? {
            Token::Path(fields) => Expr::Path(fields),
            Token::Number(number) => Expr::Literal(Literal::Number(number)),
            Token::Minus => match self.next()? {
                Token::Number(number) => Expr::Literal(Literal::Number(-number)),
                _ => return None,
            },
            Token::Text(text) => Expr::Literal(Literal::Text(text)),
            Token::Variable(name) => Expr::Variable(match name.as_str() {
                "topic" => Variable::Topic,
                "partition" => Variable::Partition,
                "offset" => Variable::Offset,
                "timestamp" => Variable::Timestamp,
                _ => return None,
            }),
            Token::Open => {
                let inner = self.pipe()?;
                self.eat(&Token::Close).then_some(inner)?
            }
            Token::Word(word) => match word.as_str() {
                "null" => Expr::Literal(Literal::Null),
                "true" => Expr::Literal(Literal::Bool(true)),
                "false" => Expr::Literal(Literal::Bool(false)),
                "not" => Expr::Not,
                "type" => Expr::Type,
                "select" => {
                    if !self.eat(&Token::Open) {
                        return None;
                    }
                    let condition = self.pipe()?;
                    self.eat(&Token::Close).then_some(Expr::Select(Box::new(condition)))?
                }
                _ => return None,
            },
            Token::Close | Token::Pipe | Token::Compare(_) => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasm_connect_protocol::Record;

    use super::SimpleTest;
    use crate::transforms::record::WorkingRecord;

    fn record(value: &serde_json::Value) -> WorkingRecord {
        WorkingRecord::from(Record {
            topic: "orders".into(),
            partition: Some(3),
            offset: Some(42),
            timestamp: Some(1_700_000_000_000),
            value: Some(value.to_string().into_bytes()),
            ..Record::default()
        })
    }

    fn test(expression: &str, value: serde_json::Value) -> Option<bool> {
        SimpleTest::compile(expression).unwrap_or_else(|| panic!("{expression} is simple")).test(&record(&value))
    }

    #[test]
    fn comparisons_follow_jqs_order_of_types_and_numbers() {
        let payment = json!({"amount": 1500, "currency": "EUR", "paid": true, "note": null, "items": [1], "meta": {}});
        for (expression, expected) in [
            (".amount > 1000", true),
            (".amount > 1500", false),
            (".amount >= 1500.0", true),
            (".amount == 1500.0", true),
            (".currency == \"EUR\" and .paid", true),
            (".currency != \"EUR\" or .note", false),
            (".missing == null", true),
            (".note < false", true),
            ("true < 0", true),
            ("-1 < .amount", true),
            (".amount < \"\"", true),
            (".currency < .items", true),
            (".items < .meta", true),
            (".currency > \"EU\"", true),
            ("(.amount > 1000 | not) or $topic == \"orders\"", true),
            (".paid | not", false),
            ("select(.amount > 2000)", false),
            ("select(.amount > 1000)", true),
            ("type == \"object\" and (.items | type) == \"array\"", true),
            ("$partition == 3 and $offset == 42 and $timestamp > 1600000000000", true),
            ("  .amount  >  1000  ", true),
            (".", true),
        ] {
            assert_eq!(test(expression, payment.clone()), Some(expected), "{expression}");
        }
        // Absent values: a tombstone is null.
        let mut tombstone = record(&json!(null));
        tombstone.value = crate::transforms::record::Data::Bytes(None);
        assert_eq!(SimpleTest::compile(". == null").unwrap().test(&tombstone), Some(true));
        assert_eq!(SimpleTest::compile(".").unwrap().test(&tombstone), Some(false));
    }

    #[test]
    fn what_jq_must_answer_is_left_to_it() {
        // Records: a field of a number is a jq error; big integers, arrays or objects
        // compared with each other, and text that is not JSON.
        assert_eq!(test(".amount.value > 1", json!({"amount": 5})), None);
        assert_eq!(test(".id == 1", json!({"id": 9_007_199_254_740_993_u64})), None);
        assert_eq!(test(".a == .b", json!({"a": [1], "b": [1]})), None);
        let mut text = record(&json!(null));
        text.value = crate::transforms::record::Data::Bytes(Some(b"plain text".to_vec()));
        assert_eq!(SimpleTest::compile(". == \"plain text\"").unwrap().test(&text), None);
        // Expressions outside the grammar.
        for expression in [
            ".a + 1 > 2",
            ".[0] == 1",
            ".a? == 1",
            "..",
            ".a[] > 1",
            "$key == null",
            "$__loc__",
            ".amount > 1 > 2",
            "has(\"a\")",
            "\"\\(.a)\" == \"1\"",
            ".a |= 1",
            ".a = 1",
            "123456789012345678 == .id",
            "def f: f; f",
            ".and == 1",
            "(.a",
            ".a == \"x",
            "",
            "-.a < 1",
            "$x::y",
        ] {
            assert_eq!(SimpleTest::compile(expression), None, "{expression}");
        }
        let deep = format!("{}.a{}", "(".repeat(100), ")".repeat(100));
        assert_eq!(SimpleTest::compile(&deep), None);
        let long = format!(".a{}", " | not".repeat(300));
        assert_eq!(SimpleTest::compile(&long), None);
        assert!(SimpleTest::compile(&format!(".a{}", " | not".repeat(100))).is_some());
    }
}
