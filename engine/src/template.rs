//! Handlebars rendering of unit and Nginx templates: strict mode, no HTML escaping.
//!
//! Two entry points: [`render`] for any text (a missing variable is an error, nothing is escaped), and
//! [`render_config`] for files that a service manager or a proxy parses (systemd units, Nginx sites): it first
//! checks every string value with [`check_config_word`], so a value cannot end a directive, open a block or
//! start a comment in the rendered file.

use handlebars::Handlebars;
use serde::Serialize;

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template itself is malformed, or names a value that is not provided (strict mode).
    #[error("template {name}: {message}")]
    Render { name: String, message: String },
    /// A value would break the syntax of the rendered file.
    #[error("template {name}: value of `{key}` ({value:?}) {problem}")]
    UnsafeValue { name: String, key: String, value: String, problem: String },
}

fn registry() -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    hb.register_escape_fn(handlebars::no_escape);
    hb.set_strict_mode(true);
    hb
}

/// Render `template` (named `name` in errors) with `data`. Strict: an undefined `{{name}}` is an error.
pub fn render<T: Serialize>(name: &str, template: &str, data: &T) -> Result<String, TemplateError> {
    registry()
        .render_template(template, data)
        .map_err(|e| TemplateError::Render { name: name.to_owned(), message: render_message(&e) })
}

/// Render a systemd unit or an Nginx file: like [`render`], after checking that every string in `data` is a
/// [config word](check_config_word).
pub fn render_config(name: &str, template: &str, data: &serde_json::Value) -> Result<String, TemplateError> {
    check_values(name, "", data)?;
    render(name, template, data)
}

/// Characters that would change the structure of an Nginx or systemd file if a value contained them.
pub const CONFIG_FORBIDDEN: &[char] = &['\n', '\r', ';', '{', '}', '#', '"', '\'', '\\', '$', '`'];

/// Is this value safe to place in an Nginx or systemd file? `Err` says what is wrong with it.
pub fn check_config_word(value: &str) -> Result<(), String> {
    match value.chars().find(|c| CONFIG_FORBIDDEN.contains(c)) {
        None => Ok(()),
        Some('\n' | '\r') => Err("contains a line break".to_owned()),
        Some(c) => Err(format!("contains `{c}`, which would change the file's structure")),
    }
}

fn check_values(name: &str, key: &str, value: &serde_json::Value) -> Result<(), TemplateError> {
    match value {
        serde_json::Value::String(s) => check_config_word(s).map_err(|problem| TemplateError::UnsafeValue {
            name: name.to_owned(),
            key: key.to_owned(),
            value: s.clone(),
            problem,
        }),
        serde_json::Value::Array(items) => {
            items.iter().enumerate().try_for_each(|(i, v)| check_values(name, &format!("{key}[{i}]"), v))
        }
        serde_json::Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            let key = if key.is_empty() { k.clone() } else { format!("{key}.{k}") };
            check_values(name, &key, v)
        }),
        _ => Ok(()),
    }
}

fn render_message(e: &handlebars::RenderError) -> String {
    // The RenderError's Display already carries line/column when known; keep only its first line.
    e.to_string().lines().next().unwrap_or("render error").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn does_not_escape_html() {
        let out = render("t", "a {{x}} b", &json!({"x": "<&>\"'"})).unwrap();
        assert_eq!(out, "a <&>\"' b");
    }

    #[test]
    fn strict_mode_rejects_missing_values() {
        let err = render("unit", "{{missing}}", &json!({})).unwrap_err();
        assert!(matches!(err, TemplateError::Render { .. }), "{err:?}");
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn config_values_are_checked_by_key() {
        let data = json!({"ok": "/srv/app", "server": {"names": ["a.example", "b; evil"]}});
        let err = render_config("site", "{{ok}}", &data).unwrap_err();
        assert_eq!(
            err,
            TemplateError::UnsafeValue {
                name: "site".into(),
                key: "server.names[1]".into(),
                value: "b; evil".into(),
                problem: "contains `;`, which would change the file's structure".into(),
            }
        );
    }

    #[test]
    fn each_forbidden_character_is_refused() {
        for c in CONFIG_FORBIDDEN {
            assert!(check_config_word(&format!("a{c}b")).is_err(), "{c:?} accepted");
        }
        assert!(check_config_word("unix:/srv/shop/run/current.sock").is_ok());
    }

    #[test]
    fn conditionals_and_loops_work() {
        let out = render_config(
            "site",
            "{{#each names}}{{this}} {{/each}}{{#if tls}}tls{{/if}}",
            &json!({"names": ["a", "b"], "tls": false}),
        )
        .unwrap();
        assert_eq!(out, "a b ");
    }
}
