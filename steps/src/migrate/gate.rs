//! The migration safety gate: reads the SQL of every unapplied migration and finds the operations that break the
//! old code still serving while (and after) they run, before anything is applied.
//!
//! The rules, each with its expand/contract fix, are in [`Rule`]; what the gate knows of each table is in
//! `schema`. Statements are parsed with sqlparser in the
//! database's dialect. A table the deploy's own migrations create is new: nothing old uses it, so any change to it
//! is safe. SQLite needs care: Django implements most `ALTER`s there by rebuilding the table (`CREATE TABLE
//! "new__x"`, `INSERT ... SELECT`, `DROP TABLE "x"`, `ALTER TABLE "new__x" RENAME TO "x"`), so the gate compares
//! the rebuilt table with the table as it was (from the live schema, updated statement by statement) to see what
//! really changed: a nullable column added by a rebuild is as safe as an `ADD COLUMN`, and the indexes Django
//! re-creates after it (the same `CREATE [UNIQUE] INDEX` the table had) are restorations, not new constraints.
//!
//! A table that is not in the database before the deploy is new as well, even when Django could not write the SQL
//! that changes it (`sqlmigrate` introspects the database, so a migration that alters a table an earlier unapplied
//! migration creates fails to generate on an empty database). A migration the live release ships byte for byte
//! is followed (the schema it leaves) but not judged: the old code already expects it.

use std::collections::{BTreeMap, BTreeSet};

use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, ObjectType, RenameTableNameKind, SelectItem, SetExpr, Statement,
    TableConstraint, TableObject,
};
use sqlparser::dialect::{Dialect as SqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

use super::inspect::Pending;
use super::schema::{Index, Rebuild, Table, column_of, first_quoted, name, rebuild_changes, table_of, unquoted};
use super::sql::split_operations;

pub use super::rules::{Finding, Rule};

/// The SQL dialect of the database the migrations run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// From Django's `connection.vendor`.
    pub fn from_vendor(vendor: &str) -> Option<Self> {
        match vendor {
            "postgresql" => Some(Self::Postgres),
            "sqlite" => Some(Self::Sqlite),
            _ => None,
        }
    }

    fn parser(self) -> Box<dyn SqlDialect> {
        match self {
            Self::Postgres => Box::new(PostgreSqlDialect {}),
            Self::Sqlite => Box::new(SQLiteDialect {}),
        }
    }
}

/// The gate's state across the migrations of one deploy.
pub struct Gate {
    dialect: Dialect,
    tables: BTreeMap<String, Table>,
    /// Tables created by this deploy's migrations: no old code uses them.
    new_tables: BTreeSet<String>,
    /// The tables in the database before the deploy, if known: any other table is new too.
    existing: Option<BTreeSet<String>>,
    indexes: BTreeMap<String, Index>,
    /// Indexes created by this deploy's migrations: dropping them again is safe.
    new_indexes: BTreeSet<String>,
    /// Indexes that went with a table a SQLite rebuild replaced, until Django re-creates them.
    rebuilt_indexes: BTreeMap<String, Index>,
    /// False while following a migration the live release already ships: its changes are tracked, not judged.
    judging: bool,
    rebuilds: BTreeMap<String, Rebuild>,
    /// PostgreSQL `ADD COLUMN ... DEFAULT x NOT NULL`: unsafe once its default is dropped.
    defaulted_not_null: BTreeSet<(String, String)>,
    findings: Vec<Finding>,
}

const REBUILD_PREFIX: &str = "new__";

