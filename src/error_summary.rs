//! How a cause that came from elsewhere (a registry's answer, an AWS SDK error) is shortened
//! before shipit stores or prints it: one line, no URL query strings (signed upload URLs carry
//! credentials there), bounded length.

/// The longest cause text kept.
pub(crate) const MAX_REASON_CHARS: usize = 300;

/// One line, no URL query strings, at most `MAX_REASON_CHARS` characters (and an ellipsis).
pub(crate) fn summarize(text: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        if (word.starts_with("http://") || word.starts_with("https://") || word.contains("://"))
            && let Some((base, _)) = word.split_once('?')
        {
            words.push(format!("{base}?…"));
            continue;
        }
        words.push(word.to_string());
    }
    let line = words.join(" ");
    if line.chars().count() > MAX_REASON_CHARS {
        let cut: String = line.chars().take(MAX_REASON_CHARS).collect();
        format!("{cut}…")
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_drop_query_strings_and_stay_short() {
        let text = format!(
            "redirected to https://bucket.example/upload?X-Amz-Signature=abc then {}",
            "x".repeat(1000)
        );
        let summary = summarize(&text);
        assert!(!summary.contains("Signature"));
        assert!(summary.contains("https://bucket.example/upload?…"));
        assert!(summary.chars().count() <= MAX_REASON_CHARS + 1);
    }
}
