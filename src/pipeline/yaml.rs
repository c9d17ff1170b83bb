//! Reads YAML into plain JSON values while remembering where every key and value was written.
//!
//! The typed model is then deserialized from the JSON value (through `serde_path_to_error`), and
//! any error — a YAML syntax error, an unknown key, a wrong type, a dangling reference found
//! later — is reported at `FILE:LINE:COL` by looking its document path up in [`SpanIndex`].
//! One parser (saphyr, the maintained successor of yaml-rust) gives both the values and their
//! positions, so the two can never disagree.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};
use serde_json::{Map, Number, Value};

use super::path::DocPath;
use super::source::{Diagnostic, Location, SourceFile};

/// Where each key and value of the document was written.
#[derive(Debug, Default, Clone)]
pub struct SpanIndex {
    values: HashMap<DocPath, Location>,
    keys: HashMap<DocPath, Location>,
}

impl SpanIndex {
    /// Where the value at `path` starts, or the closest enclosing value that has a position.
    pub fn value(&self, path: &DocPath) -> Option<Location> {
        self.lookup(path, &self.values)
    }

    /// Where the key naming `path` was written (the place to point at for an unknown or duplicate
    /// key), falling back to the value's position.
    pub fn key(&self, path: &DocPath) -> Option<Location> {
        self.keys.get(path).copied().or_else(|| self.value(path))
    }

    fn lookup(&self, path: &DocPath, table: &HashMap<DocPath, Location>) -> Option<Location> {
        let mut current = Some(path.clone());
        while let Some(path) = current {
            if let Some(at) = table.get(&path) {
                return Some(*at);
            }
            current = path.parent();
        }
        None
    }
}

/// A parsed document: its value and where each part of it was written.
#[derive(Debug, Clone)]
pub struct Document {
    pub value: Value,
    pub spans: SpanIndex,
}

/// Aliases can expand a small file into a huge tree ("billion laughs"); a pipeline never needs
/// anywhere near this many values.
const MAX_NODES: usize = 200_000;

enum Frame {
    Sequence {
        path: DocPath,
        anchor: usize,
        items: Vec<Value>,
    },
    Mapping {
        path: DocPath,
        anchor: usize,
        map: Map<String, Value>,
        pending_key: Option<String>,
    },
}

struct Builder<'a> {
    source: &'a SourceFile,
    stack: Vec<Frame>,
    root: Option<Value>,
    spans: SpanIndex,
    anchors: HashMap<usize, (Value, usize)>,
    nodes: usize,
}

fn location(marker: &saphyr_parser::Marker) -> Location {
    Location {
        line: marker.line(),
        col: marker.col() + 1,
    }
}

