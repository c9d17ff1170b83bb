//! The pipeline's top-level `aws:` block: the IAM role a CI job assumes with its own OpenID
//! Connect token (GitHub Actions' `id-token: write`, a GitLab `id_tokens:` variable), so one
//! shipit step does what a separate "configure AWS credentials" step would.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validate::is_env_name;
use crate::config_problem::{ConfigProblem, ValidateConfig};
use crate::duration::HumanDuration;

/// The environment variable a GitLab job's `id_tokens:` entry is read from when the block names
/// none.
pub const DEFAULT_WEB_IDENTITY_TOKEN_ENV: &str = "AWS_ID_TOKEN";

/// The shortest and longest sessions STS grants (`DurationSeconds`); a role's own maximum may be
/// lower than the longest.
const SHORTEST_SESSION: Duration = Duration::from_secs(15 * 60);
const LONGEST_SESSION: Duration = Duration::from_secs(12 * 3600);

/// The role a CI job assumes with its OIDC token. Without a token to offer (a laptop, a job
/// without `id-token: write`) shipit uses the standard AWS credential chain instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsRole {
    /// The role to assume, `arn:aws:iam::<account>:role/<name>`.
    pub role_arn: String,
    /// The session name CloudTrail shows (default `shipit-<run id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_name: Option<String>,
    /// The region of the STS endpoint, and of every AWS client that names none itself
    /// (default: the environment's, `AWS_REGION`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// How long the role's credentials last, 15m to 12h (default 1h); shipit renews them before
    /// they expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<HumanDuration>,
    /// The environment variable holding a GitLab job's ID token (its `id_tokens:` entry);
    /// default `AWS_ID_TOKEN`. Under GitHub Actions the token is requested from the runner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_identity_token_env: Option<String>,
}

impl AwsRole {
    /// The variable the GitLab job's ID token is in.
    pub fn token_env(&self) -> &str {
        self.web_identity_token_env
            .as_deref()
            .unwrap_or(DEFAULT_WEB_IDENTITY_TOKEN_ENV)
    }

    /// The session length to ask for.
    pub fn session_duration(&self) -> Duration {
        self.duration.map_or(Duration::from_secs(3600), |d| d.get())
    }
}

fn has_expression(text: &str) -> bool {
    text.contains("${{")
}

/// `arn:<partition>:iam::<12 digits>:role/<path and name>`.
fn is_role_arn(text: &str) -> bool {
    let parts: Vec<&str> = text.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts[..] else {
        return false;
    };
    arn == "arn"
        && partition.starts_with("aws")
        && service == "iam"
        && region.is_empty()
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && resource
            .strip_prefix("role/")
            .is_some_and(|name| !name.is_empty())
}