impl Gate {
    /// A gate starting from the live schema (`CREATE TABLE` statements; SQLite's `sqlite_master`).
    pub fn new(dialect: Dialect, schema: &[String]) -> Self {
        let mut tables = BTreeMap::new();
        let mut indexes = BTreeMap::new();
        for ddl in schema {
            if let Ok(stmts) = Parser::parse_sql(dialect.parser().as_ref(), ddl) {
                for s in stmts {
                    match s {
                        Statement::CreateTable(ct) => {
                            tables.insert(name(&ct.name), table_of(&ct));
                        }
                        Statement::CreateIndex(ref ci) => {
                            if let Some(n) = &ci.name {
                                let index = Index { table: name(&ci.table_name), definition: s.to_string() };
                                indexes.insert(name(n), index);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        Self {
            dialect,
            tables,
            new_tables: BTreeSet::new(),
            existing: None,
            indexes,
            new_indexes: BTreeSet::new(),
            rebuilt_indexes: BTreeMap::new(),
            judging: true,
            rebuilds: BTreeMap::new(),
            defaulted_not_null: BTreeSet::new(),
            findings: Vec::new(),
        }
    }

    /// The tables the database has before the deploy (Django's introspection): any other table is new.
    #[must_use]
    pub fn existing_tables(mut self, tables: Option<&[String]>) -> Self {
        self.existing = tables.map(|t| t.iter().cloned().collect());
        self
    }

    /// Examine one migration (in apply order).
    pub fn migration(&mut self, m: &Pending) {
        let label = m.label();
        self.judging = !m.known_to_live();
        for op in &m.irreversible {
            self.push(&label, op, Rule::Irreversible, "(no reverse operation)".to_owned());
        }
        if let Some(err) = &m.error {
            // Django introspects the database to write some SQL: it fails for tables that do not exist yet.
            let only_new_tables = m.tables.as_ref().is_some_and(|t| !t.is_empty() && t.iter().all(|t| self.is_new(t)));
            if !only_new_tables {
                self.push(
                    &label,
                    "(SQL generation)",
                    Rule::Unanalysable,
                    format!("Django could not write its SQL: {err}"),
                );
            }
        }
        for (op, statement) in split_operations(&m.sql) {
            self.statement(&label, &op, &statement);
        }
    }

    pub fn findings(self) -> Vec<Finding> {
        self.findings
    }

    fn push(&mut self, migration: &str, operation: &str, rule: Rule, statement: String) {
        if !self.judging {
            return;
        }
        self.findings.push(Finding {
            migration: migration.to_owned(),
            operation: operation.to_owned(),
            rule,
            statement,
        });
    }

    fn is_new(&self, table: &str) -> bool {
        self.new_tables.contains(table) || self.existing.as_ref().is_some_and(|e| !e.contains(table))
    }

    /// A table the migrations create: new if judged, part of what the old code expects if the live release
    /// ships the migration.
    fn created(&mut self, table: String) {
        if self.judging {
            self.new_tables.insert(table);
        } else if let Some(existing) = &mut self.existing {
            existing.insert(table);
        }
    }

    /// `DROP INDEX [CONCURRENTLY] [IF EXISTS] name` (sqlparser reads no `CONCURRENTLY` here; the text is plain).
    fn drop_index(&mut self, label: &str, op: &str, sql: &str, upper: &str) {
        let index = sql
            .split_whitespace()
            .skip(2)
            .find(|w| !matches!(w.to_ascii_uppercase().as_str(), "CONCURRENTLY" | "IF" | "EXISTS"))
            .map(|w| unquoted(w.rsplit('.').next().unwrap_or(w)))
            .unwrap_or_default();
        let on_new_table = self.indexes.get(&index).is_some_and(|i| self.is_new(&i.table));
        let new_index = self.new_indexes.remove(&index);
        self.indexes.remove(&index);
        if on_new_table || new_index {
            return;
        }
        if self.dialect == Dialect::Postgres && !upper.contains("CONCURRENTLY") {
            self.push(label, op, Rule::IndexWithoutConcurrently, sql.to_owned());
        }
    }

    /// `CREATE TRIGGER ... ON table ...` (SQLite's `BEGIN ... END` body is beyond sqlparser): safe on a new
    /// table; on an existing one it changes what the old release's writes do, which the gate cannot judge.
    fn trigger(&mut self, label: &str, op: &str, sql: &str) {
        let words: Vec<&str> = sql.split_whitespace().collect();
        let table = words
            .iter()
            .position(|w| w.eq_ignore_ascii_case("ON"))
            .and_then(|i| words.get(i + 1))
            .map(|w| unquoted(w.rsplit('.').next().unwrap_or(w)));
        if !table.is_some_and(|t| self.is_new(&t)) {
            self.push(label, op, Rule::Unanalysable, sql.to_owned());
        }
    }

    fn statement(&mut self, label: &str, op: &str, sql: &str) {
        let upper = sql.trim_start().to_ascii_uppercase();
        if upper.starts_with("DROP INDEX") {
            self.drop_index(label, op, sql, &upper);
            return;
        }
        if is_trigger(&upper) {
            self.trigger(label, op, sql);
            return;
        }
        let parsed = Parser::parse_sql(self.dialect.parser().as_ref(), sql);
        let Ok(statements) = parsed else {
            const HARMLESS: &[&str] = &[
                "UPDATE",
                "INSERT",
                "DELETE",
                "SELECT",
                "SET",
                "BEGIN",
                "COMMIT",
                "ANALYZE",
                "VACUUM",
                "COMMENT",
                "GRANT",
                "PRAGMA",
                "SAVEPOINT",
                "RELEASE",
            ];
            if !HARMLESS.iter().any(|k| upper.starts_with(k)) {
                self.push(label, op, Rule::Unanalysable, sql.to_owned());
            }
            return;
        };
        for s in statements {
            self.parsed(label, op, sql, s);
        }
    }

    fn parsed(&mut self, label: &str, op: &str, sql: &str, s: Statement) {
        match s {
            Statement::CreateTable(ct) => {
                let table = name(&ct.name);
                if let Some(base) = table.strip_prefix(REBUILD_PREFIX) {
                    self.rebuilds.insert(base.to_owned(), Rebuild { table: table_of(&ct), ..Rebuild::default() });
                } else {
                    self.tables.insert(table.clone(), table_of(&ct));
                    self.created(table);
                }
            }
            Statement::CreateVirtualTable { name: n, .. } => self.created(name(&n)),
            Statement::Insert(insert) => {
                let TableObject::TableName(target) = &insert.table else {
                    return;
                };
                let target = name(target);
                let Some(base) = target.strip_prefix(REBUILD_PREFIX) else {
                    return;
                };
                let Some(rebuild) = self.rebuilds.get_mut(base) else {
                    return;
                };
                let columns: Vec<String> = insert.columns.iter().map(name).collect();
                let sources: Vec<Option<String>> = match insert.source.as_deref().map(|q| q.body.as_ref()) {
                    Some(SetExpr::Select(select)) => select
                        .projection
                        .iter()
                        .map(|item| match item {
                            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                                first_quoted(&e.to_string())
                            }
                            _ => None,
                        })
                        .collect(),
                    _ => vec![None; columns.len()],
                };
                rebuild.copied = columns.into_iter().zip(sources).collect();
                rebuild.copy_seen = true;
            }
            Statement::Drop { object_type: ObjectType::Table, names, .. } => {
                for n in names {
                    let table = name(&n);
                    if self.rebuilds.contains_key(&table) {
                        continue; // Part of a SQLite rebuild: judged when the new table takes the name.
                    }
                    if !self.is_new(&table) {
                        self.push(label, op, Rule::DropTable, sql.to_owned());
                    }
                    self.tables.remove(&table);
                    self.indexes.retain(|_, i| i.table != table);
                }
            }
            Statement::CreateIndex(ref ci) => {
                let table = name(&ci.table_name);
                let index = Index { table: table.clone(), definition: s.to_string() };
                let index_name = ci.name.as_ref().map(name).unwrap_or_default();
                // After a SQLite rebuild Django re-creates the indexes the table had: the same index again.
                let restored = self.rebuilt_indexes.get(&index_name) == Some(&index);
                self.rebuilt_indexes.remove(&index_name);
                self.indexes.insert(index_name.clone(), index);
                if restored {
                    return;
                }
                if self.judging {
                    self.new_indexes.insert(index_name);
                }
                if self.is_new(&table) {
                    return;
                }
                if ci.unique {
                    self.push(label, op, Rule::AddUnique, sql.to_owned());
                } else if self.dialect == Dialect::Postgres && !ci.concurrently {
                    self.push(label, op, Rule::IndexWithoutConcurrently, sql.to_owned());
                }
            }
            Statement::AlterTable(at) => {
                let table = name(&at.name);
                for operation in at.operations {
                    self.alter(label, op, sql, &table, operation);
                }
            }
            _ => {}
        }
    }

    fn alter(&mut self, label: &str, op: &str, sql: &str, table: &str, operation: AlterTableOperation) {
        if let AlterTableOperation::RenameTable { table_name } = &operation {
            let new_name = match table_name {
                RenameTableNameKind::As(n) | RenameTableNameKind::To(n) => name(n),
            };
            if let Some(base) = table.strip_prefix(REBUILD_PREFIX)
                && new_name == base
            {
                self.finish_rebuild(label, op, base);
                return;
            }
            if !self.is_new(table) {
                self.push(label, op, Rule::RenameTable, sql.to_owned());
            }
            if let Some(t) = self.tables.remove(table) {
                self.tables.insert(new_name.clone(), t);
            }
            if let Some(existing) = &mut self.existing
                && existing.remove(table)
            {
                existing.insert(new_name.clone());
            }
            for index in self.indexes.values_mut().filter(|i| i.table == table) {
                index.table.clone_from(&new_name);
            }
            if self.new_tables.remove(table) {
                self.new_tables.insert(new_name);
            }
            return;
        }
        let new = self.is_new(table);
        let rule = match operation {
            AlterTableOperation::DropColumn { column_names, .. } => {
                if let Some(t) = self.tables.get_mut(table) {
                    t.columns.retain(|c| !column_names.iter().any(|n| n.value == c.name));
                }
                Some(Rule::DropColumn)
            }
            AlterTableOperation::RenameColumn { old_column_name, new_column_name } => {
                if let Some(c) = self
                    .tables
                    .get_mut(table)
                    .and_then(|t| t.columns.iter_mut().find(|c| c.name == old_column_name.value))
                {
                    c.name = new_column_name.value;
                }
                Some(Rule::RenameColumn)
            }
            AlterTableOperation::AddColumn { column_def, .. } => {
                let col = column_of(&column_def);
                let rule = if col.not_null && !col.has_default {
                    Some(Rule::AddNotNullColumn)
                } else {
                    if col.not_null {
                        self.defaulted_not_null.insert((table.to_owned(), col.name.clone()));
                    }
                    None
                };
                let unique = col.unique;
                if let Some(t) = self.tables.get_mut(table) {
                    t.columns.push(col);
                }
                if unique { Some(Rule::AddUnique) } else { rule }
            }
            AlterTableOperation::AlterColumn { column_name, op: alter } => match alter {
                AlterColumnOperation::SetDataType { .. } => Some(Rule::AlterColumnType),
                AlterColumnOperation::SetNotNull => Some(Rule::SetNotNull),
                AlterColumnOperation::DropDefault => self
                    .defaulted_not_null
                    .remove(&(table.to_owned(), column_name.value.clone()))
                    .then_some(Rule::AddNotNullColumn),
                _ => None,
            },
            AlterTableOperation::AddConstraint {
                constraint:
                    TableConstraint::Unique(_) | TableConstraint::PrimaryKey(_) | TableConstraint::UniqueUsingIndex(_),
                ..
            } => Some(Rule::AddUnique),
            _ => None,
        };
        if let Some(rule) = rule.filter(|_| !new) {
            self.push(label, op, rule, sql.to_owned());
        }
    }

    /// `ALTER TABLE "new__x" RENAME TO "x"`: compare the rebuilt table with the old one.
    fn finish_rebuild(&mut self, label: &str, op: &str, table: &str) {
        let Some(rebuild) = self.rebuilds.remove(table) else {
            return;
        };
        // The old table's indexes went with it; Django re-creates them after the rename.
        let (gone, kept): (BTreeMap<_, _>, BTreeMap<_, _>) =
            std::mem::take(&mut self.indexes).into_iter().partition(|(_, i)| i.table == table);
        self.indexes = kept;
        self.rebuilt_indexes.extend(gone);
        let old = self.tables.get(table).cloned();
        let is_new = self.is_new(table);
        self.tables.insert(table.to_owned(), rebuild.table.clone());
        if is_new {
            return;
        }
        let Some(old) = old else {
            self.push(
                label,
                op,
                Rule::Unanalysable,
                format!("rebuild of {table}, whose previous definition is unknown"),
            );
            return;
        };
        let found = rebuild_changes(table, &old, &rebuild);
        for (rule, detail) in found {
            self.push(label, op, rule, format!("SQLite table rebuild: {detail}"));
        }
    }
}

/// `CREATE [TEMP|TEMPORARY] TRIGGER` (upper-cased text).
fn is_trigger(upper: &str) -> bool {
    let mut words = upper.split_whitespace();
    words.next() == Some("CREATE") && {
        let second = words.next();
        second == Some("TRIGGER") || (matches!(second, Some("TEMP" | "TEMPORARY")) && words.next() == Some("TRIGGER"))
    }
}
