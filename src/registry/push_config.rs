//! The `push:` block of a pipeline file: where an image goes and how it is packed.
//!
//! The types here are plain data. `PushConfig::validate` is the only place that decides whether a
//! block is usable, so the pipeline loader can report a bad repository name or tag before any
//! stage runs.

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config_problem::{ConfigProblem, ValidateConfig};
use crate::credentials::ecr_host::ecr_host_region;
pub use crate::duration::HumanDuration;

/// What the user writes under `push:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    /// `ecr` for Amazon ECR (account and region from the AWS credential chain), an ECR host
    /// (`<account>.dkr.ecr.<region>.amazonaws.com`), or any OCI registry as `host[:port]`.
    pub registry: String,
    /// Repository inside the registry, for example `team/api`.
    pub repository: String,
    /// Tags that all point to the pushed manifest.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Compression of the layers shipit packs itself; layers that the export already holds
    /// compressed are uploaded as they are.
    #[serde(default)]
    pub compression: Compression,
    /// Compression level: gzip 1 (fastest) to 9 (smallest), default 2; zstd 1 to 19, default 3.
    /// Higher levels make layers a little smaller for much more CPU time (see the README's
    /// performance section); an unchanged layer is never compressed again either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression_level: Option<u32>,
    /// Manifest format written to the registry.
    #[serde(default)]
    pub format: ManifestFormat,
    /// Where layer content is read from: `auto` (the daemon's layer store when it is on this
    /// machine and readable, else the export), `export` (always the Engine API export), or
    /// `layer-store` (fail rather than read the export).
    #[serde(default, skip_serializing_if = "LayerSource::is_auto")]
    pub layer_source: LayerSource,
    /// Amazon ECR repository settings, applied before the push. Only with an ECR registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecr: Option<EcrSettings>,
}

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip, readable by every runtime.
    #[default]
    Gzip,
    /// zstd: smaller and faster to unpack; needs containerd 1.5+ or Docker 23+ to pull, and the
    /// OCI manifest format.
    Zstd,
}

impl Compression {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The level used when the push block names none.
    pub(crate) fn default_level(self) -> u32 {
        match self {
            Compression::Gzip => 2,
            Compression::Zstd => 3,
        }
    }

    /// The levels this compression accepts.
    pub(crate) fn levels(self) -> std::ops::RangeInclusive<u32> {
        match self {
            Compression::Gzip => 1..=9,
            Compression::Zstd => 1..=19,
        }
    }
}

/// Where a push reads the image's layers from (see `docker::image_source::layer_store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LayerSource {
    /// The layer store when it can serve the image, the export otherwise.
    #[default]
    Auto,
    /// The daemon's image export (`docker save`), whatever the daemon.
    Export,
    /// Only the layer store: a push that cannot read it fails.
    LayerStore,
}

impl LayerSource {
    fn is_auto(&self) -> bool {
        *self == LayerSource::Auto
    }
}

/// Manifest format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ManifestFormat {
    /// OCI image manifest (`application/vnd.oci.image.manifest.v1+json`).
    #[default]
    Oci,
    /// Docker image manifest v2 schema 2, for consumers that predate OCI.
    Docker,
}

/// Amazon ECR repository settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EcrSettings {
    /// Create the repository when it does not exist (otherwise a missing repository is an error).
    #[serde(default)]
    pub create_repository: bool,
    /// Make tags immutable (`true`) or mutable (`false`); left as it is when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable_tags: Option<bool>,
    /// Turn basic scan on push on or off; left as it is when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_on_push: Option<bool>,
    /// Wait for the image scan after the push and fail on findings at or above a severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_gate: Option<ScanGate>,
    /// Lifecycle policy written to the repository (replaces the one there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<LifecycleSettings>,
    /// AWS region; the credential chain's region (AWS_REGION, profile) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// ECR API endpoint, for VPC endpoints and emulators; AWS_ENDPOINT_URL_ECR and
    /// AWS_ENDPOINT_URL are honoured when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Registry host to push to instead of `<account>.dkr.ecr.<region>.amazonaws.com`
    /// (private endpoints, emulators); the environment variable SHIPIT_ECR_REGISTRY_HOST
    /// does the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_host: Option<String>,
}

/// The scan gate of an ECR push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanGate {
    /// Fail when the scan reports a finding at or above this severity.
    pub severity: Severity,
    /// How long to wait for the scan to complete (default 10m).
    #[serde(default = "ScanGate::default_timeout")]
    #[schemars(with = "String")]
    pub timeout: HumanDuration,
}

impl ScanGate {
    fn default_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(600))
    }
}

/// Finding severity, as ECR reports it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    #[serde(alias = "informational")]
    Informational,
    #[serde(alias = "low")]
    Low,
    #[serde(alias = "medium")]
    Medium,
    #[serde(alias = "high")]
    High,
    #[serde(alias = "critical")]
    Critical,
}