/// STS's `RoleSessionName`: 2 to 64 of letters, digits and `+=,.@_-`.
fn is_session_name(text: &str) -> bool {
    (2..=64).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

impl ValidateConfig for AwsRole {
    /// Values holding an expression are checked once resolved, when the run starts.
    fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if !has_expression(&self.role_arn) && !is_role_arn(&self.role_arn) {
            problems.push(ConfigProblem::new(
                "role_arn",
                format!(
                    "`{}` is not an IAM role ARN; write arn:aws:iam::<account>:role/<name>",
                    self.role_arn
                ),
            ));
        }
        if let Some(name) = &self.session_name
            && !has_expression(name)
            && !is_session_name(name)
        {
            problems.push(ConfigProblem::new(
                "session_name",
                format!("`{name}`: 2 to 64 letters, digits or any of +=,.@_-"),
            ));
        }
        if let Some(region) = &self.region
            && region.trim().is_empty()
        {
            problems.push(ConfigProblem::new("region", "must not be empty"));
        }
        if let Some(duration) = self.duration
            && !(SHORTEST_SESSION..=LONGEST_SESSION).contains(&duration.get())
        {
            problems.push(ConfigProblem::new(
                "duration",
                format!("`{duration}`: STS grants sessions of 15m to 12h"),
            ));
        }
        if let Some(name) = &self.web_identity_token_env
            && !is_env_name(name)
        {
            problems.push(ConfigProblem::new(
                "web_identity_token_env",
                format!("`{name}` is not an environment variable name"),
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(role_arn: &str) -> AwsRole {
        AwsRole {
            role_arn: role_arn.into(),
            session_name: None,
            region: None,
            duration: None,
            web_identity_token_env: None,
        }
    }

    #[test]
    fn a_role_arn_is_checked_unless_it_is_an_expression() {
        assert!(
            role("arn:aws:iam::123456789012:role/ci/deploy")
                .problems()
                .is_empty()
        );
        assert!(role("${{ vars.role }}").problems().is_empty());
        for wrong in [
            "arn:aws:iam::12345:role/x",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:sts::123456789012:role/x",
            "deploy",
        ] {
            let problems = role(wrong).problems();
            assert_eq!(problems.len(), 1, "{wrong}");
            assert_eq!(problems[0].path, "role_arn");
        }
    }

    #[test]
    fn every_other_field_reports_its_own_problem() {
        let block = AwsRole {
            session_name: Some("a b".into()),
            region: Some(" ".into()),
            duration: Some(HumanDuration(Duration::from_secs(60))),
            web_identity_token_env: Some("1TOKEN".into()),
            ..role("arn:aws:iam::123456789012:role/ci")
        };
        let paths: Vec<String> = block.problems().into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            [
                "session_name",
                "region",
                "duration",
                "web_identity_token_env"
            ]
        );
    }

    fn load(text: &str) -> Result<crate::pipeline::Pipeline, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shipit.yaml");
        std::fs::write(&path, text).unwrap();
        let source = crate::pipeline::SourceFile::read(&path).unwrap();
        crate::pipeline::Pipeline::from_source(source, None).map_err(|err| err.to_string())
    }

    #[test]
    fn the_file_reports_each_problem_of_the_block_and_of_secrets_at_its_line() {
        let err = load(
            "version: 1\nname: app\nsecrets: [DEPLOY_KEY, 9LIVES]\naws:\n  role_arn: deploy\n  duration: 13h\n  web_identity_token_env: \"${{ env.X }}\"\n  audience: x\n",
        )
        .unwrap_err();
        assert!(err.contains("unknown field `audience`"), "{err}");
        let err = load(
            "version: 1\nname: app\nsecrets: [DEPLOY_KEY, 9LIVES]\naws:\n  role_arn: deploy\n  duration: 13h\n  web_identity_token_env: \"${{ env.X }}\"\n",
        )
        .unwrap_err();
        for expected in [
            ":3:23: secrets[1]: `9LIVES` is not an environment variable name",
            ":5:13: aws.role_arn: `deploy` is not an IAM role ARN",
            ":6:13: aws.duration: `13h`: STS grants sessions of 15m to 12h",
            ":7:27: aws.web_identity_token_env: `${{ env.X }}` is not an environment variable name",
        ] {
            assert!(err.contains(expected), "{expected} in:\n{err}");
        }
        let fine = load(
            "version: 1\nname: app\nsecrets: [DEPLOY_KEY]\naws: { role_arn: \"arn:aws:iam::123456789012:role/ci\", session_name: \"${{ git.short_sha }}\" }\n",
        )
        .unwrap();
        assert_eq!(fine.file.secrets, ["DEPLOY_KEY"]);
        assert_eq!(
            fine.file.aws.map(|aws| aws.role_arn).as_deref(),
            Some("arn:aws:iam::123456789012:role/ci")
        );
    }

    #[test]
    fn the_schema_describes_the_block() {
        let schema =
            serde_json::to_string(&schemars::schema_for!(crate::pipeline::PipelineFile)).unwrap();
        for key in [
            "\"aws\"",
            "role_arn",
            "web_identity_token_env",
            "\"secrets\"",
        ] {
            assert!(schema.contains(key), "{key}");
        }
    }

    #[test]
    fn defaults_are_an_hour_and_aws_id_token() {
        let block = role("arn:aws:iam::123456789012:role/ci");
        assert_eq!(block.session_duration(), Duration::from_secs(3600));
        assert_eq!(block.token_env(), "AWS_ID_TOKEN");
    }
}
