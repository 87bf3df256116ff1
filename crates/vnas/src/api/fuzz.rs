//! Property-based fuzzing of what an operator feeds the API and the CLI:
//! JSON bodies (then the validation every create goes through) and export
//! specifications. `PROPTEST_CASES` cases each (256 by default); a long
//! run: `PROPTEST_CASES=1000000 cargo test --release -p vnas fuzz`.

use proptest::prelude::*;

use super::types::{CreateVserver, MoveVserver};
use crate::ops::validate;

/// JSON that is nearly a create request: the right keys, odd values.
fn create_json() -> impl Strategy<Value = String> {
    let text = "[ -~]{0,24}";
    (text, proptest::collection::vec("[0-9a-f:./]{0,20}", 0..4), text, text, "[a-z_=0-9./+:]{0,40}").prop_map(
        |(name, addresses, mount, path, options)| {
            serde_json::json!({
                "name": name,
                "addresses": addresses,
                "volumes": [{"mount": mount, "path": path}],
                "exports": [{"path": mount, "rules": [{"clients": [options], "access": options, "squash": options}]}],
                "routes": [{"destination": options, "gateway": path}],
            })
            .to_string()
        },
    )
}

proptest! {
    #[test]
    fn fuzz_create_bodies(body in prop_oneof![create_json(), "[ -~]{0,200}"]) {
        // Any body: a clear error or a configuration, never a panic.
        if let Ok(request) = serde_json::from_str::<CreateVserver>(&body) {
            let _ = validate::config(request, "n1".into(), false);
        }
        let _ = serde_json::from_str::<MoveVserver>(&body);
    }

    #[test]
    fn fuzz_export_specs(spec in "[ -~]{0,80}") {
        let _ = crate::ops::specs::export(&spec);
    }
}
