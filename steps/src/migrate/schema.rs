//! What the migration gate knows of a table: its columns, unique constraints and indexes, read from `CREATE`
//! statements (the live SQLite schema and the deploy's own migrations), and what a SQLite table rebuild changes
//! in it (the comparison of the rebuilt table with the table as it was).

use std::collections::BTreeSet;

use sqlparser::ast::{ColumnDef, ColumnOption, CreateTable, ObjectName, TableConstraint};

use super::rules::Rule;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Column {
    pub(super) name: String,
    pub(super) ty: String,
    pub(super) not_null: bool,
    pub(super) has_default: bool,
    pub(super) unique: bool,
}

/// An index as the gate follows it: its table and its definition, to tell a re-creation from a new index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Index {
    pub(super) table: String,
    pub(super) definition: String,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Table {
    pub(super) columns: Vec<Column>,
    pub(super) unique_constraints: BTreeSet<String>,
}

impl Table {
    pub(super) fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// A SQLite table rebuild in progress: the new table's definition and how its rows are copied.
#[derive(Debug, Clone, Default)]
pub(super) struct Rebuild {
    pub(super) table: Table,
    /// (new column, old column it is copied from, if a plain column) for each `INSERT ... SELECT` pair.
    pub(super) copied: Vec<(String, Option<String>)>,
    pub(super) copy_seen: bool,
}

/// What a SQLite rebuild of `table` changes for the old code: (rule, detail) for each unsafe difference.
pub(super) fn rebuild_changes(table: &str, old: &Table, rebuild: &Rebuild) -> Vec<(Rule, String)> {
    let mut found: Vec<(Rule, String)> = Vec::new();
    for old_col in &old.columns {
        let copied_to: Vec<&String> = rebuild
            .copied
            .iter()
            .filter(|(_, src)| src.as_deref() == Some(old_col.name.as_str()))
            .map(|(new, _)| new)
            .collect();
        match copied_to.first() {
            None if rebuild.copy_seen => {
                found.push((Rule::DropColumn, format!("column {}.{} is not kept", table, old_col.name)));
            }
            None => {}
            Some(new_name) if **new_name != old_col.name => {
                found.push((Rule::RenameColumn, format!("column {table}.{} becomes {new_name}", old_col.name)));
            }
            Some(_) => {
                let Some(new_col) = rebuild.table.column(&old_col.name) else {
                    continue;
                };
                if !same_type(&new_col.ty, &old_col.ty) {
                    found.push((
                        Rule::AlterColumnType,
                        format!("column {table}.{}: {} becomes {}", old_col.name, old_col.ty, new_col.ty),
                    ));
                }
                if new_col.not_null && !old_col.not_null {
                    found.push((Rule::SetNotNull, format!("column {table}.{} becomes NOT NULL", old_col.name)));
                }
                if new_col.unique && !old_col.unique {
                    found.push((Rule::AddUnique, format!("column {table}.{} becomes UNIQUE", old_col.name)));
                }
            }
        }
    }
    for new_col in &rebuild.table.columns {
        if old.column(&new_col.name).is_none() && new_col.not_null && !new_col.has_default {
            found.push((
                Rule::AddNotNullColumn,
                format!("new column {table}.{} is NOT NULL without a database default", new_col.name),
            ));
        }
    }
    for constraint in rebuild.table.unique_constraints.difference(&old.unique_constraints) {
        found.push((Rule::AddUnique, format!("new unique constraint {constraint} on {table}")));
    }
    found
}

fn same_type(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// An object name without quotes or schema: `"public"."catalog_product"` -> `catalog_product`.
pub(super) fn name(n: &ObjectName) -> String {
    let text = n.to_string();
    unquoted(text.rsplit('.').next().unwrap_or(&text))
}

pub(super) fn unquoted(identifier: &str) -> String {
    identifier.trim_matches(|c| c == '"' || c == '`' || c == '[' || c == ']').to_owned()
}

/// The first double-quoted identifier of an expression (`coalesce("sku", 'x')` -> `sku`), if any.
pub(super) fn first_quoted(expr: &str) -> Option<String> {
    let start = expr.find('"')? + 1;
    let len = expr[start..].find('"')?;
    Some(expr[start..start + len].to_owned())
}

pub(super) fn column_of(c: &ColumnDef) -> Column {
    let mut col = Column {
        name: c.name.value.clone(),
        ty: c.data_type.to_string(),
        not_null: false,
        has_default: false,
        unique: false,
    };
    for o in &c.options {
        match &o.option {
            ColumnOption::NotNull => col.not_null = true,
            ColumnOption::Default(_) => col.has_default = true,
            ColumnOption::Unique(_) => col.unique = true,
            ColumnOption::PrimaryKey(_) => {
                col.unique = true;
                col.not_null = true;
            }
            _ => {}
        }
    }
    col
}

pub(super) fn table_of(ct: &CreateTable) -> Table {
    let unique_constraints = ct
        .constraints
        .iter()
        .filter_map(|c| match c {
            TableConstraint::Unique(u) => Some(u.name.as_ref().map_or_else(|| c.to_string(), |n| n.value.clone())),
            _ => None,
        })
        .collect();
    Table { columns: ct.columns.iter().map(column_of).collect(), unique_constraints }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_quoted_identifier() {
        assert_eq!(first_quoted("coalesce(\"sku\", 'x')").as_deref(), Some("sku"));
        assert_eq!(first_quoted("0"), None);
    }
}
