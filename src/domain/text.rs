//! Cutting text to a size: the one `truncate` that chat titles and fields,
//! ids and commit messages from polled revisions share.

/// `text` cut to at most `max` characters, ending in `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn counts_characters_and_marks_the_cut() {
        assert_eq!(truncate("short", 5), "short");
        assert_eq!(truncate("longer", 5), "long…");
        assert_eq!(truncate("ééééé é", 4), "ééé…");
        assert_eq!(truncate("", 0), "");
    }
}
