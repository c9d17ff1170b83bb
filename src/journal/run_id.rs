//! Run ids: what a new one looks like, and which strings a store accepts as one.

use rand::TryRngCore;

/// The longest id a store accepts; ids become folder names, which have a length limit.
const MAX_RUN_ID_LEN: usize = 128;

/// A new run id: its UTC start time, so ids sort by time, then 64 random bits from the operating
/// system's generator, so that runs started in the same second on any number of machines (the
/// daemon's runners share one store) do not collide.
pub fn new_run_id(now: chrono::DateTime<chrono::Utc>) -> String {
    // The thread generator is itself seeded from the operating system, so falling back to it
    // keeps the same collision odds if the operating system's generator ever refuses a read.
    let random = rand::rngs::OsRng
        .try_next_u64()
        .unwrap_or_else(|_| rand::random());
    format!("{}-{random:016x}", now.format("%Y%m%d-%H%M%S"))
}

/// Whether `run_id` can name a run: letters, digits, `-` and `_` only, so that it can never be
/// read as a path (no `/`, no `.`, not empty). Ids of every shipit version pass.
pub fn is_run_id(run_id: &str) -> bool {
    !run_id.is_empty()
        && run_id.len() <= MAX_RUN_ID_LEN
        && run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&chrono::Utc)
    }

    #[test]
    fn a_new_id_is_its_start_time_then_sixteen_hex_digits() {
        let id = new_run_id(at("2026-11-22T09:30:15Z"));
        let suffix = id
            .strip_prefix("20261122-093015-")
            .unwrap_or_else(|| panic!("{id} does not start with its start time"));
        assert_eq!(suffix.len(), 16, "{id}");
        assert!(
            suffix
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
            "{id}"
        );
        assert!(is_run_id(&id), "{id}");
    }

    #[test]
    fn ids_started_in_the_same_second_do_not_collide() {
        // With 16 random bits (the earlier ids) 5,000 ids in one second collide almost surely;
        // with 64 the odds are about one in 10^12.
        let now = at("2026-11-22T09:30:15Z");
        let ids: HashSet<String> = (0..5_000).map(|_| new_run_id(now)).collect();
        assert_eq!(ids.len(), 5_000);
    }

    #[test]
    fn ids_sort_by_their_start_time() {
        let earlier = new_run_id(at("2026-11-22T09:30:15Z"));
        let later = new_run_id(at("2026-11-22T09:30:16Z"));
        assert!(earlier < later, "{earlier} sorts after {later}");
    }

    #[test]
    fn ids_of_every_version_pass_and_path_like_ones_do_not() {
        for id in [
            "20260101-000000-abcd",
            "20261122-093015-3f9a0c7e12b4d5a6",
            "r1",
        ] {
            assert!(is_run_id(id), "{id} refused");
        }
        let too_long = "a".repeat(MAX_RUN_ID_LEN + 1);
        for id in [
            "",
            ".",
            "..",
            "../../etc",
            "a/b",
            "a\\b",
            "a.json",
            "a b",
            &too_long,
        ] {
            assert!(!is_run_id(id), "{id} accepted");
        }
    }
}