/// Parses one YAML document. Errors carry the file, line and column.
pub fn parse(source: &SourceFile) -> Result<Document, Diagnostic> {
    let mut builder = Builder {
        source,
        stack: Vec::new(),
        root: None,
        spans: SpanIndex::default(),
        anchors: HashMap::new(),
        nodes: 0,
    };
    let mut documents = 0;
    for event in Parser::new_from_str(&source.text) {
        let (event, span) = event.map_err(|err| {
            let at = location(err.marker());
            let mut diagnostic =
                source.diagnostic(Some(at), format!("invalid YAML: {}", err.info()));
            if err.info().contains("tab") {
                diagnostic = diagnostic
                    .with_hint("indent with spaces: YAML does not allow tabs for indentation");
            }
            diagnostic
        })?;
        let at = location(&span.start);
        match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(source
                        .diagnostic(
                            Some(at),
                            "the pipeline file holds more than one YAML document",
                        )
                        .with_hint("keep one pipeline per file; remove the `---` separator"));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let forced_string = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let value = if style == ScalarStyle::Plain && !forced_string {
                    resolve_plain_scalar(&text)
                } else {
                    Value::String(text.into_owned())
                };
                if anchor > 0 {
                    builder.anchors.insert(anchor, (value.clone(), 1));
                }
                builder.place(value, 1, at)?;
            }
            Event::SequenceStart(anchor, _) => {
                let path = builder.child_path(at)?;
                builder.spans.values.insert(path.clone(), at);
                builder.stack.push(Frame::Sequence {
                    path,
                    anchor,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, _) => {
                let path = builder.child_path(at)?;
                builder.spans.values.insert(path.clone(), at);
                builder.stack.push(Frame::Mapping {
                    path,
                    anchor,
                    map: Map::new(),
                    pending_key: None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor, start) = match builder.stack.pop() {
                    Some(Frame::Sequence {
                        items,
                        anchor,
                        path,
                    }) => (Value::Array(items), anchor, path),
                    Some(Frame::Mapping {
                        map, anchor, path, ..
                    }) => (Value::Object(map), anchor, path),
                    None => continue,
                };
                let at = builder.spans.value(&start).unwrap_or(at);
                if anchor > 0 {
                    let size = count_nodes(&value);
                    builder.anchors.insert(anchor, (value.clone(), size));
                }
                builder.place(value, 0, at)?;
            }
            Event::Alias(id) => {
                let Some((value, size)) = builder.anchors.get(&id).cloned() else {
                    return Err(source.diagnostic(Some(at), "alias refers to an unknown anchor"));
                };
                builder.place(value, size, at)?;
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
    }
    match builder.root {
        Some(value) => Ok(Document {
            value,
            spans: builder.spans,
        }),
        None => Err(source
            .diagnostic(None, "the pipeline file is empty")
            .with_hint("start from pipelines/demo.yaml, or run `shipit schema` for the format")),
    }
}

impl Builder<'_> {
    /// The path the next value will get, given where the parser is.
    fn child_path(&self, at: Location) -> Result<DocPath, Diagnostic> {
        match self.stack.last() {
            None => Ok(DocPath::root()),
            Some(Frame::Sequence { path, items, .. }) => Ok(path.index(items.len())),
            Some(Frame::Mapping {
                path,
                pending_key: Some(key),
                ..
            }) => Ok(path.key(key.clone())),
            Some(Frame::Mapping {
                pending_key: None, ..
            }) => Err(self.source.diagnostic(
                Some(at),
                "mapping keys must be plain strings, not lists or mappings",
            )),
        }
    }

    fn place(&mut self, value: Value, size: usize, at: Location) -> Result<(), Diagnostic> {
        self.nodes += size;
        if self.nodes > MAX_NODES {
            return Err(self.source.diagnostic(
                Some(at),
                format!("the document expands to more than {MAX_NODES} values (through aliases?)"),
            ));
        }
        let source = self.source;
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Sequence { path, items, .. }) => {
                self.spans
                    .values
                    .entry(path.index(items.len()))
                    .or_insert(at);
                items.push(value);
            }
            Some(Frame::Mapping {
                path,
                map,
                pending_key,
                ..
            }) => match pending_key.take() {
                Some(key) => {
                    self.spans.values.entry(path.key(key.clone())).or_insert(at);
                    map.insert(key, value);
                }
                None => {
                    let key = match value {
                        Value::String(s) => s,
                        Value::Null => "null".to_owned(),
                        Value::Bool(b) => b.to_string(),
                        Value::Number(n) => n.to_string(),
                        Value::Array(_) | Value::Object(_) => {
                            return Err(source.diagnostic(
                                Some(at),
                                "mapping keys must be plain strings, not lists or mappings",
                            ));
                        }
                    };
                    if map.contains_key(&key) {
                        return Err(source
                            .diagnostic(Some(at), format!("duplicate key `{key}`"))
                            .with_hint(
                                "each key may appear once per mapping; merge the two entries",
                            ));
                    }
                    self.spans.keys.insert(path.key(key.clone()), at);
                    *pending_key = Some(key);
                }
            },
        }
        Ok(())
    }
}

fn count_nodes(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Object(map) => 1 + map.values().map(count_nodes).sum::<usize>(),
        _ => 1,
    }
}

/// Resolves an unquoted scalar with the YAML 1.2 core schema: `yes`/`no`/`on` stay strings
/// (the YAML 1.1 "Norway problem" does not exist here), numbers and booleans are typed.
pub fn resolve_plain_scalar(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Some(n) = parse_integer(text) {
        return n;
    }
    let looks_like_float = text
        .trim_start_matches(['-', '+'])
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == '.')
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'));
    if looks_like_float && let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
        return Value::Number(n);
    }
    Value::String(text.to_owned())
}

