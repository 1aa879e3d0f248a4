//! Arbitrary text as an agent config file (ngrok.yml v2 or v3): parsing
//! never panics, and the authtoken editor either refuses the text or
//! writes one that still parses as YAML and, where the file is a valid
//! config, holds the new token.
#![no_main]

use gangway_config::agent_file;
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "fuzz-token";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = agent_file::parse("fuzz.yml", text);
    let Ok(edited) = agent_file::edit_authtoken("fuzz.yml", text, TOKEN) else {
        return;
    };
    if parsed.is_ok() {
        let again = agent_file::parse("edited.yml", &edited)
            .unwrap_or_else(|e| panic!("an edited valid file no longer parses: {e}\n{edited}"));
        assert_eq!(again.authtoken.as_deref(), Some(TOKEN), "{edited}");
    }
});
