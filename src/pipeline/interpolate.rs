//! `${{ … }}` expressions: parsing, checking where each reference may be used, and resolving.
//!
//! Only `${{ … }}` is shipit's; a plain `$VAR` or `${VAR}` is left untouched for the shell or
//! the container that reads it (the `$${VAR}` escaping trap of other CI tools does not exist).
//! Write `$${{` for a literal `${{`.

use std::collections::BTreeMap;

use serde_json::Value;

use super::path::DocPath;

/// A reference inside `${{ … }}`, e.g. `images.web.digest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub parts: Vec<String>,
}

impl Reference {
    pub fn namespace(&self) -> &str {
        &self.parts[0]
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.parts.join("."))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Expr(Reference),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub message: String,
}

fn template_error(message: impl Into<String>) -> TemplateError {
    TemplateError {
        message: message.into(),
    }
}

/// Splits a string into literal text and expressions.
pub fn parse_template(text: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        if rest[..start].ends_with('$') {
            literal.push_str(&rest[..start - 1]);
            literal.push_str("${{");
            rest = &rest[start + 3..];
            continue;
        }
        literal.push_str(&rest[..start]);
        let after = &rest[start + 3..];
        let Some(end) = after.find("}}") else {
            return Err(template_error(format!(
                "`${{{{` at `{}` is never closed with `}}}}`",
                excerpt(&rest[start..])
            )));
        };
        let expression = after[..end].trim();
        pieces.push(Piece::Text(std::mem::take(&mut literal)));
        pieces.push(Piece::Expr(parse_reference(expression)?));
        rest = &after[end + 2..];
    }
    literal.push_str(rest);
    pieces.push(Piece::Text(literal));
    pieces.retain(|p| !matches!(p, Piece::Text(t) if t.is_empty()));
    Ok(pieces)
}

fn excerpt(text: &str) -> String {
    text.chars().take(24).collect()
}

fn parse_reference(expression: &str) -> Result<Reference, TemplateError> {
    if expression.is_empty() {
        return Err(template_error("empty expression `${{ }}`"));
    }
    let parts: Vec<String> = expression.split('.').map(str::to_owned).collect();
    let valid = |part: &String| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !parts.iter().all(valid) {
        return Err(template_error(format!(
            "`{expression}` is not a reference; expressions are dotted names such as env.NAME, vars.NAME, git.sha, run.id or images.NAME.digest"
        )));
    }
    Ok(Reference { parts })
}

/// Which references a part of the file may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `vars` and `environments.*.vars`: resolved before any stage runs.
    Vars,
    /// `images.*`: resolved when a build or push stage starts.
    Image,
    /// `deploy.*`: resolved when the deploy stage starts, after its images exist.
    Deploy,
}

pub const GIT_FIELDS: &[&str] = &["sha", "short_sha", "branch", "tag", "dirty"];
pub const IMAGE_FIELDS: &[&str] = &["digest", "ref", "id"];

/// Checks a reference against what exists and what the scope allows. `vars` and `images` are the
/// names the pipeline defines.
pub fn check_reference(
    reference: &Reference,
    scope: Scope,
    vars: &dyn Fn(&str) -> bool,
    images: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    let parts = &reference.parts;
    match (parts[0].as_str(), parts.len()) {
        ("env", 2) => Ok(()),
        ("vars", 2) if scope == Scope::Vars => Err(format!(
            "`{reference}`: vars cannot refer to other vars; use env.*, git.* or run.id here"
        )),
        ("vars", 2) if vars(&parts[1]) => Ok(()),
        ("vars", 2) => Err(format!(
            "`{reference}` names no variable defined under `vars`"
        )),
        ("git", 2) if GIT_FIELDS.contains(&parts[1].as_str()) => Ok(()),
        ("git", _) => Err(format!(
            "`{reference}`: git offers {}",
            GIT_FIELDS.join(", ")
        )),
        ("run", 2) if parts[1] == "id" => Ok(()),
        ("run", _) => Err(format!("`{reference}`: run offers only run.id")),
        ("images", 3) if scope != Scope::Deploy => Err(format!(
            "`{reference}`: image outputs exist only once the image is built; use them under `deploy`"
        )),
        ("images", 3) if !images(&parts[1]) => Err(format!(
            "`{reference}` names no image defined under `images`"
        )),
        ("images", 3) if IMAGE_FIELDS.contains(&parts[2].as_str()) => Ok(()),
        ("images", _) => Err(format!(
            "`{reference}`: write images.NAME.{}",
            IMAGE_FIELDS.join("|")
        )),
        (namespace, _) if ["env", "vars"].contains(&namespace) => {
            Err(format!("`{reference}`: write {namespace}.NAME"))
        }
        (namespace, _) => Err(format!(
            "`{reference}`: unknown namespace `{namespace}`; use env, vars, git, run or images"
        )),
    }
}