impl Severity {
    /// Reads a severity name as ECR writes it in `findingSeverityCounts`. `UNDEFINED` and names
    /// this version does not know yield `None`: they never trip a gate.
    pub(crate) fn from_ecr_name(name: &str) -> Option<Severity> {
        match name {
            "INFORMATIONAL" => Some(Severity::Informational),
            "LOW" => Some(Severity::Low),
            "MEDIUM" => Some(Severity::Medium),
            "HIGH" => Some(Severity::High),
            "CRITICAL" => Some(Severity::Critical),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Severity::Informational => "INFORMATIONAL",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lifecycle rules shipit writes as an ECR lifecycle policy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LifecycleSettings {
    /// Keep this many most recent images; older ones expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Expire untagged images this many days after they were pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_untagged_days: Option<u32>,
}

/// Where a push goes, read from `PushConfig::registry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RegistryKind {
    /// Amazon ECR. `host` is set when the user named the ECR host itself; `region` then comes
    /// from it.
    Ecr {
        host: Option<String>,
        region: Option<String>,
    },
    /// Any other OCI registry.
    Generic { host: String },
}

/// One value of a `push:` block that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} {value:?}: {reason}")]
pub struct InvalidPushValue {
    /// The field's path in the block: `repository`, `tags[1]`, `ecr.lifecycle.keep_last`.
    pub field: String,
    pub value: String,
    pub reason: String,
}

impl From<InvalidPushValue> for ConfigProblem {
    fn from(invalid: InvalidPushValue) -> Self {
        ConfigProblem::new(
            invalid.field,
            format!("`{}`: {}", invalid.value, invalid.reason),
        )
    }
}

/// A `push:` block with problems: every one of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct InvalidPushConfig(pub Vec<ConfigProblem>);

impl From<InvalidPushValue> for InvalidPushConfig {
    fn from(invalid: InvalidPushValue) -> Self {
        InvalidPushConfig(vec![invalid.into()])
    }
}

impl PushConfig {
    /// Checks names and combinations before anything talks to a registry.
    pub fn validate(&self) -> Result<(), InvalidPushConfig> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(InvalidPushConfig(problems))
        }
    }
}

impl ValidateConfig for PushConfig {
    fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems: Vec<ConfigProblem> = Vec::new();
        let kind = self
            .registry_kind()
            .map_err(|invalid| problems.push(invalid.into()))
            .ok();
        if let Err(invalid) = validate_repository(&self.repository) {
            problems.push(invalid.into());
        }
        for (index, tag) in self.tags.iter().enumerate() {
            if let Err(invalid) = validate_tag(tag) {
                problems.push(ConfigProblem::new(
                    format!("tags[{index}]"),
                    format!("`{}`: {}", invalid.value, invalid.reason),
                ));
            }
        }
        if let Some(level) = self.compression_level
            && !self.compression.levels().contains(&level)
        {
            let levels = self.compression.levels();
            problems.push(ConfigProblem::new(
                "compression_level",
                format!(
                    "`{level}`: {} takes levels {} to {}",
                    self.compression.as_str(),
                    levels.start(),
                    levels.end()
                ),
            ));
        }
        if self.compression == Compression::Zstd && self.format == ManifestFormat::Docker {
            problems.push(ConfigProblem::new(
                "format",
                "`docker`: the Docker v2 manifest has no zstd layer type; use format: oci with \
                 compression: zstd",
            ));
        }
        if let (Some(_), Some(RegistryKind::Generic { .. })) = (&self.ecr, &kind) {
            problems.push(ConfigProblem::new(
                "ecr",
                format!(
                    "`{}`: ecr settings apply only to registry: ecr or an ECR host",
                    self.registry
                ),
            ));
        }
        if let Some(ecr) = &self.ecr {
            if let Some(host) = &ecr.registry_host
                && let Err(invalid) = validate_host(host, "ecr.registry_host")
            {
                problems.push(invalid.into());
            }
            if let Some(lifecycle) = &ecr.lifecycle {
                if lifecycle.keep_last == Some(0) {
                    problems.push(ConfigProblem::new(
                        "ecr.lifecycle.keep_last",
                        "`0`: must keep at least one image",
                    ));
                }
                if lifecycle.expire_untagged_days == Some(0) {
                    problems.push(ConfigProblem::new(
                        "ecr.lifecycle.expire_untagged_days",
                        "`0`: must be at least one day",
                    ));
                }
            }
        }
        problems
    }
}

impl PushConfig {
    /// The compression level to pack layers at.
    pub(crate) fn level(&self) -> u32 {
        self.compression_level
            .unwrap_or_else(|| self.compression.default_level())
    }