fn parse_integer(text: &str) -> Option<Value> {
    let (digits, radix) = if let Some(hex) = text.strip_prefix("0x") {
        (hex, 16)
    } else if let Some(oct) = text.strip_prefix("0o") {
        (oct, 8)
    } else {
        (text, 10)
    };
    if digits.is_empty() {
        return None;
    }
    if radix == 10 {
        let body = digits.strip_prefix(['-', '+']).unwrap_or(digits);
        if body.is_empty() || !body.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        if let Ok(n) = digits.parse::<i64>() {
            return Some(Value::Number(n.into()));
        }
        return digits.parse::<u64>().ok().map(|n| Value::Number(n.into()));
    }
    u64::from_str_radix(digits, radix)
        .ok()
        .map(|n| Value::Number(n.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn doc(text: &str) -> Result<Document, Diagnostic> {
        parse(&SourceFile {
            path: Path::new("p.yaml").into(),
            text: text.into(),
        })
    }

    #[test]
    fn values_and_their_positions_are_recorded() {
        let d = doc("name: shop\nimages:\n  web:\n    context: services/web\n    tags: [a, b]\n")
            .unwrap();
        assert_eq!(d.value["images"]["web"]["context"], "services/web");
        let path = DocPath::root().key("images").key("web").key("context");
        assert_eq!(d.spans.value(&path), Some(Location { line: 4, col: 14 }));
        assert_eq!(d.spans.key(&path), Some(Location { line: 4, col: 5 }));
        let tag = DocPath::root()
            .key("images")
            .key("web")
            .key("tags")
            .index(1);
        assert_eq!(d.spans.value(&tag), Some(Location { line: 5, col: 15 }));
    }

    #[test]
    fn unknown_paths_fall_back_to_the_nearest_parent() {
        let d = doc("deploy:\n  web:\n    image: web\n").unwrap();
        let path = DocPath::root().key("deploy").key("web").key("missing");
        assert_eq!(d.spans.value(&path), Some(Location { line: 3, col: 5 }));
    }

    #[test]
    fn core_schema_scalars_are_typed_and_quoted_ones_stay_strings() {
        let d = doc("a: 1\nb: '1'\nc: yes\nd: true\ne: ~\nf: 1.5\ng: 0x10\nh: !!str 2\ni: 1.2.3\n")
            .unwrap();
        assert_eq!(d.value["a"], 1);
        assert_eq!(d.value["b"], "1");
        assert_eq!(d.value["c"], "yes");
        assert_eq!(d.value["d"], true);
        assert_eq!(d.value["e"], Value::Null);
        assert_eq!(d.value["f"], 1.5);
        assert_eq!(d.value["g"], 16);
        assert_eq!(d.value["h"], "2");
        assert_eq!(d.value["i"], "1.2.3");
    }

    #[test]
    fn duplicate_keys_are_an_error_at_the_second_key() {
        let err = doc("name: a\nname: b\n").unwrap_err();
        assert_eq!(err.location, Some(Location { line: 2, col: 1 }));
        assert!(err.message.contains("duplicate key `name`"), "{err}");
    }

    #[test]
    fn tab_indentation_is_a_syntax_error_with_a_hint() {
        let err = doc("images:\n\tweb: {}\n").unwrap_err();
        assert_eq!(err.location.map(|l| l.line), Some(2));
        assert!(err.to_string().contains("invalid YAML"), "{err}");
    }

    #[test]
    fn malformed_yaml_reports_line_and_column() {
        let err = doc("name: [unclosed\nversion: 1\n").unwrap_err();
        assert!(err.location.is_some());
        assert!(err.to_string().starts_with("p.yaml:"), "{err}");
    }

    #[test]
    fn aliases_expand_and_bombs_are_refused() {
        let d = doc("base: &b {a: 1}\nother: *b\n").unwrap();
        assert_eq!(d.value["other"]["a"], 1);
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for name in 'b'..='j' {
            bomb.push_str(&format!("{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
            prev = name;
        }
        let err = doc(&bomb).unwrap_err();
        assert!(err.message.contains("expands to more than"), "{err}");
    }

    #[test]
    fn empty_and_multi_document_files_are_errors() {
        assert!(doc("").unwrap_err().message.contains("empty"));
        assert!(
            doc("# only a comment\n")
                .unwrap_err()
                .message
                .contains("empty")
        );
        assert!(
            doc("a: 1\n---\nb: 2\n")
                .unwrap_err()
                .message
                .contains("more than one")
        );
    }

    #[test]
    fn complex_keys_are_refused() {
        let err = doc("? [a, b]\n: 1\n").unwrap_err();
        assert!(
            err.message.contains("mapping keys must be plain strings"),
            "{err}"
        );
    }
}
