//! The config of a dispatcher-only process for tests. Shared by the integration tests
//! (`tests/common`) and the crate's own hostile-peer tests (`src/hostile_tests`),
//! which include this file by path: an integration test cannot see the crate's
//! `#[cfg(test)]` items, nor the crate its `tests/` directory.

use std::path::Path;

use mediagate_config::Config;

/// A dispatcher-only config under `dir`, checked: `dispatcher` lines in `[dispatcher]`,
/// a `[[dispatcher.local_relay]]` per `(name, address, first port)` with 100 ports,
/// then `after` (more tables).
pub(crate) fn dispatcher_config(
    dir: &Path,
    dispatcher: &str,
    relays: &[(&str, &str, u16)],
    after: &str,
) -> Config {
    let mut text = format!(
        r#"state_dir = {state:?}
[edge]
enabled = false
[relay]
forward_threads = 1
forward_io = "epoll"
[dispatcher]
enabled = true
{dispatcher}
"#,
        state = dir.join("state"),
    );
    for (name, address, low) in relays {
        text.push_str(&format!(
            "[[dispatcher.local_relay]]\nname = \"{name}\"\naddress = \"{address}\"\nports = \"{low}-{high}\"\n",
            high = low + 99
        ));
    }
    text.push_str(after);
    let config = mediagate_config::parse_config(&text).unwrap();
    assert_eq!(mediagate_config::validate(&config), Vec::new());
    config
}
