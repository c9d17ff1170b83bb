//! What an Amazon ECR registry host says (`<account>.dkr.ecr.<region>.amazonaws.com`: the
//! account, the region), and the environment's override of the host to use instead (private
//! endpoints, emulators).

/// Environment override of the registry host (emulators, private endpoints).
pub(crate) const REGISTRY_HOST_ENV: &str = "SHIPIT_ECR_REGISTRY_HOST";

/// The host override from the environment, when set and not blank.
pub(crate) fn registry_host_from_env() -> Option<String> {
    std::env::var(REGISTRY_HOST_ENV)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `123456789012.dkr.ecr.eu-west-1.amazonaws.com` (and the `.com.cn` partition) → `eu-west-1`.
pub(crate) fn ecr_host_region(host: &str) -> Option<String> {
    let host = host.to_ascii_lowercase();
    let host = host.split(':').next().unwrap_or_default();
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 6 || labels[1] != "dkr" || !labels[2].starts_with("ecr") {
        return None;
    }
    if !labels[0].chars().all(|c| c.is_ascii_digit()) || labels[0].len() != 12 {
        return None;
    }
    if labels[4] != "amazonaws" {
        return None;
    }
    Some(labels[3].to_string())
}

/// The account id in an ECR host name, to ask for that registry's token.
pub(crate) fn account_of_host(host: &str) -> Option<String> {
    let account = host.split('.').next()?;
    (account.len() == 12 && account.chars().all(|c| c.is_ascii_digit())).then(|| account.into())
}

/// `https://123456789012.dkr.ecr.us-east-1.amazonaws.com/` → the host.
pub(crate) fn host_of_endpoint(endpoint: &str) -> String {
    let without_scheme = endpoint
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(endpoint);
    without_scheme.trim_end_matches('/').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_hosts_name_their_region_and_other_hosts_do_not() {
        assert_eq!(
            ecr_host_region("123456789012.dkr.ecr.eu-west-1.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            ecr_host_region("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn:443").as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(ecr_host_region("127.0.0.1:5000"), None);
        assert_eq!(
            ecr_host_region("12345.dkr.ecr.eu-west-1.amazonaws.com"),
            None
        );
        assert_eq!(ecr_host_region("ghcr.io"), None);
    }

    #[test]
    fn endpoints_become_hosts_and_hosts_give_accounts() {
        assert_eq!(
            host_of_endpoint("https://123456789012.dkr.ecr.us-east-1.amazonaws.com/"),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com"
        );
        assert_eq!(
            account_of_host("123456789012.dkr.ecr.us-east-1.amazonaws.com").as_deref(),
            Some("123456789012")
        );
        assert_eq!(account_of_host("127.0.0.1:5000"), None);
    }
}
