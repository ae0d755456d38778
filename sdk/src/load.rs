//! Reading and parsing a spec file: bytes → [`MeshSpec`], with every problem as `path: message`.
//!
//! A spec is untrusted input, so reading is bounded before any parser sees it: at most
//! [`MAX_SPEC_BYTES`] are read (`/dev/zero` is refused, not swallowed), and flow collections
//! nested deeper than [`MAX_NESTING`] are refused before the YAML parser, whose cost grows with
//! the square of that depth, runs.
//!
//! Parsing stops at the first syntax or type error (serde cannot go on after one), but collects
//! *all* unknown fields on the way, each with the fields that are valid there.

use std::io::Read as _;
use std::path::Path;

use serde::Deserialize;
use serde_aux::serde_introspection::serde_introspect;

use crate::model::Mesh;
use crate::problems::{Problem, Problems};
use crate::spec::{
    AppSpec, BackoffSpec, CircuitBreakerSpec, HealthCheckSpec, MatchSpec, MeshSpec,
    OutlierDetectionSpec, ReplicaSpec, RetryBudgetSpec, RetrySpec, RouteSpec, ServiceSpec,
    SidecarSpec, UpstreamSpec,
};
use crate::validate::validate;
use meshkit_filter::core::config::ErrorSettings;

/// Largest spec accepted: a 1,000-service mesh is well under 1 MiB.
pub const MAX_SPEC_BYTES: usize = 8 << 20;
/// Deepest nesting of flow collections (`[`, `{`) accepted; a spec needs fewer than ten.
pub const MAX_NESTING: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// `.json` files are JSON; everything else is read as YAML.
    pub fn of_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// Why a spec file could not be turned into a [`Mesh`].
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read. (The OS error is part of the message, not a `source`, so
    /// that error chains print it once.)
    #[error("cannot read {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{0}")]
    Invalid(#[from] Problems),
}

/// Reads, parses and validates a spec file.
pub fn load_file(path: &Path) -> Result<Mesh, LoadError> {
    load_file_with(path, |_| {})
}

/// Like [`load_file`], with `adjust` applied to the parsed spec before it is validated (e.g.
/// [`crate::compose::containerize`]).
pub fn load_file_with(path: &Path, adjust: impl FnOnce(&mut MeshSpec)) -> Result<Mesh, LoadError> {
    let io = |error| LoadError::Io {
        path: path.display().to_string(),
        error,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SPEC_BYTES as u64 + 1).read_to_end(&mut bytes))
        .map_err(io)?;
    if bytes.len() > MAX_SPEC_BYTES {
        return Err(root_problem(format!(
            "the file is larger than {} MiB; a mesh spec is far smaller",
            MAX_SPEC_BYTES >> 20
        ))
        .into());
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        root_problem(format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let mut spec = parse(&text, Format::of_path(path))?;
    adjust(&mut spec);
    Ok(validate(&spec)?)
}

/// Parses and validates spec text.
pub fn load_str(text: &str, format: Format) -> Result<Mesh, Problems> {
    validate(&parse(text, format)?)
}

fn root_problem(message: String) -> Problems {
    Problems(vec![Problem {
        path: "(root)".into(),
        message,
    }])
}

/// Parses spec text into its document shape, reporting all unknown fields.
pub fn parse(text: &str, format: Format) -> Result<MeshSpec, Problems> {
    // Editors on Windows write a byte-order mark; it is not part of the document.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.len() > MAX_SPEC_BYTES {
        return Err(root_problem(format!(
            "the spec is larger than {} MiB; a mesh spec is far smaller",
            MAX_SPEC_BYTES >> 20
        )));
    }
    if let Some(line) = too_deep(text) {
        return Err(root_problem(format!(
            "collections nested more than {MAX_NESTING} deep (at line {line}); a mesh spec \
             needs fewer than ten levels"
        )));
    }
    let mut unknown = Vec::new();
    let parsed = match format {
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            deserialize(&mut de, &mut unknown).and_then(|spec| {
                de.end().map(|_| spec).map_err(|e| Problem {
                    path: "(root)".into(),
                    message: e.to_string(),
                })
            })
        }
        Format::Yaml => deserialize(serde_yaml_ng::Deserializer::from_str(text), &mut unknown),
    };
    let mut problems: Vec<Problem> = unknown.into_iter().map(unknown_field).collect();
    match parsed {
        Ok(spec) if problems.is_empty() => Ok(spec),
        Ok(_) => Err(Problems(problems)),
        Err(p) => {
            problems.push(p);
            Err(Problems(problems))
        }
    }
}

