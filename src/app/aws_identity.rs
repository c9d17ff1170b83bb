//! Whose AWS credentials a run uses: with an `aws:` block and a CI job that offers an OIDC
//! token (GitHub Actions' `id-token: write`, a GitLab `id_tokens:` variable), the role the block
//! names, assumed with that token; otherwise the standard AWS credential chain, unchanged.

use super::{AppError, EnvVars};
use crate::config_problem::ValidateConfig;
use crate::credentials::ci_identity_token::IdentityTokenSource;
use crate::credentials::web_identity_role::{RoleRequest, WebIdentityRole};
use crate::pipeline::interpolate::{Values, interpolate_value};
use crate::pipeline::model::AwsRole;
use crate::pipeline::{DocPath, LoadError, Pipeline, deserialize_at};
use crate::report::{OutputMode, Verbosity};
use crate::stages::AwsIdentity;

/// The run's AWS identity, and a warning when the pipeline names a role that this CI job
/// cannot assume (it offers no token).
pub(super) fn aws_identity(
    pipeline: &Pipeline,
    values: &Values,
    run_id: &str,
) -> Result<(AwsIdentity, Option<String>), AppError> {
    let Some(role) = resolved_role(pipeline, values)? else {
        return Ok((AwsIdentity::credential_chain(), None));
    };
    let env = &values.env;
    let Some(source) = IdentityTokenSource::from_env(env, role.token_env()) else {
        let chain = AwsIdentity::credential_chain().in_region(role.region.clone());
        return Ok((chain, missing_token_warning(&role, env)));
    };
    let request = RoleRequest {
        role_arn: role.role_arn.clone(),
        session_name: role
            .session_name
            .clone()
            .unwrap_or_else(|| format!("shipit-{run_id}")),
        duration: role.session_duration(),
        region: role.region.clone(),
    };
    let identity = AwsIdentity::web_identity_role(WebIdentityRole::new(source, request));
    Ok((identity, None))
}

/// The `aws:` block with its expressions resolved and checked again.
fn resolved_role(pipeline: &Pipeline, values: &Values) -> Result<Option<AwsRole>, AppError> {
    let path = DocPath::root().key("aws");
    let Some(raw) = pipeline.raw(&path) else {
        return Ok(None);
    };
    let invalid = |diagnostics| AppError::invalid(LoadError::Invalid(diagnostics));
    let resolved = interpolate_value(raw, values, &path)
        .map_err(|(at, message)| invalid(vec![pipeline.diagnostic_at(&at, message)]))?;
    let role: AwsRole = deserialize_at(&pipeline.source, &pipeline.document, &resolved, &path)
        .map_err(|diagnostic| invalid(vec![diagnostic]))?;
    let problems = role.problems();
    if !problems.is_empty() {
        return Err(invalid(
            problems
                .iter()
                .map(|problem| {
                    pipeline
                        .diagnostic_at(&path.join_relative(&problem.path), format!("aws.{problem}"))
                })
                .collect(),
        ));
    }
    Ok(Some(role))
}

/// Said in GitHub Actions or GitLab only: on a laptop the credential chain is what is meant.
fn missing_token_warning(role: &AwsRole, env: &EnvVars) -> Option<String> {
    let detected = OutputMode::detect(
        &|name| env.get(name).cloned(),
        false,
        true,
        Verbosity::Normal,
    );
    let how = match detected.ci? {
        crate::report::CiSystem::GithubActions => {
            "give the job `permissions: id-token: write`".to_owned()
        }
        crate::report::CiSystem::Gitlab => format!(
            "give the job an `id_tokens:` entry named {}",
            role.token_env()
        ),
        crate::report::CiSystem::Other => return None,
    };
    Some(format!(
        "aws.role_arn names {}, but this job offers no OIDC token to assume it with, so AWS \
         calls use the standard credential chain; to assume the role, {how}",
        role.role_arn
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::SourceFile;

    fn pipeline(text: &str) -> (tempfile::TempDir, Pipeline) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shipit.yaml");
        std::fs::write(&path, text).unwrap();
        let pipeline = Pipeline::from_source(SourceFile::read(&path).unwrap(), None).unwrap();
        (dir, pipeline)
    }

    fn values(pairs: &[(&str, &str)]) -> Values {
        Values {
            env: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            vars: [(
                "role".to_owned(),
                "arn:aws:iam::123456789012:role/ci".to_owned(),
            )]
            .into(),
            ..Values::default()
        }
    }

    const WITH_ROLE: &str =
        "version: 1\nname: app\nvars: { role: x }\naws:\n  role_arn: \"${{ vars.role }}\"\n";

    #[test]
    fn without_an_aws_block_or_a_token_the_chain_is_used() {
        let (_dir, plain) = pipeline("version: 1\nname: app\n");
        let (identity, warning) = aws_identity(&plain, &values(&[]), "r1").unwrap();
        assert_eq!(identity.cache_label(), "");
        assert_eq!(warning, None);
        let (_dir, with_role) = pipeline(WITH_ROLE);
        let (identity, warning) = aws_identity(&with_role, &values(&[]), "r1").unwrap();
        assert_eq!(identity.cache_label(), "");
        assert_eq!(warning, None, "a laptop is not warned");
    }

    #[test]
    fn a_job_with_a_token_assumes_the_resolved_role() {
        let (_dir, with_role) = pipeline(WITH_ROLE);
        let (identity, _) =
            aws_identity(&with_role, &values(&[("AWS_ID_TOKEN", "jwt")]), "r1").unwrap();
        assert_eq!(identity.cache_label(), "arn:aws:iam::123456789012:role/ci");
    }

    #[test]
    fn a_github_job_without_id_token_permission_is_told_how_to_get_one() {
        let (_dir, with_role) = pipeline(WITH_ROLE);
        let (identity, warning) =
            aws_identity(&with_role, &values(&[("GITHUB_ACTIONS", "true")]), "r1").unwrap();
        assert_eq!(identity.cache_label(), "");
        let warning = warning.expect("a warning");
        assert!(warning.contains("id-token: write"), "{warning}");
    }

    #[test]
    fn a_role_that_resolves_to_no_arn_is_invalid_input_at_its_line() {
        let (_dir, bad) =
            pipeline("version: 1\nname: app\naws:\n  role_arn: \"${{ env.ROLE }}\"\n");
        let err = aws_identity(
            &bad,
            &values(&[("ROLE", "deploy"), ("AWS_ID_TOKEN", "t")]),
            "r1",
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(message.contains(":4:"), "{message}");
        assert!(
            message.contains("aws.role_arn: `deploy` is not an IAM role ARN"),
            "{message}"
        );
    }
}
