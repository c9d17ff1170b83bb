//! The pipeline parser never panics: a corpus of tricky files (kept in tests/corpus/pipeline,
//! add every input that ever broke it) and generated inputs, YAML-shaped and random.

use std::path::Path;

use proptest::prelude::*;
use shipit::pipeline::{LoadError, Pipeline, SourceFile};

fn parse_bytes(bytes: &[u8]) {
    if let Ok(source) = SourceFile::from_bytes(Path::new("fuzz.yaml"), bytes.to_vec()) {
        // Errors are fine; panics and hangs are not.
        let _ = Pipeline::from_source(source, Some("prod"));
    }
}

#[test]
fn the_corpus_parses_without_panicking() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/pipeline");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus folder") {
        let path = entry.unwrap().path();
        parse_bytes(&std::fs::read(&path).unwrap());
        count += 1;
    }
    assert!(count >= 10, "the corpus has {count} files");
}

#[test]
fn deeply_nested_flow_collections_are_an_error_not_a_crash() {
    let text = "[".repeat(100_000) + &"]".repeat(100_000);
    let source = SourceFile::from_bytes(Path::new("fuzz.yaml"), text.into_bytes())
        .expect("brackets are a readable file");
    let error = Pipeline::from_source(source, Some("prod"))
        .expect_err("100,000 nested lists are not a pipeline");
    // Messages only: a diagnostic also quotes its 200,000-character line.
    let LoadError::Invalid(diagnostics) = &error else {
        panic!("expected the file to be reported invalid, got {error}");
    };
    let messages: Vec<&str> = diagnostics.iter().map(|d| d.message.as_str()).collect();
    let [diagnostic] = diagnostics.as_slice() else {
        panic!("expected one problem, got {messages:?}");
    };
    // The parser gives up at its nesting limit, on the first line, before building anything.
    assert!(
        diagnostic.message.contains("recursion limit exceeded"),
        "{}",
        diagnostic.message
    );
    assert_eq!(
        diagnostic.location.map(|at| at.line),
        Some(1),
        "{:?}",
        diagnostic.location
    );
}

fn yaml_fragment() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "version: 1\n",
        "name: a\n",
        "images:\n",
        "  web:\n",
        "    context: .\n",
        "deploy:\n",
        "  x:\n",
        "    image: web\n",
        "    needs: [x]\n",
        "    docker: {replicas: 2}\n",
        "    ecs: {}\n",
        "vars:\n",
        "  v: ${{ env.A }}\n",
        "  w: ${{ vars.v }}\n",
        "environments: {prod: {vars: {v: 1}}}\n",
        "- a\n",
        "\t",
        "  ",
        "&a ",
        "*a ",
        "!!str ",
        "? ",
        ": ",
        "{",
        "}",
        "[",
        "]",
        "\"",
        "'",
        "#",
        "---\n",
        "${{",
        "}}",
        "\n",
        "|\n",
        ">\n",
        "~",
        "null",
        "0x",
        "1e9",
        "é",
        "\u{feff}",
    ]);
    prop::collection::vec(atoms, 0..40).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: Some(Box::new(
        proptest::test_runner::FileFailurePersistence::WithSource("regressions"))), ..ProptestConfig::default() })]

    #[test]
    fn yaml_shaped_input_never_panics(text in yaml_fragment()) {
        parse_bytes(text.as_bytes());
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_bytes(&bytes);
    }
}