/// The line where flow collections (`[`, `{`) first nest deeper than [`MAX_NESTING`], if
/// they do. A quick scan, not a parser: brackets inside quotes and comments are skipped, and
/// only a bracket that can open a collection (after `:`, `-`, `,`, `[`, `{`, `?` or at the start
/// of a line) counts, so a path like `/a[1]` in a plain value is not mistaken for nesting.
fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (n, line) in text.lines().enumerate() {
        let mut quote: Option<char> = None;
        let mut previous = None; // last non-space character on this line
        let mut chars = line.chars().peekable();
        while let Some(ch) = chars.next() {
            if let Some(q) = quote {
                if ch == '\\' && q == '"' {
                    chars.next();
                } else if ch == q {
                    quote = None;
                }
                continue;
            }
            match ch {
                '#' if matches!(previous, None | Some(' ')) => break,
                '"' | '\'' if opens_value(previous) => quote = Some(ch),
                '[' | '{' if opens_value(previous) => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Some(n + 1);
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            if !ch.is_whitespace() {
                previous = Some(ch);
            } else {
                previous = previous.map(|_| ' ');
            }
        }
    }
    None
}

fn opens_value(previous: Option<char>) -> bool {
    matches!(
        previous,
        None | Some(' ' | ':' | '-' | ',' | '[' | '{' | '?')
    )
}

fn deserialize<'de, D>(de: D, unknown: &mut Vec<String>) -> Result<MeshSpec, Problem>
where
    D: serde::Deserializer<'de>,
    D::Error: std::fmt::Display,
{
    let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(ignored_path(&path));
    let ignored = serde_ignored::Deserializer::new(de, &mut on_unknown);
    serde_path_to_error::deserialize(ignored).map_err(|e| {
        // Up to the last segment serde could name: a truncated document ends in `?`.
        let mut path = String::new();
        for segment in e.path().iter() {
            use serde_path_to_error::Segment as S;
            match segment {
                S::Seq { index } => path.push_str(&format!("[{index}]")),
                S::Map { key } | S::Enum { variant: key } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                S::Unknown => break,
            }
        }
        let path = if path.is_empty() {
            "(root)".to_string()
        } else {
            path
        };
        // serde_yaml_ng starts its messages with the path too.
        let message = e.into_inner().to_string();
        let message = message
            .strip_prefix(&format!("{path}: "))
            .map(str::to_string)
            .unwrap_or(message);
        Problem { path, message }
    })
}

/// `services.0.app.foo` in serde_ignored's notation → `services[0].app.foo`, as everywhere else.
fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => "(root)".into(),
        P::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        P::Map { parent, key } => match parent {
            P::Root => key.clone(),
            _ => format!("{}.{key}", ignored_path(parent)),
        },
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

/// "unknown field", with the closest valid field and the list of valid ones.
fn unknown_field(path: String) -> Problem {
    let (parent, field) = match path.rsplit_once('.') {
        Some((parent, field)) => (parent, field),
        None => ("", path.as_str()),
    };
    let message = match fields_at(parent) {
        None => "unknown field".to_string(),
        Some(valid) => {
            let closest = valid
                .iter()
                .map(|v| (strsim::jaro_winkler(field, v), *v))
                .filter(|(score, _)| *score > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0));
            let hint = closest
                .map(|(_, v)| format!("; did you mean `{v}`?"))
                .unwrap_or_default();
            format!("unknown field{hint} (valid here: {})", valid.join(", "))
        }
    };
    Problem { path, message }
}

/// The fields of the spec struct found at `path` (list indices ignored).
fn fields_at(path: &str) -> Option<&'static [&'static str]> {
    let mut shape = String::with_capacity(path.len());
    let mut in_index = false;
    for ch in path.chars() {
        match ch {
            '[' => in_index = true,
            ']' => in_index = false,
            _ if !in_index => shape.push(ch),
            _ => {}
        }
    }
    Some(match shape.as_str() {
        "" => fields::<MeshSpec>(),
        "errors" => fields::<ErrorSettings>(),
        "services" => fields::<ServiceSpec>(),
        "services.app" => fields::<AppSpec>(),
        "services.app.circuit_breaker" | "services.upstreams.circuit_breaker" => {
            fields::<CircuitBreakerSpec>()
        }
        "services.sidecar" => fields::<SidecarSpec>(),
        "services.replicas" => fields::<ReplicaSpec>(),
        "services.upstreams.outlier_detection" => fields::<OutlierDetectionSpec>(),
        "services.upstreams.health_check" => fields::<HealthCheckSpec>(),
        "services.upstreams" => fields::<UpstreamSpec>(),
        "services.upstreams.retry_budget" => fields::<RetryBudgetSpec>(),
        "services.upstreams.routes" => fields::<RouteSpec>(),
        "services.upstreams.routes.match" => fields::<MatchSpec>(),
        "services.upstreams.routes.retry" => fields::<RetrySpec>(),
        "services.upstreams.routes.retry.backoff" => fields::<BackoffSpec>(),
        _ => return None,
    })
}

fn fields<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    serde_introspect::<T>()
}
