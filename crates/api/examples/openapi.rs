//! Writes the OpenAPI document: `cargo run -p blackbox-api --example openapi > docs/openapi.json`.

fn main() {
    print!("{}", blackbox_api::openapi::text());
}
