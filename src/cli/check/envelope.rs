//! What surrounds the spec and what the schema walk cannot see: the top-level keys, the
//! metadata (its fields and the API server's limit on annotations), fields the schema does not
//! know (the API server prunes them, so a typo silently loses a setting) and numbers JSON cannot
//! carry.

use serde_json::Value;

/// The top-level keys of a resource; the CRD's schema lists only `spec` and `status`.
const TOP_LEVEL: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];

/// The fields of `ObjectMeta` (metadata.* of every Kubernetes object).
const METADATA: [&str; 15] = [
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
];

/// The API server's limit on the total size of an object's annotations (keys and values).
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// Unknown top-level keys and metadata fields, and annotations over the server's limit.
pub fn envelope_problems(value: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(fields) = value.as_object() else {
        return vec!["the document is not a mapping of fields".into()];
    };
    problems.extend(unknown_fields("", fields.keys(), &TOP_LEVEL));
    let Some(metadata) = fields.get("metadata") else {
        problems.push("metadata: Required value".into());
        return problems;
    };
    let Some(metadata) = metadata.as_object() else {
        problems.push("metadata: Invalid value: must be a mapping of fields".into());
        return problems;
    };
    problems.extend(unknown_fields("metadata", metadata.keys(), &METADATA));
    if let Some(annotations) = metadata.get("annotations").and_then(|a| a.as_object()) {
        let total: usize = annotations
            .iter()
            .map(|(key, value)| key.len() + value.as_str().map_or(0, str::len))
            .sum();
        if total > ANNOTATIONS_MAX_BYTES {
            problems.push(format!(
                "metadata.annotations: Too long: must have at most {ANNOTATIONS_MAX_BYTES} bytes (these have {total})"
            ));
        }
    }
    problems
}

/// One problem per name of `present` that is not in `known`, under `parent`.
fn unknown_fields<'a>(
    parent: &str,
    present: impl Iterator<Item = &'a String>,
    known: &[&str],
) -> Vec<String> {
    present
        .filter(|name| !known.contains(&name.as_str()))
        .map(|name| unknown_field(parent, name, known.iter().copied()))
        .collect()
}

/// A field the schema does not know: the API server prunes it (or, with strict field
/// validation, refuses it); either way the setting is lost. Names the closest known field.
pub fn unknown_field<'a>(parent: &str, name: &str, known: impl Iterator<Item = &'a str>) -> String {
    let path = if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    };
    let hint = closest(name, known)
        .map(|k| format!("; did you mean {k:?}?"))
        .unwrap_or_default();
    format!("{path}: Unknown field: not in the schema, the API server would drop it{hint}")
}

/// The known name nearest to `name` (by edits, ignoring case), if it is near enough to be a
/// likely typo.
fn closest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_lowercase();
    known
        .map(|k| (edit_distance(&lower, &k.to_lowercase()), k))
        .filter(|(d, k)| *d <= (k.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Edits (insertions, deletions, substitutions, swaps of neighbours) from `a` to `b`; names
/// are short, so the full table is fine.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// Numbers JSON cannot carry (`.inf`, `.nan`): `kubectl` cannot send them, and read as JSON
/// they would silently become `null` (then a default).
pub fn non_finite_numbers(path: &str, value: &serde_yaml::Value, problems: &mut Vec<String>) {
    match value {
        serde_yaml::Value::Number(n) if n.as_f64().is_some_and(|f| !f.is_finite()) => {
            problems.push(format!(
                "{path}: Invalid value: {n}: must be a finite number"
            ));
        }
        serde_yaml::Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                non_finite_numbers(&format!("{path}[{i}]"), item, problems);
            }
        }
        serde_yaml::Value::Mapping(fields) => {
            for (key, field) in fields {
                let name = key
                    .as_str()
                    .map_or_else(|| format!("{key:?}"), str::to_string);
                let child = if path.is_empty() {
                    name
                } else {
                    format!("{path}.{name}")
                };
                non_finite_numbers(&child, field, problems);
            }
        }
        serde_yaml::Value::Tagged(tagged) => non_finite_numbers(path, &tagged.value, problems),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn near_names() {
        assert_eq!(super::edit_distance("sepc", "spec"), 1);
        assert_eq!(
            super::closest("sepc", ["apiVersion", "spec"].into_iter()),
            Some("spec")
        );
    }
}
