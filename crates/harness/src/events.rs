//! The daemon's JSON log lines (tracing-subscriber's `json` format, one
//! object per line, fields under `fields`) as [`Event`]s, and a predicate
//! for the common "this message about this file" match. Lines that are not
//! such objects (a panic message, human-format logs) are not events.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

/// One JSON log line's event: its level, message and fields.
#[derive(Debug, Clone)]
pub struct Event {
    /// `INFO`, `WARN`, ...
    pub level: String,
    /// The message.
    pub message: String,
    /// Every field (besides the message) as text.
    pub fields: HashMap<String, String>,
    /// The raw line.
    pub raw: String,
}

impl Event {
    /// The field `name`, or "".
    pub fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

/// Parses one tracing-subscriber JSON line; `None` for other lines.
pub fn parse_event(line: &str) -> Option<Event> {
    let v: Value = serde_json::from_str(line).ok()?;
    let fields = v.get("fields")?.as_object()?;
    let mut map = HashMap::new();
    for (k, v) in fields {
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        map.insert(k.clone(), text);
    }
    Some(Event {
        level: v.get("level")?.as_str()?.to_owned(),
        message: map.remove("message").unwrap_or_default(),
        fields: map,
        raw: line.to_owned(),
    })
}

/// Matches the log event `msg` about the file `path`.
pub fn is(msg: &'static str, path: &Path) -> impl Fn(&Event) -> bool + use<> {
    let path = path.display().to_string();
    move |e| e.message == msg && e.field("path") == path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_events_others_are_not() {
        let e =
            parse_event(r#"{"level":"INFO","fields":{"message":"scanned","path":"/r/a","n":3}}"#)
                .unwrap();
        assert_eq!((e.level.as_str(), e.message.as_str()), ("INFO", "scanned"));
        assert_eq!(
            (e.field("path"), e.field("n"), e.field("x")),
            ("/r/a", "3", "")
        );
        assert!(is("scanned", Path::new("/r/a"))(&e));
        assert!(!is("scanned", Path::new("/r/b"))(&e));
        assert!(parse_event("thread 'main' panicked").is_none());
        assert!(parse_event(r#"{"message":"flat"}"#).is_none());
    }
}
