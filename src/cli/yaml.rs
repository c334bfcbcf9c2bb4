//! Guards before a YAML file reaches the parser. The YAML scanner's cost grows with the
//! square of the nesting depth: a file of 100,000 nested `[` takes tens of seconds before the
//! parser's own recursion limit answers. A linear pre-scan refuses deep nesting at once.

/// Deepest flow nesting (`[` and `{`) accepted; no resource or scenario comes close.
pub const MAX_FLOW_DEPTH: usize = 64;

/// Refuses YAML whose flow collections nest deeper than [`MAX_FLOW_DEPTH`], with the line.
/// Quoted strings and comments are skipped, so brackets inside them do not count.
pub fn check_nesting(text: &str) -> Result<(), String> {
    let (mut depth, mut line) = (0usize, 1usize);
    let mut chars = text.chars().peekable();
    let mut at_line_start_or_space = true;
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            '#' if at_line_start_or_space => {
                // a comment runs to the end of the line
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '"' => skip_quoted(&mut chars, '"', &mut line, true),
            '\'' => skip_quoted(&mut chars, '\'', &mut line, false),
            '[' | '{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err(format!(
                        "nested deeper than {MAX_FLOW_DEPTH} levels at line {line}"
                    ));
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at_line_start_or_space = c.is_whitespace();
    }
    Ok(())
}

fn skip_quoted(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    quote: char,
    line: &mut usize,
    escapes: bool,
) {
    while let Some(c) = chars.next() {
        match c {
            '\n' => *line += 1,
            '\\' if escapes => {
                chars.next();
            }
            c if c == quote => {
                // '' inside single quotes is an escaped quote
                if !escapes && chars.peek() == Some(&quote) {
                    chars.next();
                } else {
                    return;
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_flow_nesting_is_refused_with_its_line_and_quotes_do_not_count() {
        let deep = format!(
            "kind: x\nspec: {}{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let e = check_nesting(&deep).unwrap_err();
        assert_eq!(e, "nested deeper than 64 levels at line 2");
        let shallow = format!("a: {}{}\n", "{b: ".repeat(10), "}".repeat(10));
        assert!(check_nesting(&shallow).is_ok());
        let quoted = format!(
            "a: \"{}\"\nb: '{}'\n# {}\n",
            "[".repeat(100),
            "{".repeat(100),
            "[".repeat(100)
        );
        assert!(check_nesting(&quoted).is_ok());
        assert!(check_nesting(include_str!("../../examples/fraud-detector.yaml")).is_ok());
    }
}