/// Every value a reference can resolve to at some moment of the run. Missing entries are
/// reported as the reason the reference cannot be resolved yet.
#[derive(Debug, Clone, Default)]
pub struct Values {
    pub env: BTreeMap<String, String>,
    pub vars: BTreeMap<String, String>,
    pub git: BTreeMap<String, String>,
    /// Why git values are missing (not a repository), for the error message.
    pub git_unavailable: Option<String>,
    pub run_id: Option<String>,
    /// `images.<name>.<field>`, filled as build and push stages record their outputs.
    pub images: BTreeMap<String, BTreeMap<String, String>>,
}

impl Values {
    pub fn lookup(&self, reference: &Reference) -> Result<String, String> {
        let parts = &reference.parts;
        let missing = |what: String| Err(what);
        match parts[0].as_str() {
            "env" => match self.env.get(&parts[1]) {
                Some(v) => Ok(v.clone()),
                None => missing(format!("environment variable `{}` is not set", parts[1])),
            },
            "vars" => match self.vars.get(&parts[1]) {
                Some(v) => Ok(v.clone()),
                None => missing(format!("`{reference}` is not defined")),
            },
            "git" => match self.git.get(&parts[1]) {
                Some(v) => Ok(v.clone()),
                None => missing(
                    self.git_unavailable
                        .clone()
                        .unwrap_or_else(|| format!("`{reference}` has no value in this checkout")),
                ),
            },
            "run" => self
                .run_id
                .clone()
                .ok_or_else(|| "run.id exists only once a run starts".to_owned()),
            "images" => match self.images.get(&parts[1]).and_then(|m| m.get(&parts[2])) {
                Some(v) => Ok(v.clone()),
                None => missing(format!(
                    "`{reference}` is not known yet: the image has not been {}",
                    if parts[2] == "id" { "built" } else { "pushed" }
                )),
            },
            _ => missing(format!("`{reference}` is not a known reference")),
        }
    }
}

/// Replaces every expression in `text`.
pub fn interpolate_str(text: &str, values: &Values) -> Result<String, String> {
    let pieces = parse_template(text).map_err(|e| e.message)?;
    let mut out = String::with_capacity(text.len());
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(&t),
            Piece::Expr(reference) => out.push_str(&values.lookup(&reference)?),
        }
    }
    Ok(out)
}

