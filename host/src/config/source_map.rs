//! Where each key of a YAML document is, so that errors found after parsing (by serde
//! or by validation) can still name a line and column. Paths use serde_path_to_error's
//! syntax: `connectors[1].config.index`.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Positions of the keys and sequence items of one document.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    positions: HashMap<String, (usize, usize)>,
}

enum Frame {
    Mapping { path: String, pending_key: Option<String> },
    Sequence { path: String, next_index: usize },
}

struct Collector {
    stack: Vec<Frame>,
    positions: HashMap<String, (usize, usize)>,
}

impl Collector {
    /// The path of the node starting now, consuming the key or index it sits under. A
    /// mapping item is located at its first key (its own marker points further on).
    fn enter_node(&mut self, marker: Marker, is_mapping: bool) -> Option<String> {
        let path = match self.stack.last_mut()? {
            Frame::Mapping { path, pending_key } => {
                let key = pending_key.take()?;
                if path.is_empty() { key } else { format!("{path}.{key}") }
            }
            Frame::Sequence { path, next_index } => {
                let item = format!("{path}[{next_index}]");
                *next_index += 1;
                if !is_mapping {
                    self.positions.entry(item.clone()).or_insert((marker.line(), marker.col() + 1));
                }
                item
            }
        };
        Some(path)
    }

    fn is_awaiting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Mapping { pending_key: None, .. }))
    }
}

impl MarkedEventReceiver for Collector {
    fn on_event(&mut self, event: Event, marker: Marker) {
        match event {
            Event::Scalar(value, ..) if self.is_awaiting_key() => {
                let Some(Frame::Mapping { path, pending_key }) = self.stack.last_mut() else { return };
                let key_path = if path.is_empty() { value.clone() } else { format!("{path}.{value}") };
                let position = (marker.line(), marker.col() + 1);
                self.positions.entry(key_path).or_insert(position);
                if !path.is_empty() {
                    self.positions.entry(path.clone()).or_insert(position);
                }
                *pending_key = Some(value);
            }
            Event::Scalar(..) | Event::Alias(_) => {
                self.enter_node(marker, false);
            }
            Event::MappingStart(..) => {
                let path = if self.stack.is_empty() { Some(String::new()) } else { self.enter_node(marker, true) };
                self.stack.push(Frame::Mapping { path: path.unwrap_or_default(), pending_key: None });
            }
            Event::SequenceStart(..) => {
                let path = if self.stack.is_empty() { Some(String::new()) } else { self.enter_node(marker, false) };
                self.stack.push(Frame::Sequence { path: path.unwrap_or_default(), next_index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

impl SourceMap {
    /// Indexes `text`; a document that does not parse gives an empty map (the parse
    /// error itself is reported by serde_yaml with its own position).
    pub fn new(text: &str) -> Self {
        let mut collector = Collector { stack: Vec::new(), positions: HashMap::new() };
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut collector, false).is_err() {
            return Self::default();
        }
        Self { positions: collector.positions }
    }

    /// The position of `path`, or of its closest located ancestor.
    pub fn locate(&self, path: &str) -> Option<(usize, usize)> {
        let mut path = path;
        loop {
            if let Some(position) = self.positions.get(path) {
                return Some(*position);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_keys_items_and_falls_back_to_ancestors() {
        let text = "version: 1\nconnectors:\n  - name: a\n    config:\n      index: x\n  - name: b\n";
        let map = SourceMap::new(text);
        assert_eq!(map.locate("version"), Some((1, 1)));
        assert_eq!(map.locate("connectors[0].config.index"), Some((5, 7)));
        assert_eq!(map.locate("connectors[1]"), Some((6, 5)));
        assert_eq!(map.locate("connectors[1].name"), Some((6, 5)));
        assert_eq!(map.locate("connectors[1].config.missing"), Some((6, 5)));
    }
}
