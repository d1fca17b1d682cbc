//! `sqlmigrate` output as the gate reads it: (operation, statement) pairs, from Django's `-- <operation>` comments
//! and statements split at `;` outside quotes (and outside trigger bodies and `$$` function bodies).

/// Split `sqlmigrate` output into (operation description, statement) pairs, dropping BEGIN/COMMIT.
pub fn split_operations(sql: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut op = String::from("(unnamed operation)");
    let mut buffer = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if let Some(comment) = trimmed.strip_prefix("--") {
            let text = comment.trim_start_matches('-').trim();
            if !text.is_empty()
                && !text.starts_with("THIS OPERATION CANNOT")
                && !text.starts_with("MIGRATION NOW PERFORMS")
            {
                flush(&mut buffer, &op, &mut out);
                text.clone_into(&mut op);
            }
            continue;
        }
        buffer.push_str(line);
        buffer.push('\n');
    }
    flush(&mut buffer, &op, &mut out);
    out
}

fn flush(buffer: &mut String, op: &str, out: &mut Vec<(String, String)>) {
    for statement in split_statements(buffer) {
        let upper = statement.to_ascii_uppercase();
        if upper == "BEGIN" || upper == "COMMIT" {
            continue;
        }
        out.push((op.to_owned(), statement));
    }
    buffer.clear();
}

/// Split SQL text at `;` outside quotes, dollar quotes (`$$`, PostgreSQL function bodies) and the
/// `BEGIN ... END` body of a SQLite trigger.
fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut dollar = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '$') if chars.peek() == Some(&'$') => {
                chars.next();
                dollar = !dollar;
                current.push_str("$$");
            }
            (None, '\'' | '"') if !dollar => {
                quote = Some(c);
                current.push(c);
            }
            (Some(q), _) if c == q => {
                quote = None;
                current.push(c);
            }
            (None, ';') if !dollar && !in_trigger_body(&current) => {
                let s = current.trim();
                if !s.is_empty() {
                    out.push(s.to_owned());
                }
                current.clear();
            }
            _ => current.push(c),
        }
    }
    let s = current.trim();
    if !s.is_empty() {
        out.push(s.to_owned());
    }
    out
}

/// Is `statement` (so far) a `CREATE TRIGGER` whose `BEGIN` has no `END` yet? Its `;`s end body statements.
fn in_trigger_body(statement: &str) -> bool {
    let upper = statement.to_ascii_uppercase();
    let words: Vec<&str> = upper.split_whitespace().collect();
    let trigger = words.first() == Some(&"CREATE") && words.iter().take(3).any(|w| *w == "TRIGGER");
    trigger && words.contains(&"BEGIN") && words.last() != Some(&"END")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_operations_and_statements() {
        let sql = "BEGIN;\n--\n-- Add field x to y\n--\nALTER TABLE \"y\" ADD COLUMN \"x\" int NULL;\n-- Raw SQL operation\nUPDATE y SET a = ';'; SET CONSTRAINTS ALL IMMEDIATE;\nCOMMIT;";
        let ops = split_operations(sql);
        assert_eq!(
            ops,
            vec![
                ("Add field x to y".to_owned(), "ALTER TABLE \"y\" ADD COLUMN \"x\" int NULL".to_owned()),
                ("Raw SQL operation".to_owned(), "UPDATE y SET a = ';'".to_owned()),
                ("Raw SQL operation".to_owned(), "SET CONSTRAINTS ALL IMMEDIATE".to_owned()),
            ]
        );
    }

    #[test]
    fn a_trigger_body_and_a_dollar_quoted_function_are_one_statement() {
        let trigger = "CREATE TRIGGER t AFTER DELETE ON x BEGIN DELETE FROM y WHERE rowid=OLD.id; END";
        let function =
            "CREATE FUNCTION f() RETURNS trigger AS $$ BEGIN NEW.a := 1; RETURN NEW; END $$ LANGUAGE plpgsql";
        let sql = format!("{trigger};\n{function};\nSELECT 1;");
        let statements: Vec<String> = split_operations(&sql).into_iter().map(|(_, s)| s).collect();
        assert_eq!(statements, vec![trigger.to_owned(), function.to_owned(), "SELECT 1".to_owned()]);
    }
}
