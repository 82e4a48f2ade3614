//! Templates: any `.hbs` text against a context with lists and maps renders or fails
//! with file:line, within the iteration, output and time budgets, never a panic or a
//! stack overflow (the renderer runs on its own large-stack thread, as in the agent).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollwave::render::template::{Budget, render_file};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let context = serde_json::json!({
        "cluster": {"name": "c-1", "stage": "prod", "labels": {"region": "bj"}, "values": {}},
        "app": {"name": "web", "namespace": "web"},
        "values": {
            "image": "nginx",
            "hosts": (0..200).map(|i| format!("h{i}")).collect::<Vec<_>>(),
            "ports": {"http": 80, "https": 443},
            "nested": {"a": {"b": {"c": [1, 2, 3]}}}
        }
    });
    let text = text.to_string();
    let result = rollwave::contain::contained("fuzzing a template", move || {
        render_file("fuzz.yaml.hbs", &text, &context, &Budget::new()).map(|out| out.len())
    });
    if let Ok(Ok(len)) = result {
        assert!(len as u64 <= rollwave::render::template::budget::MAX_OUTPUT_BYTES);
    }
    assert!(result.is_ok(), "rendering panicked: {result:?}");
});
