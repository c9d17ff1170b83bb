//! The values a run must never show: what the pipeline declares secret, every build secret,
//! and the variables that hold credentials wherever they are set. Credentials obtained while
//! the run goes on (registry passwords, ECR tokens, OIDC tokens and role credentials) join
//! them as they are obtained (`crate::secrets::issued`).

use super::EnvVars;
use crate::pipeline::Pipeline;
use crate::pipeline::interpolate::{Values, interpolate_str};
use crate::pipeline::model::SecretSource;
use crate::secrets::SecretSet;

/// Variables that hold a credential whenever they are set: AWS's keys, the CI systems' own
/// tokens and passwords.
const CREDENTIAL_VARIABLES: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "ACTIONS_RUNTIME_TOKEN",
    "GITHUB_TOKEN",
    "CI_JOB_TOKEN",
    "CI_JOB_JWT",
    "CI_JOB_JWT_V1",
    "CI_JOB_JWT_V2",
    "CI_REGISTRY_PASSWORD",
    "CI_DEPLOY_PASSWORD",
];

/// The secret values of a run of `pipeline` in `env`.
pub(super) fn run_secrets(pipeline: &Pipeline, env: &EnvVars) -> SecretSet {
    let file = &pipeline.file;
    let mut variables: Vec<&str> = CREDENTIAL_VARIABLES.to_vec();
    variables.extend(file.secrets.iter().map(String::as_str));
    if let Some(aws) = &file.aws {
        variables.push(aws.token_env());
    }
    let mut values: Vec<String> = variables
        .into_iter()
        .filter_map(|name| env.get(name).cloned())
        .collect();
    let env_only = Values {
        env: env.clone(),
        ..Values::default()
    };
    // A secret that cannot be read now fails its build later, saying why.
    let build_secrets = file
        .images
        .values()
        .flat_map(|image| image.secrets.values())
        .filter_map(|source| resolved(source, &env_only))
        .filter_map(|source| source.read(&pipeline.base_dir, env).ok());
    values.extend(build_secrets.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()));
    SecretSet::new(values)
}

/// The source with an expression in its name resolved, as far as the environment can.
fn resolved(source: &SecretSource, values: &Values) -> Option<SecretSource> {
    Some(match source {
        SecretSource::Env(name) => SecretSource::Env(interpolate_str(name, values).ok()?),
        SecretSource::File(path) => SecretSource::File(interpolate_str(path, values).ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::SourceFile;

    fn pipeline(dir: &std::path::Path, text: &str) -> Pipeline {
        std::fs::create_dir_all(dir.join("web")).unwrap();
        std::fs::write(dir.join("web/Dockerfile"), "FROM scratch\n").unwrap();
        let path = dir.join("shipit.yaml");
        std::fs::write(&path, text).unwrap();
        Pipeline::from_source(SourceFile::read(&path).unwrap(), None).unwrap()
    }

    #[test]
    fn listed_variables_build_secrets_credentials_and_the_id_token_are_secret() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("npmrc"),
            "//registry/:_authToken=file-s3cret\n",
        )
        .unwrap();
        let pipeline = pipeline(
            dir.path(),
            "version: 1\nname: app\nsecrets: [DEPLOY_KEY, NOT_SET]\naws: { role_arn: \"arn:aws:iam::123456789012:role/ci\" }\nimages:\n  web:\n    context: web\n    secrets:\n      npm: { file: npmrc }\n      token: { env: NPM_TOKEN }\n",
        );
        let env: EnvVars = [
            ("DEPLOY_KEY", "deploy-s3cret"),
            ("NPM_TOKEN", "npm-s3cret"),
            ("AWS_SECRET_ACCESS_KEY", "aws-s3cret"),
            ("AWS_ID_TOKEN", "jwt-s3cret"),
            ("HOME", "/home/ci"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let secrets = run_secrets(&pipeline, &env);
        assert_eq!(
            secrets.mask(
                "deploy-s3cret npm-s3cret aws-s3cret jwt-s3cret //registry/:_authToken=file-s3cret /home/ci"
            ),
            "*** *** *** *** *** /home/ci"
        );
    }
}