/// Replaces every expression in every string of `value`; the error names the path of the
/// string that could not be resolved.
pub fn interpolate_value(
    value: &Value,
    values: &Values,
    path: &DocPath,
) -> Result<Value, (DocPath, String)> {
    Ok(match value {
        Value::String(s) => {
            Value::String(interpolate_str(s, values).map_err(|e| (path.clone(), e))?)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| interpolate_value(v, values, &path.index(i)))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    Ok((
                        k.clone(),
                        interpolate_value(v, values, &path.key(k.clone()))?,
                    ))
                })
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

/// Every reference used anywhere inside `value`, with the path of the string holding it.
pub fn references_in(
    value: &Value,
    path: &DocPath,
    out: &mut Vec<(DocPath, Result<Reference, TemplateError>)>,
) {
    match value {
        Value::String(s) => match parse_template(s) {
            Ok(pieces) => out.extend(pieces.into_iter().filter_map(|p| match p {
                Piece::Expr(r) => Some((path.clone(), Ok(r))),
                Piece::Text(_) => None,
            })),
            Err(err) => out.push((path.clone(), Err(err))),
        },
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                references_in(v, &path.index(i), out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                references_in(v, &path.key(k.clone()), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(text: &str) -> Reference {
        Reference {
            parts: text.split('.').map(str::to_owned).collect(),
        }
    }

    #[test]
    fn templates_split_into_text_and_references() {
        let pieces = parse_template("v-${{ git.short_sha }}-${{env.X}}").unwrap();
        assert_eq!(
            pieces,
            vec![
                Piece::Text("v-".into()),
                Piece::Expr(reference("git.short_sha")),
                Piece::Text("-".into()),
                Piece::Expr(reference("env.X")),
            ]
        );
    }

    #[test]
    fn shell_variables_and_escaped_expressions_are_left_alone() {
        assert_eq!(
            parse_template("echo $HOME ${PATH}").unwrap(),
            vec![Piece::Text("echo $HOME ${PATH}".into())]
        );
        assert_eq!(
            parse_template("$${{ not.me }}").unwrap(),
            vec![Piece::Text("${{ not.me }}".into())]
        );
    }

    #[test]
    fn malformed_expressions_are_errors() {
        assert!(
            parse_template("${{ git.sha")
                .unwrap_err()
                .message
                .contains("never closed")
        );
        assert!(
            parse_template("${{ }}")
                .unwrap_err()
                .message
                .contains("empty")
        );
        assert!(
            parse_template("${{ env.A || 'x' }}")
                .unwrap_err()
                .message
                .contains("not a reference")
        );
    }

    #[test]
    fn references_are_checked_against_their_scope() {
        let vars = |n: &str| n == "cluster";
        let images = |n: &str| n == "web";
        let check = |r: &str, scope| check_reference(&reference(r), scope, &vars, &images);
        assert!(check("vars.cluster", Scope::Deploy).is_ok());
        assert!(
            check("vars.nope", Scope::Deploy)
                .unwrap_err()
                .contains("names no variable")
        );
        assert!(
            check("vars.cluster", Scope::Vars)
                .unwrap_err()
                .contains("cannot refer to other vars")
        );
        assert!(check("images.web.digest", Scope::Deploy).is_ok());
        assert!(
            check("images.web.digest", Scope::Image)
                .unwrap_err()
                .contains("under `deploy`")
        );
        assert!(
            check("images.api.digest", Scope::Deploy)
                .unwrap_err()
                .contains("names no image")
        );
        assert!(check("images.web.size", Scope::Deploy).is_err());
        assert!(check("git.sha", Scope::Vars).is_ok());
        assert!(check("git.author", Scope::Vars).is_err());
        assert!(check("run.id", Scope::Image).is_ok());
        assert!(
            check("secrets.x", Scope::Image)
                .unwrap_err()
                .contains("unknown namespace")
        );
    }

    #[test]
    fn resolution_reports_what_is_missing() {
        let mut values = Values::default();
        values.env.insert("REGION".into(), "eu-west-1".into());
        assert_eq!(
            interpolate_str("r=${{ env.REGION }}", &values).unwrap(),
            "r=eu-west-1"
        );
        assert!(
            interpolate_str("${{ env.NOPE }}", &values)
                .unwrap_err()
                .contains("`NOPE` is not set")
        );
        values.git_unavailable = Some("not a git repository".into());
        assert!(
            interpolate_str("${{ git.sha }}", &values)
                .unwrap_err()
                .contains("not a git repository")
        );
        assert!(
            interpolate_str("${{ images.web.digest }}", &values)
                .unwrap_err()
                .contains("not been pushed")
        );
    }

    #[test]
    fn values_are_interpolated_deeply_and_errors_name_the_path() {
        let mut values = Values::default();
        values.vars.insert("c".into(), "prod".into());
        let input = serde_json::json!({"a": ["${{ vars.c }}", 3], "b": {"c": "x-${{ vars.c }}"}});
        let out = interpolate_value(&input, &values, &DocPath::root()).unwrap();
        assert_eq!(
            out,
            serde_json::json!({"a": ["prod", 3], "b": {"c": "x-prod"}})
        );
        let bad = serde_json::json!({"a": [1, "${{ vars.zz }}"]});
        let (path, _) = interpolate_value(&bad, &values, &DocPath::root()).unwrap_err();
        assert_eq!(path.to_string(), "a[1]");
    }
}
