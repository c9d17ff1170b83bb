//! Manifest files as documents: the YAML stream split at its `---` markers, each document read
//! by the pipeline's own YAML reader (so both agree on scalars, anchors and limits), and checked
//! for what every Kubernetes object needs before anything is sent.

use std::path::Path;

use serde_json::Value;

use super::error::EksDeployError;
use super::spec::ManifestDocument;
use crate::pipeline::source::SourceFile;
use crate::pipeline::yaml;

/// Reads every document of a manifest file. Empty documents (only comments, or `null`) are
/// skipped, as `kubectl apply` skips them; `index` still counts them, so "document 3" is the
/// third in the file.
pub fn parse_manifest(file: &str, text: &str) -> Result<Vec<ManifestDocument>, EksDeployError> {
    let mut documents = Vec::new();
    for (position, chunk) in split_documents(text).into_iter().enumerate() {
        let index = position + 1;
        if is_blank(&chunk.text) {
            continue;
        }
        // Blank lines in front keep the reader's line numbers those of the whole file.
        let source = SourceFile {
            path: Path::new(file).to_path_buf(),
            text: format!("{}{}", "\n".repeat(chunk.first_line - 1), chunk.text),
        };
        let parsed = yaml::parse(&source).map_err(|diagnostic| {
            EksDeployError::config(format!("{file}: document {index}: {diagnostic}"))
                .with_hint("fix the manifest; `kubectl apply --dry-run=client -f` shows the same")
        })?;
        if parsed.value.is_null() {
            continue;
        }
        let at = format!("{file}:{}: document {index}", chunk.first_line);
        check_object(&parsed.value, &at)?;
        documents.push(ManifestDocument {
            file: file.to_owned(),
            index,
            object: parsed.value,
        });
    }
    Ok(documents)
}

/// The fields the API server needs to know what an object is and which one.
fn check_object(value: &Value, at: &str) -> Result<(), EksDeployError> {
    if !value.is_object() {
        return Err(EksDeployError::config(format!(
            "{at}: is not a Kubernetes object (a mapping with apiVersion, kind and metadata.name)"
        )));
    }
    if value.get("kind").and_then(Value::as_str) == Some("List") {
        return Err(EksDeployError::config(format!(
            "{at}: is a `kind: List`; shipit applies objects one by one"
        ))
        .with_hint("write the items as separate documents, separated by `---`"));
    }
    let missing: Vec<&str> = [
        ("apiVersion", value.get("apiVersion")),
        ("kind", value.get("kind")),
        (
            "metadata.name",
            value.get("metadata").and_then(|meta| meta.get("name")),
        ),
    ]
    .into_iter()
    .filter(|(_, field)| field.and_then(Value::as_str).is_none_or(str::is_empty))
    .map(|(name, _)| name)
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(EksDeployError::config(format!(
        "{at}: has no {}",
        missing.join(", no ")
    ))
    .with_hint("every object needs apiVersion, kind and metadata.name (generateName is not supported: a rerun would create another object)"))
}

struct Chunk {
    /// 1-based line of the document's first line in the file.
    first_line: usize,
    text: String,
}

/// Splits a YAML stream at its document markers. A `---` at the start of a line always starts
/// a document in YAML (block scalars are indented), so this split never cuts a value in two;
/// content after the marker on the same line (`--- {…}`) stays, with the marker blanked so
/// columns are unchanged. `...` ends a document.
fn split_documents(text: &str) -> Vec<Chunk> {
    let mut chunks = vec![Chunk {
        first_line: 1,
        text: String::new(),
    }];
    let mut ended = false;
    for (number, line) in text.split_inclusive('\n').enumerate() {
        let line_number = number + 1;
        if let Some(rest) = marker_rest(line, "---") {
            chunks.push(Chunk {
                first_line: line_number,
                text: format!("   {rest}"),
            });
            ended = false;
            continue;
        }
        if marker_rest(line, "...").is_some() {
            ended = true;
            continue;
        }
        if let Some(last) = chunks.last_mut() {
            if ended {
                // Only comments and directives may follow `...`; keep lines aligned.
                last.text.push('\n');
            } else {
                last.text.push_str(line);
            }
        }
    }
    // A file starting with `---` has an empty first chunk that is not a document of its own.
    if chunks.len() > 1 && is_blank(&chunks[0].text) {
        chunks.remove(0);
    }
    chunks
}

fn marker_rest<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(marker)?;
    (rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n'])).then_some(rest)
}

fn is_blank(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#') || line.starts_with('%')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::eks::EksErrorKind;

    #[test]
    fn reads_every_document_of_a_stream_in_order() {
        let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n";
        let documents = parse_manifest("k8s/web.yaml", text).unwrap();
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[0].object["kind"], "Service");
        assert_eq!(documents[1].object["spec"]["replicas"], 3);
        assert_eq!(
            (documents[1].file.as_str(), documents[1].index),
            ("k8s/web.yaml", 2)
        );
    }

    #[test]
    fn skips_empty_documents_but_keeps_counting_them() {
        let text = "---\n# only a comment\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n...\n";
        let documents = parse_manifest("a.yaml", text).unwrap();
        assert_eq!(documents.len(), 1);
        assert_eq!(documents[0].index, 3);
    }

    #[test]
    fn a_document_that_is_only_null_is_skipped_like_an_empty_one() {
        let text = "~\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n";
        let documents = parse_manifest("a.yaml", text).unwrap();
        assert_eq!(documents.len(), 1);
        assert_eq!(documents[0].index, 2);
    }

    #[test]
    fn keeps_content_after_a_document_marker_and_block_scalars_intact() {
        let text = "--- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n--- \napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\ndata:\n  script: |\n    echo ---\n    --- not a marker\n";
        let documents = parse_manifest("a.yaml", text).unwrap();
        assert_eq!(documents[0].object["metadata"]["name"], "a");
        assert_eq!(
            documents[1].object["data"]["script"],
            "echo ---\n--- not a marker\n"
        );
    }

    #[test]
    fn invalid_yaml_names_the_file_document_and_line_of_the_whole_file() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: [unclosed\n";
        let err = parse_manifest("k8s/app.yaml", text).unwrap_err();
        assert_eq!(err.kind, EksErrorKind::Config);
        assert!(
            err.message
                .starts_with("k8s/app.yaml: document 2: k8s/app.yaml:"),
            "{}",
            err.message
        );
        let line: usize = err.message["k8s/app.yaml: document 2: k8s/app.yaml:".len()..]
            .split(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            line >= 6,
            "line {line} should point into the second document: {}",
            err.message
        );
    }

    #[test]
    fn an_object_without_kind_or_name_is_a_config_error_naming_what_is_missing() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: apps/v1\nmetadata: {}\n";
        let err = parse_manifest("k8s/app.yaml", text).unwrap_err();
        assert_eq!(err.kind, EksErrorKind::Config);
        assert_eq!(
            err.message,
            "k8s/app.yaml:4: document 2: has no kind, no metadata.name"
        );
    }

    #[test]
    fn a_document_that_is_not_a_mapping_is_refused() {
        let err = parse_manifest("a.yaml", "- just\n- a list\n").unwrap_err();
        assert!(
            err.message.contains("is not a Kubernetes object"),
            "{}",
            err.message
        );
    }
}
