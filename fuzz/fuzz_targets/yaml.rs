//! The YAML loader on any text: a value or an error with a position, never a panic,
//! and within its parse budget.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = rollwave::yaml::parse_documents("fuzz.yaml", text);
    let _ = rollwave::yaml::parse_typed::<serde_json::Value>("fuzz.yaml", text);
});
