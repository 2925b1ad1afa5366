//! A small JSON Schema checker for the subset the OpenAPI document uses (`$ref` within the
//! document, `type`, `properties`, `required`, `additionalProperties`, `items`, `enum`,
//! `const`, `oneOf`/`anyOf`/`allOf`, `minimum`/`maximum`), so that tests can check the
//! service's real answers against the document without a validator crate and its dependencies.
//! Keywords it does not know (`format`, `description`, lengths) are ignored: it errs on the side
//! of accepting.

use serde_json::Value;

/// Checks `value` against `schema`, resolving `$ref`s in `doc`.
///
/// # Errors
/// The first mismatch: its JSON path (`$.entries[0].seq`) and what was expected.
pub fn check(doc: &Value, schema: &Value, value: &Value) -> Result<(), String> {
    at(doc, schema, value, "$", 0)
}

fn at(doc: &Value, schema: &Value, value: &Value, path: &str, depth: usize) -> Result<(), String> {
    if depth > 64 {
        return Err(format!("{path}: the schema nests too deep (a $ref loop?)"));
    }
    let s = match schema {
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => return Err(format!("{path}: no value is allowed here")),
        Value::Object(s) => s,
        _ => return Err(format!("{path}: the schema is not an object: {schema}")),
    };
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let target = r
            .strip_prefix('#')
            .and_then(|p| doc.pointer(p))
            .ok_or_else(|| format!("{path}: unresolved $ref {r}"))?;
        at(doc, target, value, path, depth + 1)?;
    }
    if let Some(t) = s.get("type") {
        let names: Vec<&str> = match t {
            Value::String(n) => vec![n.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !names.iter().any(|n| is_type(value, n)) {
            return Err(format!("{path}: expected {t}, found {}", excerpt(value)));
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(value)
    {
        return Err(format!(
            "{path}: {} is not one of {}",
            excerpt(value),
            Value::Array(e.clone())
        ));
    }
    if let Some(c) = s.get("const")
        && c != value
    {
        return Err(format!("{path}: expected {c}, found {}", excerpt(value)));
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = s.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            return Err(format!("{path}: {n} is below the minimum {min}"));
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            return Err(format!("{path}: {n} is above the maximum {max}"));
        }
    }
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for sub in all {
            at(doc, sub, value, path, depth + 1)?;
        }
    }
    if let Some(any) = s.get("anyOf").and_then(Value::as_array)
        && !any
            .iter()
            .any(|sub| at(doc, sub, value, path, depth + 1).is_ok())
    {
        return Err(format!("{path}: {} matches none of anyOf", excerpt(value)));
    }
    if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
        let n = one
            .iter()
            .filter(|sub| at(doc, sub, value, path, depth + 1).is_ok())
            .count();
        if n != 1 {
            return Err(format!(
                "{path}: {} matches {n} of oneOf, not one",
                excerpt(value)
            ));
        }
    }
    if let Value::Object(o) = value {
        if let Some(req) = s.get("required").and_then(Value::as_array) {
            for k in req.iter().filter_map(Value::as_str) {
                if !o.contains_key(k) {
                    return Err(format!("{path}: the member `{k}` is missing"));
                }
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (k, v) in o {
            let sub_path = format!("{path}.{k}");
            match props.and_then(|p| p.get(k)) {
                Some(sub) => at(doc, sub, v, &sub_path, depth + 1)?,
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        return Err(format!("{path}: the member `{k}` is not in the schema"));
                    }
                    Some(sub @ Value::Object(_)) => at(doc, sub, v, &sub_path, depth + 1)?,
                    _ => {}
                },
            }
        }
    }
    if let (Value::Array(a), Some(items)) = (value, s.get("items")) {
        for (i, v) in a.iter().enumerate() {
            at(doc, items, v, &format!("{path}[{i}]"), depth + 1)?;
        }
    }
    Ok(())
}

fn is_type(v: &Value, name: &str) -> bool {
    match name {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        _ => false,
    }
}

fn excerpt(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::check;
    use serde_json::json;

    #[test]
    fn checks_what_the_document_uses() {
        let doc = json!({"components": {"schemas": {"E": {"type": "object", "required": ["seq"],
            "properties": {"seq": {"type": "integer", "minimum": 0}, "id": {"type": ["string", "null"]}},
            "additionalProperties": false}}}});
        let e = json!({"$ref": "#/components/schemas/E"});
        assert!(check(&doc, &e, &json!({"seq": 3, "id": null})).is_ok());
        let bad = check(&doc, &e, &json!({"seq": "3"})).unwrap_err();
        assert!(bad.contains("$.seq"), "{bad}");
        assert!(
            check(&doc, &e, &json!({"id": "x"}))
                .unwrap_err()
                .contains("`seq`")
        );
        assert!(
            check(&doc, &e, &json!({"seq": 1, "x": 1}))
                .unwrap_err()
                .contains("`x`")
        );
        assert!(check(&doc, &e, &json!({"seq": -1})).is_err());
        let list = json!({"type": "array", "items": e});
        assert!(
            check(&doc, &list, &json!([{"seq": 1}, {"seq": 2.5}]))
                .unwrap_err()
                .contains("$[1].seq")
        );
        let one = json!({"oneOf": [{"type": "string"}, {"type": "integer"}]});
        assert!(check(&doc, &one, &json!(1)).is_ok());
        assert!(check(&doc, &one, &json!(true)).is_err());
        assert!(check(&doc, &json!({"enum": ["a"]}), &json!("b")).is_err());
    }
}