    pub(crate) fn registry_kind(&self) -> Result<RegistryKind, InvalidPushValue> {
        let registry = self.registry.trim();
        if registry.eq_ignore_ascii_case("ecr") {
            return Ok(RegistryKind::Ecr {
                host: None,
                region: None,
            });
        }
        validate_host(registry, "registry")?;
        if let Some(region) = ecr_host_region(registry) {
            return Ok(RegistryKind::Ecr {
                host: Some(registry.to_ascii_lowercase()),
                region: Some(region),
            });
        }
        Ok(RegistryKind::Generic {
            host: registry.to_ascii_lowercase(),
        })
    }
}

/// Repository names as the OCI distribution spec defines them: path components of lowercase
/// letters and digits, joined inside a component by `.`, `_`, `__` or runs of `-`.
pub(crate) fn validate_repository(name: &str) -> Result<(), InvalidPushValue> {
    let problem = |reason: &str| InvalidPushValue {
        field: "repository".to_owned(),
        value: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(problem("must not be empty"));
    }
    if name.len() > 255 {
        return Err(problem("must be at most 255 characters"));
    }
    for component in name.split('/') {
        if component.is_empty() {
            return Err(problem(
                "has an empty path component (leading, trailing or doubled '/')",
            ));
        }
        if !is_valid_path_component(component) {
            return Err(problem(
                "path components must be lowercase letters and digits, separated inside a \
                 component by '.', '_', '__' or '-' (for example team/my-app)",
            ));
        }
    }
    Ok(())
}

fn is_valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__', or one or more '-'.
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let valid = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !valid {
            return false;
        }
    }
    true
}

/// Tags: up to 128 characters of letters, digits, `_`, `.` and `-`, not starting with `.` or `-`.
pub(crate) fn validate_tag(tag: &str) -> Result<(), InvalidPushValue> {
    let problem = |reason: &str| InvalidPushValue {
        field: "tag".to_owned(),
        value: tag.to_string(),
        reason: reason.to_string(),
    };
    let Some(first) = tag.chars().next() else {
        return Err(problem("must not be empty"));
    };
    if tag.len() > 128 {
        return Err(problem("must be at most 128 characters"));
    }
    if !(first.is_ascii_alphanumeric() || first == '_') {
        return Err(problem("must start with a letter, digit or '_'"));
    }
    if !tag
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(problem(
            "may hold only letters, digits, '_', '.' and '-' (a branch name like feature/x \
             needs its '/' replaced)",
        ));
    }
    Ok(())
}

fn validate_host(host: &str, field: &'static str) -> Result<(), InvalidPushValue> {
    let problem = |reason: &str| InvalidPushValue {
        field: field.to_owned(),
        value: host.to_string(),
        reason: reason.to_string(),
    };
    if host.is_empty() {
        return Err(problem("must not be empty"));
    }
    if host.contains("://") {
        return Err(problem(
            "is a host[:port], not a URL: drop the scheme (plain HTTP is used only for \
             loopback registries)",
        ));
    }
    if host.contains('/') || host.contains('@') || host.chars().any(char::is_whitespace) {
        return Err(problem("must be a host name with an optional port"));
    }
    let (name, port) = split_host_port(host);
    if name.is_empty() {
        return Err(problem("has no host name"));
    }
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(problem("has a port that is not a number from 0 to 65535"));
    }
    Ok(())
}

/// Splits `host:port`, `[::1]:port` and bare hosts.
pub(crate) fn split_host_port(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((name, after)) = rest.split_once(']') {
            return (name, after.strip_prefix(':'));
        }
        return (host, None);
    }
    match host.rsplit_once(':') {
        // More than one ':' without brackets is a bare IPv6 address.
        Some((name, _)) if name.contains(':') => (host, None),
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    }
}

