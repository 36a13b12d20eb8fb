//! URL prefix mapping for routes. Parsing lives in `mediagate_config::RtspUrl`.

/// Replaces the prefix `from` of `url` by `to` when `url` starts with `from` at a path
/// boundary (`/cam1` matches `/cam1` and `/cam1/x`, not `/cam10`). Used to map origin
/// URLs back to the advertised names clients know.
pub fn replace_prefix(url: &str, from: &str, to: &str) -> Option<String> {
    let rest = url.strip_prefix(from)?;
    if from.ends_with('/') || rest.is_empty() || rest.starts_with(['/', '?', ';']) {
        Some(format!("{to}{rest}"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_replacement_respects_path_boundaries() {
        assert_eq!(
            replace_prefix("rtsp://o/cam1/track1", "rtsp://o/cam1", "rtsp://e/c").as_deref(),
            Some("rtsp://e/c/track1")
        );
        assert_eq!(replace_prefix("rtsp://o/cam10", "rtsp://o/cam1", "x"), None);
        assert_eq!(
            replace_prefix("rtsp://o/cam1", "rtsp://o/cam1", "rtsp://e/c").as_deref(),
            Some("rtsp://e/c")
        );
    }
}
