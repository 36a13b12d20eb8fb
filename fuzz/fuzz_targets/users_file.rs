//! The edge's users file: any text parses or fails with a line number, never panics
//! (lines are bounded, hashes are only parsed, never verified here); whatever parses
//! is written back by `to_text` and parses again to the same users.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mediagate_ops::users::UsersFile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match UsersFile::parse(text) {
        Ok(file) => {
            let written = file.to_text();
            let again = UsersFile::parse(&written).expect("a written users file must parse");
            assert_eq!(again, file, "users file round trip:\n{written}");
        }
        Err(e) => {
            assert!(e.line >= 1 && e.line <= text.lines().count(), "{e}");
        }
    }
});