/// Plain HTTP is allowed only when the registry is this machine.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let (name, _) = split_host_port(host);
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml_json: serde_json::Value) -> Result<PushConfig, serde_json::Error> {
        serde_json::from_value(yaml_json)
    }

    #[test]
    fn minimal_block_gets_gzip_oci_and_no_tags() {
        let cfg = config(serde_json::json!({"registry": "ecr", "repository": "api"})).unwrap();
        assert_eq!(cfg.compression, Compression::Gzip);
        assert_eq!(cfg.format, ManifestFormat::Oci);
        assert!(cfg.tags.is_empty());
        cfg.validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = config(serde_json::json!({
            "registry": "ecr", "repository": "api", "tag": ["x"]
        }))
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `tag`"), "{err}");
        let err = config(serde_json::json!({
            "registry": "ecr", "repository": "api", "ecr": {"immutable": true}
        }))
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `immutable`"),
            "{err}"
        );
    }

    #[test]
    fn full_ecr_block_parses() {
        let cfg = config(serde_json::json!({
            "registry": "ecr", "repository": "team/api", "tags": ["v1", "latest"],
            "compression": "zstd",
            "ecr": {
                "create_repository": true, "immutable_tags": true, "scan_on_push": true,
                "scan_gate": {"severity": "HIGH", "timeout": "5m"},
                "lifecycle": {"keep_last": 30, "expire_untagged_days": 7}
            }
        }))
        .unwrap();
        cfg.validate().unwrap();
        let ecr = cfg.ecr.unwrap();
        let gate = ecr.scan_gate.unwrap();
        assert_eq!(gate.severity, Severity::High);
        assert_eq!(gate.timeout.0, Duration::from_secs(300));
        assert_eq!(ecr.lifecycle.unwrap().keep_last, Some(30));
    }

    #[test]
    fn scan_gate_timeout_defaults_to_ten_minutes_and_severity_accepts_lowercase() {
        let gate: ScanGate = serde_json::from_value(serde_json::json!({"severity": "critical"}))
            .expect("gate parses");
        assert_eq!(gate.severity, Severity::Critical);
        assert_eq!(gate.timeout.0, Duration::from_secs(600));
    }

    #[test]
    fn repository_names_follow_the_distribution_grammar() {
        for good in ["api", "team/api", "a.b_c__d--e/f-1", "0/9"] {
            validate_repository(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "",
            "API",
            "team//api",
            "/api",
            "api/",
            "-api",
            "api-",
            "a..b",
            "a___b",
            "a b",
            "a:b",
            "a_-b",
        ] {
            assert!(validate_repository(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tags_follow_the_distribution_grammar() {
        for good in ["v1", "1.2.3", "_x", "a-b_c.d", &"x".repeat(128)] {
            validate_tag(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["", ".x", "-x", "feature/x", "a:b", &"x".repeat(129)] {
            assert!(validate_tag(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn registry_kinds() {
        let kind = |registry: &str| {
            PushConfig {
                registry: registry.into(),
                repository: "api".into(),
                tags: vec![],
                compression: Compression::Gzip,
                compression_level: None,
                layer_source: LayerSource::Auto,
                format: ManifestFormat::Oci,
                ecr: None,
            }
            .registry_kind()
        };
        assert_eq!(
            kind("ECR").unwrap(),
            RegistryKind::Ecr {
                host: None,
                region: None
            }
        );
        assert_eq!(
            kind("123456789012.dkr.ecr.eu-west-1.amazonaws.com").unwrap(),
            RegistryKind::Ecr {
                host: Some("123456789012.dkr.ecr.eu-west-1.amazonaws.com".into()),
                region: Some("eu-west-1".into())
            }
        );
        assert_eq!(
            kind("127.0.0.1:5000").unwrap(),
            RegistryKind::Generic {
                host: "127.0.0.1:5000".into()
            }
        );
        assert!(kind("https://ghcr.io").is_err());
        assert!(kind("ghcr.io/org").is_err());
        assert!(kind("host:99999").is_err());
    }

    #[test]
    fn zstd_needs_the_oci_format_and_ecr_settings_need_ecr() {
        let mut cfg = config(serde_json::json!({
            "registry": "127.0.0.1:5000", "repository": "api",
            "compression": "zstd", "format": "docker"
        }))
        .unwrap();
        assert_eq!(cfg.validate().unwrap_err().0[0].path, "format");
        cfg.format = ManifestFormat::Oci;
        cfg.validate().unwrap();
        cfg.ecr = Some(EcrSettings::default());
        assert_eq!(cfg.validate().unwrap_err().0[0].path, "ecr");
    }

    #[test]
    fn compression_levels_are_checked_against_the_compression() {
        let mut cfg = config(serde_json::json!({
            "registry": "127.0.0.1:5000", "repository": "api", "compression_level": 9
        }))
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.level(), 9);
        cfg.compression_level = Some(10);
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.0[0].path, "compression_level");
        assert!(
            err.0[0].message.contains("gzip takes levels 1 to 9"),
            "{err}"
        );
        cfg.compression = Compression::Zstd;
        cfg.validate().unwrap();
        cfg.compression_level = Some(0);
        assert_eq!(cfg.validate().unwrap_err().0[0].path, "compression_level");
        cfg.compression_level = None;
        assert_eq!(cfg.level(), 3);
        cfg.compression = Compression::Gzip;
        assert_eq!(cfg.level(), 2);
    }

    #[test]
    fn loopback_detection() {
        for host in [
            "127.0.0.1:5000",
            "localhost",
            "LOCALHOST:80",
            "[::1]:5000",
            "127.1.2.3",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "10.0.0.1:5000",
            "registry.example.com",
            "localhost.example.com:5000",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn schema_is_generated_for_the_block() {
        let schema = schemars::schema_for!(PushConfig);
        let text = serde_json::to_string(&schema).unwrap();
        assert!(text.contains("\"repository\""));
        assert!(text.contains("\"keep_last\""));
    }
}
