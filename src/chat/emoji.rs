//! The few emoji pipemedic uses, by Slack name and by Unicode character,
//! so callers may name a reaction either way and each adapter sends what its
//! platform expects. Pure translation.

/// (Slack name, Unicode) pairs.
const TABLE: [(&str, &str); 10] = [
    ("white_check_mark", "✅"),
    ("heavy_check_mark", "✔️"),
    ("x", "❌"),
    ("eyes", "👀"),
    ("hourglass_flowing_sand", "⏳"),
    ("rotating_light", "🚨"),
    ("warning", "⚠️"),
    ("tada", "🎉"),
    ("thumbsup", "👍"),
    ("thumbsdown", "👎"),
];

/// The Slack name for `emoji` (a name, `:name:` or a known character);
/// unknown characters come back unchanged.
pub fn to_name(emoji: &str) -> String {
    let trimmed = emoji.trim_matches(':');
    let bare = trimmed.trim_end_matches('\u{fe0f}');
    TABLE
        .iter()
        .find(|(name, uni)| *name == trimmed || uni.trim_end_matches('\u{fe0f}') == bare)
        .map(|(name, _)| (*name).to_string())
        .unwrap_or_else(|| trimmed.to_string())
}

/// The Unicode character for `emoji` (a known name or already a character);
/// unknown names come back unchanged.
pub fn to_unicode(emoji: &str) -> String {
    let trimmed = emoji.trim_matches(':');
    TABLE
        .iter()
        .find(|(name, _)| *name == trimmed)
        .map(|(_, uni)| (*uni).to_string())
        .unwrap_or_else(|| trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_characters_round_trip() {
        assert_eq!(to_name("✅"), "white_check_mark");
        assert_eq!(to_name("✔"), "heavy_check_mark");
        assert_eq!(to_name(":x:"), "x");
        assert_eq!(to_unicode("white_check_mark"), "✅");
        assert_eq!(to_unicode("✅"), "✅");
        assert_eq!(to_name("partyparrot"), "partyparrot");
    }
}
