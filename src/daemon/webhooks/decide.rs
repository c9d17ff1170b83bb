//! The only place that decides whether a push queues a run: the repository's configuration and
//! the push in, a `NewRun` or the reason it was ignored out. No I/O, so every rule is tested on
//! recorded payloads.

use glob::{MatchOptions, Pattern};

use super::push::{Push, is_null_sha};
use crate::daemon::config::RepositoryConfig;
use crate::daemon::queue::{NewRun, Trigger};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Run(NewRun),
    /// Recorded with the delivery and shown to the sender: why nothing was queued.
    Ignored(String),
}

/// Git refs are matched like paths: `*` stops at `/` (so `release/*` is not
/// `release/2.0/hotfix`), `**` crosses it.
const REF_MATCH: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

fn matches(pattern: &str, name: &str) -> bool {
    // Patterns were checked when the configuration was read; an invalid one matches nothing.
    Pattern::new(pattern).is_ok_and(|p| p.matches_with(name, REF_MATCH))
}

/// `[skip ci]` or `[ci skip]` anywhere in the head commit's message, in any case, as GitHub
/// Actions and GitLab CI read it.
pub fn asks_to_skip_ci(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("[skip ci]") || message.contains("[ci skip]")
}

pub fn decide(push: &Push, repositories: &[RepositoryConfig], delivery_id: &str) -> Decision {
    if is_null_sha(&push.after) {
        return Decision::Ignored(format!("{} was deleted", push.git_ref));
    }
    let Some(repo) = repositories.iter().find(|r| r.name == push.repository) else {
        return Decision::Ignored(format!(
            "repository {} is not configured in this daemon",
            push.repository
        ));
    };
    let environment = if let Some(branch) = push.git_ref.strip_prefix("refs/heads/") {
        if !repo.branches.iter().any(|p| matches(p, branch)) {
            return Decision::Ignored(if repo.branches.is_empty() {
                format!(
                    "branch {branch}: no branches are configured for {}",
                    repo.name
                )
            } else {
                format!(
                    "branch {branch} matches none of `branches` ({})",
                    repo.branches.join(", ")
                )
            });
        }
        repo.environments
            .iter()
            .find(|(pattern, _)| matches(pattern, branch))
            .map(|(_, environment)| environment.clone())
    } else if let Some(tag) = push.git_ref.strip_prefix("refs/tags/") {
        if !repo.tags.iter().any(|p| matches(p, tag)) {
            return Decision::Ignored(if repo.tags.is_empty() {
                format!("tag {tag}: no tags are configured for {}", repo.name)
            } else {
                format!(
                    "tag {tag} matches none of `tags` ({})",
                    repo.tags.join(", ")
                )
            });
        }
        None
    } else {
        return Decision::Ignored(format!("{} is neither a branch nor a tag", push.git_ref));
    };
    if push.head_message.as_deref().is_some_and(asks_to_skip_ci) {
        return Decision::Ignored("[skip ci] in the head commit message".to_owned());
    }
    // Tags are released as they are: a path filter says which *changes* deserve a build.
    if push.git_ref.starts_with("refs/heads/")
        && !repo.paths.is_empty()
        && let Some(changed) = &push.changed_paths
        && !changed
            .iter()
            .any(|file| repo.paths.iter().any(|p| matches(p, file)))
    {
        return Decision::Ignored(format!(
            "no changed file matches `paths` ({})",
            repo.paths.join(", ")
        ));
    }
    Decision::Run(NewRun {
        repository: repo.name.clone(),
        git_ref: push.git_ref.clone(),
        sha: push.after.clone(),
        pipeline_file: repo.pipeline.to_string_lossy().into_owned(),
        environment,
        trigger: Trigger::Webhook {
            delivery_id: delivery_id.to_owned(),
        },
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::daemon::webhooks::push::Hook;
    use crate::daemon::webhooks::{github, gitlab};

    fn shop() -> RepositoryConfig {
        RepositoryConfig {
            name: "acme/shop".into(),
            clone_url: "https://github.com/acme/shop.git".into(),
            pipeline: PathBuf::from("ci/shipit.yaml"),
            branches: vec!["main".into(), "release/*".into()],
            tags: vec!["v*".into()],
            paths: vec![],
            environments: vec![
                ("main".into(), "production".into()),
                ("release/*".into(), "staging".into()),
            ],
            credentials: None,
            known_hosts: None,
            env: vec![],
        }
    }

    fn github_push(fixture: &str) -> Push {
        match github::parse("push", fixture.as_bytes()).unwrap() {
            Hook::Push(push) => push,
            other => panic!("{other:?}"),
        }
    }

    const PUSH: &str = include_str!("fixtures/github-push.json");

    fn ignored(decision: Decision) -> String {
        match decision {
            Decision::Ignored(reason) => reason,
            Decision::Run(run) => panic!("queued {run:?}"),
        }
    }

    #[test]
    fn a_push_to_a_configured_branch_queues_a_run_with_its_environment() {
        let decision = decide(&github_push(PUSH), &[shop()], "d-1");
        assert_eq!(
            decision,
            Decision::Run(NewRun {
                repository: "acme/shop".into(),
                git_ref: "refs/heads/main".into(),
                sha: "a41f5c8e9b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e".into(),
                pipeline_file: "ci/shipit.yaml".into(),
                environment: Some("production".into()),
                trigger: Trigger::Webhook {
                    delivery_id: "d-1".into()
                },
            })
        );
    }

    #[test]
    fn the_first_matching_environment_glob_wins() {
        let push = github_push(include_str!("fixtures/github-push-new-branch.json"));
        let mut repo = shop();
        repo.environments
            .insert(0, ("release/2.*".into(), "canary".into()));
        match decide(&push, &[repo], "d") {
            Decision::Run(run) => assert_eq!(run.environment.as_deref(), Some("canary")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_branch_outside_the_globs_is_ignored_and_says_which_globs() {
        let mut push = github_push(PUSH);
        push.git_ref = "refs/heads/feature/cart".into();
        assert_eq!(
            ignored(decide(&push, &[shop()], "d")),
            "branch feature/cart matches none of `branches` (main, release/*)"
        );
    }

    #[test]
    fn a_single_star_does_not_cross_a_slash() {
        let mut push = github_push(PUSH);
        push.git_ref = "refs/heads/release/2.0/hotfix".into();
        assert!(ignored(decide(&push, &[shop()], "d")).contains("matches none"));
    }

    #[test]
    fn an_unknown_repository_is_ignored() {
        let mut push = github_push(PUSH);
        push.repository = "acme/other".into();
        assert_eq!(
            ignored(decide(&push, &[shop()], "d")),
            "repository acme/other is not configured in this daemon"
        );
    }

    #[test]
    fn a_deleted_branch_is_ignored() {
        let push = github_push(include_str!("fixtures/github-push-deleted-branch.json"));
        assert_eq!(
            ignored(decide(&push, &[shop()], "d")),
            "refs/heads/feature/cart-v2 was deleted"
        );
    }

    #[test]
    fn skip_ci_in_the_head_commit_is_ignored() {
        let push = github_push(include_str!("fixtures/github-push-skip-ci.json"));
        assert_eq!(
            ignored(decide(&push, &[shop()], "d")),
            "[skip ci] in the head commit message"
        );
    }

    #[test]
    fn both_spellings_of_skip_ci_in_any_case_are_honoured() {
        assert!(asks_to_skip_ci("fix [skip ci]"));
        assert!(asks_to_skip_ci("[CI SKIP] docs"));
        assert!(!asks_to_skip_ci("skip ci"));
        assert!(!asks_to_skip_ci("[skip-ci]"));
    }

    #[test]
    fn a_tag_matching_the_tag_globs_queues_a_run_without_an_environment() {
        let push = github_push(include_str!("fixtures/github-push-tag.json"));
        match decide(&push, &[shop()], "d") {
            Decision::Run(run) => {
                assert_eq!(run.git_ref, "refs/tags/v2.0.0");
                assert_eq!(run.environment, None);
            }
            other => panic!("{other:?}"),
        }
        let mut repo = shop();
        repo.tags.clear();
        assert_eq!(
            ignored(decide(&push, &[repo], "d")),
            "tag v2.0.0: no tags are configured for acme/shop"
        );
    }

    #[test]
    fn a_path_filter_ignores_pushes_that_change_nothing_it_names() {
        let mut repo = shop();
        repo.paths = vec!["services/web/**".into()];
        assert!(matches!(
            decide(&github_push(PUSH), &[repo.clone()], "d"),
            Decision::Run(_)
        ));
        repo.paths = vec!["infra/**".into(), "*.tf".into()];
        assert_eq!(
            ignored(decide(&github_push(PUSH), &[repo], "d")),
            "no changed file matches `paths` (infra/**, *.tf)"
        );
    }

    #[test]
    fn a_path_filter_lets_through_a_push_whose_files_are_unknown() {
        let mut repo = shop();
        repo.paths = vec!["infra/**".into()];
        let push = match gitlab::parse(
            "Push Hook",
            include_str!("fixtures/gitlab-push-truncated.json").as_bytes(),
        )
        .unwrap()
        {
            Hook::Push(push) => push,
            other => panic!("{other:?}"),
        };
        assert!(matches!(decide(&push, &[repo], "d"), Decision::Run(_)));
    }

    #[test]
    fn a_ref_that_is_neither_branch_nor_tag_is_ignored() {
        let mut push = github_push(PUSH);
        push.git_ref = "refs/pull/12/head".into();
        assert_eq!(
            ignored(decide(&push, &[shop()], "d")),
            "refs/pull/12/head is neither a branch nor a tag"
        );
    }
}
